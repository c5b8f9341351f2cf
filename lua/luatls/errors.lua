-- Turns what GnuTLS and the network report into what happened and what to
-- do about it. Every failure the library returns is nil, message, code; the
-- codes made here are few and stable (see docs/errors.md).
local core = require "luatls.core"

local M = {}

local format, concat, date, floor = string.format, table.concat, os.date, math.floor

local function day(t)
	return date("!%Y-%m-%d %H:%M:%S UTC", t)
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

local function peer_label(ctx)
	if ctx.role == "server" then
		return "the client" .. (ctx.peer and (" " .. ctx.peer) or "")
	end
	return ctx.host and ("the server " .. ctx.host .. (ctx.port and (":" .. ctx.port) or ""))
		or "the server"
end

-- Explains a certificate verification failure from the session's facts:
-- which certificate, which check, and what to do.
function M.verify_message(result, chain, ctx)
	local now = os.time()
	local reasons, parts = {}, {}
	for _, r in ipairs(result.reasons or {}) do reasons[r] = true end
	local who = peer_label(ctx)
	local leaf = chain[1]
	if not leaf then
		return format("certificate verify failed: %s sent no certificate", who)
	end
	if reasons["hostname-mismatch"] then
		local names = names_of(leaf)
		parts[#parts + 1] = format(
			"the certificate of %s is for %s, not for %s; connect with one of those names, or pass the expected name as server_name",
			who, #names > 0 and concat(names, ", ") or "no names at all",
			tostring(result.hostname or ctx.host))
	end
	if reasons.expired then
		for i, c in ipairs(chain) do
			if c:not_after() < now then
				parts[#parts + 1] = format(
					"certificate %d of the chain (%s) expired on %s, %d days ago; it must be renewed%s",
					i, c:subject(), day(c:not_after()), floor((now - c:not_after()) / 86400),
					" (or this machine's clock is wrong)")
				break
			end
		end
		if #parts == 0 or not parts[#parts]:find("expired") then
			parts[#parts + 1] = "a certificate in the chain has expired (possibly a trusted CA)"
		end
	end
	if reasons["not-activated"] then
		local found
		for i, c in ipairs(chain) do
			if c:not_before() > now then
				parts[#parts + 1] = format(
					"certificate %d of the chain (%s) is not valid until %s; check this machine's clock, or wait",
					i, c:subject(), day(c:not_before()))
				found = true
				break
			end
		end
		if not found then parts[#parts + 1] = "a certificate in the chain is not yet valid" end
	end
	if reasons["signer-not-found"] then
		local last = chain[#chain]
		if #chain == 1 and leaf:self_signed() then
			parts[#parts + 1] = format(
				"the certificate of %s (%s) is self-signed and not trusted; pass it as cafile to trust it, or pin it",
				who, leaf:subject())
		else
			parts[#parts + 1] = format(
				"the chain ends at a certificate issued by %s, which is not a trusted CA (unknown CA); " ..
				"pass that CA as cafile, or, if the server left out an intermediate certificate, fix the server's chain",
				last:issuer())
		end
	end
	if reasons["signer-not-ca"] then
		parts[#parts + 1] = "a certificate in the chain was signed by a certificate that is not a CA"
	end
	if reasons.revoked then
		parts[#parts + 1] = "a certificate in the chain has been revoked"
	end
	if reasons["insecure-algorithm"] then
		parts[#parts + 1] = "a certificate in the chain is signed with an insecure algorithm (such as SHA-1 or MD5)"
	end
	if reasons["purpose-mismatch"] then
		parts[#parts + 1] = format("the certificate of %s is not allowed for this purpose (%s)", who,
			ctx.role == "server" and "TLS client authentication" or "TLS server authentication")
	end
	if reasons["signature-failure"] then
		parts[#parts + 1] = "a signature in the chain does not verify (a corrupted or forged certificate)"
	end
	if #parts == 0 then
		parts[1] = (result.text or "the certificate is not trusted"):gsub("%.$", "")
	end
	return "certificate verify failed: " .. concat(parts, "; ")
end

-- Alerts a peer sends when it refuses us, and what they usually mean.
local alert_advice = {
	[40] = { "cipher", "%s refused the handshake (alert handshake_failure): most often there is no cipher suite, group or signature algorithm both sides accept" },
	[42] = { "alert", "%s rejected our certificate (alert bad_certificate)" },
	[43] = { "alert", "%s rejected our certificate (alert unsupported_certificate)" },
	[44] = { "alert", "%s says our certificate is revoked (alert certificate_revoked)" },
	[45] = { "alert", "%s says our certificate has expired (alert certificate_expired)" },
	[46] = { "alert", "%s could not verify our certificate (alert certificate_unknown)" },
	[48] = { "alert", "%s does not trust the CA that issued our certificate (alert unknown_ca); use a client certificate from a CA the server accepts" },
	[70] = { "version", "%s refused our TLS version (alert protocol_version): there is no TLS version both sides accept; the library's default minimum is TLS 1.2" },
	[71] = { "cipher", "%s refused the handshake (alert insufficient_security): it requires stronger cipher suites than we offer" },
	[112] = { "alert", "%s does not serve the requested name (alert unrecognized_name); check server_name" },
	[116] = { "alert", "%s requires a client certificate (alert certificate_required); pass certificate and key" },
	[120] = { "alert", "%s accepts none of our ALPN protocols (alert no_application_protocol)" },
}

local code_advice = {
	GNUTLS_E_UNSUPPORTED_VERSION_PACKET = { "version", "there is no TLS version both sides accept: %s offered only versions this side does not allow (TLS 1.2 is the minimum by default)" },
	GNUTLS_E_NO_CIPHER_SUITES = { "cipher", "there is no cipher suite both sides accept: %s offered none that this side allows" },
	GNUTLS_E_INSUFFICIENT_CREDENTIALS = { "cipher", "there is no cipher suite both sides accept: %s offered none usable with this side's certificates" },
	GNUTLS_E_NO_COMMON_KEY_SHARE = { "cipher", "there is no key-exchange group both sides accept with %s" },
	GNUTLS_E_NO_APPLICATION_PROTOCOL = { "alert", "%s offered none of the ALPN protocols this side accepts" },
	GNUTLS_E_UNEXPECTED_PACKET_LENGTH = { "not_tls", "%s does not speak TLS (it answered with something that is not a TLS record, such as plain HTTP): check the port, or use a plain connection" },
	GNUTLS_E_UNEXPECTED_PACKET = { "not_tls", "%s does not speak TLS (it sent something that is not a TLS handshake): check the port" },
	GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET = { "not_tls", "%s sent an unexpected handshake message" },
	GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER = { "GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER", "%s sent an illegal parameter in the handshake" },
	GNUTLS_E_PREMATURE_TERMINATION = { "closed", "%s closed the connection during the handshake" },
	GNUTLS_E_PULL_ERROR = { "closed", "%s closed or reset the connection during the handshake" },
	GNUTLS_E_PUSH_ERROR = { "closed", "%s closed or reset the connection during the handshake" },
	GNUTLS_E_NO_CERTIFICATE_FOUND = { "verify", "%s sent no certificate, but one is required" },
	GNUTLS_E_CERTIFICATE_REQUIRED = { "verify", "%s sent no certificate, but one is required" },
}

-- Classifies a failed handshake: returns message, code.
-- ctx: { role, host, port, peer, session }
function M.handshake(message, code, ctx)
	local who = peer_label(ctx)
	local sess = ctx.session
	if code == "GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR" and sess then
		local chain = sess:peer_certificates()
		return M.verify_message(sess:verify_result(), chain, ctx), "verify"
	end
	if code == "GNUTLS_E_FATAL_ALERT_RECEIVED" then
		if ctx.role == "client" and sess then
			local requested, sent = sess:client_certificate()
			if requested and not sent then
				return format("%s requires a client certificate: it asked for one and refused the " ..
					"handshake without it (alert %s); pass certificate and key",
					who, message:match("alert: ([%w_]+)") or "unknown"), "alert"
			end
		end
		return M.alert(message, ctx, "refused the handshake")
	end
	if code == "GNUTLS_E_UNSUPPORTED_VERSION_PACKET" and sess and ctx.role == "server" then
		local ours, theirs = sess:versions()
		if theirs and #theirs > 0 then
			local older = theirs[1] < ours[#ours]
			return format("there is no TLS version both sides accept: %s offered %s; this side accepts %s%s",
				who, concat(theirs, ", "), concat(ours, ", "),
				older and " (the client is too old: upgrade it, or lower min_version in the policy)"
				or " (the client is too new for this side's max_version)"), "version"
		end
	end
	local advice = code_advice[code]
	if advice then
		return format(advice[2], who), advice[1]
	end
	return format("handshake with %s failed: %s", who, message:gsub("^handshake: ", "")), code
end

-- Explains a fatal alert from the peer ("...: the peer sent a fatal alert:
-- name (n)"): returns message, code.
function M.alert(message, ctx, doing)
	local who = peer_label(ctx)
	local n = tonumber(message:match("%((%d+)%)$"))
	local advice = n and alert_advice[n]
	if advice then return format(advice[2], who), advice[1] end
	local name = message:match("alert: ([%w_]+)") or "unknown"
	return format("%s %s (alert %s)", who, doing or "ended the connection", name), "alert"
end

-- Classifies a failure after the handshake (receive, send): alerts get
-- their advice, the rest passes through.
function M.failure(message, code, ctx)
	if code == "GNUTLS_E_FATAL_ALERT_RECEIVED" then
		return M.alert(message, ctx)
	end
	return message, code
end

-- Explains a GnuTLS error name, an alert number or one of the library's
-- codes in a sentence (also reachable as luatls.explain).
function M.explain(what)
	if type(what) == "number" then
		local a = alert_advice[what]
		if a then return (format(a[2], "the peer")) end
		local name, text = core.alert_name(what)
		return name and ("the peer sent the alert " .. name .. ": " .. text) or nil
	end
	local advice = code_advice[what]
	if advice then return (format(advice[2], "the peer")) end
	local s = core.strerror(what)
	return s
end

return M
