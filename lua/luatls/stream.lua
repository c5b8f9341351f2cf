-- A TLS connection as a buffered, socket-like object. Every call that waits
-- yields to the scheduler; C only ever makes one non-blocking attempt.
local core = require "luatls.core"
local errors = require "luatls.errors"

local setmetatable, getmetatable, type, error, tostring, concat, min =
	setmetatable, getmetatable, type, error, tostring, table.concat, math.min
local sub, split_line = string.sub, core.split_line

local M = {}
local Stream = {}
Stream.__index = Stream
Stream.__name = "luatls.Connection"

-- Open client streams, for stop(). Weak: a client connection its user
-- drops without closing is still collected. A server's connections are
-- not here: their server holds them (see listen in init.lua), which costs
-- the collector less than an ephemeron table entry per connection.
local live = setmetatable({}, { __mode = "k" })

-- new(sched, sock, fd, sess, role, timeout, peer ["addr:port"] [, host,
-- port [, watcher, id]]) fd: the socket's descriptor; watcher: an io
-- watcher for it made already (an acceptor's), with its id
function M.new(sched, sock, fd, sess, role, timeout, peer, host, port, watcher, id)
	-- The stream is its own io record (id, watcher, dir, co, fn: see
	-- Scheduler:io), so a connection is one table. The constructor names
	-- the fields a server connection comes to have, which sizes the
	-- table once for its whole life: a field added later (closed, or the
	-- policy's) would make Lua rehash it.
	local self = setmetatable({
		sched = sched,
		sock = sock,
		sess = sess,
		buf = "",
		peer = peer,
		role = role,
		timeout = timeout,
		id = id or false, watcher = watcher or false, dir = watcher and "r" or false,
		co = nil, fn = nil, closed = nil, policy_later = nil,
	}, Stream)
	if not watcher then sched:io(fd, "r", self) end
	if host then self.host, self.port = host, port end
	if role == "client" then live[self] = true end
	return self
end

function M.each_open()
	return next, live, nil
end

local function check(self, name)
	if getmetatable(self) ~= Stream then
		error("bad argument #1 to '" .. name .. "' (luatls.Connection expected)", 3)
	end
	if self.closed then
		error("connection is closed", 3)
	end
end

local function deadline_of(self, seconds)
	if seconds == nil then seconds = self.timeout end
	return seconds and (self.sched:now() + seconds) or nil
end

local function direction(code)
	return code == "wantwrite" and "w" or "r"
end

-- Waits for the direction the last attempt asked for; nil, message,
-- "timeout" when the deadline passes, or "closed" when the connection is
-- closed (by another coroutine) while it waits.
local function await(self, code, deadline, doing)
	local ok, why = self.sched:wait_io(self, direction(code), deadline)
	if ok then return true end
	if why == "closed" then
		return nil, doing .. ": the connection was closed while this call waited", "closed"
	end
	return nil, (doing .. ": timeout" .. (self.peer and (", " .. self.peer .. " sent nothing in time") or "")), "timeout"
end

-- The failure of a handshake attempt (sess:handshake()'s err, code), for
-- a person: message, code.
function M.handshake_failure(self, err, code)
	return errors.handshake(err, code, {
		role = self.role, host = self.host, port = self.port,
		peer = self.peer, session = self.sess })
end

-- A handshake that did not finish in time: message, code.
function M.handshake_timeout(self, code)
	return "handshake timeout: " .. (self.role == "server" and "the client " or "the server ") ..
		(self.peer or "") .. " did not complete the TLS handshake in time", code
end

-- Runs the handshake until done, failed or past the deadline.
function Stream:handshake(seconds)
	check(self, "handshake")
	local deadline = deadline_of(self, seconds)
	while true do
		local ok, err, code = self.sess:handshake()
		if ok then return self end
		if code ~= "wantread" and code ~= "wantwrite" then
			return nil, M.handshake_failure(self, err, code)
		end
		local waited, werr, wcode = await(self, code, deadline, "handshake")
		if not waited then
			return nil, M.handshake_timeout(self, wcode or werr)
		end
	end
end

-- Reads one chunk into the buffer: true, deadline | nil, message, code.
-- deadline false: not read yet (the call's timeout starts when the call
-- does, but the time is only read when it has to wait); the deadline
-- that was read comes back, for the caller's next fill.
local function fill(self, deadline)
	if self.pending then -- a handshake the handler started early (0-RTT)
		if deadline == false then deadline = deadline_of(self) end
		local n = #self.buf
		local ok, err, code = self.pending(self, deadline)
		if not ok then return nil, err, code end
		if #self.buf > n then return true, deadline end
	end
	while true do
		local data, err, code = self.sess:recv()
		if data then
			self.buf = self.buf == "" and data or self.buf .. data
			if self.after_recv then self:after_recv() end -- a TLS 1.3 ticket may have come
			return true, deadline
		end
		if code ~= "wantread" and code ~= "wantwrite" then
			if code == "closed" then return nil, err, code end
			return nil, errors.failure(err, code, self)
		end
		if deadline == false then deadline = deadline_of(self) end
		local ok, werr, wcode = await(self, code, deadline, "receive")
		if not ok then return nil, werr, wcode end
	end
end

local function take(self, n)
	local s = sub(self.buf, 1, n)
	self.buf = sub(self.buf, n + 1)
	return s
end

-- receive(pattern [, prefix]) the LuaSocket way: "*l" (or "l") a line
-- without its end of line, "*a" (or "a") everything until the peer closes,
-- a number for that many bytes. prefix is put in front of what is read
-- (and counts toward n). Failures: nil, message, code, partial. The
-- deadline (the timeout) starts with the call, and the time is only read
-- when the call has to wait: a line already buffered, or already in
-- GnuTLS's hands, costs no clock.
function Stream:receive(pattern, prefix)
	if getmetatable(self) ~= Stream or self.closed then check(self, "receive") end
	if prefix ~= nil and type(prefix) ~= "string" then
		error("bad argument #2 to 'receive' (string expected, got " .. type(prefix) .. ")", 2)
	end
	local deadline = false -- false: not read yet
	if pattern == nil or pattern == "*l" or pattern == "l" then
		if not (self.pending or self.after_recv) then
			-- the usual case: the session splits the buffer and reads
			-- in one call
			local sess = self.sess
			while true do
				local line, rest, code, data = sess:receive_line(self.buf)
				if line then
					self.buf = rest
					return prefix and prefix .. line or line
				end
				self.buf = data
				if code ~= "wantread" and code ~= "wantwrite" then
					if code ~= "closed" then rest, code = errors.failure(rest, code, self) end
					return nil, rest, code, (prefix or "") .. take(self, #data)
				end
				if deadline == false then deadline = deadline_of(self) end
				local ok, werr, wcode = await(self, code, deadline, "receive")
				if not ok then return nil, werr, wcode, (prefix or "") .. take(self, #data) end
			end
		end
		-- with an early-started handshake to finish, or a ticket to look
		-- for after each read
		local from = 1
		while true do
			local line, rest = split_line(self.buf, from)
			if line then
				self.buf = rest
				return prefix and prefix .. line or line
			end
			from = #self.buf + 1
			local ok, err, code = fill(self, deadline)
			if not ok then return nil, err, code, (prefix or "") .. take(self, #self.buf) end
			deadline = err
		end
	end
	prefix = prefix or ""
	if type(pattern) == "number" then
		if pattern < 0 or pattern % 1 ~= 0 then
			error("bad argument #1 to 'receive' (non-negative integer expected)", 2)
		end
		local want = pattern - #prefix
		if want <= 0 then return prefix end
		if #self.buf < want then
			-- gather the records, then join them once: appending each to
			-- the buffer would copy it again for every record
			local parts, n, have = { self.buf }, 1, #self.buf
			self.buf = ""
			while have < want do
				local ok, err, code = fill(self, deadline)
				if not ok then return nil, err, code, prefix .. concat(parts, "", 1, n) end
				deadline = err
				n = n + 1
				parts[n] = self.buf
				have = have + #self.buf
				self.buf = ""
			end
			self.buf = concat(parts, "", 1, n)
		end
		return prefix .. take(self, want)
	elseif pattern == "*a" or pattern == "a" then
		local parts, n = { prefix, self.buf }, 2 -- joined once, at the end
		self.buf = ""
		while true do
			local ok, err, code = fill(self, deadline)
			if not ok then
				local all = concat(parts, "", 1, n)
				if code == "closed" then return all end
				return nil, err, code, all
			end
			deadline = err
			n = n + 1
			parts[n] = self.buf
			self.buf = ""
		end
	end
	error("bad argument #1 to 'receive' (invalid pattern '" .. tostring(pattern) .. "')", 2)
end

-- send(data [, i [, j]]) -> index of the last byte sent | nil, message,
-- code, index of the last byte sent
function Stream:send(data, i, j)
	if getmetatable(self) ~= Stream or self.closed then check(self, "send") end
	if type(data) ~= "string" then
		error("bad argument #1 to 'send' (string expected, got " .. type(data) .. ")", 2)
	end
	local len = #data
	local s, first, last = data, 1, len -- what goes out, from data[first..last]
	if i ~= nil or j ~= nil then
		i, j = i or 1, j or len
		if type(i) ~= "number" then error("bad argument #2 to 'send' (number expected)", 2) end
		if type(j) ~= "number" then error("bad argument #3 to 'send' (number expected)", 2) end
		-- negative positions count from the end, as in string.sub
		if i < 0 then i = len + i + 1 end
		if j < 0 then j = len + j + 1 end
		if i < 1 then i = 1 end
		if j > len then j = len end
		if i > j then return i - 1 end
		if i ~= 1 or j ~= len then s = sub(data, i, j) end
		first, last = i, j
	elseif len == 0 then
		return 0
	end
	local deadline = false -- read when the call first has to wait
	if self.pending then
		deadline = deadline_of(self)
		local ok, err, code = self.pending(self, deadline)
		if not ok then return nil, err, code, first - 1 end
	end
	local pos, n_s = 1, #s
	while pos <= n_s do
		local n, err, code = self.sess:send(s, pos)
		if n then
			pos = pos + n
		elseif code == "wantread" or code == "wantwrite" then
			if deadline == false then deadline = deadline_of(self) end
			local ok, werr, wcode = await(self, code, deadline, "send")
			if not ok then return nil, werr, wcode, first + pos - 2 end
		else
			local msg, c = errors.failure(err, code, self)
			return nil, msg, c, first + pos - 2
		end
	end
	return last
end

-- Sends close_notify (bounded by the timeout, at most 2 s when none is
-- set), then closes. Safe to call twice.
function Stream:close()
	if self.closed then return true end
	self.closed = true
	live[self] = nil
	local sess = self.sess
	if not self.failed then
		local deadline, inside
		if self.pending then -- finish an early-started handshake
			deadline = self.sched:now() + (self.timeout and min(self.timeout, 2) or 2)
			local co, main = coroutine.running()
			inside = co ~= nil and not main
			if inside then self.pending(self, deadline) end
		end
		while true do
			local ok, _, code = sess:bye()
			if ok or (code ~= "wantread" and code ~= "wantwrite") then break end
			if inside == nil then -- the first wait: may this call wait at all?
				deadline = self.sched:now() + (self.timeout and min(self.timeout, 2) or 2)
				local co, main = coroutine.running()
				inside = co ~= nil and not main
			end
			if not inside or not self.sched:wait_io(self, direction(code), deadline) then break end
		end
	end
	self.sched:close_watcher(self)
	-- true when the peer's stream had ended: nothing left to drain
	self.sock:close(sess:close())
	return true
end

-- Closes without waiting for close_notify to be sent (used by stop()).
function Stream:abort()
	self.failed = true
	return self:close()
end

-- Sets the per-operation timeout in seconds (nil: wait as long as it takes).
function Stream:settimeout(seconds)
	check(self, "settimeout")
	if seconds ~= nil and (type(seconds) ~= "number" or not (seconds >= 0)) then -- NaN too
		error("bad argument #1 to 'settimeout' (non-negative number or nil expected)", 2)
	end
	self.timeout = seconds
	return true
end

-- The verified peer's identity from its leaf certificate: { subject,
-- issuer, sans = { dns, ip, email, uri }, pin }, or nil.
local function peer_identity(sess, info)
	local leaf = info.verified and sess:peer_certificates()[1]
	if not leaf then return nil end
	return { subject = leaf:subject(), issuer = leaf:issuer(), sans = leaf:sans(), pin = leaf:spki_pin() }
end

-- What was negotiated, plus where the peer is and who it is.
function Stream:info()
	check(self, "info")
	local info = self.sess:info()
	info.peer_address = self.peer
	info.peer = peer_identity(self.sess, info)
	return info
end

-- The policy's verdicts on this connection, one per rule checked:
-- { { rule, result = "pass"|"fail"|"warning"|"skip", message }, ... } (see
-- docs/policy.md). Readable after close, except for a policy GnuTLS
-- enforces entirely (no rule beyond versions): its verdicts are only made
-- when asked for on an open connection.
function Stream:verdicts()
	if getmetatable(self) ~= Stream then
		error("bad argument #1 to 'verdicts' (luatls.Connection expected)", 2)
	end
	local later = self.policy_later
	if later and not self.closed then
		-- a policy GnuTLS enforced entirely: its verdicts, made on demand
		self.policy_later = nil
		later:enforce(self, self.role, nil, nil, nil, nil, false, true)
	end
	local out = {}
	for i, v in ipairs(self.policy_verdicts or {}) do
		out[i] = { rule = v.rule, result = v.result, message = v.message }
	end
	return out
end

-- The peer's certificate chain, leaf first, as Certificate objects.
function Stream:peer_certificates()
	check(self, "peer_certificates")
	return self.sess:peer_certificates()
end

function Stream:getfd()
	check(self, "getfd")
	return self.sock:fd()
end

-- The underlying luatls.Session, for what the stream does not wrap.
function Stream:session()
	check(self, "session")
	return self.sess
end

-- Session data that resumes this session (connect{ session = data }), or
-- nil, message, code. Under TLS 1.3 it comes with a ticket the server
-- sends after the handshake: what has already arrived is read (into the
-- receive buffer), and with wait it waits that many seconds for one.
function Stream:session_data(wait)
	check(self, "session_data")
	local data, err, code = self.sess:session_data()
	if self.after_recv and data then self:after_recv() end -- the loop's session cache
	if data or code ~= "no_ticket" then return data, err, code end
	local deadline = self.sched:now() + (wait or 0)
	while true do
		local chunk, _, rcode = self.sess:recv()
		if not chunk and rcode ~= "wantread" and rcode ~= "wantwrite" then
			return nil, err, code
		end
		if chunk then self.buf = self.buf .. chunk end
		-- the attempt may have read the ticket even when it says it
		-- would block: look before waiting
		data = self.sess:session_data()
		if data then
			if self.after_recv then self:after_recv() end
			return data
		end
		if not chunk and (self.sched:now() >= deadline or
			not self.sched:wait_io(self, direction(rcode), deadline)) then
			return nil, err, code
		end
	end
end

-- Servers: the bytes that came as TLS 1.3 early data (0-RTT), which are
-- also the first bytes receive returns; or nil, reason, status. See
-- docs/resumption.md.
function Stream:early_data()
	check(self, "early_data")
	return require("luatls.resumption").early_data(self)
end

function Stream.__tostring(self)
	return "luatls.Connection (" .. (self.closed and "closed" or (self.role or "?")) ..
		(self.peer and (", " .. self.peer) or "") .. ")"
end

Stream.__close = Stream.close
Stream.dirty = function(self) return #self.buf > 0 or self.sess:pending() > 0 end

M.Stream = Stream
return M
