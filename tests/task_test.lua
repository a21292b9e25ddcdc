-- The scheduler: tasks, sleep, join, yield, errors, and what exits the process.
local test = require "test"
local task = require "task"

local luaio = test.quote(test.luaio)

-- Runs a Lua snippet as a script under `luaio run`; returns output, exit status.
local function run_script(source, args)
  local dir = test.tmpdir()
  test.write(dir .. "/script.lua", source)
  return test.sh(luaio .. " run " .. dir .. "/script.lua " .. (args or ""))
end

test.case("spawn runs the function with its arguments and join returns its results", function()
  local t = task.spawn(function(a, b) return a + b, "x" end, 2, 3)
  test.eq({ t:join() }, { true, 5, "x" })
  test.eq({ t:join() }, { true, 5, "x" }, "a second join")
end)

test.case("spawned tasks start after the spawner waits, in spawn order", function()
  local order = {}
  local a = task.spawn(function() order[#order + 1] = "a" end)
  local b = task.spawn(function() order[#order + 1] = "b" end)
  order[#order + 1] = "main"
  a:join()
  b:join()
  test.eq(order, { "main", "a", "b" })
end)

test.case("sleep waits at least the time asked, and sleepers wake in deadline order", function()
  local woke = {}
  local started = task.now()
  local tasks = {}
  for _, ms in ipairs({ 30, 10, 20 }) do
    tasks[#tasks + 1] = task.spawn(function() task.sleep(ms); woke[#woke + 1] = ms end)
  end
  for _, t in ipairs(tasks) do t:join() end
  test.eq(woke, { 10, 20, 30 })
  test.ok(task.now() - started >= 29, "slept for at least 30 ms")
end)

test.case("many tasks sleep concurrently, not one after another", function()
  local started = task.now()
  local tasks = {}
  for i = 1, 1000 do tasks[i] = task.spawn(task.sleep, 50) end
  for i = 1, 1000 do test.eq(tasks[i]:join(), true) end
  -- 1000 sequential sleeps would take 50 s; concurrent ones finish in well under 10 s
  test.ok(task.now() - started < 10000, "1000 sleeps of 50 ms ran concurrently")
end)

test.case("join with a timeout gives nil, ETIMEDOUT and the task goes on", function()
  local done = false
  local t = task.spawn(function() task.sleep(60); done = true; return "late" end)
  local ok, err = t:join(5)
  test.eq(ok, nil)
  test.eq({ err.name, err.code }, { "ETIMEDOUT", require("luaio.error").code("ETIMEDOUT") })
  test.match(tostring(err), "^ETIMEDOUT: ")
  test.eq(done, false)
  test.eq({ t:join() }, { true, "late" })
end)

test.case("durations: math.huge (or 2^64 ms and more) is forever; NaN and negatives raise", function()
  for _, forever in ipairs({ math.huge, 2 ^ 64, 2 ^ 70 }) do
    local t = task.spawn(task.sleep, forever)
    local ok, err = t:join(50)
    test.eq({ ok, err and err.name }, { nil, "ETIMEDOUT" }, "sleep(" .. forever .. ") is still sleeping")
  end
  local t = task.spawn(function() task.sleep(30) return "woke" end)
  test.eq({ t:join(math.huge) }, { true, "woke" }, "join(math.huge) waits with no timeout")
  test.eq({ t:join(2 ^ 64) }, { true, "woke" })
  local a = task.now()
  task.sleep(0.5) -- a fraction rounds up: never shorter than asked
  test.ok(task.now() - a >= 0.5, "slept at least 0.5 ms")
  for _, bad in ipairs({ 0 / 0, -1, -math.huge, "10", true }) do
    test.raises(function() task.sleep(bad) end,
      "bad argument #1 to 'sleep' %(non%-negative number of milliseconds %(or math.huge%) expected, got ")
    test.raises(function() t:join(bad) end,
      "task_test.lua:%d+: bad argument #1 to 'join' %(non%-negative number of milliseconds")
  end
  test.raises(function() task.sleep(0 / 0) end, "got nan%)")
end)

test.case("sleep(math.huge) keeps the process alive, as any sleep does", function()
  local dir = test.tmpdir()
  test.write(dir .. "/script.lua", 'require("task").sleep(math.huge) print("woke")')
  local out, status = test.sh("timeout 1 " .. luaio .. " run " .. dir .. "/script.lua")
  test.eq({ out, status }, { "", 124 }, "still sleeping when timeout(1) ended it")
end)

test.case("an error in a task comes back from join as false, message", function()
  local t = task.spawn(function() error("kaput") end)
  local ok, err = t:join()
  test.eq(ok, false)
  test.match(err, "task_test.lua:%d+: kaput")
end)

test.case("yield lets other ready tasks run", function()
  local steps = {}
  local other = task.spawn(function() steps[#steps + 1] = "other" end)
  task.yield()
  steps[#steps + 1] = "main"
  other:join()
  test.eq(steps, { "other", "main" })
end)

test.case("now is monotonic milliseconds", function()
  local a = task.now()
  task.sleep(5)
  local b = task.now()
  test.ok(b > a and b - a < 5000, "now advances by the sleep")
end)

test.case("wrong argument types raise errors naming the argument", function()
  test.raises(function() task.spawn(42) end, "bad argument #1 to 'spawn' %(function expected, got number%)")
  test.raises(function() task.sleep("soon") end, "bad argument #1 to 'sleep'")
  test.raises(function() task.sleep(-1) end, "bad argument #1 to 'sleep'")
  local t = task.spawn(function() end)
  test.raises(function() t:join("x") end, "bad argument #1 to 'join'")
  -- join and the ticker's methods called on something else than their object (t.join({})):
  -- an argument error at the caller's line, not an internal one from stdlib/task.lua
  test.raises(function() local _ = t.join({}) end,
    "^[^\n]*task_test%.lua:%d+: bad argument #1 to 'join' %(task handle expected, got table%)")
  test.raises(function() local _ = t.join(nil, 10) end,
    "^[^\n]*task_test%.lua:%d+: bad argument #1 to 'join' %(task handle expected, got nil%)")
  local ticker = task.ticker(1000)
  test.raises(function() local _ = ticker.wait({}) end,
    "^[^\n]*task_test%.lua:%d+: bad argument #1 to 'wait' %(ticker expected, got table%)")
  test.raises(function() local _ = ticker.stop(5) end,
    "^[^\n]*task_test%.lua:%d+: bad argument #1 to 'stop' %(ticker expected, got number%)")
  ticker:stop()
end)

test.case("a wait outside a task raises a clear error", function()
  local co = coroutine.wrap(function() task.sleep(1) end)
  test.raises(co, "sleep: cannot wait here")
end)

test.case("a wait inside a call made by C raises before it starts anything: nothing resumes the task later", function()
  local tcp = require "tcp"
  local function waits() task.sleep(20) end
  local calls = {
    gsub = function() return string.gsub("x", "x", waits) end,
    sort = function() table.sort({ 3, 1, 2 }, function(a, b) waits(); return a < b end) end,
    load = function() error(select(2, load(function() waits() end)), 0) end, -- the reader's error comes back
  }
  for name, call in pairs(calls) do
    local ok, err = pcall(call)
    test.ok(not ok, name .. " raised")
    test.match(tostring(err), "sleep: cannot wait here: this code runs inside a call made by C")
  end
  -- Lua code that lists the task before it suspends (join) raises before it lists it.
  local short = task.spawn(function() task.sleep(30) return "done" end)
  local ok, err = pcall(string.gsub, "x", "x", function() short:join() end)
  test.ok(not ok)
  test.match(err, "join: cannot wait here")
  -- A stale 20 ms timer, or the joined task's end, would cut this sleep short.
  local started = task.now()
  task.sleep(150)
  test.ok(task.now() - started >= 149, "the next sleep lasted its time")
  test.eq({ short:join() }, { true, "done" })

  -- A socket read: before the check, its reader stayed registered and the next read was refused.
  local server = assert(tcp.createServer(0, function(s) s:write(s:read()) end, { host = "127.0.0.1" }))
  local sock = assert(tcp.connect(server:address().port, "127.0.0.1"))
  local ok, err = pcall(string.gsub, "x", "x", function() return sock:read() end)
  test.ok(not ok)
  test.match(err, "read: cannot wait here")
  assert(sock:write("hello"))
  test.eq(sock:read(5), "hello")
  sock:close()
  server:close()
end)

test.case("a module's top level may wait; tasks requiring it meanwhile wait for it and get the same module", function()
  local runs = 0
  package.preload["waits_at_top_level"] = function(name)
    runs = runs + 1
    task.sleep(30)
    return { name = name }
  end
  local tasks = {}
  for i = 1, 3 do tasks[i] = task.spawn(require, "waits_at_top_level") end
  local first = require "waits_at_top_level"
  test.eq(first.name, "waits_at_top_level")
  for i = 1, 3 do test.eq({ tasks[i]:join() }, { true, first }) end
  test.eq(runs, 1)
  test.eq(package.loaded["waits_at_top_level"], first)

  -- A failed load is not kept (the next require tries again); a loop is an error; a module
  -- that returns nothing is true; LuaJIT's messages.
  local fails = true
  package.preload["fails_once"] = function()
    task.sleep(1)
    if fails then fails = false error("not yet", 0) end
    return "second time"
  end
  test.eq({ pcall(require, "fails_once") }, { false, "not yet" })
  test.eq(require "fails_once", "second time")
  package.preload["requires_itself"] = function() task.sleep(1) return require "requires_itself" end
  test.eq({ pcall(require, "requires_itself") }, { false, "loop or previous error loading module 'requires_itself'" })
  package.preload["returns_nothing"] = function() end
  test.eq(require "returns_nothing", true)
  test.raises(function() require({}) end, "bad argument #1 to 'require' %(string expected, got table%)")
  test.raises(function() require "no_such_module" end, "module 'no_such_module' not found:\n\tno field package.preload%['no_such_module'%]")
end)

test.case("an uncaught error in a spawned task is reported with file:line and the process goes on", function()
  local out, status = run_script([[
local task = require "task"
task.spawn(function() local t = nil; return t.field end)
task.sleep(10)
print("still running")
]])
  test.eq(status, 0)
  test.match(out, "uncaught error in task: [^\n]*script.lua:2: attempt to index")
  test.match(out, "stack traceback:")
  test.match(out, "still running")
end)

test.case("an uncaught error in the main chunk exits 1 with a traceback", function()
  local out, status = run_script([[
local task = require "task"
local function deeper() task.sleep(1); error("main failed") end
deeper()
print("not reached")
]])
  test.eq(status, 1)
  test.match(out, "script.lua:2: main failed")
  test.match(out, "stack traceback:")
  test.ok(not out:find("not reached"), "nothing runs after the error")
end)

test.case("an error object whose __tostring raises or gives no text still ends its task, and main with status 1", function()
  local raising = setmetatable({}, { __tostring = function() error("no text") end })
  local table_text = setmetatable({}, { __tostring = function() return {} end })
  for _, object in ipairs({ raising, table_text }) do
    local t = task.spawn(function() error(object) end)
    test.eq({ t:join(5000) }, { false, "(error object is a table value)" })
  end
  local out, status = run_script([[
error(setmetatable({}, { __tostring = function() error("no text") end }))
]])
  test.eq(status, 1)
  test.match(out, "^luaio: error: %(error object is a table value%)\nstack traceback:")
  test.ok(not out:find("PANIC"), "no panic")
end)

test.case("a task returning more values than a call can take ends with that error", function()
  local function deep() return pcall(deep) end -- each level adds a value: about 30,000
  local t = task.spawn(deep)
  local ok, message = t:join(5000)
  test.eq(ok, false)
  test.match(message, "^its results could not be kept: .*stack overflow")
  test.eq(t.status, "dead")
end)

test.case("the process exits when no work is left, after the spawned tasks end", function()
  local out, status = run_script([[
local task = require "task"
task.spawn(function() task.sleep(30); print("late task done") end)
print("main done")
]])
  test.eq(status, 0)
  test.eq(out, "main done\nlate task done\n")
end)

test.case("coroutine.yield straight out of a task is reported, not a silent hang", function()
  local out, status = run_script("coroutine.yield()\n")
  test.eq(status, 1)
  test.match(out, "coroutine.yield%(%) called directly in a task")
end)

test.case("plain coroutines still work inside a task", function()
  local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
  test.eq({ gen(), gen(), gen() }, { 1, 2, 3 })
end)

test.case("os.exit sets the exit status", function()
  local _, status = run_script("require('task').sleep(1) os.exit(7)\n")
  test.eq(status, 7)
end)

-- --- tickers ---------------------------------------------------------------------------------

test.case("ticker: ticks on an absolute schedule, not drifting with the work done between them", function()
  local t = task.ticker(20)
  local start = t.start
  for i = 1, 10 do
    local n, missed, late = t:wait()
    test.eq({ n, missed }, { i, 0 })
    local now = task.now()
    test.ok(now >= start + i * 20, "tick " .. i .. " not early")
    test.ok(late >= 0, "late is not negative")
    -- work that takes most of the period: a sleep loop would drift by it every time
    local busy = task.now() + 15
    while task.now() < busy do end
  end
  -- the tenth tick is due at start + 200 ms whatever the work took (a drifting timer: 150 ms
  -- later); the bound is loose so that a loaded machine does not fail it
  test.ok(t.tick == 10 and t.late < 100, "the tenth tick came near its due time: " .. t.late)
  t:stop()
end)

test.case("ticker: ticks whose time has passed are skipped and counted", function()
  local t = task.ticker(10)
  test.eq((t:wait()), 1)
  local busy = task.now() + 55 -- more than five periods of work
  while task.now() < busy do end
  local n, missed = t:wait()
  test.ok(missed >= 4, "missed ticks counted: " .. missed)
  test.eq(n, 2 + missed, "the tick number says where on the schedule we are")
  test.eq(t.missed, missed)
  local n2, missed2 = t:wait()
  test.eq({ n2, missed2 }, { n + 1, 0 }, "then back on the schedule")
end)

test.case("ticker: stop wakes the waiting task with ECANCELED; a second waiter gets EBUSY", function()
  local t = task.ticker(1000)
  local waiter = task.spawn(function() return t:wait() end)
  task.sleep(10)
  local n, err = t:wait()
  test.eq({ n, err.name }, { nil, "EBUSY" })
  t:stop()
  local ok, r, werr = waiter:join(2000)
  test.eq({ ok, r, werr and werr.name }, { true, nil, "ECANCELED" })
  test.eq(select(2, t:wait()).name, "ECANCELED", "and every later wait")
end)

test.case("every: runs fn(ticker, ...) at each tick until stopped; an error does not stop it", function()
  local calls = {}
  local t = task.every(10, function(ticker, a)
    calls[#calls + 1] = ticker.tick
    if ticker.tick == 2 then error("tick two fails") end
    if ticker.tick == 4 then ticker:stop() end
    return a
  end, "arg")
  task.sleep(150)
  test.eq(calls, { 1, 2, 3, 4 })
  test.ok(t.stopped)
end)

test.case("every and ticker: bad arguments raise", function()
  test.raises(function() task.ticker(0) end, "bad argument #1 to 'ticker'")
  test.raises(function() task.ticker(-5) end, "bad argument #1 to 'ticker'")
  test.raises(function() task.ticker(math.huge) end, "bad argument #1 to 'ticker'")
  test.raises(function() task.every(10) end, "bad argument #2 to 'every'")
  test.raises(function() task.every("x", print) end, "bad argument #1 to 'every'")
end)

test.case("a running every keeps the process alive until stopped", function()
  local out, status = run_script([[
    local task = require "task"
    local n = 0
    task.every(5, function(t) n = n + 1; if n == 3 then t:stop() print("stopped") end end)
  ]])
  test.eq({ out, status }, { "stopped\n", 0 })
end)
