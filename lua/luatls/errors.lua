-- Turns what GnuTLS and the network report into what happened and what to
-- do about it. Every failure the library returns is nil, message, code; the
-- codes made here are few and stable (see docs/errors.md).
local core = require "luatls.core"

local M = {}

local format, concat = string.format, table.concat


local function peer_label(ctx)
	if ctx.role == "server" then
		return "the client" .. (ctx.peer and (" " .. ctx.peer) or "")
	end
	return ctx.host and ("the server " .. ctx.host .. (ctx.port and (":" .. ctx.port) or ""))
		or "the server"
end

-- Explains a certificate verification failure from the session's facts:
-- which certificate, which check, and what to do. The same words as
-- x509 store:verify gives for the same chain.
function M.verify_message(result, chain, ctx)
	local x509 = require "luatls.x509"
	return x509.verify_message(chain, result, {
		who = peer_label(ctx),
		hostname = result.hostname or ctx.host,
		purpose = ctx.role == "server" and "client" or "server",
	})
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

-- Failures after the handshake, in words: code, what happened.
local stream_advice = {
	GNUTLS_E_DECRYPTION_FAILED = { "GNUTLS_E_DECRYPTION_FAILED", "data from %s failed its integrity check (corrupted or altered in transit); the connection cannot go on" },
	GNUTLS_E_UNEXPECTED_PACKET_LENGTH = { "GNUTLS_E_UNEXPECTED_PACKET_LENGTH", "%s sent a malformed TLS record; the connection cannot go on" },
	GNUTLS_E_UNEXPECTED_PACKET = { "GNUTLS_E_UNEXPECTED_PACKET", "%s sent a TLS message that has no place here; the connection cannot go on" },
	GNUTLS_E_RECORD_OVERFLOW = { "GNUTLS_E_RECORD_OVERFLOW", "%s sent a TLS record larger than allowed; the connection cannot go on" },
	GNUTLS_E_PULL_ERROR = { "closed", "%s reset the connection" },
	GNUTLS_E_PUSH_ERROR = { "closed", "%s reset the connection" },
}

-- Classifies a failure after the handshake (receive, send): alerts get
-- their advice, known GnuTLS errors a sentence; the rest passes through.
function M.failure(message, code, ctx)
	if code == "GNUTLS_E_FATAL_ALERT_RECEIVED" then
		return M.alert(message, ctx)
	end
	local advice = stream_advice[code]
	if advice then
		local doing = message:match("^(%a+):") or "receive"
		return doing .. ": " .. format(advice[2], peer_label(ctx)), advice[1]
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
