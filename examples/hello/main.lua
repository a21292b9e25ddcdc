-- The smallest luaio app: `out/luaio run examples/hello` or build it into one file with
-- `out/luaio build examples/hello -o out/hello && out/hello`.
local task = require "task"
local system = require "system"

local who = ... or "world"
print(("hello, %s"):format(who))

-- Two tasks that wait concurrently: the whole run takes about 100 ms, not 200.
local started = task.now()
local a = task.spawn(function() task.sleep(100); return "a" end)
local b = task.spawn(function() task.sleep(100); return "b" end)
print(select(2, a:join()), select(2, b:join()), ("%.0f ms"):format(task.now() - started))
print(("%d cpus, load %.2f"):format(#system.cpuinfo(), system.loadavg()[1]))
