-- Spec helpers: a test PKI made at test time, a loop runner that re-raises
-- coroutine errors and gives up after a deadline, and external peers
-- (gnutls-serv, openssl, curl) started on 127.0.0.1 and always stopped.
local tls = require "luatls"
local core = require "luatls.core"
local loop = require "luatls.loop"

local H = { tls = tls, core = core }

local function pack(...)
	return { n = select("#", ...), ... }
end

local function sh(cmd)
	local ok = os.execute(cmd)
	return ok == true or ok == 0
end
H.sh = sh

function H.readfile(path)
	local f = assert(io.open(path, "rb"))
	local data = f:read("*a")
	f:close()
	return data
end

function H.writefile(path, data)
	local f = assert(io.open(path, "wb"))
	f:write(data)
	f:close()
end

local function capture(cmd)
	local p = assert(io.popen(cmd))
	local out = p:read("*a")
	p:close()
	return out
end
H.capture = capture

local tmpdirs = {}
function H.tmpdir()
	local d = capture("mktemp -d"):gsub("%s+$", "")
	tmpdirs[#tmpdirs + 1] = d
	return d
end

-- Removes the temporary folders when the Lua state closes.
local sentinel = newproxy and newproxy(true) or setmetatable({}, {})
local sentinel_mt = getmetatable(sentinel)
sentinel_mt.__gc = function()
	for _, d in ipairs(tmpdirs) do os.execute("rm -rf '" .. d .. "'") end
end
H._sentinel = sentinel

-- The test PKI (see spec/pki.sh): a folder path ending in "/". Made once
-- per process, or taken from LUATLS_TEST_PKI.
local pki
function H.pki()
	if pki then return pki end
	local dir = os.getenv("LUATLS_TEST_PKI")
	if not dir or dir == "" then
		dir = H.tmpdir()
		require("pki").build(dir)
	end
	pki = dir:gsub("/?$", "/")
	return pki
end

function H.have(cmd)
	return sh("command -v " .. cmd .. " >/dev/null 2>&1")
end

local procs = {}

-- Starts a shell command in the background, in its own process group, with
-- its output captured: returns a process object. H.run kills it when it
-- ends, unless keep is true (then call proc.kill() yourself).
function H.exec(cmd, keep)
	local dir = H.tmpdir()
	local script = dir .. "/cmd.sh"
	H.writefile(script, cmd .. "\necho $? > '" .. dir .. "/rc'\n")
	local pid = capture("setsid sh '" .. script .. "' >'" .. dir .. "/out' 2>&1 </dev/null & echo $!")
	local proc = { pid = tonumber(pid), dir = dir, cmd = cmd }
	if not keep then procs[#procs + 1] = proc end

	function proc.output()
		local f = io.open(dir .. "/out", "rb")
		if not f then return "" end
		local s = f:read("*a")
		f:close()
		return s
	end

	function proc.rc()
		local f = io.open(dir .. "/rc", "rb")
		if not f then return nil end
		local s = f:read("*a")
		f:close()
		return tonumber(s)
	end

	-- Waits (inside a coroutine) for the command to end: rc, output, or
	-- nil, output after timeout seconds (then kills it).
	function proc.wait(timeout)
		local deadline = tls.now() + (timeout or 10)
		while tls.now() < deadline do
			local rc = proc.rc()
			if rc then return rc, proc.output() end
			tls.sleep(0.02)
		end
		proc.kill()
		return nil, proc.output()
	end

	function proc.kill()
		if not proc.killed then
			proc.killed = true
			os.execute("kill -TERM -" .. proc.pid .. " 2>/dev/null")
		end
	end
	return proc
end

function H.kill_all()
	for _, p in ipairs(procs) do p.kill() end
	procs = {}
end

-- How many file descriptors this process has open.
function H.open_fds()
	local f = assert(io.open("/proc/self/stat", "rb"))
	local pid = f:read("*l"):match("^(%d+)")
	f:close()
	local p = assert(io.popen("ls /proc/" .. pid .. "/fd | wc -l"))
	local n = tonumber(p:read("*a"):match("%d+"))
	p:close()
	return n
end

-- A port that was free a moment ago.
function H.free_port()
	local sock = assert(core.tcp_listen("127.0.0.1", 0))
	local _, port = sock:local_address()
	sock:close()
	return port
end

-- Waits (inside a coroutine) until something accepts TCP connections on
-- 127.0.0.1:port; errors after timeout seconds.
function H.wait_port(port, timeout, proc)
	local s = loop.default()
	local deadline = s:now() + (timeout or 10)
	while s:now() < deadline do
		local sock = core.tcp_connect("127.0.0.1", port)
		if sock then
			local rec = s:io(sock:fd(), "w")
			local ready = s:wait_io(rec, "w", s:now() + 1)
			s:close_watcher(rec)
			local ok = ready and sock:connected()
			sock:close()
			if ok then return true end
		end
		if proc and proc.rc() then
			error("peer exited before listening: " .. proc.output(), 2)
		end
		tls.sleep(0.05)
	end
	error("nothing listens on port " .. port .. " after " .. (timeout or 10) .. " s" ..
		(proc and (": " .. proc.output()) or ""), 2)
end

-- Starts a server command that listens on port and waits until it does.
function H.start_peer(cmd, port)
	local proc = H.exec(cmd)
	H.wait_port(port, 10, proc)
	return proc
end

-- Runs fn in a coroutine on a fresh scheduler; when fn returns, listeners
-- are closed and open connections get a short grace. Coroutine errors are
-- raised here with their traceback; a run past timeout seconds fails.
function H.run(fn, timeout)
	timeout = timeout or 20
	loop.reset()
	local s = loop.default()
	local result = { n = 0 }
	s:spawn(function()
		result = pack(fn())
		tls.stop(1)
	end)
	local ok, err = pcall(function() return s:run(s:now() + timeout) end)
	if not ok then
		tls.stop(0)
		pcall(s.run, s, s:now() + 2)
		H.kill_all()
		error(err, 0)
	end
	if err == false then
		tls.stop(0)
		pcall(s.run, s, s:now() + 2)
		H.kill_all()
		error("the test did not finish within " .. timeout .. " s", 2)
	end
	H.kill_all()
	return (table.unpack or unpack)(result, 1, result.n)
end

-- tls.connect to localhost (dialled as 127.0.0.1) trusting the test CA,
-- with short timeouts; opts add to or override these.
function H.connect(port, opts)
	local o = { host = "localhost", address = "127.0.0.1", port = port, cafile = H.pki() .. "ca.pem",
		timeout = 5, handshake_timeout = 5, connect_timeout = 5 }
	for k, v in pairs(opts or {}) do o[k] = v end
	return tls.connect(o)
end

-- Runs fn and returns its error message (for specs of what must raise).
function H.error_of(fn, ...)
	local ok, err = pcall(fn, ...)
	assert(not ok, "expected an error")
	return tostring(err)
end

return H
