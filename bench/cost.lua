-- bench/cost.lua: reads two cachegrind output files of the same server, one
-- after N1 handshakes and one after N2, and prints what one connection
-- costs (the difference divided by N2 - N1, so that start-up cancels out)
-- by layer. Used by bench/cost.sh.
--   lua5.4 bench/cost.lua SYMBOLS FILE1 N1 FILE2 N2 [TOP]
-- SYMBOLS lists the interpreter's function names, one per line. TOP > 0
-- also prints the TOP costliest functions of our layers.
local symbols, file1, n1, file2, n2, top = arg[1], arg[2], tonumber(arg[3]), arg[4], tonumber(arg[5]),
	tonumber(arg[6] or "0")
assert(symbols and file1 and n1 and file2 and n2 and n2 > n1,
	"usage: cost.lua SYMBOLS FILE1 N1 FILE2 N2 [TOP]")

local interpreter = {}
for name in io.lines(symbols) do interpreter[name] = true end

-- The layer of a function: by name for the interpreter (its object has
-- symbols but no source lines), by source file for the rest.
local function layer(file, fn)
	if interpreter[fn] then return "interpreter" end
	if file:match("/src/[%w_]+%.c$") and not file:match("^%./") then return "luatls core" end
	if fn:match("^ev_") or file:match("ev%.c$") then return "libev" end
	if file:match("malloc") then return "malloc" end
	return "rest"
end
local LAYERS = { "interpreter", "luatls core", "libev", "malloc", "rest" }

-- Sums of each event per layer and per function: Ir I1mr ILmr Dr D1mr
-- DLmr Dw D1mw DLmw (the order of --cache-sim=yes).
local function load(path)
	local by_layer, by_fn, file, fn = {}, {}, "?", "?"
	for line in io.lines(path) do
		local k, v = line:match("^(f[ln])=(.*)$")
		if k == "fl" then file = v
		elseif k == "fn" then fn = v
		elseif line:match("^%d") then
			local l = layer(file, fn)
			local a, f = by_layer[l] or {}, by_fn[fn] or { layer = l }
			by_layer[l], by_fn[fn] = a, f
			local i = 0
			for num in line:gmatch("%d+") do
				if i > 0 then -- the first number is the line
					a[i] = (a[i] or 0) + tonumber(num)
					f[i] = (f[i] or 0) + tonumber(num)
				end
				i = i + 1
			end
		end
	end
	return by_layer, by_fn
end

local l1, f1 = load(file1)
local l2, f2 = load(file2)
local n = n2 - n1

-- per connection: instructions, first-level misses, last-level misses and
-- a cost in cycles of a simple model: 1 per instruction, 10 per L1 miss,
-- 100 per last-level miss
local function per(a, b)
	local d = {}
	for i = 1, 9 do d[i] = ((b and b[i] or 0) - (a and a[i] or 0)) / n end
	local ir, m1, ml = d[1], d[2] + d[5] + d[8], d[3] + d[6] + d[9]
	return ir, m1, ml, ir + 10 * m1 + 100 * ml
end

local total = 0
local rows = {}
for _, l in ipairs(LAYERS) do
	local ir, m1, ml, cost = per(l1[l], l2[l])
	rows[#rows + 1] = { l, ir, m1, ml, cost }
	total = total + cost
end
print(("per connection, over %d handshakes:"):format(n))
print(("%-12s %12s %10s %10s %12s %7s"):format("layer", "instructions", "L1 misses", "LL misses", "model cost", "share"))
for _, r in ipairs(rows) do
	print(("%-12s %12.0f %10.1f %10.1f %12.0f %6.1f%%"):format(r[1], r[2], r[3], r[4], r[5], 100 * r[5] / total))
end
print(("%-12s %12s %10s %10s %12.0f"):format("total", "", "", "", total))

if top > 0 then
	local fns = {}
	for name, f in pairs(f2) do
		if f.layer ~= "rest" then
			local ir, m1, ml, cost = per(f1[name], f)
			fns[#fns + 1] = { name, ir, m1, ml, cost }
		end
	end
	table.sort(fns, function(a, b) return a[5] > b[5] end)
	print(("\nthe %d costliest functions outside 'rest':"):format(top))
	for i = 1, math.min(top, #fns) do
		local r = fns[i]
		print(("  %-30s %10.0f %8.1f %7.1f %10.0f"):format(r[1]:sub(1, 30), r[2], r[3], r[4], r[5]))
	end
end
