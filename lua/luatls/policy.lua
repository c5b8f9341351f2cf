-- Policies: the rules that govern a connection, as a Lua value. A policy
-- compiles into a GnuTLS priority string (what is offered and accepted)
-- plus rules checked on the established connection, each with a verdict:
-- the same rules run offline on a chain or on recorded connection info.
local core = require "luatls.core"

local setmetatable, getmetatable, type, error, pairs, ipairs, tostring, tonumber, pcall =
	setmetatable, getmetatable, type, error, pairs, ipairs, tostring, tonumber, pcall
local concat, sort, format, floor, min, max = table.concat, table.sort, string.format, math.floor, math.min, math.max
local upper, lower = string.upper, string.lower

local M = {}
local Policy = {}
Policy.__index = Policy
Policy.__name = "luatls.Policy"

local VERSIONS = { "TLS1.0", "TLS1.1", "TLS1.2", "TLS1.3" }
local RANK = {}
for i, v in ipairs(VERSIONS) do RANK[v] = i end

local DAY = 86400

-- What the library allows when a policy does not say: TLS 1.2+, ECDHE
-- with AEAD ciphers, strong groups, no SHA-1/SHA-224 signatures. (Debian's
-- NORMAL alone still enables TLS 1.0/1.1 and CBC suites.)
local DEFAULT_KX = { "ECDHE-ECDSA", "ECDHE-RSA" }
local DEFAULT_CIPHERS = { "AES-128-GCM", "CHACHA20-POLY1305", "AES-256-GCM" }
local DEFAULT_MACS = { "AEAD" }
local DEFAULT_GROUPS = { "X25519", "SECP256R1", "X448", "SECP384R1", "SECP521R1" }
local NO_WEAK_SIGNATURES = "-SIGN-RSA-SHA1:-SIGN-ECDSA-SHA1:-SIGN-DSA-SHA1:-SIGN-RSA-SHA224:-SIGN-ECDSA-SHA224"

local function bad(msg, level)
	error("bad policy: " .. msg, level + 1)
end

local function set_of(list)
	local s = {}
	for _, v in ipairs(list) do s[v] = true end
	return s
end

---------------------------------------------------------------------------
-- Cipher suites: GnuTLS's table, with IANA and OpenSSL names derived from
-- the GnuTLS ones, and each suite's parts.

-- GnuTLS name prefix (after "TLS_"), IANA prefix, OpenSSL prefix, key
-- exchange, authentication, forward secrecy. Longer prefixes first.
local KX_PARTS = {
	{ "ECDHE_ECDSA", "ECDHE_ECDSA", "ECDHE-ECDSA-", "ECDHE", "ECDSA", true },
	{ "ECDHE_RSA", "ECDHE_RSA", "ECDHE-RSA-", "ECDHE", "RSA", true },
	{ "ECDHE_PSK", "ECDHE_PSK", "ECDHE-PSK-", "ECDHE", "pre-shared key", true },
	{ "DHE_RSA", "DHE_RSA", "DHE-RSA-", "DHE", "RSA", true },
	{ "DHE_DSS", "DHE_DSS", "DHE-DSS-", "DHE", "DSA", true },
	{ "DHE_PSK", "DHE_PSK", "DHE-PSK-", "DHE", "pre-shared key", true },
	{ "RSA_PSK", "RSA_PSK", "RSA-PSK-", "RSA", "pre-shared key and RSA", false },
	{ "RSA", "RSA", "", "RSA", "RSA", false },
	{ "PSK", "PSK", "PSK-", "pre-shared key", "pre-shared key", false },
	{ "DH_ANON", "DH_anon", "ADH-", "DH", "none (anonymous)", true },
	{ "ECDH_ANON", "ECDH_anon", "AECDH-", "ECDH", "none (anonymous)", true },
	{ "SRP_SHA_RSA", "SRP_SHA_RSA", "SRP-RSA-", "SRP", "password (SRP) and RSA", false },
	{ "SRP_SHA_DSS", "SRP_SHA_DSS", "SRP-DSS-", "SRP", "password (SRP) and DSA", false },
	{ "SRP_SHA", "SRP_SHA", "SRP-", "SRP", "password (SRP)", false },
	{ "GOSTR341112_256", "GOSTR341112_256", nil, "VKO GOST R 34.10-2012", "GOST R 34.10-2012", true },
}

-- "AES_128_GCM" and friends in OpenSSL's words; family is the OpenSSL
-- prefix, which changes a few spellings.
local function openssl_cipher(c, prefix)
	local psk, srp = prefix:find("PSK", 1, true), prefix:find("^SRP")
	if c == "3DES_EDE_CBC" then return (psk or srp) and "3DES-EDE-CBC" or "DES-CBC3" end
	if c == "RC4_128" then return "RC4" end
	if c == "NULL" then return "NULL" end
	if c == "CHACHA20_POLY1305" then return "CHACHA20-POLY1305" end
	local alg, bits, mode = c:match("^(%u+)_(%d+)_(.+)$")
	if not alg then return nil end
	if mode == "CBC" then
		if srp then return alg .. "-" .. bits .. "-CBC" end
		return alg .. bits .. ((psk and alg == "AES") and "-CBC" or "")
	end
	if mode == "CCM_8" then return alg .. bits .. "-CCM8" end
	return alg .. bits .. "-" .. mode
end

-- Builds the record of one suite from core.cipher_suites().
local function suite_record(s)
	local r = {
		id = s.id, hex = format("0x%02x,0x%02x", floor(s.id / 256), s.id % 256),
		gnutls = s.name, kx = s.kx, cipher = s.cipher, mac = s.mac,
		min_version = s.min_version, aead = s.mac == "AEAD",
	}
	local rest = s.name:gsub("^TLS_", "")
	if s.min_version == "TLS1.3" then
		r.tls13, r.iana, r.openssl = true, s.name, s.name
		r.key_exchange, r.authentication, r.forward_secrecy = "ECDHE or DHE, by group", "certificate signature", true
		r.prf = rest:match("(SHA%d+)$")
		return r
	end
	for _, k in ipairs(KX_PARTS) do
		if rest:sub(1, #k[1] + 1) == k[1] .. "_" then
			local bulk = rest:sub(#k[1] + 2):gsub("^ARCFOUR_", "RC4_")
			if bulk == "CHACHA20_POLY1305" then bulk = bulk .. "_SHA256" end
			bulk = bulk:gsub("_SHA1$", "_SHA")
			r.iana = "TLS_" .. k[2] .. "_WITH_" .. bulk
			r.key_exchange, r.authentication, r.forward_secrecy = k[4], k[5], k[6]
			r.prf = bulk:match("_SHA384$") and "SHA384" or "SHA256"
			if k[3] then
				local c, m = bulk:match("^(.-)_(SHA%d*)$")
				if not c then c, m = bulk:match("^(.-)_(MD5)$") end
				if bulk:find("CCM", 1, true) or bulk:find("CHACHA20", 1, true) then c, m = bulk:gsub("_SHA256$", ""), nil end
				local oc = c and openssl_cipher(c, k[3])
				if oc then
					local prefix = k[3]
					if c == "3DES_EDE_CBC" and prefix:find("^DHE%-") then prefix = prefix:gsub("^DHE", "EDH") end
					r.openssl = prefix .. oc .. (m and ("-" .. m) or "")
				end
			end
			return r
		end
	end
	r.iana = s.name
	return r
end

local SUITES, BY_NAME, BY_ID, BY_IANA

local function suites()
	if SUITES then return SUITES end
	SUITES, BY_NAME, BY_ID, BY_IANA = {}, {}, {}, {}
	for _, s in ipairs(core.cipher_suites()) do
		local r = suite_record(s)
		SUITES[#SUITES + 1] = r
		BY_ID[r.id] = BY_ID[r.id] or r
		BY_IANA[r.iana] = BY_IANA[r.iana] or r
		for _, n in ipairs { r.iana, r.gnutls, r.openssl } do
			if n and not BY_NAME[upper(n)] then BY_NAME[upper(n)] = r end
		end
	end
	return SUITES
end

-- The suite record for a name in any of the three spellings, or nil.
function M.suite(name)
	suites()
	return type(name) == "string" and BY_NAME[upper(name)] or nil
end

local function distance(a, b)
	local prev, cur = {}, {}
	for j = 0, #b do prev[j] = j end
	for i = 1, #a do
		cur[0] = i
		local ca = a:byte(i)
		for j = 1, #b do
			cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca == b:byte(j) and 0 or 1))
		end
		prev, cur = cur, prev
	end
	return prev[#b]
end

-- The (up to) three known names closest to name.
local function closest(name, candidates)
	local scored, u = {}, upper(name)
	for _, c in ipairs(candidates) do
		scored[#scored + 1] = { c, distance(u, upper(c)) }
	end
	sort(scored, function(x, y) return x[2] < y[2] or (x[2] == y[2] and x[1] < y[1]) end)
	local out = {}
	for i = 1, min(3, #scored) do out[i] = scored[i][1] end
	return out
end

local function suite_names_like(name)
	local all = {}
	local form = name:find("-", 1, true) and "openssl" or (name:upper():find("_WITH_", 1, true) and "iana") or nil
	for _, r in ipairs(suites()) do
		if form then
			if r[form] then all[#all + 1] = r[form] end
		else
			all[#all + 1] = r.iana
			if r.gnutls ~= r.iana then all[#all + 1] = r.gnutls end
		end
	end
	return closest(name, all)
end

---------------------------------------------------------------------------
-- Groups

local GROUP_ALIASES = {
	["P-256"] = "SECP256R1", P256 = "SECP256R1", PRIME256V1 = "SECP256R1",
	["P-384"] = "SECP384R1", P384 = "SECP384R1",
	["P-521"] = "SECP521R1", P521 = "SECP521R1",
	["P-224"] = "SECP224R1", ["P-192"] = "SECP192R1", PRIME192V1 = "SECP192R1",
}

-- IANA numbers of the groups, for what a ClientHello offered.
local GROUP_IDS = {
	[19] = "SECP192R1", [21] = "SECP224R1", [23] = "SECP256R1", [24] = "SECP384R1",
	[25] = "SECP521R1", [29] = "X25519", [30] = "X448", [256] = "FFDHE2048",
	[257] = "FFDHE3072", [258] = "FFDHE4096", [259] = "FFDHE6144", [260] = "FFDHE8192",
}

local KNOWN_GROUPS
local function group_name(name)
	if not KNOWN_GROUPS then KNOWN_GROUPS = set_of(core.groups()) end
	local u = upper(name):gsub("^GROUP%-", "")
	u = GROUP_ALIASES[u] or u
	return KNOWN_GROUPS[u] and u or nil
end

---------------------------------------------------------------------------
-- Building a policy

local RULES = {
	min_version = true, max_version = true, ciphers = true, groups = true,
	pins = true, min_key_bits = true, expiry_warning_days = true,
	client_certificate = true, issuers = true, identities = true, check = true,
	resumption = true, early_data = true, -- see resumption_rules
}

local CLIENT_AUTH = { none = 1, request = 2, require = 3 }

-- A list option may be a list or one string ("a:b", "a,b" or "a b").
local function list_of(rule, v, level)
	if type(v) == "string" then
		local out = {}
		for w in v:gmatch("[^:,%s]+") do out[#out + 1] = w end
		v = out
	end
	if type(v) ~= "table" then bad(rule .. " must be a list of strings, got " .. type(v), level + 1) end
	local out, seen = {}, {}
	for i, s in ipairs(v) do
		if type(s) ~= "string" then
			bad(format("%s[%d] must be a string, got %s", rule, i, type(s)), level + 1)
		end
		if not seen[s] then out[#out + 1], seen[s] = s, true end
	end
	if #out == 0 then bad(rule .. " must not be empty", level + 1) end
	return out
end

local function check_version(name, v, level)
	if v ~= nil and not RANK[v] then
		bad(name .. " must be one of " .. concat(VERSIONS, ", ") .. ", got " .. tostring(v), level + 1)
	end
end

local function resolve_ciphers(v, level)
	local out, seen = {}, {}
	for _, name in ipairs(list_of("ciphers", v, level + 1)) do
		local r = M.suite(name)
		if not r then
			bad(format("unknown cipher suite '%s' in ciphers; the closest known are %s", name,
				concat(suite_names_like(name), ", ")), level + 1)
		end
		if not seen[r.iana] then out[#out + 1], seen[r.iana] = r.iana, true end
	end
	return out
end

local function resolve_groups(v, level)
	local out, seen = {}, {}
	for _, name in ipairs(list_of("groups", v, level + 1)) do
		local g = group_name(name)
		if not g then
			local known = {}
			for _, k in ipairs(core.groups()) do known[#known + 1] = lower(k) end
			bad(format("unknown group '%s' in groups; the closest known are %s", name,
				concat(closest(lower(name), known), ", ")), level + 1)
		end
		if not seen[g] then out[#out + 1], seen[g] = g, true end
	end
	return out
end

local function check_pins(v, level)
	local pins = list_of("pins", v, level + 1)
	for _, p in ipairs(pins) do
		local b64 = p:match("^sha256/([%w+/]+=*)$")
		if not b64 or #b64 ~= 44 then
			bad(format("pin '%s' is not an SPKI pin: expected sha256/ and 44 base64 characters " ..
				"(as x509 cert:spki_pin() or curl --pinnedpubkey make them)", p), level + 1)
		end
	end
	return pins
end

local function check_key_bits(v, level)
	if type(v) ~= "table" then bad("min_key_bits must be a table such as { rsa = 2048, ec = 256 }", level + 1) end
	local out = {}
	for k, n in pairs(v) do
		if k ~= "rsa" and k ~= "ec" and k ~= "dsa" then
			bad("min_key_bits: unknown key type '" .. tostring(k) .. "' (rsa, ec or dsa)", level + 1)
		end
		if type(n) ~= "number" or n < 1 or n % 1 ~= 0 then
			bad("min_key_bits." .. k .. " must be a positive integer", level + 1)
		end
		out[k] = n
	end
	return out
end

-- Checks the combination and compiles it once, so a policy that GnuTLS
-- cannot honour fails where it is made.
local function finish(self, level)
	if RANK[self.min_version] > RANK[self.max_version] then
		bad("min_version " .. self.min_version .. " is above max_version " .. self.max_version, level + 1)
	end
	local ok, err = pcall(self.priority, self)
	if not ok then bad((tostring(err):gsub("^.-bad policy: ", "")), level + 1) end
	return self
end

-- Resumption and 0-RTT rules (docs/resumption.md): resumption = true |
-- false; early_data = "deny" (the default) or { max_size = bytes, allow =
-- function(data, info) -> "accept" | "defer" | "reject", replay_window =
-- seconds }.
local EARLY_RULES = { max_size = true, allow = true, replay_window = true }
local function resumption_rules(self, rules, level)
	local r = rules.resumption
	if r ~= nil and type(r) ~= "boolean" then bad("resumption must be true or false", level + 1) end
	self.resumption = r ~= false
	local ed = rules.early_data
	if ed == nil or ed == "deny" then
		self.early_data = "deny"
		return
	end
	if type(ed) ~= "table" then
		bad("early_data must be \"deny\" or { max_size = n, allow = function(data, info) }", level + 1)
	end
	for k in pairs(ed) do
		if not EARLY_RULES[k] then bad("early_data: unknown rule '" .. tostring(k) .. "'", level + 1) end
	end
	local n = ed.max_size or 16384
	if type(n) ~= "number" or n < 1 or n % 1 ~= 0 or n > 0xffffffff then
		bad("early_data.max_size must be a positive whole number of bytes", level + 1)
	end
	if ed.allow ~= nil and type(ed.allow) ~= "function" then
		bad("early_data.allow must be a function(data, info)", level + 1)
	end
	local w = ed.replay_window or 60
	if type(w) ~= "number" or w < 1 or w % 1 ~= 0 then
		bad("early_data.replay_window must be a whole number of seconds", level + 1)
	end
	if not self.resumption then
		bad("early_data needs resumption (0-RTT rides on a resumed session)", level + 1)
	end
	self.early_data = { max_size = n, allow = ed.allow, replay_window = w }
end

-- Merged resumption rules: only what both allow; of two allow functions
-- the stricter verdict wins (reject, then defer, then accept).
local STRICTNESS = { accept = 1, defer = 2, reject = 3 }
local function merge_resumption(r, a, b)
	r.resumption = a.resumption and b.resumption
	local ea, eb = a.early_data, b.early_data
	if not r.resumption or ea == "deny" or eb == "deny" then
		r.early_data = "deny"
		return
	end
	local allow = ea.allow or eb.allow
	if ea.allow and eb.allow then
		allow = function(data, info)
			local x, y = ea.allow(data, info), eb.allow(data, info)
			return (STRICTNESS[x] or 3) >= (STRICTNESS[y] or 3) and x or y
		end
	end
	r.early_data = { max_size = min(ea.max_size, eb.max_size), allow = allow,
		replay_window = min(ea.replay_window, eb.replay_window) }
end

-- tls.policy{ ... } -> Policy. Unknown rule names and bad values raise.
function M.new(rules)
	if rules == nil then rules = {} end
	if getmetatable(rules) == Policy then return rules end
	if type(rules) ~= "table" then
		error("bad argument #1 to 'policy' (table expected, got " .. type(rules) .. ")", 2)
	end
	for k in pairs(rules) do
		if not RULES[k] then
			bad("unknown rule '" .. tostring(k) .. "'", 2)
		end
	end
	check_version("min_version", rules.min_version, 2)
	check_version("max_version", rules.max_version, 2)
	local self = setmetatable({
		min_version = rules.min_version or "TLS1.2",
		max_version = rules.max_version or "TLS1.3",
		pin_sets = {}, issuer_sets = {}, identity_sets = {}, checks = {},
	}, Policy)
	if rules.ciphers ~= nil then self.ciphers = resolve_ciphers(rules.ciphers, 2) end
	if rules.groups ~= nil then self.groups = resolve_groups(rules.groups, 2) end
	if rules.pins ~= nil then self.pin_sets[1] = check_pins(rules.pins, 2) end
	if rules.issuers ~= nil then self.issuer_sets[1] = list_of("issuers", rules.issuers, 2) end
	if rules.identities ~= nil then self.identity_sets[1] = list_of("identities", rules.identities, 2) end
	if rules.min_key_bits ~= nil then self.min_key_bits = check_key_bits(rules.min_key_bits, 2) end
	local days = rules.expiry_warning_days
	if days ~= nil then
		if type(days) ~= "number" or days < 0 then bad("expiry_warning_days must be a number of days (0 or more)", 2) end
		self.expiry_warning_days = days
	end
	local mode = rules.client_certificate
	if mode ~= nil then
		if not CLIENT_AUTH[mode] then bad("client_certificate must be \"none\", \"request\" or \"require\"", 2) end
		self.client_certificate = mode
	end
	if rules.check ~= nil then
		if type(rules.check) ~= "function" then bad("check must be a function(info, chain)", 2) end
		self.checks[1] = rules.check
	end
	resumption_rules(self, rules, 2)
	return finish(self, 2)
end

---------------------------------------------------------------------------
-- Compiling: the GnuTLS priority string

-- The versions of the policy's range, newest first, that at least one
-- allowed suite works with.
local function usable_versions(self)
	local out = {}
	for i = RANK[self.max_version], RANK[self.min_version], -1 do
		local v = VERSIONS[i]
		local ok = not self.ciphers
		for _, name in ipairs(self.ciphers or {}) do
			local r = BY_IANA[name]
			if (v == "TLS1.3") == (r.tls13 == true) and RANK[r.min_version] <= i then ok = true end
		end
		if ok then out[#out + 1] = v end
	end
	return out
end

local function distinct(into, seen, v)
	if v and not seen[v] then into[#into + 1], seen[v] = v, true end
end

-- The GnuTLS priority string this policy compiles to.
function Policy:priority()
	if self.compiled then return self.compiled end
	local kx, ciphers, macs = DEFAULT_KX, DEFAULT_CIPHERS, DEFAULT_MACS
	if self.ciphers then
		suites() -- the catalogue, only for a policy that names suites
		kx, ciphers, macs = {}, {}, {}
		local sk, sc, sm = {}, {}, {}
		for _, name in ipairs(self.ciphers) do
			local r = BY_IANA[name]
			distinct(kx, sk, r.kx)
			distinct(ciphers, sc, r.cipher)
			distinct(macs, sm, r.mac)
		end
	end
	local versions = usable_versions(self)
	if #versions == 0 then
		error(format("bad policy: none of the allowed cipher suites works with %s (min_version %s, max_version %s)",
			self.min_version == self.max_version and self.min_version or
			(self.min_version .. " to " .. self.max_version), self.min_version, self.max_version), 0)
	end
	local parts = { "NORMAL", "-VERS-ALL" }
	for _, v in ipairs(versions) do parts[#parts + 1] = "+VERS-" .. v end
	parts[#parts + 1] = "-KX-ALL"
	for _, k in ipairs(kx) do parts[#parts + 1] = "+" .. k end
	parts[#parts + 1] = "-CIPHER-ALL"
	for _, c in ipairs(ciphers) do parts[#parts + 1] = "+" .. c end
	parts[#parts + 1] = "-MAC-ALL"
	for _, m in ipairs(macs) do parts[#parts + 1] = "+" .. m end
	parts[#parts + 1] = "-GROUP-ALL"
	for _, g in ipairs(self.groups or DEFAULT_GROUPS) do parts[#parts + 1] = "+GROUP-" .. g end
	parts[#parts + 1] = NO_WEAK_SIGNATURES
	if not self.ciphers and RANK[self.min_version] < RANK["TLS1.2"] then
		-- old versions need the SHA-1 MAC suites and CBC to interoperate at all
		parts[#parts + 1] = "+AES-128-CBC:+AES-256-CBC:+SHA1"
	end
	parts[#parts + 1] = "%SERVER_PRECEDENCE"
	local p = concat(parts, ":")
	local ok, err = core.check_priority(p)
	if not ok then error("bad policy: GnuTLS refuses the priority string " .. p .. ": " .. err, 0) end
	self.compiled = p
	return p
end

-- The IANA names of the suites this policy lets GnuTLS negotiate, in
-- order: the allow-list, or what the default priority yields.
local function allowed_suites(self)
	if self.ciphers then return self.ciphers end
	if not self.default_suites then
		local names = {}
		for _, s in ipairs(assert(core.priority_info(self:priority())).suites) do
			names[#names + 1] = suites() and BY_ID[s.id].iana
		end
		self.default_suites = names
	end
	return self.default_suites
end

---------------------------------------------------------------------------
-- describe(): what GnuTLS will offer and accept, read back from GnuTLS

local Description = {}
Description.__index = Description
Description.__name = "luatls.PolicyDescription"

local function explain_suite(r)
	local parts = {
		"key exchange " .. r.key_exchange .. (r.forward_secrecy and " (forward secrecy)" or " (no forward secrecy)"),
		"authentication " .. r.authentication,
		"cipher " .. r.cipher .. (r.aead and " (AEAD)" or ""),
	}
	if not r.aead then parts[#parts + 1] = "MAC " .. r.mac end
	if r.prf then parts[#parts + 1] = "PRF " .. r.prf end
	return concat(parts, ", ")
end

function Description.__tostring(d)
	local lines = {
		"versions: " .. concat(d.versions, ", "),
		"cipher suites, in order of preference:",
	}
	for _, s in ipairs(d.suites) do
		lines[#lines + 1] = format("  %s (%s, %s+)%s: %s", s.name, s.hex, s.min_version,
			s.allowed and "" or " [refused after the handshake: not in ciphers]", s.text)
	end
	lines[#lines + 1] = "groups: " .. concat(d.groups, ", ")
	lines[#lines + 1] = "signature algorithms: " .. concat(d.signatures, ", ")
	return concat(lines, "\n")
end

-- p:describe() -> { priority, versions, suites = { ... }, groups,
-- signatures, kx, ciphers, macs }, read back from GnuTLS.
function Policy:describe()
	local info = assert(core.priority_info(self:priority()))
	local allowed = self.ciphers and set_of(self.ciphers)
	suites()
	local d = setmetatable({
		priority = self:priority(), versions = info.versions, groups = info.groups,
		signatures = info.signatures, kx = info.kx, ciphers = info.ciphers, macs = info.macs,
		suites = {},
	}, Description)
	for _, s in ipairs(info.suites) do
		local r = BY_ID[s.id]
		d.suites[#d.suites + 1] = {
			name = r.iana, iana = r.iana, openssl = r.openssl, gnutls = r.gnutls,
			id = r.id, hex = r.hex, min_version = r.min_version,
			key_exchange = r.key_exchange, authentication = r.authentication,
			forward_secrecy = r.forward_secrecy, cipher = r.cipher, mac = r.mac,
			prf = r.prf, aead = r.aead, text = explain_suite(r),
			allowed = not allowed or allowed[r.iana] == true,
		}
	end
	return d
end

---------------------------------------------------------------------------
-- merge(): two policies in one, the stricter rule winning

local function intersect(a, b)
	local sb, out = set_of(b), {}
	for _, v in ipairs(a) do if sb[v] then out[#out + 1] = v end end
	return out
end

local function append_sets(into, from)
	for _, s in ipairs(from) do into[#into + 1] = s end
end

-- p:merge(q) -> a new Policy that only allows what both allow.
function Policy:merge(other)
	if getmetatable(self) ~= Policy then
		error("bad argument #1 to 'merge' (luatls.Policy expected)", 2)
	end
	if getmetatable(other) ~= Policy then
		if type(other) ~= "table" then
			error("bad argument #1 to 'merge' (policy or table of rules expected, got " .. type(other) .. ")", 2)
		end
		local ok, p = pcall(M.new, other)
		if not ok then error((tostring(p):gsub("^.-bad policy: ", "bad policy: ")), 2) end
		other = p
	end
	local r = setmetatable({
		min_version = VERSIONS[max(RANK[self.min_version], RANK[other.min_version])],
		max_version = VERSIONS[min(RANK[self.max_version], RANK[other.max_version])],
		pin_sets = {}, issuer_sets = {}, identity_sets = {}, checks = {},
	}, Policy)
	if RANK[r.min_version] > RANK[r.max_version] then
		bad(format("merge: the policies allow no common version (%s to %s and %s to %s)",
			self.min_version, self.max_version, other.min_version, other.max_version), 2)
	end
	if self.ciphers or other.ciphers then
		local a, b = allowed_suites(self), allowed_suites(other)
		if not self.ciphers then a, b = b, a end
		r.ciphers = intersect(a, b)
		if #r.ciphers == 0 then bad("merge: the policies allow no cipher suite in common", 2) end
	end
	if self.groups or other.groups then
		local a, b = self.groups or DEFAULT_GROUPS, other.groups or DEFAULT_GROUPS
		if not self.groups then a, b = b, a end
		r.groups = intersect(a, b)
		if #r.groups == 0 then bad("merge: the policies allow no group in common", 2) end
	end
	local ma, mb = self.client_certificate, other.client_certificate
	r.client_certificate = (ma and mb) and ((CLIENT_AUTH[ma] >= CLIENT_AUTH[mb]) and ma or mb) or ma or mb
	if self.min_key_bits or other.min_key_bits then
		r.min_key_bits = {}
		for _, p in ipairs { self.min_key_bits or {}, other.min_key_bits or {} } do
			for k, n in pairs(p) do r.min_key_bits[k] = max(r.min_key_bits[k] or 0, n) end
		end
	end
	if self.expiry_warning_days or other.expiry_warning_days then
		r.expiry_warning_days = max(self.expiry_warning_days or 0, other.expiry_warning_days or 0)
	end
	for _, k in ipairs { "pin_sets", "issuer_sets", "identity_sets", "checks" } do
		append_sets(r[k], self[k])
		append_sets(r[k], other[k])
	end
	merge_resumption(r, self, other)
	return finish(r, 2)
end

---------------------------------------------------------------------------
-- The rules, checked on facts: { role, who, info, chain, anchor,
-- verified, now }. Each gives verdicts { rule, result, message[, alert] }.

local function leaf_names(cert)
	local sans, out = cert:sans(), {}
	for _, k in ipairs { "dns", "ip", "email", "uri" } do
		for _, n in ipairs(sans[k] or {}) do out[#out + 1] = n end
	end
	local cn = cert:subject():match("CN=([^,]+)")
	if cn then out[#out + 1] = cn end
	return out
end

-- "leaf", "intermediate", "root" ... of certificate i of the checked chain.
local function position(f, i)
	local c = f.certs[i]
	if i == f.anchor_index then return "trusted CA" end
	if i == 1 then return "leaf" end
	if c:self_signed() then return "root" end
	local n = 0
	for j = 2, #f.certs do
		if j ~= f.anchor_index and not f.certs[j]:self_signed() then n = n + 1 end
	end
	return n > 1 and ("intermediate " .. (i - 1)) or "intermediate"
end

local function label(f, i)
	return format("certificate %d (%s, %s)", i, position(f, i), f.certs[i]:subject())
end

local function day(t) return os.date("!%Y-%m-%d", t) end

local checks = {}

function checks.version(self, f, add)
	local v = f.info and f.info.version
	if not v then return add("version", "skip", "version: no connection info to check") end
	local range = self.min_version == self.max_version and self.min_version or (self.min_version .. " to " .. self.max_version)
	if RANK[v] and RANK[v] >= RANK[self.min_version] and RANK[v] <= RANK[self.max_version] then
		return add("version", "pass", format("version: %s is within %s", v, range))
	end
	add("version", "fail", format("version: %s negotiated %s; the policy allows %s (min_version = %q, max_version = %q)",
		f.who, tostring(v), range, self.min_version, self.max_version), "protocol_version")
end

function checks.ciphers(self, f, add)
	local c = f.info and f.info.cipher
	if not c then return add("ciphers", "skip", "ciphers: no connection info to check") end
	local r = M.suite(c)
	local allowed = allowed_suites(self)
	if r and set_of(allowed)[r.iana] then
		return add("ciphers", "pass", format("ciphers: %s is allowed", r.iana))
	end
	local offered = f.offered and f.offered()
	add("ciphers", "fail", format("ciphers: %s negotiated %s, which the policy does not allow%s; it allows %s%s",
		f.who, c, self.ciphers and " (GnuTLS cannot leave out every suite outside an allow-list, so it is checked after the handshake)" or "",
		concat(allowed, ", "), offered and #offered > 0 and ("; the client offered " .. concat(offered, ", ")) or ""),
		"insufficient_security")
end

function checks.groups(self, f, add)
	if not f.info then return add("groups", "skip", "groups: no connection info to check") end
	local g = f.info.group
	if not g then return add("groups", "skip", "groups: no key-exchange group was negotiated") end
	local allowed = self.groups or DEFAULT_GROUPS
	if set_of(allowed)[upper(g)] then
		return add("groups", "pass", format("groups: %s is allowed", g))
	end
	add("groups", "fail", format("groups: %s negotiated the group %s; the policy allows %s",
		f.who, g, concat(allowed, ", ")), "insufficient_security")
end

function checks.client_certificate(self, f, add)
	local mode = self.client_certificate
	if not mode or f.role ~= "server" then return end
	local leaf = f.chain and f.chain[1]
	if leaf then
		return add("client_certificate", "pass", format("client_certificate: %s sent a certificate (%s)",
			f.who, leaf:subject()))
	end
	if mode == "require" then
		return add("client_certificate", "fail", format("client_certificate: %s sent no certificate; the policy " ..
			"requires one (client_certificate = \"require\"): the client must pass certificate and key",
			f.who), f.tls13 and "certificate_required" or "handshake_failure")
	end
	add("client_certificate", "pass", format("client_certificate: %s sent no certificate, which client_certificate = %q allows",
		f.who, mode))
end

-- The certificates that count for pins and issuers: the whole verified
-- chain, or only the leaf when nothing verified the chain.
local function candidates(f)
	if f.verified == false then return { 1 } end
	local out = {}
	for i = 1, #f.certs do out[i] = i end
	return out
end

local function no_chain(f, rule, add, alert)
	if f.chain then
		add(rule, "fail", format("%s: %s sent no certificate", rule, f.who), alert)
	else
		add(rule, "skip", rule .. ": no certificate chain to check")
	end
end

function checks.pins(self, f, add)
	for _, pins in ipairs(self.pin_sets) do
		if #f.certs == 0 then
			no_chain(f, "pins", add, "bad_certificate")
		else
			local want, found = set_of(pins), nil
			for _, i in ipairs(candidates(f)) do
				if not found and want[f.certs[i]:spki_pin()] then found = i end
			end
			if found then
				add("pins", "pass", format("pins: %s matches %s", label(f, found), f.certs[found]:spki_pin()))
			else
				local seen = {}
				for i, c in ipairs(f.certs) do
					seen[#seen + 1] = format("%s (%s)", c:spki_pin(), position(f, i))
				end
				add("pins", "fail", format("pins: no certificate in the chain of %s matches %s; the chain's pins are %s%s",
					f.who_short, #pins == 1 and ("the pin " .. pins[1]) or format("any of the %d pins (%s)", #pins, concat(pins, ", ")),
					concat(seen, ", "),
					f.verified == false and "; the chain was not verified, so only the leaf's pin counts" or
					"; pin one of these if this is the right peer, or check that it is"), "bad_certificate")
			end
		end
	end
end

-- Whether a distinguished name is one of want (whole DN or its CN).
local function name_matches(dn, want)
	local s = lower(dn)
	for name in pairs(want) do
		local n = lower(name)
		if s == n or lower(s:match("cn=([^,]+)") or "") == n then return true end
	end
	return false
end

function checks.issuers(self, f, add)
	for _, issuers in ipairs(self.issuer_sets) do
		if #f.certs == 0 then
			no_chain(f, "issuers", add, "unknown_ca")
		else
			local want, found = set_of(issuers), nil
			for _, i in ipairs(candidates(f)) do
				if i > 1 and not found and name_matches(f.certs[i]:subject(), want) then found = i end
			end
			if not found and name_matches(f.certs[1]:issuer(), want) then
				found = 1
			end
			if found then
				add("issuers", "pass", format("issuers: the chain of %s was issued by %s", f.who_short,
					found == 1 and f.certs[1]:issuer() or f.certs[found]:subject()))
			else
				local seen = {}
				for i = 2, #f.certs do seen[#seen + 1] = format("%s (%s)", f.certs[i]:subject(), position(f, i)) end
				if #seen == 0 then seen[1] = f.certs[1]:issuer() .. " (issuer of the leaf)" end
				add("issuers", "fail", format("issuers: the certificate of %s was not issued by any of %s; its chain has %s",
					f.who_short, concat(issuers, ", "), concat(seen, ", ")), "unknown_ca")
			end
		end
	end
end

function checks.identities(self, f, add)
	for _, identities in ipairs(self.identity_sets) do
		if #f.certs == 0 then
			no_chain(f, "identities", add, "access_denied")
		else
			local names, want, found = leaf_names(f.certs[1]), {}, nil
			for _, n in ipairs(identities) do want[lower(n)] = true end
			for _, n in ipairs(names) do if not found and want[lower(n)] then found = n end end
			if found then
				add("identities", "pass", format("identities: the certificate of %s is for %s", f.who_short, found))
			else
				add("identities", "fail", format("identities: the certificate of %s is for %s; the policy allows only %s",
					f.who_short, #names > 0 and concat(names, ", ") or "no names", concat(identities, ", ")),
					"access_denied")
			end
		end
	end
end

local KEY_KIND = { RSA = "rsa", ["RSA-PSS"] = "rsa", ["EC/ECDSA"] = "ec", DSA = "dsa" }

function checks.min_key_bits(self, f, add)
	local want = self.min_key_bits
	if not want then return end
	if #f.certs == 0 then return no_chain(f, "min_key_bits", add, "insufficient_security") end
	local weak = {}
	for i = 1, f.anchor_index and f.anchor_index - 1 or #f.certs do
		local alg, bits = f.certs[i]:key()
		local kind = KEY_KIND[alg] or (alg:find("^EdDSA") and "ec")
		if kind and want[kind] and bits < want[kind] then
			weak[#weak + 1] = format("%s has a %d-bit %s key; the policy requires at least %d bits (min_key_bits.%s = %d)",
				label(f, i), bits, alg, want[kind], kind, want[kind])
		end
	end
	if #weak > 0 then
		return add("min_key_bits", "fail", "min_key_bits: " .. concat(weak, "; "), "insufficient_security")
	end
	local req = {}
	for _, k in ipairs { "rsa", "ec", "dsa" } do if want[k] then req[#req + 1] = k .. " " .. want[k] end end
	add("min_key_bits", "pass", "min_key_bits: every key of the chain is long enough (" .. concat(req, ", ") .. ")")
end

function checks.expiry(self, f, add)
	local days = self.expiry_warning_days
	if not days then return end
	if #f.certs == 0 then return add("expiry_warning_days", "skip", "expiry_warning_days: no certificate to check") end
	local first, soon = nil, {}
	for i, c in ipairs(f.certs) do
		local left = c:not_after() - f.now
		if not first or c:not_after() < f.certs[first]:not_after() then first = i end
		if left < days * DAY then
			soon[#soon + 1] = left < 0 and format("%s expired on %s", label(f, i), day(c:not_after()))
				or format("%s expires on %s, in %d days", label(f, i), day(c:not_after()), floor(left / DAY))
		end
	end
	if #soon > 0 then
		return add("expiry_warning_days", "warning", format("expiry_warning_days: %s, within the %d-day warning window; renew %s",
			concat(soon, "; "), days, #soon > 1 and "them" or "it"))
	end
	add("expiry_warning_days", "pass", format("expiry_warning_days: the first certificate to expire, %s, is valid until %s (more than %d days)",
		label(f, first), day(f.certs[first]:not_after()), days))
end

function checks.check(self, f, add)
	for i, fn in ipairs(self.checks) do
		local name = #self.checks > 1 and ("check " .. i) or "check"
		local ok, res, why = pcall(fn, f.info or {}, f.chain or {})
		if not ok then
			add(name, "fail", format("%s: the policy's check function raised an error: %s", name, tostring(res)), "access_denied")
		elseif res then
			add(name, "pass", name .. ": " .. (type(why) == "string" and why or "passed"))
		else
			add(name, "fail", format("%s: %s", name, type(why) == "string" and why or
				"the policy's check function refused the connection"), "access_denied")
		end
	end
end

local ORDER = { "version", "ciphers", "groups", "client_certificate", "pins", "issuers",
	"identities", "min_key_bits", "expiry", "check" }
-- The rules on the peer's certificates, which the handshake hook judges.
local CERTIFICATE_RULES = { pins = true, issuers = true, identities = true, min_key_bits = true, check = true }

-- Runs every rule: verdicts, and the failed ones.
local function evaluate(self, f)
	f.certs = {}
	for i, c in ipairs(f.chain or {}) do f.certs[i] = c end
	if f.anchor then
		local last = f.certs[#f.certs]
		if not (last and last:self_signed() and last == f.anchor) then
			f.certs[#f.certs + 1] = f.anchor
			f.anchor_index = #f.certs
		end
	end
	f.now = f.now or os.time()
	f.who_short = f.who_short or f.who
	local verdicts, failed = {}, {}
	local function add(rule, result, message, alert)
		local v = { rule = rule, result = result, message = message, alert = alert }
		verdicts[#verdicts + 1] = v
		if result == "fail" then failed[#failed + 1] = v end
	end
	for _, k in ipairs(ORDER) do
		if f.only and not f.only[k] then -- noop: another pass judges it
		elseif f.judged and CERTIFICATE_RULES[k] then
			for _, v in ipairs(f.judged) do
				if v.rule == k or v.rule:match("^" .. k .. " %d+$") then add(v.rule, v.result, v.message, v.alert) end
			end
		else
			checks[k](self, f, add)
		end
	end
	return verdicts, failed
end

local function refusal(failed)
	local parts = {}
	for _, v in ipairs(failed) do parts[#parts + 1] = v.message end
	return concat(parts, "; ")
end

---------------------------------------------------------------------------
-- check(): the same rules offline

local function load_chain(v)
	if type(v) == "string" then
		local x509 = require "luatls.x509"
		local chain, err = x509.load_chain(v)
		if not chain then error("bad argument #1 to 'check' (" .. tostring(err) .. ")", 3) end
		return chain
	end
	if type(v) == "userdata" then return { v } end
	return v
end

-- p:check(chain_or_info [, opts]) -> true, verdicts | nil, message,
-- "policy", verdicts. chain: a list of Certificates (leaf first), one
-- Certificate or PEM text; info: a table like conn:info(), optionally with
-- chain. opts: role ("client"|"server"), now (a time), who.
function Policy:check(what, opts)
	if getmetatable(self) ~= Policy then error("bad argument #1 to 'check' (luatls.Policy expected)", 2) end
	local tw = type(what)
	if tw ~= "table" and tw ~= "string" and tw ~= "userdata" then
		error("bad argument #1 to 'check' (certificate chain or connection info expected, got " .. tw .. ")", 2)
	end
	opts = opts or {}
	if type(opts) ~= "table" then error("bad argument #2 to 'check' (table expected, got " .. type(opts) .. ")", 2) end
	for k in pairs(opts) do
		if k ~= "role" and k ~= "now" and k ~= "who" then
			error("bad argument #2 to 'check' (unknown option '" .. tostring(k) .. "')", 2)
		end
	end
	local info, chain
	if tw == "table" and what[1] == nil and (what.version or what.cipher or what.chain or what.group) then
		info = what
		if what.chain then chain = load_chain(what.chain) end
	else
		chain = load_chain(what)
	end
	local f = {
		role = opts.role or (info and info.role), info = info, chain = chain, now = opts.now,
		who = opts.who or "the peer", verified = info and info.verified,
	}
	f.who_short = opts.who or "the peer"
	if not chain then f.chain = nil end
	local verdicts, failed = evaluate(self, f)
	if #failed > 0 then return nil, refusal(failed), "policy", verdicts end
	return true, verdicts
end

---------------------------------------------------------------------------
-- enforce(): the policy's word on a handshake

local function peer_of(conn, role)
	if role == "client" then
		local host = conn.host and (conn.host .. (conn.port and (":" .. conn.port) or ""))
		return host and ("the server " .. host) or "the server", conn.host or "the server"
	end
	local who = conn.peer and ("the client " .. conn.peer) or "the client"
	return who, who
end

-- GREASE values (0x?a?a) a client offers to keep servers tolerant.
local function grease(id)
	return id % 16 == 10 and floor(id / 256) % 16 == 10
end

local function offered_suites(sess)
	local ok, offered = pcall(sess.offered, sess)
	if not ok then return nil end
	suites()
	local names = {}
	for _, id in ipairs(offered.suites) do
		local r = BY_ID[id]
		if r then names[#names + 1] = r.iana
		elseif id ~= 0x00ff and not grease(id) then names[#names + 1] = format("0x%04x", id) end
	end
	local groups = {}
	for _, id in ipairs(offered.groups) do
		if not grease(id) then groups[#groups + 1] = GROUP_IDS[id] or format("0x%04x", id) end
	end
	return names, groups
end

-- Rewords a failed handshake that the policy's own rules caused:
-- message, code.
local function handshake_refusal(self, conn, sess, role, err, code)
	local who = peer_of(conn, role)
	if role == "server" and code == "cipher" then
		local offered, groups = offered_suites(sess)
		if self.ciphers and offered and #offered > 0 and #intersect(offered, self.ciphers) == 0 then
			return format("ciphers: %s offered only %s; this server's policy allows %s: allow one of the client's " ..
				"suites in ciphers, or configure the client to offer an allowed one",
				who, concat(offered, ", "), concat(self.ciphers, ", ")), "policy"
		end
		if self.groups and groups and #groups > 0 and #intersect(groups, self.groups) == 0 then
			return format("groups: %s offered only the groups %s; this server's policy allows %s",
				who, concat(groups, ", "), concat(self.groups, ", ")), "policy"
		end
	end
	if role == "server" and code == "verify" and self.client_certificate == "require" then
		local ok, requested, sent = pcall(sess.client_certificate, sess)
		if ok and requested and not sent then
			return format("client_certificate: %s sent no certificate; the policy requires one " ..
				"(client_certificate = \"require\"): the client must pass certificate and key", who), "policy"
		end
	end
	if role == "client" and code == "cipher" and (self.ciphers or self.groups) then
		return err .. format(" (this side's policy offers only %s%s)", self.ciphers and concat(self.ciphers, ", ") or "the default suites",
			self.groups and (" with the groups " .. concat(self.groups, ", ")) or ""), code
	end
	return err, code
end

-- The stricter of a context's client_certificate option and the policy's.
function Policy:client_auth(mode)
	local p = self.client_certificate
	if mode == nil then return p or "none" end
	if not p or not CLIENT_AUTH[mode] then return mode end
	return CLIENT_AUTH[mode] >= CLIENT_AUTH[p] and mode or p
end

-- p:enforce(conn_or_session, role [, ctx [, ok, err, code]]) -> true |
-- nil, message, code. After a handshake that succeeded, runs every rule on
-- the connection, keeps the verdicts on it (conn:verdicts()) and, when a
-- rule fails, sends the peer a fatal alert and returns nil, message,
-- "policy". Given a failed handshake (err), rewords the failure when the
-- policy's own rules caused it.
-- Whether GnuTLS enforces every rule of the policy by itself (versions and
-- the default suites and groups, through the priority string): then no
-- connection needs judging in Lua, and verdicts are made only when asked.
local function enforced_by_gnutls(self)
	local v = self.by_gnutls
	if v == nil then
		v = not self.ciphers and not self.groups and not self.min_key_bits and
			not self.expiry_warning_days and not self.client_certificate and
			#self.pin_sets == 0 and #self.issuer_sets == 0 and
			#self.identity_sets == 0 and #self.checks == 0
		self.by_gnutls = v
	end
	return v
end

-- p:enforced_by_gnutls() -> whether every rule of the policy is GnuTLS's
-- to enforce: enforce() then only notes the policy on the connection, for
-- verdicts made when asked.
function Policy:enforced_by_gnutls()
	return enforced_by_gnutls(self)
end

function Policy:enforce(conn, role, ctx, ok, err, code, in_handshake, now)
	if role ~= "client" and role ~= "server" then
		error("bad argument #2 to 'enforce' (\"client\" or \"server\" expected)", 2)
	end
	local is_session = type(conn) == "userdata"
	if err == nil and not is_session and not in_handshake and not now and enforced_by_gnutls(self) then
		-- see Stream:verdicts(); such a policy has no rule that needs ctx
		conn.policy_later = self
		return true
	end
	local sess = is_session and conn or conn:session()
	if err ~= nil then
		return nil, handshake_refusal(self, is_session and {} or conn, sess, role, err, code)
	end
	local info = sess:info()
	local chain = sess:peer_certificates()
	local who, who_short = peer_of(is_session and {} or conn, role)
	local f = {
		role = role, info = info, chain = chain, who = who, who_short = who_short,
		verified = info.verified or (info.resumed and sess:verify_result().enforced) or false,
		tls13 = info.version == "TLS1.3",
	}
	if ctx and chain[1] and (#self.pin_sets > 0 or #self.issuer_sets > 0 or self.expiry_warning_days) then
		f.anchor = core.trusted_issuer(ctx, chain[#chain])
	end
	if info.resumed and #chain == 0 then f.chain = nil end
	if role == "server" then f.offered = function() return (offered_suites(sess)) end end
	if in_handshake then
		f.only = CERTIFICATE_RULES
	elseif not is_session then
		f.judged = conn.policy_hook_verdicts -- the hook's word on certificates
	end
	local verdicts, failed = evaluate(self, f)
	if not is_session then conn.policy_verdicts = verdicts end
	if #failed == 0 then return true, verdicts end
	local alert = failed[1].alert or "handshake_failure"
	if not in_handshake then sess:alert(alert) end
	return nil, refusal(failed), "policy", verdicts, alert
end

-- p:judges_certificates() -> whether a rule looks at the peer's
-- certificates (pins, issuers, identities, key sizes, check functions):
-- such a policy has a handshake hook, and its checks may run user code.
function Policy:judges_certificates()
	local judged = self.judges
	if judged == nil then -- a policy does not change: worked out once
		judged = #self.pin_sets > 0 or #self.issuer_sets > 0 or #self.identity_sets > 0 or
			self.min_key_bits ~= nil or #self.checks > 0
		self.judges = judged
	end
	return judged
end

-- p:handshake_hook(conn, role [, ctx]) -> a function for sess:set_hook, or
-- nil when no rule looks at certificates. The hook judges the certificate
-- rules inside the handshake, once the peer's certificate has passed
-- verification, so a refused peer gets its alert in the handshake instead
-- of after it; the check after the handshake reuses those verdicts (a check
-- function runs once).
function Policy:handshake_hook(conn, role, ctx)
	if not self:judges_certificates() then return nil end
	return function()
		local ok, res, _, _, alert = self:enforce(conn, role, ctx, nil, nil, nil, true)
		if not ok then return false, res, alert end
		conn.policy_hook_verdicts = res -- the verdicts
		return true
	end
end

Policy.__tostring = function(self)
	local parts = { self.min_version == self.max_version and self.min_version or (self.min_version .. "-" .. self.max_version) }
	if self.ciphers then parts[#parts + 1] = #self.ciphers .. " cipher suites" end
	if self.groups then parts[#parts + 1] = "groups " .. concat(self.groups, ",") end
	if #self.pin_sets > 0 then parts[#parts + 1] = "pins" end
	if self.client_certificate then parts[#parts + 1] = "client certificate " .. self.client_certificate end
	return "luatls.Policy (" .. concat(parts, ", ") .. ")"
end

M.default = M.new {}
-- Mozilla's server-side guidelines (without DHE): TLS 1.3 only ...
M.modern = M.new { min_version = "TLS1.3" }
-- ... and TLS 1.2+ with ECDHE and AEAD ciphers only. Made when first
-- used: naming cipher suites builds the catalogue of every suite GnuTLS
-- knows (see suites(), some 250 KB of tables), and a program that names
-- none should not carry it: every collection cycle walks it again.
local LAZY = {
	intermediate = function()
		return M.new {
			min_version = "TLS1.2",
			ciphers = {
				"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
				"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
				"ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
				"ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
			},
		}
	end,
}
setmetatable(M, { __index = function(t, k)
	local make = LAZY[k]
	if not make then return nil end
	local p = make()
	rawset(t, k, p)
	return p
end })
M.Policy = Policy
return M
