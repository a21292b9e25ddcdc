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

local function on_error(message)
  return traceback(tostring(message), 2)
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
    report(xpcall(fn, on_error, unpack(args, 1, n)))
  end)
  return t
end

-- handle:join([timeout_ms]) -> true, results... | false, error | nil, err (ETIMEDOUT)
-- Waits for the task to end. With a timeout, gives up after that many milliseconds
-- (math.huge: no timeout).
function Task:join(timeout)
  if timeout ~= nil then timeout = options.ms(timeout, 1, "join") end
  if self.status ~= "dead" then
    local me = sched.current()
    if me == nil then
      error("join: cannot wait here: waiting calls must run in a luaio task", 2)
    end
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

return task
