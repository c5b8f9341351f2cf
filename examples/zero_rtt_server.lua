-- An HTTP-style server that takes TLS 1.3 early data (0-RTT) the safe way:
-- a GET that arrives as early data is served at once, before the handshake
-- is complete; any other request in early data waits for the end of the
-- handshake (RFC 8470), where a replayed copy can never get (a replay
-- cannot finish the handshake). Requests sent after the handshake are
-- served as usual.
--   lua examples/zero_rtt_server.lua --cert chain.pem --key key.pem [--host 127.0.0.1] [--port 8443]
--   printf 'GET / HTTP/1.1\r\n\r\n' > req.txt
--   openssl s_client -connect 127.0.0.1:8443 -sess_out s.pem      # once, for a ticket
--   openssl s_client -connect 127.0.0.1:8443 -sess_in s.pem -early_data req.txt
-- --port 0 picks a free port; the first line printed says which.
local tls = require "luatls"

local args = { host = "127.0.0.1", port = "8443" }
for i = 1, #arg, 2 do
	local k = arg[i]:match("^%-%-(.+)$")
	if not k or arg[i + 1] == nil then
		io.stderr:write("usage: zero_rtt_server.lua --cert FILE --key FILE [--host ADDR] [--port N]\n")
		os.exit(2)
	end
	args[k] = arg[i + 1]
end

-- The 0-RTT rule, as policy: only idempotent requests are processed
-- before the client has proven the connection is live.
local policy = tls.policy {
	early_data = {
		max_size = 16384,
		allow = function(data, info)
			if data:match("^GET ") or data:match("^HEAD ") then return "accept" end
			return "defer"
		end,
	},
}

local function respond(conn, status, body, early)
	conn:send(("HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" ..
		"Connection: close\r\n%s\r\n%s"):format(status, #body,
		early and "X-Early-Data: 1\r\n" or "", body))
end

local server, err = tls.listen({
	host = args.host, port = tonumber(args.port),
	certificate = args.cert, key = args.key,
	policy = policy, timeout = 10,
	on_handshake_error = function(msg, _, peer)
		io.stderr:write("handshake with ", peer, " failed: ", msg, "\n")
	end,
}, function(conn)
	local early = conn:early_data()
	local request = conn:receive("*l")
	if not request then return end
	repeat local header = conn:receive("*l") until not header or header == ""
	local method, path = request:match("^(%u+) (%S+)")
	-- was the request line among the bytes that came as early data?
	local in_early = early ~= nil and #early >= #request
	if method == "GET" or method == "HEAD" then
		respond(conn, "200 OK", "GET " .. path .. (in_early and " served from early data\n"
			or " served after the handshake\n"), in_early)
	elseif method then
		respond(conn, "200 OK", method .. " " .. path .. " processed after the handshake\n", false)
	else
		respond(conn, "400 Bad Request", "bad request\n", false)
	end
end)
if not server then
	io.stderr:write("zero_rtt_server.lua: ", err, "\n")
	os.exit(1)
end

local host, port = server:address()
print(("listening on %s:%d"):format(host, port))
io.stdout:flush()
tls.run()
