-- bench/core_server.lua: a diagnostic, not part of `make bench`: the thinnest
-- Lua server over luatls.core (no scheduler, stream or policy), to split
-- what the C core costs from what the Lua layer costs (see RESULTS.md).
-- Uses the internal C surface, which may change under it.
--   lua5.4 bench/core_server.lua PORT CERT KEY [LIFETIME [OPTION...]]
-- OPTION: "notickets" turns resumption off (as the bench's full-handshake
-- runs do); "coroutines" runs each connection in a coroutine of its own
-- that yields while GnuTLS would block (what luatls.listen does, without
-- its scheduler, stream and policy).
local core = require "luatls.core"
local port, certf, keyf, lifetime = tonumber(arg[1]), arg[2], arg[3], tonumber(arg[4]) or 60
local flags = {}
for i = 5, #arg do flags[arg[i]] = true end
local function slurp(p) local f = assert(io.open(p, "rb")) local d = f:read("*a") f:close() return d end
local ctx = core.context("server")
assert(ctx:add_keypair(slurp(certf), slurp(keyf)))
local lsock = assert(core.tcp_listen("127.0.0.1", port, 1024))
local loop = core.loop()
local lw = loop:io(1, lsock:fd(), "r")
lw:start()
local OK = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
local conns, fired, nextid = {}, {}, 1
local yield = coroutine.yield

local function close(c)
	if c.state == "open" then c.sess:bye() end
	c.w:close() c.sess:close() c.sock:close()
	conns[c.id] = nil
end

local function wait(c, code)
	c.w:set(c.fd, code == "wantwrite" and "w" or "r")
	c.w:start()
end

-- One step of a connection: handshake, then requests, until GnuTLS would
-- block (returns true) or the connection is over (closes it).
local function drive(c)
	while true do
		if c.state == "hs" then
			local ok, _, code = c.sess:handshake()
			if ok then c.state = "open" c.buf = ""
			elseif code == "wantread" or code == "wantwrite" then wait(c, code) return true
			else close(c) return end
		else
			local data, _, code = c.sess:recv()
			if data then
				c.buf = c.buf .. data
				if c.buf:find("\r\n\r\n", 1, true) then c.buf = "" c.sess:send(OK) end
			elseif code == "wantread" or code == "wantwrite" then wait(c, code) return true
			else close(c) return end
		end
	end
end

-- The same in a coroutine: it yields while GnuTLS would block.
local function body(c)
	while drive(c) do yield() end
end

local deadline = loop:now() + lifetime
while loop:now() < deadline do
	local n = loop:step(1, fired)
	for i = 1, n do
		local id = fired[i]
		fired[i] = nil
		if id == 1 then
			while true do
				local s = lsock:accept()
				if not s then break end
				nextid = nextid + 1
				local fd = s:fd()
				local c = { id = nextid, sock = s, fd = fd, state = "hs",
					sess = core.session(ctx, { fd = fd, resumption = not flags.notickets }),
					w = loop:io(nextid, fd, "r") }
				conns[nextid] = c
				if flags.coroutines then
					c.co = coroutine.create(body)
					coroutine.resume(c.co, c)
				else
					drive(c)
				end
			end
			lw:start()
		elseif conns[id] then
			local c = conns[id]
			if c.co then coroutine.resume(c.co) else drive(c) end
		end
	end
end
