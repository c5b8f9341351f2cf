-- bench/luasec_server.lua: the same server over LuaSec + LuaSocket, the way
-- one writes it there: non-blocking sockets, one coroutine per connection,
-- socket.select as the loop (what copas does).
--   lua5.4 bench/luasec_server.lua PORT CERT KEY [tickets] [LIFETIME_SECONDS]
local socket = require "socket"
local ssl = require "ssl"

local port, cert, key = tonumber(arg[1]), arg[2], arg[3]
local tickets = arg[4] == "tickets"
local lifetime = tonumber(arg[5]) or 900

local options = { "all", "no_sslv2", "no_sslv3", "no_tlsv1", "no_tlsv1_1" }
if not tickets then options[#options + 1] = "no_ticket" end
local ctx = assert(ssl.newcontext {
	mode = "server", protocol = "any", certificate = cert, key = key,
	options = options, curveslist = "X25519:P-256",
})

local OK = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
local CHUNK = string.rep("x", 65536)

-- select sets with O(1) removal: set[i] = sock, set[sock] = i
local readers, writers, waiting = {}, {}, {}
local function add(set, s)
	local n = #set + 1
	set[n] = s
	set[s] = n
end
local function remove(set, s)
	local i = set[s]
	if not i then return end
	local n = #set
	local last = set[n]
	set[i], set[last] = last, i
	set[n], set[s] = nil, nil
end

local function wait(s, err)
	if err == "wantwrite" then add(writers, s) else add(readers, s) end
	waiting[s] = coroutine.running()
	coroutine.yield()
end

local function receive_line(conn)
	local part = ""
	while true do
		local line, err, partial = conn:receive("*l", part)
		if line then return line end
		if err ~= "wantread" and err ~= "wantwrite" and err ~= "timeout" then return nil end
		part = partial
		wait(conn, err)
	end
end

local function send(conn, data)
	local i = 1
	while i <= #data do
		local last, err, sent = conn:send(data, i)
		if last then return true end
		if err ~= "wantread" and err ~= "wantwrite" and err ~= "timeout" then return nil end
		i = sent + 1
		wait(conn, err)
	end
	return true
end

local function serve(conn)
	while true do
		local ok, err = conn:dohandshake()
		if ok then break end
		if err ~= "wantread" and err ~= "wantwrite" then return end
		wait(conn, err)
	end
	while true do
		local line = receive_line(conn)
		if not line then return end
		local bulk = line:match("^GET /bulk/(%d+)")
		repeat
			local header = receive_line(conn)
			if not header then return end
		until header == ""
		if bulk then
			local left = tonumber(bulk)
			if not send(conn, "HTTP/1.1 200 OK\r\nContent-Length: " .. left .. "\r\n\r\n") then return end
			while left > 0 do
				local piece = left >= #CHUNK and CHUNK or CHUNK:sub(1, left)
				if not send(conn, piece) then return end
				left = left - #piece
			end
		elseif not send(conn, OK) then
			return
		end
	end
end

local function spawn(conn)
	local co = coroutine.create(function()
		serve(conn)
		conn:close()
	end)
	local ok, err = coroutine.resume(co)
	if not ok then io.stderr:write("luasec_server: ", tostring(err), "\n") conn:close() end
end

local server = assert(socket.tcp())
server:setoption("reuseaddr", true)
assert(server:bind("127.0.0.1", port))
assert(server:listen(1024))
server:settimeout(0)
add(readers, server)

local deadline = socket.gettime() + lifetime
while socket.gettime() < deadline do
	local r, w = socket.select(readers, writers, 1)
	for _, s in ipairs(r) do
		if s == server then
			while true do
				local client = server:accept()
				if not client then break end
				client:setoption("tcp-nodelay", true)
				client:settimeout(0)
				local conn = ssl.wrap(client, ctx)
				if conn then
					conn:settimeout(0)
					spawn(conn)
				else
					client:close()
				end
			end
		else
			remove(readers, s)
		end
	end
	for _, s in ipairs(w) do remove(writers, s) end
	local ready = {}
	for _, s in ipairs(r) do if s ~= server then ready[#ready + 1] = s end end
	for _, s in ipairs(w) do ready[#ready + 1] = s end
	for _, s in ipairs(ready) do
		local co = waiting[s]
		if co then
			waiting[s] = nil
			local ok, err = coroutine.resume(co)
			if not ok then io.stderr:write("luasec_server: ", tostring(err), "\n") s:close() end
		end
	end
end
