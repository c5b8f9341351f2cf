-- Failures come back as nil, message, code: a stable code and a sentence a
-- person can act on. Misuse raises, naming the argument.
local H = require "helper"
local tls, core = H.tls, H.core
local loop = require "luatls.loop"

local P = H.pki()


-- Polls (inside H.run) until pred() is true or timeout seconds pass.
local function wait_for(pred, timeout)
	local deadline = tls.now() + (timeout or 5)
	while not pred() and tls.now() < deadline do tls.sleep(0.02) end
	return pred()
end

-- A plain TCP server on 127.0.0.1 for one connection: behaviour(peer) runs
-- in its own coroutine once a client connects. peer.read() returns what the
-- client sent (nil, code on end or timeout), peer.send(data) sends raw
-- bytes. Returns the port.
local function raw_server(behaviour)
	local s = loop.default()
	local lsock = assert(core.tcp_listen("127.0.0.1", 0))
	local _, port = lsock:local_address()
	local lrec = s:io(lsock:fd(), "r")
	tls.spawn(function()
		local sock
		repeat
			sock = lsock:accept()
			if not sock then assert(s:wait_io(lrec, "r", s:now() + 5), "no client came") end
		until sock
		s:close_watcher(lrec)
		lsock:close()
		local rec = s:io(sock:fd(), "r")
		local peer = {}
		function peer.read(timeout)
			local deadline = s:now() + (timeout or 5)
			while true do
				local data, _, code = sock:recv()
				if data then return data end
				if code ~= "wantread" then return nil, code end
				if not s:wait_io(rec, "r", deadline) then return nil, "timeout" end
			end
		end
		function peer.send(data)
			return sock:send(data)
		end
		behaviour(peer)
		s:close_watcher(rec)
		sock:close()
	end)
	return port
end

-- A luatls server with the given certificate files; failures of its
-- handshakes are collected in the returned list. handler (optional) runs
-- for each connection before it reads to the end.
local function tls_server(opts, handler)
	local failures = {}
	local o = {
		port = 0,
		certificate = P .. "server-chain.pem", key = P .. "server.key",
		on_handshake_error = function(msg, code, peer)
			failures[#failures + 1] = { msg = msg, code = code, peer = peer }
		end,
	}
	for k, v in pairs(opts or {}) do o[k] = v end
	local srv = assert(tls.listen(o, function(conn)
		if handler then handler(conn) end
		conn:receive("*a")
	end))
	local _, port = srv:address()
	return port, failures, srv
end

local function connect(port, opts)
	local o = { host = "localhost", port = port, cafile = P .. "ca.pem" }
	for k, v in pairs(opts or {}) do o[k] = v end
	return tls.connect(o)
end

-- Connects to a luatls server serving cert/key; returns conn, msg, code.
local function connect_to(cert, key, copts)
	return H.run(function()
		local port = tls_server { certificate = P .. cert, key = P .. key }
		return connect(port, copts)
	end)
end

local function has(list, value)
	for _, v in ipairs(list) do if v == value then return true end end
	return false
end

describe("certificate verification failures", function()
	it("returns nil, message, 'verify' for an expired certificate, saying which one and when it expired", function()
		local conn, msg, code = connect_to("expired-chain.pem", "expired.key")
		assert.is_nil(conn)
		assert.equal("verify", code)
		assert.matches("expired", msg)
		assert.matches("2021%-01%-01", msg)
		assert.matches("CN=localhost", msg, 1, true)
	end)

	it("returns nil, message, 'verify' for a certificate that is not valid yet, saying from when", function()
		local conn, msg, code = connect_to("notyet-chain.pem", "notyet.key")
		assert.is_nil(conn)
		assert.equal("verify", code)
		assert.matches("not valid until", msg, 1, true)
		assert.matches("CN=localhost", msg, 1, true)
		local year = tonumber(os.date("!%Y")) + 5
		assert.is_truthy(msg:find(tostring(year), 1, true) or msg:find(tostring(year - 1), 1, true))
	end)

	it("returns nil, message, 'verify' for a chain from an unknown CA, naming that CA", function()
		local conn, msg, code = connect_to("untrusted-chain.pem", "untrusted.key")
		assert.is_nil(conn)
		assert.equal("verify", code)
		assert.matches("unknown CA", msg, 1, true)
		assert.matches("not a trusted CA", msg, 1, true)
		assert.matches("luatls unrelated root CA", msg, 1, true)
	end)

	it("returns nil, message, 'verify' for a self-signed certificate, saying it is self-signed", function()
		local conn, msg, code = connect_to("selfsigned.pem", "selfsigned.key")
		assert.is_nil(conn)
		assert.equal("verify", code)
		assert.matches("self%-signed", msg)
		assert.matches("not trusted", msg, 1, true)
	end)

	it("returns nil, message, 'verify' for a hostname mismatch, listing the certificate's names and the name wanted", function()
		local conn, msg, code = connect_to("wronghost-chain.pem", "wronghost.key")
		assert.is_nil(conn)
		assert.equal("verify", code)
		assert.matches("other.example.test", msg, 1, true)
		assert.matches("not for localhost", msg, 1, true)
	end)

	it("lets a self-signed certificate through with verify = false, reporting it unverified and why", function()
		local info = H.run(function()
			local port = tls_server { certificate = P .. "selfsigned.pem", key = P .. "selfsigned.key" }
			local conn = assert(connect(port, { verify = false }))
			local i = conn:info()
			conn:close()
			return i
		end)
		assert.is_false(info.verified)
		assert.is_true(#info.verify_reasons > 0)
		assert.is_true(has(info.verify_reasons, "signer-not-found"))
	end)

	it("reports a hostname mismatch as unverified, with the reason, when verify = false lets it through", function()
		local info = H.run(function()
			local port = tls_server { certificate = P .. "wronghost-chain.pem", key = P .. "wronghost.key" }
			local conn = assert(connect(port, { verify = false }))
			local i = conn:info()
			conn:close()
			return i
		end)
		assert.is_false(info.verified)
		assert.is_true(has(info.verify_reasons, "hostname-mismatch"),
			"verify_reasons: " .. table.concat(info.verify_reasons, ", "))
	end)

	it("tells the server too: on_handshake_error gets the client's alert", function()
		local failures, code = H.run(function()
			local port, fails = tls_server { certificate = P .. "untrusted-chain.pem", key = P .. "untrusted.key" }
			local _, _, c = connect(port)
			wait_for(function() return #fails > 0 end)
			return fails, c
		end)
		assert.equal("verify", code)
		assert.equal(1, #failures)
		assert.equal("alert", failures[1].code)
		assert.matches("unknown_ca", failures[1].msg, 1, true)
		assert.matches("^127%.0%.0%.1:%d+$", failures[1].peer)
	end)

	for _, case in ipairs {
		{ "expired-chain.pem", "expired.key", "certificate_expired" },
		{ "notyet-chain.pem", "notyet.key", "certificate_expired" },
		{ "selfsigned.pem", "selfsigned.key", "unknown_ca" },
		{ "wronghost-chain.pem", "wronghost.key", "bad_certificate" },
	} do
		it("sends the peer the alert that says why (" .. case[3] .. " for " .. case[1] .. ")", function()
			local failures = H.run(function()
				local port, fails = tls_server { certificate = P .. case[1], key = P .. case[2] }
				connect(port)
				wait_for(function() return #fails > 0 end)
				return fails
			end)
			assert.equal(1, #failures)
			assert.matches("(alert " .. case[3] .. ")", failures[1].msg, 1, true)
		end)
	end
end)

describe("negotiation failures", function()
	it("returns 'version' on both sides when a TLS 1.3-only server meets a TLS 1.2-only client", function()
		local cmsg, ccode, failures = H.run(function()
			local port, fails = tls_server { policy = tls.policy { min_version = "TLS1.3" } }
			local _, m, c = connect(port, { policy = tls.policy { max_version = "TLS1.2" } })
			wait_for(function() return #fails > 0 end)
			return m, c, fails
		end)
		assert.equal("version", ccode, cmsg)
		assert.matches("version", cmsg)
		assert.equal(1, #failures)
		assert.equal("version", failures[1].code, failures[1].msg)
		assert.matches("version", failures[1].msg)
	end)

	it("returns 'version' on both sides when a TLS 1.3-only client meets a TLS 1.2-only server", function()
		local cmsg, ccode, failures = H.run(function()
			local port, fails = tls_server { policy = tls.policy { max_version = "TLS1.2" } }
			local _, m, c = connect(port, { policy = tls.policy { min_version = "TLS1.3" } })
			wait_for(function() return #fails > 0 end)
			return m, c, fails
		end)
		assert.equal("version", ccode, cmsg)
		assert.matches("version", cmsg)
		assert.equal(1, #failures)
		assert.equal("version", failures[1].code, failures[1].msg)
	end)

	it("returns 'version' against an openssl s_server that speaks only TLS 1.1", function()
		assert.is_true(H.have("openssl"), "openssl is needed for this spec")
		local conn, msg, code = H.run(function()
			local port = H.free_port()
			H.start_peer("sleep 30 | openssl s_server -accept 127.0.0.1:" .. port ..
				" -cert '" .. P .. "server.pem' -cert_chain '" .. P .. "int.pem' -key '" ..
				P .. "server.key' -tls1_1 -cipher DEFAULT@SECLEVEL=0", port)
			return connect(port)
		end)
		assert.is_nil(conn)
		assert.equal("version", code, msg)
		assert.matches("TLS version", msg, 1, true)
	end)

	it("returns 'cipher' against a gnutls-serv that allows only CBC suites", function()
		assert.is_true(H.have("gnutls-serv"), "gnutls-serv is needed for this spec")
		local prio = "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-CBC:+AES-256-CBC:-MAC-ALL:+SHA1:+SHA256"
		local conn, msg, code = H.run(function()
			local port = H.free_port()
			H.start_peer("gnutls-serv --echo -p " .. port .. " --x509certfile='" .. P ..
				"server-chain.pem' --x509keyfile='" .. P .. "server.key' --priority=" .. prio, port)
			return connect(port)
		end)
		assert.is_nil(conn)
		assert.equal("cipher", code, msg)
		assert.matches("cipher suite", msg, 1, true)
	end)
end)

describe("transport failures", function()
	it("returns 'not_tls' when the peer answers in plain HTTP", function()
		local conn, msg, code = H.run(function()
			local port = raw_server(function(peer)
				peer.read()
				peer.send("HTTP/1.1 400 Bad Request\r\n\r\n")
			end)
			return connect(port)
		end)
		assert.is_nil(conn)
		assert.equal("not_tls", code, msg)
		assert.matches("does not speak TLS", msg, 1, true)
	end)

	it("returns 'ECONNREFUSED' naming host and port when nobody listens", function()
		local port = H.free_port()
		local conn, msg, code = H.run(function() return connect(port) end)
		assert.is_nil(conn)
		assert.equal("ECONNREFUSED", code)
		assert.matches("localhost", msg, 1, true)
		assert.matches(tostring(port), msg, 1, true)
		assert.matches("refused", msg, 1, true)
	end)

	it("returns 'timeout' when the server never answers the ClientHello", function()
		local conn, msg, code = H.run(function()
			local done = false
			local port = raw_server(function() wait_for(function() return done end, 10) end)
			local c, m, k = connect(port, { handshake_timeout = 0.5 })
			done = true
			return c, m, k
		end)
		assert.is_nil(conn)
		assert.equal("timeout", code)
		assert.matches("timeout", msg, 1, true)
		assert.matches("handshake", msg, 1, true)
	end)

	it("returns 'closed' when the server closes in the middle of the handshake", function()
		local conn, msg, code = H.run(function()
			local port = raw_server(function(peer) peer.read() end)
			return connect(port)
		end)
		assert.is_nil(conn)
		assert.equal("closed", code, msg)
		assert.matches("closed", msg, 1, true)
		assert.matches("handshake", msg, 1, true)
	end)

	it("gives a luatls server 'timeout' for a client that stalls in the handshake", function()
		local failures = H.run(function()
			local port, fails = tls_server { handshake_timeout = 0.3 }
			local sock = assert(core.tcp_connect("127.0.0.1", port))
			wait_for(function() return #fails > 0 end)
			sock:close()
			return fails
		end)
		assert.equal(1, #failures)
		assert.equal("timeout", failures[1].code)
		assert.matches("handshake", failures[1].msg, 1, true)
		assert.matches("in time", failures[1].msg, 1, true)
	end)

	it("gives a luatls server 'timeout', and runs no handler, for a client that stalls before its Finished", function()
		local failures, served, flight = H.run(function()
			local handled = 0
			local port, fails = tls_server({ handshake_timeout = 0.3 }, function() handled = handled + 1 end)
			local sock = assert(core.tcp_connect("127.0.0.1", port))
			local c = assert(tls.session { role = "client", cafile = P .. "ca.pem", server_name = "localhost" })
			c:handshake()
			assert(sock:send(c:drain())) -- the ClientHello; then it only reads
			local got, done = 0, false
			wait_for(function()
				local data = sock:recv()
				if data then
					got = got + #data
					c:feed(data)
					done = c:handshake() == true
				end
				return done
			end)
			wait_for(function() return #fails > 0 end)
			sock:close()
			c:close()
			return fails, handled, done and got
		end)
		assert.is_truthy(flight, "the server's flight did not come")
		assert.equal(0, served)
		assert.equal(1, #failures)
		assert.equal("timeout", failures[1].code)
		assert.matches("handshake", failures[1].msg, 1, true)
	end)

	it("returns nil, message, 'timeout' from receive when the server sends nothing", function()
		local data, msg, code = H.run(function()
			local port = tls_server()
			local conn = assert(connect(port))
			conn:settimeout(0.3)
			local d, m, c = conn:receive("*l")
			conn:close()
			return d, m, c
		end)
		assert.is_nil(data)
		assert.equal("timeout", code)
		assert.matches("timeout", msg, 1, true)
	end)

	it("returns nil, 'closed' from receive once the server has closed, after all its data", function()
		local all, data, msg, code = H.run(function()
			local srv = assert(tls.listen({ port = 0, certificate = P .. "server-chain.pem", key = P .. "server.key" },
				function(conn) conn:send("first\nsecond") end))
			local _, port = srv:address()
			local conn = assert(connect(port))
			assert.equal("first", conn:receive("*l"))
			local a = conn:receive("*a")
			local d, m, c = conn:receive("*l")
			conn:close()
			return a, d, m, c
		end)
		assert.equal("second", all)
		assert.is_nil(data)
		assert.equal("closed", code)
		assert.equal("closed", msg)
	end)

	it("returns nil, message, code from receive when the peer sends a garbage record after the handshake", function()
		local data, msg, code = H.run(function()
			-- the peer: a raw socket carrying an in-memory server session
			local port = raw_server(function(peer)
				local sess = assert(tls.session { role = "server",
					certificate = P .. "server-chain.pem", key = P .. "server.key" })
				repeat
					local ok, m, c = sess:handshake()
					peer.send(sess:drain())
					if not ok then
						assert(c == "wantread" or c == "wantwrite", m)
						sess:feed(assert(peer.read()))
					end
				until ok
				peer.send("\23\3\3\0\20" .. ("x"):rep(20))
				peer.read(2)
			end)
			local conn = assert(connect(port))
			conn:settimeout(2)
			local d, m, c = conn:receive("*l")
			conn:close()
			return d, m, c
		end)
		assert.is_nil(data)
		assert.is_string(msg)
		assert.is_string(code)
		assert.are_not.equal("timeout", code)
		assert.are_not.equal("closed", code)
	end)
end)

describe("misuse", function()
	it("raises for an unknown option name of connect, naming it", function()
		local err = H.error_of(tls.connect, { host = "localhost", port = 443, bogus = 1 })
		assert.matches("bogus", err, 1, true)
		assert.matches("unknown option", err, 1, true)
	end)

	it("raises for a port of the wrong type, naming the option", function()
		local err = H.error_of(tls.connect, { host = "localhost", port = "443" })
		assert.matches("'port'", err, 1, true)
	end)

	it("raises for a negative or NaN timeout of connect and listen, naming the option, before any socket", function()
		local before = H.open_fds()
		for _, v in ipairs { -1, 0 / 0 } do
			for _, k in ipairs { "timeout", "handshake_timeout", "connect_timeout" } do
				local err = H.error_of(tls.connect, { host = "127.0.0.1", port = 443, [k] = v })
				assert.matches("option '" .. k .. "' must be a non%-negative number of seconds", err)
			end
			for _, k in ipairs { "timeout", "handshake_timeout", "grace" } do
				local err = H.error_of(tls.listen, { port = 0, certificate = P .. "server-chain.pem",
					key = P .. "server.key", [k] = v }, function() end)
				assert.matches("option '" .. k .. "' must be a non%-negative number of seconds", err)
			end
		end
		assert.matches("must be a non%-negative number of seconds, got string",
			H.error_of(tls.listen, { port = 0, timeout = "5" }, function() end))
		assert.matches("non%-negative", H.error_of(tls.stop, 0 / 0))
		assert.equal(before, H.open_fds()) -- no listening socket made on the way
		loop.reset()
	end)

	it("raises for a negative or NaN settimeout", function()
		local errs = H.run(function()
			local port = tls_server()
			local conn = assert(connect(port))
			local e = { H.error_of(conn.settimeout, conn, -1), H.error_of(conn.settimeout, conn, 0 / 0) }
			assert.is_true(conn:settimeout(nil))
			conn:close()
			return e
		end)
		for _, err in ipairs(errs) do assert.matches("non%-negative number or nil expected", err) end
	end)

	it("raises when connect runs outside a coroutine, saying it must run inside one", function()
		local lsock = assert(core.tcp_listen("127.0.0.1", 0))
		local _, port = lsock:local_address()
		local err = H.error_of(tls.connect, { host = "127.0.0.1", port = port, cafile = P .. "ca.pem" })
		lsock:close()
		assert.matches("coroutine", err, 1, true)
		assert.matches("must run inside", err, 1, true)
	end)

	it("raises outside a coroutine before it dials the server", function()
		local lsock = assert(core.tcp_listen("127.0.0.1", 0))
		local _, port = lsock:local_address()
		H.error_of(tls.connect, { host = "127.0.0.1", port = port, cafile = P .. "ca.pem" })
		-- the kernel completes a connection even before accept: none must be there
		local sock, _, code = lsock:accept()
		if sock then sock:close() end
		lsock:close()
		assert.is_nil(sock)
		assert.equal("wantread", code)
	end)

	it("raises when listen has no handler, naming the argument", function()
		local err = H.error_of(tls.listen, { port = 0, certificate = P .. "server-chain.pem", key = P .. "server.key" })
		assert.matches("#2", err, 1, true)
		assert.matches("function expected", err, 1, true)
	end)

	it("raises for an unknown policy rule, naming it", function()
		local err = H.error_of(tls.policy, { bogus = 1 })
		assert.matches("bogus", err, 1, true)
		assert.matches("unknown rule", err, 1, true)
	end)

	it("raises 'closed' for a method of a closed connection", function()
		local errs = H.run(function()
			local port = tls_server()
			local conn = assert(connect(port))
			conn:close()
			return {
				H.error_of(conn.receive, conn, "*l"),
				H.error_of(conn.send, conn, "x"),
				H.error_of(conn.info, conn),
				H.error_of(conn.settimeout, conn, 1),
			}
		end)
		for _, err in ipairs(errs) do
			assert.matches("connection is closed", err, 1, true)
		end
	end)

	it("raises for settimeout with a string, naming the argument", function()
		local err = H.run(function()
			local port = tls_server()
			local conn = assert(connect(port))
			local e = H.error_of(conn.settimeout, conn, "x")
			conn:close()
			return e
		end)
		assert.matches("#1", err, 1, true)
		assert.matches("settimeout", err, 1, true)
	end)
end)
