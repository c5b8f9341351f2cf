-- Certificates as Lua values: load, inspect, verify, diagnose, pin and
-- make them. The objects come from the C core (luatls.Certificate,
-- luatls.PrivateKey, luatls.CRL, luatls.Store); this module is their front
-- door and the place where facts become advice.
local core = require "luatls.core"

local M = {}

local format, concat, date, floor = string.format, table.concat, os.date, math.floor
local DAY = 86400

local OID = {
	server = "1.3.6.1.5.5.7.3.1",
	client = "1.3.6.1.5.5.7.3.2",
}
local PURPOSE_TEXT = {
	["1.3.6.1.5.5.7.3.1"] = "TLS server authentication",
	["1.3.6.1.5.5.7.3.2"] = "TLS client authentication",
	["1.3.6.1.5.5.7.3.3"] = "code signing",
	["1.3.6.1.5.5.7.3.4"] = "email protection",
	["1.3.6.1.5.5.7.3.8"] = "time stamping",
	["1.3.6.1.5.5.7.3.9"] = "OCSP signing",
	["2.5.29.37.0"] = "any purpose",
}

---------------------------------------------------------------------------
-- argument checks: misuse raises, naming the argument

local function fail_arg(fname, n, msg)
	error(format("bad argument #%d to '%s' (%s)", n, fname, msg), 3)
end

local function check_type(v, want, fname, n, optional)
	if v == nil and optional then return end
	if type(v) ~= want then
		fail_arg(fname, n, want .. " expected, got " .. (v == nil and "no value" or type(v)))
	end
end

local function check_options(opts, fname, allowed, n)
	n = n or 1
	if opts == nil then return {} end
	check_type(opts, "table", fname, n)
	for k in pairs(opts) do
		if type(k) ~= "string" or not allowed[k] then
			error(format("bad argument #%d to '%s' (unknown option '%s')", n, fname, tostring(k)), 3)
		end
	end
	return opts
end

local function set(...)
	local s = {}
	for _, k in ipairs { ... } do s[k] = true end
	return s
end

local function is_object(v, kind)
	local mt = getmetatable(v)
	return type(v) == "userdata" and type(mt) == "table" and mt.__name == kind
end
M.is_certificate = function(v) return is_object(v, "luatls.Certificate") end

local function readfile(path, what)
	local f, err = io.open(path, "rb")
	if not f then return nil, format("cannot read %s: %s", what, err), "file" end
	local data = f:read("*a")
	f:close()
	if not data then return nil, format("cannot read %s %s", what, path), "file" end
	return data
end

---------------------------------------------------------------------------
-- loading

-- x509.load(pem_or_der) -> Certificate | nil, message, code
function M.load(data)
	check_type(data, "string", "load", 1)
	return core.certificate(data)
end

-- x509.load_chain(pem) -> { Certificate, ... } (in the order given) | nil, message, code
function M.load_chain(data)
	check_type(data, "string", "load_chain", 1)
	return core.certificates(data)
end

-- x509.load_file(path) -> { Certificate, ... } | nil, message, code
function M.load_file(path)
	check_type(path, "string", "load_file", 1)
	local data, err, code = readfile(path, "certificate file")
	if not data then return nil, err, code end
	return core.certificates(data)
end

-- x509.load_key(pem_or_der [, password]) -> PrivateKey | nil, message, code
function M.load_key(data, password)
	check_type(data, "string", "load_key", 1)
	check_type(password, "string", "load_key", 2, true)
	return core.load_key(data, password)
end

-- x509.load_crl(pem_or_der) -> CRL | nil, message, code
function M.load_crl(data)
	check_type(data, "string", "load_crl", 1)
	return core.load_crl(data)
end

-- x509.load_pkcs12(data [, password]) -> { key, certificate, chain, extra } | nil, message, code
function M.load_pkcs12(data, password)
	check_type(data, "string", "load_pkcs12", 1)
	check_type(password, "string", "load_pkcs12", 2, true)
	local p, err, code = core.load_pkcs12(data, password)
	if not p then return nil, err, code end
	p.certificate = p.chain[1]
	return p
end

---------------------------------------------------------------------------
-- chain analysis

local function day(t)
	return date("!%Y-%m-%d %H:%M:%S UTC", t)
end

local function plural(n, word)
	return format("%d %s%s", n, word, n == 1 and "" or "s")
end

local function names_of(cert)
	local sans, out = cert:sans(), {}
	for _, n in ipairs(sans.dns) do out[#out + 1] = n end
	for _, n in ipairs(sans.ip) do out[#out + 1] = n end
	if #out == 0 then
		local cn = cert:subject():match("CN=([^,]+)")
		if cn then out[1] = cn .. " (common name)" end
	end
	return out
end
M.names_of = names_of

-- Orders a chain from its first certificate: returns the list of indexes
-- leaf → issuer → issuer's issuer, and the indexes left over.
local function order_chain(chain, first)
	local order, used = { first }, { [first] = true }
	local cur = chain[first]
	while not cur:self_signed() do
		local found
		for j = 1, #chain do
			if not used[j] and chain[j]:issued(cur) and chain[j] ~= cur then found = j break end
		end
		if not found then break end
		order[#order + 1], used[found] = found, true
		cur = chain[found]
	end
	local left = {}
	for j = 1, #chain do if not used[j] then left[#left + 1] = j end end
	return order, left
end

-- The certificate that issues no other one in the chain: the real leaf.
local function find_leaf(chain)
	for i = 1, #chain do
		local issues = false
		for j = 1, #chain do
			if i ~= j and chain[i]:issued(chain[j]) and chain[i] ~= chain[j]
				and not chain[j]:self_signed() then
				issues = true
				break
			end
		end
		if not issues then return i end
	end
	return 1
end

local WEAK_HASH = { MD5 = true, MD2 = true, SHA1 = true }

local function short_key(cert)
	local k = cert:public_key()
	if not k then return nil end
	local a, bits = k.algorithm, k.bits or 0
	if (a == "RSA" or a == "RSA-PSS" or a == "DSA") and bits < 2048 then return k end
	if a == "ECDSA" and bits < 224 then return k end
	return nil
end

local function label(i, cert)
	return format("certificate %d of the chain (%s)", i, cert:subject())
end

-- x509.diagnose(chain [, result [, opts]]) -> { {code, severity, index,
-- certificate, message}, ... }
-- result: what store:verify or a session's verify_result reported (reasons);
-- without it, expiry and the hostname are checked here. opts: hostname,
-- purpose ("server"|"client"|OID), time, who ("the server example.com:443"),
-- soon (seconds; default 30 days).
function M.diagnose(chain, result, opts)
	check_type(chain, "table", "diagnose", 1)
	check_type(result, "table", "diagnose", 2, true)
	opts = check_options(opts, "diagnose", set("hostname", "purpose", "time", "who", "soon"), 3)
	local now = opts.time or (result and result.time) or os.time()
	local soon = opts.soon or 30 * DAY
	local who = opts.who
	local problems = {}
	local function add(code, severity, index, fmt, ...)
		problems[#problems + 1] = {
			code = code, severity = severity, index = index,
			certificate = index and chain[index] or nil,
			message = format(fmt, ...),
		}
	end
	if #chain == 0 then
		add("no-certificate", "error", nil, "%s sent no certificate", who or "the peer")
		return problems
	end
	local reasons = {}
	if result then
		for _, r in ipairs(result.reasons or {}) do reasons[r] = true end
	else
		local hostname = opts.hostname
		if hostname and not chain[1]:check_hostname(hostname) then reasons["hostname-mismatch"] = true end
		for _, c in ipairs(chain) do
			if c:not_after() < now then reasons.expired = true end
			if c:not_before() > now then reasons["not-activated"] = true end
		end
	end
	local failed = result and (result.valid == false or (#(result.reasons or {}) > 0)) or false
	for _ in pairs(reasons) do failed = true end
	local whose = who and ("the certificate of " .. who) or "the certificate"

	-- order: the leaf first, each next certificate the issuer of the one before
	local leaf = find_leaf(chain)
	if leaf ~= 1 then
		add("leaf-not-first", failed and "error" or "warning", leaf,
			"the chain does not start with its leaf: certificate 1 (%s) is a CA that issued another certificate of the chain; " ..
			"%s must come first, then each issuer after the certificate it signed",
			chain[1]:subject(), label(leaf, chain[leaf]))
	end
	local order, left = order_chain(chain, leaf)
	local sorted = leaf == 1
	for k = 1, #order do if order[k] ~= k then sorted = false end end
	if leaf == 1 and not sorted then
		add("out-of-order", "warning", order[2],
			"the chain is out of order: after the leaf must come its issuer, then that one's issuer " ..
			"(here: %s); some clients reject such chains", concat(order, ", "))
	end
	for _, j in ipairs(left) do
		local dup
		for k = 1, #chain do if k ~= j and chain[k] == chain[j] then dup = k break end end
		if dup and dup < j then
			add("duplicate", "warning", j, "%s is sent twice (also certificate %d); remove the copy", label(j, chain[j]), dup)
		elseif not dup then
			add("unneeded", "warning", j, "%s is not part of the path from the leaf; remove it from the chain",
				label(j, chain[j]))
		end
	end
	local top = chain[order[#order]]
	if #order > 1 and top:self_signed() then
		add("root-sent", "info", order[#order],
			"%s is a self-signed root: sending it is unnecessary, clients must already trust it",
			label(order[#order], top))
	end

	-- time
	if reasons.expired then
		local found
		for i, c in ipairs(chain) do
			if c:not_after() < now then
				add("expired", "error", i, "%s expired on %s, %s ago; it must be renewed (or this machine's clock is wrong)",
					label(i, c), day(c:not_after()), plural(floor((now - c:not_after()) / DAY), "day"))
				found = true
				break
			end
		end
		if not found then
			add("expired", "error", nil, "the trusted CA %s, which issued the last certificate of the chain, has expired",
				top:issuer())
		end
	end
	if reasons["not-activated"] then
		local found
		for i, c in ipairs(chain) do
			if c:not_before() > now then
				add("not-activated", "error", i, "%s is not valid until %s; check this machine's clock, or wait",
					label(i, c), day(c:not_before()))
				found = true
				break
			end
		end
		if not found then
			add("not-activated", "error", nil, "the trusted CA %s is not valid yet", top:issuer())
		end
	end
	local first
	for k, i in ipairs(order) do
		local c = chain[i]
		if not (k > 1 and c:self_signed()) then
			if not first or c:not_after() < chain[first]:not_after() then first = i end
		end
	end
	if first then
		local c = chain[first]
		local left_s = c:not_after() - now
		if left_s >= 0 then
			add(left_s < soon and "expires-soon" or "expires-first", left_s < soon and "warning" or "info", first,
				"%s expires %son %s (in %s)", label(first, c), #order > 1 and "first, " or "", day(c:not_after()),
				plural(floor(left_s / DAY), "day"))
		end
	end

	-- the leaf's names and purpose
	if reasons["hostname-mismatch"] then
		local names = names_of(chain[1])
		add("hostname-mismatch", "error", 1,
			"%s is for %s, not for %s; connect with one of those names, or get a certificate that includes %s",
			whose, #names > 0 and concat(names, ", ") or "no names at all",
			tostring(opts.hostname or (result and result.hostname)), tostring(opts.hostname or (result and result.hostname)))
	end
	if reasons["purpose-mismatch"] then
		local want = opts.purpose or "server"
		want = PURPOSE_TEXT[OID[want] or want] or want
		local allowed = {}
		for _, u in ipairs(chain[1]:extended_key_usage() or {}) do
			allowed[#allowed + 1] = PURPOSE_TEXT[u.oid] or u.name or u.oid
		end
		add("purpose-mismatch", "error", 1, "%s (%s) is not allowed for %s: its extended key usage allows only %s",
			whose, chain[1]:subject(), want, #allowed > 0 and concat(allowed, ", ") or "nothing")
	end

	-- the issuers
	if reasons["signer-not-found"] then
		if #chain == 1 and chain[1]:self_signed() then
			add("self-signed", "error", 1,
				"%s (%s) is self-signed and not trusted; trust it explicitly (pass it as cafile) or pin it",
				whose, chain[1]:subject())
		elseif top:self_signed() then
			add("unknown-ca", "error", order[#order],
				"the chain ends at a certificate issued by %s, which is not a trusted CA (unknown CA); " ..
				"pass that CA as cafile if you trust it", top:subject())
		else
			add("missing-intermediate", "error", order[#order],
				"%s was issued by %s, which is neither in the chain nor a trusted CA: most likely that intermediate " ..
				"certificate is missing from the chain and must be sent after it; if it is a root, it is not a " ..
				"trusted CA (unknown CA): pass it as cafile if you trust it",
				label(order[#order], top), top:issuer())
		end
	end
	if reasons["signer-not-ca"] then
		local found
		for k = 2, #order do
			local c = chain[order[k]]
			if not c:is_ca() then
				add("signer-not-ca", "error", order[k], "%s signed %s but is not a CA", label(order[k], c),
					label(order[k - 1], chain[order[k - 1]]))
				found = true
				break
			end
		end
		if not found then add("signer-not-ca", "error", nil, "a certificate of the chain was signed by a certificate that is not a CA") end
	end
	if reasons["signer-constraints-failure"] then
		local found
		for k = 2, #order do
			local bc = chain[order[k]]:basic_constraints()
			if bc and bc.ca and bc.path_len and k - 2 > bc.path_len then
				add("path-length-exceeded", "error", order[k],
					"%s allows at most %s below it (path length constraint %d), but the chain has %d: the path is too long",
					label(order[k], chain[order[k]]), plural(bc.path_len, "intermediate CA"), bc.path_len, k - 2)
				found = true
				break
			end
		end
		if not found then
			add("signer-constraints-failure", "error", nil,
				"a CA of the chain does not allow this certificate (its path length or name constraints forbid it)")
		end
	end
	if reasons.revoked then
		local idx
		for i, c in ipairs(result and result.certificates or {}) do
			for _, r in ipairs(c.reasons or {}) do if r == "revoked" then idx = idx or i end end
		end
		add("revoked", "error", idx, "a certificate of the chain has been revoked by its CA (it is listed in a CRL); it must be replaced")
	end
	if reasons["signature-failure"] then
		local found
		for k = 2, #order do
			if not chain[order[k - 1]]:signed_by(chain[order[k]]) then
				add("signature-failure", "error", order[k - 1], "the signature of %s does not verify with the key of its issuer " ..
					"(a corrupted or forged certificate)", label(order[k - 1], chain[order[k - 1]]))
				found = true
				break
			end
		end
		if not found then
			add("signature-failure", "error", nil, "a signature in the chain does not verify (a corrupted or forged certificate)")
		end
	end
	for _, r in ipairs { "revocation-data-superseded", "revocation-data-in-future", "unknown-critical-extensions",
		"missing-ocsp-status", "invalid-ocsp-status", "mismatch" } do
		if reasons[r] then
			add(r, "error", nil, "%s", (r:gsub("%-", " ")))
		end
	end

	-- weak algorithms and keys; GnuTLS rejects weak signatures, a short key
	-- only under a stricter profile
	local weak_sig, short = false, {}
	for k, i in ipairs(order) do
		local c = chain[i]
		local name, _, hash = c:signature_algorithm()
		if not (k > 1 and c:self_signed()) and hash and WEAK_HASH[hash] then
			weak_sig = true
			add("weak-signature", reasons["insecure-algorithm"] and "error" or "warning", i,
				"%s is signed with %s, which is no longer safe; it must be reissued with SHA-256 or better",
				label(i, c), name)
		end
		local sk = short_key(c)
		if sk then short[#short + 1] = { i, c, sk } end
	end
	for _, s in ipairs(short) do
		add("short-key", reasons["insecure-algorithm"] and not weak_sig and "error" or "warning", s[1],
			"%s has a %d-bit %s key, too short to be safe; use RSA 2048 or more, or ECDSA P-256",
			label(s[1], s[2]), s[3].bits, s[3].algorithm)
	end
	if reasons["insecure-algorithm"] and not weak_sig and #short == 0 then
		add("insecure-algorithm", "error", nil,
			"a certificate of the chain (or its trusted CA) uses an insecure algorithm such as SHA-1 or MD5, or a key too short")
	end
	if failed then
		local any = false
		for _, p in ipairs(problems) do if p.severity == "error" then any = true end end
		if not any then
			add("invalid", "error", nil, "%s", ((result and result.text or "the certificate is not trusted"):gsub("%.?%s*$", "")))
		end
	end
	return problems
end

-- x509.verify_message(chain, result [, opts]) -> "certificate verify failed: ..."
-- One sentence per error diagnose() finds; the same text for a handshake's
-- result and for store:verify on the same chain.
function M.verify_message(chain, result, opts)
	local parts = {}
	for _, p in ipairs(M.diagnose(chain, result, opts)) do
		if p.severity == "error" then parts[#parts + 1] = p.message end
	end
	if #parts == 0 then parts[1] = "the certificate is not trusted" end
	return "certificate verify failed: " .. concat(parts, "; ")
end

---------------------------------------------------------------------------
-- trust store

local store_options = set("system", "cafile", "capath", "pem", "certificates", "crls")

local function each(v)
	if type(v) == "table" and not getmetatable(v) then return ipairs(v) end
	return ipairs { v }
end

-- x509.store{ system=, cafile=, capath=, pem=, certificates=, crls= }
-- -> Store | nil, message, code
function M.store(opts)
	opts = check_options(opts, "store", store_options)
	local st = core.store()
	local function add(ok, err, code)
		if not ok then st:close() end
		return ok, err, code
	end
	if opts.system then
		local ok, err, code = add(st:add_system())
		if not ok then return nil, err, code end
	end
	for _, path in each(opts.cafile) do
		check_type(path, "string", "store", 1)
		local data, err, code = readfile(path, "cafile")
		if not data then st:close() return nil, err, code end
		local ok
		ok, err, code = add(st:add_pem(data))
		if not ok then return nil, format("cafile %s: %s", path, err), code end
	end
	for _, path in each(opts.capath) do
		check_type(path, "string", "store", 1)
		local ok, err, code = add(st:add_dir(path))
		if not ok then return nil, "capath " .. err, code end
	end
	for _, pem in each(opts.pem) do
		check_type(pem, "string", "store", 1)
		local ok, err, code = add(st:add_pem(pem))
		if not ok then return nil, err, code end
	end
	for _, c in each(opts.certificates) do
		if not M.is_certificate(c) then error("bad argument #1 to 'store' (certificates must hold Certificate objects)", 2) end
		local ok, err, code = add(st:add_certificate(c))
		if not ok then return nil, err, code end
	end
	for _, crl in each(opts.crls) do
		if type(crl) ~= "string" and not is_object(crl, "luatls.CRL") then
			error("bad argument #1 to 'store' (crls must hold CRL objects or PEM/DER strings)", 2)
		end
		local ok, err, code = add(st:add_crl(crl))
		if not ok then return nil, err, code end
	end
	return st
end

local verify_options = set("hostname", "purpose", "time")

-- store:verify(chain [, opts]) -> true, result | nil, message, "verify", result
-- chain: a Certificate, a list of them (leaf first) or PEM text.
local function store_verify(self, chain, opts)
	opts = check_options(opts, "verify", verify_options, 2)
	if type(chain) == "string" then
		local list, err, code = core.certificates(chain)
		if not list then return nil, err, code end
		chain = list
	elseif M.is_certificate(chain) then
		chain = { chain }
	elseif type(chain) ~= "table" then
		fail_arg("verify", 1, "Certificate, list of Certificates or PEM expected, got " .. type(chain))
	end
	for i, c in ipairs(chain) do
		if not M.is_certificate(c) then fail_arg("verify", 1, "chain[" .. i .. "] is not a Certificate") end
	end
	check_type(opts.hostname, "string", "verify", 2, true)
	check_type(opts.time, "number", "verify", 2, true)
	local purpose = opts.purpose
	if purpose == nil then purpose = "server" end
	if purpose ~= false and purpose ~= "any" then
		check_type(purpose, "string", "verify", 2)
		purpose = OID[purpose] or purpose
		if not purpose:match("^%d[%d%.]*$") then
			fail_arg("verify", 2, "purpose must be 'server', 'client', 'any' or an OID")
		end
	else
		purpose = nil
	end
	if #chain == 0 then
		local result = { valid = false, reasons = {}, certificates = {}, path = {}, chain = chain, problems = {} }
		result.problems = M.diagnose(chain, result, {})
		result.message = "certificate verify failed: there is no certificate to verify"
		return nil, result.message, "verify", result
	end
	if #chain > 16 then
		return nil, "certificate verify failed: the chain has more than 16 certificates", "verify"
	end
	local result, err, code = self:raw_verify(chain, opts.hostname, purpose, opts.time)
	if not result then return nil, err, code end
	result.valid = result.status == 0
	result.chain, result.hostname, result.purpose, result.time = chain, opts.hostname, purpose, opts.time
	for i, c in ipairs(result.certificates) do c.certificate = chain[i] end
	if result.valid and #result.path > 0 then result.trusted = result.path[#result.path] end
	local dopts = { hostname = opts.hostname, purpose = purpose, time = opts.time }
	result.problems = M.diagnose(chain, result, dopts)
	if result.valid then return true, result end
	result.message = M.verify_message(chain, result, dopts)
	return nil, result.message, "verify", result
end

do
	local mt = getmetatable(core.store())
	mt.__index.verify = store_verify
end

---------------------------------------------------------------------------
-- generation

local key_options = set("type", "bits", "curve")

-- x509.generate_key{ type = "ecdsa"|"ed25519"|"ed448"|"rsa", curve =, bits = }
-- -> PrivateKey | nil, message, code
function M.generate_key(opts)
	opts = check_options(opts, "generate_key", key_options)
	local kind = opts.type or "ecdsa"
	if kind == "ecdsa" then
		local curve = opts.curve or "P-256"
		if curve ~= "P-256" and curve ~= "P-384" and curve ~= "P-521" then
			fail_arg("generate_key", 1, "curve must be P-256, P-384 or P-521")
		end
		return core.generate_key("ecdsa", curve)
	elseif kind == "rsa" then
		local bits = opts.bits or 2048
		if type(bits) ~= "number" or bits < 1024 or bits > 16384 or bits % 1 ~= 0 then
			fail_arg("generate_key", 1, "bits must be an integer from 1024 to 16384")
		end
		return core.generate_key("rsa", bits)
	elseif kind == "ed25519" or kind == "ed448" then
		return core.generate_key(kind)
	end
	fail_arg("generate_key", 1, "type must be 'ecdsa', 'ed25519', 'ed448' or 'rsa'")
end

local function hex_to_bytes(hex, fname, what)
	hex = hex:gsub("[:%s]", "")
	if hex == "" or hex:find("[^%x]") then fail_arg(fname, 1, what .. " must be hex digits or a number") end
	if #hex % 2 == 1 then hex = "0" .. hex end
	return (hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

local function serial_bytes(v, fname, what)
	if v == nil then
		local b = core.random_bytes(16)
		return string.char(b:byte(1) % 128 + (b:byte(1) % 128 == 0 and 1 or 0)) .. b:sub(2)
	elseif type(v) == "number" then
		if v < 0 or v % 1 ~= 0 then fail_arg(fname, 1, what .. " must be a positive integer") end
		return hex_to_bytes(format("%x", v), fname, what)
	elseif type(v) == "string" then
		local b = hex_to_bytes(v, fname, what)
		if b:byte(1) >= 128 then b = "\0" .. b end
		return b
	end
	fail_arg(fname, 1, what .. " must be hex digits or a number")
end

local function looks_ip(s)
	return s:match("^%d+%.%d+%.%d+%.%d+$") or (s:find(":", 1, true) and s:match("^[%x:%.]+$"))
end

local function list_of_strings(v, fname, what)
	if v == nil then return nil end
	if type(v) == "string" then v = { v } end
	if type(v) ~= "table" then fail_arg(fname, 1, what .. " must be a list of strings") end
	for _, s in ipairs(v) do
		if type(s) ~= "string" then fail_arg(fname, 1, what .. " must be a list of strings") end
	end
	return v
end

local issue_options = set("key", "subject", "sans", "serial", "not_before", "not_after", "days", "ca", "path_len",
	"key_usage", "extended_key_usage", "crl_distribution_points", "ocsp", "ca_issuers", "extensions",
	"issuer", "issuer_key", "hash")

-- x509.issue{ key=, subject=, sans=, serial=, not_before=, not_after=, days=,
-- ca=, path_len=, key_usage=, extended_key_usage=, crl_distribution_points=,
-- ocsp=, ca_issuers=, extensions=, issuer=, issuer_key=, hash= }
-- -> Certificate | nil, message, code. Self-signed without issuer.
function M.issue(opts)
	opts = check_options(opts, "issue", issue_options)
	local key = opts.key
	if not is_object(key, "luatls.PrivateKey") then fail_arg("issue", 1, "option 'key' must be a PrivateKey") end
	check_type(opts.subject, "string", "issue", 1)
	if (opts.issuer == nil) ~= (opts.issuer_key == nil) then
		fail_arg("issue", 1, "options 'issuer' and 'issuer_key' go together")
	end
	if opts.issuer then
		if not M.is_certificate(opts.issuer) then fail_arg("issue", 1, "option 'issuer' must be a Certificate") end
		if not is_object(opts.issuer_key, "luatls.PrivateKey") then
			fail_arg("issue", 1, "option 'issuer_key' must be a PrivateKey")
		end
		if not opts.issuer_key:matches(opts.issuer) then
			fail_arg("issue", 1, "option 'issuer_key' is not the key of 'issuer'")
		end
	end
	local now = os.time()
	local not_before = opts.not_before or now
	local days = opts.days or 365
	check_type(not_before, "number", "issue", 1)
	check_type(days, "number", "issue", 1)
	local not_after = opts.not_after or (not_before + days * DAY)
	check_type(not_after, "number", "issue", 1)
	local ca = opts.ca and true or false
	if opts.path_len ~= nil and (type(opts.path_len) ~= "number" or opts.path_len < 0) then
		fail_arg("issue", 1, "path_len must be a number >= 0")
	end
	local c = {
		key = key, subject = opts.subject, serial = serial_bytes(opts.serial, "issue", "serial"),
		not_before = floor(not_before), not_after = floor(not_after), ca = ca, path_len = opts.path_len,
		issuer = opts.issuer, issuer_key = opts.issuer_key,
		hash = opts.hash and opts.hash:upper():gsub("%-", ""),
		extended_key_usage = list_of_strings(opts.extended_key_usage, "issue", "extended_key_usage"),
		crl_distribution_points = list_of_strings(opts.crl_distribution_points, "issue", "crl_distribution_points"),
		ocsp = list_of_strings(opts.ocsp, "issue", "ocsp"),
		ca_issuers = list_of_strings(opts.ca_issuers, "issue", "ca_issuers"),
		extensions = opts.extensions,
	}
	local ku = opts.key_usage
	if ku == nil then
		if ca then
			ku = { "key_cert_sign", "crl_sign", "digital_signature" }
		else
			ku = { "digital_signature" }
			if key:public_key().algorithm == "RSA" then ku[2] = "key_encipherment" end
		end
	end
	if ku ~= false then c.key_usage = list_of_strings(ku, "issue", "key_usage") end
	local sans = opts.sans
	if sans ~= nil then
		check_type(sans, "table", "issue", 1)
		c.dns, c.ip, c.email, c.uri = {}, {}, {}, {}
		for k, v in pairs(sans) do
			if type(k) == "number" then
				check_type(v, "string", "issue", 1)
				local kind = looks_ip(v) and "ip" or v:find("@", 1, true) and "email"
					or v:find("://", 1, true) and "uri" or "dns"
				c[kind][#c[kind] + 1] = v
			elseif k == "dns" or k == "ip" or k == "email" or k == "uri" then
				for _, s in ipairs(list_of_strings(v, "issue", "sans." .. k)) do c[k][#c[k] + 1] = s end
			else
				fail_arg("issue", 1, "unknown SAN type '" .. tostring(k) .. "' (dns, ip, email, uri)")
			end
		end
	end
	return core.issue(c)
end

local crl_options = set("issuer", "issuer_key", "revoked", "this_update", "next_update", "days", "number", "hash")

-- x509.issue_crl{ issuer=, issuer_key=, revoked = { Certificate | serial |
-- {serial=, time=}, ... }, this_update=, next_update=, days=, number=, hash= }
-- -> CRL | nil, message, code
function M.issue_crl(opts)
	opts = check_options(opts, "issue_crl", crl_options)
	if not M.is_certificate(opts.issuer) then fail_arg("issue_crl", 1, "option 'issuer' must be a Certificate") end
	if not is_object(opts.issuer_key, "luatls.PrivateKey") then
		fail_arg("issue_crl", 1, "option 'issuer_key' must be a PrivateKey")
	end
	if not opts.issuer_key:matches(opts.issuer) then
		fail_arg("issue_crl", 1, "option 'issuer_key' is not the key of 'issuer'")
	end
	local now = os.time()
	local this_update = opts.this_update or now
	check_type(this_update, "number", "issue_crl", 1)
	local next_update = opts.next_update or (this_update + (opts.days or 7) * DAY)
	check_type(next_update, "number", "issue_crl", 1)
	local revoked = {}
	for i, r in ipairs(opts.revoked or {}) do
		local serial, t = r, this_update
		if type(r) == "table" and not getmetatable(r) then serial, t = r.serial, r.time or this_update end
		if M.is_certificate(serial) then serial = serial:serial() end
		if type(serial) ~= "string" and type(serial) ~= "number" then
			fail_arg("issue_crl", 1, "revoked[" .. i .. "] must be a Certificate, a serial or {serial=, time=}")
		end
		revoked[i] = { serial = serial_bytes(serial, "issue_crl", "serial"), time = floor(t) }
	end
	return core.issue_crl {
		issuer = opts.issuer, issuer_key = opts.issuer_key, revoked = revoked,
		this_update = floor(this_update), next_update = floor(next_update),
		number = serial_bytes(opts.number or 1, "issue_crl", "number"),
		hash = opts.hash and opts.hash:upper():gsub("%-", ""),
	}
end

return M
