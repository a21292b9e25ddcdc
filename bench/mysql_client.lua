-- The luaio side of bench/mysql.sh: MODE (point, rows, rows_exec, idle), PORT, DURATION,
-- TASKS, POOL, CONNS. Prints "ops=N wall=S cpu=S" (cpu: this process's CPU seconds in the
-- measured window), or for idle "rss_kib_per_conn=X".
local mysql = require "mysql"
local task = require "task"
local env = require("process").env

local mode, port = env.MODE or "point", tonumber(env.PORT)
local duration = tonumber(env.DURATION or 5) * 1000
local o = { port = port, user = "bench", password = "bench-pw", database = "bench" }

local function report(ops, t0, c0)
  print(("ops=%d wall=%.3f cpu=%.3f"):format(ops, (task.now() - t0) / 1000, os.clock() - c0))
end

local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then return tonumber(kb) end
  end
end

if mode == "point" then
  o.size = tonumber(env.POOL or 32)
  local pool = mysql.pool(o)
  local tasks, ops, stop = tonumber(env.TASKS or 32), 0, false
  local function worker(n)
    local id = n
    while not stop do
      local rows = assert(pool:execute("SELECT * FROM users WHERE id = ?", id))
      assert(rows[1].id == id)
      id = id % 10000 + 1
      ops = ops + 1
    end
  end
  for i = 1, tasks do assert(pool:execute("SELECT * FROM users WHERE id = ?", i)) end -- warm: connect
  ops = 0
  local t0, c0 = task.now(), os.clock()
  local ts = {}
  for i = 1, tasks do ts[i] = task.spawn(worker, i * 311) end
  task.sleep(duration)
  stop = true
  local done = ops
  report(done, t0, c0)
  for i = 1, tasks do ts[i]:join() end
  os.exit(0)
elseif mode == "rows" or mode == "rows_exec" then
  local db = assert(mysql.connect(o))
  local run = mode == "rows" and function() return db:query("SELECT * FROM wide") end
    or function() return db:execute("SELECT * FROM wide") end
  assert(#assert(run()) == 10000)
  local rows, t0, c0 = 0, task.now(), os.clock()
  while task.now() - t0 < duration do
    rows = rows + #assert(run())
  end
  report(rows, t0, c0)
  os.exit(0)
elseif mode == "idle" then
  local n = tonumber(env.CONNS or 500)
  o.size = n
  local pool = mysql.pool(o)
  collectgarbage()
  collectgarbage()
  local before = rss_kib()
  local held = {}
  for i = 1, n do held[i] = assert(pool:get()) end
  for i = 1, n do held[i]:release() end
  held = nil
  collectgarbage()
  collectgarbage()
  task.sleep(500)
  print(("rss_kib_per_conn=%.2f idle=%d"):format((rss_kib() - before) / n, pool:stats().idle))
  os.exit(0)
end
