-- luatls.Session over the in-memory transport: two sessions pump bytes
-- between feed() and drain(), no sockets, no loop.
local H = require "helper"
local tls, core = H.tls, H.core

local P = H.pki()

local function client(opts)
	local o = { role = "client", cafile = P .. "ca.pem", server_name = "localhost" }
	for k, v in pairs(opts or {}) do o[k] = v end
	return assert(tls.session(o))
end

local function server(opts)
	local o = { role = "server", certificate = P .. "server-chain.pem", key = P .. "server.key" }
	for k, v in pairs(opts or {}) do o[k] = v end
	return assert(tls.session(o))
end

local function blocked(code)
	return code == "wantread" or code == "wantwrite"
end

-- Runs both handshakes, moving bytes between the two, until each side has
-- finished or failed. Returns { ok, msg, code } for the client and server.
local function pump(c, s)
	local a, b
	for _ = 1, 20 do
		a = { c:handshake() }
		s:feed(c:drain())
		b = { s:handshake() }
		c:feed(s:drain())
		if (a[1] or not blocked(a[3])) and (b[1] or not blocked(b[3])) then break end
	end
	return a, b
end

local function pair(copts, sopts)
	local c, s = client(copts), server(sopts)
	local a, b = pump(c, s)
	assert(a[1], a[2])
	assert(b[1], b[2])
	return c, s
end

-- Receives what the peer already sent: retries while the session is busy
-- with post-handshake messages (session tickets).
local function recv(sess)
	local data, msg, code
	for _ = 1, 10 do
		data, msg, code = sess:recv()
		if data or not blocked(code) then break end
	end
	return data, msg, code
end

describe("luatls.Session", function()
	it("is made by tls.session and by core.session from a context", function()
		local s = server()
		assert.equal("luatls.Session", getmetatable(s).__name)
		local ctx = core.context("client")
		local raw = core.session(ctx)
		assert.equal(getmetatable(s), getmetatable(raw))
		raw:close()
		ctx:close()
	end)

	it("has a __tostring naming the type, the role and the state", function()
		local c, s = client(), server()
		assert.matches("luatls.Session", tostring(c), 1, true)
		assert.matches("client", tostring(c), 1, true)
		assert.matches("server", tostring(s), 1, true)
		assert.matches("new", tostring(s), 1, true)
		pump(c, s)
		assert.matches("open", tostring(c), 1, true)
		c:close()
		assert.matches("closed", tostring(c), 1, true)
	end)

	it("tells a server what the client's hello offered, in the client's order", function()
		local c = client { policy = tls.policy { ciphers = { "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256" } } }
		local s = server()
		local before = s:offered()
		assert.same({ suites = {}, groups = {} }, before)
		pump(c, s)
		local offered = s:offered()
		-- IANA numbers: TLS_CHACHA20_POLY1305_SHA256 0x1303, TLS_AES_128_GCM_SHA256 0x1301; x25519 29
		local first13
		for _, id in ipairs(offered.suites) do
			if id == 0x1303 or id == 0x1301 then first13 = first13 or id end
		end
		assert.equal(0x1303, first13)
		assert.is_true(#offered.groups > 0)
		local has_x25519 = false
		for _, g in ipairs(offered.groups) do has_x25519 = has_x25519 or g == 29 end
		assert.is_true(has_x25519)
		-- a client never reads a hello, so its lists stay empty
		assert.same({ suites = {}, groups = {} }, c:offered())
		c:close()
		s:close()
	end)

	it("completes a handshake between a client and a server in memory", function()
		local c, s = pair()
		local ci, si = c:info(), s:info()
		assert.is_true(ci.established)
		assert.is_true(si.established)
		assert.equal(ci.version, si.version)
		assert.equal(ci.cipher, si.cipher)
		assert.is_true(ci.verified)
		assert.equal("localhost", si.server_name)
		assert.equal(2, ci.peer_certificates)
	end)

	-- Runs a TLS 1.3 handshake up to the client's last flight (its
	-- Finished), which it returns unsent.
	local function up_to_client_finished(c, s)
		c:handshake()
		s:feed(c:drain()) -- the ClientHello
		local ok, _, code = s:handshake()
		assert.is_nil(ok)
		assert.equal("wantread", code) -- its flight is out, the client's Finished is due
		c:feed(s:drain())
		assert.is_true(c:handshake())
		return c:drain()
	end

	it("opens a TLS 1.3 server only once the client's Finished has come", function()
		local c, s = client(), server()
		local finished = up_to_client_finished(c, s)
		assert.is_true(#finished > 0)
		for _ = 1, 2 do -- asked again with nothing new: still waiting
			local ok, _, code = s:handshake()
			assert.is_nil(ok)
			assert.equal("wantread", code)
			assert.is_false(s:info().established)
			assert.equal("", s:drain())
		end
		local n, _, code = s:send("too soon")
		assert.is_nil(n)
		assert.equal("handshake", code)
		s:feed(finished)
		assert.is_true(s:handshake())
		assert.is_true(s:info().established)
		assert.equal(2, c:send("hi"))
		s:feed(c:drain())
		assert.equal("hi", recv(s))
	end)

	-- Feeds the server the client's last flight in pieces: its
	-- ChangeCipherSpec alone, then the rest in halves. The server waits
	-- for the last piece.
	local function in_pieces(c, s)
		local finished = up_to_client_finished(c, s)
		assert.equal("\20\3\3\0\1\1", finished:sub(1, 6)) -- a ChangeCipherSpec first
		local half = 6 + math.floor((#finished - 6) / 2)
		for _, piece in ipairs { finished:sub(1, 6), finished:sub(7, half) } do
			s:feed(piece)
			local ok, _, code = s:handshake()
			assert.is_nil(ok)
			assert.equal("wantread", code)
			assert.is_false(s:info().established)
		end
		s:feed(finished:sub(half + 1))
		assert.is_true(s:handshake())
	end

	it("takes a client's last flight in pieces: full, resumed, and with a client certificate", function()
		in_pieces(client(), server())

		local first = pair()
		recv(first) -- the session tickets
		local c, s = client { session = assert(first:session_data()) }, server()
		in_pieces(c, s)
		assert.is_true(s:info().resumed)

		c = client { certificate = P .. "client-chain.pem", key = P .. "client.key" }
		s = server { cafile = P .. "ca.pem", policy = tls.policy { client_certificate = "require" } }
		in_pieces(c, s)
		local requested, sent = s:client_certificate()
		assert.is_true(requested)
		assert.is_true(sent)
	end)

	it("fails, rather than waits, when a client's ChangeCipherSpec is followed by garbage or by the end", function()
		for _, after in ipairs { "garbage!", false } do
			local c, s = client(), server()
			local finished = up_to_client_finished(c, s)
			s:feed(finished:sub(1, 6) .. (after or ""))
			if not after then s:feed() end -- the end of the stream
			local ok, msg, code = s:handshake()
			assert.is_nil(ok)
			assert.is_string(msg)
			assert.is_false(blocked(code), tostring(after) .. ": " .. tostring(code))
		end
	end)

	it("fails a TLS 1.3 server whose client's Finished was changed on the way", function()
		local c, s = client(), server()
		local finished = up_to_client_finished(c, s)
		local last = finished:byte(-1) -- of the last record's tag
		s:feed(finished:sub(1, -2) .. string.char(last % 2 == 0 and last + 1 or last - 1))
		local ok, msg, code = s:handshake()
		assert.is_nil(ok)
		assert.is_string(msg)
		assert.is_false(blocked(code))
		assert.is_false(s:info().established)
	end)

	it("carries data both ways after the handshake", function()
		local c, s = pair()
		assert.equal(5, c:send("hello"))
		s:feed(c:drain())
		assert.equal("hello", recv(s))
		assert.equal(5, s:send("world"))
		c:feed(s:drain())
		assert.equal("world", recv(c))
	end)

	it("returns data already fed with one recv, even after session tickets", function()
		local c, s = pair()
		s:send("back")
		c:feed(s:drain())
		-- everything the server sent is in the client's buffer: no need to wait
		local data, msg, code = c:recv()
		assert.equal("back", data, tostring(msg) .. " (" .. tostring(code) .. ")")
	end)

	it("reports 'wantread' when nothing has been fed", function()
		local c, s = pair()
		recv(c) -- the session tickets
		local data, msg, code = s:recv()
		assert.is_nil(data)
		assert.equal("wantread", code)
		assert.matches("would block", msg, 1, true)
		data, msg, code = c:recv()
		assert.is_nil(data)
		assert.equal("wantread", code)
	end)

	it("receive_line splits what it has, reads only when it has no line, and keeps what it read", function()
		local c, s = pair()
		recv(c) -- the session tickets
		-- a line already buffered costs no read: the record fed stays
		c:send("second\r\n")
		s:feed(c:drain())
		assert.same({ "first", "rest\n" }, { s:receive_line("first\r\nrest\n") })
		-- none buffered: reads, and joins it to what it has
		assert.same({ "half and second", "" }, { s:receive_line("half and ") })
		-- nothing more has come: the buffer comes back with the failure
		assert.same({ nil, "would block (read)", "wantread", "part" }, { s:receive_line("part") })
		-- a line in pieces: the first read has no end of line
		c:send("no end yet")
		s:feed(c:drain())
		local line, msg, code, data = s:receive_line("")
		assert.is_nil(line)
		assert.equal("wantread", code, msg)
		assert.equal("no end yet", data)
		c:send(" ... now\nafter")
		s:feed(c:drain())
		assert.same({ "no end yet ... now", "after" }, { s:receive_line(data) })
		-- the end of the stream, with what was buffered
		c:bye()
		s:feed(c:drain())
		line, msg, code, data = s:receive_line("tail")
		assert.is_nil(line)
		assert.equal("closed", code, msg)
		assert.equal("tail", data)
	end)

	it("receive_line fails as recv does: before the handshake, on garbage, and for a bad argument", function()
		local c = client()
		assert.same({ nil, "the handshake is not done", "handshake", "x" }, { c:receive_line("x") })
		local _, s = pair()
		s:feed("\23\3\3\0\20" .. ("x"):rep(20))
		local line, msg, code, data = s:receive_line("kept")
		assert.is_nil(line)
		assert.is_string(msg)
		assert.is_false(blocked(code))
		assert.equal("kept", data)
		assert.matches("string expected", H.error_of(s.receive_line, s, {}))
		assert.matches("string expected", H.error_of(s.receive_line, s))
	end)

	it("sends a large message with one call, in records of at most 16 KiB", function()
		local c, s = pair()
		local big = ("0123456789abcdef"):rep(4096) -- 64 KiB
		local got = {}
		assert.equal(#big, c:send(big))
		local wire = c:drain()
		-- TLS records: type, version (2), length (2); application data
		-- is 23 on the wire in TLS 1.3, at most 16 KiB + 256 each
		local pos, records = 1, 0
		while pos <= #wire do
			local len = wire:byte(pos + 3) * 256 + wire:byte(pos + 4)
			assert.equal(23, wire:byte(pos))
			assert.is_true(len <= 16384 + 256)
			records = records + 1
			pos = pos + 5 + len
		end
		assert.equal(4, records)
		s:feed(wire)
		while true do
			local d, _, code = s:recv()
			if not d then assert.is_true(blocked(code)) break end
			got[#got + 1] = d
		end
		assert.equal(big, table.concat(got))
	end)

	it("gives the peer 'closed' after bye", function()
		local c, s = pair()
		assert.is_true(c:bye())
		s:feed(c:drain())
		local data, msg, code = recv(s)
		assert.is_nil(data)
		assert.equal("closed", code)
		assert.is_string(msg)
	end)

	it("fails, rather than waits, when the peer's stream ends mid-handshake", function()
		local c = client()
		local ok, _, code = c:handshake()
		assert.is_nil(ok)
		assert.equal("wantread", code)
		assert.is_true(#c:drain() > 0) -- the ClientHello
		c:feed() -- end of stream
		local msg
		ok, msg, code = c:handshake()
		assert.is_nil(ok)
		assert.is_string(msg)
		assert.is_false(blocked(code))
		assert.equal("GNUTLS_E_PREMATURE_TERMINATION", code)
	end)

	it("fails a server whose client goes away before its ClientHello", function()
		local s = server()
		s:feed()
		local ok, msg, code = s:handshake()
		assert.is_nil(ok)
		assert.is_string(msg)
		assert.is_false(blocked(code))
	end)

	it("returns nil, message, code for garbage fed to a server and answers with an alert", function()
		local s = server()
		s:feed(("\0\1this is not TLS\r\n"):rep(8))
		local ok, msg, code = s:handshake()
		assert.is_nil(ok)
		assert.is_string(msg)
		assert.is_string(code)
		assert.is_false(blocked(code))
		local alert = s:drain()
		assert.equal(21, alert:byte(1)) -- an alert record
		ok, msg, code = s:handshake()
		assert.is_nil(ok)
		assert.equal("failed", code)
		assert.matches("failed", msg, 1, true)
	end)

	it("returns nil, message, code for a garbage record after the handshake", function()
		local c, s = pair()
		s:feed("\23\3\3\0\20" .. ("x"):rep(20))
		local data, msg, code = s:recv()
		assert.is_nil(data)
		assert.is_string(msg)
		assert.is_false(blocked(code))
		data, msg, code = s:send("x")
		assert.is_nil(data)
		assert.equal("failed", code)
		c:close()
	end)

	it("returns nil, message, 'handshake' for send and recv before the handshake", function()
		local c = client()
		local n, msg, code = c:send("x")
		assert.is_nil(n)
		assert.equal("handshake", code)
		assert.matches("handshake", msg, 1, true)
		n, msg, code = c:recv()
		assert.is_nil(n)
		assert.equal("handshake", code)
	end)

	it("fails the client's handshake with a verification error, and explains it", function()
		local c, s = client { server_name = "other.example.test" }, server()
		local a = pump(c, s)
		assert.is_nil(a[1])
		assert.equal("GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR", a[3])
		local result = c:verify_result()
		assert.equal("other.example.test", result.hostname)
		local found = false
		for _, r in ipairs(result.reasons) do found = found or r == "hostname-mismatch" end
		assert.is_true(found)
	end)

	it("completes with verify = false and says what verification would have found", function()
		local c, s = pair({ verify = false, server_name = "other.example.test" })
		local info = c:info()
		assert.is_true(info.established)
		assert.is_false(c:verify_result().enforced)
		-- the chain is fine, the name is not: not verified, and why
		assert.is_false(info.verified)
		local found = false
		for _, r in ipairs(info.verify_reasons) do found = found or r == "hostname-mismatch" end
		assert.is_true(found, "verify_reasons: " .. table.concat(info.verify_reasons, ", "))
		s:close()
	end)

	it("hands out peer certificates that outlive the session", function()
		local c = pair()
		local chain = c:peer_certificates()
		c:close()
		c = nil
		collectgarbage("collect")
		collectgarbage("collect")
		assert.equal(2, #chain)
		assert.matches("CN=localhost", chain[1]:subject(), 1, true)
		assert.matches("intermediate", chain[2]:subject(), 1, true)
	end)

	it("can be closed twice", function()
		local c, s = pair()
		c:close()
		assert.has_no.errors(function() c:close() end)
		s:close()
		assert.has_no.errors(function() s:close() end)
		assert.matches("luatls.Session (client, closed)", tostring(c), 1, true)
		assert.matches("luatls.Session (server, closed)", tostring(s), 1, true)
	end)

	it("raises 'session is closed' for a method after close", function()
		local c = client()
		c:close()
		for _, m in ipairs { "handshake", "recv", "drain", "feed", "info", "bye", "pending",
			"verify_result", "peer_certificates", "fd" } do
			local err = H.error_of(c[m], c, "x")
			assert.matches("session is closed", err, 1, true)
		end
		assert.matches("session is closed", H.error_of(c.send, c, "x"), 1, true)
	end)

	it("raises for misuse of its arguments", function()
		local ctx = core.context("client")
		assert.matches("bogus", H.error_of(core.session, ctx, { bogus = 1 }), 1, true)
		assert.matches("'fd'", H.error_of(core.session, ctx, { fd = "x" }), 1, true)
		assert.matches("'verify'", H.error_of(core.session, ctx, { verify = "yes" }), 1, true)
		assert.matches("role", H.error_of(tls.session, { role = "bogus" }), 1, true)
		local c, s = pair()
		assert.matches("position", H.error_of(c.send, c, "abc", 0), 1, true)
		assert.matches("position", H.error_of(c.send, c, "abc", 5), 1, true)
		-- a method given something else than a Session, even another of
		-- luatls's objects or a table that borrows its metatable
		local lp = core.loop { new = true }
		local w = lp:timer(1)
		local sock = assert(core.tcp_listen("127.0.0.1", 0))
		for _, other in ipairs { ctx, w, sock, lp, {}, setmetatable({}, getmetatable(c)), "x", 1 } do
			assert.matches("luatls.Session expected", H.error_of(c.handshake, other), 1, true)
			assert.matches("luatls.Session expected", H.error_of(getmetatable(c).__tostring, other), 1, true)
		end
		-- and the other way round: another class's method given a session
		assert.matches("luatls.Watcher expected", H.error_of(w.stop, c), 1, true)
		assert.matches("luatls.Socket expected", H.error_of(sock.fd, c), 1, true)
		assert.matches("luatls.Loop expected", H.error_of(lp.now, c), 1, true)
		sock:close()
		w:close()
		lp:close()
		assert.matches("luatls.Context expected", H.error_of(core.session, c), 1, true)
		s:close()
		ctx:close()
	end)

	it("refuses feed and drain on a session over a file descriptor", function()
		local ctx = core.context("client")
		local sess = core.session(ctx, { fd = 0 })
		assert.matches("file descriptor", H.error_of(sess.feed, sess, "x"), 1, true)
		assert.matches("file descriptor", H.error_of(sess.drain, sess), 1, true)
		assert.equal(0, sess:fd())
		sess:close()
		ctx:close()
	end)

	it("is collected without close, open or half-way through a handshake", function()
		for i = 1, 200 do
			local c, s = client(), server()
			if i % 2 == 0 then pump(c, s) else c:handshake() end
		end
		collectgarbage("collect")
		collectgarbage("collect")
		local c, s = pair()
		assert.is_true(c:info().established and s:info().established)
	end)

	it("is collected in the same cycle as its context, in either order", function()
		local ca = H.readfile(P .. "ca.pem")
		for _ = 1, 200 do
			local ctx = core.context("client")
			ctx:trust_pem(ca)
			local sess = core.session(ctx, { server_name = "localhost", hostname = "localhost" })
			sess:handshake()
		end
		collectgarbage("collect")
		collectgarbage("collect")
		local c, s = pair()
		assert.is_true(c:info().established and s:info().established)
	end)

	it("has __close and __gc metamethods", function()
		local mt = getmetatable(client())
		assert.is_function(mt.__gc)
		assert.is_function(mt.__close)
		if _VERSION == "Lua 5.4" then
			local f = assert(load([[
				local s = ...
				do local x <close> = s end
				return tostring(s)
			]]))
			assert.matches("closed", f(client()), 1, true)
		end
	end)
end)
