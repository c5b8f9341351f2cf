-- Policies as Lua values: construction and misuse, the priority string read
-- back from GnuTLS (describe, against gnutls-cli --list), merge, offline
-- checks, enforcement against real peers (gnutls-cli/serv, openssl) and
-- luatls.explain.
local H = require "helper"
local tls = H.tls
local x509 = require "luatls.x509"

local P = H.pki()
local unpack = table.unpack or unpack

-- H.run, keeping every result even after a nil (nil, message, code).
local function run(fn, timeout)
	local t = H.run(function()
		return (function(...) return { n = select("#", ...), ... } end)(fn())
	end, timeout)
	return unpack(t, 1, t.n)
end

local function f(name) return "'" .. P .. name .. "'" end

local function cert(name) return assert(x509.load_file(P .. name))[1] end
local function chain(name) return assert(x509.load_chain(H.readfile(P .. name))) end

local function find(list, pred)
	for _, v in ipairs(list) do if pred(v) then return v end end
end

local function verdict(verdicts, rule)
	return find(verdicts, function(v) return v.rule == rule end)
end

local function names(list, field)
	local out = {}
	for i, v in ipairs(list) do out[i] = field and v[field] or v end
	return out
end

-- A luatls server with the test certificate; handshake failures land in
-- the returned list as { msg, code }, connections' verdicts in seen.
local function listen(opts, seen)
	local failures = {}
	seen = seen or {}
	local o = { port = 0, certificate = P .. "server-chain.pem", key = P .. "server.key",
		handshake_timeout = 5, timeout = 5,
		on_handshake_error = function(msg, code) failures[#failures + 1] = { msg = msg, code = code } end }
	for k, v in pairs(opts or {}) do o[k] = v end
	local srv = assert(tls.listen(o, function(conn)
		seen.info = conn:info()
		seen.verdicts = conn:verdicts()
		local line = conn:receive("*l")
		if line then conn:send("you said " .. line .. "\n") end
	end))
	local _, port = srv:address()
	return port, failures, seen
end

local connect = H.connect

-- Polls (inside H.run) until pred() is true or timeout seconds pass.
local function wait_for(pred, timeout)
	local deadline = tls.now() + (timeout or 5)
	while not pred() and tls.now() < deadline do tls.sleep(0.02) end
	return pred()
end

-- gnutls-cli against a local server: a line in, then stdin stays open.
local function gnutls_cli(port, args)
	return H.exec(("(printf 'hello\\n'; sleep 2) | gnutls-cli --x509cafile=%s -p %d 127.0.0.1 " ..
		"--sni-hostname=localhost --verify-hostname=localhost %s"):format(f "ca.pem", port, args or ""))
end

local function gnutls_serv(port, args)
	return H.start_peer(("gnutls-serv --echo -p %d --x509certfile=%s --x509keyfile=%s %s")
		:format(port, f "server-chain.pem", f "server.key", args or ""), port)
end

-- gnutls-cli --priority STR --list, parsed.
local function gnutls_list(priority)
	local out = H.capture("gnutls-cli --priority '" .. priority .. "' --list 2>&1")
	local r = { suites = {} }
	for name, a, b in out:gmatch("\n(TLS_[%w_]+)%s+(0x%x%x), (0x%x%x)") do
		r.suites[#r.suites + 1] = name .. " " .. a .. "," .. b
	end
	local function list(label, prefix)
		local line = out:match("\n" .. label .. ": ([^\n]*)")
		local t = {}
		for w in (line or ""):gmatch("[^,%s]+") do
			if w ~= "none" then t[#t + 1] = (w:gsub("^" .. prefix, "")) end
		end
		return t
	end
	r.versions = list("Protocols", "VERS%-")
	r.ciphers = list("Ciphers", "")
	r.macs = list("MACs", "")
	r.kx = list("Key Exchange Algorithms", "")
	r.groups = list("Groups", "GROUP%-")
	r.signatures = list("PK%-signatures", "SIGN%-")
	return r, out
end

---------------------------------------------------------------------------

describe("tls.policy", function()
	it("defaults to TLS 1.2 and 1.3 with no other rule", function()
		local p = tls.policy {}
		assert.equal("TLS1.2", p.min_version)
		assert.equal("TLS1.3", p.max_version)
		assert.is_nil(p.ciphers)
		assert.matches("^luatls.Policy", tostring(p))
	end)

	it("accepts cipher suites by IANA, OpenSSL and GnuTLS names, and keeps IANA names", function()
		local p = tls.policy { ciphers = {
			"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
			"TLS_ECDHE_RSA_AES_128_GCM_SHA256", "tls_aes_128_gcm_sha256" } }
		assert.same({ "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256" }, p.ciphers)
		local q = tls.policy { ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:TLS_AES_256_GCM_SHA384" }
		assert.same({ "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384" }, q.ciphers)
	end)

	it("raises for an unknown cipher suite, naming the closest known ones", function()
		local err = H.error_of(tls.policy, { ciphers = { "ECDHE-RSA-AES128-GCM-SHA265" } })
		assert.matches("unknown cipher suite 'ECDHE-RSA-AES128-GCM-SHA265'", err, 1, true)
		assert.matches("closest known are ECDHE-RSA-AES128-GCM-SHA256", err, 1, true)
		err = H.error_of(tls.policy, { ciphers = { "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA384" } })
		assert.matches("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", err, 1, true)
		assert.matches("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", err, 1, true)
	end)

	it("accepts groups by GnuTLS, IANA and NIST names; raises for an unknown one, naming the closest", function()
		local p = tls.policy { groups = { "x25519", "P-256", "secp384r1", "GROUP-X448" } }
		assert.same({ "X25519", "SECP256R1", "SECP384R1", "X448" }, p.groups)
		local err = H.error_of(tls.policy, { groups = { "x2559" } })
		assert.matches("unknown group 'x2559'", err, 1, true)
		assert.matches("x25519", err, 1, true)
	end)

	it("raises for misuse, naming the rule", function()
		local cases = {
			{ { bogus = 1 }, "unknown rule 'bogus'" },
			{ { min_version = "TLS1.4" }, "min_version must be one of" },
			{ { min_version = "TLS1.3", max_version = "TLS1.2" }, "min_version TLS1.3 is above max_version TLS1.2" },
			{ { ciphers = {} }, "ciphers must not be empty" },
			{ { ciphers = 42 }, "ciphers must be a list" },
			{ { ciphers = { 42 } }, "ciphers[1] must be a string" },
			{ { pins = { "sha256/short" } }, "is not an SPKI pin" },
			{ { pins = { "md5/" .. ("A"):rep(43) .. "=" } }, "is not an SPKI pin" },
			{ { min_key_bits = 2048 }, "min_key_bits must be a table" },
			{ { min_key_bits = { rsa = -1 } }, "min_key_bits.rsa must be a positive integer" },
			{ { min_key_bits = { aes = 128 } }, "unknown key type 'aes'" },
			{ { expiry_warning_days = "30" }, "expiry_warning_days must be a number" },
			{ { client_certificate = "always" }, "client_certificate must be" },
			{ { check = true }, "check must be a function" },
			{ { min_version = "TLS1.3", ciphers = { "ECDHE-RSA-AES128-GCM-SHA256" } },
				"none of the allowed cipher suites works with TLS1.3" },
		}
		for _, c in ipairs(cases) do
			local err = H.error_of(tls.policy, c[1])
			assert.matches("bad policy: ", err, 1, true)
			assert.matches(c[2], err, 1, true)
		end
		assert.matches("table expected", H.error_of(tls.policy, 42), 1, true)
	end)

	it("names the IANA and OpenSSL spellings of every suite as openssl ciphers -stdname does", function()
		local out = H.capture("openssl ciphers -V -stdname 'ALL:COMPLEMENTOFALL:@SECLEVEL=0' 2>/dev/null")
		local checked = 0
		for a, b, iana, ossl in out:gmatch("0x(%x%x),0x(%x%x) %- (%S+)%s+%- (%S+)") do
			local id = tonumber(a .. b, 16)
			local desc
			for _, s in ipairs(H.core.cipher_suites()) do if s.id == id then desc = s end end
			if desc then
				local r = tls.policy.suite(desc.name)
				assert.equal(ossl, r.openssl, desc.name)
				-- OpenSSL spells TLS_DHE_PSK_WITH_AES_*_CCM_8 as TLS_PSK_DHE_WITH_...
				if not iana:find("^TLS_PSK_DHE_") then assert.equal(iana, r.iana, desc.name) end
				checked = checked + 1
			end
		end
		assert.is_true(checked > 100, "only " .. checked .. " suites compared")
	end)
end)

describe("presets", function()
	it("modern allows TLS 1.3 only", function()
		local d = tls.policy.modern:describe()
		assert.same({ "TLS1.3" }, d.versions)
		for _, s in ipairs(d.suites) do assert.equal("TLS1.3", s.min_version) end
	end)

	it("intermediate allows TLS 1.2 and 1.3 with ECDHE and AEAD suites only", function()
		local d = tls.policy.intermediate:describe()
		assert.same({ "TLS1.3", "TLS1.2" }, d.versions)
		assert.equal(9, #d.suites)
		for _, s in ipairs(d.suites) do
			assert.is_true(s.aead, s.name)
			assert.is_true(s.forward_secrecy, s.name)
			assert.is_true(s.min_version == "TLS1.3" or s.key_exchange == "ECDHE", s.name)
			assert.is_true(s.allowed)
		end
	end)

	it("builds the catalogue of cipher suites only for a policy that names suites", function()
		-- a fresh copy of the module, counting what it asks the core for
		local core = require "luatls.core"
		local saved_module, saved_fn = package.loaded["luatls.policy"], core.cipher_suites
		local calls = 0
		core.cipher_suites = function(...) calls = calls + 1 return saved_fn(...) end
		package.loaded["luatls.policy"] = nil
		local ok, err = pcall(function()
			local fresh = require "luatls.policy"
			assert.equal(0, calls, "loading the module built the catalogue")
			fresh.new { min_version = "TLS1.3", resumption = false }:priority()
			assert.equal(0, calls, "a policy without ciphers built the catalogue")
			assert.equal(9, #fresh.intermediate:describe().suites) -- made on first use
			assert.equal(1, calls)
			assert.equal(fresh.intermediate, fresh.intermediate)
		end)
		core.cipher_suites, package.loaded["luatls.policy"] = saved_fn, saved_module
		assert(ok, err)
	end)

	it("the library default is at least as strict as intermediate", function()
		local def, int = tls.policy.default:describe(), tls.policy.intermediate:describe()
		local function subset(a, b, what)
			local sb = {}
			for _, v in ipairs(b) do sb[v] = true end
			for _, v in ipairs(a) do assert.is_true(sb[v], what .. ": " .. v .. " is not in intermediate") end
		end
		subset(def.versions, int.versions, "version")
		subset(names(def.suites, "name"), names(int.suites, "name"), "suite")
		subset(def.groups, int.groups, "group")
		subset(def.signatures, int.signatures, "signature")
	end)
end)

describe("policy:describe()", function()
	local policies = {
		default = tls.policy.default,
		modern = tls.policy.modern,
		intermediate = tls.policy.intermediate,
		custom = tls.policy { min_version = "TLS1.2", max_version = "TLS1.2", groups = { "secp384r1", "x25519" },
			ciphers = { "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-SHA256" } },
		old = tls.policy { min_version = "TLS1.0" },
	}
	for name, p in pairs(policies) do
		it("matches gnutls-cli --priority ... --list for the " .. name .. " policy", function()
			local d = p:describe()
			local want, out = gnutls_list(d.priority)
			local got = {}
			for i, s in ipairs(d.suites) do got[i] = s.gnutls .. " " .. s.hex end
			assert.same(want.suites, got, out)
			assert.same(want.versions, d.versions)
			assert.same(want.ciphers, d.ciphers)
			assert.same(want.macs, d.macs)
			assert.same(want.kx, d.kx)
			assert.same(want.groups, d.groups)
			assert.same(want.signatures, d.signatures)
		end)
	end

	it("explains each suite part by part", function()
		local d = tls.policy { min_version = "TLS1.0",
			ciphers = { "TLS_AES_256_GCM_SHA384", "ECDHE-RSA-AES128-GCM-SHA256", "AES128-SHA" } }:describe()
		local t13 = find(d.suites, function(s) return s.name == "TLS_AES_256_GCM_SHA384" end)
		assert.is_true(t13.forward_secrecy)
		assert.is_true(t13.aead)
		assert.equal("SHA384", t13.prf)
		assert.equal("AES-256-GCM", t13.cipher)
		local e = find(d.suites, function(s) return s.name == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" end)
		assert.equal("ECDHE", e.key_exchange)
		assert.equal("RSA", e.authentication)
		assert.equal("AES-128-GCM", e.cipher)
		assert.equal("AEAD", e.mac)
		assert.equal("SHA256", e.prf)
		assert.is_true(e.forward_secrecy)
		assert.equal("ECDHE-RSA-AES128-GCM-SHA256", e.openssl)
		assert.equal("TLS_ECDHE_RSA_AES_128_GCM_SHA256", e.gnutls)
		assert.equal("0xc0,0x2f", e.hex)
		local r = find(d.suites, function(s) return s.name == "TLS_RSA_WITH_AES_128_CBC_SHA" end)
		assert.equal("RSA", r.key_exchange)
		assert.is_false(r.forward_secrecy)
		assert.is_false(r.aead)
		assert.equal("SHA1", r.mac)
		assert.matches("no forward secrecy", r.text, 1, true)
		assert.matches("MAC SHA1", r.text, 1, true)
		assert.matches("TLS_RSA_WITH_AES_128_CBC_SHA", tostring(d), 1, true)
	end)

	it("marks the suites GnuTLS cannot leave out of an allow-list as refused after the handshake", function()
		local d = tls.policy { ciphers = { "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305" } }:describe()
		assert.same({ "TLS1.2" }, d.versions)
		local extra = find(d.suites, function(s) return s.name == "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" end)
		assert.is_false(extra.allowed)
		assert.is_true(find(d.suites, function(s) return s.name == "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" end).allowed)
		assert.matches("refused after the handshake", tostring(d), 1, true)
	end)
end)

describe("policy:merge()", function()
	it("keeps the stricter version range, suites and groups", function()
		local site = tls.policy { min_version = "TLS1.2", groups = { "x25519", "secp256r1" } }
		local svc = tls.policy { max_version = "TLS1.2",
			ciphers = { "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA256" }, groups = { "secp256r1", "x448" } }
		local m = site:merge(svc)
		assert.equal("TLS1.2", m.min_version)
		assert.equal("TLS1.2", m.max_version)
		-- the site's default suites are AEAD only: the CBC suite goes
		assert.same({ "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" }, m.ciphers)
		assert.same({ "SECP256R1" }, m.groups)
		assert.same({ "TLS1.2" }, m:describe().versions)
	end)

	it("keeps the longer key and expiry minimums and the stricter client certificate rule", function()
		local m = tls.policy { min_key_bits = { rsa = 2048, ec = 384 }, expiry_warning_days = 10, client_certificate = "require" }
			:merge { min_key_bits = { rsa = 3072 }, expiry_warning_days = 30, client_certificate = "request" }
		assert.same({ rsa = 3072, ec = 384 }, m.min_key_bits)
		assert.equal(30, m.expiry_warning_days)
		assert.equal("require", m.client_certificate)
	end)

	it("requires both pin sets and runs both check functions", function()
		local leaf, int = cert("server.pem"), cert("int.pem")
		local calls = 0
		local site = tls.policy { pins = { int:spki_pin() }, check = function() calls = calls + 1 return true end }
		local svc = tls.policy { pins = { leaf:spki_pin() }, check = function() calls = calls + 1 return true end }
		local m = site:merge(svc)
		assert.is_true((m:check(chain("server-chain.pem"))))
		assert.equal(2, calls)
		local other = site:merge { pins = { cert("client.pem"):spki_pin() } }
		local ok, msg, code = other:check(chain("server-chain.pem"))
		assert.is_nil(ok)
		assert.equal("policy", code)
		assert.matches("pins: no certificate", msg, 1, true)
	end)

	it("raises when the policies have nothing in common, or for misuse", function()
		local err = H.error_of(tls.policy.modern.merge, tls.policy.modern, { max_version = "TLS1.2" })
		assert.matches("no common version", err, 1, true)
		err = H.error_of(tls.policy.default.merge, tls.policy.default, { ciphers = { "AES128-SHA" } })
		assert.matches("no cipher suite in common", err, 1, true)
		err = H.error_of(tls.policy.default.merge, tls.policy.default, { groups = { "ffdhe2048" } })
		assert.matches("no group in common", err, 1, true)
		err = H.error_of(tls.policy.default.merge, tls.policy.default, 42)
		assert.matches("bad argument #1 to 'merge'", err, 1, true)
		err = H.error_of(tls.policy.default.merge, tls.policy.default, { nonsense = true })
		assert.matches("unknown rule 'nonsense'", err, 1, true)
	end)
end)

describe("policy:check() offline", function()
	local pins
	setup(function()
		pins = {
			leaf = cert("server.pem"):spki_pin(), int = cert("int.pem"):spki_pin(),
			ca = cert("ca.pem"):spki_pin(), other = cert("client.pem"):spki_pin(),
		}
	end)

	it("passes a chain with a pinned leaf, intermediate or root, and names the match", function()
		local full = chain("server-chain.pem")
		full[#full + 1] = cert("ca.pem")
		for _, which in ipairs { "leaf", "int", "ca" } do
			local ok, verdicts = tls.policy { pins = { pins.other, pins[which] } }:check(full)
			assert.is_true(ok, which)
			assert.equal("pass", verdict(verdicts, "pins").result)
			assert.matches(pins[which], verdict(verdicts, "pins").message, 1, true)
		end
	end)

	it("fails a chain matching no pin, listing the chain's pins with their positions", function()
		local full = chain("server-chain.pem")
		full[#full + 1] = cert("ca.pem")
		local ok, msg, code, verdicts = tls.policy { pins = { pins.other } }:check(full)
		assert.is_nil(ok)
		assert.equal("policy", code)
		assert.matches("pins: no certificate in the chain of the peer matches the pin", msg, 1, true)
		assert.matches(pins.leaf .. " (leaf)", msg, 1, true)
		assert.matches(pins.int .. " (intermediate)", msg, 1, true)
		assert.matches(pins.ca .. " (root)", msg, 1, true)
		assert.equal("fail", verdict(verdicts, "pins").result)
	end)

	it("checks key sizes by type", function()
		local ok, msg = tls.policy { min_key_bits = { rsa = 3072 } }:check(chain("server-rsa-chain.pem"))
		assert.is_nil(ok)
		assert.matches("min_key_bits: certificate 1 (leaf, CN=localhost", msg, 1, true)
		assert.matches("2048-bit RSA key", msg, 1, true)
		assert.matches("at least 3072 bits", msg, 1, true)
		assert.is_true((tls.policy { min_key_bits = { rsa = 2048, ec = 256 } }:check(chain("server-rsa-chain.pem"))))
		ok, msg = tls.policy { min_key_bits = { ec = 384 } }:check(chain("server-chain.pem"))
		assert.is_nil(ok)
		assert.matches("256-bit EC/ECDSA key", msg, 1, true)
	end)

	it("warns, without refusing, about a certificate that expires within the window", function()
		local key = x509.generate_key {}
		local soon = assert(x509.issue { key = key, subject = "CN=soon.example.test", days = 10 })
		local ok, verdicts = tls.policy { expiry_warning_days = 30 }:check(soon)
		assert.is_true(ok)
		local v = verdict(verdicts, "expiry_warning_days")
		assert.equal("warning", v.result)
		assert.matches("expires on", v.message, 1, true)
		assert.matches("in %d+ days", v.message)
		ok, verdicts = tls.policy { expiry_warning_days = 5 }:check(soon)
		assert.equal("pass", verdict(verdicts, "expiry_warning_days").result)
	end)

	it("checks the names and issuers of the peer's certificate", function()
		local c = chain("client-chain.pem")
		assert.is_true((tls.policy { identities = { "client.example.test" } }:check(c)))
		local ok, msg = tls.policy { identities = { "admin.example.test" } }:check(c)
		assert.is_nil(ok)
		assert.matches("identities: the certificate of the peer is for client.example.test", msg, 1, true)
		assert.is_true((tls.policy { issuers = { "luatls test intermediate CA" } }:check(c)))
		ok, msg = tls.policy { issuers = { "CN=Some Other CA" } }:check(c)
		assert.is_nil(ok)
		assert.matches("issuers: ", msg, 1, true)
		assert.matches("luatls test intermediate CA", msg, 1, true)
	end)

	it("runs check functions: passing, refusing with a reason, and raising", function()
		local seen
		local ok, verdicts = tls.policy { check = function(info, ch) seen = { info, ch } return true, "looks fine" end }
			:check(chain("server-chain.pem"))
		assert.is_true(ok)
		assert.equal(2, #seen[2])
		assert.equal("check: looks fine", verdict(verdicts, "check").message)
		local msg
		ok, msg = tls.policy { check = function() return false, "not on a Sunday" end }:check(chain("server-chain.pem"))
		assert.is_nil(ok)
		assert.equal("check: not on a Sunday", msg)
		ok, msg = tls.policy { check = function() error("oops") end }:check(chain("server-chain.pem"))
		assert.is_nil(ok)
		assert.matches("check function raised an error: .*oops", msg)
	end)

	it("checks recorded connection info: version, suite and group", function()
		local ok, msg = tls.policy.default:check { version = "TLS1.1", cipher = "TLS_RSA_WITH_AES_128_CBC_SHA" }
		assert.is_nil(ok)
		assert.matches("version: the peer negotiated TLS1.1", msg, 1, true)
		assert.matches("ciphers: the peer negotiated TLS_RSA_WITH_AES_128_CBC_SHA", msg, 1, true)
		local good = { version = "TLS1.3", cipher = "TLS_AES_128_GCM_SHA256", group = "X25519" }
		local verdicts
		ok, verdicts = tls.policy.modern:check(good)
		assert.is_true(ok)
		assert.same({ "version", "ciphers", "groups" }, names(verdicts, "rule"))
		ok, msg = tls.policy { groups = { "secp256r1" } }:check(good)
		assert.matches("groups: the peer negotiated the group X25519", msg, 1, true)
		-- info and chain together, the chain as PEM text
		ok, verdicts = tls.policy { pins = { pins.leaf } }:check { version = "TLS1.2",
			cipher = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", chain = H.readfile(P .. "server-chain.pem") }
		assert.is_true(ok)
		assert.equal("pass", verdict(verdicts, "pins").result)
	end)

	it("raises for misuse", function()
		local p = tls.policy.default
		assert.matches("bad argument #1 to 'check'", H.error_of(p.check, p, 42), 1, true)
		assert.matches("unknown option 'when'", H.error_of(p.check, p, {}, { when = 1 }), 1, true)
		assert.matches("luatls.Policy expected", H.error_of(p.check, {}, {}), 1, true)
		assert.matches("bad argument #2 to 'enforce'", H.error_of(p.enforce, p, {}, "peer"), 1, true)
	end)
end)

describe("policy enforcement", function()
	setup(function()
		for _, cmd in ipairs { "gnutls-serv", "gnutls-cli", "openssl" } do
			assert(H.have(cmd), cmd .. " is not installed")
		end
	end)

	it("refuses gnutls-cli offering only a suite outside the allow-list, with the policy's reason", function()
		local fails, rc, out = run(function()
			local port, failures = listen { policy = tls.policy { ciphers = { "TLS_AES_128_GCM_SHA256",
				"ECDHE-ECDSA-AES128-GCM-SHA256" } } }
			local cli = gnutls_cli(port, "--priority=NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-CBC:-MAC-ALL:+SHA1:-KX-ALL:+ECDHE-ECDSA")
			local rc, out = cli.wait(10)
			wait_for(function() return #failures > 0 end)
			return failures, rc, out
		end)
		assert.not_equal(0, rc)
		assert.matches("Handshake failed", out, 1, true)
		assert.equal(1, #fails)
		assert.equal("policy", fails[1].code, fails[1].msg)
		assert.matches("^ciphers: the client 127%.0%.0%.1:%d+ offered only TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", fails[1].msg)
		assert.matches("this server's policy allows TLS_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
			fails[1].msg, 1, true)
	end)

	it("refuses after the handshake a suite GnuTLS could not leave out, with an alert", function()
		local fails, rc, out = run(function()
			local port, failures = listen { policy = tls.policy { ciphers = { "ECDHE-ECDSA-AES128-GCM-SHA256",
				"ECDHE-RSA-CHACHA20-POLY1305" } } }
			local cli = gnutls_cli(port, "--priority=NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+CHACHA20-POLY1305")
			local rc, out = cli.wait(10)
			wait_for(function() return #failures > 0 end)
			return failures, rc, out
		end)
		assert.matches("Received alert [71]", out, 1, true)
		assert.not_matches("you said", out, 1, true)
		assert.equal("policy", fails[1].code, fails[1].msg)
		assert.matches("ciphers: the client 127.0.0.1:", fails[1].msg, 1, true)
		assert.matches("negotiated TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, which the policy does not allow",
			fails[1].msg, 1, true)
		assert.matches("the client offered TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", fails[1].msg, 1, true)
	end)

	it("refuses openssl s_client -tls1_1, naming min_version", function()
		local fails, rc = run(function()
			local port, failures = listen { policy = tls.policy.intermediate }
			local cli = H.exec(("openssl s_client -connect 127.0.0.1:%d -servername localhost -CAfile %s -tls1_1 " ..
				"-cipher 'DEFAULT:@SECLEVEL=0' </dev/null"):format(port, f "ca.pem"))
			local rc = cli.wait(10)
			wait_for(function() return #failures > 0 end)
			return failures, rc
		end)
		assert.not_equal(0, rc)
		assert.equal("version", fails[1].code, fails[1].msg)
		assert.matches("offered TLS1.1", fails[1].msg, 1, true)
		assert.matches("min_version", fails[1].msg, 1, true)
	end)

	it("refuses a connection to gnutls-serv whose chain matches no pin, listing the chain's pins", function()
		local other = cert("client.pem"):spki_pin()
		local conn, msg, code, out = run(function()
			local port = H.free_port()
			local srv = gnutls_serv(port)
			local conn, msg, code = connect(port, { policy = tls.policy { pins = { other } } })
			tls.sleep(0.2)
			return conn, msg, code, srv.output()
		end)
		assert.is_nil(conn)
		assert.equal("policy", code)
		assert.matches("pins: no certificate in the chain of localhost matches the pin " .. other, msg, 1, true)
		assert.matches(cert("server.pem"):spki_pin() .. " (leaf)", msg, 1, true)
		assert.matches(cert("int.pem"):spki_pin() .. " (intermediate)", msg, 1, true)
		assert.matches(cert("ca.pem"):spki_pin() .. " (trusted CA)", msg, 1, true)
		assert.matches("fatal alert has been received", out, 1, true)
	end)

	it("passes with a backup pin, or with a pin of the trusted root the server does not send", function()
		local r = run(function()
			local port = H.free_port()
			gnutls_serv(port)
			local out = {}
			for _, which in ipairs { "int.pem", "ca.pem" } do
				local conn, msg = connect(port, { policy = tls.policy { pins = {
					"sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", cert(which):spki_pin() } } })
				assert(conn, msg)
				conn:send("ping\n")
				out[which] = { line = conn:receive("*l"), verdicts = conn:verdicts() }
				conn:close()
			end
			return out
		end)
		assert.equal("ping", r["int.pem"].line)
		assert.matches("certificate 2 (intermediate", verdict(r["int.pem"].verdicts, "pins").message, 1, true)
		assert.matches("certificate 3 (trusted CA", verdict(r["ca.pem"].verdicts, "pins").message, 1, true)
	end)

	it("counts only the leaf's pin when the chain does not verify", function()
		local untrusted = chain("untrusted-chain.pem")
		local r = run(function()
			local port = listen { certificate = P .. "untrusted-chain.pem", key = P .. "untrusted.key" }
			local out = {}
			out.ca = { connect(port, { verify = false, policy = tls.policy { pins = { untrusted[2]:spki_pin() } } }) }
			out.leaf = { connect(port, { verify = false, policy = tls.policy { pins = { untrusted[1]:spki_pin() } } }) }
			if out.leaf[1] then out.leaf[1]:close() end
			return out
		end)
		assert.is_nil(r.ca[1])
		assert.equal("policy", r.ca[3])
		assert.matches("the chain was not verified, so only the leaf's pin counts", r.ca[2], 1, true)
		assert.is_truthy(r.leaf[1], r.leaf[2])
	end)

	it("refuses a client without a required certificate, and names the rule", function()
		local fails, rc, out = run(function()
			local port, failures = listen { cafile = P .. "ca.pem", policy = tls.policy { client_certificate = "require" } }
			local rc, out = gnutls_cli(port).wait(10)
			wait_for(function() return #failures > 0 end)
			return failures, rc, out
		end)
		assert.not_equal(0, rc)
		assert.matches("Certificate is required", out, 1, true)
		assert.equal("policy", fails[1].code, fails[1].msg)
		assert.matches("client_certificate: the client 127.0.0.1:", fails[1].msg, 1, true)
		assert.matches("requires one (client_certificate = \"require\")", fails[1].msg, 1, true)
	end)

	it("accepts a client with a certificate, and tells the server who it is", function()
		local seen, out = run(function()
			local port, _, seen = listen { cafile = P .. "ca.pem", policy = tls.policy { client_certificate = "require",
				identities = { "client.example.test" }, pins = { cert("client.pem"):spki_pin() } } }
			local rc, out = gnutls_cli(port, "--x509certfile=" .. f "client-chain.pem" .. " --x509keyfile=" .. f "client.key").wait(10)
			return seen, out
		end)
		assert.matches("you said hello", out, 1, true)
		assert.equal("CN=client.example.test,O=luatls test", seen.info.peer.subject)
		assert.equal(cert("client.pem"):spki_pin(), seen.info.peer.pin)
		assert.same({ "client.example.test" }, seen.info.peer.sans.dns)
		for _, rule in ipairs { "version", "ciphers", "groups", "client_certificate", "pins", "identities" } do
			assert.equal("pass", verdict(seen.verdicts, rule).result, rule)
		end
	end)

	it("refuses a client whose identity is not allowed, with alert access_denied", function()
		local fails, out = run(function()
			local port, failures = listen { cafile = P .. "ca.pem", policy = tls.policy { client_certificate = "require",
				identities = { "admin.example.test" } } }
			local _, out = gnutls_cli(port, "--x509certfile=" .. f "client-chain.pem" .. " --x509keyfile=" .. f "client.key").wait(10)
			wait_for(function() return #failures > 0 end)
			return failures, out
		end)
		assert.matches("Received alert [49]", out, 1, true)
		assert.equal("policy", fails[1].code)
		assert.matches("identities: the certificate of the client 127.0.0.1:%d+ is for client.example.test", fails[1].msg)
	end)

	it("lists every rule on conn:verdicts(), with expiry within the window as a warning", function()
		local verdicts, line = run(function()
			local port = listen()
			local conn = assert(connect(port, { policy = tls.policy { expiry_warning_days = 100000,
				min_key_bits = { ec = 256 }, check = function(info) return info.version == "TLS1.3", "TLS 1.3 it is" end } }))
			conn:send("x\n")
			local line = conn:receive("*l")
			conn:close()
			return conn:verdicts(), line
		end)
		assert.equal("you said x", line)
		assert.same({ "version", "ciphers", "groups", "min_key_bits", "expiry_warning_days", "check" }, names(verdicts, "rule"))
		assert.equal("warning", verdict(verdicts, "expiry_warning_days").result)
		assert.matches("certificate 1 (leaf", verdict(verdicts, "expiry_warning_days").message, 1, true)
		assert.equal("check: TLS 1.3 it is", verdict(verdicts, "check").message)
	end)

	it("refuses a server whose key is too short, and the luatls server hears why", function()
		local conn, msg, code, fails = run(function()
			local port, failures = listen { certificate = P .. "server-rsa-chain.pem", key = P .. "server-rsa.key" }
			local conn, msg, code = connect(port, { policy = tls.policy { min_key_bits = { rsa = 3072 } } })
			wait_for(function() return #failures > 0 end, 2)
			return conn, msg, code, failures
		end)
		assert.is_nil(conn)
		assert.equal("policy", code)
		assert.matches("min_key_bits: certificate 1 (leaf, CN=localhost,O=luatls test) has a 2048-bit RSA key", msg, 1, true)
		assert.is_truthy(fails)
	end)

	it("refuses when the check function says no, and the peer's receive explains the alert", function()
		local conn, msg, code, seen = run(function()
			local port, _, seen = listen { policy = tls.policy { check = function() return false, "closed for maintenance" end } }
			local c = assert(connect(port))
			c:send("x\n")
			local line, err, ecode = c:receive("*l")
			c:close()
			return line, err, ecode, seen
		end)
		assert.is_nil(conn)
		assert.equal("alert", code)
		assert.matches("access_denied", msg, 1, true)
		assert.is_nil(seen.info)
	end)
end)

describe("policy rules inside the handshake", function()
	it("refuses a pin mismatch before the client finishes: the server sees the client's alert", function()
		local fails, msg, code, calls = run(function()
			local port, failures = listen()
			local n = 0
			local pol = tls.policy { pins = { "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" },
				check = function() n = n + 1 return true end }
			local conn, m, c = connect(port, { policy = pol })
			assert.is_nil(conn)
			wait_for(function() return #failures > 0 end)
			return failures, m, c, n
		end)
		assert.equal("policy", code)
		assert.matches("pins", msg, 1, true)
		-- the server's handshake failed on the client's alert: the client never finished
		assert.equal(1, #fails)
		assert.equal("alert", fails[1].code)
		assert.matches("bad_certificate", fails[1].msg, 1, true)
		assert.equal(1, calls) -- a check function runs once per handshake
	end)

	it("refuses a client certificate a server's identities rule rejects, in the server's handshake", function()
		local fails, seen = run(function()
			local seen = {}
			local port, failures = listen({ client_certificate = "require", cafile = P .. "ca.pem",
				policy = tls.policy { client_certificate = "require", identities = { "someone.example.test" } } }, seen)
			local conn = connect(port, { certificate = P .. "client-chain.pem", key = P .. "client.key" })
			if conn then conn:send("hi\n") conn:receive("*l") end
			wait_for(function() return #failures > 0 end)
			return failures, seen
		end)
		assert.equal(1, #fails)
		assert.equal("policy", fails[1].code)
		assert.matches("identities", fails[1].msg, 1, true)
		assert.is_nil(seen.info) -- the handler never ran
	end)

	it("runs the check function once and keeps its verdicts when the peer passes", function()
		local verdicts, calls = run(function()
			local port = listen()
			local n = 0
			local conn = assert(connect(port, { policy = tls.policy { check = function() n = n + 1 return true, "fine" end } }))
			return conn:verdicts(), n
		end)
		assert.equal(1, calls)
		assert.equal("pass", verdict(verdicts, "check").result)
	end)
end)

describe("luatls.explain", function()
	it("explains alert numbers and names, codes, and GnuTLS error names", function()
		assert.matches("unknown_ca", tls.explain(48), 1, true)
		assert.matches("client certificate", tls.explain("unknown_ca"), 1, true)
		assert.matches("TLS version", tls.explain("version"), 1, true)
		assert.matches("cipher suite", tls.explain("GNUTLS_E_NO_CIPHER_SUITES"), 1, true)
		assert.matches("policy", tls.explain("policy"), 1, true)
		assert.matches("port", tls.explain("not_tls"), 1, true)
	end)

	local cases = {
		{ "the chain ends at a certificate issued by CN=X, which is not a trusted CA (unknown CA)", "cafile" },
		{ "certificate 1 (leaf, CN=localhost) expired on 2021-01-01 00:00:00 UTC, 1000 days ago", "Renew" },
		{ "certificate verify failed: the certificate of the server localhost:443 is for other.example.test, not for localhost", "server_name" },
		{ "there is no TLS version both sides accept: the client offered TLS1.1", "min_version" },
		{ "there is no cipher suite both sides accept", "ciphers" },
		{ "the server localhost:80 does not speak TLS (it answered with something that is not a TLS record, such as plain HTTP)", "http://" },
		{ "CN=localhost was issued by CN=Int, which is neither in the chain nor a trusted CA: most likely that intermediate certificate is missing", "intermediate" },
		{ "receive: the peer sent a fatal alert: unknown_ca (48)", "client certificate" },
		{ "pins: no certificate in the chain of example.test matches the pin sha256/x", "pin" },
	}
	for _, c in ipairs(cases) do
		it("explains: " .. c[1]:sub(1, 60), function()
			local text = tls.explain(c[1])
			assert.is_string(text)
			assert.matches(c[2], text, 1, true)
		end)
	end

	it("explains the messages of real failures", function()
		local msgs = run(function()
			local out = {}
			local port = listen { certificate = P .. "expired-chain.pem", key = P .. "expired.key" }
			out.expired = select(2, connect(port))
			port = listen { certificate = P .. "wronghost-chain.pem", key = P .. "wronghost.key" }
			out.hostname = select(2, connect(port))
			port = listen { certificate = P .. "server.pem", key = P .. "server.key" }
			out.intermediate = select(2, connect(port))
			return out
		end)
		assert.matches("Renew", tls.explain(msgs.expired), 1, true)
		assert.matches("server_name", tls.explain(msgs.hostname), 1, true)
		assert.matches("intermediate", tls.explain(msgs.intermediate), 1, true)
	end)

	it("returns nil for something it does not know, and raises for misuse", function()
		assert.is_nil(tls.explain("no such thing at all"))
		assert.matches("bad argument #1 to 'explain'", H.error_of(tls.explain, {}), 1, true)
	end)
end)
