local H = require "helper"
local tls = H.tls

local interpreter = os.getenv("LUATLS_LUA") or (arg and arg[-1]) or "lua5.4"

local function pair(P)
	return { port = 0, certificate = P .. "server-chain.pem", key = P .. "server.key" }
end

-- Starts the Lua client script (another process) against port, trusting
-- P's CA; inside the loop, waits until the server srv has accepted it.
local function start_client(script, srv, P)
	local _, port = srv:address()
	local proc = H.exec(interpreter .. " '" .. script .. "' " .. port .. " '" .. P .. "ca.pem'", true)
	for _ = 1, 200 do
		if srv.accepted > 0 then break end
		tls.sleep(0.025)
	end
	return proc
end

-- Inside the loop: the port a server process says it listens on (the
-- capture of pattern in its output), waiting up to 10 s for it.
local function listening_port(proc, pattern)
	local port
	for _ = 1, 200 do
		port = proc.output():match(pattern)
		if port then return tonumber(port) end
		tls.sleep(0.05)
	end
	error("the server never said where it listens: " .. proc.output(), 2)
end

-- After the loop has ended: waits for the client to exit; its exit status.
local function client_status(proc)
	local rc
	for _ = 1, 200 do
		rc = proc.rc()
		if rc then break end
		H.sh("sleep 0.05")
	end
	proc.kill()
	return rc
end

describe("a luatls server", function()
	it("lets an open connection finish after tls.stop(), then stops accepting", function()
		local P = H.pki()
		local finished, second_err = H.run(function()
			local done = false
			local srv = assert(tls.listen(pair(P), function(conn)
				local line = conn:receive("*l")
				tls.sleep(0.2) -- still working when stop() comes
				conn:send(line .. "!\n")
				done = true
			end))
			local _, port = srv:address()
			local conn = assert(tls.connect { host = "localhost", port = port, cafile = P .. "ca.pem" })
			conn:send("bye\n")
			tls.sleep(0.05)
			tls.stop(5)
			local answer = conn:receive("*l")
			conn:close()
			assert.equal("bye!", answer)
			local again, err, code = tls.connect { host = "localhost", port = port, cafile = P .. "ca.pem" }
			assert.is_nil(again)
			return done, code
		end)
		assert.is_true(finished)
		assert.equal("ECONNREFUSED", second_err)
	end)

	it("closes connections that outlive the grace period with close_notify, and returns from run", function()
		local P = H.pki()
		-- the client is another process: stop() ends this loop's coroutines
		local script = H.tmpdir() .. "/client.lua"
		H.writefile(script, [[
			local tls = require "luatls"
			tls.spawn(function()
				local conn = assert(tls.connect { host = "localhost", port = tonumber(arg[1]), cafile = arg[2] })
				conn:settimeout(10)
				local data, err, code = conn:receive("*l")
				print(tostring(data) .. "|" .. tostring(err) .. "|" .. tostring(code))
			end)
			tls.run()
		]])
		local started, output = H.run(function()
			local srv = assert(tls.listen(pair(P), function(conn)
				conn:receive("*l") -- the client never sends a line
			end))
			local proc = start_client(script, srv, P)
			local t0 = tls.now()
			tls.stop(0.3)
			return t0, proc
		end)
		local proc = output
		-- the loop has ended; wait for the client to report what it saw
		assert.equal(0, client_status(proc), proc.output())
		assert.truthy(started)
		assert.equal("nil|closed|closed", proc.output():match("[^\n]*|[^\n]*|[^\n]*"), proc.output())
	end)

	it("stops gracefully on SIGTERM, sending close_notify to open clients", function()
		local P = H.pki()
		local rc, output = H.run(function()
			local root = H.capture("pwd"):gsub("%s+$", "")
			local proc = H.exec(interpreter .. " '" .. root .. "/examples/server.lua' --cert '" ..
				P .. "server-chain.pem' --key '" .. P .. "server.key' --port 0")
			local port = listening_port(proc, "listening on [%d.]+:(%d+)")
			local conn = assert(tls.connect { host = "localhost", port = port, cafile = P .. "ca.pem" })
			conn:send("one\n")
			assert.equal("ONE", conn:receive("*l"))
			H.sh("pkill -TERM -P " .. proc.pid) -- the interpreter, child of the shell
			conn:settimeout(10)
			local data, err, code = conn:receive("*l")
			assert.is_nil(data)
			assert.equal("closed", code, err)
			assert.equal("closed", err) -- close_notify, not a reset
			conn:close()
			return proc.wait(10)
		end)
		assert.equal(0, rc, output)
		assert.truthy(output:find("server stopped", 1, true), output)
	end)

	it("serves clients while reporting a failing handler without stopping", function()
		local P = H.pki()
		local reported = {}
		local answers = H.run(function()
			local opts = pair(P)
			opts.on_error = function(msg) reported[#reported + 1] = msg end
			local srv = assert(tls.listen(opts, function(conn)
				local line = conn:receive("*l")
				if line == "boom" then error("handler exploded") end
				conn:send(line .. "\n")
			end))
			local _, port = srv:address()
			local out = {}
			for _, word in ipairs { "boom", "fine" } do
				local conn = assert(tls.connect { host = "localhost", port = port, cafile = P .. "ca.pem" })
				conn:settimeout(5)
				conn:send(word .. "\n")
				local got, _, code = conn:receive("*l")
				out[#out + 1] = got or code
				conn:close()
			end
			return out
		end)
		assert.same({ "closed", "fine" }, answers)
		assert.equal(1, #reported)
		assert.truthy(reported[1]:find("handler exploded", 1, true))
		assert.truthy(reported[1]:find("traceback", 1, true))
	end)

	it("lets a handshake still in progress at tls.stop() finish within the grace period", function()
		local P = H.pki()
		-- the client is another process, which connects at once and starts
		-- its handshake only once the server has been stopped: then no
		-- coroutine of the server's is left, only the handshake
		local script = H.tmpdir() .. "/late.lua"
		H.writefile(script, [[
			local socket = require "socket"
			local tls = require "luatls"
			local tcp = assert(socket.connect("127.0.0.1", tonumber(arg[1])))
			socket.sleep(0.5)
			local sess = assert(tls.session { role = "client", cafile = arg[2], server_name = "localhost" })
			tcp:settimeout(0.05)
			local deadline, closed = socket.gettime() + 10, false
			local function exchange() -- sends what the session has, reads what came
				local out = sess:drain()
				if out and #out > 0 then assert(tcp:send(out)) end
				local data, err, partial = tcp:receive(4096)
				data = data or partial
				if data and #data > 0 then sess:feed(data) end
				closed = err == "closed"
				assert(socket.gettime() < deadline, "no answer in time")
			end
			while not sess:handshake() do
				if closed then print("closed in the handshake") os.exit(0) end
				exchange()
			end
			assert(sess:send("late\n"))
			local got = ""
			while not got:find("\n") and not closed do
				exchange()
				repeat
					local data = sess:recv()
					got = got .. (data or "")
				until not data
			end
			io.write("answer: ", got)
		]])
		local accepted, proc = H.run(function()
			local srv = assert(tls.listen(pair(P), function(conn)
				local line = conn:receive("*l")
				conn:send(line .. "!\n")
			end))
			local p = start_client(script, srv, P)
			tls.stop(5) -- the listener closes: no accept is waited for any more
			return srv.accepted, p
		end)
		assert.equal(1, accepted)
		assert.equal(0, client_status(proc), proc.output())
		assert.equal("answer: late!\n", proc.output())
	end)

	it("closes a handshake still in progress when the grace period after tls.stop() ends", function()
		local P = H.pki()
		collectgarbage()
		collectgarbage()
		local before = H.open_fds()
		local c, srv
		local served = false
		H.run(function()
			local opts = pair(P)
			opts.handshake_timeout = 30
			srv = assert(tls.listen(opts, function() served = true end))
			local _, port = srv:address()
			c = assert(H.core.tcp_connect("127.0.0.1", port)) -- and says nothing
			for _ = 1, 200 do
				if srv.accepted > 0 then break end
				tls.sleep(0.025)
			end
			tls.stop(0.2) -- this coroutine ends with the grace period too
			tls.sleep(30)
		end)
		assert.equal(1, srv.accepted)
		assert.is_false(served)
		-- the client sees its connection end
		local data, k
		for _ = 1, 100 do
			data, _, k = c:recv()
			if data or k ~= "wantread" then break end
			H.sh("sleep 0.05")
		end
		c:close()
		assert.is_nil(data)
		assert.equal("closed", k)
		collectgarbage()
		collectgarbage()
		assert.equal(before, H.open_fds())
	end)

	it("runs on_handshake_error in a coroutine, where it may wait", function()
		local P = H.pki()
		local seen = H.run(function()
			local seen = {}
			local opts = pair(P)
			opts.handshake_timeout = 5
			opts.on_handshake_error = function(_, code, peer)
				tls.sleep(0.01) -- waits, as a handler may
				seen[#seen + 1] = code .. " " .. peer
			end
			local srv = assert(tls.listen(opts, function() end))
			local _, port = srv:address()
			-- a client that does not trust the server's CA refuses it
			local conn = tls.connect { host = "localhost", port = port, cafile = P .. "other-ca.pem" }
			assert.is_nil(conn)
			for _ = 1, 200 do
				if #seen > 0 then break end
				tls.sleep(0.01)
			end
			return seen
		end)
		assert.equal(1, #seen)
		assert.matches("^%S+ 127%.0%.0%.1:%d+$", seen[1])
	end)

	it("backs off while it cannot accept (out of descriptors), and serves again once it can", function()
		local P = H.pki()
		local dir = H.tmpdir()
		H.writefile(dir .. "/server.lua", [[
local tls = require "luatls"
local P = arg[1]
local srv = assert(tls.listen({ port = 0, certificate = P .. "server-chain.pem", key = P .. "server.key",
	handshake_timeout = 2 }, function(conn)
	local line = conn:receive("*l")
	if line then conn:send(line .. "!\n") end
end))
local _, port = srv:address()
io.stdout:write("listening on ", port, "\n")
io.stdout:flush()
tls.spawn(function() tls.sleep(30) tls.stop(0) end)
tls.run()
]])
		local answer, output = H.run(function()
			-- a server with room for a dozen connections or so
			local proc = H.exec("ulimit -n 20 && exec " .. interpreter .. " '" .. dir .. "/server.lua' '" .. P .. "'")
			local port = listening_port(proc, "listening on (%d+)")
			local raw = {}
			for i = 1, 30 do raw[i] = assert(H.core.tcp_connect("127.0.0.1", port)) end
			for _ = 1, 200 do
				if proc.output():find("accept failed", 1, true) then break end
				tls.sleep(0.05)
			end
			for _, c in ipairs(raw) do c:close() end
			local conn = assert(H.connect(port, { timeout = 10, handshake_timeout = 10 }))
			conn:send("still here\n")
			local line = conn:receive("*l")
			conn:close()
			proc.kill()
			return line, proc.output()
		end, 40)
		assert.matches("luatls: accept failed: [^\n]*%(EMFILE%)", output)
		assert.equal("still here!", answer, output)
	end)

	it("reports a connection it cannot set up, and goes on serving", function()
		local P = H.pki()
		local reported, first, second = {}, nil, nil
		H.run(function()
			local opts = pair(P)
			opts.on_error = function(msg) reported[#reported + 1] = msg end
			local srv = assert(tls.listen(opts, function(conn)
				conn:send(conn:receive("*l") .. "\n")
			end))
			local _, port = srv:address()
			-- the session of the next connection cannot be made
			srv.sess_opts.no_such_option = true
			local _, _, code = tls.connect { host = "localhost", port = port, cafile = P .. "ca.pem",
				handshake_timeout = 5 }
			first = code
			srv.sess_opts.no_such_option = nil
			local conn = assert(tls.connect { host = "localhost", port = port, cafile = P .. "ca.pem" })
			conn:send("still here\n")
			second = conn:receive("*l")
			conn:close()
		end)
		assert.equal("closed", first)
		assert.equal(1, #reported)
		assert.matches("^connection from 127%.0%.0%.1:%d+: .*unknown option 'no_such_option'", reported[1])
		assert.equal("still here", second)
	end)

	it("holds on to no connection once its handler has returned or failed", function()
		local P = H.pki()
		local seen = setmetatable({}, { __mode = "k" }) -- the server's connections
		local left, held = H.run(function()
			local opts = pair(P)
			opts.on_error = function() end
			local srv = assert(tls.listen(opts, function(conn)
				seen[conn] = true
				local line = conn:receive("*l")
				if line == "boom" then error("handler exploded") end
				conn:send(line .. "\n")
			end))
			local _, port = srv:address()
			for _, word in ipairs { "boom", "fine", "fine" } do
				local conn = assert(tls.connect { host = "localhost", port = port, cafile = P .. "ca.pem" })
				conn:settimeout(5)
				conn:send(word .. "\n")
				conn:receive("*l")
				conn:close()
			end
			tls.sleep(0.05) -- the last handler returns
			local n = 0
			for _ in pairs(srv.conns) do n = n + 1 end
			collectgarbage()
			collectgarbage()
			local alive = 0
			for _ in pairs(seen) do alive = alive + 1 end
			return n, alive
		end)
		assert.equal(0, left)  -- the server's own map is empty
		assert.equal(0, held)  -- and nothing else keeps them
	end)
end)
