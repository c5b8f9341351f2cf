-- bench/lprof.lua SCRIPT ARGS...: runs SCRIPT (e.g. bench/luatls_server.lua) with a
-- sampler of the Lua code: a count hook with a random period (20-180 VM
-- instructions) in every coroutine; writes the hottest functions and lines
-- to $LPROF_OUT (/tmp/lprof.txt) when the script calls os.exit. With
-- LPROF_EXACT=1 the hook runs on every VM instruction instead, and the
-- output starts with their total: divided by the connections served, what
-- one costs the interpreter (slow; for counts, not for timings).
local exact = os.getenv("LPROF_EXACT") == "1"
local counts, fcounts = {}, {}
local getinfo = debug.getinfo
local hook
local random, running, sethook = math.random, coroutine.running, debug.sethook
hook = function()
	if not exact then sethook(running(), hook, "", random(20, 180)) end
	local info = getinfo(2, "Sln")
	if info then
		local k = info.short_src .. ":" .. (info.currentline or 0)
		counts[k] = (counts[k] or 0) + 1
		local f = info.short_src .. ":" .. info.linedefined .. " " .. tostring(info.name)
		fcounts[f] = (fcounts[f] or 0) + 1
	end
end
local function dump()
	debug.sethook()
	local f = io.open(os.getenv("LPROF_OUT") or "/tmp/lprof.txt", "w")
	if exact then
		local total = 0
		for _, v in pairs(counts) do total = total + v end
		f:write(("VM instructions: %d\n"):format(total))
	end
	for _, t in ipairs { fcounts, counts } do
		local list, total = {}, 0
		for k, v in pairs(t) do list[#list + 1] = { k, v } total = total + v end
		table.sort(list, function(a, b) return a[2] > b[2] end)
		for i = 1, math.min(40, #list) do f:write(("%6.2f%% %s\n"):format(list[i][2] / total * 100, list[i][1])) end
		f:write("----\n")
	end
	f:close()
end
local exit = os.exit
os.exit = function(...) dump() exit(...) end
debug.sethook(hook, "", exact and 1 or 100)
local create = coroutine.create
coroutine.create = function(f)
	local co = create(f)
	debug.sethook(co, hook, "", exact and 1 or random(1, 180))
	return co
end
local script = table.remove(arg, 1)
arg[0] = script
dofile(script)
