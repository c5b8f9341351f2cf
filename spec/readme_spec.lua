-- The README's opening example runs as written: only the file names and
-- the port are replaced with the test PKI's and a free one.
local H = require "helper"
local tls = H.tls

local interpreter = os.getenv("LUATLS_LUA") or (arg and arg[-1]) or "lua5.4"

local function first_lua_block(text)
	return text:match("```lua\n(.-)\n```")
end

local function lua_block_with(text, opening)
	for block in text:gmatch("```lua\n(.-)\n```") do
		if block:find(opening, 1, true) == 1 then return block end
	end
end

describe("README.md", function()
	it("shows a certificates example that runs: a private CA, a certificate, verification", function()
		local code = assert(lua_block_with(H.readfile("README.md"), 'local x509 = require "luatls.x509"'))
		local script = H.tmpdir() .. "/x509.lua"
		H.writefile(script, code)
		local out = H.capture(interpreter .. " '" .. script .. "' 2>&1; echo rc=$?")
		assert.matches("rc=0\n$", out)
		-- whole days left: 365 at the second of issue, 364 once a second has passed
		assert.matches("^CN=localhost\tCN=Example CA\t36[45]\tsha256/", out)
		assert.matches("\ntrue\tfalse\n", out)
		assert.matches("is for localhost, 127.0.0.1, not for www.example.test", out, 1, true)
	end)

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
