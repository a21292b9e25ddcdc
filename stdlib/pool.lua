-- pool: connections kept for reuse, by key.
--
--   local pool = require "pool"
--   local db = pool.new({ size = 10, connect = function(key) return tcp.connect(6379) end })
--   local conn, err = db:acquire()
--   ...
--   db:release(conn)          -- db:release(conn, false) when it is broken: closed, not reused
--
-- The key is a string the caller builds from whatever makes two connections
-- interchangeable (host, port, TLS settings, database, user). One pool object serves two
-- uses, per key:
--
--   * an idle cache (the HTTP client's keep-alive): put(key, conn) keeps a connection that
--     is free, take(key) hands back a live one or nil; the caller makes connections itself
--     and nothing bounds how many are in use.
--   * a bounded pool (database clients): acquire(key) hands out at most `size` connections,
--     idle ones first, new ones from options.connect; further callers wait in their task (at
--     most max_waiters of them, each at most wait_timeout ms); release(conn) gives one back,
--     straight to the first waiter when there is one.
--
-- Idle connections: at most max_idle per key (the least recently used one is closed to
-- make room), the most recently used handed out first, closed after idle_timeout by a sweep
-- once a second whose timer does not keep the process alive (nor do parked connections, when
-- options.park says so), and checked with options.alive before they are handed out.
-- options.alive, park and close must not wait: they run inside take, put and the sweep.
--
-- The sweep timer and the error tables come from the C half of the HTTP client
-- (luaio.http_client: sweep, error), the one place that has an unreferenced timer for Lua.
local C = require "luaio.http_client"
local sched = require "luaio.task"

local type, error, tostring, setmetatable, pairs, next, pcall = type, error, tostring, setmetatable, pairs, next, pcall
local remove, floor, huge = table.remove, math.floor, math.huge
local now = sched.now

local pool = {}

local Pool = {}
Pool.__index = Pool

local SWEEP_EVERY = 1000

-- Defaults; max_idle defaults to size.
local DEFAULTS = { size = 16, idle_timeout = 60000, max_waiters = 1024, wait_timeout = 10000 }

local OPTIONS = {
  size = "number", max_idle = "number", idle_timeout = "number", max_waiters = "number",
  wait_timeout = "number", connect = "function", alive = "function", park = "function",
  close = "function",
}

-- For the database clients (mysql, redis): pool.user_options(connect_rules) -> the rules
-- (luaio.options) of what their users give a pool, the connection's own and the pool's, and
-- pool.settings(checked, default_size, callbacks) -> pool.new's options (durations may be
-- math.huge: no limit).
local USER_OPTIONS = {
  size = { "integer", min = 1, max = 1000000 },
  max_idle = { "integer", min = 0, max = 1000000 },
  idle_timeout = { "ms" },
  max_waiters = { "integer", min = 0, max = 1000000 },
  wait_timeout = { "ms" },
}

function pool.user_options(connect_rules)
  local rules = {}
  for k, rule in pairs(USER_OPTIONS) do rules[k] = rule end
  for k, rule in pairs(connect_rules) do rules[k] = rule end
  return rules
end

local function user_ms(v, def)
  if v == nil then return def end
  if v == huge then return 0 end -- 0 = no limit
  return math.ceil(v)
end

function pool.settings(o, default_size, callbacks)
  local s = {
    size = o.size or default_size,
    max_idle = o.max_idle,
    idle_timeout = user_ms(o.idle_timeout, DEFAULTS.idle_timeout),
    max_waiters = o.max_waiters or DEFAULTS.max_waiters,
    wait_timeout = user_ms(o.wait_timeout, DEFAULTS.wait_timeout),
  }
  for k, v in pairs(callbacks) do s[k] = v end
  return s
end

local function argerror(fname, argn, message)
  error(("bad argument #%d to '%s' (%s)"):format(argn, fname, message), 3)
end

local function fail(name, message)
  return nil, C.error(name, message)
end

local function close_conn(conn)
  conn:close()
end

-- --- the sweep ----------------------------------------------------------------------------

-- Pools that hold idle connections (weak: a pool the program dropped goes with its sockets).
local live = setmetatable({}, { __mode = "k" })
local sweeping, sweep_on = false, false

-- Every idle connection of slot that has expired or died is closed; the others stay, parked.
local function sweep_slot(p, slot, t)
  local alive, park, dead = p.on.alive, p.on.park, nil
  local keep = {}
  for i = 1, #slot.idle do
    local entry = slot.idle[i]
    local conn = entry.conn
    if entry.expires > t and (not alive or alive(conn)) and (not park or park(conn)) then
      keep[#keep + 1] = entry
    else
      dead = dead or {}
      dead[#dead + 1] = conn
    end
  end
  p.idle_count = p.idle_count - (#slot.idle - #keep)
  slot.idle = keep
  -- closed once the slot is consistent again: a close that waits cannot see it half done
  if dead then for i = 1, #dead do p.on.close(dead[i]) end end
end

local function sweep_all()
  local t = now()
  local pools = {}
  for p in pairs(live) do pools[#pools + 1] = p end
  for i = 1, #pools do
    local p = pools[i]
    local slots = {}
    for _, slot in pairs(p.slots) do slots[#slots + 1] = slot end
    for j = 1, #slots do
      sweep_slot(p, slots[j], t)
      p:_tidy(slots[j])
    end
  end
end

-- Runs in a task of its own every SWEEP_EVERY ms while some pool holds idle connections.
local function sweep()
  if sweeping then return end -- the last one still waits in a close
  sweeping = true
  local ok, err = pcall(sweep_all)
  sweeping = false
  if next(live) == nil then
    C.sweep(nil)
    sweep_on = false
  end
  if not ok then error(err, 0) end -- a callback raised: reported, and the next sweep goes on
end

local function sweep_start()
  if not sweep_on then
    C.sweep(sweep, SWEEP_EVERY)
    sweep_on = true
  end
end

-- --- pools ---------------------------------------------------------------------------------

-- pool.new([options]) -> a pool
function pool.new(options)
  if options ~= nil and type(options) ~= "table" then
    argerror("new", 1, "table expected, got " .. type(options))
  end
  local o = {}
  for name, value in pairs(options or {}) do
    local want = OPTIONS[name]
    if want == nil then argerror("new", 1, "unknown option '" .. tostring(name) .. "'") end
    if type(value) ~= want then
      argerror("new", 1, ("options.%s: %s expected, got %s"):format(name, want, type(value)))
    end
    if want == "number" and (value < 0 or value ~= floor(value)) then
      argerror("new", 1, ("options.%s: non-negative integer expected"):format(name))
    end
    o[name] = value
  end
  if o.size == 0 then argerror("new", 1, "options.size: at least 1") end
  local size = o.size or DEFAULTS.size
  return setmetatable({
    size = size,
    max_idle = o.max_idle or size,
    idle_timeout = o.idle_timeout or DEFAULTS.idle_timeout,
    max_waiters = o.max_waiters or DEFAULTS.max_waiters,
    wait_timeout = o.wait_timeout or DEFAULTS.wait_timeout,
    -- the callbacks, apart from the methods (close is both)
    on = { connect = o.connect, alive = o.alive, park = o.park, close = o.close or close_conn },
    slots = {},     -- key -> {key, idle = {{conn, expires}...} (oldest first), busy, waiters}
    owners = setmetatable({}, { __mode = "k" }), -- acquired connection -> its slot
    idle_count = 0,
    closed = false,
  }, Pool)
end

local function check_key(key, fname, argn)
  if type(key) ~= "string" then argerror(fname, argn, "string key expected, got " .. type(key)) end
end

-- The state of one key, made on first use.
function Pool:_slot(key)
  local slot = self.slots[key]
  if not slot then
    slot = { key = key, idle = {}, busy = 0, waiters = {} }
    self.slots[key] = slot
  end
  return slot
end

-- Forgets a key with nothing left, and a pool with nothing idle leaves the sweep.
function Pool:_tidy(slot)
  if #slot.idle == 0 and slot.busy == 0 and #slot.waiters == 0 and self.slots[slot.key] == slot then
    self.slots[slot.key] = nil
  end
  if self.idle_count == 0 then live[self] = nil end
end

-- Adds conn to slot's idle list, or closes it: true when kept.
function Pool:_park(slot, conn, idle_timeout, max_idle)
  if self.closed or max_idle == 0 or (self.on.park and not self.on.park(conn)) then
    self.on.close(conn)
    return false
  end
  local idle, evicted = slot.idle, nil
  while #idle >= max_idle do -- full: the least recently used one goes
    evicted = evicted or {}
    evicted[#evicted + 1] = remove(idle, 1).conn
    self.idle_count = self.idle_count - 1
  end
  idle[#idle + 1] = { conn = conn, expires = idle_timeout > 0 and now() + idle_timeout or huge }
  self.idle_count = self.idle_count + 1
  live[self] = true
  sweep_start()
  if evicted then for i = 1, #evicted do self.on.close(evicted[i]) end end
  return true
end

-- The most recently parked idle connection of slot that is still alive, or nil.
function Pool:_take_idle(slot)
  local idle, alive = slot.idle, self.on.alive
  while #idle > 0 do
    local entry = idle[#idle]
    idle[#idle] = nil
    self.idle_count = self.idle_count - 1
    local conn = entry.conn
    if entry.expires > now() and (not alive or alive(conn)) then return conn end
    self.on.close(conn)
  end
  return nil
end

-- pool:put(key, conn[, idle_timeout[, max_idle]]) -> true (kept) | false (closed)
-- conn is free: it waits under key. The two numbers override the pool's for this one.
function Pool:put(key, conn, idle_timeout, max_idle)
  check_key(key, "put", 1)
  if conn == nil then argerror("put", 2, "connection expected, got nil") end
  if idle_timeout ~= nil and (type(idle_timeout) ~= "number" or idle_timeout < 0) then
    argerror("put", 3, "non-negative number of milliseconds expected")
  end
  if max_idle ~= nil and (type(max_idle) ~= "number" or max_idle < 0) then
    argerror("put", 4, "non-negative number expected")
  end
  local slot = self:_slot(key)
  local kept = self:_park(slot, conn, idle_timeout or self.idle_timeout, max_idle or self.max_idle)
  self:_tidy(slot)
  return kept
end

-- pool:take(key) -> a live idle connection, or nil
function Pool:take(key)
  check_key(key, "take", 1)
  local slot = self.slots[key]
  if not slot then return nil end
  local conn = self:_take_idle(slot)
  self:_tidy(slot)
  return conn
end

-- Hands conn (or, when nil, the right to make a connection: a free place) to the first
-- waiter of slot that is still waiting. Returns false when nobody waits.
local function hand_over(slot, conn)
  local waiters = slot.waiters
  while #waiters > 0 do
    if sched.wake(remove(waiters, 1), true, conn) then return true end
  end
  return false
end

-- Makes a connection for a place already counted in slot.busy. An error raised by
-- options.connect is raised again once the place is free (it must not be lost).
function Pool:_connect(slot)
  local ok, conn, err = pcall(self.on.connect, slot.key)
  if not ok or conn == nil then -- the place is free again
    if self.closed or not hand_over(slot, nil) then slot.busy = slot.busy - 1 end
    self:_tidy(slot)
    if not ok then error(conn, 0) end
    return nil, err
  end
  self.owners[conn] = slot
  return conn
end

-- pool:acquire([key]) -> conn | nil, err. Waits in the calling task while `size`
-- connections of key are out.
function Pool:acquire(key)
  if key == nil then key = "" end
  check_key(key, "acquire", 1)
  if self.closed then return fail("ECANCELED", "the pool is closed") end
  local slot = self:_slot(key)
  if slot.busy < self.size then
    slot.busy = slot.busy + 1
    local conn = self:_take_idle(slot)
    if conn ~= nil then
      self.owners[conn] = slot
      self:_tidy(slot)
      return conn
    end
    if not self.on.connect then
      slot.busy = slot.busy - 1
      self:_tidy(slot)
      error("acquire: no idle connection and the pool has no connect function", 2)
    end
    return self:_connect(slot)
  end
  local waiters = slot.waiters
  if #waiters >= self.max_waiters then
    self:_tidy(slot)
    return fail("EBUSY", ("too many tasks waiting for a connection (max_waiters %d)"):format(self.max_waiters))
  end
  local me = sched.waiter("acquire")
  waiters[#waiters + 1] = me
  local woken, conn = sched.suspend(self.wait_timeout > 0 and self.wait_timeout or nil)
  if woken == nil then -- timed out: leave the queue
    for i = #waiters, 1, -1 do
      if waiters[i] == me then remove(waiters, i) end
    end
    self:_tidy(slot)
    return fail("ETIMEDOUT", ("no connection free within wait_timeout (%d ms)"):format(self.wait_timeout))
  end
  if not woken then return fail("ECANCELED", "the pool is closed") end
  if conn ~= nil then
    self.owners[conn] = slot
    return conn
  end
  return self:_connect(slot)
end

-- pool:release(conn[, reusable]): gives back a connection from acquire. reusable = false
-- (broken, or in a state the next user must not see) closes it.
function Pool:release(conn, reusable)
  local slot = conn ~= nil and self.owners[conn]
  if not slot then argerror("release", 1, "not a connection acquired from this pool (or released twice)") end
  self.owners[conn] = nil
  if reusable == false or self.closed then
    self.on.close(conn)
    if self.closed or not hand_over(slot, nil) then slot.busy = slot.busy - 1 end
  elseif not hand_over(slot, conn) then
    slot.busy = slot.busy - 1
    self:_park(slot, conn, self.idle_timeout, self.max_idle)
  end
  self:_tidy(slot)
end

-- pool:stats([key]) -> {idle, busy, waiting}: for key, or summed over every key
function Pool:stats(key)
  if key ~= nil then check_key(key, "stats", 1) end
  local idle, busy, waiting = 0, 0, 0
  for k, slot in pairs(self.slots) do
    if key == nil or k == key then
      idle, busy, waiting = idle + #slot.idle, busy + slot.busy, waiting + #slot.waiters
    end
  end
  return { idle = idle, busy = busy, waiting = waiting }
end

-- pool:close(): closes every idle connection and fails every waiter (ECANCELED); later
-- acquires fail the same way, puts and releases close the connection.
function Pool:close()
  if self.closed then return end
  self.closed = true
  local slots = {}
  for _, slot in pairs(self.slots) do slots[#slots + 1] = slot end
  for i = 1, #slots do
    local slot = slots[i]
    local waiters = slot.waiters
    slot.waiters = {}
    for j = 1, #waiters do sched.wake(waiters[j], false) end
    local idle = slot.idle
    slot.idle = {}
    self.idle_count = self.idle_count - #idle
    for j = 1, #idle do self.on.close(idle[j].conn) end
    self:_tidy(slot)
  end
  live[self] = nil
end

return pool
