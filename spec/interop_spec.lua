-- Interop with real peers on 127.0.0.1: luatls as a client of gnutls-serv
-- and openssl s_server, luatls as a server for gnutls-cli, openssl s_client
-- and curl, and many luatls clients against one luatls server on one loop.
-- Every peer runs through H.exec/H.start_peer inside H.run, so it is killed
-- when its test ends.
local H = require "helper"
local tls = H.tls

local P -- the test PKI folder, ending in "/"

local unpack = table.unpack or unpack

-- H.run, keeping every result even when some are nil (H.run unpacks its
-- results by length, which holes make unreliable on LuaJIT).
local function run(fn, timeout)
	local t = H.run(function()
		return (function(...) return { n = select("#", ...), ... } end)(fn())
	end, timeout)
	return unpack(t, 1, t.n)
end

-- A PKI file as a shell word.
local function f(name)
	return "'" .. P .. name .. "'"
end

local function count(text, plain)
	local n, from = 0, 1
	while true do
		local i, j = text:find(plain, from, true)
		if not i then return n end
		n, from = n + 1, j + 1
	end
end

-- Peers ---------------------------------------------------------------------

local function gnutls_serv(port, args)
	return H.start_peer(("gnutls-serv --echo -p %d --x509certfile=%s --x509keyfile=%s %s")
		:format(port, f "server-chain.pem", f "server.key", args or ""), port)
end

-- openssl s_server -rev answers each line reversed: an echo we can check.
-- -cert takes only the leaf from a file, so the intermediate goes in -cert_chain.
local function openssl_server(port, args)
	return H.start_peer(("openssl s_server -accept 127.0.0.1:%d -cert %s -key %s -cert_chain %s -rev %s")
		:format(port, f "server.pem", f "server.key", f "int.pem", args or ""), port)
end

local TLS12 = "--priority=NORMAL:-VERS-ALL:+VERS-TLS1.2"

-- gnutls-cli stops at the end of its stdin without waiting for the answer:
-- the lines are written, then stdin stays open for hold seconds. (openssl
-- s_client gets -ign_eof instead: it then reads until the server closes.)
local function feed(lines, hold)
	return ("(printf '%s'; sleep %s) | "):format(lines, hold or 2)
end

local function gnutls_cli(port, args)
	return ("gnutls-cli --x509cafile=%s -p %d 127.0.0.1 --sni-hostname=localhost --verify-hostname=localhost %s")
		:format(f "ca.pem", port, args or "")
end

local function openssl_client(port, args)
	return ("openssl s_client -connect 127.0.0.1:%d -servername localhost -CAfile %s %s")
		:format(port, f "ca.pem", args or "")
end

-- luatls ----------------------------------------------------------------------

local connect = H.connect

-- A luatls server with the test server certificate; handshake failures are
-- recorded in server.failures as { message, code }.
local function listen(opts, handler)
	local failures = {}
	local o = { port = 0, certificate = P .. "server-chain.pem", key = P .. "server.key",
		handshake_timeout = 5, timeout = 5,
		on_handshake_error = function(msg, code) failures[#failures + 1] = { msg, code } end }
	for k, v in pairs(opts or {}) do o[k] = v end
	local srv = assert(tls.listen(o, handler))
	srv.failures = failures
	local _, port = srv:address()
	return srv, port
end

-- A handler that answers one line with "you said LINE" and records what the
-- server saw in seen.
local function you_said(seen)
	return function(conn)
		seen.info = conn:info()
		seen.certs = conn:peer_certificates()
		local line, err, code = conn:receive("*l")
		seen.line, seen.err, seen.code = line, err, code
		if line then conn:send("you said " .. line .. "\n") end
	end
end

-- A tiny HTTP/1.1 responder: reads the request line and headers, answers
-- with a Content-Length body.
local function http_responder(seen)
	return function(conn)
		seen.info = conn:info()
		seen.request = conn:receive("*l")
		seen.headers = {}
		while true do
			local line = conn:receive("*l")
			if not line or line == "" then break end
			local k, v = line:match("^([^:]+):%s*(.-)%s*$")
			if k then seen.headers[k:lower()] = v end
		end
		local body = "hello from luatls over " .. seen.info.version .. "\n"
		conn:send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " .. #body ..
			"\r\nConnection: close\r\n\r\n" .. body)
	end
end

local function curl(port, args)
	return ("curl -sS --max-time 5 --cacert %s --resolve localhost:%d:127.0.0.1 %s " ..
		"-w '\\nstatus=%%{http_code} http=%%{http_version}\\n' https://localhost:%d/hello")
		:format(f "ca.pem", port, args or "", port)
end

-- Connects without a client certificate to a TLS 1.3 server that requires
-- one, sends a line (after delay seconds, if given), then reads: returns
-- { connected, send = what send said, receive = what receive said, code }.
local function without_client_certificate(port, delay)
	local conn, err, code = connect(port)
	if not conn then return { connected = false, send = err, receive = err, code = code } end
	if delay then tls.sleep(delay) end
	local r = { connected = true }
	local ok, serr = conn:send("no certificate\n")
	r.send = ok and "sent" or serr
	local line, rerr, rcode = conn:receive("*l")
	r.receive, r.code = line and ("received " .. line) or rerr, rcode
	conn:close()
	return r
end

-- An echo round trip: one line out, one line back.
local function round_trip(conn, line)
	assert(conn:send(line .. "\n"))
	return conn:receive("*l")
end

-- Specs ---------------------------------------------------------------------

describe("interop", function()
	setup(function()
		P = H.pki()
		for _, cmd in ipairs { "gnutls-serv", "gnutls-cli", "openssl", "curl" } do
			assert(H.have(cmd), cmd .. " is not installed (see DEB_PACKAGES in the Makefile)")
		end
	end)

	describe("a luatls client against gnutls-serv", function()
		it("negotiates TLS 1.3 and echoes a line and 64 KiB of data", function()
			local line, big, info = run(function()
				local port = H.free_port()
				gnutls_serv(port)
				local conn = assert(connect(port))
				local line = round_trip(conn, "hello gnutls")
				local data = ("0123456789abcdef"):rep(4096)
				local big = round_trip(conn, data)
				local info = conn:info()
				conn:close()
				return line, big == data, info
			end)
			assert.equal("hello gnutls", line)
			assert.is_true(big)
			assert.equal("TLS1.3", info.version)
			assert.matches("^TLS_AES_%d+_GCM_SHA%d+$", info.cipher)
			assert.equal("X25519", info.group)
			assert.equal("localhost", info.server_name)
			assert.is_true(info.verified)
			assert.equal(2, info.peer_certificates)
		end)

		it("negotiates TLS 1.2 when the server allows only TLS 1.2", function()
			local line, info = run(function()
				local port = H.free_port()
				gnutls_serv(port, TLS12)
				local conn = assert(connect(port))
				local line = round_trip(conn, "hello tls 1.2")
				local info = conn:info()
				conn:close()
				return line, info
			end)
			assert.equal("hello tls 1.2", line)
			assert.equal("TLS1.2", info.version)
			assert.matches("^TLS_ECDHE_ECDSA_WITH_", info.cipher)
			assert.matches("GCM_SHA%d+$", info.cipher)
			assert.equal("X25519", info.group)
			assert.equal("ECDHE-ECDSA", info.kx)
			assert.is_true(info.verified)
		end)

		it("agrees on h2 when the server offers h2 and the client asks for h2 and http/1.1", function()
			local info = run(function()
				local port = H.free_port()
				gnutls_serv(port, "--alpn=h2 --alpn-fatal")
				local conn = assert(connect(port, { alpn = { "h2", "http/1.1" } }))
				assert.equal("ping", round_trip(conn, "ping"))
				local info = conn:info()
				conn:close()
				return info
			end)
			assert.equal("h2", info.alpn)
		end)

		it("sends the host name as SNI to a server that insists on it", function()
			local line, info = run(function()
				local port = H.free_port()
				gnutls_serv(port, "--sni-hostname=localhost --sni-hostname-fatal")
				local conn = assert(connect(port))
				local line = round_trip(conn, "sni ok")
				local info = conn:info()
				conn:close()
				return line, info
			end)
			assert.equal("sni ok", line)
			assert.equal("localhost", info.server_name)
			assert.is_true(info.verified)
		end)

		it("returns nil, message, code when the server refuses the SNI name with unrecognized_name", function()
			local conn, msg, code = run(function()
				local port = H.free_port()
				gnutls_serv(port, "--sni-hostname=localhost --sni-hostname-fatal")
				return connect(port, { server_name = "wrong.example.test" })
			end)
			assert.is_nil(conn)
			assert.equal("alert", code)
			assert.matches("unrecognized_name", msg, 1, true)
			assert.matches("server_name", msg, 1, true)
		end)

		it("authenticates with a client certificate when the server requires one", function()
			local line, info = run(function()
				local port = H.free_port()
				gnutls_serv(port, "--require-client-cert --verify-client-cert --x509cafile=" .. f "ca.pem")
				local conn = assert(connect(port, { certificate = P .. "client-chain.pem", key = P .. "client.key" }))
				local line = round_trip(conn, "with my certificate")
				local info = conn:info()
				conn:close()
				return line, info
			end)
			assert.equal("with my certificate", line)
			assert.equal("TLS1.3", info.version)
		end)

		-- Under TLS 1.3 the client's handshake is over before the server has
		-- looked at its (empty) certificate: the alert certificate_required
		-- (116) arrives after connect. The failures of the first send and
		-- read must say that a client certificate is needed.
		it("completes the TLS 1.3 handshake, then says clearly that gnutls-serv requires a client certificate", function()
			local r = run(function()
				local port = H.free_port()
				gnutls_serv(port, "--require-client-cert --verify-client-cert --x509cafile=" .. f "ca.pem")
				return without_client_certificate(port)
			end)
			assert.is_true(r.connected, r.send)
			assert.is_string(r.code)
			assert.not_equal("timeout", r.code)
			assert.matches("client certificate", r.send .. "\n" .. r.receive, 1, true)
		end)

		it("still reports why when the first send after the TLS 1.3 handshake finds the connection closed", function()
			local r = run(function()
				local port = H.free_port()
				gnutls_serv(port, "--require-client-cert --verify-client-cert --x509cafile=" .. f "ca.pem")
				return without_client_certificate(port, 0.3)
			end)
			assert.is_true(r.connected, r.send)
			assert.is_string(r.code)
			assert.matches("client certificate", r.send .. "\n" .. r.receive, 1, true)
		end)

		it("fails the handshake with a clear message when gnutls-serv limited to TLS 1.2 requires a client certificate", function()
			local conn, msg, code = run(function()
				local port = H.free_port()
				gnutls_serv(port, TLS12 .. " --require-client-cert --verify-client-cert --x509cafile=" .. f "ca.pem")
				return connect(port)
			end)
			assert.is_nil(conn)
			assert.is_string(code)
			assert.not_equal("cipher", code)
			assert.matches("client certificate", msg, 1, true)
		end)
	end)

	describe("a luatls client against openssl s_server", function()
		it("negotiates TLS 1.3 and gets its line back reversed", function()
			local line, info = run(function()
				local port = H.free_port()
				openssl_server(port)
				local conn = assert(connect(port))
				local line = round_trip(conn, "hello openssl")
				local info = conn:info()
				conn:close()
				return line, info
			end)
			assert.equal(("hello openssl"):reverse(), line)
			assert.equal("TLS1.3", info.version)
			assert.matches("^TLS_AES_%d+_GCM_SHA%d+$", info.cipher)
			assert.equal("X25519", info.group)
			assert.equal("localhost", info.server_name)
			assert.is_true(info.verified)
			assert.equal(2, info.peer_certificates)
		end)

		it("negotiates TLS 1.2 against s_server -tls1_2", function()
			local line, info = run(function()
				local port = H.free_port()
				openssl_server(port, "-tls1_2")
				local conn = assert(connect(port))
				local line = round_trip(conn, "tls12")
				local info = conn:info()
				conn:close()
				return line, info
			end)
			assert.equal("21slt", line)
			assert.equal("TLS1.2", info.version)
			assert.matches("^TLS_ECDHE_ECDSA_WITH_", info.cipher)
			assert.matches("GCM_SHA%d+$", info.cipher)
			assert.equal("X25519", info.group)
			assert.is_true(info.verified)
		end)

		it("agrees on h2 when s_server offers h2", function()
			local info = run(function()
				local port = H.free_port()
				openssl_server(port, "-alpn h2")
				local conn = assert(connect(port, { alpn = { "h2", "http/1.1" } }))
				assert.equal("gnip", round_trip(conn, "ping"))
				local info = conn:info()
				conn:close()
				return info
			end)
			assert.equal("h2", info.alpn)
		end)

		it("authenticates with a client certificate against s_server -Verify 1 (TLS 1.2)", function()
			local line, info, out = run(function()
				local port = H.free_port()
				local peer = openssl_server(port, "-tls1_2 -Verify 1 -CAfile " .. f "ca.pem")
				local conn = assert(connect(port, { certificate = P .. "client-chain.pem", key = P .. "client.key" }))
				local line = round_trip(conn, "abc")
				local info = conn:info()
				conn:close()
				return line, info, peer.output()
			end)
			assert.equal("cba", line)
			assert.equal("TLS1.2", info.version)
			assert.matches("Peer certificate: O = luatls test, CN = client.example.test", out, 1, true)
			assert.matches("Verification: OK", out, 1, true)
		end)

		it("completes the TLS 1.3 handshake, then says clearly that s_server -Verify 1 requires a client certificate", function()
			local r = run(function()
				local port = H.free_port()
				openssl_server(port, "-Verify 1 -CAfile " .. f "ca.pem")
				return without_client_certificate(port)
			end)
			assert.is_true(r.connected, r.send)
			assert.is_string(r.code)
			assert.not_equal("timeout", r.code)
			assert.matches("client certificate", r.send .. "\n" .. r.receive, 1, true)
		end)

		it("fails the handshake with a clear message when s_server -tls1_2 requires a client certificate", function()
			local conn, msg, code = run(function()
				local port = H.free_port()
				openssl_server(port, "-tls1_2 -Verify 1 -CAfile " .. f "ca.pem")
				return connect(port)
			end)
			assert.is_nil(conn)
			assert.is_string(code)
			assert.not_equal("cipher", code)
			assert.matches("client certificate", msg, 1, true)
		end)
	end)

	describe("a luatls server", function()
		it("answers gnutls-cli over TLS 1.3", function()
			local seen = {}
			local rc, out = run(function()
				local srv, port = listen({}, you_said(seen))
				local rc, out = H.exec(feed("hello\\n") .. gnutls_cli(port)).wait(10)
				assert.same({}, srv.failures)
				return rc, out
			end)
			assert.equal(0, rc, out)
			assert.matches("you said hello", out, 1, true)
			assert.matches("Status: The certificate is trusted", out, 1, true)
			assert.equal("hello", seen.line)
			assert.equal("TLS1.3", seen.info.version)
			assert.equal("localhost", seen.info.server_name)
			assert.equal("server", seen.info.role)
		end)

		it("answers gnutls-cli limited to TLS 1.2", function()
			local seen = {}
			local rc, out = run(function()
				local _, port = listen({}, you_said(seen))
				return H.exec(feed("hello\\n") .. gnutls_cli(port, TLS12)).wait(10)
			end)
			assert.equal(0, rc, out)
			assert.matches("you said hello", out, 1, true)
			assert.equal("TLS1.2", seen.info.version)
			assert.matches("^TLS_ECDHE_ECDSA_WITH_", seen.info.cipher)
		end)

		it("answers openssl s_client, which verifies the chain (Verify return code: 0)", function()
			local seen = {}
			local rc, out = run(function()
				local _, port = listen({}, you_said(seen))
				return H.exec("printf 'hello\\n' | " .. openssl_client(port, "-ign_eof")).wait(10)
			end)
			assert.equal(0, rc, out)
			assert.matches("Verify return code: 0 (ok)", out, 1, true)
			assert.matches("you said hello", out, 1, true)
			assert.matches("TLSv1.3", out, 1, true)
			assert.equal("hello", seen.line)
			assert.equal("localhost", seen.info.server_name)
		end)

		it("accepts openssl s_client -tls1_2", function()
			local seen = {}
			local rc, out = run(function()
				local _, port = listen({}, you_said(seen))
				return H.exec("printf 'hello\\n' | " .. openssl_client(port, "-ign_eof -tls1_2")).wait(10)
			end)
			assert.equal(0, rc, out)
			assert.matches("Protocol  : TLSv1.2", out, 1, true)
			assert.matches("Verify return code: 0 (ok)", out, 1, true)
			assert.matches("you said hello", out, 1, true)
			assert.equal("TLS1.2", seen.info.version)
		end)

		it("refuses openssl s_client -tls1_1 (TLS 1.2 is the minimum by default)", function()
			local seen, failures = {}, nil
			local rc, out = run(function()
				local srv, port = listen({}, you_said(seen))
				-- SECLEVEL=0 so that this OpenSSL really offers TLS 1.1
				local rc, out = H.exec("printf 'hello\\n' | " ..
					openssl_client(port, "-ign_eof -tls1_1 -cipher DEFAULT@SECLEVEL=0")).wait(10)
				failures = srv.failures
				return rc, out
			end)
			assert.not_equal(0, rc)
			assert.matches("alert protocol version", out, 1, true)
			assert.is_nil(seen.info)
			assert.equal(1, #failures)
			assert.equal("version", failures[1][2])
			assert.matches("offered TLS1.1; this side accepts TLS1.3, TLS1.2", failures[1][1], 1, true)
		end)

		it("answers curl over HTTP/1.1", function()
			local seen = {}
			local rc, out = run(function()
				local _, port = listen({}, http_responder(seen))
				return H.exec(curl(port)).wait(10)
			end)
			assert.equal(0, rc, out)
			assert.matches("hello from luatls over TLS1.3\n", out, 1, true)
			assert.matches("status=200 http=1.1", out, 1, true)
			assert.equal("GET /hello HTTP/1.1", seen.request)
			assert.matches("^localhost:%d+$", seen.headers.host)
			assert.matches("^curl/", seen.headers["user-agent"])
		end)

		it("agrees on http/1.1 by ALPN with curl --http1.1 when it offers h2 and http/1.1", function()
			local seen = {}
			local rc, out = run(function()
				local _, port = listen({ alpn = { "h2", "http/1.1" } }, http_responder(seen))
				return H.exec(curl(port, "--http1.1")).wait(10)
			end)
			assert.equal(0, rc, out)
			assert.matches("status=200 http=1.1", out, 1, true)
			assert.equal("http/1.1", seen.info.alpn)
		end)

		it("verifies the client certificate gnutls-cli sends when it requires one", function()
			local seen = {}
			local rc, out = run(function()
				local _, port = listen({ client_certificate = "require", cafile = P .. "ca.pem" }, you_said(seen))
				return H.exec(feed("hello\\n") .. gnutls_cli(port, ("--x509certfile=%s --x509keyfile=%s")
					:format(f "client-chain.pem", f "client.key"))).wait(10)
			end)
			assert.equal(0, rc, out)
			assert.matches("you said hello", out, 1, true)
			assert.is_true(seen.info.verified)
			assert.equal(2, seen.info.peer_certificates)
			assert.matches("CN=client.example.test", seen.certs[1]:subject(), 1, true)
		end)

		it("refuses a gnutls-cli client without a certificate when it requires one", function()
			local seen, failures = {}, nil
			local rc, out = run(function()
				local srv, port = listen({ client_certificate = "require", cafile = P .. "ca.pem" }, you_said(seen))
				local rc, out = H.exec(feed("hello\\n") .. gnutls_cli(port)).wait(10)
				failures = srv.failures
				return rc, out
			end)
			assert.not_equal(0, rc)
			assert.matches("Received alert [116]", out, 1, true)
			assert.not_matches("you said", out, 1, true)
			assert.is_nil(seen.info)
			assert.equal(1, #failures)
			assert.equal("verify", failures[1][2])
			assert.matches("no certificate", failures[1][1], 1, true)
		end)

		-- s_client renegotiates on a line "R". OpenSSL takes the server's
		-- no_renegotiation warning as fatal and gives up with handshake_failure;
		-- a server that renegotiated would show a second certificate check and
		-- go on echoing.
		it("refuses a client-initiated TLS 1.2 renegotiation from openssl s_client", function()
			local lines, err, code = {}, nil, nil
			local rc, out = run(function()
				local _, port = listen({}, function(conn)
					while true do
						local line, e, c = conn:receive("*l")
						if not line then err, code = e, c return end
						lines[#lines + 1] = line
						conn:send("echo " .. line .. "\n")
					end
				end)
				local rc, out = H.exec("(printf 'before\\n'; sleep 1; printf 'R\\n'; sleep 1; " ..
					"printf 'after\\n'; sleep 1) | " .. openssl_client(port, "-tls1_2")).wait(10)
				tls.sleep(0.2)
				return rc, out
			end)
			assert.matches("Secure Renegotiation IS supported", out, 1, true)
			assert.matches("echo before", out, 1, true)
			assert.matches("RENEGOTIATING", out, 1, true)
			assert.matches("no renegotiation", out, 1, true)
			assert.equal(1, count(out, "depth=0 "))
			assert.not_matches("echo after", out, 1, true)
			assert.not_equal(0, rc)
			assert.same({ "before" }, lines)
			-- the server learns at once why the connection ended
			assert.is_string(code)
			assert.not_equal("timeout", code)
			err = tostring(err)
			assert.is_truthy(err:find("alert", 1, true) or err:find("renegotiat", 1, true), err)
		end)

		it("refuses a TLS 1.2 rehandshake from gnutls-cli -e", function()
			local rc, out = run(function()
				local _, port = listen({}, you_said({}))
				return H.exec("sleep 2 | " .. gnutls_cli(port, "-e " .. TLS12)).wait(10)
			end)
			assert.matches("Received alert [100]: No renegotiation is allowed", out, 1, true)
			assert.matches("ReHandshake has failed", out, 1, true)
			assert.not_matches("ReHandshake was completed", out, 1, true)
			assert.not_equal(0, rc)
		end)

		it("serves 200 concurrent luatls clients on the same loop", function()
			local N = 200
			local limit = H.capture("ulimit -n"):gsub("%s", "")
			assert(limit == "unlimited" or tonumber(limit) >= 2 * N + 64,
				"ulimit -n is " .. limit .. ": too low for " .. N .. " connections (2 fds each)")
			local echoed, errs, accepted, served = run(function()
				local served = 0
				local srv, port = listen({ handshake_timeout = 60, timeout = 60 }, function(conn)
					local line = conn:receive("*l")
					if line then
						conn:send(line .. "\n")
						served = served + 1
					end
				end)
				local echoed, done, errs = 0, 0, {}
				for i = 1, N do
					tls.spawn(function()
						local conn, err = connect(port, { timeout = 60, handshake_timeout = 60 })
						if conn then
							local want = "client " .. i
							local line, rerr = round_trip(conn, want)
							if line == want then echoed = echoed + 1 else errs[#errs + 1] = tostring(rerr) end
							conn:close()
						else
							errs[#errs + 1] = err
						end
						done = done + 1
					end)
				end
				while done < N do tls.sleep(0.05) end
				return echoed, errs, srv.accepted, served
			end, 90) -- generous: under AddressSanitizer 400 handshake sides take tens of seconds
			assert.same({}, errs)
			assert.equal(N, echoed)
			assert.equal(N, accepted)
			assert.equal(N, served)
		end)
	end)
end)
