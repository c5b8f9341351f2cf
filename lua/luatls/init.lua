-- luatls: TLS clients and servers as short Lua scripts.
--   connect / listen / session: the ways in
--   spawn / sleep / run / stop: the scheduler of this Lua state
local core = require "luatls.core"
local loop = require "luatls.loop"
local stream = require "luatls.stream"
local policy = require "luatls.policy"
local errors = require "luatls.errors"
local resumption = require "luatls.resumption"

local type, error, pairs, ipairs, tostring, concat, setmetatable =
	type, error, pairs, ipairs, tostring, table.concat, setmetatable

local M = {
	version = core.version,
	gnutls_version = core.gnutls_version,
	errors = errors,
	explain = errors.explain,
}
-- luatls.x509 (certificates, keys, stores) is loaded when first used: a
-- server that never inspects a certificate does not keep its 50 KB of
-- functions on the heap that every collection walks.
setmetatable(M, { __index = function(t, k)
	if k ~= "x509" then return nil end
	local x509 = require "luatls.x509"
	rawset(t, k, x509)
	return x509
end })

local DEFAULT_HANDSHAKE_TIMEOUT = 10
local DEFAULT_CONNECT_TIMEOUT = 10
local stop -- defined below

local function sched() return loop.default() end

local function check_options(name, opts, allowed)
	if type(opts) ~= "table" then
		error("bad argument #1 to '" .. name .. "' (table expected, got " .. type(opts) .. ")", 3)
	end
	for k in pairs(opts) do
		if not allowed[k] then
			error("bad argument #1 to '" .. name .. "' (unknown option '" .. tostring(k) .. "')", 3)
		end
	end
end

local function check_type(name, opts, key, want)
	local v = opts[key]
	if v ~= nil and type(v) ~= want then
		error("bad argument #1 to '" .. name .. "' (option '" .. key .. "' must be a " ..
			want .. ", got " .. type(v) .. ")", 3)
	end
end

-- A duration option: seconds, a number that is not negative (nor NaN,
-- which would make every wait end at once or never).
local function check_seconds(name, opts, key)
	local v = opts[key]
	if v ~= nil and (type(v) ~= "number" or not (v >= 0)) then
		error("bad argument #1 to '" .. name .. "' (option '" .. key ..
			"' must be a non-negative number of seconds, got " ..
			(type(v) == "number" and tostring(v) or type(v)) .. ")", 3)
	end
end

-- Reads a PEM/DER value given inline or as a file path.
local function data_of(value, what)
	if value:find("-----BEGIN", 1, true) then return value end
	local f, err = io.open(value, "rb")
	if not f then
		return nil, "cannot read " .. what .. " file: " .. err, "file"
	end
	local data = f:read("*a")
	f:close()
	return data
end

local function is_ip(host)
	return host:match("^%d+%.%d+%.%d+%.%d+$") ~= nil or host:find(":", 1, true) ~= nil
end

local CONTEXT_OPTIONS = {
	certificate = "string", key = "string", certificates = "table",
	cafile = "string", capath = "string", ca = "string", crl = "string",
	alpn = "table", policy = "table", client_certificate = "string",
}

local contexts = setmetatable({}, { __mode = "v" })

-- Builds (or reuses) the Context for a role and its options:
-- Context | nil, message, code
local function context_for(role, opts, pol)
	local keyparts = { role, pol:priority(), pol:client_auth() }
	for _, k in ipairs { "certificate", "key", "cafile", "capath", "ca", "crl", "client_certificate", "ticket_key" } do
		keyparts[#keyparts + 1] = tostring(opts[k])
	end
	for _, p in ipairs(opts.alpn or {}) do keyparts[#keyparts + 1] = "alpn:" .. tostring(p) end
	for _, pair in ipairs(opts.certificates or {}) do
		keyparts[#keyparts + 1] = tostring(pair.certificate) .. tostring(pair.key)
	end
	local cachekey = concat(keyparts, "\0")
	local ctx = contexts[cachekey]
	if ctx then return ctx end

	ctx = core.context(role)
	local ok, err, code = ctx:priority(pol:priority())
	if not ok then return nil, err, code end

	local pairs_ = {}
	if opts.certificate or opts.key then
		if not (opts.certificate and opts.key) then
			error("options 'certificate' and 'key' go together", 4)
		end
		pairs_[1] = { certificate = opts.certificate, key = opts.key }
	end
	for i, pair in ipairs(opts.certificates or {}) do
		if type(pair) ~= "table" or type(pair.certificate) ~= "string" or type(pair.key) ~= "string" then
			error("option 'certificates' must be a list of { certificate = ..., key = ... } (entry " .. i .. ")", 4)
		end
		pairs_[#pairs_ + 1] = pair
	end
	for _, pair in ipairs(pairs_) do
		local cert, cerr, ccode = data_of(pair.certificate, "certificate")
		if not cert then return nil, cerr, ccode end
		local key, kerr, kcode = data_of(pair.key, "key")
		if not key then return nil, kerr, kcode end
		ok, err, code = ctx:add_keypair(cert, key)
		if not ok then return nil, err, code end
	end
	if role == "server" and #pairs_ == 0 then
		error("a server needs a certificate and key (options 'certificate' and 'key', or 'certificates')", 4)
	end

	local explicit_trust = opts.cafile or opts.capath or opts.ca
	if opts.cafile then
		local data, derr, dcode = data_of(opts.cafile, "CA")
		if not data then return nil, derr, dcode end
		ok, err, code = ctx:trust_pem(data)
		if not ok then return nil, "cafile " .. opts.cafile .. ": " .. err, code end
	end
	if opts.ca then
		ok, err, code = ctx:trust_pem(opts.ca)
		if not ok then return nil, "ca: " .. err, code end
	end
	if opts.capath then
		ok, err, code = ctx:trust_dir(opts.capath)
		if not ok then return nil, err, code end
	end
	if opts.crl then
		local data, derr, dcode = data_of(opts.crl, "CRL")
		if not data then return nil, derr, dcode end
		ok, err, code = ctx:crl_pem(data)
		if not ok then return nil, err, code end
	end
	if role == "client" and not explicit_trust then
		ok, err, code = ctx:trust_system()
		if not ok then return nil, err, code end
	end
	if role == "server" then
		local mode = pol:client_auth(opts.client_certificate)
		if mode ~= "none" and mode ~= "request" and mode ~= "require" then
			error("option 'client_certificate' must be \"none\", \"request\" or \"require\"", 4)
		end
		if mode ~= "none" and not explicit_trust then
			error("option 'client_certificate' needs cafile, capath or ca to verify clients", 4)
		end
		ctx:client_auth(mode)
	end
	if opts.alpn then ctx:alpn(opts.alpn) end
	if role == "server" and opts.ticket_key then
		ok, err, code = resumption.ticket_key(ctx, opts.ticket_key)
		if not ok then return nil, err, code end
	end
	contexts[cachekey] = ctx
	return ctx
end

local function check_context_options(name, opts)
	for k, t in pairs(CONTEXT_OPTIONS) do check_type(name, opts, k, t) end
	if opts.policy ~= nil and getmetatable(opts.policy) ~= policy.Policy then
		error("bad argument #1 to '" .. name .. "' (option 'policy' must be made with luatls.policy)", 3)
	end
end

local CONNECT_OPTIONS = {
	host = true, port = true, address = true, server_name = true,
	verify = true, verify_hostname = true, timeout = true,
	handshake_timeout = true, connect_timeout = true,
}
for k in pairs(CONTEXT_OPTIONS) do CONNECT_OPTIONS[k] = true end
for _, k in ipairs { "session", "session_cache", "early_data", "early_data_resend" } do CONNECT_OPTIONS[k] = true end

-- Opens a TCP connection to one of the addresses: Socket | nil, msg, code
local function tcp_connect(s, host, port, addresses, deadline)
	local failures, last_code = {}, nil
	for _, addr in ipairs(addresses) do
		local sock, err, code = core.tcp_connect(addr, port)
		if sock then
			local rec = s:io(sock:fd(), "w")
			local ok = s:wait_io(rec, "w", deadline)
			s:close_watcher(rec)
			if not ok then
				sock:close()
				return nil, "cannot connect to " .. host .. " port " .. port ..
					": timeout (no answer from " .. addr .. ")", "timeout"
			end
			ok, err, code = sock:connected()
			if ok then return sock end
			sock:close()
		end
		failures[#failures + 1] = addr .. ": " .. (err:gsub("^.-: ", ""))
		last_code = code
	end
	local hint = last_code == "ECONNREFUSED" and " (is the server running on that port?)" or ""
	return nil, "cannot connect to " .. host .. " port " .. port .. ": " ..
		concat(failures, "; ") .. hint, last_code
end

-- luatls.connect{ host, port, ... } -> Connection | nil, message, code
function M.connect(opts)
	check_options("connect", opts, CONNECT_OPTIONS)
	check_context_options("connect", opts)
	if type(opts.host) ~= "string" then
		error("bad argument #1 to 'connect' (option 'host' must be a string)", 2)
	end
	if type(opts.port) ~= "number" or opts.port < 1 or opts.port > 65535 or opts.port % 1 ~= 0 then
		error("bad argument #1 to 'connect' (option 'port' must be a port number)", 2)
	end
	for _, k in ipairs { "timeout", "handshake_timeout", "connect_timeout" } do
		check_seconds("connect", opts, k)
	end
	for _, k in ipairs { "verify", "verify_hostname" } do check_type("connect", opts, k, "boolean") end
	check_type("connect", opts, "address", "string")
	if opts.server_name ~= nil and opts.server_name ~= false and type(opts.server_name) ~= "string" then
		error("bad argument #1 to 'connect' (option 'server_name' must be a string or false)", 2)
	end
	loop.check_waitable(3)
	local s = sched()
	local pol = opts.policy or policy.default
	local host, port = opts.host, opts.port
	resumption.check_connect(opts, pol, 2)

	local ctx, err, code = context_for("client", opts, pol)
	if not ctx then return nil, err, code end

	local addresses
	if opts.address then
		addresses = { opts.address }
	else
		addresses, err, code = core.resolve(host)
		if not addresses then return nil, err, code end
	end
	local deadline = s:now() + (opts.connect_timeout or DEFAULT_CONNECT_TIMEOUT)
	local sock
	sock, err, code = tcp_connect(s, host, port, addresses, deadline)
	if not sock then return nil, err, code end

	local server_name = opts.server_name
	if server_name == nil and not is_ip(host) then server_name = host end
	local verify = opts.verify ~= false
	local hostname -- checked when verify is on; reported on even when off
	if opts.verify_hostname ~= false then
		hostname = server_name or host
	end
	local resume = resumption.client(s, opts, pol, server_name, verify, hostname)
	local fd = sock:fd()
	local sess = core.session(ctx, resume:options {
		fd = fd,
		server_name = server_name or nil,
		hostname = hostname,
		verify = verify,
	})
	local peer_host, peer_port = sock:peer_address()
	local conn = stream.new(s, sock, fd, sess, "client", opts.timeout,
		peer_host and (peer_host .. ":" .. peer_port) or nil, host, port)
	local hook = pol:handshake_hook(conn, "client", ctx)
	if hook then sess:set_hook(hook) end
	local ok, herr, hcode = conn:handshake(opts.handshake_timeout or DEFAULT_HANDSHAKE_TIMEOUT)
	ok, herr, hcode = pol:enforce(conn, "client", ctx, ok, herr, hcode)
	if ok then ok, herr, hcode = resume:established(conn) end
	if not ok then
		conn:abort()
		return nil, herr, hcode
	end
	return conn
end

local LISTEN_OPTIONS = {
	host = true, port = true, backlog = true, timeout = true, grace = true,
	handshake_timeout = true, on_error = true, on_handshake_error = true,
}
for k in pairs(CONTEXT_OPTIONS) do LISTEN_OPTIONS[k] = true end
for _, k in ipairs { "ticket_key", "ticket_lifetime", "session_cache", "anti_replay" } do LISTEN_OPTIONS[k] = true end

local Server = {}
Server.__index = Server
Server.__name = "luatls.Server"

-- server:address() -> host, port it listens on
function Server:address()
	return self.host, self.port
end

-- server:close() stops accepting; open connections go on.
function Server:close()
	if self.closed then return end
	self.closed = true
	local s = self.sched
	self.acc:stop() -- before the socket goes; handshakes in progress go on
	s:release() -- held since listen
	self.sock:close()
	if self.acc:pending() == 0 then self:release_acceptor() end
	s.servers = s.servers - 1
	if s.servers == 0 and s.signal_recs then
		for _, rec in ipairs(s.signal_recs) do s:close_watcher(rec) end
		s.signal_recs = nil
	end
end

-- Once closed and with no handshake left in it, the acceptor goes.
function Server:release_acceptor()
	self.sched:unregister(self.rec.id)
	self.sched:release(self.acc:close())
end

Server.__tostring = function(self)
	return "luatls.Server (" .. self.host .. ":" .. self.port .. (self.closed and ", closed" or "") .. ")"
end

local function report(msg)
	io.stderr:write("luatls: connection handler failed: ", msg, "\n")
end

-- Runs the user's handler on an established connection, in its own
-- coroutine; closes the connection when the handler returns.
local function run_handler(server, conn, handler)
	local co = coroutine.running()
	server.conns[co] = conn -- for the error handler, should the handler fail
	handler(conn)
	server.conns[co] = nil
	if not conn.closed then conn:close() end
end

-- The end of a server handshake made by the acceptor or handshake_step:
-- the policy's verdict, then the handler's coroutine, or the failure.
local function handshake_done(server, conn, ok, err, code)
	local s = server.sched
	if ok and server.policy_later then
		conn.policy_later = server.policy -- what enforce would do: see Policy:enforce
	else
		ok, err, code = server.policy:enforce(conn, "server", server.ctx, ok, err, code)
	end
	if not ok then
		conn:abort()
		server.handshake_failures = server.handshake_failures + 1
		local on_failure = server.opts.on_handshake_error
		-- in a coroutine, as the handler would be: it may wait (to log, say)
		if on_failure then s:spawn(on_failure, server.failed, err, code, conn.peer) end
		return
	end
	s:start(run_handler, server.failed, server, conn, server.handler)
end

-- One attempt at a server handshake, made when its socket is ready: waits
-- again, or finishes. server.conns holds the connection with its deadline
-- while the handshake runs. ok: the acceptor's drive has established it.
local function handshake_step(server, conn, timed_out, ok)
	local s = server.sched
	local err, code
	if ok then
		-- nothing to try
	elseif timed_out then
		err, code = stream.handshake_timeout(conn, "timeout")
	else
		ok, err, code = conn.sess:handshake()
		if not ok then
			if code == "wantread" or code == "wantwrite" then
				local dir, deadline = code == "wantwrite" and "w" or "r", server.conns[conn]
				-- the watcher takes over when it can (a session store is
				-- no obstacle once TLS 1.3 is chosen: see w:drive)
				if conn.watcher:drive(conn.sess, deadline - s:now(), dir) == false then
					s:watching(conn, server.step)
				else
					s:watch(conn, dir, deadline, server.step)
				end
				return
			end
			err, code = stream.handshake_failure(conn, err, code)
		end
	end
	-- the watcher has fired (which stopped it) or never started
	s:unwatched(conn)
	server.conns[conn] = nil
	s:release()
	handshake_done(server, conn, ok, err, code)
end

-- Serves an accepted connection in a coroutine: handshake, then the
-- user's handler (policies with certificate rules or early data, whose
-- handshakes run Lua; the acceptor makes the others: see listen).
local function serve(server, conn, handler)
	local opts, pol = server.opts, server.policy
	local co = coroutine.running()
	server.conns[co] = conn -- for the error handler, should the handler fail
	local hook = pol:handshake_hook(conn, "server", server.ctx)
	if hook then conn.sess:set_hook(hook) end
	local ok, err, code
	if type(pol.early_data) == "table" then
		ok, err, code = resumption.server_handshake(conn, opts.handshake_timeout or DEFAULT_HANDSHAKE_TIMEOUT, pol, server.ctx)
	else
		ok, err, code = conn:handshake(opts.handshake_timeout or DEFAULT_HANDSHAKE_TIMEOUT)
	end
	ok, err, code = pol:enforce(conn, "server", server.ctx, ok, err, code)
	if not ok then
		server.conns[co] = nil
		conn:abort()
		server.handshake_failures = server.handshake_failures + 1
		if opts.on_handshake_error then opts.on_handshake_error(err, code, conn.peer) end
		return
	end
	handler(conn)
	server.conns[co] = nil
	if not conn.closed then conn:close() end
end

-- luatls.listen({ host, port, certificate, key, ... }, handler) -> Server.
-- handler(conn) runs in its own coroutine for each connection, after the
-- handshake; the connection is closed when it returns.
function M.listen(opts, handler)
	check_options("listen", opts, LISTEN_OPTIONS)
	check_context_options("listen", opts)
	if type(handler) ~= "function" then
		error("bad argument #2 to 'listen' (function expected, got " .. type(handler) .. ")", 2)
	end
	if type(opts.port) ~= "number" or opts.port < 0 or opts.port > 65535 or opts.port % 1 ~= 0 then
		error("bad argument #1 to 'listen' (option 'port' must be a port number, 0 for any)", 2)
	end
	check_type("listen", opts, "host", "string")
	resumption.check_listen(opts, 2)
	check_type("listen", opts, "backlog", "number")
	for _, k in ipairs { "timeout", "handshake_timeout", "grace" } do check_seconds("listen", opts, k) end
	for _, k in ipairs { "on_error", "on_handshake_error" } do check_type("listen", opts, k, "function") end

	local s = sched()
	local pol = opts.policy or policy.default
	local ctx, err, code = context_for("server", opts, pol)
	if not ctx then return nil, err, code end
	local host = opts.host or "127.0.0.1"
	local lsock
	lsock, err, code = core.tcp_listen(host, opts.port, opts.backlog)
	if not lsock then return nil, err, code end
	local _, port = lsock:local_address()

	local server = setmetatable({
		sched = s, sock = lsock, ctx = ctx, opts = opts, host = host, port = port,
		handshake_failures = 0, accepted = 0,
		-- the same for every connection: made once, its fd set by the
		-- acceptor for each
		policy = pol, sess_opts = resumption.server_options(ctx, opts, pol, { fd = false }),
		-- a policy whose every rule GnuTLS enforces judges no connection
		policy_later = pol:enforced_by_gnutls(),
	}, Server)
	s.servers = (s.servers or 0) + 1
	if not s.signal_recs then
		local function on_signal() stop(s, opts.grace) end
		s.signal_recs = { s:signal(core.signals.SIGINT, on_signal), s:signal(core.signals.SIGTERM, on_signal) }
	end
	s:at_stop(function() server:close() end)

	-- one error handler for every connection of this server: it closes the
	-- connection whose handler failed, then reports
	local on_error = opts.on_error or report
	-- coroutine -> connection, while its handler runs (serve and failed
	-- take it out), and connection -> deadline while Lua makes its
	-- handshake's attempts (handshake_step); what is left at stop() is
	-- closed then
	server.conns = {}
	s.listeners = s.listeners or setmetatable({}, { __mode = "k" })
	s.listeners[server] = true
	local function failed(msg, co)
		local conn = server.conns[co]
		server.conns[co] = nil
		if conn then conn:abort() end
		on_error(msg)
	end
	server.failed, server.handler = failed, handler
	-- the steps of handshakes that come back to Lua run under pcall, so
	-- that a failure in one (a bug, or the policy's) ends that connection,
	-- not the loop
	function server.step(conn, timed_out, ok)
		local fine, e = pcall(handshake_step, server, conn, timed_out, ok)
		if not fine then
			if server.conns[conn] then
				server.conns[conn] = nil
				s:release()
			end
			s:unwatch(conn)
			conn:abort()
			on_error("handshake with " .. tostring(conn.peer) .. ": " .. tostring(e))
		end
	end

	-- The acceptor (C) accepts, makes each connection's session and drives
	-- its handshake, inside the loop; Lua sees a connection once its
	-- handshake is over. A policy that judges certificates (which may run
	-- the user's check functions) or early data needs Lua in the handshake:
	-- its connections come at once, and each gets a coroutine from the
	-- start (serve).
	local in_coroutine = pol:judges_certificates() or type(pol.early_data) == "table"
	local timeout, policy_later = opts.timeout, server.policy_later
	local rec = { fn = false }
	rec.id = s:register(rec)
	server.rec = rec
	local acc = core.acceptor(s.ev, rec.id, lsock, ctx, server.sess_opts,
		opts.handshake_timeout or DEFAULT_HANDSHAKE_TIMEOUT, not in_coroutine)
	server.acc = acc
	-- the connections whose handshakes are over, to their handlers
	local function take_over()
		while true do
			local id = s.next_id + 1
			local sess, sock, w, fd, peer, ok, timed_out, deadline = acc:take(id)
			if not sess then break end
			s.next_id = id
			local conn = stream.new(s, sock, fd, sess, "server", timeout, peer, nil, nil, w, id)
			if in_coroutine then
				s:release() -- the coroutine holds run() from here
				s:spawn(serve, failed, server, conn, handler)
			elseif ok and policy_later then
				-- the usual case: established, and the policy has nothing
				-- to judge, so nothing here can fail (a failure in the
				-- handler goes to failed) and no step or pcall is needed
				s:release() -- the handler's coroutine holds run() from here
				handshake_done(server, conn, true)
			else
				if not ok then server.conns[conn] = deadline end
				server.step(conn, timed_out, ok)
			end
		end
	end
	-- called back when connections wait or handshakes are over. Those
	-- over come first: their clients wait for an answer, and their state
	-- is still in the cache, while the new connections' first attempts
	-- (each signs) can take a while (measured in bench/RESULTS.md). Then
	-- accept(), then take() those whose handshake ended at their first
	-- attempt (see acceptor.c).
	local function on_acceptor()
		take_over()
		local n, err, code = acc:accept()
		if n then
			if n > 0 then
				server.accepted = server.accepted + n
				s:hold(n) -- each holds run() until its handshake is over
			end
			-- a connection whose session could not be made (it is closed)
			if err then on_error(err) end
		elseif not server.backing_off then
			-- out of file descriptors and the like: back off, keep serving
			io.stderr:write("luatls: accept failed: ", tostring(err), " (", tostring(code), ")\n")
			server.backing_off = true
			s:spawn(function()
				s:sleep(0.1)
				server.backing_off = false
				if not server.closed then rec.fn() end
			end)
		end
		take_over()
		if server.closed and acc:pending() == 0 then server:release_acceptor() end
	end
	rec.fn = on_acceptor
	s:hold() -- an open server holds run() open (until close)
	return server
end

-- Stops the scheduler s: listeners stop accepting at once; connections
-- still open after grace seconds get close_notify and are closed.
function stop(s, grace)
	s:at_finish(function()
		for conn in stream.each_open() do
			if conn.sched == s then conn:close() end
		end
		for server in pairs(s.listeners or {}) do
			-- coroutine -> connection, and connection -> deadline for
			-- a handshake in progress
			for k, v in pairs(server.conns) do
				server.conns[k] = nil
				if type(v) == "number" then k:abort() else v:close() end
			end
			-- and those the acceptor still has
			s:release(server.acc:close())
		end
	end)
	return s:stop(grace)
end

-- luatls.session{ role = "client"|"server", ... } -> a Session over the
-- in-memory transport: feed() it the peer's bytes, drain() what to send.
local SESSION_OPTIONS = { role = true, server_name = true, verify = true, verify_hostname = true }
for k in pairs(CONTEXT_OPTIONS) do SESSION_OPTIONS[k] = true end
for _, k in ipairs { "session", "early_data", "ticket_key", "ticket_lifetime", "session_cache", "anti_replay" } do
	SESSION_OPTIONS[k] = true
end

function M.session(opts)
	check_options("session", opts, SESSION_OPTIONS)
	check_context_options("session", opts)
	if opts.role ~= "client" and opts.role ~= "server" then
		error("bad argument #1 to 'session' (option 'role' must be \"client\" or \"server\")", 2)
	end
	local pol = opts.policy or policy.default
	local ctx, err, code = context_for(opts.role, opts, pol)
	if not ctx then return nil, err, code end
	local verify = opts.verify ~= false
	local hostname
	if opts.role == "client" and opts.verify_hostname ~= false then
		hostname = opts.server_name
	end
	return core.session(ctx, resumption.session_options(ctx, opts, pol, {
		server_name = opts.role == "client" and opts.server_name or nil,
		hostname = hostname, verify = verify,
	}))
end

-- luatls.policy{ rules } -> Policy
M.policy = setmetatable({}, {
	__call = function(_, rules) return policy.new(rules) end,
	__index = policy,
})

-- luatls.session_cache([store]) -> the client session cache of the loop
-- (a luatls.cache by default); store sets it (false: no caching).
function M.session_cache(store) return resumption.client_cache(sched(), store) end
M.new_ticket_key = resumption.new_ticket_key
M.cache = require("luatls.cache").new

function M.spawn(fn, ...) return sched():spawn(fn, nil, ...) end
function M.sleep(seconds) return sched():sleep(seconds) end
function M.now() return sched():now() end

-- Runs the loop until every coroutine is done (or stop()'s grace is over).
function M.run() return sched():run() end

-- Stops gracefully: listeners stop accepting, open connections get
-- grace seconds (default 5) to finish, then run() returns.
function M.stop(grace)
	if grace ~= nil and (type(grace) ~= "number" or not (grace >= 0)) then -- NaN too
		error("bad argument #1 to 'stop' (non-negative number expected)", 2)
	end
	return stop(sched(), grace)
end

return M
