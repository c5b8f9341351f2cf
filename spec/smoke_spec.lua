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
