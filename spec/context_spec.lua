-- luatls.Context (credentials shared by sessions) and luatls.Certificate:
-- constructors, failures, lifecycle, and who keeps whom alive.
local H = require "helper"
local tls, core = H.tls, H.core

local P = H.pki()

local function blocked(code)
	return code == "wantread" or code == "wantwrite"
end

-- Runs the handshakes of two in-memory sessions; returns whether both
-- finished, and the last results of each side.
local function handshake(c, s)
	local a, b
	for _ = 1, 20 do
		a = { c:handshake() }
		s:feed(c:drain())
		b = { s:handshake() }
		c:feed(s:drain())
		if (a[1] or not blocked(a[3])) and (b[1] or not blocked(b[3])) then break end
	end
	return a[1] == true and b[1] == true, a, b
end

local function server_context()
	local ctx = core.context("server")
	assert(ctx:add_keypair(H.readfile(P .. "server-chain.pem"), H.readfile(P .. "server.key")))
	return ctx
end

local function client_context()
	local ctx = core.context("client")
	assert(ctx:trust_pem(H.readfile(P .. "ca.pem")))
	return ctx
end

local function client_session(ctx)
	return core.session(ctx, { server_name = "localhost", hostname = "localhost" })
end

describe("luatls.Context", function()
	it("is made by core.context for a client or a server", function()
		local c, s = core.context("client"), core.context("server")
		assert.equal("luatls.Context", getmetatable(c).__name)
		assert.equal("client", c:info().role)
		assert.equal("server", s:info().role)
	end)

	it("raises for a role that is neither client nor server, naming the argument", function()
		local err = H.error_of(core.context, "bogus")
		assert.matches("#1", err, 1, true)
		assert.matches("bogus", err, 1, true)
	end)

	it("has a __tostring naming the type and the role", function()
		local ctx = server_context()
		assert.matches("luatls.Context", tostring(ctx), 1, true)
		assert.matches("server", tostring(ctx), 1, true)
		ctx:close()
		assert.matches("closed", tostring(ctx), 1, true)
	end)

	it("loads a certificate chain and its key", function()
		local ctx = server_context()
		assert.equal(1, ctx:info().keypairs)
	end)

	it("returns nil, message, code for a key that does not belong to the certificate", function()
		local ctx = core.context("server")
		local ok, msg, code = ctx:add_keypair(H.readfile(P .. "server.pem"), H.readfile(P .. "client.key"))
		assert.is_nil(ok)
		assert.equal("GNUTLS_E_CERTIFICATE_KEY_MISMATCH", code)
		assert.matches("does not belong", msg, 1, true)
		assert.equal(0, ctx:info().keypairs)
	end)

	it("returns nil, message, code for a certificate that does not parse", function()
		local ctx = core.context("server")
		local ok, msg, code = ctx:add_keypair("not a certificate", H.readfile(P .. "server.key"))
		assert.is_nil(ok)
		assert.is_string(msg)
		assert.matches("certificate", msg, 1, true)
		assert.matches("^GNUTLS_E_", code)
	end)

	it("returns nil, message, code for trust data with no CA in it", function()
		local ctx = core.context("client")
		local ok, msg, code = ctx:trust_pem("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
		assert.is_nil(ok)
		assert.is_string(msg)
		assert.matches("^GNUTLS_E_", code)
		assert.equal(0, ctx:info().trusted)
	end)

	it("counts the CAs it trusts", function()
		local ctx = core.context("client")
		assert.equal(1, ctx:trust_pem(H.readfile(P .. "ca.pem")))
		assert.equal(2, ctx:trust_pem(H.readfile(P .. "int-chain.pem")))
		assert.equal(3, ctx:info().trusted)
	end)

	it("returns nil, message, code for a bad priority string, pointing at the bad part", function()
		local ctx = core.context("client")
		local ok, msg, code = ctx:priority("NORMAL:+BOGUS-THING")
		assert.is_nil(ok)
		assert.equal("GNUTLS_E_INVALID_REQUEST", code)
		assert.matches("BOGUS", msg, 1, true)
		assert.is_true(ctx:priority(core.default_priority))
	end)

	it("keeps the ALPN protocols and raises for ones that are not strings", function()
		local ctx = core.context("server")
		ctx:alpn { "h2", "http/1.1" }
		assert.same({ "h2", "http/1.1" }, ctx:info().alpn)
		assert.matches("strings", H.error_of(ctx.alpn, ctx, { 1 }), 1, true)
		assert.matches("255", H.error_of(ctx.alpn, ctx, { "" }), 1, true)
		assert.same({ "h2", "http/1.1" }, ctx:info().alpn)
	end)

	it("raises for an unknown client-auth mode, naming it", function()
		local ctx = core.context("server")
		assert.matches("sometimes", H.error_of(ctx.client_auth, ctx, "sometimes"), 1, true)
	end)

	it("can be closed twice", function()
		local ctx = server_context()
		ctx:close()
		assert.has_no.errors(function() ctx:close() end)
		assert.matches("luatls.Context (closed)", tostring(ctx), 1, true)
	end)

	it("raises 'context is closed' for a method after close", function()
		local ctx = core.context("client")
		ctx:close()
		for _, m in ipairs { "info", "trust_system", "priority", "client_auth" } do
			assert.matches("context is closed", H.error_of(ctx[m], ctx, "none"), 1, true)
		end
		assert.matches("context is closed", H.error_of(ctx.add_keypair, ctx, "a", "b"), 1, true)
		assert.matches("context is closed", H.error_of(ctx.trust_pem, ctx, "a"), 1, true)
		assert.matches("context is closed", H.error_of(ctx.alpn, ctx, { "h2" }), 1, true)
		assert.matches("context is closed", H.error_of(core.session, ctx), 1, true)
	end)

	it("is collected without close", function()
		local cert, key = H.readfile(P .. "server-chain.pem"), H.readfile(P .. "server.key")
		for i = 1, 200 do
			local ctx = core.context(i % 2 == 0 and "server" or "client")
			if i % 2 == 0 then ctx:add_keypair(cert, key) end
			ctx:alpn { "h2" }
		end
		collectgarbage("collect")
		collectgarbage("collect")
		assert.equal(1, server_context():info().keypairs)
	end)

	it("keeps its credentials alive for its sessions after it is closed", function()
		local cctx, sctx = client_context(), server_context()
		local c, s = client_session(cctx), core.session(sctx)
		cctx:close()
		sctx:close()
		collectgarbage("collect")
		collectgarbage("collect")
		local ok, a, b = handshake(c, s)
		assert.is_true(ok, tostring(a[2]) .. " / " .. tostring(b[2]))
		assert.is_true(c:info().verified)
		assert.equal(5, c:send("hello"))
		s:feed(c:drain())
		local got
		for _ = 1, 5 do got = s:recv() if got then break end end
		assert.equal("hello", got)
	end)

	it("is kept alive by its sessions when its last Lua reference goes", function()
		local c, s = client_session(client_context()), core.session(server_context())
		collectgarbage("collect")
		collectgarbage("collect")
		local ok, a, b = handshake(c, s)
		assert.is_true(ok, tostring(a[2]) .. " / " .. tostring(b[2]))
	end)

	it("is collected in the same cycle as its sessions", function()
		for _ = 1, 100 do
			local cctx, sctx = client_context(), server_context()
			local c, s = client_session(cctx), core.session(sctx)
			local c2 = client_session(cctx)
			handshake(c, s)
			c2:handshake()
		end
		collectgarbage("collect")
		collectgarbage("collect")
		local ok = handshake(client_session(client_context()), core.session(server_context()))
		assert.is_true(ok)
	end)

	it("is collected with its sessions when both were closed in either order", function()
		for i = 1, 100 do
			local cctx, sctx = client_context(), server_context()
			local c, s = client_session(cctx), core.session(sctx)
			handshake(c, s)
			if i % 2 == 0 then
				cctx:close() c:close() sctx:close() s:close()
			else
				c:close() cctx:close() s:close() sctx:close()
			end
			assert.matches("closed", tostring(c), 1, true)
			assert.matches("closed", tostring(cctx), 1, true)
		end
		collectgarbage("collect")
		collectgarbage("collect")
		-- the credentials are all gone and new ones work as before
		local c, s = client_session(client_context()), core.session(server_context())
		handshake(c, s)
		assert.is_true(c:info().established)
	end)

	it("has __close and __gc metamethods", function()
		local mt = getmetatable(core.context("client"))
		assert.is_function(mt.__gc)
		assert.is_function(mt.__close)
		if _VERSION == "Lua 5.4" then
			local f = assert(load([[
				local ctx = ...
				do local x <close> = ctx end
				return tostring(ctx)
			]]))
			assert.matches("closed", f(core.context("client")), 1, true)
		end
	end)
end)

describe("contexts built from tls options", function()
	it("returns nil, message, 'file' for a CA file that does not exist", function()
		local s, msg, code = tls.session { role = "client", cafile = P .. "missing.pem" }
		assert.is_nil(s)
		assert.equal("file", code)
		assert.matches("missing.pem", msg, 1, true)
	end)

	it("returns nil, message, 'file' for a key file that does not exist", function()
		local s, msg, code = tls.session { role = "server", certificate = P .. "server.pem", key = P .. "missing.key" }
		assert.is_nil(s)
		assert.equal("file", code)
		assert.matches("missing.key", msg, 1, true)
	end)

	it("returns nil, message, code for a key that does not match the certificate", function()
		local s, msg, code = tls.session { role = "server", certificate = P .. "server.pem", key = P .. "client.key" }
		assert.is_nil(s)
		assert.equal("GNUTLS_E_CERTIFICATE_KEY_MISMATCH", code)
		assert.matches("key", msg, 1, true)
	end)

	it("raises for a server without a certificate", function()
		assert.matches("certificate", H.error_of(tls.session, { role = "server" }), 1, true)
	end)

	it("raises for a certificate without its key", function()
		local err = H.error_of(tls.session, { role = "server", certificate = P .. "server.pem" })
		assert.matches("'key'", err, 1, true)
	end)

	it("raises for an option of the wrong type, naming it", function()
		local err = H.error_of(tls.session, { role = "client", cafile = 42 })
		assert.matches("'cafile'", err, 1, true)
	end)
end)

describe("luatls.Certificate", function()
	local pem = H.readfile(P .. "server.pem")

	it("is made by core.certificate from PEM or DER", function()
		local cert = assert(core.certificate(pem))
		assert.equal("luatls.Certificate", getmetatable(cert).__name)
		assert.matches("CN=localhost", cert:subject(), 1, true)
		local again = assert(core.certificate(cert:der()))
		assert.equal(cert:fingerprint(), again:fingerprint())
	end)

	it("returns nil, message, code for data that is not a certificate", function()
		local cert, msg, code = core.certificate("not a certificate")
		assert.is_nil(cert)
		assert.matches("certificate", msg, 1, true)
		assert.matches("^GNUTLS_E_", code)
	end)

	it("has a __tostring naming the type and the subject", function()
		local cert = core.certificate(pem)
		assert.matches("luatls.Certificate", tostring(cert), 1, true)
		assert.matches("CN=localhost", tostring(cert), 1, true)
		cert:close()
		assert.matches("closed", tostring(cert), 1, true)
	end)

	it("can be closed twice", function()
		local cert = core.certificate(pem)
		cert:close()
		assert.has_no.errors(function() cert:close() end)
		assert.matches("luatls.Certificate (closed)", tostring(cert), 1, true)
	end)

	it("raises 'certificate is closed' for a method after close", function()
		local cert = core.certificate(pem)
		cert:close()
		for _, m in ipairs { "subject", "issuer", "not_after", "sans", "pem", "der", "spki_pin", "fingerprint" } do
			assert.matches("certificate is closed", H.error_of(cert[m], cert), 1, true)
		end
	end)

	it("is collected without close", function()
		local chain = H.readfile(P .. "server-chain.pem")
		for _ = 1, 200 do
			core.certificate(pem)
			core.certificates(chain)
		end
		collectgarbage("collect")
		collectgarbage("collect")
		assert.equal(2, #core.certificates(chain))
	end)
end)
