-- Signal handlers: process.on and process.off. Handlers run in tasks, never keep the process
-- alive on their own, and let a server end gracefully on SIGTERM.
local test = require "test"
local process = require "process"
local task = require "task"

local luaio = test.quote(test.luaio)
local q = test.quote

local function script(source)
  local dir = test.tmpdir()
  test.write(dir .. "/s.lua", source)
  return dir .. "/s.lua", dir
end

test.case("a handler runs in a new task per signal, gets the name and may wait", function()
  local got = {}
  test.eq(process.on("SIGUSR2", function(name)
    test.ok(task.current(), "runs in a task")
    task.sleep(5) -- a handler may wait
    got[#got + 1] = name
  end), true)
  test.eq(process.kill(process.pid, "SIGUSR2"), true)
  local deadline = task.now() + 5000
  while #got < 1 and task.now() < deadline do task.sleep(5) end
  test.eq(got, { "SIGUSR2" })
  process.kill(process.pid, 12) -- SIGUSR2 by number
  deadline = task.now() + 5000
  while #got < 2 and task.now() < deadline do task.sleep(5) end
  test.eq(got, { "SIGUSR2", "SIGUSR2" })
  test.eq(process.off("SIGUSR2"), true)
  test.eq(process.off("SIGUSR2"), false, "nothing left to remove")
end)

test.case("process.on again replaces the handler", function()
  local which
  process.on("SIGUSR2", function() which = "first" end)
  process.on("SIGUSR2", function() which = "second" end)
  process.kill(process.pid, "SIGUSR2")
  local deadline = task.now() + 5000
  while not which and task.now() < deadline do task.sleep(5) end
  test.eq(which, "second")
  process.off("SIGUSR2")
end)

test.case("a registered handler does not keep the process alive; the handler runs before the end", function()
  local path = script([[
local process = require "process"
local task = require "task"
process.on("SIGUSR1", function(name) task.sleep(20) print("handled", name) end)
process.on("SIGHUP", function() print("never") end)
process.kill(process.pid, "SIGUSR1")
task.sleep(200)
print("main done")
]])
  local started = task.now()
  local out, status = test.sh("timeout -s KILL 20 " .. luaio .. " run " .. q(path))
  test.eq(status, 0, out)
  test.eq(out, "handled\tSIGUSR1\nmain done\n")
  test.ok(task.now() - started < 5000, "exited as soon as the main task ended")
end)

test.case("SIGTERM handler: a server finishes its work and exits gracefully", function()
  local path, dir = script([[
local process = require "process"
local task = require "task"
local dir = ...
local stopping = false
process.on("SIGTERM", function(name)
  print("got " .. name .. ", finishing")
  stopping = true
  task.sleep(50) -- e.g. let requests in flight complete
  print("bye")
  process.exit(0)
end)
io.open(dir .. "/ready", "w"):close()
while true do -- the server's work: never ends by itself
  task.sleep(10)
  if stopping then io.write("") end
end
]])

  local out = test.sh(("timeout -s KILL 20 sh -c '%s run %s %s & p=$!; for i in $(seq 200); do [ -e %s ] && break; sleep 0.05; done; kill -TERM $p; wait $p; echo status $?'")
    :format(test.luaio, path, dir, dir .. "/ready"))
  test.eq(out, "got SIGTERM, finishing\nbye\nstatus 0\n")
end)

test.case("after off the signal has its default effect again", function()
  local path = script([[
local process = require "process"
process.on("SIGUSR1", function() print("handled") end)
process.off("SIGUSR1")
process.kill(process.pid, "SIGUSR1")
require("task").sleep(2000)
print("not reached")
]])
  local out = test.sh("timeout -s KILL 20 " .. luaio .. " run " .. q(path) .. "; echo \"status $?\"")
  test.match(out, "status 138\n$") -- 128 + SIGUSR1: the default action ended the process
  test.ok(not out:find("handled") and not out:find("not reached"), out)
end)

test.case("on and off: wrong arguments raise naming them", function()
  local f = function() end
  test.raises(function() process.on("SIGNOPE", f) end, "bad argument #1 to 'on' %(unknown signal 'SIGNOPE'%)")
  test.raises(function() process.on("SIGKILL", f) end, "bad argument #1 to 'on' %(SIGKILL and SIGSTOP cannot be handled%)")
  test.raises(function() process.on(19, f) end, "bad argument #1 to 'on' %(SIGKILL and SIGSTOP cannot be handled%)")
  test.raises(function() process.on("SIGSEGV", f) end, "bad argument #1 to 'on' %(a fault signal cannot be handled%)")
  test.raises(function() process.on(0, f) end, "bad argument #1 to 'on' %(signal 0 cannot be handled%)")
  test.raises(function() process.on(true, f) end, "bad argument #1 to 'on' %(signal name or number expected, got boolean%)")
  test.raises(function() process.on("SIGUSR1", "f") end, "bad argument #2 to 'on' %(function expected, got string%)")
  test.raises(function() process.on("SIGUSR1") end, "bad argument #2 to 'on' %(function expected, got no value%)")
  test.raises(function() process.off(1.5) end, "bad argument #1 to 'off' %(signal number out of range%)")
  test.raises(function() process.off() end, "bad argument #1 to 'off'")
end)
