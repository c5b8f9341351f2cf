-- The test PKI of spec/pki.sh, made with luatls's own generation API
-- (luatls.x509) instead of certtool, so nothing in the repository expires.
--
--   local pki = require "pki"; pki.build(dir) -> dir, objects
--   lua spec/pki.lua DIR
--
-- Files, as spec/pki.sh makes them (keys are unencrypted PKCS#8 PEM; ECDSA
-- P-256 unless the name says rsa):
--   ca.{key,pem}              root CA
--   int.{key,pem}             intermediate CA (signed by ca, pathlen 0); int-chain.pem = int + ca
--   server.*                  localhost, 127.0.0.1, ::1; TLS server   (by int)
--   server-rsa.*              the same with an RSA 2048 key           (by int)
--   client.*                  CN=client.example.test; TLS client      (by int)
--   expired.*                 localhost, valid 2020-01-01..2021-01-01 (by int)
--   notyet.*                  localhost, valid from now + 5 years     (by int)
--   wronghost.*               other.example.test only                 (by int)
--   selfsigned.{key,pem}      self-signed localhost leaf
--   other-ca.{key,pem}        an unrelated root CA
--   untrusted.*               localhost leaf signed by other-ca
-- Each leaf NAME has NAME.key, NAME.pem and NAME-chain.pem (leaf + its
-- issuer, except for selfsigned).
local x509 = require "luatls.x509"

local M = {}

local DAY = 86400
local YEAR = 365 * DAY

local function write(path, data)
	local f = assert(io.open(path, "wb"))
	assert(f:write(data))
	f:close()
end

local function utc(y, m, d)
	-- seconds since the epoch of a UTC date, without os.time's local zone
	local days = 0
	for year = 1970, y - 1 do
		days = days + ((year % 4 == 0 and (year % 100 ~= 0 or year % 400 == 0)) and 366 or 365)
	end
	local mdays = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
	if y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) then mdays[2] = 29 end
	for i = 1, m - 1 do days = days + mdays[i] end
	return (days + d - 1) * DAY
end
M.utc = utc

local localhost = { dns = { "localhost" }, ip = { "127.0.0.1", "::1" } }

-- Builds the PKI into dir (which must exist); returns dir and a table of
-- { key = PrivateKey, cert = Certificate } by name.
function M.build(dir)
	dir = dir:gsub("/?$", "/")
	local now = os.time()
	local made = {}

	local function save(name, key, cert, issuer)
		write(dir .. name .. ".key", assert(key:pem()))
		write(dir .. name .. ".pem", assert(cert:pem()))
		if issuer then
			write(dir .. name .. "-chain.pem", cert:pem() .. made[issuer].cert:pem())
		end
		made[name] = { key = key, cert = cert }
	end

	local function ca(name, cn, issuer, path_len)
		local key = assert(x509.generate_key { type = "ecdsa", curve = "P-256" })
		local cert = assert(x509.issue {
			key = key, subject = "CN=" .. cn .. ",O=luatls test",
			not_before = now, days = 3650, ca = true, path_len = path_len,
			key_usage = { "key_cert_sign", "crl_sign" },
			issuer = issuer and made[issuer].cert, issuer_key = issuer and made[issuer].key,
		})
		save(name, key, cert, issuer)
	end

	local function leaf(name, issuer, o)
		local key = assert(o.rsa and x509.generate_key { type = "rsa", bits = 2048 }
			or x509.generate_key { type = "ecdsa", curve = "P-256" })
		local usage = { "digital_signature" }
		if o.rsa then usage[2] = "key_encipherment" end
		local cert = assert(x509.issue {
			key = key, subject = "CN=" .. o.cn .. ",O=luatls test", sans = o.sans,
			not_before = o.not_before or now, not_after = o.not_after or (now + YEAR),
			key_usage = usage, extended_key_usage = { o.purpose or "server_auth" },
			issuer = issuer and made[issuer].cert, issuer_key = issuer and made[issuer].key,
		})
		save(name, key, cert, issuer)
	end

	ca("ca", "luatls test root CA")
	ca("int", "luatls test intermediate CA", "ca", 0)
	ca("other-ca", "luatls unrelated root CA")
	leaf("server", "int", { cn = "localhost", sans = localhost })
	leaf("server-rsa", "int", { cn = "localhost", sans = localhost, rsa = true })
	leaf("untrusted", "other-ca", { cn = "localhost", sans = localhost })
	leaf("selfsigned", nil, { cn = "localhost", sans = localhost })
	leaf("expired", "int", { cn = "localhost", sans = localhost,
		not_before = utc(2020, 1, 1), not_after = utc(2021, 1, 1) })
	leaf("notyet", "int", { cn = "localhost", sans = localhost,
		not_before = now + 5 * YEAR, not_after = now + 6 * YEAR })
	leaf("wronghost", "int", { cn = "other.example.test", sans = { dns = { "other.example.test" } } })
	leaf("client", "int", { cn = "client.example.test", sans = { dns = { "client.example.test" } },
		purpose = "client_auth" })
	return dir, made
end

if arg and type(arg[0]) == "string" and arg[0]:match("pki%.lua$") and ... ~= "pki" then
	local dir = arg[1]
	if not dir then
		io.stderr:write("usage: lua spec/pki.lua DIR\n")
		os.exit(2)
	end
	os.execute("mkdir -p '" .. dir .. "'")
	M.build(dir)
end

return M
