-- Session resumption: the stores (luatls.cache), the client session cache
-- of the loop, session data out and in, tickets (lifetime, a key shared by
-- several processes, GnuTLS's key rotation), the TLS 1.2 session-ID cache
-- and policy resumption = false; against luatls itself, gnutls-cli,
-- gnutls-serv, openssl s_client and s_server on 127.0.0.1.
local H = require "helper"
local tls = H.tls
local core = H.core
local cache = require "luatls.cache"

local P -- the test PKI folder, ending in "/"
local unpack = table.unpack or unpack

-- H.run keeping every result, nils included.
local function run(fn, timeout)
	local t = H.run(function()
		return (function(...) return { n = select("#", ...), ... } end)(fn())
	end, timeout)
	return unpack(t, 1, t.n)
end

local function f(name) return "'" .. P .. name .. "'" end

local TLS12 = tls.policy { max_version = "TLS1.2" }

local function listen(opts, handler)
	local o = { port = 0, certificate = P .. "server-chain.pem", key = P .. "server.key",
		handshake_timeout = 5, timeout = 5 }
	for k, v in pairs(opts or {}) do o[k] = v end
	local srv = assert(tls.listen(o, handler or function(conn)
		local line = conn:receive("*l")
		if line then conn:send("you said " .. line .. "\n") end
	end))
	local _, port = srv:address()
	return srv, port
end

local connect = H.connect

-- One exchange: a line out, the answer back (which also reads the TLS 1.3
-- ticket); returns the answer and info().
local function exchange(port, opts)
	local conn = assert(connect(port, opts))
	assert(conn:send("hello\n"))
	local line = conn:receive("*l")
	local info = conn:info()
	conn:close()
	return line, info
end

-- A store that records the calls made to it.
local function recording_store()
	local inner = cache.new()
	local calls = {}
	return {
		calls = calls,
		get = function(_, k) calls[#calls + 1] = "get" return inner:get(k) end,
		set = function(_, k, v, ttl) calls[#calls + 1] = "set" return inner:set(k, v, ttl) end,
		delete = function(_, k) calls[#calls + 1] = "delete" return inner:delete(k) end,
	}
end

local function count(list, what)
	local n = 0
	for _, v in ipairs(list) do if v == what then n = n + 1 end end
	return n
end

describe("luatls.cache", function()
	local now
	local function clock() return now end
	before_each(function() now = 1000 end)

	it("keeps a value until its time to live is over", function()
		local c = cache.new { clock = clock }
		assert.is_true(c:set("k", "v", 10))
		assert.equal("v", c:get("k"))
		now = 1009
		assert.equal("v", c:get("k"))
		now = 1010
		assert.is_nil(c:get("k"))
		assert.equal(0, c:len())
	end)

	it("deletes, and replaces a value set twice", function()
		local c = cache.new { clock = clock }
		c:set("k", "a", 10)
		c:set("k", "b", 10)
		assert.equal("b", c:get("k"))
		assert.equal(1, c:len())
		c:delete("k")
		assert.is_nil(c:get("k"))
	end)

	it("drops the oldest entry when full (expired ones first)", function()
		local c = cache.new { size = 3, clock = clock }
		c:set("a", 1, 100) c:set("b", 2, 5) c:set("c", 3, 100)
		c:set("d", 4, 100)
		assert.is_nil(c:get("a"))
		assert.equal(3, c:len())
		now = 1006 -- b expires: the next entry takes its place, c stays
		c:set("e", 5, 100)
		assert.equal(3, c:get("c"))
		assert.equal(5, c:get("e"))
		assert.is_nil(c:get("b"))
	end)

	it("adds a key once: add is true the first time, false while it lasts", function()
		local c = cache.new { clock = clock }
		assert.is_true(c:add("hello", 10))
		assert.is_false(c:add("hello", 10))
		now = 1011
		assert.is_true(c:add("hello", 10))
	end)

	it("refuses new entries when full and told to refuse (an anti-replay store must not forget)", function()
		local c = cache.new { size = 2, full = "refuse", clock = clock }
		assert.is_true(c:add("a", 10))
		assert.is_true(c:add("b", 10))
		local ok, err = pcall(c.add, c, "c", 10)
		assert.is_false(ok)
		assert.matches("full", err)
		assert.is_false(c:add("a", 10))
		now = 1011
		assert.is_true(c:add("c", 10))
	end)

	it("raises on wrong use", function()
		assert.matches("unknown option 'sise'", H.error_of(cache.new, { sise = 1 }))
		assert.matches("positive integer", H.error_of(cache.new, { size = 0 }))
		local c = cache.new()
		assert.matches("string expected", H.error_of(c.get, c, 1))
		assert.matches("seconds", H.error_of(c.set, c, "k", "v", -1))
		assert.matches("luatls.Cache %(0/10000 entries%)", tostring(c))
	end)
end)

describe("resumption", function()
	setup(function()
		P = H.pki()
	end)

	describe("a luatls client and a luatls server", function()
		it("resume a TLS 1.3 session from the loop's session cache on the second connection", function()
			local a, b = run(function()
				local _, port = listen()
				local _, a = exchange(port)
				local _, b = exchange(port)
				return a, b
			end)
			assert.equal("TLS1.3", a.version)
			assert.is_false(a.resumed)
			assert.is_true(b.resumed)
			assert.is_true(b.verified)
			assert.equal(2, b.peer_certificates)
		end)

		it("resume a TLS 1.2 session (the session data is there right after the handshake)", function()
			local a, b, data = run(function()
				local _, port = listen { policy = TLS12 }
				local conn = assert(connect(port, { session_cache = false }))
				local data = conn:session_data()
				conn:close()
				local _, b = exchange(port, { session = data, session_cache = false })
				local _, a = exchange(port)
				return a, b, data
			end)
			assert.is_string(data)
			assert.equal("TLS1.2", b.version)
			assert.is_true(b.resumed)
			assert.is_false(a.resumed) -- the cache held nothing: the connections had session_cache = false
		end)

		it("exports the session with conn:session_data() and resumes it with connect{ session = data }", function()
			local a, b = run(function()
				local _, port = listen()
				local conn = assert(connect(port, { session_cache = false }))
				local data = assert(conn:session_data(2)) -- waits for the TLS 1.3 ticket
				conn:close()
				local _, a = exchange(port, { session = data, session_cache = false })
				local _, b = exchange(port, { session_cache = false })
				return a, b
			end)
			assert.is_true(a.resumed)
			assert.is_false(b.resumed)
		end)

		it("says that a TLS 1.3 ticket needs a read first: nil, message, 'no_ticket'", function()
			-- in memory, where nothing arrives unless fed
			local server = assert(tls.session { role = "server", certificate = P .. "server-chain.pem", key = P .. "server.key" })
			local client = assert(tls.session { role = "client", server_name = "localhost", cafile = P .. "ca.pem" })
			for _ = 1, 10 do
				client:handshake()
				server:feed(client:drain())
				server:handshake()
				client:feed(server:drain())
			end
			assert.is_true(client:handshake())
			local data, msg, code = client:session_data()
			assert.is_nil(data)
			assert.equal("no_ticket", code)
			assert.matches("read from the connection first", msg)
			assert.equal(1, server:send("x")) -- the ticket went out before it
			client:feed(server:drain())
			assert.equal("x", client:recv())
			assert.is_string(client:session_data())
			server:close() client:close()
		end)

		it("uses a store given as session_cache (get, set, delete), e.g. to keep sessions across runs", function()
			local store = recording_store()
			local a = run(function()
				local _, port = listen()
				exchange(port, { session_cache = store })
				return select(2, exchange(port, { session_cache = store }))
			end)
			local b = run(function() -- a fresh loop: only the store remembers
				local _, port = listen()
				return select(2, exchange(port, { session_cache = store }))
			end)
			assert.is_true(a.resumed)
			assert.is_false(b.resumed) -- another server: another ticket key
			assert.is_true(count(store.calls, "get") >= 3)
			assert.is_true(count(store.calls, "set") >= 2)
			assert.is_true(count(store.calls, "delete") >= 1) -- a ticket is taken for one connection
		end)

		it("keys the cache by host, port and server name: another server name does not resume", function()
			local a, b = run(function()
				local _, port = listen()
				exchange(port)
				local _, a = exchange(port, { server_name = "localhost", verify_hostname = false,
					host = "127.0.0.1" })
				local _, b = exchange(port)
				return a, b
			end)
			assert.is_false(a.resumed)
			assert.is_true(b.resumed)
		end)

		it("does not resume a session verified under other trust settings", function()
			local b = run(function()
				local _, port = listen()
				exchange(port, { verify = false })
				return select(2, exchange(port))
			end)
			assert.is_false(b.resumed)
			assert.is_true(b.verified)
		end)

		it("checks a resumed server's chain again: session data from an unverified connection fails with 'verify'", function()
			local conn, msg, code = run(function()
				local _, port = listen { certificate = P .. "untrusted-chain.pem", key = P .. "untrusted.key" }
				local c = assert(connect(port, { verify = false, session_cache = false }))
				local data = assert(c:session_data(2))
				c:close()
				return connect(port, { session = data, session_cache = false })
			end)
			assert.is_nil(conn)
			assert.equal("verify", code)
			assert.matches("resumed session", msg)
		end)

		it("turns resumption off with tls.policy{ resumption = false } (client side)", function()
			local off = tls.policy { resumption = false }
			local b, data, msg, code, conflict = run(function()
				local _, port = listen()
				exchange(port, { policy = off })
				local _, b = exchange(port, { policy = off })
				local conn = assert(connect(port, { policy = off }))
				conn:receive(0)
				local data, msg, code = conn:session_data(1)
				conn:close()
				local conflict = H.error_of(tls.connect, { host = "localhost", port = port,
					policy = off, session = "x" })
				return b, data, msg, code, conflict
			end)
			assert.is_false(b.resumed)
			assert.is_nil(data)
			assert.equal("resumption", code)
			assert.matches("resumption = false", msg, 1, true)
			assert.matches("conflicts", conflict)
		end)

		it("turns resumption off with tls.policy{ resumption = false } (server side)", function()
			local b = run(function()
				local _, port = listen { policy = tls.policy { resumption = false } }
				exchange(port)
				return select(2, exchange(port))
			end)
			assert.is_false(b.resumed)
		end)

		it("stops resuming once the server's ticket_lifetime is over", function()
			local a, b = run(function()
				local _, port = listen { ticket_lifetime = 1 }
				local conn = assert(connect(port, { session_cache = false }))
				local data = assert(conn:session_data(2))
				conn:close()
				local _, a = exchange(port, { session = data, session_cache = false })
				tls.sleep(2.2)
				local _, b = exchange(port, { session = data, session_cache = false })
				return a, b
			end)
			assert.is_true(a.resumed)
			assert.is_false(b.resumed)
		end)

		it("refuses a ticket_key that is not 64 bytes with nil, message, 'ticket_key'", function()
			local dir = H.tmpdir()
			H.writefile(dir .. "/short", "c2hvcnQ=\n")
			local srv, msg, code = run(function()
				return tls.listen({ port = 0, certificate = P .. "server-chain.pem", key = P .. "server.key",
					ticket_key = dir .. "/short" }, function() end)
			end)
			assert.is_nil(srv)
			assert.equal("ticket_key", code)
			assert.matches("64 bytes", msg)
			local key = tls.new_ticket_key()
			assert.matches("^[%w+/]+=*\n$", key)
			assert.equal(88, #key:gsub("%s", ""))
		end)
	end)

	describe("a ticket key shared by several processes", function()
		local script = [[
local tls = require "luatls"
local srv = assert(tls.listen({ port = tonumber(arg[1]), certificate = arg[2] .. "server-chain.pem",
	key = arg[2] .. "server.key", ticket_key = arg[3], ticket_lifetime = tonumber(arg[4] or "") },
	function(conn) local l = conn:receive("*l") if l then conn:send("other process: " .. l .. "\n") end end))
tls.run()
]]
		local function other_process(port, keyfile, lifetime)
			local dir = H.tmpdir()
			H.writefile(dir .. "/server.lua", script)
			local lua = os.getenv("LUATLS_LUA") or "lua5.4"
			return H.start_peer(("%s %s/server.lua %d %s %s %s"):format(lua, dir, port, P, keyfile,
				tostring(lifetime or "")), port)
		end

		it("lets a session from one process resume in another (and not with another key)", function()
			local dir = H.tmpdir()
			H.writefile(dir .. "/key", tls.new_ticket_key())
			H.writefile(dir .. "/other", tls.new_ticket_key())
			local same, other, line = run(function()
				local _, port = listen { ticket_key = dir .. "/key" }
				local conn = assert(connect(port, { session_cache = false }))
				local data = assert(conn:session_data(2))
				conn:close()
				local p2, p3 = H.free_port(), H.free_port()
				other_process(p2, dir .. "/key")
				other_process(p3, dir .. "/other")
				local line, same = exchange(p2, { session = data, session_cache = false })
				local _, other = exchange(p3, { session = data, session_cache = false })
				return same, other, line
			end, 30)
			assert.equal("other process: hello", line)
			assert.is_true(same.resumed)
			assert.is_false(other.resumed)
		end)

		it("does not resume between servers that share the key but not the ticket_lifetime", function()
			local dir = H.tmpdir()
			H.writefile(dir .. "/key", tls.new_ticket_key())
			local other = run(function()
				local _, port = listen { ticket_key = dir .. "/key", ticket_lifetime = 3600 }
				local conn = assert(connect(port, { session_cache = false }))
				local data = assert(conn:session_data(2))
				conn:close()
				local p2 = H.free_port()
				other_process(p2, dir .. "/key", 7200) -- another rotation period, another derived key
				return select(2, exchange(p2, { session = data, session_cache = false }))
			end, 30)
			assert.is_false(other.resumed)
		end)

		-- GnuTLS derives the key it encrypts tickets with from the master key
		-- and the time, in periods of 3 x ticket_lifetime, and still decrypts
		-- with the previous period's: a ticket resumes across a rotation.
		it("resumes a ticket issued just before GnuTLS rotates the key, in this process and another", function()
			local dir = H.tmpdir()
			H.writefile(dir .. "/key", tls.new_ticket_key())
			local here, there = run(function()
				local _, port = listen { ticket_key = dir .. "/key", ticket_lifetime = 2 }
				local p2 = H.free_port()
				other_process(p2, dir .. "/key", 2)
				local period = 6
				local phase = os.time() % period
				tls.sleep((period - phase - 1) % period) -- into the last second of a period
				local conn = assert(connect(port, { session_cache = false }))
				local data = assert(conn:session_data(2))
				conn:close()
				tls.sleep(1.2) -- into the next period
				local _, here = exchange(port, { session = data, session_cache = false })
				local _, there = exchange(p2, { session = data, session_cache = false })
				return here, there
			end, 30)
			assert.is_true(here.resumed)
			assert.is_true(there.resumed)
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

		it("resumes gnutls-cli --resume (TLS 1.3 ticket)", function()
			local rc, out = run(function()
				local _, port = listen()
				return H.exec("(printf 'hi\\n'; sleep 1) | " .. gnutls_cli(port, "--resume --waitresumption")).wait(10)
			end)
			assert.equal(0, rc, out)
			assert.matches("This is a resumed session", out, 1, true)
			assert.matches("you said hi", out, 1, true)
		end)

		it("resumes gnutls-cli --resume over TLS 1.2", function()
			local rc, out = run(function()
				local _, port = listen()
				return H.exec("(printf 'hi\\n'; sleep 1) | " .. gnutls_cli(port,
					"--resume --priority=NORMAL:-VERS-ALL:+VERS-TLS1.2")).wait(10)
			end)
			assert.equal(0, rc, out)
			assert.matches("This is a resumed session", out, 1, true)
		end)

		-- openssl s_client -no_ticket resumes by session ID only (gnutls-cli
		-- 3.7.9 --noticket still resumed TLS 1.2 through a ticket here)
		local function session_id_resumption(store)
			local dir = H.tmpdir()
			return run(function()
				local _, port = listen { session_cache = store }
				local args = "-ign_eof -tls1_2 -no_ticket -sess_%s " .. dir .. "/s12"
				local _, first = H.exec("(printf 'hi\\n'; sleep 1) | " .. s_client(port, args:format("out"))).wait(10)
				local _, second = H.exec("(printf 'hi\\n'; sleep 1) | " .. s_client(port, args:format("in"))).wait(10)
				return first, second
			end, 30)
		end

		it("resumes openssl s_client -tls1_2 -no_ticket from the session-ID cache, a pluggable store", function()
			local store = recording_store()
			local first, second = session_id_resumption(store)
			assert.matches("New, TLSv1.2", first, 1, true)
			assert.matches("Reused, TLSv1.2", second, 1, true)
			assert.equal(1, count(store.calls, "set"))
			assert.equal(1, count(store.calls, "get"))
		end)

		it("does not resume by session ID when the server's session_cache is false", function()
			local _, second = session_id_resumption(false)
			assert.matches("New, TLSv1.2", second, 1, true)
		end)

		it("resumes openssl s_client -sess_out / -sess_in (TLS 1.3 and TLS 1.2)", function()
			local dir = H.tmpdir()
			local outs = run(function()
				local _, port = listen()
				local outs = {}
				for i, args in ipairs { "-sess_out " .. dir .. "/s13", "-sess_in " .. dir .. "/s13",
					"-tls1_2 -sess_out " .. dir .. "/s12", "-tls1_2 -sess_in " .. dir .. "/s12" } do
					local _, out = H.exec("(printf 'hi\\n'; sleep 1) | " .. s_client(port, "-ign_eof " .. args)).wait(10)
					outs[i] = out
				end
				return outs
			end, 40)
			assert.matches("New, TLSv1.3", outs[1], 1, true)
			assert.matches("Reused, TLSv1.3", outs[2], 1, true)
			assert.matches("New, TLSv1.2", outs[3], 1, true)
			assert.matches("Reused, TLSv1.2", outs[4], 1, true)
			assert.matches("you said hi", outs[4], 1, true)
		end)

		it("resumes with gnutls-serv (TLS 1.3 and TLS 1.2)", function()
			local a, b, c = run(function()
				local port = H.free_port()
				H.start_peer(("gnutls-serv --echo -p %d --x509certfile=%s --x509keyfile=%s")
					:format(port, f "server-chain.pem", f "server.key"), port)
				local _, a = exchange(port)
				local _, b = exchange(port)
				assert.is_true(b.resumed)
				assert.equal("TLS1.3", b.version)
				local _, c = exchange(port, { policy = TLS12 })
				local _, d = exchange(port, { policy = TLS12 })
				return a, c, d
			end)
			assert.is_false(a.resumed)
			assert.is_false(b.resumed) -- another policy: another cache entry
			assert.is_true(c.resumed)
			assert.equal("TLS1.2", c.version)
		end)

		it("resumes with openssl s_server", function()
			local a, b = run(function()
				local port = H.free_port()
				H.start_peer(("openssl s_server -accept 127.0.0.1:%d -cert %s -key %s -cert_chain %s -rev")
					:format(port, f "server.pem", f "server.key", f "int.pem"), port)
				local la, a = exchange(port)
				local _, b = exchange(port)
				assert.equal("olleh", la)
				return a, b
			end)
			assert.is_false(a.resumed)
			assert.is_true(b.resumed)
			assert.equal(2, b.peer_certificates)
		end)
	end)
end)
