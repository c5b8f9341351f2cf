-- Checks when the certificates servers send expire, for CI and cron: one
-- line per server, and a non-zero exit status when any certificate of any
-- chain expires within the window (openssl x509 -checkend, for many servers
-- at once). The servers are contacted in parallel.
--
--   lua examples/expiry.lua HOST:PORT... [--days 30]
--
-- Exit status: 0 all fine, 1 something expires within the window (or has
-- expired), 2 a server could not be reached or a usage error.
local tls = require "luatls"

local DAY = 86400

local function usage(msg)
	if msg then io.stderr:write("expiry.lua: ", msg, "\n") end
	io.stderr:write("usage: expiry.lua HOST:PORT... [--days N]\n")
	os.exit(2)
end

local days, targets = 30, {}
local i = 1
while i <= #arg do
	if arg[i] == "--days" then
		days = tonumber(arg[i + 1])
		if not days or days < 0 then usage("--days needs a number of days") end
		i = i + 2
	elseif arg[i]:sub(1, 2) == "--" then
		usage("unknown option " .. arg[i])
	else
		targets[#targets + 1] = arg[i]
		i = i + 1
	end
end
if #targets == 0 then usage() end

local function host_port(s)
	local host, port = s:match("^%[(.+)%]:(%d+)$")
	if not host then host, port = s:match("^([^:]+):(%d+)$") end
	return host, tonumber(port)
end

local function is_ip(host)
	return host:match("^%d+%.%d+%.%d+%.%d+$") ~= nil or host:find(":", 1, true) ~= nil
end

local function when(t) return os.date("!%Y-%m-%d", t) end

local reports, status = {}, 0

local function check(n, target)
	local host, port = host_port(target)
	if not host then
		reports[n] = target .. ": not HOST:PORT"
		status = 2
		return
	end
	-- verify = false: an expired chain must still be fetched to be reported
	local conn, err, code = tls.connect { host = host, port = port, verify = false,
		server_name = not is_ip(host) and host or false }
	if not conn then
		reports[n] = string.format("%s: cannot check: %s (%s)", target, err, code)
		status = 2
		return
	end
	local chain = conn:peer_certificates()
	conn:close()
	local lines, first = {}, nil
	for k, c in ipairs(chain) do
		if c:expires_within(days * DAY) then
			local left = c:days_left()
			lines[#lines + 1] = string.format("  certificate %d (%s) %s on %s", k, c:subject(),
				left < 0 and "expired" or ("expires in " .. left .. " days,"), when(c:not_after()))
		end
		if not first or c:not_after() < first:not_after() then first = c end
	end
	if #lines > 0 then
		if status == 0 then status = 1 end
		reports[n] = string.format("%s: EXPIRES within %d days\n%s", target, days, table.concat(lines, "\n"))
	elseif first then
		reports[n] = string.format("%s: ok, first expiry %s (%d days, %s)", target, when(first:not_after()),
			first:days_left(), first:subject())
	else
		reports[n] = target .. ": the server sent no certificate"
		status = 2
	end
end

for n, target in ipairs(targets) do tls.spawn(check, n, target) end
tls.run()
for n = 1, #targets do print(reports[n]) end
os.exit(status)
