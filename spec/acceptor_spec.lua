-- luatls.Acceptor: a server's accepts and handshakes, made in C (the
-- core's API under luatls.listen), against gnutls-cli and raw TCP peers.
local H = require "helper"
local core = H.core

local P = H.pki()

local function server_ctx()
	local ctx = core.context("server")
	assert(ctx:add_keypair(H.readfile(P .. "server-chain.pem"), H.readfile(P .. "server.key")))
	return ctx
end

-- An acceptor (id 1) on a loop of its own, over a new listening socket.
local function setup(seconds, drive, opts)
	local lp = core.loop { new = true }
	local lsock = assert(core.tcp_listen("127.0.0.1", 0))
	local _, port = lsock:local_address()
	local acc = core.acceptor(lp, 1, lsock, server_ctx(), opts or {}, seconds or 5, drive)
	return lp, lsock, acc, port
end

-- Steps the loop as an owner does (accept, then take until nothing is
-- left) until n connections are taken or secs pass: the taken ones.
local function take(lp, acc, n, secs)
	local got, fired, id = {}, {}, 100
	local deadline = lp:now() + (secs or 10)
	while #got < n and lp:now() < deadline do
		for i = 1, lp:step(0.05, fired) do
			assert.equal(1, fired[i]) -- the acceptor's id, and nothing else
			fired[i] = nil
		end
		assert(acc:accept())
		while true do
			id = id + 1
			local t = { id = id }
			t.sess, t.sock, t.w, t.fd, t.peer, t.ok, t.timed_out, t.deadline = acc:take(id)
			if not t.sess then break end
			got[#got + 1] = t
		end
	end
	return got
end

-- Steps the loop until pred() holds or secs pass; returns pred's value.
local function step_until(lp, pred, secs)
	local fired, deadline = {}, lp:now() + (secs or 10)
	local v = pred()
	while not v and lp:now() < deadline do
		lp:step(0.02, fired)
		v = pred()
	end
	return v
end

-- A raw TCP client, connected (the loop has to run for the accept).
local function raw_client(lp, port)
	local c = assert(core.tcp_connect("127.0.0.1", port))
	assert(step_until(lp, function() return c:connected() end, 5))
	return c
end

-- Closes a taken connection (if any), then each object given: clients,
-- the acceptor, the listening socket, the loop.
local function close_all(t, ...)
	if t then t.sock:close(t.sess:close()) end
	for i = 1, select("#", ...) do select(i, ...):close() end
end

-- What a raw client reads first: { data } or { code } ("closed": the end).
local function what_came(lp, c)
	return step_until(lp, function()
		local data, _, k = c:recv()
		if data or k ~= "wantread" then return { data = data, code = k } end
	end, 5)
end


describe("luatls.Acceptor", function()
	after_each(function() H.kill_all() end)

	it("accepts, makes the handshake in C, and hands over an established session", function()
		local lp, lsock, acc, port = setup()
		local client = H.exec("(printf 'ping\\n'; sleep 2) | gnutls-cli --x509cafile=" .. P .. "ca.pem -p " ..
			port .. " localhost")
		local got = take(lp, acc, 1)
		assert.equal(1, #got, client.output())
		local t = got[1]
		assert.is_true(t.ok)
		assert.is_false(t.timed_out)
		assert.equal("luatls.Session", getmetatable(t.sess).__name)
		assert.equal("luatls.Socket", getmetatable(t.sock).__name)
		assert.equal(t.fd, t.sock:fd())
		assert.matches("^luatls.Watcher %(io " .. t.id .. "%)", tostring(t.w))
		assert.is_false(t.w:active())
		assert.matches("^127%.0%.0%.1:%d+$", t.peer)
		assert.equal("TLS1.3", t.sess:info().version)
		assert.is_true(t.sess:handshake()) -- established: nothing held back
		assert.equal(0, acc:pending())
		-- the session is the stream's now: it carries the peer's bytes
		local line = step_until(lp, function() return (t.sess:recv()) end, 10)
		assert.equal("ping\n", line)
		assert.equal(5, t.sess:send("pong\n"))
		assert(step_until(lp, function() return client.output():find("pong", 1, true) end, 10), client.output())
		t.sess:bye()
		t.w:close()
		t.sock:close(t.sess:close())
		assert.equal(0, acc:close())
		lsock:close()
		lp:close()
	end)

	it("hands over a handshake past its deadline as timed out", function()
		local lp, lsock, acc, port = setup(0.2)
		local c = raw_client(lp, port) -- and says nothing
		local got = take(lp, acc, 1, 5)
		assert.equal(1, #got)
		assert.is_true(got[1].timed_out)
		assert.is_false(got[1].ok)
		assert.is_true(got[1].deadline <= lp:now())
		close_all(got[1], c, acc, lsock, lp)
	end)

	it("hands over a handshake that failed on the peer's garbage, with the failure for sess:handshake()", function()
		local lp, lsock, acc, port = setup()
		local c = raw_client(lp, port)
		assert(c:send("GET / HTTP/1.0\r\n\r\n"))
		local got = take(lp, acc, 1, 5)
		assert.equal(1, #got)
		assert.is_false(got[1].ok)
		assert.is_false(got[1].timed_out)
		local ok, msg, code = got[1].sess:handshake()
		assert.is_nil(ok)
		assert.is_string(msg)
		assert.is_not.equal("wantread", code)
		close_all(got[1], c, acc, lsock, lp)
	end)

	it("hands over every connection at once when it does not drive (handshakes that run Lua)", function()
		local lp, lsock, acc, port = setup(5, false)
		local c = raw_client(lp, port)
		local got = take(lp, acc, 1, 5)
		assert.equal(1, #got)
		assert.is_false(got[1].ok)
		assert.is_false(got[1].timed_out)
		-- no attempt made yet: the first is Lua's
		assert.same({ nil, "would block (read)", "wantread" }, { got[1].sess:handshake() })
		close_all(got[1], c, acc, lsock, lp)
	end)


	-- The owner takes the handshakes that are over before it accepts new
	-- connections (see listen): a take() is the owner's answer to a report
	-- as much as an accept() is, so the next handshake to end is reported.
	it("reports again once the owner has taken, before any accept()", function()
		local lp, lsock, acc, port = setup(0.5)
		local client = H.exec("(printf 'ping\\n'; sleep 2) | gnutls-cli --x509cafile=" .. P .. "ca.pem -p " ..
			port .. " localhost")
		-- connected, and says nothing: its handshake times out (no turn
		-- of the loop yet, which would see the acceptor's report)
		local silent = assert(core.tcp_connect("127.0.0.1", port))
		-- steps until the acceptor reports (its id fires), at most 5 s
		local function reported()
			local got, deadline = {}, lp:now() + 5
			while lp:now() < deadline do
				for i = 1, lp:step(0.02, got) do if got[i] == 1 then return true end end
			end
			return false
		end
		local first
		while not first and reported() do -- as listen does: take, then accept
			first = acc:take(101)
			if not first then assert(acc:accept()) end
		end
		assert(first, client.output())
		assert.equal(1, acc:pending()) -- the silent one, in its handshake
		-- no accept() from here: the timeout is reported all the same
		assert.is_true(reported())
		local sess, sock, w, _, _, ok, timed_out = acc:take(102)
		assert.is_false(ok)
		assert.is_true(timed_out)
		w:close()
		sock:close(sess:close())
		close_all(nil, silent, acc, lsock, lp)
	end)

	-- libev leaves a descriptor registered with epoll after its watcher
	-- stops; a connection that gets the number of one just closed must have
	-- it registered anew, or its watcher would never fire. The acceptor
	-- lets libev keep a registration only for a descriptor it watched.
	it("hands over a watcher that fires on a descriptor number the last connection used", function()
		local lp, lsock, acc, port = setup(5, false)
		local ca = raw_client(lp, port)
		local a = take(lp, acc, 1, 5)[1]
		a.w:start()
		lp:step(0, {}) -- registered with the backend
		local cb = raw_client(lp, port) -- waits in the backlog: no accept() yet
		assert(step_until(lp, function()
			local got = {}
			for i = 1, lp:step(0.05, got) do if got[i] == 1 then return true end end
		end, 5)) -- the acceptor says so
		a.w:close()
		a.sock:close(a.sess:close())
		-- no turn of the loop from here until b's watcher is started
		assert.equal(1, acc:accept())
		local b = {}
		b.sess, b.sock, b.w, b.fd = acc:take(7)
		assert.equal(a.fd, b.fd) -- the number used again
		b.w:start()
		assert(cb:send("x"))
		local fired = step_until(lp, function()
			local got = {}
			for i = 1, lp:step(0.05, got) do if got[i] == 7 then return true end end
		end, 5)
		assert.is_true(fired)
		b.w:close()
		close_all(b, ca, cb, acc, lsock, lp)
	end)
	it("closes the connection whose session cannot be made, says which and why, and goes on", function()
		local opts = { bogus = true }
		local lp, lsock, acc, port = setup(5, true, opts)
		local c = raw_client(lp, port)
		local n, err
		assert(step_until(lp, function()
			n, err = acc:accept()
			return err
		end, 5))
		assert.equal(0, n)
		assert.matches("^connection from 127%.0%.0%.1:%d+: .*unknown option 'bogus'", err)
		assert.equal(0, acc:pending())
		assert.equal("closed", what_came(lp, c).code)
		c:close()
		opts.bogus = nil -- the next one is served
		local client = H.exec("printf 'x\\n' | gnutls-cli --x509cafile=" .. P .. "ca.pem -p " .. port .. " localhost")
		local got = take(lp, acc, 1)
		assert.equal(1, #got, client.output())
		assert.is_true(got[1].ok)
		close_all(got[1], acc, lsock, lp)
	end)

	it("stops accepting on stop(), while the handshakes it has go on", function()
		local lp, lsock, acc, port = setup(0.3)
		local c1 = raw_client(lp, port)
		assert(step_until(lp, function()
			assert(acc:accept())
			return acc:pending() == 1
		end, 5))
		acc:stop()
		lsock:close() -- allowed once stopped
		assert.matches("stopped", tostring(acc))
		assert.equal(0, (acc:accept()))
		local got = take(lp, acc, 1, 5) -- the first still ends (past its deadline)
		assert.equal(1, #got)
		assert.is_true(got[1].timed_out)
		close_all(got[1], c1, acc, lp)
	end)

	it("refuses to accept on a listening socket closed before it was stopped", function()
		local lp, lsock, acc, port = setup()
		local c = raw_client(lp, port)
		-- the loop reports the connection waiting; nobody accepts it yet
		local fired = {}
		for _ = 1, 100 do
			if lp:step(0.05, fired) > 0 then break end
		end
		assert.equal(1, fired[1])
		lsock:close()
		assert.matches("listening socket was closed before the acceptor was stopped", H.error_of(acc.accept, acc))
		close_all(nil, c, acc, lp)
	end)

	it("closes the connections it still has on close(), once, and refuses use after", function()
		collectgarbage()
		collectgarbage()
		local before = H.open_fds()
		local lp, lsock, acc, port = setup(30)
		local c1, c2 = raw_client(lp, port), raw_client(lp, port)
		assert(step_until(lp, function()
			assert(acc:accept())
			return acc:pending() == 2
		end, 5))
		assert.matches("2 in handshake", tostring(acc))
		assert.equal(2, acc:close())
		assert.equal(0, acc:close())
		assert.matches("closed", tostring(acc))
		assert.matches("acceptor is closed", H.error_of(acc.accept, acc))
		assert.matches("acceptor is closed", H.error_of(acc.take, acc, 1))
		-- the clients see their connections end
		for _, c in ipairs { c1, c2 } do
			local r = what_came(lp, c)
			assert.is_nil(r.data)
			assert.equal("closed", r.code)
			c:close()
		end
		lsock:close()
		lp:close()
		assert.equal(before, H.open_fds())
	end)

	it("is collected with connections in handshake, in any order with its sessions and loop", function()
		collectgarbage()
		collectgarbage()
		local before = H.open_fds()
		local clients = {}
		do
			local lp, lsock, acc, port = setup(30)
			clients[1], clients[2] = raw_client(lp, port), raw_client(lp, port)
			assert(step_until(lp, function()
				assert(acc:accept())
				return acc:pending() == 2
			end, 5))
			acc:stop()
			lsock:close()
		end
		collectgarbage()
		collectgarbage()
		for _, c in ipairs(clients) do c:close() end
		assert.equal(before, H.open_fds())
	end)

	it("refuses bad arguments with clear errors", function()
		local lp = core.loop { new = true }
		local lsock = assert(core.tcp_listen("127.0.0.1", 0))
		local ctx = server_ctx()
		local e = function(...) return H.error_of(core.acceptor, ...) end
		assert.matches("luatls.Loop expected", e("loop", 1, lsock, ctx, {}, 5))
		assert.matches("positive integers", e(lp, 0, lsock, ctx, {}, 5))
		assert.matches("number expected", e(lp, "x", lsock, ctx, {}, 5))
		assert.matches("luatls.Socket expected", e(lp, 1, "sock", ctx, {}, 5))
		assert.matches("luatls.Context expected", e(lp, 1, lsock, {}, {}, 5))
		assert.matches("a server context expected", e(lp, 1, lsock, core.context("client"), {}, 5))
		assert.matches("table expected", e(lp, 1, lsock, ctx, "opts", 5))
		assert.matches("nan", e(lp, 1, lsock, ctx, {}, 0 / 0))
		assert.matches("non%-negative", e(lp, 1, lsock, ctx, {}, -1))
		local _, port = lsock:local_address()
		local c = assert(core.tcp_connect("127.0.0.1", port))
		assert.matches("a listening socket expected", e(lp, 1, c, ctx, {}, 5))
		c:close()
		local acc = core.acceptor(lp, 1, lsock, ctx, {}, 5)
		assert.matches("positive integers", H.error_of(acc.take, acc, -3))
		assert.matches("luatls.Acceptor expected", H.error_of(acc.take, lsock, 1))
		acc:close()
		lsock:close()
		local closed = core.loop { new = true }
		closed:close()
		local l2 = assert(core.tcp_listen("127.0.0.1", 0))
		assert.matches("loop is closed", e(closed, 1, l2, ctx, {}, 5))
		l2:close()
		lp:close()
	end)
end)
