-- A bounded in-memory store whose entries expire: the client session
-- cache, the server's TLS 1.2 session-ID cache and the anti-replay store
-- all use one by default. Any object with the same methods can replace it
-- (to share sessions between processes, or keep them across runs):
--
--   store:get(key) -> value | nil
--   store:set(key, value, ttl)          -- ttl in seconds
--   store:delete(key)
--   store:add(key, ttl) -> true | false -- false: the key is there already
--
-- The session stores and the anti-replay store are called from inside a
-- TLS handshake: they must answer at once (no waiting on the loop).
local setmetatable, type, error, tostring = setmetatable, type, error, tostring

local M = {}
local Cache = {}
Cache.__index = Cache
Cache.__name = "luatls.Cache"

local DEFAULT_SIZE = 10000

-- cache.new{ size = n, clock = function() -> seconds, full = "evict" | "refuse" }
-- size bounds the entries; when full, "evict" (the default) drops the
-- oldest entry, "refuse" makes set/add fail (what an anti-replay store
-- needs: forgetting a ClientHello would let its replay through).
function M.new(opts)
	opts = opts or {}
	if type(opts) ~= "table" then
		error("bad argument #1 to 'cache.new' (table expected, got " .. type(opts) .. ")", 2)
	end
	for k in pairs(opts) do
		if k ~= "size" and k ~= "clock" and k ~= "full" then
			error("bad argument #1 to 'cache.new' (unknown option '" .. tostring(k) .. "')", 2)
		end
	end
	local size = opts.size or DEFAULT_SIZE
	if type(size) ~= "number" or size < 1 or size % 1 ~= 0 then
		error("bad argument #1 to 'cache.new' (option 'size' must be a positive integer)", 2)
	end
	if opts.clock ~= nil and type(opts.clock) ~= "function" then
		error("bad argument #1 to 'cache.new' (option 'clock' must be a function)", 2)
	end
	local full = opts.full or "evict"
	if full ~= "evict" and full ~= "refuse" then
		error("bad argument #1 to 'cache.new' (option 'full' must be \"evict\" or \"refuse\")", 2)
	end
	return setmetatable({
		size = size, clock = opts.clock or os.time, refuse = full == "refuse",
		entries = {},          -- key -> { value, expires, seq }
		queue = {}, head = 1,  -- { key, seq } in insertion order
		seq = 0, count = 0,
	}, Cache)
end

local function drop(self, key)
	if self.entries[key] then
		self.entries[key] = nil
		self.count = self.count - 1
	end
end

-- Pops queue entries that are stale (replaced or deleted) or expired from
-- the head; with force, also the oldest live one.
local function trim(self, now, force)
	local q, entries = self.queue, self.entries
	while self.head <= #q do
		local item = q[self.head]
		local e = entries[item[1]]
		if e and e[3] == item[2] then
			if e[2] > now and not force then break end
			drop(self, item[1])
			force = false
		end
		q[self.head] = nil
		self.head = self.head + 1
	end
	if self.head > #q then -- empty: start over
		self.queue, self.head = {}, 1
	end
end

-- Drops every expired entry (a full cache sweeps before it evicts).
local function sweep(self, now)
	for key, e in pairs(self.entries) do
		if e[2] <= now then drop(self, key) end
	end
	-- compact the queue to the live entries
	local q, nq = self.queue, {}
	for i = self.head, #q do
		local e = self.entries[q[i][1]]
		if e and e[3] == q[i][2] then nq[#nq + 1] = q[i] end
	end
	self.queue, self.head = nq, 1
end

local function check_key(key, name)
	if type(key) ~= "string" then
		error("bad argument #1 to '" .. name .. "' (string expected, got " .. type(key) .. ")", 3)
	end
end

local function check_ttl(ttl, name, i)
	if type(ttl) ~= "number" or ttl < 0 then
		error("bad argument #" .. i .. " to '" .. name .. "' (non-negative number of seconds expected)", 3)
	end
end

-- Stores value under key for ttl seconds: true, or nil, message when a
-- "refuse" cache is full.
local function put(self, key, value, ttl)
	local now = self.clock()
	trim(self, now)
	if not self.entries[key] and self.count >= self.size then
		sweep(self, now)
		if self.count >= self.size then
			if self.refuse then return nil, "the cache is full (" .. self.size .. " entries)" end
			trim(self, now, true)
		end
	end
	if not self.entries[key] then self.count = self.count + 1 end
	self.seq = self.seq + 1
	self.entries[key] = { value, now + ttl, self.seq }
	self.queue[#self.queue + 1] = { key, self.seq }
	return true
end

-- cache:get(key) -> value, or nil when absent or expired
function Cache:get(key)
	check_key(key, "get")
	local e = self.entries[key]
	if not e then return nil end
	if e[2] <= self.clock() then
		drop(self, key)
		return nil
	end
	return e[1]
end

-- cache:set(key, value, ttl) -> true | nil, message
function Cache:set(key, value, ttl)
	check_key(key, "set")
	if value == nil then
		error("bad argument #2 to 'set' (value expected)", 2)
	end
	check_ttl(ttl, "set", 3)
	return put(self, key, value, ttl)
end

function Cache:delete(key)
	check_key(key, "delete")
	drop(self, key)
end

-- cache:add(key, ttl) -> true when the key was not there (it is now),
-- false when it was. A full "refuse" cache raises an error, which the
-- anti-replay check takes as "refuse the early data".
function Cache:add(key, ttl)
	check_key(key, "add")
	check_ttl(ttl, "add", 2)
	if self:get(key) ~= nil then return false end
	local ok, err = put(self, key, true, ttl)
	if not ok then error(err, 0) end
	return true
end

-- Number of entries (expired ones included until they are dropped).
function Cache:__len()
	return self.count
end
Cache.len = Cache.__len

function Cache:__tostring()
	return "luatls.Cache (" .. self.count .. "/" .. self.size .. " entries)"
end

-- Raises unless store has the named methods (for option checking).
function M.check(store, name, methods, level)
	local t = type(store)
	if t ~= "table" and t ~= "userdata" then
		error("option '" .. name .. "' must be a store with " .. table.concat(methods, ", ") ..
			" methods (or false), got " .. t, level + 1)
	end
	for _, m in ipairs(methods) do
		if type(store[m]) ~= "function" and not (getmetatable(store) and store[m]) then
			error("option '" .. name .. "' must be a store with a '" .. m .. "' method", level + 1)
		end
	end
end

M.Cache = Cache
return M
