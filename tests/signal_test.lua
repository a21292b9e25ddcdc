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

-- Waits until cond() is true (5 s at most).
local function until_true(cond)
  local deadline = task.now() + 5000
  while not cond() and task.now() < deadline do task.sleep(5) end
end

test.case("several handlers: all run, each in its own task, in the order added", function()
  local order, tasks = {}, {}
  local function handler(name)
    return function()
      order[#order + 1] = name
      tasks[name] = task.current()
      task.sleep(5) -- each waits in its own task: the others start anyway
      order[#order + 1] = name .. " done"
    end
  end
  local first, second, third = handler("first"), handler("second"), handler("third")
  test.cleanup(function() process.off("SIGUSR2") end)
  test.eq(process.on("SIGUSR2", first), true)
  test.eq(process.on("SIGUSR2", second), true)
  test.eq(process.on("SIGUSR2", third), true)
  test.eq(process.on("SIGUSR2", first), true, "a function already there is not added twice")
  process.kill(process.pid, "SIGUSR2")
  until_true(function() return #order == 6 end)
  test.eq({ order[1], order[2], order[3] }, { "first", "second", "third" })
  test.eq(#order, 6, "each ran once")
  test.ok(tasks.first ~= tasks.second and tasks.second ~= tasks.third, "one task each")
end)

test.case("off(signal, fn) removes that handler; off(signal) removes them all", function()
  local got = {}
  local function a() got[#got + 1] = "a" end
  local function b() got[#got + 1] = "b" end
  local function c() got[#got + 1] = "c" end
  test.cleanup(function() process.off("SIGUSR2") end)
  process.on("SIGUSR2", a)
  process.on("SIGUSR2", b)
  process.on("SIGUSR2", c)
  test.eq(process.off("SIGUSR2", b), true)
  test.eq(process.off("SIGUSR2", b), false, "b is no longer there")
  process.kill(process.pid, "SIGUSR2")
  until_true(function() return #got == 2 end)
  task.sleep(20)
  test.eq(got, { "a", "c" })
  test.eq(process.off("SIGUSR2"), true)
  test.eq(process.off("SIGUSR2"), false, "nothing left")
  test.eq(process.off("SIGUSR2", a), false)
  test.raises(function() process.off("SIGUSR2", "a") end, "bad argument #2 to 'off' %(function expected, got string%)")
end)

test.case("a handler added by another handler runs from the next signal on", function()
  local got = {}
  local function later() got[#got + 1] = "later" end
  test.cleanup(function() process.off("SIGUSR2") end)
  process.on("SIGUSR2", function()
    got[#got + 1] = "first"
    process.on("SIGUSR2", later)
  end)
  process.kill(process.pid, "SIGUSR2")
  until_true(function() return #got >= 1 end)
  task.sleep(20)
  test.eq(got, { "first" })
  process.kill(process.pid, "SIGUSR2")
  until_true(function() return #got >= 3 end)
  test.eq(got, { "first", "first", "later" })
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

-- A server script started in the background: prints "listening <port> <pid>" and, when it
-- ends, "status <exit status>".
local function http_app(source)
  local helpers = require "tests.helpers"
  local dir = test.tmpdir()
  test.write(dir .. "/server.lua", [[
io.stdout:setvbuf("line")
local http, process, task = require "http", require "process", require "task"
]] .. source .. [[

print("listening " .. server:address().port .. " " .. process.pid)
]])
  local peer = helpers.start("timeout -s KILL 30 " .. luaio .. " run " .. dir .. "/server.lua; echo status $?")
  local port, pid = helpers.wait_output(peer, "listening (%d+ %d+)"):match("(%d+) (%d+)")
  return peer, tonumber(port), tonumber(pid), helpers
end

test.case("SIGTERM with http's graceful stop and an app handler: both run; the app decides when to exit", function()
  local peer, port, pid, helpers = http_app([[
process.on("SIGTERM", function(name) print("app handler " .. name) end) -- before the server
local server = assert(http.createServer(0, function(req, res)
  print("handling")
  task.sleep(300)
  res:finish("slow done")
end, { host = "127.0.0.1" }))
]])
  local client = helpers.start("curl -s http://127.0.0.1:" .. port .. "/")
  helpers.wait_output(peer, "handling")
  process.kill(pid, "SIGTERM")
  helpers.wait_output(client, "slow done") -- the library drained the request in flight
  -- the app's handler ran, did not exit; with the servers closed nothing is left: exit 0
  local out = helpers.wait_output(peer, "(.*status %d+\n)")
  test.match(out, "app handler SIGTERM\n")
  test.match(out, "status 0\n$")
end)

test.case("SIGTERM: an app with its own handler exits when it says, after http's drain", function()
  local peer, _, pid, helpers = http_app([[
process.on("SIGTERM", function()
  task.sleep(300) -- longer than the drain, which has no request to wait for
  print("app exits")
  process.exit(3)
end)
local server = assert(http.createServer(0, function(req, res) res:finish("hi") end, { host = "127.0.0.1" }))
task.spawn(function() while true do task.sleep(20) end end) -- other work: keeps the process up
]])
  process.kill(pid, "SIGTERM")
  local out = helpers.wait_output(peer, "(.*status %d+\n)")
  test.eq(out:match("app exits\nstatus 3\n$"), "app exits\nstatus 3\n", out)
end)
