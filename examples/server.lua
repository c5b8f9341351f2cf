-- An echo server: each line a client sends comes back upper-cased.
--   lua examples/server.lua --cert chain.pem --key key.pem [--host 127.0.0.1] [--port 8443]
-- --port 0 picks a free port; the first line printed says which.
-- Stops gracefully on SIGINT/SIGTERM.
local tls = require "luatls"

local args = { host = "127.0.0.1", port = "8443" }
for i = 1, #arg, 2 do
	local k = arg[i]:match("^%-%-(.+)$")
	if not k or arg[i + 1] == nil then
		io.stderr:write("usage: server.lua --cert FILE --key FILE [--host ADDR] [--port N]\n")
		os.exit(2)
	end
	args[k] = arg[i + 1]
end

local server, err = tls.listen({
	host = args.host, port = tonumber(args.port),
	certificate = args.cert, key = args.key,
	alpn = { "echo/1", "http/1.1" },
	timeout = 30,
	grace = 2, -- on SIGINT/SIGTERM: seconds for open connections to finish
	on_handshake_error = function(msg, _, peer)
		io.stderr:write("handshake with ", peer, " failed: ", msg, "\n")
	end,
}, function(conn)
	while true do
		local line = conn:receive("*l")
		if not line or line == "" then break end
		conn:send(line:upper() .. "\n")
	end
end)
if not server then
	io.stderr:write("server.lua: ", err, "\n")
	os.exit(1)
end

local host, port = server:address()
print(("listening on %s:%d"):format(host, port))
io.stdout:flush()
tls.run()
print("server stopped")
