-- bench/sched_server.lua: a diagnostic, not part of `make bench`: the
-- scheduler of luatls (spawn, wait_io, run) over luatls.core, without
-- tls.listen, its stream, its policy or the rest of the library; a rung
-- between core_server.lua and luatls_server.lua (see RESULTS.md, fifth
-- round). Uses the internal surface, which may change under it.
--   lua5.4 bench/sched_server.lua PORT CERT KEY [LIFETIME [OPTION...]]
-- OPTION: "notickets" turns resumption off; "library" also loads the whole
-- library (require "luatls") without using it, to see what its heap costs.
local core = require "luatls.core"
local loop = require "luatls.loop"
local port, certf, keyf, lifetime = tonumber(arg[1]), arg[2], arg[3], tonumber(arg[4]) or 60
local flags = {}
for i = 5, #arg do flags[arg[i]] = true end
if flags.library then require "luatls" end
local function slurp(p) local f = assert(io.open(p, "rb")) local d = f:read("*a") f:close() return d end
local ctx = core.context("server")
assert(ctx:add_keypair(slurp(certf), slurp(keyf)))
local lsock = assert(core.tcp_listen("127.0.0.1", port, 1024))
local s = loop.new()
local OK = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
local sess_opts = { fd = false, resumption = not flags.notickets }

local function direction(code) return code == "wantwrite" and "w" or "r" end

local function serve(sock)
	sess_opts.fd = sock:fd()
	local sess = core.session(ctx, sess_opts)
	local rec = s:io(sock:fd(), "r")
	local deadline = s:now() + 10
	local ok, code, _
	repeat
		ok, _, code = sess:handshake()
	until ok or (code ~= "wantread" and code ~= "wantwrite") or
		not s:wait_io(rec, direction(code), deadline)
	local buf = ""
	while ok do
		local data
		data, _, code = sess:recv()
		if data then
			buf = buf .. data
			if buf:find("\r\n\r\n", 1, true) then buf = "" sess:send(OK) end
		elseif code ~= "wantread" and code ~= "wantwrite" or not s:wait_io(rec, direction(code)) then
			break
		end
	end
	if ok then sess:bye() end
	s:close_watcher(rec)
	sock:close(sess:close())
end

local lrec = s:io(lsock:fd(), "r")
s:spawn(function()
	while true do
		local sock, _, code = lsock:accept()
		if sock then
			s:spawn(serve, nil, sock)
		elseif code == "wantread" then
			s:wait_io(lrec, "r", nil)
		end
	end
end)
s:spawn(function() s:sleep(lifetime) os.exit(0) end)
s:run()
