-- luatls.Loop and luatls.Watcher (the libev reactor), and the rules of the
-- scheduler built on them.
local H = require "helper"
local tls, core = H.tls, H.core
local loop = require "luatls.loop"

-- The pid of this process (not of a shell it starts).
local function mypid()
	local f = assert(io.open("/proc/self/stat", "rb"))
	local pid = f:read("*l"):match("^(%d+)")
	f:close()
	return pid
end

describe("luatls.Loop", function()
	it("is made by core.loop over the shared loop, or a loop of its own with new = true", function()
		local shared, own = core.loop(), core.loop { new = true }
		assert.equal("luatls.Loop", getmetatable(shared).__name)
		assert.matches("shared", tostring(shared), 1, true)
		assert.matches("own", tostring(own), 1, true)
		own:close()
		shared:close()
	end)

	it("raises for an unknown option, naming it", function()
		assert.matches("bogus", H.error_of(core.loop, { bogus = true }), 1, true)
	end)

	it("has a __tostring naming the type", function()
		local lp = core.loop { new = true }
		assert.matches("luatls.Loop", tostring(lp), 1, true)
		lp:close()
		assert.matches("closed", tostring(lp), 1, true)
	end)

	it("reports the current time", function()
		local lp = core.loop { new = true }
		assert.is_true(math.abs(lp:now() - os.time()) < 5)
		lp:close()
	end)

	it("returns 0 from a step with nothing ready, and the loop's time after the wait", function()
		local lp = core.loop { new = true }
		local out = {}
		assert.equal(0, lp:step(0, out))
		local before = lp:now()
		local n, now = lp:step(0.02, out)
		assert.equal(0, n)
		assert.is_true(now >= before + 0.015) -- the wait is in it
		assert.is_true(now <= lp:now())
		assert.is_nil(out[1])
		lp:close()
	end)

	it("bounds a step by an absolute loop time as well, the nearer of it and the timeout", function()
		local lp = core.loop { new = true }
		local out = {}
		local before = lp:now()
		local n, now = lp:step(nil, out, before + 0.03)
		assert.equal(0, n)
		assert.is_true(now >= before + 0.025) -- it waited until then
		before = lp:now()
		n, now = lp:step(0.02, out, before + 60) -- the timeout is nearer
		assert.equal(0, n)
		assert.is_true(now >= before + 0.015 and now < before + 30)
		before = lp:now()
		n, now = lp:step(60, out, before - 1) -- a time already past: a poll
		assert.equal(0, n)
		assert.is_true(now < before + 30)
		assert.matches("number expected", H.error_of(lp.step, lp, 0, out, "soon"), 1, true)
		assert.matches("got nan", H.error_of(lp.step, lp, 0, out, 0 / 0), 1, true)
		assert.matches("got nan", H.error_of(lp.step, lp, 0 / 0, out), 1, true)
		lp:close()
	end)

	it("reports a timer watcher by its id when it fires, once", function()
		local lp = core.loop { new = true }
		local w = lp:timer(42)
		w:start(0.01)
		assert.is_true(w:active())
		local out = {}
		assert.equal(1, lp:step(2, out))
		assert.equal(42, out[1])
		assert.is_false(w:active())
		assert.equal(0, lp:step(0.02, {}))
		w:close()
		lp:close()
	end)

	it("reports an io watcher when its fd is ready, and disarms it", function()
		local lp = core.loop { new = true }
		local lsock = assert(core.tcp_listen("127.0.0.1", 0))
		local _, port = lsock:local_address()
		local w = lp:io(7, lsock:fd(), "r")
		w:start()
		local out = {}
		assert.equal(0, lp:step(0, out))
		local sock = assert(core.tcp_connect("127.0.0.1", port))
		assert.equal(1, lp:step(2, out))
		assert.equal(7, out[1])
		assert.is_false(w:active())
		w:close()
		sock:close()
		lsock:close()
		lp:close()
	end)

	it("changes an io watcher's direction with set, keeping its fd when given nil", function()
		local lp = core.loop { new = true }
		local lsock = assert(core.tcp_listen("127.0.0.1", 0))
		local _, port = lsock:local_address()
		local sock = assert(core.tcp_connect("127.0.0.1", port))
		local peer = H.wait_accept and H.wait_accept(lsock) or nil
		local w = lp:io(5, sock:fd(), "r")
		w:start()
		local out = {}
		assert.equal(0, lp:step(0.05, out)) -- nothing to read
		w:set(nil, "w")
		assert.is_false(w:active()) -- set disarms; start arms again
		w:start()
		assert.equal(1, lp:step(2, out)) -- a connected socket is writable
		assert.equal(5, out[1])
		assert.has_error(function() w:set(nil, "x") end)
		w:close()
		sock:close()
		if peer then peer:close() end
		lsock:close()
		lp:close()
	end)

	it("reports an io watcher whose deadline passes first as -id, and disarms it", function()
		local lp = core.loop { new = true }
		local lsock = assert(core.tcp_listen("127.0.0.1", 0))
		local w = lp:io(7, lsock:fd(), "r")
		w:start(0.05)
		assert.is_true(w:active())
		local out = {}
		local n = 0
		for _ = 1, 50 do
			n = lp:step(0.1, out)
			if n > 0 then break end
		end
		assert.equal(1, n)
		assert.equal(-7, out[1])
		assert.is_false(w:active())
		w:close()
		lsock:close()
		lp:close()
	end)

	it("takes an absolute deadline with start_by, reported as -id when it passes first", function()
		local lp = core.loop { new = true }
		local lsock = assert(core.tcp_listen("127.0.0.1", 0))
		local w = lp:io(7, lsock:fd(), "r")
		local out = {}
		local before = lp:now()
		w:start_by(before + 0.05)
		assert.is_true(w:active())
		local n, now = 0, nil
		for _ = 1, 50 do
			n, now = lp:step(0.1, out)
			if n > 0 then break end
		end
		assert.equal(1, n)
		assert.equal(-7, out[1])
		assert.is_true(now >= before + 0.045)
		assert.is_false(w:active())
		-- a deadline already past fires at the next step
		w:start_by(lp:now() - 1)
		assert.equal(1, lp:step(1, out))
		assert.equal(-7, out[1])
		assert.matches("number expected", H.error_of(w.start_by, w), 1, true)
		assert.matches("got nan", H.error_of(w.start_by, w, 0 / 0), 1, true)
		assert.matches("got nan", H.error_of(w.start, w, 0 / 0), 1, true)
		local t = lp:timer(8)
		assert.matches("not an io watcher", H.error_of(t.start_by, t, lp:now() + 1), 1, true)
		t:close()
		w:close()
		lsock:close()
		lp:close()
	end)

	it("reports an io watcher ready before its deadline once, as id", function()
		local lp = core.loop { new = true }
		local lsock = assert(core.tcp_listen("127.0.0.1", 0))
		local _, port = lsock:local_address()
		local w = lp:io(3, lsock:fd(), "r")
		w:start(0.2)
		local sock = assert(core.tcp_connect("127.0.0.1", port))
		local out = {}
		assert.equal(1, lp:step(2, out))
		assert.equal(3, out[1])
		-- the deadline went with it: nothing fires after it would have passed
		assert.equal(0, lp:step(0.3, out))
		w:close()
		sock:close()
		lsock:close()
		lp:close()
	end)

	it("refuses watcher ids that are not positive", function()
		local lp = core.loop { new = true }
		assert.has_error(function() lp:io(0, 0, "r") end, "bad argument #1 to 'io' (watcher ids are positive integers)")
		assert.has_error(function() lp:timer(-3) end, "bad argument #1 to 'timer' (watcher ids are positive integers)")
		lp:close()
	end)

	it("reports a signal watcher when the signal arrives", function()
		local lp = core.loop()
		local w = lp:signal(9, core.signals.SIGHUP)
		w:start()
		assert.is_true(w:active())
		os.execute("kill -HUP " .. mypid())
		local out = {}
		local n = 0
		for _ = 1, 50 do
			n = lp:step(0.05, out)
			if n > 0 then break end
		end
		w:close()
		lp:close()
		assert.equal(1, n)
		assert.equal(9, out[1])
	end)

	it("can be closed twice", function()
		local lp = core.loop { new = true }
		lp:close()
		assert.has_no.errors(function() lp:close() end)
		assert.matches("luatls.Loop (closed)", tostring(lp), 1, true)
	end)

	it("raises 'loop is closed' for a method after close", function()
		local lp = core.loop { new = true }
		lp:close()
		assert.matches("loop is closed", H.error_of(lp.now, lp), 1, true)
		assert.matches("loop is closed", H.error_of(lp.step, lp, 0, {}), 1, true)
		assert.matches("loop is closed", H.error_of(lp.timer, lp, 1), 1, true)
		assert.matches("loop is closed", H.error_of(lp.io, lp, 1, 0, "r"), 1, true)
		assert.matches("loop is closed", H.error_of(lp.signal, lp, 1, core.signals.SIGHUP), 1, true)
	end)

	it("raises for a bad direction or a missing table, naming the argument", function()
		local lp = core.loop { new = true }
		assert.matches("#4", H.error_of(lp.io, lp, 1, 0, "x"), 1, true)
		assert.matches("#3", H.error_of(lp.step, lp, 0), 1, true)
		lp:close()
	end)

	it("is collected without close, with armed watchers, in the same cycle as them", function()
		for i = 1, 200 do
			local lp = core.loop { new = true }
			local t = lp:timer(i)
			t:start(60)
			local w = lp:io(i, 0, "r")
			if i % 2 == 0 then w:start() end
		end
		collectgarbage("collect")
		collectgarbage("collect")
		local lp = core.loop { new = true }
		assert.equal(0, lp:step(0, {}))
		lp:close()
	end)

	it("has __close and __gc metamethods", function()
		local mt = getmetatable(core.loop { new = true })
		assert.is_function(mt.__gc)
		assert.is_function(mt.__close)
		if _VERSION == "Lua 5.4" then
			local f = assert(load([[
				local lp = ...
				do local x <close> = lp end
				return tostring(lp)
			]]))
			assert.matches("closed", f(core.loop { new = true }), 1, true)
		end
	end)
end)

describe("luatls.Watcher", function()
	it("has a __tostring naming the type, the kind and the id", function()
		local lp = core.loop { new = true }
		local w = lp:timer(5)
		assert.equal("luatls.Watcher", getmetatable(w).__name)
		assert.matches("luatls.Watcher", tostring(w), 1, true)
		assert.matches("timer 5", tostring(w), 1, true)
		w:close()
		assert.matches("closed", tostring(w), 1, true)
		lp:close()
	end)

	it("can be stopped before it fires", function()
		local lp = core.loop { new = true }
		local w = lp:timer(1)
		w:start(0.01)
		w:stop()
		assert.is_false(w:active())
		assert.equal(0, lp:step(0.05, {}))
		w:close()
		lp:close()
	end)

	it("raises for set on a watcher that is not an io watcher", function()
		local lp = core.loop { new = true }
		local w = lp:timer(1)
		assert.matches("not an io watcher", H.error_of(w.set, w, 0, "r"), 1, true)
		w:close()
		lp:close()
	end)

	it("raises for a timer started without its delay", function()
		local lp = core.loop { new = true }
		local w = lp:timer(1)
		assert.matches("number expected", H.error_of(w.start, w), 1, true)
		w:close()
		lp:close()
	end)

	it("can be closed twice", function()
		local lp = core.loop { new = true }
		local w = lp:timer(1)
		w:start(10)
		w:close()
		assert.has_no.errors(function() w:close() end)
		assert.matches("closed", tostring(w), 1, true)
		lp:close()
	end)

	it("raises 'watcher is closed' for a method after close", function()
		local lp = core.loop { new = true }
		local w = lp:io(1, 0, "r")
		w:close()
		for _, m in ipairs { "start", "stop", "active" } do
			assert.matches("watcher is closed", H.error_of(w[m], w), 1, true)
		end
		assert.matches("watcher is closed", H.error_of(w.set, w, 0, "r"), 1, true)
		lp:close()
	end)

	it("stays usable after its loop object is closed, and closes cleanly after it", function()
		local lp = core.loop { new = true }
		local w = lp:timer(1)
		lp:close()
		w:start(10)
		assert.is_true(w:active())
		w:stop()
		w:close()
		collectgarbage("collect")
	end)

	it("is collected without close", function()
		local lp = core.loop { new = true }
		for i = 1, 200 do
			local w = lp:timer(i)
			w:start(60)
			lp:io(i, 0, "r"):start()
		end
		collectgarbage("collect")
		collectgarbage("collect")
		assert.equal(0, lp:step(0, {}))
		lp:close()
	end)
end)

-- A server session over an accepted socket, and a client session over the
-- socket that dialled it, both over loop lp; the client sends nothing yet.
-- Returns sess, ssock, csess, csock and an io watcher (id 9) on the
-- server's socket, waiting for dir.
local function tls_pair(lp, dir, server_options, client_priority)
	local P = H.pki()
	local lsock = assert(core.tcp_listen("127.0.0.1", 0))
	local _, port = lsock:local_address()
	local csock = assert(core.tcp_connect("127.0.0.1", port))
	local lw = lp:io(1, lsock:fd(), "r")
	lw:start(5)
	assert.equal(1, lp:step(5, {}))
	lw:close()
	local ssock = assert(lsock:accept())
	lsock:close()
	local sctx = core.context("server")
	assert(sctx:add_keypair(H.readfile(P .. "server-chain.pem"), H.readfile(P .. "server.key")))
	local cctx = core.context("client")
	assert(cctx:trust_pem(H.readfile(P .. "ca.pem")))
	if client_priority then assert(cctx:priority(client_priority)) end
	local sopts = { fd = ssock:fd() }
	for k, v in pairs(server_options or {}) do sopts[k] = v end
	local sess = core.session(sctx, sopts)
	local csess = core.session(cctx, { fd = csock:fd(), server_name = "localhost", hostname = "localhost" })
	return sess, ssock, csess, csock, lp:io(9, ssock:fd(), dir)
end

local function close_all(objects)
	for _, o in ipairs(objects) do o:close() end
end

-- Runs the loop (and the client's handshake, given csess) until a
-- watcher fires, for 4 s at most: returns what fired (nil for nothing),
-- how many fired, and whether the client finished.
local function until_fired(lp, csess)
	local out, client_done = {}, false
	for _ = 1, 200 do
		if csess and not client_done then client_done = csess:handshake() == true end
		local n = lp:step(0.02, out)
		if n > 0 then break end
	end
	local n = #out
	if csess then return out[1], n, client_done end
	return out[1], n
end

describe("an io watcher driving a server handshake (w:drive)", function()
	it("makes the attempts itself and fires once the handshake is over, which sess:handshake() reports", function()
		local lp = core.loop { new = true }
		local sess, ssock, csess, csock, w = tls_pair(lp, "w")
		assert.is_false(w:drive(sess, 5)) -- no ClientHello yet: armed
		assert.is_true(w:active())
		-- once, at the end: not for each flight
		assert.same({ 9, 1, true }, { until_fired(lp, csess) })
		assert.is_false(w:active())
		assert.is_true(sess:handshake())
		assert.is_true(sess:handshake()) -- and stays done
		assert.equal("TLS1.3", sess:info().version)
		-- the watcher waits for writing again, as before the drive
		w:start()
		assert.same({ 9, 1 }, { until_fired(lp) })
		close_all { w, sess, ssock, csess, csock, lp }
	end)

	it("waits for the direction it is given before its first attempt", function()
		local lp = core.loop { new = true }
		local sess, ssock, csess, csock, w = tls_pair(lp, "r")
		assert.is_false(w:drive(sess, 5, "r"))
		assert.is_true(w:active())
		local fired, _, client_done = until_fired(lp, csess)
		assert.equal(9, fired)
		assert.is_true(client_done)
		assert.is_true(sess:handshake())
		assert.matches("invalid option 'x'", H.error_of(w.drive, w, sess, 5, "x"), 1, true)
		close_all { w, sess, ssock, csess, csock, lp }
	end)

	it("drives a session with a session store when its ClientHello gets TLS 1.3, and hands TLS 1.2 back to Lua", function()
		local calls = 0
		local store = {
			get = function() calls = calls + 1 end,
			set = function() calls = calls + 1 return true end,
			delete = function() calls = calls + 1 return true end,
		}
		local lp = core.loop { new = true }
		for _, version in ipairs { "TLS1.3", "TLS1.2" } do
			local sess, ssock, csess, csock, w = tls_pair(lp, "r", { session_cache = store },
				"NORMAL:-VERS-ALL:+VERS-" .. version)
			assert.is_false(w:drive(sess, 5)) -- no ClientHello yet: armed
			local fired, _, client_done = until_fired(lp, csess)
			assert.equal(9, fired)
			if version == "TLS1.3" then
				assert.is_true(client_done) -- driven to the end: TLS 1.3 never calls the store
				assert.is_true(sess:handshake())
				assert.equal("TLS1.3", sess:info().version)
				assert.equal(0, calls)
			else
				-- handed back on the hello, which it looked at: Lua goes on
				assert.is_false(client_done)
				assert.is_true(#sess:offered().suites > 0)
				assert.is_nil(w:drive(sess, 5, "r"))
				local ok
				for _ = 1, 200 do
					ok = sess:handshake()
					if csess:handshake() == true and ok == true then break end
					lp:step(0.01, {})
				end
				assert.is_true(ok)
				assert.equal("TLS1.2", sess:info().version)
			end
			close_all { w, sess, ssock, csess, csock }
		end
		lp:close()
	end)

	it("waits for the whole ClientHello before it decides, for a session with a session store", function()
		local lp = core.loop { new = true }
		local sess, ssock, csess, csock, w = tls_pair(lp, "r", { session_cache = require("luatls.cache").new() })
		csess:close()
		local client = core.session(core.context("client"), {}) -- in memory: its hello, by hand
		client:handshake()
		local hello = client:drain()
		assert.is_false(w:drive(sess, 5))
		assert(csock:send(hello:sub(1, 100)))
		for _ = 1, 10 do assert.equal(0, lp:step(0.01, {})) end
		assert.is_true(w:active())
		local data, _, code = csock:recv() -- no answer to half a hello
		assert.is_nil(data)
		assert.equal("wantread", code)
		assert(csock:send(hello:sub(101)))
		local got
		for _ = 1, 200 do -- the watcher answers it: the server's flight comes
			lp:step(0.01, {})
			got = csock:recv()
			if got then break end
		end
		assert.is_string(got)
		assert.equal(22, got:byte(1)) -- a handshake record: the ServerHello
		assert.is_true(w:active())
		close_all { w, sess, ssock, client, csock, lp }
	end)

	it("hands a session with a session store back to Lua when the first bytes are no ClientHello", function()
		local lp = core.loop { new = true }
		local sess, ssock, csess, csock, w = tls_pair(lp, "r", { session_cache = require("luatls.cache").new() })
		assert.is_false(w:drive(sess, 5))
		assert(csock:send("this is no TLS record, not at all\r\n"))
		assert.same({ 9, 1 }, { until_fired(lp) })
		local ok, msg, code = sess:handshake() -- Lua's attempt: GnuTLS judges the bytes
		assert.is_nil(ok)
		assert.is_string(msg)
		assert.matches("^GNUTLS_E_", code)
		close_all { w, sess, ssock, csess, csock, lp }
	end)

	it("reports a failed handshake through sess:handshake(), with the usual message and code", function()
		local lp = core.loop { new = true }
		local sess, ssock, csess, csock, w = tls_pair(lp, "r")
		assert.is_false(w:drive(sess, 5))
		assert(csock:send("this is no TLS record, not at all\r\n"))
		assert.same({ 9, 1 }, { until_fired(lp) })
		local ok, msg, code = sess:handshake()
		assert.is_nil(ok)
		assert.is_string(msg)
		assert.matches("^GNUTLS_E_", code)
		close_all { w, sess, ssock, csess, csock, lp }
	end)

	it("fires as -id when the deadline passes first, and leaves the handshake to Lua", function()
		local lp = core.loop { new = true }
		local sess, ssock, csess, csock, w = tls_pair(lp, "r")
		assert.is_false(w:drive(sess, 0.05))
		assert.same({ -9, 1 }, { until_fired(lp) })
		assert.is_false(w:active())
		local ok, _, code = sess:handshake() -- still waiting for the client
		assert.is_nil(ok)
		assert.equal("wantread", code)
		close_all { w, sess, ssock, csess, csock, lp }
	end)

	it("returns nil for a session it cannot drive: a client's, one with a hook, one in memory", function()
		local lp = core.loop { new = true }
		local sess, ssock, csess, csock, w = tls_pair(lp, "r")
		assert.is_nil(w:drive(csess, 5))
		sess:set_hook(function() return true end)
		assert.is_nil(w:drive(sess, 5))
		local P = H.pki()
		local sctx = core.context("server")
		assert(sctx:add_keypair(H.readfile(P .. "server-chain.pem"), H.readfile(P .. "server.key")))
		local mem = core.session(sctx)
		assert.is_nil(w:drive(mem, 5))
		assert.is_false(w:active())
		close_all { w, mem, sess, ssock, csess, csock, lp }
	end)

	it("raises for something that is not a session, a missing deadline or a watcher that is not an io watcher", function()
		local lp = core.loop { new = true }
		local sess, ssock, csess, csock, w = tls_pair(lp, "r")
		assert.matches("luatls.Session expected", H.error_of(w.drive, w, "session", 5), 1, true)
		assert.matches("number expected", H.error_of(w.drive, w, sess), 1, true)
		assert.matches("got nan", H.error_of(w.drive, w, sess, 0 / 0), 1, true)
		local t = lp:timer(2)
		assert.matches("not an io watcher", H.error_of(t.drive, t, sess, 5), 1, true)
		close_all { t, w, sess, ssock, csess, csock, lp }
	end)

	it("lets go of a session closed while it drives, and a session lets go of a watcher closed first", function()
		local lp = core.loop { new = true }
		local sess, ssock, csess, csock, w = tls_pair(lp, "r")
		assert.is_false(w:drive(sess, 5))
		sess:close()
		csess:handshake() -- the ClientHello: the socket is ready, the session gone
		assert.same({ 9, 1 }, { until_fired(lp) }) -- plain readiness
		w:close()
		ssock:close()
		csess:close()
		csock:close()

		sess, ssock, csess, csock, w = tls_pair(lp, "r")
		assert.is_false(w:drive(sess, 5))
		w:close()
		local server_done, client_done = false, false
		for _ = 1, 200 do -- Lua makes the attempts now
			if not client_done then client_done = csess:handshake() == true end
			if not server_done then server_done = sess:handshake() == true end
			if server_done and client_done then break end
			lp:step(0.01, {})
		end
		assert.is_true(server_done)
		assert.is_true(client_done)
		close_all { sess, ssock, csess, csock }

		-- and dropped without close, in either order
		for _ = 1, 20 do
			local s2, _, c2, _, w2 = tls_pair(lp, "r")
			w2:drive(s2, 5)
			c2:handshake()
		end
		collectgarbage("collect")
		collectgarbage("collect")
		lp:step(0.05, {})
		lp:close()
	end)
end)

describe("the scheduler", function()
	it("raises from sleep outside a coroutine, saying it must run inside one", function()
		loop.reset()
		local err = H.error_of(tls.sleep, 0.01)
		assert.matches("must run inside a coroutine", err, 1, true)
	end)

	it("raises for spawn of something that is not a function", function()
		loop.reset()
		assert.matches("function expected", H.error_of(tls.spawn, 42), 1, true)
	end)

	it("raises for sleep with a negative time", function()
		local err = H.run(function() return H.error_of(tls.sleep, -1) end)
		assert.matches("non-negative", err, 1, true)
		err = H.run(function() return H.error_of(tls.sleep, 0 / 0) end)
		assert.matches("non-negative", err, 1, true)
	end)

	it("raises for stop with a negative grace", function()
		assert.matches("non-negative", H.error_of(tls.stop, -1), 1, true)
		loop.reset()
	end)

	it("raises a coroutine's error from run, with its traceback", function()
		loop.reset()
		tls.spawn(function()
			tls.sleep(0.01)
			error("boom in a coroutine")
		end)
		local err = H.error_of(tls.run)
		loop.reset()
		assert.matches("boom in a coroutine", err, 1, true)
		assert.matches("traceback", err, 1, true)
	end)

	-- Two waits on one listening socket, which a connection makes ready in
	-- the same turn. arm_first(s, rec) arms the first, to fail (armed
	-- first, it fires first); the second is a coroutine's wait. Returns
	-- what run() raised, the second's result then, whether a second run
	-- ended (bounded: were the second's event lost, nothing would ever
	-- wake it), and the second's result after it.
	local function second_after_failure(arm_first)
		loop.reset()
		local s = loop.default()
		local lsock = assert(core.tcp_listen("127.0.0.1", 0))
		local _, port = lsock:local_address()
		local r1, r2 = s:io(lsock:fd(), "r"), s:io(lsock:fd(), "r")
		arm_first(s, r1)
		local second, client
		tls.spawn(function() second = { s:wait_io(r2, "r", s:now() + 5) } end)
		tls.spawn(function()
			tls.sleep(0.02)
			client = core.tcp_connect("127.0.0.1", port)
		end)
		local err = H.error_of(tls.run)
		local before = second
		local ended = s:run(s:now() + 4)
		s:unwatch(r1)
		s:close_watcher(r1)
		s:close_watcher(r2)
		if client then client:close() end
		lsock:close()
		loop.reset()
		return err, before, ended, second
	end

	it("wakes every coroutine whose event came in a turn, though the first one's failure raises from run", function()
		local err, before, ended, second = second_after_failure(function(s, r1)
			tls.spawn(function()
				s:wait_io(r1, "r", s:now() + 5)
				error("boom in the first")
			end)
		end)
		assert.matches("boom in the first", err, 1, true)
		assert.is_nil(before) -- not run yet: the failure came first
		assert.is_true(ended, "the second coroutine's event was lost")
		assert.same({ true }, second)
	end)

	it("hands the events of a turn on after a callback of that turn raises", function()
		local err, before, ended, second = second_after_failure(function(s, r1)
			s:watch(r1, "r", nil, function() error("boom in a callback") end)
		end)
		assert.matches("boom in a callback", err, 1, true)
		assert.is_nil(before)
		assert.is_true(ended, "the coroutine's event was lost")
		assert.same({ true }, second)
	end)

	it("wakes sleepers in the order of their deadlines", function()
		local order = H.run(function()
			local got = {}
			for _, d in ipairs { 0.06, 0.02, 0.04, 0 } do
				tls.spawn(function() tls.sleep(d) got[#got + 1] = d end)
			end
			tls.sleep(0.15)
			return got
		end)
		assert.same({ 0, 0.02, 0.04, 0.06 }, order)
	end)

	it("ends run() when stop()'s grace is over, when stop() came from a coroutine and nothing else wakes", function()
		loop.reset()
		local s = loop.default()
		local lsock = assert(core.tcp_listen("127.0.0.1", 0))
		local rec = s:io(lsock:fd(), "r")
		s:spawn(function() s:wait_io(rec, "r", nil) end) -- no one connects
		s:spawn(function() s:stop(0.05) end)
		local t0 = s:now()
		assert.is_true(s:run(t0 + 20))
		-- at the end of the grace, not when the wait for events ran out
		assert.is_true(s:now() - t0 < 10)
		s:close_watcher(rec)
		lsock:close()
		loop.reset()
	end)

	it("returns from run once every coroutine has finished", function()
		loop.reset()
		local done = 0
		for _ = 1, 3 do tls.spawn(function() tls.sleep(0.01) done = done + 1 end) end
		tls.run()
		loop.reset()
		assert.equal(3, done)
	end)

	it("runs the next spawn in a coroutine that has finished, with its own arguments", function()
		loop.reset()
		local seen = {}
		local function job(i, ...)
			tls.sleep(0)
			seen[i] = { co = coroutine.running(), n = select("#", ...), ... }
		end
		local first = tls.spawn(job, 1, "a", nil)
		tls.run()
		local second = tls.spawn(job, 2, nil, nil, "b")
		tls.run()
		loop.reset()
		assert.equal(first, second)
		assert.equal(first, seen[1].co)
		assert.same({ co = first, n = 2, "a" }, seen[1])
		assert.same({ co = first, n = 3, nil, nil, "b" }, seen[2])
		assert.equal("suspended", coroutine.status(first))
	end)

	it("does not reuse a coroutine whose function failed, and still reports the failure", function()
		loop.reset()
		local reported
		local s = loop.default()
		local failed = s:spawn(function() error("first job fails") end, function(msg) reported = msg end)
		tls.run()
		local next_co = tls.spawn(function() end)
		tls.run()
		loop.reset()
		assert.matches("first job fails", reported, 1, true)
		assert.equal("dead", coroutine.status(failed))
		assert.not_equal(failed, next_co)
	end)

	it("wakes a coroutine waiting on an io record with 'closed' when the record is closed", function()
		local why, active = H.run(function()
			local s = loop.default()
			local lsock = assert(core.tcp_listen("127.0.0.1", 0))
			local rec = s:io(lsock:fd(), "r") -- nobody connects: never ready
			local got
			tls.spawn(function() got = { s:wait_io(rec, "r", s:now() + 5) } end)
			tls.sleep(0.02)
			s:close_watcher(rec)
			tls.sleep(0.02)
			lsock:close()
			return got, rec.watcher
		end)
		assert.same({ nil, "closed" }, why)
		assert.is_false(active)
	end)

	it("reports an io wait's deadline as 'timeout' and disarms the watcher", function()
		local why, armed = H.run(function()
			local s = loop.default()
			local lsock = assert(core.tcp_listen("127.0.0.1", 0))
			local rec = s:io(lsock:fd(), "r")
			local got = { s:wait_io(rec, "r", s:now() + 0.03) }
			local a = rec.watcher:active()
			s:close_watcher(rec)
			lsock:close()
			return got, a
		end)
		assert.same({ nil, "timeout" }, why)
		assert.is_false(armed)
	end)

	it("does not hand a waiting coroutine to another spawn", function()
		local result = H.run(function()
			local a_done = false
			local a = tls.spawn(function() tls.sleep(0.05) a_done = true end)
			local b = tls.spawn(function() end)
			tls.sleep(0.1)
			return { a ~= b, a_done }
		end)
		assert.same({ true, true }, result)
	end)
end)
