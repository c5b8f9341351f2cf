-- bench/luatls_server.lua: the luatls server of the bench, as a user would
-- write it. Speaks the bench protocol (see baseline.c): keep-alive
-- "GET /PATH HTTP/1.1" requests; "/bulk/N" answers N bytes, anything else
-- "ok\n".
--   lua5.4 bench/luatls_server.lua PORT CERT KEY [LIFETIME_SECONDS [tickets|notickets]]
-- "notickets" turns resumption off through the policy, as a user would, so
-- that no TLS 1.3 ticket follows a full handshake (the default: tickets on).
local tls = require "luatls"

local port, cert, key = tonumber(arg[1]), arg[2], arg[3]
local lifetime = tonumber(arg[4]) or 900
local policy = arg[5] == "notickets" and tls.policy { resumption = false } or nil

local OK = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
local CHUNK = string.rep("x", 65536)

assert(tls.listen({ host = "127.0.0.1", port = port, certificate = cert, key = key,
                    policy = policy, backlog = 1024 }, function(conn)
	while true do
		local line = conn:receive("*l")
		if not line then return end
		local bulk = line:match("^GET /bulk/(%d+)")
		repeat
			local header = conn:receive("*l")
			if not header then return end
		until header == ""
		if bulk then
			local left = tonumber(bulk)
			if not conn:send("HTTP/1.1 200 OK\r\nContent-Length: " .. left .. "\r\n\r\n") then return end
			while left > 0 do
				local piece = left >= #CHUNK and CHUNK or CHUNK:sub(1, left)
				if not conn:send(piece) then return end
				left = left - #piece
			end
		elseif not conn:send(OK) then
			return
		end
	end
end))

-- never outlive the bench that started us
tls.spawn(function() tls.sleep(lifetime) os.exit(0) end)
tls.run()
