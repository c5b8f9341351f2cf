-- The README's opening example runs as written: only the file names and
-- the port are replaced with the test PKI's and a free one.
local H = require "helper"
local tls = H.tls

local interpreter = os.getenv("LUATLS_LUA") or (arg and arg[-1]) or "lua5.4"

local function first_lua_block(text)
	return text:match("```lua\n(.-)\n```")
end

describe("README.md", function()
	it("opens with a server and client example that runs and prints what was negotiated", function()
		local P = H.pki()
		local code = assert(first_lua_block(H.readfile("README.md")))
		local port = H.free_port()
		code = code:gsub('"server%.crt"', '"' .. P .. 'server-chain.pem"')
			:gsub('"server%.key"', '"' .. P .. 'server.key"')
			:gsub('"ca%.crt"', '"' .. P .. 'ca.pem"')
			:gsub("8443", tostring(port))
		local script = H.tmpdir() .. "/readme.lua"
		H.writefile(script, code)
		local rc, out = H.run(function()
			return H.exec(interpreter .. " '" .. script .. "'").wait(20)
		end)
		assert.equal(0, rc, out)
		assert.equal("HELLO\tTLS1.3\tTLS_AES_128_GCM_SHA256\n", out)
	end)
end)
