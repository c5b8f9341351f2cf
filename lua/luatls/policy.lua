-- Policies: the rules that govern a connection, as a Lua value. A policy
-- compiles into a GnuTLS priority string (what is offered and accepted)
-- plus checks run on the established connection.
local core = require "luatls.core"

local setmetatable, type, error, pairs, concat = setmetatable, type, error, pairs, table.concat

local M = {}
local Policy = {}
Policy.__index = Policy
Policy.__name = "luatls.Policy"

local VERSIONS = { "TLS1.0", "TLS1.1", "TLS1.2", "TLS1.3" }
local RANK = {}
for i, v in ipairs(VERSIONS) do RANK[v] = i end

local KNOWN = {
	min_version = true, max_version = true,
}

-- The base priority: AEAD ciphers with forward secrecy only, versions set
-- below. Debian's NORMAL alone still enables TLS 1.0/1.1 and CBC suites.
local BASE = "NORMAL:-VERS-ALL:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:" ..
	"-CIPHER-ALL:+AES-128-GCM:+CHACHA20-POLY1305:+AES-256-GCM:-MAC-ALL:+AEAD:" ..
	"-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-X448:+GROUP-SECP384R1:+GROUP-SECP521R1:" ..
	"-SIGN-RSA-SHA1:-SIGN-ECDSA-SHA1:-SIGN-DSA-SHA1:-SIGN-RSA-SHA224:-SIGN-ECDSA-SHA224"

local function check_version(name, v)
	if v ~= nil and not RANK[v] then
		error("bad policy: " .. name .. " must be one of " .. concat(VERSIONS, ", ") ..
			", got " .. tostring(v), 3)
	end
end

-- tls.policy{ ... } -> Policy. Unknown rule names are errors.
function M.new(rules)
	if rules == nil then rules = {} end
	if type(rules) ~= "table" then
		error("bad argument #1 to 'policy' (table expected, got " .. type(rules) .. ")", 2)
	end
	if getmetatable(rules) == Policy then return rules end
	for k in pairs(rules) do
		if not KNOWN[k] then
			error("bad policy: unknown rule '" .. tostring(k) .. "'", 2)
		end
	end
	check_version("min_version", rules.min_version)
	check_version("max_version", rules.max_version)
	local self = setmetatable({}, Policy)
	for k, v in pairs(rules) do self[k] = v end
	self.min_version = self.min_version or "TLS1.2"
	self.max_version = self.max_version or "TLS1.3"
	if RANK[self.min_version] > RANK[self.max_version] then
		error("bad policy: min_version " .. self.min_version ..
			" is above max_version " .. self.max_version, 2)
	end
	return self
end

-- The GnuTLS priority string this policy compiles to.
function Policy:priority()
	local parts = { BASE }
	for i = RANK[self.max_version], RANK[self.min_version], -1 do
		parts[#parts + 1] = "+VERS-" .. VERSIONS[i]
	end
	if RANK[self.min_version] < RANK["TLS1.2"] then
		-- old versions need the SHA-1 MAC suites and CBC to interoperate at all
		parts[#parts + 1] = "+AES-128-CBC:+AES-256-CBC:+SHA1"
	end
	parts[#parts + 1] = "%SERVER_PRECEDENCE"
	local p = concat(parts, ":")
	assert(core.check_priority(p))
	return p
end

M.default = M.new {}
M.Policy = Policy
return M
