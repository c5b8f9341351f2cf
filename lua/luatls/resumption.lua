-- Session resumption and TLS 1.3 0-RTT for the front door (init.lua):
--   clients: the session cache of the loop, session data in and out, early
--            data sent in the first flight and resent when refused;
--   servers: ticket key and lifetime, the session-ID and anti-replay
--            stores, and the early-data decision of the policy.
-- See docs/resumption.md.
local core = require "luatls.core"
local cache = require "luatls.cache"
local errors = require "luatls.errors"

local type, error, tostring, concat, ipairs, setmetatable =
	type, error, tostring, table.concat, ipairs, setmetatable

local M = {}

local CLIENT_CACHE_SIZE = 1000
local SERVER_CACHE_SIZE = 10000
local ANTI_REPLAY_SIZE = 100000
local SESSION_TTL = 7200 -- when session data does not say

-- Checks the resumption options of connect: session, session_cache,
-- early_data, early_data_resend.
function M.check_connect(opts, pol, level)
	local function bad(msg) error("bad argument #1 to 'connect' (" .. msg .. ")", level + 1) end
	if opts.session ~= nil and type(opts.session) ~= "string" then
		bad("option 'session' must be session data (a string from conn:session_data())")
	end
	if opts.early_data ~= nil and type(opts.early_data) ~= "string" then
		bad("option 'early_data' must be a string")
	end
	if opts.early_data_resend ~= nil and type(opts.early_data_resend) ~= "boolean" then
		bad("option 'early_data_resend' must be a boolean")
	end
	if opts.session_cache ~= nil and opts.session_cache ~= false then
		cache.check(opts.session_cache, "session_cache", { "get", "set", "delete" }, level + 1)
	end
	if opts.session and not pol.resumption then
		bad("option 'session' conflicts with the policy's resumption = false")
	end
end

-- The client session cache of a scheduler: set with store (a store, or
-- false for none), made on first use.
function M.client_cache(sched, store)
	if store ~= nil then
		if store ~= false then cache.check(store, "session_cache", { "get", "set", "delete" }, 3) end
		sched.session_cache = store
	elseif sched.session_cache == nil then
		sched.session_cache = cache.new { size = CLIENT_CACHE_SIZE }
	end
	return sched.session_cache
end

-- What a cached session may be reused for: the same server (host, port,
-- server name), with the same trust and identity settings, so a session
-- verified under one configuration never stands in for another.
local TRUST_KEYS = { "cafile", "capath", "ca", "crl", "certificate", "key" }
local function client_key(opts, pol, server_name, verify, hostname)
	local parts = { opts.host, tostring(opts.port), tostring(server_name), tostring(verify),
		tostring(hostname), pol:priority() }
	for _, k in ipairs(TRUST_KEYS) do parts[#parts + 1] = k .. "=" .. tostring(opts[k]) end
	for _, p in ipairs(opts.alpn or {}) do parts[#parts + 1] = "alpn=" .. tostring(p) end
	return concat(parts, "\0")
end

local Client = {}
Client.__index = Client

-- Prepares resumption for one connect: returns a Client whose options()
-- add to core.session's and whose established() runs after the handshake.
function M.client(sched, opts, pol, server_name, verify, hostname)
	local self = setmetatable({ early = opts.early_data, resend = opts.early_data_resend ~= false,
		verify = verify }, Client)
	if not pol.resumption then
		self.off = true
		return self
	end
	local store = opts.session_cache
	if store == nil then store = M.client_cache(sched) end
	if store then
		self.store = store
		self.key = client_key(opts, pol, server_name, verify, hostname)
	end
	self.data = opts.session
	if self.data == nil and store then
		-- taken, not just read: a TLS 1.3 ticket is for one connection
		-- (RFC 8446 C.4; OpenSSL servers refuse a second use); the
		-- connection stores what resumes it next
		self.data = store:get(self.key)
		if self.data then store:delete(self.key) end
	end
	return self
end

function Client:options(o)
	if self.off then
		o.resumption = false
	else
		o.session = self.data
		o.early_data = self.early
	end
	return o
end

-- Keeps session data in the store for as long as it is valid.
local function remember(self, data)
	local expires = core.session_times(data)
	local ttl = expires and (expires - os.time()) or SESSION_TTL
	if ttl > 0 then self.store:set(self.key, data, ttl) end
end

-- After the handshake: early data refused is sent again (unless told
-- not to); session data is cached now (TLS 1.2), or when a ticket
-- arrives (TLS 1.3: stream calls after_recv on each read).
function Client:established(conn)
	local sess = conn.sess
	if self.verify and sess:hello_info().resumed then
		-- GnuTLS does not verify a resumed session: its peer's chain,
		-- restored from the session data, is checked again here
		local info = sess:info()
		if not info.verified then
			return nil, "the resumed session's server certificate does not verify (" ..
				concat(info.verify_reasons or {}, ", ") .. "): session data from an " ..
				"unverified connection cannot be resumed with verify on", "verify"
		end
	end
	if self.early and self.resend then
		local status = sess:early_status()
		if status ~= "accepted" then
			local ok, err, code = conn:send(self.early)
			if not ok then return nil, err, code end
		end
	end
	if self.store then
		local data = sess:session_data()
		if data then
			remember(self, data)
		else
			local client = self
			conn.after_recv = function(c)
				local d = c.sess:session_data()
				if d then
					remember(client, d)
					c.after_recv = nil
				end
			end
		end
	end
	return true
end

-- Servers -------------------------------------------------------------------

-- Reads a ticket key: a file or the key itself, as 64 raw bytes or their
-- base64 (what luatls.new_ticket_key() returns). -> bytes | nil, msg, code
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function unbase64(s)
	s = s:gsub("%s", "")
	if #s % 4 ~= 0 or s:find("[^%w%+/=]") then return nil end
	local out = {}
	for i = 1, #s, 4 do
		local n, pad = 0, 0
		for j = i, i + 3 do
			local c = s:sub(j, j)
			local v = B64:find(c, 1, true)
			if c == "=" then pad = pad + 1 v = 1 end
			if not v then return nil end
			n = n * 64 + (v - 1)
		end
		local b = string.char(math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
		out[#out + 1] = b:sub(1, 3 - pad)
	end
	return concat(out)
end

local function base64(s)
	local out = {}
	for i = 1, #s, 3 do
		local a, b, c = s:byte(i, i + 2)
		local n = a * 65536 + (b or 0) * 256 + (c or 0)
		for j = 3, 0, -1 do
			local v = math.floor(n / 64 ^ j) % 64
			out[#out + 1] = B64:sub(v + 1, v + 1)
		end
		if not b then out[#out - 1], out[#out] = "=", "=" elseif not c then out[#out] = "=" end
	end
	return concat(out)
end

-- luatls.new_ticket_key() -> a fresh key, base64 (write it to a file that
-- only the servers can read)
function M.new_ticket_key()
	return base64(assert(core.new_ticket_key())) .. "\n"
end

function M.read_ticket_key(value)
	local data = value
	if #value ~= 64 and not unbase64(value) then
		local f, err = io.open(value, "rb")
		if not f then return nil, "cannot read ticket_key file: " .. err, "file" end
		data = f:read("*a")
		f:close()
	end
	if #data ~= 64 then
		local decoded = unbase64(data)
		if decoded then data = decoded end
	end
	if #data ~= 64 then
		return nil, "ticket_key: a ticket key is 64 bytes (or their base64); this one is " ..
			#data .. " bytes (make one with luatls.new_ticket_key())", "ticket_key"
	end
	return data
end

-- Sets the context's ticket key from the option: true | nil, msg, code
function M.ticket_key(ctx, value)
	local key, err, code = M.read_ticket_key(value)
	if not key then return nil, err, code end
	return ctx:ticket_key(key)
end

-- Checks the resumption options of listen: ticket_key, ticket_lifetime,
-- session_cache, anti_replay.
function M.check_listen(opts, level)
	local function bad(msg) error("bad argument #1 to 'listen' (" .. msg .. ")", level + 1) end
	if opts.ticket_key ~= nil and type(opts.ticket_key) ~= "string" then
		bad("option 'ticket_key' must be a file name or a key")
	end
	local lt = opts.ticket_lifetime
	if lt ~= nil and (type(lt) ~= "number" or lt < 1 or lt % 1 ~= 0) then
		bad("option 'ticket_lifetime' must be a whole number of seconds")
	end
	if opts.session_cache ~= nil and opts.session_cache ~= false then
		cache.check(opts.session_cache, "session_cache", { "get", "set", "delete" }, level + 1)
	end
	if opts.anti_replay ~= nil then
		cache.check(opts.anti_replay, "anti_replay", { "add" }, level + 1)
	end
end

-- The default stores of a server context, shared by the connections of
-- every server (and in-memory session) made with it.
local defaults = setmetatable({}, { __mode = "k" })

-- The core.session options of a server connection (o: the others).
function M.server_options(ctx, opts, pol, o)
	if not pol.resumption then
		o.resumption = false
		return o
	end
	local d = defaults[ctx]
	if not d then
		d = {}
		defaults[ctx] = d
	end
	o.ticket_lifetime = opts.ticket_lifetime
	if opts.session_cache ~= nil then
		o.session_cache = opts.session_cache or nil
	else
		d.session_cache = d.session_cache or cache.new { size = SERVER_CACHE_SIZE }
		o.session_cache = d.session_cache
	end
	local ed = pol.early_data
	if type(ed) == "table" then
		if opts.anti_replay then
			o.anti_replay = opts.anti_replay
		else
			d.anti_replay = d.anti_replay or cache.new { size = ANTI_REPLAY_SIZE, full = "refuse" }
			o.anti_replay = d.anti_replay
		end
		o.early_data = ed.max_size
		o.replay_window = ed.replay_window
	end
	return o
end

-- The core.session options of luatls.session{ ... } (in-memory).
function M.session_options(ctx, opts, pol, o)
	if opts.role == "server" then
		M.check_listen(opts, 3)
		return M.server_options(ctx, opts, pol, o)
	end
	M.check_connect(opts, pol, 3)
	if not pol.resumption then
		o.resumption = false
	else
		o.session, o.early_data = opts.session, opts.early_data
	end
	return o
end

local VERDICTS = { accept = true, defer = true, reject = true }

-- Asks the policy what to do with the early data (data so far).
local function decide(conn, rules, complete)
	local sess = conn.sess
	local _, reason = sess:early_status()
	local hello = sess:hello_info()
	local info = {
		alpn = hello.alpn, server_name = hello.server_name, size = #conn.early,
		peer = conn.peer, complete = complete, max_size = rules.max_size, reason = reason,
	}
	if not rules.allow then return "defer" end
	local verdict = rules.allow(conn.early, info)
	if not VERDICTS[verdict] then
		error("policy early_data.allow must return \"accept\", \"defer\" or \"reject\", got " ..
			tostring(verdict), 0)
	end
	return verdict
end

-- Once the handshake is complete: the last early bytes, then the verdict
-- applied. "accept" already put the bytes so far in front of the stream;
-- "defer" puts them all there now; "reject" drops them.
local function settle(conn)
	local more = conn.sess:early_data() or ""
	conn.early = conn.early .. more
	local verdict = conn.early_verdict
	if verdict == "reject" then
		conn.early_rejected = conn.early
		conn.early = nil
	elseif conn.early_given then
		conn.buf = conn.buf .. conn.early:sub(conn.early_given + 1)
	else
		conn.buf = conn.early .. conn.buf
	end
end

-- Runs the rest of a handshake that the handler started on (accept),
-- then the policy's rules, which had nothing to check before.
local function complete(conn, deadline)
	conn.pending = nil
	local ok, err, code = M.run_handshake(conn, deadline)
	if ok then
		settle(conn)
		local pol = conn.early_policy
		if pol.enforce then ok, err, code = pol:enforce(conn, "server", conn.early_ctx, true) end
	end
	if not ok then
		conn.failed = true
		return nil, err, code
	end
	return true
end

-- Explains a failed server handshake that carried early data.
local function early_failure(conn, err, code)
	if code == "GNUTLS_E_UNEXPECTED_PACKET" and conn.sess:early_status() == "accepted" then
		return "the client " .. (conn.peer or "") .. " sent more early data than the policy's " ..
			"max_size (" .. conn.early_rules.max_size .. " bytes) allows: early data refused, " ..
			"connection closed", "early_data"
	end
	return errors.handshake(err, code, { role = "server", peer = conn.peer, session = conn.sess })
end

-- The handshake loop of a server whose policy takes early data. Early
-- bytes that arrive while it waits for the client's Finished go to the
-- policy's allow() (decide = true); on "accept" it returns at once and the
-- handler starts: conn.pending completes the handshake on the handler's
-- first send, or first read past those bytes.
function M.run_handshake(conn, deadline, decide_now)
	local sess, sched = conn.sess, conn.sched
	while true do
		local ok, err, code = sess:handshake()
		if ok then return true end
		if code ~= "wantread" and code ~= "wantwrite" then
			return nil, early_failure(conn, err, code)
		end
		local chunk = sess:early_data()
		if chunk and #chunk > 0 then
			conn.early = conn.early .. chunk
			if decide_now and not conn.early_verdict then
				conn.early_verdict = decide(conn, conn.early_rules, false)
				if conn.early_verdict == "accept" then
					conn.early_given = #conn.early
					conn.buf = conn.early .. conn.buf
					conn.pending = function(c) return complete(c, deadline) end
					return true
				end
			end
		end
		if not sched:wait_io(conn, code == "wantwrite" and "w" or "r", deadline) then
			return nil, "handshake timeout: the client " .. (conn.peer or "") ..
				" did not complete the TLS handshake in time", "timeout"
		end
	end
end

-- A server handshake under a policy with early_data rules: conn | nil,
-- message, code. ctx: the server's context, for the policy's rules.
function M.server_handshake(conn, seconds, pol, ctx)
	local rules = pol.early_data
	conn.early, conn.early_rules, conn.early_policy, conn.early_ctx = "", rules, pol, ctx
	local deadline = conn.sched:now() + seconds
	local ok, err, code = M.run_handshake(conn, deadline, true)
	if not ok then return nil, err, code end
	if conn.pending then return conn end
	if conn.early_verdict == nil and conn.sess:early_status() == "accepted" then
		conn.early = conn.early .. (conn.sess:early_data() or "")
		conn.early_verdict = decide(conn, rules, true)
	end
	if conn.early_verdict then settle(conn) end
	return conn
end

-- conn:early_data() -> the early bytes the application received (already
-- at the front of what receive returns), or nil, reason, status.
function M.early_data(conn)
	if conn.early_rejected then
		return nil, "early data rejected by the policy's early_data.allow", "rejected", conn.early_rejected
	end
	if conn.early_verdict then return conn.early end
	if conn.role ~= "server" then
		return nil, "early data is what a server receives; a client's is in info().early_data", "none"
	end
	local status, reason = conn.sess:early_status()
	return nil, reason or "no early data", status
end

return M
