local H = require "helper"
local tls = H.tls

describe("a luatls server and client on one loop", function()
	it("echo a line and report what was negotiated", function()
		local P = H.pki()
		local info, line = H.run(function()
			local srv = assert(tls.listen({ port = 0, certificate = P .. "server-chain.pem", key = P .. "server.key" },
				function(conn)
					local l = conn:receive("*l")
					conn:send(l:upper() .. "\n")
				end))
			local _, port = srv:address()
			local conn = assert(tls.connect { host = "localhost", port = port, cafile = P .. "ca.pem" })
			conn:send("hello\n")
			local got = conn:receive("*l")
			local i = conn:info()
			conn:close()
			return i, got
		end)
		assert.equal("HELLO", line)
		assert.equal("TLS1.3", info.version)
		assert.equal("TLS_AES_128_GCM_SHA256", info.cipher)
		assert.is_true(info.verified)
	end)
end)

describe("require 'luatls'", function()
	it("loads luatls.x509 when it is first used, and no cipher-suite catalogue", function()
		-- a fresh interpreter: in this one the specs have loaded everything
		local interpreter = os.getenv("LUATLS_LUA") or (arg and arg[-1]) or "lua5.4"
		local script = H.tmpdir() .. "/lazy.lua"
		H.writefile(script, [[
			local core = require "luatls.core"
			local suites = core.cipher_suites
			local calls = 0
			core.cipher_suites = function(...) calls = calls + 1 return suites(...) end
			local tls = require "luatls"
			local before = package.loaded["luatls.x509"] ~= nil
			local srv = assert(tls.listen({ port = 0, certificate = arg[1] .. "server-chain.pem",
				key = arg[1] .. "server.key", policy = tls.policy { resumption = false } }, function() end))
			srv:close()
			local loaded = type(tls.x509.load) == "function"
			print(before, calls, loaded, package.loaded["luatls.x509"] == tls.x509)
		]])
		local out = H.capture(interpreter .. " '" .. script .. "' '" .. H.pki() .. "' 2>&1")
		assert.equal("false\t0\ttrue\ttrue\n", out)
	end)
end)
