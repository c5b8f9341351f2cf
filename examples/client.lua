-- Connects to a TLS server, prints what was negotiated and the peer's
-- certificate, sends a line and prints the answer.
--   lua examples/client.lua --host localhost --port 8443 [--cafile ca.pem] [--message TEXT]
local tls = require "luatls"

local args = { host = "localhost", message = "hello from luatls" }
for i = 1, #arg, 2 do
	local k = arg[i]:match("^%-%-(.+)$")
	if not k or arg[i + 1] == nil then
		io.stderr:write("usage: client.lua --host NAME --port N [--cafile FILE] [--message TEXT]\n")
		os.exit(2)
	end
	args[k] = arg[i + 1]
end

local status = 1
tls.spawn(function()
	local conn, err, code = tls.connect {
		host = args.host, port = tonumber(args.port), cafile = args.cafile,
		alpn = { "echo/1" },
	}
	if not conn then
		io.stderr:write("client.lua: ", err, " (", code, ")\n")
		return
	end
	local info = conn:info()
	local leaf = conn:peer_certificates()[1]
	local sans = leaf:sans()
	local names = {}
	for _, n in ipairs(sans.dns) do names[#names + 1] = "DNS:" .. n end
	for _, n in ipairs(sans.ip) do names[#names + 1] = "IP:" .. n end
	local row = "%-14s %s"
	print(row:format("version", info.version))
	print(row:format("cipher suite", info.cipher))
	print(row:format("group", info.group or "-"))
	print(row:format("ALPN", info.alpn or "-"))
	print(row:format("verified", tostring(info.verified)))
	print(row:format("subject", leaf:subject()))
	print(row:format("issuer", leaf:issuer()))
	print(row:format("names", table.concat(names, ", ")))
	print(row:format("expires", os.date("!%Y-%m-%d %H:%M:%S UTC", leaf:not_after()) ..
		(" (in %d days)"):format(math.floor((leaf:not_after() - os.time()) / 86400))))
	print(row:format("SPKI pin", leaf:spki_pin()))

	assert(conn:send(args.message .. "\n"))
	local answer, rerr = conn:receive("*l")
	print(row:format("sent", args.message))
	print(row:format("echoed", tostring(answer or rerr)))
	conn:close()
	if answer == args.message:upper() then status = 0 end
end)
tls.run()
os.exit(status)
