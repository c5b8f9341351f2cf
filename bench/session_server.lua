-- bench/session_server.lua: a diagnostic, not part of `make bench`: the
-- bench's luatls server (luatls_server.lua) with a handler that reads the
-- connection's session directly, the way core_server.lua does, instead of
-- through the stream's receive and send. Everything else is listen's: the
-- acceptor, the scheduler, a coroutine per connection, close. Timed
-- against both, it splits what the stream costs from what the rest of the
-- Lua layer does (see RESULTS.md). Uses the stream's internal fields
-- (sched), which may change under it.
--   lua5.4 bench/session_server.lua PORT CERT KEY [LIFETIME_SECONDS [tickets|notickets]]
local tls = require "luatls"

local port, cert, key = tonumber(arg[1]), arg[2], arg[3]
local lifetime = tonumber(arg[4]) or 900
local policy = arg[5] == "notickets" and tls.policy { resumption = false } or nil

local OK = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"

assert(tls.listen({ host = "127.0.0.1", port = port, certificate = cert, key = key,
                    policy = policy, backlog = 1024 }, function(conn)
	local sess, sched = conn:session(), conn.sched
	-- waits for what the last attempt asked for; false: closed or timed out
	local function wait(code)
		return sched:wait_io(conn, code == "wantwrite" and "w" or "r")
	end
	local buf = ""
	while true do
		local data, _, code = sess:recv()
		if data then
			-- answers each request once its header is in (no bulk)
			buf = buf .. data
			if buf:find("\r\n\r\n", 1, true) then
				buf = ""
				local sent = 0
				while sent < #OK do
					local n, _, scode = sess:send(OK, sent + 1)
					if n then
						sent = sent + n
					elseif scode == "wantwrite" or scode == "wantread" then
						if not wait(scode) then return end
					else
						return
					end
				end
			end
		elseif code == "wantread" or code == "wantwrite" then
			if not wait(code) then return end
		else
			return
		end
	end
end))

-- never outlive the bench that started us
tls.spawn(function() tls.sleep(lifetime) os.exit(0) end)
tls.run()
