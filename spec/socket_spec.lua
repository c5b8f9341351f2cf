-- luatls.Socket: the non-blocking TCP socket under a connection.
local H = require "helper"
local core = H.core
local loop = require "luatls.loop"

local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack
-- Waits (inside H.run) until sock is ready in direction dir.
local function wait(sock, dir, timeout)
	local s = loop.default()
	local rec = s:io(sock:fd(), dir)
	local ok = s:wait_io(rec, dir, s:now() + (timeout or 5))
	s:close_watcher(rec)
	return ok
end

-- Receives (inside H.run) one chunk: data | nil, message, code
local function recv(sock)
	while true do
		local data, msg, code = sock:recv()
		if data or code ~= "wantread" then return data, msg, code end
		if not wait(sock, "r") then return nil, "timeout", "timeout" end
	end
end

-- A connected pair over loopback (inside H.run): client, server, listener.
local function connected_pair()
	local lsock = assert(core.tcp_listen("127.0.0.1", 0))
	local _, port = lsock:local_address()
	local c = assert(core.tcp_connect("127.0.0.1", port))
	assert(wait(c, "w"))
	assert(c:connected())
	assert(wait(lsock, "r"))
	local s, addr, cport, fd = lsock:accept()
	assert(s, addr)
	assert(fd == s:fd(), "accept's fourth value is the new socket's descriptor")
	return c, s, lsock, addr, cport
end


describe("luatls.Socket", function()
	it("closes with a FIN, not a reset, when the peer's bytes were never read", function()
		local got, msg, code, rest = H.run(function()
			local c, s, lsock = connected_pair()
			assert.equal(5, s:send("hello")) -- the client never reads it
			assert(wait(c, "r"))
			assert.equal(3, c:send("bye"))
			c:close()
			local data = recv(s)
			local _, m, k = recv(s)
			s:close()
			lsock:close()
			return data, m, k, nil
		end)
		assert.equal("bye", got)
		assert.equal("closed", code)
		assert.equal("closed", msg) -- a reset would say "recv: Connection reset by peer"
		assert.is_nil(rest)
	end)

	it("listens on a loopback port chosen by the system", function()
		local lsock = assert(core.tcp_listen("127.0.0.1", 0))
		assert.equal("luatls.Socket", getmetatable(lsock).__name)
		local host, port = lsock:local_address()
		assert.equal("127.0.0.1", host)
		assert.is_true(port > 0)
		assert.is_number(lsock:fd())
		lsock:close()
	end)

	it("has a __tostring naming the type and whether it listens", function()
		local lsock = assert(core.tcp_listen("127.0.0.1", 0))
		assert.matches("luatls.Socket", tostring(lsock), 1, true)
		assert.matches("listening", tostring(lsock), 1, true)
		lsock:close()
		assert.matches("closed", tostring(lsock), 1, true)
	end)

	it("connects, accepts and carries raw bytes both ways", function()
		local got, back, addr, peer_host, local_port, peer_port = H.run(function()
			local c, s, lsock, a = connected_pair()
			assert.equal(5, c:send("hello"))
			local g = recv(s)
			assert.equal(3, s:send("hey"))
			local b = recv(c)
			local ph, pp = s:peer_address()
			local _, lp = c:local_address()
			c:close() s:close() lsock:close()
			return g, b, a, ph, lp, pp
		end)
		assert.equal("hello", got)
		assert.equal("hey", back)
		assert.equal("127.0.0.1", addr)
		assert.equal("127.0.0.1", peer_host)
		assert.equal(local_port, peer_port)
	end)

	it("sends from a position in the data", function()
		local got = H.run(function()
			local c, s, lsock = connected_pair()
			assert.equal(3, c:send("abcdef", 4))
			local g = recv(s)
			c:close() s:close() lsock:close()
			return g
		end)
		assert.equal("def", got)
	end)

	it("returns nil, 'closed' from recv after the peer shuts down its side", function()
		local data, msg, code = H.run(function()
			local c, s, lsock = connected_pair()
			c:shutdown()
			local d, m, k = recv(s)
			c:close() s:close() lsock:close()
			return d, m, k
		end)
		assert.is_nil(data)
		assert.equal("closed", code)
		assert.is_string(msg)
	end)

	it("returns nil, message, 'closed' from send once the peer has gone", function()
		local n, msg, code = H.run(function()
			local c, s, lsock = connected_pair()
			s:close()
			lsock:close()
			local r
			for _ = 1, 50 do
				r = pack(c:send(("x"):rep(1024)))
				if not r[1] then break end
				loop.default():sleep(0.01)
			end
			c:close()
			return unpack(r, 1, r.n)
		end)
		assert.is_nil(n)
		assert.equal("closed", code)
		assert.is_string(msg)
	end)

	it("returns 'wantread' from accept and recv when nothing is there", function()
		local c, s, lsock
		H.run(function() c, s, lsock = connected_pair() end)
		local x, msg, code = lsock:accept()
		assert.is_nil(x)
		assert.equal("wantread", code)
		assert.matches("would block", msg, 1, true)
		-- an empty backlog leaves no half-made socket behind: the
		-- listener still accepts, and closes cleanly
		local before = H.open_fds()
		for _ = 1, 50 do assert.is_nil((lsock:accept())) end
		collectgarbage()
		collectgarbage()
		assert.equal(before, H.open_fds())
		x, msg, code = s:recv()
		assert.is_nil(x)
		assert.equal("wantread", code)
		c:close() s:close() lsock:close()
	end)

	it("returns nil, message, 'ECONNREFUSED' from connected when nobody listens", function()
		local port = H.free_port()
		local ok, msg, code = H.run(function()
			local sock, m, k = core.tcp_connect("127.0.0.1", port)
			if not sock then return sock, m, k end
			wait(sock, "w")
			local r = pack(sock:connected())
			sock:close()
			return unpack(r, 1, r.n)
		end)
		assert.is_nil(ok)
		assert.equal("ECONNREFUSED", code)
		assert.matches("refused", msg, 1, true)
	end)

	it("returns nil, message, 'EADDRINUSE' naming address and port when the port is taken", function()
		local first = assert(core.tcp_listen("127.0.0.1", 0))
		local _, port = first:local_address()
		local sock, msg, code = core.tcp_listen("127.0.0.1", port)
		first:close()
		assert.is_nil(sock)
		assert.equal("EADDRINUSE", code)
		assert.matches("127.0.0.1", msg, 1, true)
		assert.matches(tostring(port), msg, 1, true)
	end)

	it("raises for an address that is not numeric and a port out of range", function()
		assert.matches("numeric", H.error_of(core.tcp_connect, "localhost", 443), 1, true)
		assert.matches("numeric", H.error_of(core.tcp_listen, "localhost", 0), 1, true)
		assert.matches("port", H.error_of(core.tcp_connect, "127.0.0.1", 70000), 1, true)
		assert.matches("port", H.error_of(core.tcp_listen, "127.0.0.1", -1), 1, true)
	end)

	it("raises for a send position out of range", function()
		local c, s, lsock
		H.run(function() c, s, lsock = connected_pair() end)
		assert.matches("position", H.error_of(c.send, c, "abc", 0), 1, true)
		assert.matches("position", H.error_of(c.send, c, "abc", 5), 1, true)
		c:close() s:close() lsock:close()
	end)

	it("resolves loopback names and numeric addresses", function()
		assert.same({ "127.0.0.1" }, core.resolve("127.0.0.1"))
		local found = false
		for _, a in ipairs(assert(core.resolve("localhost"))) do
			found = found or a == "127.0.0.1" or a == "::1"
		end
		assert.is_true(found)
	end)

	it("can be closed twice", function()
		local lsock = assert(core.tcp_listen("127.0.0.1", 0))
		lsock:close()
		lsock:close()
	end)

	it("raises 'socket is closed' for a method after close", function()
		local lsock = assert(core.tcp_listen("127.0.0.1", 0))
		lsock:close()
		for _, m in ipairs { "accept", "connected", "fd", "recv", "shutdown", "local_address", "peer_address" } do
			assert.matches("socket is closed", H.error_of(lsock[m], lsock), 1, true)
		end
		assert.matches("socket is closed", H.error_of(lsock.send, lsock, "x"), 1, true)
	end)

	it("is collected without close, and gives its file descriptor back", function()
		collectgarbage("collect")
		local before = H.open_fds()
		for _ = 1, 200 do
			local lsock = core.tcp_listen("127.0.0.1", 0)
			local _, port = lsock:local_address()
			core.tcp_connect("127.0.0.1", port)
		end
		collectgarbage("collect")
		collectgarbage("collect")
		assert.is_true(H.open_fds() <= before + 2)
	end)

	it("has __close and __gc metamethods", function()
		local lsock = assert(core.tcp_listen("127.0.0.1", 0))
		local mt = getmetatable(lsock)
		assert.is_function(mt.__gc)
		assert.is_function(mt.__close)
		if _VERSION == "Lua 5.4" then
			local f = assert(load([[
				local s = ...
				do local x <close> = s end
				return tostring(s)
			]]))
			assert.matches("closed", f(lsock), 1, true)
		end
		lsock:close()
	end)

	-- A Session over a socket reads ahead: GnuTLS would read a record's
	-- header and its body in two recv calls; the session reads what has
	-- arrived at once and keeps the rest, which pending() counts and recv
	-- returns without the socket ever becoming readable again.
	it("under a Session over it, is read ahead: records that came together need no second readiness", function()
		local P = H.pki()
		local got = H.run(function()
			local tls = H.tls
			local c, s, lsock = connected_pair()
			local ctx = core.context("server")
			assert(ctx:add_keypair(H.readfile(P .. "server-chain.pem"), H.readfile(P .. "server.key")))
			local srv = core.session(ctx, { fd = s:fd() })
			local cli = assert(tls.session { role = "client", cafile = P .. "ca.pem", server_name = "localhost" })
			local function flush()
				local out = cli:drain()
				local at = 1
				while at <= #out do
					local n = c:send(out, at)
					if n then at = at + n elseif not wait(c, "w") then error("send: timeout") end
				end
			end
			local done_c, done_s
			for _ = 1, 50 do
				done_c = done_c or cli:handshake()
				flush()
				local ok, msg, code = srv:handshake()
				if not ok and code ~= "wantread" and code ~= "wantwrite" then error(msg) end
				done_s = done_s or ok
				if done_c and done_s then break end
				local data = c:recv()
				if data then cli:feed(data) elseif not done_c then wait(c, "r", 1) end
			end
			assert(done_c and done_s, "handshake did not complete")
			-- the session tickets the server sent: the client reads them
			-- along the way, it does not matter here
			for _, line in ipairs { "one\n", "two\n", "three\n" } do assert(cli:send(line)) end
			flush() -- three records, one write
			assert(wait(s, "r"))
			local r = { first = srv:recv() }
			r.pending = srv:pending()
			r.readable = wait(s, "r", 0.05) or false -- nothing more is coming
			r.second, r.third = srv:recv(), srv:recv()
			r.after = { srv:recv() }
			r.pending_after = srv:pending()
			srv:close() ctx:close() c:close() s:close() lsock:close()
			return r
		end)
		assert.equal("one\n", got.first)
		assert.is_true(got.pending >= 2 * #"two\n")
		assert.is_false(got.readable)
		assert.equal("two\n", got.second)
		assert.equal("three\n", got.third)
		assert.is_nil(got.after[1])
		assert.equal("wantread", got.after[3])
		assert.equal(0, got.pending_after)
	end)
end)
