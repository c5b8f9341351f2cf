-- luatls.x509: certificates, keys, CRLs and trust stores as Lua values,
-- checked against what certtool and openssl say about the same files.
local H = require "helper"
local x509 = require "luatls.x509"
local pki = require "pki"

local floor = math.floor
local DAY = 86400

local DIR, made = pki.build(H.tmpdir())
local SH = H.pki() -- the certtool-made PKI (spec/pki.sh), for cross-checks
local now = os.time()

local function file(name) return H.readfile(DIR .. name) end
local function cert(name) return assert(x509.load(file(name .. ".pem"))) end
local function chain(name) return assert(x509.load_chain(file(name))) end

local tmp = H.tmpdir() .. "/"
local seq = 0
local function save(data, ext)
	seq = seq + 1
	local path = tmp .. "f" .. seq .. (ext or ".pem")
	H.writefile(path, data)
	return path
end

local function sh(cmd) return H.capture(cmd .. " 2>/dev/null") end

local function has(list, value)
	for _, v in ipairs(list or {}) do if v == value then return true end end
	return false
end

local function codes(problems)
	local out = {}
	for _, p in ipairs(problems) do out[p.code] = p end
	return out
end

local pack = table.pack or function(...) return { n = select("#", ...), ... } end

-- A store trusting the root of the Lua-made PKI.
local function root_store(extra)
	local o = { certificates = { made.ca.cert } }
	for k, v in pairs(extra or {}) do o[k] = v end
	return assert(x509.store(o))
end

---------------------------------------------------------------------------
-- certificates to compare: RSA, ECDSA and Ed25519, rich in extensions

local function u16(n) return string.char(floor(n / 256) % 256, n % 256) end
local function u64(n)
	local s = ""
	for _ = 1, 8 do s = string.char(n % 256) .. s; n = floor(n / 256) end
	return s
end

-- An SCT list extension (RFC 6962) with one v1 SCT, as a log would embed it.
local LOG_ID = string.rep("\171", 16) .. string.rep("\205", 16)
local SCT_MS = 1700000000123
local function sct_extension()
	local sig = "\48\6\2\1\1\2\1\1"
	local sct = "\0" .. LOG_ID .. u64(SCT_MS) .. u16(0) .. "\4\3" .. u16(#sig) .. sig
	local list = u16(#sct + 2) .. u16(#sct) .. sct
	return { oid = "1.3.6.1.4.1.11129.2.4.2", value = "\4" .. string.char(#list) .. list }
end

local rsa_ca_key = assert(x509.generate_key { type = "rsa", bits = 2048 })
local rsa_ca = assert(x509.issue {
	key = rsa_ca_key, subject = "CN=luatls RSA CA,O=luatls test,C=DE", ca = true, path_len = 2, days = 30,
})
local ed_key = assert(x509.generate_key { type = "ed25519" })
local ed = assert(x509.issue {
	key = ed_key, subject = "CN=ed.example.test,OU=unit,O=luatls test", issuer = rsa_ca, issuer_key = rsa_ca_key,
	sans = { "ed.example.test", "10.1.2.3", "::1", "me@example.test", "https://example.test/x" },
	extended_key_usage = { "server_auth", "client_auth", "1.2.3.4.5" },
	crl_distribution_points = { "http://crl.example.test/ca.crl" },
	ocsp = { "http://ocsp.example.test" }, ca_issuers = { "http://ca.example.test/ca.cer" },
	extensions = { sct_extension() }, days = 90,
})

local samples = {
	{ name = "ECDSA (made here)", cert = made.server.cert, alg = "ECDSA", curve = "P-256" },
	{ name = "RSA (made here)", cert = made["server-rsa"].cert, alg = "RSA" },
	{ name = "Ed25519 (made here)", cert = ed, alg = "Ed25519" },
	{ name = "RSA CA (made here)", cert = rsa_ca, alg = "RSA" },
	{ name = "ECDSA (certtool)", cert = assert(x509.load(H.readfile(SH .. "server.pem"))), alg = "ECDSA", curve = "P-256" },
	{ name = "RSA (certtool)", cert = assert(x509.load(H.readfile(SH .. "server-rsa.pem"))), alg = "RSA" },
	{ name = "intermediate CA (certtool)", cert = assert(x509.load(H.readfile(SH .. "int.pem"))), alg = "ECDSA", curve = "P-256" },
}

local CERTTOOL_PK = { ["EC/ECDSA"] = "ECDSA", RSA = "RSA", ["EdDSA (Ed25519)"] = "Ed25519" }
local CERTTOOL_CURVE = { SECP256R1 = "P-256", SECP384R1 = "P-384" }
local CERTTOOL_USAGE = {
	["Digital signature."] = "digital_signature", ["Key encipherment."] = "key_encipherment",
	["Certificate signing."] = "key_cert_sign", ["CRL signing."] = "crl_sign",
	["Non repudiation."] = "non_repudiation", ["Key agreement."] = "key_agreement",
	["Data encipherment."] = "data_encipherment",
}
local CERTTOOL_PURPOSE = { ["TLS WWW Server."] = "1.3.6.1.5.5.7.3.1", ["TLS WWW Client."] = "1.3.6.1.5.5.7.3.2" }

-- The lines of certtool's section that starts with header, up to the next
-- line indented no deeper than the header.
local function section(text, header)
	local out, depth = {}, nil
	for line in (text .. "\n"):gmatch("([^\n]*)\n") do
		local indent, rest = line:match("^(\t*)(.*)$")
		if depth then
			if #indent <= depth then break end
			out[#out + 1] = rest
		elseif rest:find(header, 1, true) == 1 then
			depth = #indent
		end
	end
	return out
end

local function sorted(t)
	local c = {}
	for i, v in ipairs(t) do c[i] = v end
	table.sort(c)
	return c
end

describe("Certificate fields", function()
	for _, s in ipairs(samples) do
		describe("of an " .. s.name .. " certificate", function()
			local c = s.cert
			local path = save(c:pem())
			local info = sh("certtool -i --infile '" .. path .. "'")
			local ossl = sh("openssl x509 -noout -text -in '" .. path .. "'")

			it("match certtool -i: version, serial, names, validity", function()
				assert.equal(tonumber(info:match("Version: (%d+)")), c:version())
				assert.equal(info:match("Serial Number %(hex%): (%x+)"), c:serial())
				assert.equal(info:match("\n\tSubject: ([^\n]*)"), c:subject())
				assert.equal(info:match("\n\tIssuer: ([^\n]*)"), c:issuer())
				assert.equal(info:match("Not Before: ([^\n]*)"), os.date("!%a %b %d %H:%M:%S UTC %Y", c:not_before()))
				assert.equal(info:match("Not After: ([^\n]*)"), os.date("!%a %b %d %H:%M:%S UTC %Y", c:not_after()))
			end)

			it("match certtool -i and openssl: key algorithm, bits and curve", function()
				local k = c:public_key()
				assert.equal(s.alg, k.algorithm)
				assert.equal(s.alg, CERTTOOL_PK[info:match("Subject Public Key Algorithm: ([^\n]*)")])
				assert.equal(s.curve, k.curve)
				if s.curve then assert.equal(s.curve, CERTTOOL_CURVE[info:match("Curve:%s*(%S+)")]) end
				if s.alg ~= "Ed25519" then
					assert.equal(tonumber(ossl:match("Public%-Key: %((%d+) bit%)")), k.bits)
				else
					assert.matches("ED25519 Public-Key", ossl, 1, true)
				end
			end)

			it("match certtool -i: signature algorithm, key ids, fingerprints and pin", function()
				local name, oid, hash = c:signature_algorithm()
				assert.equal(info:match("\n\tSignature Algorithm: ([^\n]*)"), name)
				assert.matches("^[%d%.]+$", oid)
				assert.equal("SHA256", hash)
				assert.equal(info:match("Subject Key Identifier[^\n]*\n%s*(%x+)"), c:subject_key_id())
				assert.equal(tostring(info:match("Authority Key Identifier[^\n]*\n%s*(%x+)")), tostring((c:authority_key_id())))
				local fp = section(info, "Fingerprint:")
				assert.equal(fp[1]:match("sha1:(%x+)"), c:fingerprint("sha1"))
				assert.equal(fp[2]:match("sha256:(%x+)"), c:fingerprint("sha256"))
				assert.equal("sha256/" .. info:match("pin%-sha256:(%S+)"), c:spki_pin())
			end)

			it("match certtool -i: basic constraints, key usage and extended key usage", function()
				local bc = c:basic_constraints()
				assert.equal(info:match("Certificate Authority %(CA%): (%u+)"), bc.ca and "TRUE" or "FALSE")
				assert.equal(tonumber(info:match("Path Length Constraint: (%d+)")), bc.path_len)
				assert.equal(c:is_ca(), bc.ca)
				local want = {}
				for _, l in ipairs(section(info, "Key Usage")) do want[#want + 1] = CERTTOOL_USAGE[l] or l end
				local ku, critical = c:key_usage()
				assert.same(sorted(want), sorted(ku))
				assert.equal(info:find("Key Usage (critical)", 1, true) ~= nil, critical)
				local purposes = {}
				for _, l in ipairs(section(info, "Key Purpose")) do purposes[#purposes + 1] = CERTTOOL_PURPOSE[l] or l end
				local got = {}
				for _, e in ipairs(c:extended_key_usage() or {}) do got[#got + 1] = e.oid end
				assert.same(purposes, got)
			end)

			it("match certtool -i and openssl: subject alternative names", function()
				local want = { dns = {}, ip = {}, email = {}, uri = {} }
				local keys = { DNSname = "dns", IPAddress = "ip", RFC822Name = "email", URI = "uri" }
				for _, l in ipairs(section(info, "Subject Alternative Name")) do
					local k, v = l:match("^(%w+): (.*)$")
					table.insert(want[keys[k]], v)
				end
				assert.same(want, c:sans())
				local line = ossl:match("Subject Alternative Name: *\n%s*([^\n]*)") or ""
				local n = 0
				for _ in line:gmatch("[^,]+") do n = n + 1 end
				assert.equal(n, #want.dns + #want.ip + #want.email + #want.uri)
			end)

			it("match openssl x509: serial, names, fingerprints and dates", function()
				local o = sh("openssl x509 -noout -serial -subject -issuer -nameopt RFC2253 -in '" .. path .. "'")
				-- openssl prints the integer, certtool and serial() the DER bytes (a
				-- leading 00 keeps a high first bit positive)
				assert.equal(o:match("serial=(%x+)"):lower(), (c:serial():gsub("^00(%x%x)", "%1")))
				assert.equal(o:match("subject=([^\n]*)"), c:subject())
				assert.equal(o:match("issuer=([^\n]*)"), c:issuer())
				for _, alg in ipairs { "sha1", "sha256", "sha512" } do
					local f = sh("openssl x509 -noout -fingerprint -" .. alg .. " -in '" .. path .. "'")
					assert.equal(f:match("=([%x:]+)"):gsub(":", ""):lower(), c:fingerprint(alg))
				end
				local d = sh("openssl x509 -noout -startdate -enddate -dateopt iso_8601 -in '" .. path .. "'")
				assert.equal(d:match("notBefore=([^\n]*)"), os.date("!%Y-%m-%d %H:%M:%SZ", c:not_before()))
				assert.equal(d:match("notAfter=([^\n]*)"), os.date("!%Y-%m-%d %H:%M:%SZ", c:not_after()))
			end)

			it("give the subject's attributes with their OIDs, as openssl -nameopt oid does", function()
				local o = sh("openssl x509 -noout -subject -nameopt oid,sep_comma_plus -in '" .. path .. "'")
				local want = {}
				for oid, value in o:match("subject=([^\n]*)"):gmatch("([%d%.]+)=([^,]*)") do
					want[#want + 1] = { oid = oid, value = value }
				end
				local got = {}
				for i, f in ipairs(c:subject_fields()) do got[i] = { oid = f.oid, value = f.value } end
				assert.same(want, got)
				local names = {}
				for i = #c:subject_fields(), 1, -1 do
					local f = c:subject_fields()[i]
					names[#names + 1] = f.name .. "=" .. f.value
				end
				assert.equal(c:subject(), table.concat(names, ","))
			end)

			it("give a pin equal to the openssl pipeline's", function()
				local pin = sh("openssl x509 -pubkey -noout -in '" .. path .. "' | openssl pkey -pubin -outform der" ..
					" | openssl dgst -sha256 -binary | base64"):gsub("%s+$", "")
				assert.equal("sha256/" .. pin, c:spki_pin())
				assert.equal(c:spki_pin(), c:public_key().pin)
			end)

			it("agree with openssl -checkend for expires_within", function()
				for _, secs in ipairs { 0, 3600, 31 * DAY, 400 * DAY, 4000 * DAY } do
					local ok = H.sh("openssl x509 -noout -checkend " .. secs .. " -in '" .. path .. "' >/dev/null")
					assert.equal(not ok, c:expires_within(secs), "checkend " .. secs)
				end
			end)
		end)
	end

	it("read CRL distribution points, OCSP and CA issuer URLs as certtool shows them", function()
		local info = sh("certtool -i --infile '" .. save(ed:pem()) .. "'")
		assert.same({ info:match("CRL Distribution points[^\n]*\n%s*URI: ([^\n]*)") }, ed:crl_distribution_points())
		local aia = ed:authority_info_access()
		local urls = {}
		for u in info:gmatch("Access Location URI: ([^\n]*)") do urls[#urls + 1] = u end
		assert.same({ "http://ocsp.example.test" }, aia.ocsp)
		assert.same({ "http://ca.example.test/ca.cer" }, aia.ca_issuers)
		assert.same(urls, { aia.ocsp[1], aia.ca_issuers[1] })
		assert.is_nil(made.server.cert:authority_info_access())
		assert.same({}, made.server.cert:crl_distribution_points())
	end)

	it("read embedded SCTs: log id and timestamp, as openssl and certtool show them", function()
		local path = save(ed:pem())
		local scts = ed:scts()
		assert.equal(1, #scts)
		local ossl = sh("openssl x509 -noout -text -in '" .. path .. "'")
		local logid = ossl:match("Log ID%s*:%s*([%x:%s]-)\n%s*Timestamp"):gsub("[:%s]", ""):lower()
		assert.equal(logid, scts[1].log_id)
		assert.matches("v1 (0x0)", ossl, 1, true)
		assert.equal(1, scts[1].version)
		assert.equal(floor(SCT_MS / 1000), scts[1].timestamp)
		assert.equal("ECDSA-SHA256", scts[1].signature_algorithm)
		local info = sh("certtool -i --infile '" .. path .. "'")
		assert.equal(info:match("Log ID: (%x+)"), scts[1].log_id)
		assert.same({}, made.server.cert:scts())
	end)

	it("list every extension with its OID, criticality and DER value", function()
		local exts = ed:extensions()
		local by = {}
		for _, e in ipairs(exts) do by[e.oid] = e end
		assert.is_true(by["2.5.29.19"].critical)
		assert.is_false(by["2.5.29.17"].critical)
		assert.equal(sct_extension().value, by["1.3.6.1.4.1.11129.2.4.2"].value)
	end)

	it("name extended key usages, keeping unknown OIDs", function()
		local eku = ed:extended_key_usage()
		assert.same({ oid = "1.3.6.1.5.5.7.3.1", name = "server_auth" }, eku[1])
		assert.same({ oid = "1.3.6.1.5.5.7.3.2", name = "client_auth" }, eku[2])
		assert.same({ oid = "1.2.3.4.5" }, eku[3])
	end)

	it("count days left, and tell whether a time is within the validity", function()
		local c = made.server.cert
		assert.equal(floor((c:not_after() - now) / DAY), c:days_left(now))
		assert.equal(-floor((now - made.expired.cert:not_after()) / DAY) - 1, made.expired.cert:days_left(now))
		assert.is_true(c:valid_at(now + 10))
		assert.is_false(c:valid_at(c:not_after() + 1))
		assert.is_false(c:valid_at(c:not_before() - 1))
		assert.is_true(c:valid_at())
		assert.is_false(made.expired.cert:valid_at())
		assert.is_true(made.expired.cert:valid_at(pki.utc(2020, 6, 1)))
	end)

	it("check host names with the wildcard rules: one label only", function()
		local k = assert(x509.generate_key())
		local c = assert(x509.issue { key = k, subject = "CN=wild", sans = { "*.example.test", "192.0.2.7" } })
		assert.is_true(c:check_hostname("a.example.test"))
		assert.is_false(c:check_hostname("a.b.example.test"))
		assert.is_false(c:check_hostname("example.test"))
		assert.is_true(c:check_hostname("192.0.2.7"))
		assert.is_false(c:check_hostname("192.0.2.8"))
	end)

	it("has a one-line __tostring with subject, issuer, key and validity", function()
		local s = tostring(made.server.cert)
		assert.matches("^luatls%.Certificate: CN=localhost,O=luatls test %(issuer CN=luatls test intermediate CA", s)
		assert.matches("ECDSA P-256", s, 1, true)
		assert.matches(os.date("!%Y-%m-%d", made.server.cert:not_after()), s, 1, true)
		assert.matches("RSA 2048", tostring(made["server-rsa"].cert), 1, true)
		assert.not_matches("\n", s)
	end)

	it("compares equal on the DER, not the object", function()
		local a, b = cert("server"), cert("server")
		assert.is_true(a == b)
		assert.is_false(a == cert("client"))
		assert.is_true(a == x509.load(a:der()))
	end)

	it("tells issuers and signatures apart", function()
		assert.is_true(made.int.cert:issued(made.server.cert))
		assert.is_true(made.server.cert:signed_by(made.int.cert))
		assert.is_false(made.server.cert:signed_by(made.ca.cert))
		assert.is_true(made.ca.cert:self_signed())
		assert.is_false(made.int.cert:self_signed())
	end)

	it("prints the certtool -i report", function()
		assert.matches("X.509 Certificate Information", made.server.cert:text(), 1, true)
	end)

	it("closes idempotently; methods on a closed certificate raise; __close works", function()
		local c = cert("server")
		c:close()
		c:close()
		assert.matches("closed", tostring(c))
		assert.has_error(function() c:subject() end, "certificate is closed")
		assert.is_false(c == cert("server"))
		if _VERSION == "Lua 5.4" then
			local f = assert(load("local x509, pem = ... do local c <close> = x509.load(pem) end return true"))
			assert.is_true(f(x509, file("server.pem")))
		end
		for _ = 1, 50 do cert("server") end
		collectgarbage()
		collectgarbage()
	end)
end)

---------------------------------------------------------------------------

describe("loading", function()
	it("reads PEM and DER, and a chain in the order given", function()
		local pem = file("server.pem")
		local c = assert(x509.load(pem))
		assert.is_true(c == assert(x509.load(c:der())))
		local list = chain("server-chain.pem")
		assert.equal(2, #list)
		assert.equal("CN=localhost,O=luatls test", list[1]:subject())
		local rev = assert(x509.load_chain(made.int.cert:pem() .. made.server.cert:pem()))
		assert.equal("CN=luatls test intermediate CA,O=luatls test", rev[1]:subject())
		local files = assert(x509.load_file(DIR .. "server-chain.pem"))
		assert.equal(2, #files)
	end)

	it("returns nil, message, code for a missing file", function()
		local list, msg, code = x509.load_file(DIR .. "nope.pem")
		assert.is_nil(list)
		assert.matches("nope.pem", msg, 1, true)
		assert.equal("file", code)
	end)

	it("reads private keys: PKCS#8 PEM and DER, encrypted with a password", function()
		local k = assert(x509.load_key(file("server.key")))
		assert.is_true(k:matches(made.server.cert))
		assert.is_false(k:matches(made.client.cert))
		assert.is_true(assert(x509.load_key(k:der())):matches(made.server.cert))
		local enc = assert(k:pem("s3cret"))
		assert.matches("BEGIN ENCRYPTED PRIVATE KEY", enc, 1, true)
		assert.is_true(assert(x509.load_key(enc, "s3cret")):matches(made.server.cert))
		local none, msg, code = x509.load_key(enc, "wrong")
		assert.is_nil(none)
		assert.matches("password", msg, 1, true)
		assert.equal("string", type(code))
		none, msg = x509.load_key(enc)
		assert.is_nil(none)
		assert.matches("password", msg, 1, true)
	end)

	it("reads a PKCS#12 file made by openssl, with its password", function()
		local p12 = tmp .. "server.p12"
		assert.is_true(H.sh("openssl pkcs12 -export -passout pass:pw -in '" .. DIR .. "server-chain.pem' -inkey '" ..
			DIR .. "server.key' -out '" .. p12 .. "' 2>/dev/null"))
		local p = assert(x509.load_pkcs12(H.readfile(p12), "pw"))
		assert.is_true(p.certificate == made.server.cert)
		assert.is_true(p.key:matches(p.certificate))
		assert.equal(2, #p.chain + #p.extra)
		local none, msg, code = x509.load_pkcs12(H.readfile(p12), "bad")
		assert.is_nil(none)
		assert.matches("wrong password", msg, 1, true)
		assert.equal("GNUTLS_E_MAC_VERIFY_FAILED", code)
	end)

	it("reads a PKCS#12 file made by certtool", function()
		local p12 = tmp .. "ct.p12"
		assert.is_true(H.sh("certtool --to-p12 --p12-name=srv --password=pw --load-certificate '" .. DIR ..
			"server.pem' --load-privkey '" .. DIR .. "server.key' --outder --outfile '" .. p12 .. "' >/dev/null 2>&1"))
		local p = assert(x509.load_pkcs12(H.readfile(p12), "pw"))
		assert.is_true(p.key:matches(made.server.cert))
		assert.is_true(p.certificate == made.server.cert)
	end)

	it("reads CRLs", function()
		local crl = assert(x509.issue_crl { issuer = made.int.cert, issuer_key = made.int.key,
			revoked = { made.server.cert } })
		local again = assert(x509.load_crl(crl:pem()))
		assert.equal(made.int.cert:subject(), again:issuer())
		assert.equal(made.server.cert:serial(), again:revoked()[1].serial)
		assert.is_true(assert(x509.load_crl(crl:der())):is_revoked(made.server.cert))
	end)

	local function random_bytes(n)
		local t = {}
		for i = 1, n do t[i] = string.char(math.random(0, 255)) end
		return table.concat(t)
	end

	local der = made.server.cert:der()
	local pem = made.server.cert:pem()
	local garbage = {
		{ "empty input", "" },
		{ "random bytes", random_bytes(3000) },
		{ "a PEM header with garbage", "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n" },
		{ "a PEM block cut in the middle", pem:sub(1, floor(#pem / 2)) },
		{ "DER cut short", der:sub(1, #der - 10) },
		{ "DER with a lying length", der:sub(1, 2) .. "\255\255" .. der:sub(5) },
		{ "DER with a byte flipped in the header", "\49" .. der:sub(2) },
		{ "16 MB of zeros", string.rep("\0", 16 * 1024 * 1024) },
		{ "16 MB of PEM-looking text", "-----BEGIN CERTIFICATE-----\n" .. string.rep("QUFB", 4 * 1024 * 1024) ..
			"\n-----END CERTIFICATE-----\n" },
	}
	for _, g in ipairs(garbage) do
		it("returns nil, message, code for " .. g[1] .. ", in every loader", function()
			for _, fn in ipairs { x509.load, x509.load_chain, x509.load_key, x509.load_crl, x509.load_pkcs12 } do
				local r = pack(fn(g[2]))
				assert.is_nil(r[1])
				assert.equal("string", type(r[2]))
				assert.equal("string", type(r[3]))
			end
			local st = root_store()
			local r = pack(st:verify(g[2]))
			assert.is_nil(r[1])
			assert.equal("string", type(r[3]))
			local ok, msg = x509.store { pem = g[2] }
			assert.is_nil(ok)
			assert.equal("string", type(msg))
		end)
	end

	it("survives every truncation of a DER certificate", function()
		for n = 0, #der - 1, 7 do
			local c, msg, code = x509.load(der:sub(1, n))
			assert.is_nil(c)
			assert.equal("string", type(msg))
			assert.equal("string", type(code))
		end
	end)

	it("raises on misuse, naming the argument", function()
		assert.has_error(function() x509.load(42) end, "bad argument #1 to 'load' (string expected, got number)")
		assert.has_error(function() x509.load_chain() end)
		assert.has_error(function() x509.load_key("x", 5) end)
		assert.has_error(function() x509.store { nope = true } end, "bad argument #1 to 'store' (unknown option 'nope')")
		assert.has_error(function() x509.generate_key { type = "dsa" } end)
		assert.has_error(function() x509.generate_key { type = "rsa", bits = 512 } end)
		assert.has_error(function() x509.issue { subject = "CN=x" } end)
		assert.has_error(function() x509.issue { key = made.ca.key, subject = "CN=x", colour = "red" } end,
			"bad argument #1 to 'issue' (unknown option 'colour')")
		assert.has_error(function() x509.issue { key = made.ca.key, subject = "CN=x", key_usage = { "teleport" } } end)
		assert.has_error(function() x509.issue { key = made.ca.key, subject = "CN=x", sans = { ip = { "300.1.1.1" } } } end)
		assert.has_error(function()
			x509.issue { key = made.ca.key, subject = "CN=x", issuer = made.int.cert, issuer_key = made.ca.key }
		end, "bad argument #1 to 'issue' (option 'issuer_key' is not the key of 'issuer')")
		assert.has_error(function() root_store():verify({ "not a cert" }) end)
		assert.has_error(function() root_store():verify(made.server.cert, { purpose = "toaster" }) end)
		assert.has_error(function() root_store():verify(made.server.cert, { color = 1 }) end)
	end)
end)

---------------------------------------------------------------------------

describe("generation", function()
	local kinds = {
		{ { type = "ecdsa" }, "ECDSA", 256, "P-256" },
		{ { type = "ecdsa", curve = "P-384" }, "ECDSA", 384, "P-384" },
		{ { type = "ed25519" }, "Ed25519" },
		{ { type = "rsa", bits = 2048 }, "RSA", 2048 },
		{ { type = "rsa", bits = 3072 }, "RSA", 3072 },
		{ { type = "rsa", bits = 4096 }, "RSA", 4096 },
	}
	for _, k in ipairs(kinds) do
		it("makes " .. k[2] .. " " .. tostring(k[3] or "") .. " keys, exported as PKCS#8 that openssl reads", function()
			local key = assert(x509.generate_key(k[1]))
			local info = key:public_key()
			assert.equal(k[2], info.algorithm)
			if k[3] then assert.equal(k[3], info.bits) end
			assert.equal(k[4], info.curve)
			local pem = key:pem()
			assert.matches("^%-%-%-%-%-BEGIN PRIVATE KEY%-%-%-%-%-\n", pem)
			local path = save(pem, ".key")
			local text = sh("openssl pkey -in '" .. path .. "' -noout -text")
			if k[2] == "Ed25519" then
				assert.matches("ED25519 Private-Key", text, 1, true)
			else
				assert.matches("(" .. k[3] .. " bit", text, 1, true)
			end
			local pin = sh("openssl pkey -in '" .. path .. "' -pubout -outform der | openssl dgst -sha256 -binary | base64")
			assert.equal("sha256/" .. pin:gsub("%s+$", ""), key:spki_pin())
			assert.matches("BEGIN PUBLIC KEY", key:public_pem(), 1, true)
			assert.matches("^luatls%.PrivateKey: " .. k[2], tostring(key))
		end)
	end

	it("closes keys idempotently; methods on a closed key raise; unclosed keys and stores are collected", function()
		local key = assert(x509.generate_key())
		key:close()
		key:close()
		assert.matches("^luatls%.PrivateKey %(closed%)", tostring(key))
		assert.has_error(function() key:pem() end, "private key is closed")
		assert.has_error(function() x509.issue { key = key, subject = "CN=x" } end, "private key is closed")
		for _ = 1, 20 do
			x509.generate_key()
			x509.store { certificates = { made.ca.cert } }
		end
		collectgarbage()
		collectgarbage()
	end)

	it("makes self-signed and CA-signed certificates that certtool and openssl verify", function()
		local ca_path = save(made.ca.cert:pem())
		local chain_path = save(made.server.cert:pem() .. made.int.cert:pem())
		local out = sh("certtool --verify --load-ca-certificate '" .. ca_path .. "' --infile '" .. chain_path ..
			"' --verify-hostname localhost")
		assert.matches("Chain verification output: Verified", out, 1, true)
		local o = sh("openssl verify -CAfile '" .. ca_path .. "' -untrusted '" .. save(made.int.cert:pem()) .. "' '" ..
			save(made.server.cert:pem()) .. "'")
		assert.matches(": OK", o, 1, true)
		assert.is_true(made.selfsigned.cert:self_signed())
		assert.matches(": OK", sh("openssl verify -CAfile '" .. save(made.selfsigned.cert:pem()) .. "' '" ..
			save(made.selfsigned.cert:pem()) .. "'"), 1, true)
	end)

	it("sets subject, SANs, validity in the past, key usage, EKU and basic constraints", function()
		local key = assert(x509.generate_key())
		local c = assert(x509.issue {
			key = key, subject = "CN=past.example.test,O=luatls test", serial = "0a:0b:0c",
			sans = { dns = { "past.example.test" }, ip = { "192.0.2.1" } },
			not_before = pki.utc(2001, 2, 3), not_after = pki.utc(2002, 2, 3),
			key_usage = { "digital_signature", "key_agreement" }, extended_key_usage = { "client_auth" },
			issuer = made.int.cert, issuer_key = made.int.key,
		})
		assert.equal("CN=past.example.test,O=luatls test", c:subject())
		assert.equal("0a0b0c", c:serial())
		assert.same({ "past.example.test" }, c:sans().dns)
		assert.same({ "192.0.2.1" }, c:sans().ip)
		assert.equal(pki.utc(2001, 2, 3), c:not_before())
		assert.equal(pki.utc(2002, 2, 3), c:not_after())
		assert.same({ "digital_signature", "key_agreement" }, (c:key_usage()))
		assert.equal("client_auth", c:extended_key_usage()[1].name)
		assert.same({ ca = false, critical = true }, c:basic_constraints())
		assert.equal(made.int.cert:subject_key_id(), c:authority_key_id())
		assert.equal(key:spki_pin(), c:spki_pin())
		local ca = assert(x509.issue { key = key, subject = "CN=x", ca = true, path_len = 3 })
		assert.same({ ca = true, path_len = 3, critical = true }, ca:basic_constraints())
		assert.same({ "digital_signature", "key_cert_sign", "crl_sign" }, (ca:key_usage()))
	end)

	it("returns nil, message, code for a subject GnuTLS cannot parse", function()
		local c, msg, code = x509.issue { key = made.ca.key, subject = "NOSUCHATTR=x" }
		assert.is_nil(c)
		assert.matches("subject", msg, 1, true)
		assert.equal("string", type(code))
	end)

	it("makes CRLs that openssl reads", function()
		local crl = assert(x509.issue_crl { issuer = made.int.cert, issuer_key = made.int.key,
			revoked = { made.server.cert, { serial = "abcd", time = pki.utc(2024, 1, 1) } }, number = 7, days = 3 })
		local text = sh("openssl crl -noout -text -in '" .. save(crl:pem()) .. "'")
		assert.matches("Serial Number: " .. made.server.cert:serial():upper(), text, 1, true)
		assert.matches("Serial Number: ABCD", text, 1, true)
		assert.matches("CRL Number: *\n%s*7\n", text)
		assert.equal("07", crl:number())
		assert.equal(crl:this_update() + 3 * DAY, crl:next_update())
		assert.equal(pki.utc(2024, 1, 1), crl:revoked()[2].time)
		assert.is_true(crl:signed_by(made.int.cert))
		assert.is_false(crl:signed_by(made.ca.cert))
		assert.matches("^luatls%.CRL: CN=luatls test intermediate CA,O=luatls test %(2 revoked", tostring(crl))
		crl:close()
		crl:close()
		assert.has_error(function() crl:revoked() end, "CRL is closed")
	end)

	it("builds the spec PKI with the same files as spec/pki.sh", function()
		local want = sh("ls '" .. SH .. "' | grep -v tmpl")
		assert.equal(want, sh("ls '" .. DIR .. "'"))
		local st = assert(x509.store { cafile = DIR .. "ca.pem" })
		assert.is_true((st:verify(chain("server-chain.pem"), { hostname = "localhost" })))
		assert.is_true((st:verify(chain("client-chain.pem"), { purpose = "client" })))
		assert.is_nil((st:verify(chain("expired-chain.pem"), { hostname = "localhost" })))
	end)
end)

---------------------------------------------------------------------------

describe("store:verify", function()
	it("returns true and the result: the path built and the trusted CA", function()
		local st = root_store()
		local ok, result = st:verify(chain("server-chain.pem"), { hostname = "localhost", purpose = "server" })
		assert.is_true(ok)
		assert.is_true(result.valid)
		assert.same({}, result.reasons)
		assert.equal(3, #result.path)
		assert.is_true(result.path[1] == made.server.cert)
		assert.is_true(result.path[2] == made.int.cert)
		assert.is_true(result.trusted == made.ca.cert)
		assert.equal(2, #result.certificates)
		assert.same({}, result.certificates[1].reasons)
		assert.is_true((st:verify(chain("server-chain.pem"), { hostname = "127.0.0.1" })))
		assert.is_true((st:verify(chain("server-chain.pem"), { hostname = "::1" })))
	end)

	it("loads cafile, capath, pem, certificates and the system store", function()
		assert.is_true((assert(x509.store { cafile = DIR .. "ca.pem" }):verify(chain("server-chain.pem"))))
		assert.is_true((assert(x509.store { pem = file("ca.pem") }):verify(chain("server-chain.pem"))))
		local capath = H.tmpdir()
		H.writefile(capath .. "/ca.pem", file("ca.pem"))
		local st = assert(x509.store { capath = capath })
		assert.equal(1, st:info().cas)
		assert.is_true((st:verify(chain("server-chain.pem"))))
		local sys, msg = x509.store { system = true }
		assert.is_true(sys ~= nil or type(msg) == "string")
		local none, err, code = x509.store { cafile = DIR .. "missing.pem" }
		assert.is_nil(none)
		assert.matches("missing.pem", err, 1, true)
		assert.equal("file", code)
		assert.matches("^luatls%.Store: 1 CAs, 0 CRLs", tostring(st))
		st:close()
		st:close()
		assert.has_error(function() st:info() end, "store is closed")
	end)

	local cases = {
		{ "an expired certificate", "expired-chain.pem", { hostname = "localhost" }, "expired", 1,
			{ "certificate 1 of the chain (CN=localhost,O=luatls test) expired on 2021-01-01" } },
		{ "a certificate not yet valid", "notyet-chain.pem", { hostname = "localhost" }, "not-activated", 1,
			{ "is not valid until", "check this machine's clock" } },
		{ "an unknown issuer", "untrusted-chain.pem", { hostname = "localhost" }, "unknown-ca", 2,
			{ "luatls unrelated root CA", "not a trusted CA", "unknown CA" } },
		{ "a self-signed certificate", "selfsigned.pem", { hostname = "localhost" }, "self-signed", 1,
			{ "self-signed and not trusted" } },
		{ "the wrong host name", "wronghost-chain.pem", { hostname = "localhost" }, "hostname-mismatch", 1,
			{ "is for other.example.test, not for localhost" } },
		{ "the wrong purpose", "client-chain.pem", { purpose = "server" }, "purpose-mismatch", 1,
			{ "not allowed for TLS server authentication", "allows only TLS client authentication" } },
		{ "a missing intermediate", "server.pem", { hostname = "localhost" }, "missing-intermediate", 1,
			{ "issued by CN=luatls test intermediate CA,O=luatls test", "intermediate certificate is missing" } },
	}
	for _, c in ipairs(cases) do
		it("returns nil, message, 'verify', result for " .. c[1], function()
			local list = chain(c[2])
			local ok, msg, code, result = root_store():verify(list, c[3])
			assert.is_nil(ok)
			assert.equal("verify", code)
			assert.matches("^certificate verify failed: ", msg)
			for _, s in ipairs(c[6]) do assert.matches(s, msg, 1, true) end
			assert.is_false(result.valid)
			assert.equal(msg, result.message)
			local p = codes(result.problems)[c[4]]
			assert.is_table(p, c[4])
			assert.equal("error", p.severity)
			assert.equal(c[5], p.index)
		end)
	end

	it("says which certificate each reason concerns", function()
		local _, _, _, result = root_store():verify(chain("expired-chain.pem"), { hostname = "localhost" })
		assert.is_true(has(result.reasons, "expired"))
		assert.is_true(has(result.certificates[1].reasons, "expired"))
		assert.same({}, result.certificates[2].reasons)
		assert.is_true(result.certificates[1].certificate == made.expired.cert)
		local _, _, _, r2 = root_store():verify(chain("wronghost-chain.pem"), { hostname = "localhost" })
		assert.same({ "hostname-mismatch" }, r2.certificates[1].reasons)
	end)

	it("checks at another time", function()
		local st = root_store()
		local later = now + 2 * 365 * DAY
		local ok, msg, _, result = st:verify(chain("server-chain.pem"), { hostname = "localhost", time = later })
		assert.is_nil(ok)
		assert.matches("expired on", msg, 1, true)
		assert.equal(1, codes(result.problems).expired.index)
		local ok2, msg2 = st:verify(chain("server-chain.pem"), { hostname = "localhost", time = now - 3 * DAY })
		assert.is_nil(ok2)
		assert.matches("not valid until", msg2, 1, true)
		assert.is_true((st:verify(chain("expired-chain.pem"), { time = pki.utc(2020, 6, 1), purpose = false })) == nil)
		assert.is_true((st:verify(chain("server-chain.pem"), { hostname = "localhost", time = now + DAY })))
	end)

	it("enforces the wildcard rule: one label only", function()
		local key = assert(x509.generate_key())
		local wild = assert(x509.issue { key = key, subject = "CN=*.example.test", sans = { "*.example.test" },
			issuer = made.int.cert, issuer_key = made.int.key, extended_key_usage = { "server_auth" } })
		local list = { wild, made.int.cert }
		local st = root_store()
		assert.is_true((st:verify(list, { hostname = "www.example.test" })))
		local ok, msg = st:verify(list, { hostname = "a.b.example.test" })
		assert.is_nil(ok)
		assert.matches("is for *.example.test, not for a.b.example.test", msg, 1, true)
		assert.is_nil((st:verify(list, { hostname = "example.test" })))
	end)

	it("returns nil, message, 'verify' for a certificate revoked by a CRL", function()
		local crl = assert(x509.issue_crl { issuer = made.int.cert, issuer_key = made.int.key,
			revoked = { made.server.cert } })
		local st = root_store { crls = { crl } }
		assert.equal(1, st:info().crls)
		local ok, msg, code, result = st:verify(chain("server-chain.pem"), { hostname = "localhost" })
		assert.is_nil(ok)
		assert.equal("verify", code)
		assert.matches("revoked", msg, 1, true)
		assert.is_true(has(result.reasons, "revoked"))
		assert.is_true(has(result.certificates[1].reasons, "revoked"))
		assert.equal(1, codes(result.problems).revoked.index)
		-- other certificates of the same CA still pass; the CRL may also come as PEM
		local st2 = root_store { crls = crl:pem() }
		assert.is_true((st2:verify(chain("wronghost-chain.pem"), { hostname = "other.example.test" })))
		-- certtool agrees
		local out = sh("certtool --verify --load-ca-certificate '" .. DIR .. "ca.pem' --load-crl '" ..
			save(crl:pem()) .. "' --infile '" .. DIR .. "server-chain.pem'")
		assert.matches("revoked", out, 1, true)
	end)

	it("returns nil, message, 'verify' when a CA's path length is exceeded", function()
		-- ca → int (path_len 0) → sub CA → leaf: one CA too many below int
		local subkey = assert(x509.generate_key())
		local sub = assert(x509.issue { key = subkey, subject = "CN=luatls sub CA,O=luatls test", ca = true,
			issuer = made.int.cert, issuer_key = made.int.key })
		local leafkey = assert(x509.generate_key())
		local leaf = assert(x509.issue { key = leafkey, subject = "CN=localhost", sans = { "localhost" },
			issuer = sub, issuer_key = subkey })
		local ok, msg, code, result = root_store():verify({ leaf, sub, made.int.cert }, { hostname = "localhost" })
		assert.is_nil(ok)
		assert.equal("verify", code)
		assert.is_true(has(result.reasons, "signer-constraints-failure"))
		assert.matches("path length constraint 0", msg, 1, true)
		assert.equal(3, codes(result.problems)["path-length-exceeded"].index)
	end)

	it("accepts an out-of-order chain with a warning, and names the order", function()
		-- ca → int2 (path_len 1) → int3 → leaf, sent as leaf, int2, int3
		local k2 = assert(x509.generate_key())
		local int2 = assert(x509.issue { key = k2, subject = "CN=luatls int2,O=luatls test", ca = true, path_len = 1,
			issuer = made.ca.cert, issuer_key = made.ca.key })
		local k3 = assert(x509.generate_key())
		local int3 = assert(x509.issue { key = k3, subject = "CN=luatls int3,O=luatls test", ca = true,
			issuer = int2, issuer_key = k2 })
		local lk = assert(x509.generate_key())
		local leaf = assert(x509.issue { key = lk, subject = "CN=localhost", sans = { "localhost" },
			issuer = int3, issuer_key = k3 })
		local ok, result = root_store():verify({ leaf, int2, int3 }, { hostname = "localhost" })
		assert.is_true(ok)
		local p = codes(result.problems)["out-of-order"]
		assert.equal("warning", p.severity)
		assert.matches("out of order", p.message, 1, true)
		assert.matches("1, 3, 2", p.message, 1, true)
		local ok2, r2 = root_store():verify({ leaf, int3, int2 }, { hostname = "localhost" })
		assert.is_true(ok2)
		assert.is_nil(codes(r2.problems)["out-of-order"])
	end)

	it("returns nil, message, 'verify' for a chain that does not start with its leaf", function()
		local ok, msg, code, result = root_store():verify({ made.int.cert, made.server.cert }, { hostname = "localhost" })
		assert.is_nil(ok)
		assert.equal("verify", code)
		assert.matches("does not start with its leaf", msg, 1, true)
		assert.equal(2, codes(result.problems)["leaf-not-first"].index)
	end)

	it("gives the same answer and message as a handshake on the same chain", function()
		local tls = H.tls
		local function handshake(chain_file, key_file)
			local server = assert(tls.session { role = "server", certificate = DIR .. chain_file, key = DIR .. key_file })
			local client = assert(tls.session { role = "client", cafile = DIR .. "ca.pem", server_name = "localhost" })
			for _ = 1, 20 do
				local c_done, _, c_code = client:handshake()
				server:feed(client:drain())
				local s_done = server:handshake()
				client:feed(server:drain())
				if (c_done and s_done) or (not c_done and c_code ~= "wantread" and c_code ~= "wantwrite") then break end
			end
			return client
		end
		for _, name in ipairs { "expired", "wronghost", "untrusted", "notyet", "server" } do
			local sess = handshake(name .. "-chain.pem", name .. ".key")
			local peer = sess:peer_certificates()
			local result = sess:verify_result()
			local ok, msg, _, sresult = root_store():verify(chain(name .. "-chain.pem"), { hostname = "localhost" })
			assert.same(result.reasons, ok and {} or sresult.reasons, name)
			if not ok then
				assert.equal(msg, x509.verify_message(peer, result, { hostname = "localhost" }), name)
			end
		end
	end)

	it("agrees with certtool --verify on the status", function()
		for _, name in ipairs { "server", "expired", "notyet", "untrusted", "wronghost" } do
			local out = sh("certtool --verify --load-ca-certificate '" .. DIR .. "ca.pem' --verify-hostname localhost" ..
				" --verify-purpose 1.3.6.1.5.5.7.3.1 --infile '" .. DIR .. name .. "-chain.pem'")
			local _, _, _, result = root_store():verify(chain(name .. "-chain.pem"), { hostname = "localhost" })
			local ok, r = root_store():verify(chain(name .. "-chain.pem"), { hostname = "localhost" })
			local text = ok and r.text or result.text
			assert.matches(text:gsub("%s+$", ""), out, 1, true)
		end
	end)
end)

---------------------------------------------------------------------------

describe("chain diagnosis", function()
	it("notes a root sent needlessly, and the certificate that expires first", function()
		local list = { made.server.cert, made.int.cert, made.ca.cert }
		local ok, result = root_store():verify(list, { hostname = "localhost" })
		assert.is_true(ok)
		local c = codes(result.problems)
		assert.equal("info", c["root-sent"].severity)
		assert.equal(3, c["root-sent"].index)
		assert.matches("unnecessary", c["root-sent"].message, 1, true)
		assert.equal(1, c["expires-first"].index)
		assert.matches(os.date("!%Y-%m-%d", made.server.cert:not_after()), c["expires-first"].message, 1, true)
	end)

	it("warns when the chain expires soon", function()
		local k = assert(x509.generate_key())
		local soon = assert(x509.issue { key = k, subject = "CN=localhost", sans = { "localhost" }, days = 5,
			issuer = made.int.cert, issuer_key = made.int.key })
		local problems = x509.diagnose({ soon, made.int.cert })
		local p = codes(problems)["expires-soon"]
		assert.equal("warning", p.severity)
		assert.matches("in [45] days%)$", p.message)
	end)

	it("flags weak signature algorithms (SHA-1) and short keys", function()
		local weak_key = assert(x509.generate_key { type = "rsa", bits = 1024 })
		local weak = assert(x509.issue { key = weak_key, subject = "CN=localhost", sans = { "localhost" },
			issuer = made.int.cert, issuer_key = made.int.key, hash = "sha1" })
		assert.equal("SHA1", select(3, weak:signature_algorithm()))
		local ok, msg, code, result = root_store():verify({ weak, made.int.cert }, { hostname = "localhost" })
		assert.is_nil(ok)
		assert.equal("verify", code)
		assert.is_true(has(result.reasons, "insecure-algorithm"))
		assert.matches("signed with ECDSA-SHA1, which is no longer safe", msg, 1, true)
		local c = codes(result.problems)
		assert.equal("error", c["weak-signature"].severity)
		assert.equal(1, c["weak-signature"].index)
		assert.equal("warning", c["short-key"].severity)
		assert.matches("1024-bit RSA key", c["short-key"].message, 1, true)
		-- a short key alone passes GnuTLS's default profile, with a warning
		local fine = assert(x509.issue { key = weak_key, subject = "CN=localhost", sans = { "localhost" },
			issuer = made.int.cert, issuer_key = made.int.key })
		local ok2, r2 = root_store():verify({ fine, made.int.cert }, { hostname = "localhost" })
		assert.is_true(ok2)
		assert.equal("warning", codes(r2.problems)["short-key"].severity)
	end)

	it("flags duplicates and certificates that do not belong", function()
		local problems = x509.diagnose({ made.server.cert, made.int.cert, made.int.cert, made.client.cert })
		local c = codes(problems)
		assert.equal(3, c.duplicate.index)
		assert.equal(4, c.unneeded.index)
	end)

	it("works without a verification result: expiry and host name from the chain alone", function()
		local problems = x509.diagnose(chain("expired-chain.pem"), nil, { hostname = "example.org" })
		local c = codes(problems)
		assert.equal("error", c.expired.severity)
		assert.equal("error", c["hostname-mismatch"].severity)
		assert.equal("no-certificate", x509.diagnose({})[1].code)
	end)

	it("returns nil, message, 'verify' for an empty chain", function()
		local ok, msg, code = root_store():verify({})
		assert.is_nil(ok)
		assert.equal("verify", code)
		assert.matches("no certificate", msg, 1, true)
	end)
end)
