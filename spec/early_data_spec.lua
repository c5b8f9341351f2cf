-- TLS 1.3 early data (0-RTT): the policy's rules (deny, accept, defer,
-- reject), anti-replay, max_size, the client's first flight and its
-- resend; against luatls itself, gnutls-cli --earlydata, openssl s_client
-- -early_data, gnutls-serv --earlydata and openssl s_server -early_data,
-- and examples/zero_rtt_server.lua. Loopback only.
local H = require "helper"
local tls = H.tls
local cache = require "luatls.cache"

local P
local unpack = table.unpack or unpack

local function run(fn, timeout)
	local t = H.run(function()
		return (function(...) return { n = select("#", ...), ... } end)(fn())
	end, timeout)
	return unpack(t, 1, t.n)
end

local function f(name) return "'" .. P .. name .. "'" end

-- A policy taking early data; allow is called with (data, info).
local function taking(verdict, max_size, seen)
	return tls.policy { early_data = { max_size = max_size or 16384, allow = function(data, info)
		if seen then seen[#seen + 1] = { data = data, info = info } end
		return type(verdict) == "function" and verdict(data, info) or verdict
	end } }
end

-- A luatls server whose handler records what it saw: the early data, the
-- first line, the info at the start and at the end.
local function listen(opts, conns)
	-- a key of its own: a fresh context, so a fresh anti-replay window
	local o = { port = 0, certificate = P .. "server-chain.pem", key = P .. "server.key",
		handshake_timeout = 5, timeout = 3, ticket_key = tls.new_ticket_key() }
	for k, v in pairs(opts or {}) do o[k] = v end
	conns = conns or {}
	local srv = assert(tls.listen(o, function(conn)
		local c = { start = conn:info() }
		conns[#conns + 1] = c
		c.early, c.early_msg, c.early_status = conn:early_data()
		c.line, c.err = conn:receive("*l")
		c.info = conn:info()
		if c.line then conn:send("you said " .. c.line .. "\n") end
		c.after = conn:info()
	end))
	local _, port = srv:address()
	return srv, port, conns
end

local function connect(port, opts)
	local o = { timeout = 3 }
	for k, v in pairs(opts or {}) do o[k] = v end
	return H.connect(port, o)
end

-- A first connection that leaves a ticket in the loop's cache.
local function prime(port, opts)
	local conn = assert(connect(port, opts))
	assert(conn:send("first\n"))
	assert(conn:receive("*l"))
	conn:close()
end

-- Connects with early data (a line); returns the answer and info().
local function early(port, data, opts)
	local o = { early_data = data }
	for k, v in pairs(opts or {}) do o[k] = v end
	local conn, err, code = connect(port, o)
	if not conn then return nil, { err = err, code = code } end
	local line = conn:receive("*l")
	local info = conn:info()
	conn:close()
	return line, info
end

-- In memory: runs client and server handshakes until both are done.
local function pump(c, s)
	for _ = 1, 50 do
		local cok, _, ccode = c:handshake()
		s:feed(c:drain())
		local sok, serr, scode = s:handshake()
		c:feed(s:drain())
		if cok and sok then return true end
		if not sok and scode ~= "wantread" and scode ~= "wantwrite" then return nil, serr, scode end
		if not cok and ccode ~= "wantread" and ccode ~= "wantwrite" then return nil, "client", ccode end
	end
	return nil, "stuck"
end

local function mem_server(pol, extra)
	local o = { role = "server", certificate = P .. "server-chain.pem", key = P .. "server.key", policy = pol }
	for k, v in pairs(extra or {}) do o[k] = v end
	return assert(tls.session(o))
end

local function mem_client(extra)
	local o = { role = "client", server_name = "localhost", cafile = P .. "ca.pem" }
	for k, v in pairs(extra or {}) do o[k] = v end
	return assert(tls.session(o))
end

-- Session data with a ticket from a server made by make_server().
local function ticket(make_server)
	local c, s = mem_client(), make_server()
	assert(pump(c, s))
	s:send("x")
	c:feed(s:drain())
	assert(c:recv())
	return assert(c:session_data())
end

describe("early data", function()
	setup(function()
		P = H.pki()
	end)

	describe("in the policy", function()
		it("is denied by default", function()
			assert.equal("deny", tls.policy {}.early_data)
			assert.equal("deny", tls.policy { early_data = "deny" }.early_data)
		end)

		it("takes max_size, allow and replay_window, with defaults", function()
			local p = tls.policy { early_data = {} }
			assert.same({ max_size = 16384, replay_window = 60 }, p.early_data)
			local fn = function() return "accept" end
			p = tls.policy { early_data = { max_size = 100, allow = fn, replay_window = 5 } }
			assert.equal(100, p.early_data.max_size)
			assert.equal(fn, p.early_data.allow)
		end)

		it("raises for bad rules, naming them", function()
			assert.matches("early_data must be", H.error_of(tls.policy, { early_data = "accept" }))
			assert.matches("unknown rule 'max'", H.error_of(tls.policy, { early_data = { max = 1 } }))
			assert.matches("max_size", H.error_of(tls.policy, { early_data = { max_size = 0 } }))
			assert.matches("allow must be a function", H.error_of(tls.policy, { early_data = { allow = "yes" } }))
			assert.matches("needs resumption", H.error_of(tls.policy, { resumption = false, early_data = {} }))
			assert.matches("resumption must be", H.error_of(tls.policy, { resumption = "no" }))
		end)

		it("merges to what both allow: the smaller size, the stricter verdict", function()
			if not tls.policy {}.merge then return end -- Policy:merge comes with issue 4
			local a = tls.policy { early_data = { max_size = 100, allow = function() return "accept" end } }
			local b = tls.policy { early_data = { max_size = 50, allow = function() return "defer" end } }
			local m = a:merge(b)
			assert.equal(50, m.early_data.max_size)
			assert.equal("defer", m.early_data.allow("GET", {}))
			assert.equal("deny", a:merge(tls.policy {}).early_data)
			assert.is_false(a:merge { resumption = false }.resumption)
		end)
	end)

	describe("a luatls client and a luatls server", function()
		it("accept: the handler starts before the handshake is complete and reads the early bytes", function()
			local seen = {}
			local answer, info, conns = run(function()
				local _, port, conns = listen { policy = taking("accept", nil, seen) }
				prime(port)
				local answer, info = early(port, "GET /index\n")
				return answer, info, conns
			end)
			assert.equal("you said GET /index", answer)
			assert.equal("accepted", info.early_data)
			assert.is_true(info.resumed)
			local c = conns[2]
			assert.is_false(c.start.established) -- 0-RTT: started on the early data
			assert.equal("GET /index\n", c.early)
			assert.equal("GET /index", c.line)
			assert.is_false(c.info.established) -- the line came from the early bytes
			assert.is_true(c.after.established) -- send completed the handshake
			assert.equal("accepted", c.after.early_data)
			assert.equal(1, #seen)
			assert.equal("GET /index\n", seen[1].data)
			assert.equal("localhost", seen[1].info.server_name)
			assert.equal(11, seen[1].info.size)
			assert.is_false(seen[1].info.complete)
		end)

		it("accept: the policy's other rules run once the handshake completes, and can still refuse", function()
			local complete = 0
			local pol = tls.policy {
				check = function(info)
					if not info.version then return true end -- nothing to check yet
					complete = complete + 1
					return complete == 1, "only the first connection"
				end,
				early_data = { allow = function() return "accept" end },
			}
			local seen = {}
			local answer, info = run(function()
				local srv = assert(tls.listen({ port = 0, certificate = P .. "server-chain.pem", key = P .. "server.key",
					policy = pol, timeout = 3, ticket_key = tls.new_ticket_key() }, function(conn)
					local line = conn:receive("*l")
					local ok, err, code = conn:send("you said " .. tostring(line) .. "\n")
					seen[#seen + 1] = { line = line, ok = ok, err = err, code = code }
				end))
				local _, port = srv:address()
				prime(port)
				return early(port, "GET /x\n")
			end)
			assert.equal(2, #seen)
			assert.equal("GET /x", seen[2].line) -- read before the handshake completed
			assert.is_nil(seen[2].ok)
			assert.equal("policy", seen[2].code)
			assert.matches("only the first connection", seen[2].err)
			assert.is_nil(answer) -- the client got the refusal instead
			assert.is_false(info.established)
		end)

		it("defer: the handler starts once the handshake is complete, early bytes first", function()
			local answer, info, conns = run(function()
				local _, port, conns = listen { policy = taking("defer") }
				prime(port)
				local answer, info = early(port, "POST /pay\n")
				return answer, info, conns
			end)
			assert.equal("you said POST /pay", answer)
			assert.equal("accepted", info.early_data)
			local c = conns[2]
			assert.is_true(c.start.established)
			assert.equal("POST /pay\n", c.early)
		end)

		it("defers when the policy has no allow function", function()
			local conns = run(function()
				local _, port, conns = listen { policy = tls.policy { early_data = { max_size = 1000 } } }
				prime(port)
				early(port, "PUT /x\n")
				return conns
			end)
			assert.is_true(conns[2].start.established)
			assert.equal("PUT /x\n", conns[2].early)
		end)

		it("reject: the early bytes never reach the application, which is told so", function()
			local answer, info, conns = run(function()
				local _, port, conns = listen { policy = taking("reject"), timeout = 0.5 }
				prime(port)
				local answer, info = early(port, "DELETE /all\n", { timeout = 1 })
				return answer, info, conns
			end)
			assert.is_nil(answer) -- the server never read the line
			assert.equal("accepted", info.early_data) -- as far as TLS goes
			local c = conns[2]
			assert.is_nil(c.early)
			assert.equal("rejected", c.early_status)
			assert.matches("rejected by the policy", c.early_msg)
			assert.is_nil(c.line)
		end)

		-- GnuTLS 3.7.9 clients take a ticket without an early-data limit for
		-- one of 16 KiB: the client tries, the server refuses
		it("deny: the server refuses early data, the client says so and sends it after the handshake", function()
			local answer, info, conns = run(function()
				local _, port, conns = listen()
				prime(port)
				local answer, info = early(port, "GET /late\n")
				return answer, info, conns
			end)
			assert.equal("you said GET /late", answer) -- resent after the handshake
			assert.equal("rejected", info.early_data)
			assert.matches("did not accept", info.early_data_reason)
			assert.is_nil(conns[2].early)
			assert.equal("rejected", conns[2].early_status)
			assert.matches("policy early_data = \"deny\"", conns[2].early_msg, 1, true)
			assert.equal("GET /late", conns[2].line)
		end)

		it("reports a rejection without resending when told: early_data_resend = false", function()
			local answer, info, conns = run(function()
				local _, port, conns = listen { timeout = 0.5 }
				prime(port)
				local answer, info = early(port, "GET /x\n", { early_data_resend = false, timeout = 1 })
				return answer, info, conns
			end)
			assert.is_nil(answer)
			assert.equal("rejected", info.early_data)
			assert.is_nil(conns[2].line)
		end)

		it("sends early data after the handshake when there is no session to resume yet", function()
			local answer, info = run(function()
				local _, port = listen { policy = taking("accept") }
				return early(port, "GET /first\n")
			end)
			assert.equal("you said GET /first", answer)
			assert.equal("none", info.early_data)
			assert.matches("no session to resume", info.early_data_reason)
		end)

		it("refuses early data over the ticket's max_size with a clear reason, and sends it after the handshake", function()
			local big = ("x"):rep(200) .. "\n"
			local answer, info = run(function()
				local _, port = listen { policy = taking("accept", 100) }
				prime(port)
				return early(port, big)
			end)
			assert.equal("you said " .. big:sub(1, -2), answer)
			assert.equal("none", info.early_data)
			assert.matches("201 bytes of early data are more than the 100 bytes the server accepts",
				info.early_data_reason, 1, true)
		end)

		it("passes ALPN and server name to allow, so rules per protocol are a few lines", function()
			local seen = {}
			local infos = run(function()
				local _, port = listen { alpn = { "h2", "http/1.1" }, policy = taking(function(_, info)
					return info.alpn == "http/1.1" and "accept" or "reject"
				end, nil, seen) }
				prime(port, { alpn = { "http/1.1" } })
				local _, a = early(port, "GET /\n", { alpn = { "http/1.1" } })
				prime(port, { alpn = { "h2" } })
				local _, b = early(port, "GET /\n", { alpn = { "h2" }, timeout = 0.5 })
				return { a, b }
			end)
			assert.equal("accepted", infos[1].early_data)
			assert.equal("http/1.1", seen[1].info.alpn)
			assert.equal("h2", seen[2].info.alpn)
			assert.equal("localhost", seen[1].info.server_name)
		end)
	end)

	describe("anti-replay", function()
		local function replay_pair(pol, opts)
			opts = opts or {}
			opts.ticket_key = tls.new_ticket_key() -- a fresh context: a fresh anti-replay window
			local make = function() return mem_server(pol, opts) end
			local data = ticket(make)
			local client = mem_client { session = data, early_data = "POST /transfer?amount=100\n" }
			client:handshake()
			local flight = client:drain() -- ClientHello and the early data
			local first, second = make(), make()
			first:feed(flight)
			first:handshake()
			second:feed(flight)
			second:handshake()
			client:feed(first:drain())
			assert(client:handshake())
			first:feed(client:drain())
			assert(first:handshake())
			return first, second
		end

		it("accepts a first flight once and rejects the same first flight replayed", function()
			local first, second = replay_pair(taking("accept"))
			assert.equal("POST /transfer?amount=100\n", first:early_data())
			assert.equal("accepted", first:early_status())
			assert.is_nil(second:early_data())
			local status, reason = second:early_status()
			assert.equal("rejected", status)
			assert.matches("replay", reason)
			first:close() second:close()
		end)

		it("asks a pluggable anti-replay store, which sees each ClientHello once", function()
			local keys = {}
			local inner = cache.new { full = "refuse" }
			local store = { add = function(_, key, ttl)
				keys[#keys + 1] = { key = key, ttl = ttl }
				return inner:add(key, ttl)
			end }
			local first, second = replay_pair(taking("accept"), { anti_replay = store })
			assert.equal(2, #keys)
			assert.equal(keys[1].key, keys[2].key)
			assert.is_true(keys[1].ttl >= 1 and keys[1].ttl <= 60)
			assert.equal("accepted", first:early_status())
			assert.equal("rejected", (second:early_status()))
		end)

		it("refuses early data when the anti-replay store fails, rather than risk a replay", function()
			local store = { add = function() error("database down") end }
			local first = replay_pair(taking("accept"), { anti_replay = store })
			local status, reason = first:early_status()
			assert.equal("rejected", status)
			assert.matches("anti%-replay store failed", reason)
			assert.is_true(first:info().resumed)
		end)

		-- GnuTLS records ClientHellos per window; when a new window starts it
		-- forgets the old one and refuses early data on tickets issued before.
		it("refuses early data on a ticket issued before the current replay window", function()
			local pol = tls.policy { early_data = { replay_window = 1 } }
			local key = tls.new_ticket_key()
			local make = function() return mem_server(pol, { ticket_lifetime = 60, ticket_key = key }) end
			local data = ticket(make)
			local function try()
				local c, s = mem_client { session = data, early_data = "hi" }, make()
				assert(pump(c, s))
				return s:early_status()
			end
			assert.equal("accepted", (try()))
			os.execute("sleep 1.3")
			assert.equal("accepted", (try())) -- this one starts the next window
			local status, reason = try()
			assert.equal("rejected", status)
			assert.matches("older than the anti%-replay window", reason)
		end)

		it("fails the handshake with a clear reason when a client sends more than max_size", function()
			-- a ticket from a server that took 16 KiB, used at one that takes 10 bytes
			local key = tls.new_ticket_key()
			local data = ticket(function() return mem_server(taking("accept", 16384), { ticket_key = key }) end)
			local c = mem_client { session = data, early_data = ("y"):rep(100) }
			local s = mem_server(taking("accept", 10), { ticket_key = key })
			local ok, _, code = pump(c, s)
			assert.is_nil(ok)
			assert.equal("GNUTLS_E_UNEXPECTED_PACKET", code)
			assert.equal("accepted", (s:early_status()))
		end)

		it("says so when a luatls server gets more early data than its max_size", function()
			local failures = {}
			run(function()
				local port = H.free_port()
				local key = tls.new_ticket_key()
				local o = { port = port, ticket_key = key, policy = taking("accept", 16384),
					on_handshake_error = function(msg, code) failures[#failures + 1] = { msg, code } end }
				local big = listen(o)
				prime(port)
				big:close()
				tls.sleep(0.1)
				o.policy = taking("accept", 10)
				listen(o) -- the same port and key, a smaller max_size
				connect(port, { early_data = ("z"):rep(50) }) -- the first ticket allowed 16 KiB
			end)
			assert.equal(1, #failures)
			assert.equal("early_data", failures[1][2])
			assert.matches("more early data than the policy's max_size %(10 bytes%)", failures[1][1])
		end)
	end)

	describe("interop", function()
		local function gnutls_cli(port, args)
			return ("gnutls-cli --x509cafile=%s -p %d 127.0.0.1 --sni-hostname=localhost " ..
				"--verify-hostname=localhost %s"):format(f "ca.pem", port, args or "")
		end
		local function s_client(port, args)
			return ("openssl s_client -connect 127.0.0.1:%d -servername localhost -CAfile %s %s")
				:format(port, f "ca.pem", args or "")
		end

		-- gnutls-cli --resume: a first connection, then a resumed one with
		-- early data. The first closes once it has its ticket, and a server
		-- that is slow to be scheduled may find the second's early data
		-- before the first's close: its handler can start first. So the
		-- resumed connection is told by what it is, not by its place.
		local function with_gnutls_cli(pol)
			local dir = H.tmpdir()
			H.writefile(dir .. "/early", "GET /early\n")
			local rc, out, conns = run(function()
				local _, port, conns = listen { policy = pol, timeout = 1 }
				local rc, out = H.exec("sleep 2 | " .. gnutls_cli(port, "--resume --waitresumption --earlydata=" ..
					dir .. "/early")).wait(10)
				return rc, out, conns
			end)
			assert.equal(2, #conns, out)
			local resumed = {}
			for _, c in ipairs(conns) do
				if c.after.resumed then resumed[#resumed + 1] = c end
			end
			assert.equal(1, #resumed, out)
			return rc, out, resumed[1]
		end

		it("accepts gnutls-cli --earlydata as the policy says (accept)", function()
			local rc, out, c = with_gnutls_cli(taking("accept"))
			assert.matches("This is a resumed session", out, 1, true)
			assert.matches("you said GET /early", out, 1, true)
			assert.equal("GET /early\n", c.early)
			assert.is_false(c.start.established)
			assert.equal(0, rc, out)
		end)

		it("defers gnutls-cli --earlydata as the policy says (defer)", function()
			local _, out, c = with_gnutls_cli(taking("defer"))
			assert.matches("you said GET /early", out, 1, true)
			assert.is_true(c.start.established)
			assert.equal("GET /early\n", c.early)
		end)

		it("rejects gnutls-cli --earlydata as the policy says (reject, and deny)", function()
			local _, out, c = with_gnutls_cli(taking("reject"))
			assert.not_matches("you said GET /early", out, 1, true)
			assert.equal("rejected", c.early_status)
			_, out, c = with_gnutls_cli(tls.policy {})
			assert.not_matches("you said GET", out, 1, true)
			assert.equal("rejected", c.early_status)
			assert.matches("deny", c.early_msg)
		end)

		local function with_s_client(pol)
			local dir = H.tmpdir()
			H.writefile(dir .. "/early", "GET /openssl\n")
			return run(function()
				local _, port, conns = listen { policy = pol, timeout = 1 }
				local _, first = H.exec("sleep 1 | " .. s_client(port, "-sess_out " .. dir .. "/s")).wait(10)
				local _, out = H.exec("sleep 1 | " .. s_client(port, "-sess_in " .. dir .. "/s -early_data " ..
					dir .. "/early")).wait(10)
				return first, out, conns
			end, 30)
		end

		it("accepts openssl s_client -early_data (accept and defer)", function()
			local first, out, conns = with_s_client(taking("accept"))
			assert.matches("Max Early Data: 16384", first, 1, true)
			assert.matches("Early data was accepted", out, 1, true)
			assert.matches("you said GET /openssl", out, 1, true)
			assert.equal("GET /openssl\n", conns[2].early)
			_, out, conns = with_s_client(taking("defer"))
			assert.matches("Early data was accepted", out, 1, true)
			assert.matches("you said GET /openssl", out, 1, true)
			assert.is_true(conns[2].start.established)
		end)

		it("rejects openssl s_client -early_data (reject; deny offers no early data at all)", function()
			local _, out, conns = with_s_client(taking("reject"))
			assert.not_matches("you said GET", out, 1, true)
			assert.equal("rejected", conns[2].early_status)
			local first
			first, out = with_s_client(tls.policy {})
			assert.matches("Max Early Data: 0", first, 1, true)
			assert.matches("Early data was not sent", out, 1, true)
		end)

		it("sends 0-RTT to gnutls-serv --earlydata", function()
			local a, b = run(function()
				local port = H.free_port()
				H.start_peer(("gnutls-serv --echo -p %d --x509certfile=%s --x509keyfile=%s --earlydata " ..
					"--maxearlydata=16384"):format(port, f "server-chain.pem", f "server.key"), port)
				local conn = assert(connect(port))
				assert(conn:session_data(2))
				conn:close()
				local c2 = assert(connect(port, { early_data = "hello early\n" }))
				local a = c2:info()
				assert(c2:session_data(2)) -- the next ticket
				c2:close()
				local c3 = assert(connect(port, { early_data = "again\n" }))
				local b = c3:info()
				c3:close()
				return a, b
			end)
			assert.is_true(a.resumed, a.early_data_reason)
			assert.equal("accepted", a.early_data, a.early_data_reason)
			assert.equal("accepted", b.early_data, b.early_data_reason)
		end)

		it("sends 0-RTT to openssl s_server -early_data", function()
			local info, out = run(function()
				local port = H.free_port()
				local peer = H.start_peer(("sleep 20 | openssl s_server -accept 127.0.0.1:%d -cert %s -key %s " ..
					"-cert_chain %s -early_data -max_early_data 16384"):format(port, f "server.pem",
					f "server.key", f "int.pem"), port)
				local conn = assert(connect(port))
				assert(conn:session_data(2))
				conn:close()
				local c2 = assert(connect(port, { early_data = "zero rtt line\n" }))
				local info = c2:info()
				c2:close()
				tls.sleep(0.3)
				return info, peer.output()
			end)
			assert.is_true(info.resumed)
			assert.equal("accepted", info.early_data)
			assert.matches("Early data received:", out, 1, true)
			assert.matches("zero rtt line", out, 1, true)
		end)
	end)

	describe("examples/zero_rtt_server.lua", function()
		it("serves a GET from early data, and a POST only after the handshake", function()
			local get, post = run(function()
				local port = H.free_port()
				local lua = os.getenv("LUATLS_LUA") or "lua5.4"
				H.start_peer(("%s examples/zero_rtt_server.lua --cert %s --key %s --port %d")
					:format(lua, f "server-chain.pem", f "server.key", port), port)
				local function request(req)
					local conn = assert(connect(port, { early_data = req }))
					local body = conn:receive("*a")
					local info = conn:info()
					conn:close()
					return { body = body, early_data = info.early_data }
				end
				request("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n") -- a ticket
				local get = request("GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n")
				local post = request("POST /b HTTP/1.1\r\nHost: localhost\r\n\r\n")
				return get, post
			end)
			assert.equal("accepted", get.early_data)
			assert.matches("GET /a served from early data", get.body, 1, true)
			assert.matches("X-Early-Data: 1", get.body, 1, true)
			assert.equal("accepted", post.early_data)
			assert.matches("POST /b processed after the handshake", post.body, 1, true)
		end)
	end)
end)
