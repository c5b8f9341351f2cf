-- The rockspec builds and installs the module: `luarocks make` from this
-- checkout into a temporary tree, then a fresh interpreter requires it from
-- there and runs a handshake.
local H = require "helper"

local function rockspec()
	local env = {}
	local chunk = assert(loadfile("luatls-scm-1.rockspec", "t", env))
	if setfenv then setfenv(chunk, env) end
	chunk()
	return env
end

local interpreter = arg and arg[-1] or "lua5.4"
local version = _VERSION:match("%d+%.%d+")

describe("the rockspec", function()
	it("lists every C source file and every Lua module of the tree", function()
		local spec = rockspec()
		local listed = {}
		for _, f in ipairs(spec.build.modules["luatls.core"].sources) do listed[f] = true end
		for f in H.capture("ls src/*.c"):gmatch("%S+") do
			assert.is_true(listed[f], f .. " is missing from the rockspec")
		end
		for f in H.capture("ls lua/luatls/*.lua"):gmatch("%S+") do
			local name = f:match("lua/luatls/(.-)%.lua$")
			local module = name == "init" and "luatls" or "luatls." .. name
			assert.equal(f, spec.build.modules[module])
		end
	end)

	it("installs with luarocks make into a tree the module loads from", function()
		local tree = H.tmpdir()
		local build = H.tmpdir()
		-- build in a copy so the checkout stays free of objects
		assert.is_true(H.sh("cp -r src include lua luatls-scm-1.rockspec '" .. build .. "'"))
		local log = H.capture("cd '" .. build .. "' && luarocks --lua-version=" .. version ..
			" --tree '" .. tree .. "' make luatls-scm-1.rockspec 2>&1; echo rc=$?")
		assert.truthy(log:find("rc=0", 1, true), log)
		local out = H.capture(interpreter .. " -e \"" ..
			"package.path = '" .. tree .. "/share/lua/" .. version .. "/?.lua;" .. tree .. "/share/lua/" .. version .. "/?/init.lua' " ..
			"package.cpath = '" .. tree .. "/lib/lua/" .. version .. "/?.so' " ..
			"local tls = require 'luatls' " ..
			"local c = require 'luatls.core' " ..
			"io.write(tls.version, ' ', package.searchpath and package.searchpath('luatls.core', package.cpath) or 'ok')\" 2>&1")
		assert.truthy(out:find(tree, 1, true) or out:find("ok", 1, true), out)
		assert.truthy(out:match("^%d+%.%d+%.%d+"), out)
	end)
end)
