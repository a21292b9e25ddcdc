-- task: lightweight threads on the luaio scheduler.
--
--   local task = require "task"
--   local t = task.spawn(function(a, b) task.sleep(10); return a + b end, 1, 2)
--   print(t:join())          --> true  3
--
-- A spawned function starts on the next loop iteration, runs until it waits, and the loop
-- resumes it when what it waits for is ready. An error it does not catch is reported on
-- stderr with a traceback; the process goes on, and join() returns false, message.
local sched = require "luaio.task"
local options = require "luaio.options"
local E = require "luaio.error"

local select, type, unpack = select, type, unpack
local traceback = debug.traceback

local task = {}

local Task = {}
Task.__index = Task

-- Results are kept as {ok, values..., n = count}.
local function finish(t, ...)
  t.results = { n = select("#", ...), ... }
  t.status = "dead"
  local waiters = t.waiters
  t.waiters = nil
  for i = 1, #waiters do sched.wake(waiters[i], true) end
end

-- An error object as text: tostring, unless its __tostring raises or gives no text.
local function error_text(message)
  local ok, text = pcall(tostring, message)
  if ok and (type(text) == "string" or type(text) == "number") then return tostring(text) end
  return "(error object is a " .. type(message) .. " value)"
end

local function on_error(message)
  return traceback(error_text(message), 2)
end

-- task.spawn(fn, ...) -> handle. fn(...) runs in a new task.
function task.spawn(fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'spawn' (function expected, got " .. type(fn) .. ")", 2)
  end
  local t = setmetatable({ status = "running", waiters = {} }, Task)
  local n, args = select("#", ...), { ... }
  sched.spawn(function()
    local function report(ok, ...)
      if not ok then
        io.stderr:write("luaio: uncaught error in task: ", (...), "\n")
        -- join() gets the message without the traceback, as pcall would give it
        return finish(t, false, ((...):match("^(.-)\nstack traceback:") or (...)))
      end
      return finish(t, true, ...)
    end
    -- report itself fails when fn returns more values than a call can take (a stack
    -- overflow): the task still ends, with that error, or join would wait forever.
    local kept, err = pcall(report, xpcall(fn, on_error, unpack(args, 1, n)))
    if not kept and t.status ~= "dead" then
      local message = "its results could not be kept: " .. error_text(err)
      io.stderr:write("luaio: uncaught error in task: ", message, "\n")
      finish(t, false, message)
    end
  end)
  return t
end

-- handle:join([timeout_ms]) -> true, results... | false, error | nil, err (ETIMEDOUT)
-- Waits for the task to end. With a timeout, gives up after that many milliseconds
-- (math.huge: no timeout).
function Task:join(timeout)
  if getmetatable(self) ~= Task then
    options.argerror(1, "join", "task handle expected, got " .. type(self))
  end
  if timeout ~= nil then timeout = options.ms(timeout, 1, "join") end
  if self.status ~= "dead" then
    local me = sched.waiter("join")
    local waiters = self.waiters
    waiters[#waiters + 1] = me
    if sched.suspend(timeout) == nil then
      for i = #waiters, 1, -1 do
        if waiters[i] == me then table.remove(waiters, i) end
      end
      return nil, E.new("ETIMEDOUT", "timed out")
    end
  end
  local r = self.results
  return unpack(r, 1, r.n)
end

-- task.sleep(ms): waits ms milliseconds (fractions allowed; 0 lets others run first;
-- math.huge: forever). The checks are sched.sleep's own (runtime/core/opt.c).
task.sleep = sched.sleep

-- task.yield(): lets every other ready task run, then carries on.
task.yield = sched.yield

-- task.now() -> monotonic milliseconds (a float, sub-millisecond precision).
task.now = sched.now

-- task.current() -> the running task's coroutine, or nil outside a task.
task.current = sched.current

-- --- tickers: a fixed rate on an absolute schedule ------------------------------------------

-- Tick n of a ticker is due at start + n * period on the monotonic clock, whenever the tick
-- before it actually ran: the schedule never drifts (node's setInterval and a loop of sleep(ms)
-- do, by the time each callback takes). A tick whose time has passed by more than a period is
-- skipped and counted as missed, as Go's time.Ticker drops ticks.
local Ticker = {}
Ticker.__index = Ticker

local ceil, floor, huge = math.ceil, math.floor, math.huge

local function new_ticker(ms, fname)
  ms = options.ms(ms, 1, fname, 3)
  if ms == 0 or ms == huge then
    options.argerror(1, fname, "period of milliseconds above 0 expected, got " .. tostring(ms), 3)
  end
  return setmetatable({ period = ms, start = sched.now(), tick = 0, missed = 0, late = 0, stopped = false }, Ticker)
end

-- task.ticker(ms) -> ticker. ticker:wait() returns at each tick.
function task.ticker(ms) return new_ticker(ms, "ticker") end

-- ticker:wait() -> n, missed, late | nil, err (ECANCELED once stopped). Waits for the next
-- tick: n is its number (1, 2, ... from the ticker's creation), missed the ticks skipped since
-- the last wait because their time had passed, late how many ms after its due time the tick
-- came. A tick already due returns at once (after letting other ready tasks run).
local function check_ticker(t, fname)
  if getmetatable(t) ~= Ticker then options.argerror(1, fname, "ticker expected, got " .. type(t), 3) end
end

function Ticker:wait()
  check_ticker(self, "wait")
  if self.stopped then return nil, E.new("ECANCELED", "ticker stopped") end
  if self.waiter then return nil, E.new("EBUSY", "another task waits on this ticker") end
  local period = self.period
  local n = self.tick + 1
  local due = self.start + n * period
  local now = sched.now()
  local missed = 0
  if now >= due + period then -- whole periods have passed: skip their ticks
    missed = floor((now - due) / period)
    n, due = n + missed, due + missed * period
  end
  local me = sched.waiter("wait")
  self.waiter = me
  -- The loop's clock counts whole milliseconds from below: waiting ceil(due - floor(now)) ms
  -- wakes us at due or within a millisecond after it, never before.
  local woken
  if now < due then
    repeat
      woken = sched.suspend(ceil(due - floor(now)))
      now = sched.now()
    until woken or now >= due
  else
    sched.yield() -- late: still let the other tasks and I/O run
    now = sched.now()
  end
  self.waiter = nil
  if woken or self.stopped then return nil, E.new("ECANCELED", "ticker stopped") end
  self.tick, self.missed, self.late = n, self.missed + missed, now - due
  return n, missed, now - due
end

-- ticker:stop(): no more ticks; a task in wait() gets nil, ECANCELED.
function Ticker:stop()
  check_ticker(self, "stop")
  self.stopped = true
  if self.waiter then sched.wake(self.waiter, true) end
end

-- task.every(ms, fn, ...) -> ticker. Runs fn(ticker, ...) at each tick, in a task of its own,
-- until ticker:stop(). An error in fn is reported on stderr and the ticks go on.
function task.every(ms, fn, ...)
  local t = new_ticker(ms, "every")
  if type(fn) ~= "function" then
    error("bad argument #2 to 'every' (function expected, got " .. type(fn) .. ")", 2)
  end
  local n, args = select("#", ...), { ... }
  task.spawn(function()
    while t:wait() do
      local ok, err = xpcall(fn, on_error, t, unpack(args, 1, n))
      if not ok then io.stderr:write("luaio: error in task.every: ", tostring(err), "\n") end
    end
  end)
  return t
end

return task
