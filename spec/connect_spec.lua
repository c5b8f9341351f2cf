-- luatls.connect and luatls.listen options: where trust comes from, several
-- key pairs on one server, addresses and names.
local H = require "helper"
local tls = H.tls

local P

local function server(opts, handler)
	local o = { port = 0, certificate = P .. "server-chain.pem", key = P .. "server.key" }
	for k, v in pairs(opts or {}) do o[k] = v end
	local srv = assert(tls.listen(o, handler or function(conn)
		conn:send((conn:info().server_name or "-") .. "\n")
	end))
	local _, port = srv:address()
	return port, srv
end

describe("connect", function()
	setup(function() P = H.pki() end)

	it("trusts a CA directory given as capath", function()
		local dir = H.tmpdir()
		H.writefile(dir .. "/root.pem", H.readfile(P .. "ca.pem"))
		local info = H.run(function()
			local conn = assert(tls.connect { host = "localhost", port = server(), capath = dir })
			local i = conn:info()
			conn:close()
			return i
		end)
		assert.is_true(info.verified)
	end)

	it("trusts PEM text given as ca", function()
		local info = H.run(function()
			local conn = assert(tls.connect { host = "localhost", port = server(), ca = H.readfile(P .. "ca.pem") })
			return conn:info()
		end)
		assert.is_true(info.verified)
	end)

	it("uses the system trust store when no CA is given, which does not know the test CA", function()
		local msg, code = H.run(function()
			local _, m, c = tls.connect { host = "localhost", port = server() }
			return m, c
		end)
		assert.equal("verify", code)
		assert.matches("unknown CA", msg, 1, true)
	end)

	it("returns nil, message, 'file' for a cafile that does not exist", function()
		local msg, code = H.run(function()
			local _, m, c = tls.connect { host = "localhost", port = server(), cafile = P .. "nope.pem" }
			return m, c
		end)
		assert.equal("file", code)
		assert.matches("nope.pem", msg, 1, true)
	end)

	it("sends the host as server name, and none for an IP address", function()
		local by_name, by_ip = H.run(function()
			local port = server()
			local a = assert(tls.connect { host = "localhost", port = port, cafile = P .. "ca.pem" })
			local b = assert(tls.connect { host = "127.0.0.1", port = port, cafile = P .. "ca.pem" })
			return a:receive("*l"), b:receive("*l")
		end)
		assert.equal("localhost", by_name)
		assert.equal("-", by_ip)
	end)

	it("checks an IP address against the certificate's IP names, over IPv6 too", function()
		local v6 = H.run(function()
			local port = server { host = "::1" }
			local conn, err = tls.connect { host = "::1", port = port, cafile = P .. "ca.pem" }
			assert(conn, err)
			return conn:info()
		end)
		assert.is_true(v6.verified)
		assert.equal("[::1]", v6.peer_address:match("^(.*):%d+$") and "[" .. v6.peer_address:match("^(.*):%d+$") .. "]")
	end)

	it("dials address instead of resolving host, and verifies host", function()
		local info = H.run(function()
			local conn = assert(tls.connect { host = "localhost", address = "127.0.0.1", port = server(), cafile = P .. "ca.pem" })
			return conn:info()
		end)
		assert.is_true(info.verified)
		assert.equal("127.0.0.1", info.peer_address:match("^(.*):"))
	end)

	it("verifies server_name rather than host when both are given", function()
		local msg, code = H.run(function()
			local _, m, c = tls.connect { host = "localhost", server_name = "www.example.test", port = server(), cafile = P .. "ca.pem" }
			return m, c
		end)
		assert.equal("verify", code)
		assert.matches("www.example.test", msg, 1, true)
	end)
end)

describe("listen with several key pairs", function()
	setup(function() P = H.pki() end)

	local function serve_both()
		return server { certificates = {
			{ certificate = P .. "server-chain.pem", key = P .. "server.key" },
			{ certificate = P .. "server-rsa-chain.pem", key = P .. "server-rsa.key" },
		} }
	end

	it("gives an ECDSA certificate to a client that accepts it", function()
		local alg = H.run(function()
			local conn = assert(tls.connect { host = "localhost", port = serve_both(), cafile = P .. "ca.pem" })
			return (conn:peer_certificates()[1]:key())
		end)
		assert.equal("EC/ECDSA", alg)
	end)

	it("gives the RSA certificate to a client that only takes RSA signatures (gnutls-cli)", function()
		local rc, out = H.run(function()
			local port = serve_both()
			return H.exec("printf 'x\\n' | gnutls-cli --x509cafile=" .. P .. "ca.pem -p " .. port ..
				" --priority='NORMAL:-SIGN-ALL:+SIGN-RSA-SHA256:+SIGN-RSA-PSS-RSAE-SHA256:+SIGN-RSA-PSS-SHA256' localhost").wait(15)
		end)
		assert.equal(0, rc, out)
		assert.matches("Certificate%[0%] info:%s*\n[^\n]*RSA key 2048 bits", out)
	end)
end)
