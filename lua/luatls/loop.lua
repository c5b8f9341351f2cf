-- The scheduler: runs coroutines over one libev loop. A coroutine that
-- waits yields to the scheduler with what it waits for (a watcher and/or a
-- deadline); libev reports which watchers fired; the scheduler resumes the
-- ready coroutines. Errors of spawned coroutines are raised from run() with
-- their traceback, never lost.
local core = require "luatls.core"

local coroutine, error, setmetatable, type, pcall, pairs, select, tostring, unpack =
	coroutine, error, setmetatable, type, pcall, pairs, select, tostring, table.unpack or unpack
local traceback = debug.traceback
local floor = math.floor

local M = {}
local Scheduler = {}
Scheduler.__index = Scheduler

local WAIT = setmetatable({}, { __tostring = function() return "luatls.wait" end })
-- what a pooled coroutine yields when its function has returned
local DONE = setmetatable({}, { __tostring = function() return "luatls.done" end })
local POOL_MAX = 256

-- A binary heap of { time, co, seq } ordered by time.
local function heap_push(h, e)
	local n = #h + 1
	h[n] = e
	while n > 1 do
		local p = floor(n / 2)
		if h[p][1] <= e[1] then break end
		h[n], h[p] = h[p], e
		n = p
	end
end

local function heap_pop(h)
	local top, n = h[1], #h
	local last = h[n]
	h[n] = nil
	n = n - 1
	if n > 0 then
		local i = 1
		while true do
			local l, r, m = 2 * i, 2 * i + 1, i
			if l <= n and h[l][1] < (m == i and last or h[m])[1] then m = l end
			if r <= n and h[r][1] < (m == i and last or h[m])[1] then m = r end
			if m == i then break end
			h[i] = h[m]
			i = m
		end
		h[i] = last
	end
	return top
end

function M.new(options)
	local self = setmetatable({
		ev = core.loop(options),
		next_id = 0,
		by_id = {},        -- watcher id -> record { co, watcher, fn }: signal
		                   -- records always, io records while a coroutine waits
		heap = {},         -- deadlines
		waiting = {},      -- co -> wait sequence number, while it waits
		seq = 0,
		queue = {}, values = {}, args = {}, qhead = 1, qtail = 0, -- ready to run
		fired = {}, fired_n = 0, -- see dispatch
		pool = {},         -- finished coroutines, ready for the next spawn
		live = 0,          -- coroutines spawned and not finished
		handlers = {},     -- co -> error handler
		on_stop = {},      -- functions called once by stop()
		stopping = false,
	}, Scheduler)
	return self
end

-- The run queue holds a coroutine and the one value it is resumed with
-- (a wake reason) in two arrays, so that a wake allocates nothing; spawn's
-- arguments travel packed in a table marked by ARGS.
local ARGS = {}

local function enqueue(self, co, value, args)
	local t = self.qtail + 1
	self.qtail = t
	self.queue[t] = co
	self.values[t] = args and ARGS or value
	if args then self.args[t] = args end
end

-- Registers a new watcher record; returns its id.
function Scheduler:register(record)
	local id = self.next_id + 1
	self.next_id = id
	self.by_id[id] = record
	return id
end

function Scheduler:unregister(id)
	self.by_id[id] = nil
end

-- Closes the watcher of a record made by io() or signal(); a coroutine
-- waiting on it is woken with "closed". A closed record has no watcher.
function Scheduler:close_watcher(rec)
	local w = rec.watcher
	if not w then return end
	rec.watcher = false
	w:close()
	self.by_id[rec.id] = nil
	local co = rec.co
	if co then
		rec.co = nil
		enqueue(self, co, "closed")
	end
end

-- An io watcher for fd, reused across waits: returns the record, which
-- fits in four table slots with the coroutine waiting on it (co). The
-- scheduler holds the record only while a coroutine waits on it, so a
-- record (and its watcher) whose owner is dropped without close is
-- collected with it. With into, that table becomes the record (its
-- fields id, watcher, dir and co are the scheduler's): an object that
-- waits on one fd, like a connection, needs no second table.
function Scheduler:io(fd, dir, into)
	local id = self.next_id + 1
	self.next_id = id
	local w = self.ev:io(id, fd, dir)
	if into then
		into.id, into.watcher, into.dir = id, w, dir
		return into
	end
	return { id = id, watcher = w, dir = dir }
end

-- A signal watcher that calls fn (outside ev_run) each time sig arrives.
function Scheduler:signal(sig, fn)
	local rec = { fn = fn }
	local id = self:register(rec)
	rec.id = id
	rec.watcher = self.ev:signal(id, sig)
	rec.watcher:start()
	return rec
end

function Scheduler:now()
	return self.ev:now()
end

local function check_waitable(level)
	local co, main = coroutine.running()
	if co == nil or main then
		error("luatls: this call waits, so it must run inside a coroutine " ..
			"started with luatls.spawn (or a luatls.listen handler)", level or 3)
	end
	return co
end
M.check_waitable = check_waitable

-- Waits until the io record is ready or the deadline (absolute, loop time)
-- passes. Returns true, or nil, "timeout" | "closed". deadline nil: no
-- deadline. The record names the waiting coroutine (rec.co) while it
-- waits: step and close_watcher wake it from there, so an io wait needs
-- no entry in the table of sleepers.
-- Arms the watcher w of an io record for dir, with the (absolute)
-- deadline if any, and hands the record to step().
local function arm(self, rec, w, dir, deadline)
	if rec.dir ~= dir then
		w:set(nil, dir)
		rec.dir = dir
	end
	if deadline then
		-- the watcher's own libev timer: it fires as -id (see step)
		w:start_by(deadline)
	else
		w:start()
	end
	self.by_id[rec.id] = rec
end

function Scheduler:wait_io(rec, dir, deadline)
	local co = check_waitable()
	local w = rec.watcher
	if not w then return nil, "closed" end
	rec.co = co
	arm(self, rec, w, dir, deadline)
	local why = coroutine.yield(WAIT)
	self.by_id[rec.id] = nil
	if why ~= "ready" then
		rec.co = nil
		if rec.watcher then rec.watcher:stop() end
		return nil, why
	end
	return true
end

-- Calls fn(rec, timed_out) once, outside ev_run, when the io record is
-- ready for dir (timed_out false) or when the (absolute) deadline, if
-- any, passes first (true): a wait without a coroutine, for work that
-- needs none (a server's accepts and handshakes, see listen in init.lua).
-- Until unwatch(rec), the record is the scheduler's, as it is while a
-- coroutine waits on it.
function Scheduler:watch(rec, dir, deadline, fn)
	rec.fn = fn
	arm(self, rec, rec.watcher, dir, deadline)
end

-- The same for a record whose watcher has been armed already (by
-- w:drive, say): fn(rec, timed_out) when it fires.
function Scheduler:watching(rec, fn)
	rec.fn = fn
	self.by_id[rec.id] = rec
end

function Scheduler:unwatch(rec)
	rec.fn = nil
	self.by_id[rec.id] = nil
	if rec.watcher then rec.watcher:stop() end
end

-- The same for a record whose watcher is known to be stopped: it has
-- fired (io watchers are one-shot), or was never started.
function Scheduler:unwatched(rec)
	rec.fn = nil
	self.by_id[rec.id] = nil
end

-- Work in progress that is no coroutine (a watch) keeps run() going
-- like a live coroutine does: hold() when it starts, release() when done.
-- n (default 1) pieces of such work at once: an acceptor's connections.
function Scheduler:hold(n)
	self.live = self.live + (n or 1)
end

function Scheduler:release(n)
	self.live = self.live - (n or 1)
end

-- Suspends co until resumed with a reason; arms the deadline if any.
function Scheduler:suspend(co, deadline)
	self.seq = self.seq + 1
	local seq = self.seq
	self.waiting[co] = seq
	if deadline then heap_push(self.heap, { deadline, co, seq }) end
	local why = coroutine.yield(WAIT)
	self.waiting[co] = nil
	return why
end

-- Sleeps for the given number of seconds (0 lets the others run).
function Scheduler:sleep(seconds)
	local co = check_waitable()
	if type(seconds) ~= "number" or not (seconds >= 0) then -- NaN too
		error("bad argument #1 to 'sleep' (non-negative number expected)", 2)
	end
	self:suspend(co, self:now() + seconds)
end

-- Wakes a coroutine suspended in suspend() (e.g. on an event of the
-- library's own); ignored if it is not waiting.
function Scheduler:wake(co, why)
	if self.waiting[co] then
		self.waiting[co] = nil
		enqueue(self, co, why or "ready")
	end
end

-- The body of every spawned coroutine: runs one function, then offers
-- itself for the next spawn. A coroutine that has grown its stack for a
-- connection keeps it for the next one instead of being made, grown and
-- collected again; one whose function fails dies as usual. The wait for
-- the next function is a tail call, so that a parked coroutine holds
-- nothing of the last one (its arguments, say a connection).
local park
local function body(fn, ...)
	fn(...)
	return park()
end
function park()
	return body(coroutine.yield(DONE))
end

-- Starts fn(...) in a coroutine. on_error(err_with_traceback, co), if
-- given, handles its failure; otherwise run() raises it.
-- A coroutine for a new function (a pooled one, or a new one), counted
-- live from now, with its error handler if any.
local function new_coroutine(self, on_error)
	local pool = self.pool
	local n = #pool
	local co
	if n > 0 then
		co = pool[n]
		pool[n] = nil
	else
		co = coroutine.create(body)
	end
	self.live = self.live + 1
	if on_error then self.handlers[co] = on_error end
	return co
end

function Scheduler:spawn(fn, on_error, ...)
	if type(fn) ~= "function" then
		error("bad argument #1 to 'spawn' (function expected, got " .. type(fn) .. ")", 3)
	end
	local co = new_coroutine(self, on_error)
	-- the count first: an array-only table, one allocation fewer
	enqueue(self, co, nil, { select("#", ...) + 1, fn, ... })
	return co
end

local resume

-- Runs fn(...) in a coroutine at once, as spawn would on its next turn:
-- for callbacks of the scheduler (see watch) that start a coroutine, which
-- spares it a turn in the run queue.
function Scheduler:start(fn, on_error, ...)
	local co = new_coroutine(self, on_error)
	resume(self, co, fn, ...)
	return co
end

function resume(self, co, ...)
	local ok, res = coroutine.resume(co, ...)
	if ok and res == WAIT then return end -- the usual case: waiting again
	if ok and res == DONE then
		self.live = self.live - 1
		self.handlers[co] = nil
		local pool = self.pool
		if #pool < POOL_MAX then pool[#pool + 1] = co end
		return
	end
	if coroutine.status(co) == "dead" then
		self.live = self.live - 1
		local handler = self.handlers[co]
		self.handlers[co] = nil
		if not ok then
			local msg = traceback(co, tostring(res))
			if handler then
				local hok, herr = pcall(handler, msg, co)
				if not hok then error(herr, 0) end
			else
				error(msg, 0)
			end
		end
	else
		-- a plain coroutine.yield(): run again on the next turn
		enqueue(self, co)
	end
end

local function run_queue(self)
	-- only what is queued now: coroutines queued meanwhile wait a turn
	local last = self.qtail
	local queue, values = self.queue, self.values
	while self.qhead <= last do
		local h = self.qhead
		local co, value = queue[h], values[h]
		queue[h], values[h] = nil, nil
		self.qhead = h + 1
		if value == ARGS then
			local args = self.args[h]
			self.args[h] = nil
			resume(self, co, unpack(args, 2, args[1] + 1))
		else
			resume(self, co, value)
		end
	end
end

local function expire(self, now)
	local heap = self.heap
	while heap[1] and heap[1][1] <= now do
		local e = heap_pop(heap)
		if self.waiting[e[2]] == e[3] then
			self.waiting[e[2]] = nil
			enqueue(self, e[2], "timeout")
		end
	end
end

-- Hands fired[1..n], the ids of the watchers that fired, to their
-- records: a callback (fn) is called, a waiting coroutine woken. Should
-- one of them raise, the ids not handed yet stay in fired (those handed
-- are cleared) and fired_n says how far to look: the next turn hands them
-- first, so that no event is lost to another's failure.
local function dispatch(self, n)
	local fired, by_id = self.fired, self.by_id
	self.fired_n = n
	for i = 1, n do
		local id = fired[i]
		if id then
			fired[i] = nil
			local rec = by_id[id < 0 and -id or id] -- -id: an io wait's deadline
			if rec then
				if rec.fn then
					rec.fn(rec, id < 0)
				else
					local co = rec.co
					if co then
						rec.co = nil
						if self.handlers[co] then
							-- it runs now, as a callback would (a turn in
							-- the run queue would only delay it); a
							-- failure goes to its error handler
							resume(self, co, id < 0 and "timeout" or "ready")
						else
							-- a failure raises from run(): from the run
							-- queue, once every event of this turn is seen
							enqueue(self, co, id < 0 and "timeout" or "ready")
						end
					end
				end
			end
		end
	end
	self.fired_n = 0
end

-- One turn: run the ready coroutines, then wait for events.
function Scheduler:step(max_wait)
	if self.fired_n > 0 then dispatch(self, self.fired_n) end -- see dispatch
	run_queue(self)
	if self.live == 0 then return false end
	-- the wait: at most timeout seconds, and not past the time at (both
	-- nil: until an event); the loop reads the clock for at itself
	local timeout, at
	if self.qhead <= self.qtail then
		timeout = 0
	else
		local top = self.heap[1]
		while top and self.waiting[top[2]] ~= top[3] do -- drop stale deadlines
			heap_pop(self.heap)
			top = self.heap[1]
		end
		at = top and top[1]
		timeout = max_wait
		-- stop() may have come from the coroutines just run
		local stop_at = self.stop_deadline
		if stop_at and (at == nil or stop_at < at) then at = stop_at end
	end
	local n, now = self.ev:step(timeout, self.fired, at)
	dispatch(self, n)
	expire(self, now)
	return true
end

-- Runs until every coroutine has finished, or until stop() and its grace
-- period are over. until_time (absolute) bounds the run: returns false if
-- it was reached with coroutines still alive.
function Scheduler:run(until_time)
	while self.live > 0 do
		if self.stop_deadline and self:now() >= self.stop_deadline then
			break
		end
		local max_wait
		if until_time then
			max_wait = until_time - self:now()
			if max_wait <= 0 then return false end
		end
		if self.stop_deadline then
			local left = self.stop_deadline - self:now()
			if not max_wait or left < max_wait then max_wait = left end
		end
		if max_wait and max_wait < 0 then max_wait = 0 end
		self:step(max_wait)
	end
	if self.stop_deadline then
		self:finish_stop()
	end
	return true
end

-- Stops gracefully: listeners stop accepting, open connections get grace
-- seconds to finish; then run() returns.
function Scheduler:stop(grace)
	if self.stopping then return end
	self.stopping = true
	self.stop_deadline = self:now() + (grace or 5)
	local hooks = self.on_stop
	self.on_stop = {}
	for i = 1, #hooks do hooks[i]() end
end

-- After stop: closes what is still open and forgets the coroutines that
-- did not finish within the grace period.
function Scheduler:finish_stop()
	local hooks = self.on_finish or {}
	self.on_finish = nil
	for i = 1, #hooks do pcall(hooks[i]) end
	for id, rec in pairs(self.by_id) do
		if rec.co then
			rec.watcher:stop()
			rec.co = nil
			self.by_id[id] = nil
		end
	end
	self.stop_deadline = nil
	self.stopping = false
	self.live = 0
	self.waiting, self.heap, self.handlers = {}, {}, {}
	self.queue, self.values, self.args, self.qhead, self.qtail = {}, {}, {}, 1, 0
end

function Scheduler:at_stop(fn)
	self.on_stop[#self.on_stop + 1] = fn
end

function Scheduler:at_finish(fn)
	self.on_finish = self.on_finish or {}
	self.on_finish[#self.on_finish + 1] = fn
end

-- The default scheduler of this Lua state.
local default
function M.default()
	if not default then default = M.new() end
	return default
end

-- Replaces the default scheduler (used by specs to start afresh).
function M.reset()
	default = nil
end

M.Scheduler = Scheduler
return M
