-- The connection object: LuaSocket-style receive patterns and send, over a
-- luatls server and client on one loop.
local H = require "helper"
local tls = H.tls

local P = H.pki()

local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack
-- Inside run: a server whose handler(conn) is given; returns a connected
-- client connection.
local function client_for(handler)
	local srv = assert(tls.listen({ port = 0, certificate = P .. "server-chain.pem", key = P .. "server.key" },
		handler))
	local _, port = srv:address()
	local conn = assert(tls.connect { host = "localhost", port = port, cafile = P .. "ca.pem" })
	conn:settimeout(5)
	return conn
end

-- A server that sends each piece as its own record, a little apart, then
-- closes; the client runs fn(conn) and its results are returned.
local function receive_from(pieces, fn)
	return H.run(function()
		local conn = client_for(function(c)
			for _, piece in ipairs(pieces) do
				c:send(piece)
				tls.sleep(0.01)
			end
		end)
		local r = pack(fn(conn))
		conn:close()
		return unpack(r, 1, r.n)
	end)
end

-- A server that receives what the client sends until it closes; fn(conn)
-- sends; returns what the server got and fn's results.
local function send_to(fn)
	return H.run(function()
		local got
		local done = false
		local conn = client_for(function(c)
			got = c:receive("*a")
			done = true
		end)
		local r = pack(fn(conn))
		conn:close()
		local deadline = tls.now() + 5
		while not done and tls.now() < deadline do tls.sleep(0.01) end
		return got, unpack(r, 1, r.n)
	end)
end

describe("receive", function()
	it("returns lines without their end of line for '*l', LF or CRLF", function()
		local a, b, c = receive_from({ "one\ntwo\r\nthree\n" }, function(conn)
			return conn:receive("*l"), conn:receive("*l"), conn:receive("*l")
		end)
		assert.equal("one", a)
		assert.equal("two", b)
		assert.equal("three", c)
	end)

	it("drops a CRLF split across two records, and keeps a CR inside a line", function()
		local a, b = receive_from({ "ab\r", "\nc\rd\n" }, function(conn)
			return conn:receive("*l"), conn:receive("*l")
		end)
		assert.equal("ab", a)
		assert.equal("c\rd", b)
	end)

	it("joins a line split across records", function()
		local line = receive_from({ "spl", "it li", "ne\nrest" }, function(conn)
			return conn:receive("*l")
		end)
		assert.equal("split line", line)
	end)

	it("treats 'l' and 'a' like '*l' and '*a', and '*l' as the default", function()
		local a, b, c = receive_from({ "x\ny\nz" }, function(conn)
			return conn:receive(), conn:receive("l"), conn:receive("a")
		end)
		assert.equal("x", a)
		assert.equal("y", b)
		assert.equal("z", c)
	end)

	it("returns an empty line for a bare end of line", function()
		local a, b = receive_from({ "\nafter\n" }, function(conn)
			return conn:receive("*l"), conn:receive("*l")
		end)
		assert.equal("", a)
		assert.equal("after", b)
	end)

	it("returns everything until the peer closes for '*a'", function()
		local all = receive_from({ "first ", "second ", "third" }, function(conn)
			return conn:receive("*a")
		end)
		assert.equal("first second third", all)
	end)

	it("returns exactly n bytes for a number, across records", function()
		local a, b, c = receive_from({ "abc", "defgh", "ij" }, function(conn)
			return conn:receive(4), conn:receive(5), conn:receive(0)
		end)
		assert.equal("abcd", a)
		assert.equal("efghi", b)
		assert.equal("", c)
	end)

	it("puts the prefix in front of what it returns, counted in n", function()
		local a, b = receive_from({ "abcdef\nrest" }, function(conn)
			return conn:receive(3, "XY"), conn:receive("*l", "P:")
		end)
		assert.equal("XYa", a)
		assert.equal("P:bcdef", b)
	end)

	it("returns a prefix longer than n whole, like LuaSocket, and keeps it out of the stream", function()
		local a, b = receive_from({ "abc\n" }, function(conn)
			return conn:receive(2, "LONGPREFIX"), conn:receive("*l")
		end)
		assert.equal("LONGPREFIX", a)
		assert.equal("abc", b)
	end)

	it("returns nil, 'closed', 'closed' and the partial data when the peer closes before n bytes", function()
		local data, msg, code, partial = receive_from({ "abcd" }, function(conn)
			return conn:receive(10)
		end)
		assert.is_nil(data)
		assert.equal("closed", msg)
		assert.equal("closed", code)
		assert.equal("abcd", partial)
	end)

	it("returns the partial line when the peer closes before the end of line", function()
		local data, _, code, partial = receive_from({ "no newline" }, function(conn)
			return conn:receive("*l")
		end)
		assert.is_nil(data)
		assert.equal("closed", code)
		assert.equal("no newline", partial)
	end)

	it("returns the partial data with 'timeout'", function()
		local data, msg, code, partial = H.run(function()
			local conn = client_for(function(c)
				c:send("abc")
				tls.sleep(1)
			end)
			conn:settimeout(0.2)
			local r = pack(conn:receive(10))
			conn:close()
			return unpack(r, 1, r.n)
		end)
		assert.is_nil(data)
		assert.equal("timeout", code)
		assert.matches("timeout", msg, 1, true)
		assert.equal("abc", partial)
	end)

	it("returns nil, message, 'closed' to a receive waiting when another coroutine closes the connection", function()
		local r = H.run(function()
			local conn = client_for(function(c) tls.sleep(1) end) -- sends nothing
			local got
			tls.spawn(function() got = pack(conn:receive("*l")) end)
			tls.sleep(0.05)
			conn:close()
			tls.sleep(0.02)
			return got
		end)
		assert.is_nil(r[1])
		assert.matches("closed while this call waited", r[2], 1, true)
		assert.equal("closed", r[3])
		assert.equal("", r[4])
	end)

	it("returns an empty string for '*a' once everything has been read", function()
		local a, b = receive_from({ "all" }, function(conn)
			return conn:receive("*a"), conn:receive("*a")
		end)
		assert.equal("all", a)
		assert.equal("", b)
	end)

	it("raises for an invalid pattern, naming it", function()
		local err1, err2, err3 = receive_from({}, function(conn)
			return H.error_of(conn.receive, conn, "*x"), H.error_of(conn.receive, conn, -1),
				H.error_of(conn.receive, conn, 1, 42)
		end)
		assert.matches("*x", err1, 1, true)
		assert.matches("#1", err2, 1, true)
		assert.matches("#2", err3, 1, true)
	end)
end)

describe("core.split_line", function()
	local split_line = require("luatls.core").split_line

	it("returns the line without LF or CRLF, and the rest", function()
		assert.same({ "ab", "cd" }, { split_line("ab\r\ncd") })
		assert.same({ "ab", "" }, { split_line("ab\n") })
		assert.same({ "", "x" }, { split_line("\nx") })
		assert.same({ "a\rb", "" }, { split_line("a\rb\n") })
	end)

	it("searches from a position, and returns nil without a line end from there", function()
		assert.same({ "a\nb", "" }, { split_line("a\nb\n", 3) })
		assert.is_nil(split_line("abc"))
		assert.is_nil(split_line(""))
		assert.is_nil(split_line("ab\n", 4))
	end)

	it("raises for a non-string, a position below 1 or one that is not an integer", function()
		assert.has_error(function() split_line(nil) end)
		assert.has_error(function() split_line({}) end)
		assert.error_matches(function() split_line("a\n", 0) end, "position must be 1 or more")
		assert.has_error(function() split_line("a\n", 1.5) end)
		assert.has_error(function() split_line("a\n", "x") end)
	end)
end)

describe("send", function()
	it("returns the index of the last byte sent", function()
		local got, n = send_to(function(conn) return conn:send("hello") end)
		assert.equal(5, n)
		assert.equal("hello", got)
	end)

	it("sends more than the socket buffers hold, waiting as it goes, all of it in order", function()
		local big = {}
		for i = 1, 8192 do big[i] = ("%07d\n"):format(i):rep(128) end -- 8 MiB
		big = table.concat(big)
		local got, n = send_to(function(conn) return conn:send(big) end)
		assert.equal(#big, n)
		assert.equal(#big, #got)
		assert.is_true(got == big)
	end)

	it("sends a server's answer larger than the socket buffers to a client that reads only later", function()
		local big = ("0123456789abcdef"):rep(4 * 65536) -- 4 MiB
		local got, msg = H.run(function()
			local conn = client_for(function(c) c:send(big) end)
			tls.sleep(0.2) -- the server's sends fill the socket meanwhile
			local data, err = conn:receive(#big)
			conn:close()
			return data, err
		end)
		assert.is_string(got, msg)
		assert.equal(#big, #got)
		assert.is_true(got == big)
	end)

	it("delivers all it sent before close, even when the peer sent data it never read", function()
		-- the server writes first; the client never reads it, sends 4 MiB and
		-- closes at once: a socket closed with unread bytes would be reset
		-- and drop the end of what it still had to send
		local big = ("0123456789abcdef"):rep(256 * 1024)
		local results = {}
		for round = 1, 3 do
			results[round] = H.run(function()
				local got
				local srv = assert(tls.listen({ port = 0, certificate = P .. "server-chain.pem", key = P .. "server.key" },
					function(c)
						c:send(("unread\n"):rep(1000))
						got = c:receive("*a")
					end))
				local _, port = srv:address()
				local conn = assert(tls.connect { host = "localhost", port = port, cafile = P .. "ca.pem" })
				tls.sleep(0.02) -- the server's bytes are in the client's socket by now
				assert.equal(#big, conn:send(big))
				conn:close()
				local deadline = tls.now() + 10
				while got == nil and tls.now() < deadline do tls.sleep(0.01) end
				srv:close()
				return got and #got
			end)
		end
		assert.same({ #big, #big, #big }, results)
	end)

	it("returns nil, message, 'closed' and the last byte sent when the peer goes away during a large send", function()
		local r = H.run(function()
			local result
			local srv = assert(tls.listen({ port = 0, certificate = P .. "server-chain.pem", key = P .. "server.key" },
				function(c)
					tls.sleep(0.05) -- the client is gone by then
					result = pack(c:send(("x"):rep(16 * 1024 * 1024)))
				end))
			local _, port = srv:address()
			local conn = assert(tls.connect { host = "localhost", port = port, cafile = P .. "ca.pem" })
			conn:getfd() -- the socket closes without close_notify: a peer that vanished
			conn:abort()
			local deadline = tls.now() + 10
			while not result and tls.now() < deadline do tls.sleep(0.01) end
			srv:close()
			return result
		end)
		assert.is_nil(r[1])
		assert.is_string(r[2])
		assert.equal("closed", r[3])
		assert.is_number(r[4])
		assert.is_true(r[4] >= 0 and r[4] < 16 * 1024 * 1024)
	end)

	it("sends data[i..j] and returns j", function()
		local got, n = send_to(function(conn) return conn:send("0123456789", 3, 5) end)
		assert.equal(5, n)
		assert.equal("234", got)
	end)

	it("sends from i to the end when j is left out", function()
		local got, n = send_to(function(conn) return conn:send("0123456789", 8) end)
		assert.equal(10, n)
		assert.equal("789", got)
	end)

	it("counts a negative i from the end, like string.sub and LuaSocket", function()
		local got, n = send_to(function(conn) return conn:send("0123456789", -3) end)
		assert.equal(10, n)
		assert.equal("789", got)
	end)

	it("sends nothing for an empty string or an empty range, and returns the last index sent", function()
		local got, n = send_to(function(conn)
			local a, b = conn:send(""), conn:send("0123456789", 6, 5)
			return (a == 0 and b == 5) and conn:send("x") or nil
		end)
		assert.equal(1, n)
		assert.equal("x", got)
	end)

	it("raises for data that is not a string, naming the argument", function()
		local _, err = send_to(function(conn) return H.error_of(conn.send, conn, {}) end)
		assert.matches("#1", err, 1, true)
		assert.matches("string expected", err, 1, true)
	end)

	it("round-trips a 1 MB payload", function()
		local size = 1024 * 1024
		local parts = {}
		for i = 0, size / 256 - 1 do
			parts[#parts + 1] = string.char(i % 256):rep(255) .. "\n"
		end
		local payload = table.concat(parts)
		local echoed = H.run(function()
			local conn = client_for(function(c)
				local data = assert(c:receive(size))
				assert(c:send(data) == size)
			end)
			conn:settimeout(15)
			assert.equal(size, conn:send(payload))
			local back = conn:receive(size)
			conn:close()
			return back
		end, 25)
		assert.equal(#payload, #echoed)
		assert.is_true(payload == echoed)
	end)
end)

describe("the connection object", function()
	it("has a __tostring naming the type, the role and the peer", function()
		local open, closed = H.run(function()
			local conn = client_for(function() end)
			local s = tostring(conn)
			conn:close()
			return s, tostring(conn)
		end)
		assert.matches("luatls.Connection", open, 1, true)
		assert.matches("client", open, 1, true)
		assert.matches("127.0.0.1:%d+", open)
		assert.matches("closed", closed, 1, true)
	end)

	it("can be closed twice", function()
		local a, b = H.run(function()
			local conn = client_for(function() end)
			return conn:close(), conn:close()
		end)
		assert.is_true(a)
		assert.is_true(b)
	end)

	it("sends close_notify on close, so the peer gets a clean 'closed'", function()
		local code = H.run(function()
			local got
			local conn = client_for(function(c)
				local _, _, k = c:receive("*l")
				got = k
			end)
			conn:close()
			local deadline = tls.now() + 5
			while not got and tls.now() < deadline do tls.sleep(0.01) end
			return got
		end)
		assert.equal("closed", code)
	end)

	it("reports what was negotiated and who the peer is", function()
		local info = H.run(function()
			local conn = client_for(function() end)
			local i = conn:info()
			conn:close()
			return i
		end)
		assert.equal("client", info.role)
		assert.is_true(info.established)
		assert.is_string(info.version)
		assert.is_string(info.cipher)
		assert.is_true(info.verified)
		assert.matches("^127%.0%.0%.1:%d+$", info.peer_address)
	end)

	it("is collected when dropped without close, leaving nothing behind in the scheduler", function()
		local before, after, alive = H.run(function()
			local s = require("luatls.loop").default()
			local function entries() local n = 0 for _ in pairs(s.by_id) do n = n + 1 end return n end
			local srv = assert(tls.listen({ port = 0, certificate = P .. "server-chain.pem", key = P .. "server.key" },
				function() end))
			local _, port = srv:address()
			tls.sleep(0.01)
			local n0 = entries()
			local watchers = setmetatable({}, { __mode = "k" })
			for _ = 1, 20 do
				local conn = assert(tls.connect { host = "localhost", port = port, cafile = P .. "ca.pem" })
				watchers[conn.watcher] = true
			end
			tls.sleep(0.05) -- the server's side of each connection ends
			collectgarbage()
			collectgarbage()
			local left = 0
			for _ in pairs(watchers) do left = left + 1 end
			local n1 = entries()
			srv:close()
			return n0, n1, left
		end)
		assert.equal(before, after)
		assert.equal(0, alive)
	end)

	it("has __close, which closes it at the end of a Lua 5.4 block", function()
		local has_close, after = H.run(function()
			local conn = client_for(function() end)
			local f = getmetatable(conn).__close
			if _VERSION == "Lua 5.4" then
				assert(load([[ do local x <close> = ... end ]]))(conn)
			else
				f(conn)
			end
			return type(f), tostring(conn)
		end)
		assert.equal("function", has_close)
		assert.matches("closed", after, 1, true)
	end)
end)
