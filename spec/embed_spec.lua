-- include/luatls.h: a C host links the module, hands over its libev loop,
-- and runs a luatls script on it while its own watchers keep firing.
local H = require "helper"

describe("a C host embedding luatls", function()
	it("runs a TLS exchange on the host's loop while the host's timer fires", function()
		local P = H.pki()
		local dir = H.tmpdir()
		local build = H.capture("make -s module LUA=lua5.4 2>&1; echo rc=$?")
		assert.truthy(build:find("rc=0", 1, true), build)
		local cc = H.capture("cc -std=c99 -Wall -Wextra -Werror -Iinclude -I/usr/include/lua5.4 examples/embed.c " ..
			"build/lua5.4/luatls/core.so -Wl,-rpath," .. H.capture("pwd"):gsub("%s+$", "") .. "/build/lua5.4/luatls " ..
			"-llua5.4 -lev -o '" .. dir .. "/embed' 2>&1; echo rc=$?")
		assert.truthy(cc:find("rc=0", 1, true), cc)
		H.writefile(dir .. "/script.lua", [[
			local tls = require "luatls"
			local P = arg[1]
			local srv = assert(tls.listen({ port = 0, certificate = P .. "server-chain.pem", key = P .. "server.key" },
				function(conn) conn:send(conn:receive("*l"):upper() .. "\n") end))
			local _, port = srv:address()
			tls.spawn(function()
				tls.sleep(0.1) -- long enough for the host's 10 ms timer to fire
				local conn = assert(tls.connect { host = "localhost", port = port, cafile = P .. "ca.pem" })
				conn:send("from the host\n")
				print(conn:receive("*l"))
				conn:close()
				tls.stop()
			end)
			tls.run()
		]])
		local out = H.capture("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='' timeout 20 '" .. dir ..
			"/embed' '" .. dir .. "/script.lua' '" .. P .. "' 2>&1; echo rc=$?")
		assert.equal("FROM THE HOST\nhost timer fired while luatls ran\nrc=0\n", out)
	end)
end)
