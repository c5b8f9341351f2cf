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
	[49] = { "alert", "%s refused the connection (alert access_denied): its policy does not accept this peer (its identity or a custom check)" },
	[70] = { "version", "%s refused our TLS version (alert protocol_version): there is no TLS version both sides accept; the library's default minimum is TLS 1.2" },
	[71] = { "cipher", "%s refused the handshake (alert insufficient_security): it requires stronger security (cipher suite, group or key size) than was offered" },
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
	if code == "policy" then return message, code end -- already in words
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

-- What a failure means and what to do about it, by topic: explain() finds
-- the topic of a code, an alert or a message.
local topics = {
	unknown_ca = "The peer's certificate chain does not lead to a CA this side trusts (unknown CA). " ..
		"If you trust that CA, pass it as cafile (or capath, or ca); if the chain should lead to a well-known CA, " ..
		"the server probably leaves out its intermediate certificate: its certificate file must hold the leaf " ..
		"followed by the intermediates.",
	missing_intermediate = "The server sends its certificate without the intermediate CA certificate that links it " ..
		"to a trusted root. Some browsers fill the gap from their cache; luatls, curl and openssl do not. Fix the " ..
		"server: serve the leaf followed by the intermediate(s) (a full-chain file; openssl s_server: -cert_chain).",
	expired = "A certificate of the chain is past its expiry date, or this machine's clock is wrong. Renew the " ..
		"certificate and install the new one (and its chain) on the server; check the clock with `date -u`.",
	not_yet_valid = "A certificate of the chain is not valid yet: it was issued with a start date in the future, " ..
		"or this machine's clock is behind. Check the clock with `date -u`, or wait until the start date.",
	hostname = "The certificate is valid but made out for other names than the one you connected to. Connect with " ..
		"one of the names the certificate lists, pass the expected name as server_name (or verify_hostname = false " ..
		"with a pin), or get a certificate that includes this name.",
	version = "The two sides have no TLS version in common: usually an old peer that speaks only TLS 1.0 or 1.1 " ..
		"(luatls requires TLS 1.2 by default), or a TLS 1.3-only side meeting a TLS 1.2-only one. Upgrade the " ..
		"old side; to talk to it anyway, lower min_version in the policy (tls.policy{ min_version = \"TLS1.0\" }).",
	cipher = "The two sides have no cipher suite, key-exchange group or signature algorithm in common. Compare " ..
		"policy:describe() with what the peer offers (sslscan or testssl show it); widen ciphers or groups in the " ..
		"policy, or update the peer.",
	not_tls = "The peer answered with something that is not TLS: most often a plain HTTP server (or another " ..
		"protocol) on the port you dialled. Check the port (443, not 80; 8443, not 8080), or use http:// and a " ..
		"plain connection for that port.",
	unknown_ca_alert = "The server refused our client certificate: it does not trust the CA that issued it (alert " ..
		"unknown_ca, 48). Use a client certificate from a CA the server accepts, send its intermediate with it " ..
		"(certificate = a chain file), or ask the server's operator to trust your CA for clients.",
	client_certificate = "The server wants a client certificate and got none it accepts. Pass certificate and key " ..
		"to connect (a chain file if an intermediate issued it).",
	bad_certificate = "The peer rejected our certificate (bad, unsupported, revoked, expired or unverifiable). " ..
		"Check it with x509.store():verify or luatls-check from the peer's point of view, and renew or replace it.",
	pins = "None of the certificates of the peer's chain has a pinned public key. Either the peer changed its key " ..
		"(a renewal with a new key, or another CA) or you are not talking to the peer you expect. Compare the " ..
		"chain's pins in the message with your pins; add the new key's pin, and keep a backup pin for the next renewal.",
	policy = "A rule of the connection's policy refused it: the message names the rule, the values seen and what " ..
		"would satisfy it. Change the peer or the policy; conn:verdicts() and policy:check() show every rule's outcome.",
	timeout = "The peer did not answer in time: it may be down, overloaded, firewalled, or not speaking TLS. " ..
		"Check that it is reachable (a plain TCP connect), and raise timeout or handshake_timeout if it is just slow.",
	closed = "The peer closed the connection, during the handshake often because it refused something without " ..
		"saying why (look at its logs), after it because it was done.",
	refused = "Nothing listens on that address and port (connection refused). Check the port and that the server runs.",
	resolve = "The host name could not be resolved. Check the spelling and DNS, or pass address to dial an IP.",
	file = "A certificate, key or CA file could not be read. Check the path and its permissions.",
}

-- Alerts (number) by topic.
local alert_topics = {
	[40] = "cipher", [42] = "bad_certificate", [43] = "bad_certificate", [44] = "bad_certificate",
	[45] = "bad_certificate", [46] = "bad_certificate", [48] = "unknown_ca_alert", [49] = "policy",
	[70] = "version", [71] = "cipher", [116] = "client_certificate",
}

-- Codes by topic.
local code_topics = {
	verify = "unknown_ca", policy = "policy", version = "version", cipher = "cipher", not_tls = "not_tls",
	timeout = "timeout", closed = "closed", resolve = "resolve", file = "file", ECONNREFUSED = "refused",
	GNUTLS_E_UNSUPPORTED_VERSION_PACKET = "version", GNUTLS_E_NO_CIPHER_SUITES = "cipher",
	GNUTLS_E_INSUFFICIENT_CREDENTIALS = "cipher", GNUTLS_E_NO_COMMON_KEY_SHARE = "cipher",
	GNUTLS_E_UNEXPECTED_PACKET_LENGTH = "not_tls", GNUTLS_E_UNEXPECTED_PACKET = "not_tls",
	GNUTLS_E_CERTIFICATE_REQUIRED = "client_certificate", GNUTLS_E_NO_CERTIFICATE_FOUND = "client_certificate",
	GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR = "unknown_ca", GNUTLS_E_PREMATURE_TERMINATION = "closed",
}

-- Words of messages (lower case, plain), by topic, tried in this order.
local message_topics = {
	{ "unknown_ca_alert", { "unknown_ca" } },
	{ "client_certificate", { "certificate_required", "requires a client certificate", "sent no certificate" } },
	{ "not_tls", { "does not speak tls", "plain http", "wrong version number", "unexpected packet length",
		"packet length", "http/1." } },
	{ "missing_intermediate", { "intermediate certificate is missing", "left out an intermediate",
		"unable to get local issuer", "missing from the chain" } },
	{ "unknown_ca", { "unknown ca", "not a trusted ca", "signer-not-found", "issuer is unknown",
		"self-signed and not trusted", "unable to get issuer" } },
	{ "expired", { "expired" } },
	{ "not_yet_valid", { "not valid until", "not-activated", "not yet valid" } },
	{ "hostname", { ", not for ", "hostname", "host name", "unexpected owner" } },
	{ "version", { "tls version", "protocol_version", "unsupported version" } },
	{ "cipher", { "cipher suite", "handshake_failure", "insufficient_security", "no common", "key-exchange group" } },
	{ "bad_certificate", { "bad_certificate", "unsupported_certificate", "certificate_unknown", "rejected our certificate" } },
	{ "timeout", { "timeout", "timed out" } },
	{ "refused", { "connection refused" } },
}

local policy_rules = {
	pins = "pins", ciphers = "policy", groups = "policy", version = "policy", client_certificate = "policy",
	issuers = "policy", identities = "policy", min_key_bits = "policy", check = "policy", expiry_warning_days = "policy",
}

local function alert_number(name)
	for n = 0, 255 do
		if core.alert_name(n) == name then return n end
	end
end

-- luatls.explain(code_or_message) -> what it means and what to do, topic |
-- nil. Takes an alert number or name ("unknown_ca"), a code ("verify"), a
-- GnuTLS error name, or a whole failure message (from luatls, GnuTLS or
-- OpenSSL).
function M.explain(what)
	local t = type(what)
	if t ~= "number" and t ~= "string" then
		error("bad argument #1 to 'explain' (string or number expected, got " .. t .. ")", 2)
	end
	if t == "number" or what:match("^%d+$") then
		local n = tonumber(what)
		local name, text = core.alert_name(n)
		if not name then return nil end
		local topic = alert_topics[n]
		if topic then return format("Alert %s (%d): %s", name, n, topics[topic]), topic end
		local a = alert_advice[n]
		if a then
			local first = format(a[2], "the peer")
			return first:sub(1, 1):upper() .. first:sub(2) .. "."
		end
		return format("The peer sent the alert %s (%d): %s.", name, n, text)
	end
	local topic = code_topics[what]
	if not topic and what:match("^[%l_]+$") then
		local n = alert_number(what)
		if n then return M.explain(n) end
	end
	if not topic then
		local rule = what:match("^([%l_]+)[%s%d]*:")
		topic = rule and policy_rules[rule]
	end
	if not topic then
		local lw = what:lower()
		for _, mt in ipairs(message_topics) do
			for _, word in ipairs(mt[2]) do
				if not topic and lw:find(word, 1, true) then topic = mt[1] end
			end
		end
	end
	if topic then return topics[topic], topic end
	local advice = code_advice[what]
	if advice then return (format(advice[2], "the peer")) end
	if what:match("^GNUTLS_E_") then return core.strerror(what) end
	return nil
end

return M
