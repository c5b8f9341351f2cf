-- A readable report on a certificate chain: from a file, or as a server
-- sends it. Subject, names, issuer chain, expiry in days, key, pin, and the
-- problems found (verification against a trust store, plus the chain's own
-- faults: order, missing intermediates, weak algorithms, expiry).
--
--   lua examples/certinfo.lua FILE|HOST:PORT [--cafile FILE] [--name HOSTNAME]
--
-- Exit status: 0 when the chain verifies, 1 when it does not, 2 when it
-- cannot be read or fetched.
local tls = require "luatls"
local x509 = tls.x509

local function usage(msg)
	if msg then io.stderr:write("certinfo.lua: ", msg, "\n") end
	io.stderr:write("usage: certinfo.lua FILE|HOST:PORT [--cafile FILE] [--name HOSTNAME]\n")
	os.exit(2)
end

local target, cafile, name
local i = 1
while i <= #arg do
	local a = arg[i]
	if a == "--cafile" or a == "--name" then
		if not arg[i + 1] then usage(a .. " needs a value") end
		if a == "--cafile" then cafile = arg[i + 1] else name = arg[i + 1] end
		i = i + 2
	elseif a:sub(1, 2) == "--" or target then
		usage("unexpected argument " .. a)
	else
		target = a
		i = i + 1
	end
end
if not target then usage() end

local function readfile(path)
	local f = io.open(path, "rb")
	if not f then return nil end
	local data = f:read("*a")
	f:close()
	return data
end

-- "host:port" or "[v6]:port" -> host, port
local function host_port(s)
	local host, port = s:match("^%[(.+)%]:(%d+)$")
	if not host then host, port = s:match("^([^:]+):(%d+)$") end
	return host, tonumber(port)
end

local function is_ip(host)
	return host:match("^%d+%.%d+%.%d+%.%d+$") ~= nil or host:find(":", 1, true) ~= nil
end

-- Fetches the chain a server sends, without judging it (verify = false):
-- the judging is this script's job.
local function fetch(host, port)
	local chain, err
	tls.spawn(function()
		local conn, msg, code = tls.connect { host = host, port = port, verify = false,
			server_name = not is_ip(host) and host or false }
		if not conn then
			err = msg .. " (" .. code .. ")"
			return
		end
		chain = conn:peer_certificates()
		conn:close()
	end)
	tls.run()
	return chain, err
end

local chain, label
local data = readfile(target)
if data then
	local err
	chain, err = x509.load_chain(data)
	if not chain then
		local one
		one, err = x509.load(data)
		chain = one and { one }
	end
	if not chain then
		io.stderr:write("certinfo.lua: ", target, ": ", err, "\n")
		os.exit(2)
	end
	label = target
else
	local host, port = host_port(target)
	if not host then usage(target .. " is neither a file nor HOST:PORT") end
	local err
	chain, err = fetch(host, port)
	if not chain then
		io.stderr:write("certinfo.lua: ", target, ": ", err, "\n")
		os.exit(2)
	end
	label = target
	name = name or host
end

local function when(t) return os.date("!%Y-%m-%d %H:%M:%S UTC", t) end

local function names(c)
	local out, sans = {}, c:sans()
	for _, kind in ipairs { "dns", "ip", "email", "uri" } do
		for _, n in ipairs(sans[kind]) do out[#out + 1] = kind:upper() .. ":" .. n end
	end
	return #out > 0 and table.concat(out, ", ") or "(none)"
end

local function line(key, value)
	if value and value ~= "" then print(string.format("    %-12s %s", key, value)) end
end

print(string.format("%s: %d certificate%s", label, #chain, #chain == 1 and "" or "s"))
for n, c in ipairs(chain) do
	print()
	print(string.format("[%d] %s", n, c:subject()))
	line("issuer", c:issuer())
	line("names", names(c))
	local left = c:days_left()
	line("valid", string.format("%s to %s (%s)", when(c:not_before()), when(c:not_after()),
		left >= 0 and (left .. " days left") or ("expired " .. -left .. " days ago")))
	local k = c:public_key()
	line("key", k.algorithm .. " " .. (k.curve or (k.bits .. " bits")))
	line("signature", (c:signature_algorithm()))
	local bc = c:basic_constraints()
	line("CA", bc and bc.ca and ("yes" .. (bc.path_len and (", path length " .. bc.path_len) or "")) or "no")
	local ku = c:key_usage()
	line("key usage", ku and table.concat(ku, ", "))
	local eku, list = c:extended_key_usage(), {}
	for _, u in ipairs(eku or {}) do list[#list + 1] = u.name or u.oid end
	line("purposes", table.concat(list, ", "))
	local aia = c:authority_info_access()
	if aia then
		line("OCSP", table.concat(aia.ocsp, ", "))
		line("CA issuers", table.concat(aia.ca_issuers, ", "))
	end
	line("CRLs", table.concat(c:crl_distribution_points(), ", "))
	local scts = c:scts()
	if #scts > 0 then line("SCTs", #scts .. " embedded") end
	line("serial", c:serial())
	line("sha256", c:fingerprint("sha256"))
	line("pin", c:spki_pin())
end

print()
local store, err
if cafile then
	store, err = x509.store { cafile = cafile }
else
	store, err = x509.store { system = true }
end
local ok, result
if not store then
	print("verification: not possible, " .. err)
	result = { problems = x509.diagnose(chain, nil, { hostname = name }) }
else
	local msg
	ok, msg, _, result = store:verify(chain, { hostname = name })
	if ok then
		result = msg
		print(string.format("verification (%s%s): OK", cafile or "system trust store",
			name and (", name " .. name) or ""))
	else
		print(string.format("verification (%s%s): FAILED", cafile or "system trust store",
			name and (", name " .. name) or ""))
		if not result then
			print("  " .. msg)
			result = { problems = x509.diagnose(chain, nil, { hostname = name }) }
		end
	end
	if result.path and #result.path > 0 then
		print("path built (leaf first):")
		for n, c in ipairs(result.path) do print(string.format("  %d. %s", n, c:subject())) end
	end
end

local problems, rank = {}, { error = 1, warning = 2, info = 3 }
for n, p in ipairs(result.problems or {}) do problems[n] = p end
table.sort(problems, function(a, b)
	if rank[a.severity] ~= rank[b.severity] then return rank[a.severity] < rank[b.severity] end
	return (a.index or 0) < (b.index or 0)
end)
if #problems > 0 then
	print()
	print("problems:")
	for _, p in ipairs(problems) do
		print(string.format("  %-8s %s", p.severity, p.message))
	end
end
os.exit(ok and 0 or 1)
