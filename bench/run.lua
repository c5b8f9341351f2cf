-- bench/run.lua: the luatls benchmark driver (see bench/README.md).
-- Started by bench/run.sh with BENCH_BIN (built tools), BENCH_TMP (a fresh
-- directory) and QUICK=1 for the quick mode. Servers run on CPU 0, the load
-- generator on CPU 1; every figure is the median of the rounds with its
-- spread; the output ends with "ratio <metric> luatls/<peer> <value>" lines.
local BIN = assert(os.getenv("BENCH_BIN"), "BENCH_BIN not set")
local TMP = assert(os.getenv("BENCH_TMP"), "BENCH_TMP not set")
local SRC = assert(os.getenv("BENCH_SRC"), "BENCH_SRC not set")
local ROOT = SRC .. "/.."
local QUICK = os.getenv("QUICK") == "1"
local LUA = os.getenv("BENCH_LUA") or "lua5.4"

local C = QUICK and {
	rounds = 2, warm = 0.3, secs = 0.8, ab_secs = 0.8, ttfb_n = 200, bulk = 64 << 20,
	alone_ecdsa_only = true,
	idle = { 1000 }, idle_rounds = 1, budget = 150,
} or {
	rounds = 5, warm = 0.5, secs = 3.0, ab_secs = 2.0, ttfb_n = 1000, bulk = 512 << 20,
	idle = { 1000, 10000 }, idle_rounds = 3, budget = 18 * 60,
}
local CONCURRENCY = 100

local PRIORITY = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-KX-ALL:+ECDHE-ECDSA:" ..
	"+ECDHE-RSA:-CIPHER-ALL:+AES-128-GCM:+CHACHA20-POLY1305:+AES-256-GCM:-MAC-ALL:" ..
	"+AEAD:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-X448:+GROUP-SECP384R1:" ..
	"+GROUP-SECP521R1:%SERVER_PRECEDENCE"

local notes = {}
local function note(fmt, ...)
	local s = fmt:format(...)
	for _, n in ipairs(notes) do if n == s then return end end
	notes[#notes + 1] = s
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(cmd)
	local p = io.popen(cmd .. " 2>&1")
	local out = p:read("a")
	p:close()
	return out
end

local function have(cmd)
	return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true
end

local function sleep(s) os.execute("sleep " .. s) end

local function now()
	local f = io.open("/proc/uptime")
	local t = tonumber(f:read("a"):match("^(%S+)"))
	f:close()
	return t
end
local t0 = now()
local function time_left() return C.budget - (now() - t0) end

-- Servers --------------------------------------------------------------------

local pki = TMP .. "/pki/"
local CERTS = {
	ecdsa = { cert = pki .. "server-chain.pem", key = pki .. "server.key" },
	rsa = { cert = pki .. "server-rsa-chain.pem", key = pki .. "server-rsa.key" },
}

local function nginx_conf(dir, port, crt, tickets)
	local f = assert(io.open(dir .. "/nginx.conf", "w"))
	f:write(([[
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 30000;
error_log %s/error.log error;
pid %s/nginx.pid;
events { worker_connections 30000; }
http {
  access_log off;
  client_body_temp_path %s; proxy_temp_path %s; fastcgi_temp_path %s;
  uwsgi_temp_path %s; scgi_temp_path %s;
  keepalive_requests 100000000; keepalive_timeout 900s;
  default_type text/plain;
  server {
    listen 127.0.0.1:%d ssl backlog=1024;
    ssl_certificate %s; ssl_certificate_key %s;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_ecdh_curve X25519:prime256v1;
    ssl_prefer_server_ciphers on;
    ssl_session_cache off;
    %s
    location = / { return 200 "ok\n"; }
    location /bulk/ { root %s/www; }
  }
}
]]):format(dir, dir, dir, dir, dir, dir, dir, port, crt.cert, crt.key,
		tickets and "ssl_session_tickets on;"
			or "ssl_session_tickets off; ssl_conf_command NumTickets 0;", TMP))
	f:close()
	return dir .. "/nginx.conf"
end

-- name -> command line for (port, certificate files, tickets on?)
local SERVERS = {
	baseline = function(port, crt, tickets)
		return ("%s/baseline -p %d -c %s -k %s%s"):format(BIN, port, q(crt.cert), q(crt.key),
			tickets and " -T" or "")
	end,
	luatls = function(port, crt, tickets)
		return ("%s %s/luatls_server.lua %d %s %s 900 %s"):format(LUA, SRC, port, q(crt.cert), q(crt.key),
			tickets and "tickets" or "notickets")
	end,
	luasec = function(port, crt, tickets)
		return ("lua5.4 %s/luasec_server.lua %d %s %s %s 900"):format(SRC, port, q(crt.cert), q(crt.key),
			tickets and "tickets" or "notickets")
	end,
	nginx = function(port, crt, tickets)
		local dir = TMP .. "/nginx-" .. port
		os.execute("mkdir -p " .. q(dir))
		return ("nginx -p %s -c %s -e %s/error.log"):format(q(dir), q(nginx_conf(dir, port, crt, tickets)), q(dir))
	end,
	["gnutls-serv"] = function(port, crt, tickets)
		return ("gnutls-serv -q --echo --crlf -a -p %d --x509certfile=%s --x509keyfile=%s --priority=%s%s"):format(
			port, q(crt.cert), q(crt.key), q(PRIORITY), tickets and "" or " --noticket")
	end,
}
SERVERS["baseline+tickets"] = function(port, crt) return SERVERS.baseline(port, crt, true) end
-- the same luatls server under LuaJIT (only in the A/B runs, against the
-- baseline: not a peer)
SERVERS["luatls-luajit"] = function(port, crt, tickets)
	return ("env LUA_CPATH=%s luajit %s/luatls_server.lua %d %s %s 900 %s"):format(
		q(ROOT .. "/build/luajit/?.so;;"), SRC, port, q(crt.cert), q(crt.key),
		tickets and "tickets" or "notickets")
end
-- the C server over luatls's socket transport (read-ahead, one send per
-- flight): luatls against it is what the Lua layer alone costs
SERVERS["baseline+transport"] = function(port, crt, tickets)
	return SERVERS.baseline(port, crt, tickets) .. " -R"
end

-- columns of the table; "baseline+tickets" only runs the ECDSA handshakes,
-- "baseline+transport" and "luatls-luajit" only the A/B handshakes (EXTRA:
-- not a peer; AB_ONLY: not in the other runs)
local ORDER = { "baseline", "luatls", "luasec", "nginx", "gnutls-serv", "baseline+tickets",
	"baseline+transport", "luatls-luajit" }
local EXTRA = { ["baseline+tickets"] = true, ["baseline+transport"] = true, ["luatls-luajit"] = true }
local AB_ONLY = { ["baseline+transport"] = true, ["luatls-luajit"] = true }
local PEERS = { "baseline", "luasec", "nginx", "gnutls-serv" }
local available = {}
for _, name in ipairs(ORDER) do available[name] = true end
if os.execute(("%s -e 'require \"ssl\" require \"socket\"' 2>/dev/null"):format("lua5.4")) ~= true then
	available.luasec = false
	note("luasec: lua-sec/lua-socket not installed for lua5.4: skipped")
end
if not have("nginx") then available.nginx = false note("nginx: not installed: skipped") end
local function exists(path)
	local f = io.open(path)
	if f then f:close() end
	return f ~= nil
end
if not have("luajit") or not exists(ROOT .. "/build/luajit/luatls/core.so") then
	available["luatls-luajit"] = false
	note("luatls-luajit: luajit or its build of luatls missing: skipped")
end
if not have("gnutls-serv") then available["gnutls-serv"] = false note("gnutls-serv: not installed: skipped") end

-- servers that cannot hold N connections (select() and FD_SETSIZE)
local MAX_CONNS = { luasec = 1000, ["gnutls-serv"] = 1000 }

local running = {}
local pidfile = TMP .. "/pids"
local next_port = 20000 + math.random(0, 9) * 1000

local function alive(pid)
	local f = io.open("/proc/" .. pid .. "/stat")
	if not f then return false end
	local s = f:read("a")
	f:close()
	local st = s:match("%) (%a)")
	return st ~= nil and st ~= "Z" and st ~= "X"
end

local function listening(port)
	return sh("ss -Hltn 'sport = :" .. port .. "'"):find("LISTEN", 1, true) ~= nil
end

local function free_port()
	for _ = 1, 200 do
		next_port = next_port + 1
		if next_port > 30000 then next_port = 20001 end
		if not listening(next_port) then return next_port end
	end
	error("no free port found")
end

local function write_pids()
	local f = io.open(pidfile, "w")
	for pid in pairs(running) do f:write(pid, "\n") end
	f:close()
end

-- Starts a server pinned to CPU 0: { name, pid, port } or nil, why
local function start(name, certname, tickets)
	local port = free_port()
	local cmd = SERVERS[name](port, CERTS[certname], tickets)
	local log = TMP .. "/" .. name .. ".log"
	local pipe = io.popen("echo $$; exec taskset -c 0 " .. cmd .. " >>" .. q(log) .. " 2>&1", "r")
	local pid = tonumber(pipe:read("l"))
	local srv = { name = name, pid = pid, port = port, pipe = pipe }
	running[pid] = srv
	write_pids()
	for _ = 1, 100 do
		if listening(port) then return srv end
		if not alive(pid) then break end
		sleep(0.05)
	end
	running[pid] = nil
	os.execute("kill -KILL " .. pid .. " 2>/dev/null")
	pipe:close()
	write_pids()
	return nil, name .. " did not start (see " .. log .. ")"
end

local function stop(srv)
	if not running[srv.pid] then return end
	os.execute("kill -TERM " .. srv.pid .. " 2>/dev/null")
	for _ = 1, 20 do
		if not alive(srv.pid) then break end
		sleep(0.05)
	end
	if alive(srv.pid) then os.execute("kill -KILL " .. srv.pid .. " 2>/dev/null") end
	srv.pipe:close()
	running[srv.pid] = nil
	write_pids()
end

local function stop_all()
	for _, srv in pairs(running) do stop(srv) end
end

-- Load generator --------------------------------------------------------------

local function loadgen(srv, mode, args, limit)
	local t = now()
	local cmd = ("timeout -s KILL %d taskset -c 1 %s/loadgen %s -p %d -P %d %s"):format(
		math.ceil(limit), BIN, mode, srv.port, srv.pid, args)
	local out = sh(cmd)
	if os.getenv("BENCH_VERBOSE") then
		io.stderr:write(("  %-16s %-6s %5.1fs %s"):format(srv.name, mode, now() - t, out))
	end
	local r = {}
	for k, v in out:gmatch('([%w_]+)="([^"]*)"') do r[k] = v end
	for k, v in out:gmatch('([%w_]+)=([^%s"]+)') do r[k] = tonumber(v) or v end
	if not r.ok or r.ok == 0 then
		note("%s %s: failed: %s", srv.name, mode, (out:gsub("%s+$", "")))
		return nil
	end
	if (r.err or 0) > 0 then
		note("%s %s: %d failed connections (%s)", srv.name, mode, r.err, r.last_error or "?")
	end
	return r
end

-- Results ------------------------------------------------------------------------

local results = {} -- results[row][server] = { values }
local by_round = {} -- by_round[row][server][round] = value
local round = 0
local function add(row, server, v)
	if v == nil or v < 0 then return end
	results[row] = results[row] or {}
	results[row][server] = results[row][server] or {}
	local t = results[row][server]
	t[#t + 1] = v
	by_round[row] = by_round[row] or {}
	by_round[row][server] = by_round[row][server] or {}
	by_round[row][server][round] = v
end

local function median(t)
	local s = {}
	for i, v in ipairs(t) do s[i] = v end
	table.sort(s)
	local n = #s
	if n == 0 then return nil end
	if n % 2 == 1 then return s[(n + 1) // 2] end
	return (s[n // 2] + s[n // 2 + 1]) / 2
end

local function spread(t)
	local m = median(t)
	if not m or m == 0 or #t < 2 then return 0 end
	return (math.max(table.unpack(t)) - math.min(table.unpack(t))) / 2 / m * 100
end

-- Tests -----------------------------------------------------------------------

local W = ("-w %.2f -t %.2f"):format(C.warm, C.secs)
local LIMIT = C.warm + C.secs + 30

local rotate_names -- defined with each_server below

local function handshakes(name, certname)
	local srv, err = start(name, certname, name == "baseline+tickets")
	if not srv then note("%s", err) return end
	local r = loadgen(srv, "hs", ("-c %d %s"):format(CONCURRENCY, W), LIMIT)
	if r then
		add("hs-" .. certname, name, r.rate)
		add("hs-" .. certname .. "-cpu", name, r.per_cpu)
		if certname == "ecdsa" then
			add("lat-p50", name, r.hs_p50_ms)
			add("lat-p99", name, r.hs_p99_ms)
		end
	end
	stop(srv)
end

-- Parses loadgen's "target=J ..." lines: { [J+1] = { key = value } }
local function per_target(out)
	local t = {}
	for line in out:gmatch("[^\n]+") do
		local j = tonumber(line:match("^target=(%d+)"))
		if j then
			local r = {}
			for k, v in line:gmatch('([%w_]+)=([^%s"]+)') do r[k] = tonumber(v) or v end
			t[j + 1] = r
		end
	end
	return t
end

-- The A/B runs: luatls and one peer at a time on CPU 0, the connections of
-- one load generator going to each in turn, both servers' CPU time read at
-- the window's edges: handshakes per server CPU-second that the machine's
-- other load affects alike. One peer at a time, because every server sharing
-- the core with all the others sees a seventh of the load and a context
-- switch every few events, which is not how a server runs (RESULTS.md,
-- fifth round): a pair keeps each at half the load generator's clients.
-- pair_ratios[row]["subject/peer"] = the subject's figures over the
-- peer's, each pair's from one window.
local pair_ratios = {}
local function pair_ratio(key, subject, peer, value)
	local pr = pair_ratios[key] or {}
	pair_ratios[key] = pr
	local k = subject .. "/" .. peer
	pr[k] = pr[k] or {}
	pr[k][#pr[k] + 1] = value
end

local function ab(r, mode, certname)
	local key = (mode == "resume" and "resumed" or ("hs-" .. certname)) .. "-ab"
	local tickets = mode == "resume"
	local runs = {}
	for _, peer in ipairs(rotate_names(r)) do
		if peer ~= "luatls" and peer ~= "baseline+tickets" then runs[#runs + 1] = { "luatls", peer } end
	end
	if available["baseline+transport"] then runs[#runs + 1] = { "luatls", "baseline+transport" } end
	if available["luatls-luajit"] and certname == "ecdsa" then runs[#runs + 1] = { "luatls-luajit", "baseline" } end
	-- the ratio the targets are about gets a second pair, at the other end
	-- of the round: a median of ten pairs moves half as far as one of five
	-- (the `pairs` lines show how far five spread)
	runs[#runs + 1] = { "luatls", "baseline" }
	local secs = C.ab_secs
	-- an RSA handshake costs the server ~8 times an ECDSA one: a short
	-- window holds a few dozen per server, and the ones cut by its edges
	-- decide the figure (the quick run once gave the baseline 100/CPU-s)
	if certname == "rsa" and secs < 3 then secs = 3 end
	local subjects = {} -- each subject runs once for all its pairs
	for i, run in ipairs(runs) do
		local subject, peer = run[1], run[2]
		local a, err = subjects[subject], nil
		if a == nil then -- started once; false: it did not start
			a, err = start(subject, certname, tickets)
			subjects[subject] = a or false
			if not a then note("%s", err) end
		end
		local b
		if a then
			b, err = start(peer, certname, tickets)
			if not b then note("%s", err) end
		end
		if a and b then
			-- which one the load generator serves first alternates
			local srvs = (r + i) % 2 == 0 and { a, b } or { b, a }
			local out = sh(("timeout -s KILL %d taskset -c 1 %s/loadgen %s -c %d -p %d,%d -P %d,%d -w %.2f -t %.2f"):format(
				math.ceil(C.warm + secs + 40), BIN, mode, CONCURRENCY, srvs[1].port, srvs[2].port,
				srvs[1].pid, srvs[2].pid, C.warm, secs))
			if os.getenv("BENCH_VERBOSE") then io.stderr:write(out) end
			local res, got = per_target(out), {}
			for j, srv in ipairs(srvs) do
				local t = res[j]
				if t and (t.ok or 0) > 0 and (t.per_cpu or 0) > 0 then
					got[srv.name] = t.per_cpu
					add(key, srv.name, t.per_cpu)
					if (t.err or 0) > 0 then note("%s %s A/B: %d failed connections", srv.name, mode, t.err) end
					if mode == "resume" and t.resumed < 0.95 * t.ok then
						note("%s resume A/B: only %d of %d connections were resumed", srv.name, t.resumed, t.ok)
					end
				else
					note("%s %s A/B: no result (%s)", srv.name, mode, (out:gsub("%s+$", "")))
				end
			end
			if got[subject] and got[peer] then pair_ratio(key, subject, peer, got[subject] / got[peer]) end
		end
		if b then stop(b) end
	end
	for _, srv in pairs(subjects) do if srv then stop(srv) end end
end

-- TTFB and bulk with every server up at once (idle ones cost nothing): the
-- TTFB connections alternate between luatls and one peer at a time, and the
-- bulk transfers follow one another, so that the machine's other load hits
-- every server alike.
local function sequential(r)
	local srvs = {}
	for _, name in ipairs(rotate_names(r)) do
		local srv, err = start(name, "ecdsa", false)
		if srv then srvs[#srvs + 1] = srv else note("%s", err) end
	end
	if #srvs == 0 then return end
	-- TTFB, luatls and one peer at a time (as the A/B runs, for the same
	-- reason): the sequential connections alternate between the two
	local mine
	for _, srv in ipairs(srvs) do if srv.name == "luatls" then mine = srv end end
	if not mine then note("ttfb: luatls did not start: no TTFB figures") end
	for i, peer in ipairs(srvs) do
		if mine and peer ~= mine then
			local two = (r + i) % 2 == 0 and { mine, peer } or { peer, mine }
			local out = sh(("timeout -s KILL %d taskset -c 1 %s/loadgen ttfb -p %d,%d -P %d,%d -n %d -w %.2f -t %d"):format(
				90, BIN, two[1].port, two[2].port, two[1].pid, two[2].pid, C.ttfb_n, C.warm, 60))
			if os.getenv("BENCH_VERBOSE") then io.stderr:write(out) end
			local got = {}
			for line in out:gmatch("[^\n]+") do
				local j = tonumber(line:match("^target=(%d+)"))
				local srv = j and two[j + 1]
				if srv then
					local ok, err = tonumber(line:match(" ok=(%d+)")), tonumber(line:match(" err=(%d+)"))
					if ok and ok > 0 then
						got[srv.name] = tonumber(line:match("ttfb_p50_ms=([%d.]+)"))
						add("ttfb", srv.name, got[srv.name])
						add("ttfb-mean", srv.name, tonumber(line:match("ttfb_mean_ms=([%d.]+)")))
					else
						note("%s ttfb: failed: %s", srv.name, line)
					end
					if err and err > 0 then note("%s ttfb: %d failed connections", srv.name, err) end
				end
			end
			if not out:find("target=", 1, true) then note("ttfb: failed: %s", (out:gsub("%s+$", ""))) end
			if got.luatls and got[peer.name] then pair_ratio("ttfb", "luatls", peer.name, got.luatls / got[peer.name]) end
		end
	end
	for _, cipher in ipairs { "aes128gcm", "chacha20" } do
		for _, srv in ipairs(srvs) do
			if srv.name ~= "gnutls-serv" then -- an echo server: no bulk responses
				local res = loadgen(srv, "bulk", ("-C %s -b %d -t 60"):format(cipher, C.bulk), 90)
				if res then
					add("bulk-" .. cipher, srv.name, res.mbps)
					add("bulk-" .. cipher .. "-cpu", srv.name, res.mb_per_cpu)
				end
			end
		end
	end
	for _, srv in ipairs(srvs) do stop(srv) end
end

local function resumed(name)
	local srv, err = start(name, "ecdsa", true)
	if not srv then note("%s", err) return end
	local r = loadgen(srv, "resume", ("-c %d %s"):format(CONCURRENCY, W), LIMIT)
	if r then
		add("resumed", name, r.rate)
		add("resumed-cpu", name, r.per_cpu)
		if r.resumed < 0.95 * r.ok then
			note("%s resume: only %d of %d connections were resumed", name, r.resumed, r.ok)
		end
	end
	stop(srv)
end

local function idle(name, n, r)
	if name == "gnutls-serv" and (QUICK or r > 1) then
		-- its select() loop takes 20 s or more to take 1,000 connections
		note("gnutls-serv: idle memory measured in the first round of the full run only")
		return
	end
	if MAX_CONNS[name] and n > MAX_CONNS[name] then
		note("%s: idle %d not run: its select() loop is limited to FD_SETSIZE (1024) descriptors", name, n)
		return
	end
	local srv, err = start(name, "ecdsa", false)
	if not srv then note("%s", err) return end
	-- warm up (lazy initialisation, allocator arenas), then measure
	loadgen(srv, "hs", ("-c 20 -w 0 -t %.2f -n 300"):format(C.warm), 30)
	sleep(0.2)
	local r = loadgen(srv, "idle", ("-c %d -t %d"):format(n, n // 200 + 20), n // 100 + 80)
	if r then
		add("idle-" .. n, name, r.per_conn_kib)
		add("idle-" .. n .. "-answered", name, r.answered)
		if r.parked < n or r.answered < r.parked then
			note("%s idle %d: %d established, %d answered afterwards", name, n, r.parked, r.answered)
		end
	end
	stop(srv)
end

-- What one connection costs each layer, counted under cachegrind by
-- bench/cost.sh for luatls and for the bare callback loop over the core
-- (core_server.lua), side by side: a count that moves far less than the
-- timings, in thousands of model cycles per connection (see README.md).
local COST_LAYERS = { { "interpreter", "interpreter" }, { "luatls core", "core" }, { "libev", "libev" },
	{ "malloc", "malloc" }, { "rest", "rest" }, { "total", "total" } }

local function cost_lines()
	if not have("valgrind") then
		print("cost: valgrind is not installed, no cost lines")
		return
	end
	local totals = {}
	local servers = { { "luatls", "luatls_server.lua" }, { "core-loop", "core_server.lua" } }
	-- side by side, so that both see the same timing (see README.md)
	local cmd = {}
	for _, srv in ipairs(servers) do
		cmd[#cmd + 1] = ("OUT=%s N1=%d N2=%d sh %s %s >%s 2>&1 &"):format(q(TMP .. "/cost-" .. srv[1]),
			QUICK and 50 or 100, QUICK and 200 or 600, q(SRC .. "/cost.sh"), q(SRC .. "/" .. srv[2]),
			q(TMP .. "/cost-" .. srv[1] .. ".txt"))
	end
	sh(table.concat(cmd, " ") .. " wait")
	for _, srv in ipairs(servers) do
		local f = io.open(TMP .. "/cost-" .. srv[1] .. ".txt")
		local out = f and f:read("a") or ""
		if f then f:close() end
		local fields = {}
		for _, l in ipairs(COST_LAYERS) do
			-- "layer  instructions  L1  LL  cost  share", the total line "total  cost"
			local v = l[1] == "total" and out:match("\ntotal%s+(%d+)") or
				out:match("\n" .. l[1]:gsub(" ", "%%s") .. "%s+%-?[%d.]+%s+%-?[%d.]+%s+%-?[%d.]+%s+(%-?[%d.]+)")
			if not v then
				print(("cost: %s failed: %s"):format(srv[1], (out:gsub("%s+$", ""):match("[^\n]*$"))))
				fields = nil
				break
			end
			fields[#fields + 1] = ("%s %.1f"):format(l[2], tonumber(v) / 1000)
			if l[1] == "total" then totals[srv[1]] = tonumber(v) end
		end
		if fields then print(("cost handshake-ecdsa %s %s"):format(srv[1], table.concat(fields, " "))) end
	end
	if totals.luatls and totals["core-loop"] then
		print(("cost handshake-ecdsa luatls/core-loop %.3f"):format(totals["core-loop"] / totals.luatls))
	end
end

-- Main -------------------------------------------------------------------------

local function rotate(list, k)
	local out = {}
	for i = 1, #list do out[i] = list[(i - 1 + k) % #list + 1] end
	return out
end

local function each_server(r, fn, only_peers)
	local list = {}
	for _, name in ipairs(ORDER) do
		if available[name] and not AB_ONLY[name] and
			(not only_peers or not EXTRA[name]) then
			list[#list + 1] = name
		end
	end
	for _, name in ipairs(rotate(list, r - 1)) do fn(name) end
end

rotate_names = function(r)
	local list = {}
	each_server(r, function(name) list[#list + 1] = name end, true)
	return list
end

local function main()
	-- bodies for nginx's /bulk/N, written so that they sit in the page cache
	for _, n in ipairs { 4 << 20, C.bulk } do
		os.execute(("mkdir -p %s/www/bulk && head -c %d /dev/zero | tr '\\0' x >%s/www/bulk/%d")
			:format(q(TMP), n, q(TMP), n))
	end
	print(("luatls bench (%s): %s"):format(QUICK and "QUICK" or "full", os.date("!%Y-%m-%d %H:%M UTC")))
	print(("  %s; %s; nginx %s; %s"):format(
		sh("uname -sr"):gsub("%s+$", ""),
		sh("gnutls-cli --version | head -1"):gsub("%s+$", ""),
		(sh("nginx -v"):match("nginx/(%S+)") or "-"),
		sh("lua5.4 -v"):gsub("%s+$", "")))
	print(("  load average at start: %s"):format(sh("cat /proc/loadavg"):match("^(%S+ %S+ %S+)")))
	print(("  rounds %d, window %.1f s, %d concurrent clients, TTFB over %d connections, bulk %d MiB"):format(
		C.rounds, C.secs, CONCURRENCY, C.ttfb_n, C.bulk >> 20))
	io.stdout:flush()

	local rounds_done, last_core, last_idle = 0, 0, 0
	for r = 1, C.rounds do
		local expect = last_core + (r <= C.idle_rounds and last_idle or 0)
		if r > 1 and time_left() < expect then
			note("stopped after %d rounds to stay within the time budget", r - 1)
			break
		end
		local t_round = now()
		round = r
		io.stderr:write(("round %d/%d: ecdsa handshakes\n"):format(r, C.rounds))
		each_server(r, function(name) handshakes(name, "ecdsa") end)
		io.stderr:write(("round %d/%d: ttfb and bulk\n"):format(r, C.rounds))
		sequential(r)
		io.stderr:write(("round %d/%d: A/B handshakes per CPU-second\n"):format(r, C.rounds))
		ab(r, "hs", "ecdsa")
		ab(r, "hs", "rsa")
		ab(r, "resume", "ecdsa")
		if not C.alone_ecdsa_only then
			io.stderr:write(("round %d/%d: rsa handshakes\n"):format(r, C.rounds))
			each_server(r, function(name) handshakes(name, "rsa") end, true)
			io.stderr:write(("round %d/%d: resumed handshakes\n"):format(r, C.rounds))
			each_server(r, resumed, true)
		end
		last_core = now() - t_round
		t_round = now()
		if r <= C.idle_rounds then
			for _, n in ipairs(C.idle) do
				io.stderr:write(("round %d/%d: %d idle connections\n"):format(r, C.rounds, n))
				each_server(r, function(name) idle(name, n, r) end, true)
			end
		end
		if r <= C.idle_rounds then last_idle = now() - t_round end
		rounds_done = r
	end

	-- the table
	local ROWS = {
		{ "hs-ecdsa", "handshake-ecdsa", "full hs/s", "%.0f" },
		{ "hs-ecdsa-cpu", "handshake-ecdsa", "hs/CPU-s alone", "%.0f" },
		{ "hs-ecdsa-ab", "handshake-ecdsa", "hs/CPU-s A/B", "%.0f" },
		{ "hs-rsa", "handshake-rsa", "full hs/s", "%.0f" },
		{ "hs-rsa-cpu", "handshake-rsa", "hs/CPU-s alone", "%.0f" },
		{ "hs-rsa-ab", "handshake-rsa", "hs/CPU-s A/B", "%.0f" },
		{ "resumed", "resumed", "hs/s", "%.0f" },
		{ "resumed-cpu", "resumed", "hs/CPU-s alone", "%.0f" },
		{ "resumed-ab", "resumed", "hs/CPU-s A/B", "%.0f" },
		{ "bulk-aes128gcm", "bulk-aes128gcm", "MB/s", "%.0f" },
		{ "bulk-aes128gcm-cpu", "bulk-aes128gcm", "MB/server-CPU-s", "%.0f" },
		{ "bulk-chacha20", "bulk-chacha20", "MB/s", "%.0f" },
		{ "bulk-chacha20-cpu", "bulk-chacha20", "MB/server-CPU-s", "%.0f" },
		{ "idle-1000", "idle-memory", "KiB/conn @1000", "%.1f" },
		{ "idle-10000", "idle-memory", "KiB/conn @10000", "%.1f" },
		{ "idle-10000-answered", "idle-memory", "answered @10000", "%.0f" },
		{ "ttfb", "ttfb", "ms p50 (seq.)", "%.2f" },
		{ "ttfb-mean", "ttfb", "ms mean (seq.)", "%.2f" },
		{ "lat-p50", "latency-p50", "ms hs, 100 conc.", "%.2f" },
		{ "lat-p99", "latency-p99", "ms hs, 100 conc.", "%.2f" },
	}
	local cols = {}
	for _, name in ipairs(ORDER) do if available[name] then cols[#cols + 1] = name end end
	print()
	local width = 17
	for _, name in ipairs(cols) do if #name + 2 > width then width = #name + 2 end end
	local cellfmt = "%" .. width .. "s"
	local head = ("%-16s %-17s"):format("metric", "unit")
	for _, name in ipairs(cols) do head = head .. cellfmt:format(name) end
	print(head)
	print(("-"):rep(#head))
	for _, row in ipairs(ROWS) do
		local key, metric, unit, fmt = row[1], row[2], row[3], row[4]
		if results[key] then
			local line = ("%-16s %-17s"):format(metric, unit)
			for _, name in ipairs(cols) do
				local t = results[key][name]
				local cell = "-"
				if t and #t > 0 then
					cell = fmt:format(median(t))
					if #t > 1 then cell = cell .. (" ±%.0f%%"):format(spread(t)) end
				end
				line = line .. cellfmt:format(cell)
			end
			print(line)
		end
	end
	print(("load average at the end: %s"):format(sh("cat /proc/loadavg"):match("^(%S+ %S+ %S+)")))
	print(("(median of %d rounds; ±: half the range, in %% of the median; idle memory: %d round(s);")
		:format(rounds_done, math.min(rounds_done, C.idle_rounds)))
	print("ratios below: the median of the rounds' own ratios)")

	if #notes > 0 then
		print()
		for _, n in ipairs(notes) do print("note: " .. n) end
	end

	-- ratios: above 1 is better for luatls everywhere
	print()
	local RATIOS = {
		{ "handshake-ecdsa", "hs-ecdsa-ab", false },
		{ "handshake-rsa", "hs-rsa-ab", false },
		{ "resumed", "resumed-ab", false },
		{ "bulk-aes128gcm", "bulk-aes128gcm-cpu", false },
		{ "bulk-chacha20", "bulk-chacha20-cpu", false },
		{ "idle-memory", "idle-1000", true },
		{ "latency-p99", "lat-p99", true },
		{ "ttfb", "ttfb", true },
	}
	-- the median of the rounds' ratios: within a round the servers saw the
	-- same weather (A/B, TTFB and bulk interleave them), between rounds not;
	-- the A/B rows' ratios come from the pairs, each from one window
	local function pair_median(key, k, invert)
		local ratios = {}
		for _, v in pairs(pair_ratios[key] and pair_ratios[key][k] or {}) do
			ratios[#ratios + 1] = invert and 1 / v or v
		end
		return median(ratios)
	end
	for _, spec in ipairs(RATIOS) do
		local metric, key, invert = spec[1], spec[2], spec[3]
		local mine = by_round[key] and by_round[key].luatls
		for _, peer in ipairs(PEERS) do
			local value
			if pair_ratios[key] then
				value = pair_median(key, "luatls/" .. peer, invert)
			else
				local theirs = by_round[key] and by_round[key][peer]
				local ratios = {}
				for r, m in pairs(mine or {}) do
					local t = theirs and theirs[r]
					if t and m > 0 and t > 0 then ratios[#ratios + 1] = invert and t / m or m / t end
				end
				value = median(ratios)
			end
			if value then print(("ratio %s luatls/%s %.3f"):format(metric, peer, value)) end
		end
	end
	-- the pairs behind the handshake ratios against the C server, sorted:
	-- one window each, so the reader sees how far a median of a few moves
	for _, spec in ipairs { { "handshake-ecdsa", "hs-ecdsa-ab" }, { "handshake-rsa", "hs-rsa-ab" },
			{ "resumed", "resumed-ab" } } do
		local list = {}
		for _, v in pairs(pair_ratios[spec[2]] and pair_ratios[spec[2]]["luatls/baseline"] or {}) do
			list[#list + 1] = v
		end
		table.sort(list)
		if #list > 0 then
			for i, v in ipairs(list) do list[i] = ("%.3f"):format(v) end
			print(("pairs %s luatls/baseline %s"):format(spec[1], table.concat(list, " ")))
		end
	end
	-- not peers: what the Lua layer alone costs (against the same C server
	-- over the same transport), and the same server under LuaJIT
	for _, spec in ipairs {
		{ "layer", "handshake-ecdsa", "hs-ecdsa-ab", "luatls", "baseline+transport" },
		{ "layer", "handshake-rsa", "hs-rsa-ab", "luatls", "baseline+transport" },
		{ "layer", "resumed", "resumed-ab", "luatls", "baseline+transport" },
		{ "luajit", "handshake-ecdsa", "hs-ecdsa-ab", "luatls-luajit", "baseline" },
		{ "luajit", "resumed", "resumed-ab", "luatls-luajit", "baseline" },
	} do
		local value = pair_median(spec[3], spec[4] .. "/" .. spec[5])
		if value then
			print(("%s %s luatls/%s %.3f"):format(spec[1], spec[2], spec[5], value))
		end
	end
	cost_lines()
	io.stderr:write(("bench: %d s\n"):format(math.floor(now() - t0 + 0.5)))
end

math.randomseed(os.time())
local ok, err = xpcall(main, debug.traceback)
stop_all()
if not ok then
	io.stderr:write("bench: ", tostring(err), "\n")
	os.exit(1)
end
