-- The process module: fork (from a folder and from a bundle, forever, cpu, uid/gid,
-- detached), exec without a shell, wait, kill, and facts about this process. Every child a
-- test starts is waited for or killed before the case ends, and every command runs under
-- `timeout`, so a bug fails a case instead of hanging the suite.
local test = require "test"
local process = require "process"
local task = require "task"

local luaio = test.quote(test.luaio)
local q = test.quote

-- Writes files {name = source} into a new app folder; returns its path.
local function make_app(files)
  local dir = test.tmpdir() .. "/app"
  for name, source in pairs(files) do test.write(dir .. "/" .. name, source) end
  return dir
end

-- Runs an app folder (or file) under luaio run, killed after `limit` seconds (default 30).
local function run(path, args, limit)
  return test.sh(("timeout -s KILL %d %s run %s %s"):format(limit or 30, luaio, q(path), args or ""))
end

-- A zombie counts as dead: pid 1 of a container may be slow to reap the orphans it inherits.
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local state = f:read("*a"):match("%) (%S)")
  f:close()
  return state ~= nil and state ~= "Z"
end

-- Waits up to ms for cond() to hold; returns whether it did.
local function eventually(cond, ms)
  local deadline = task.now() + (ms or 5000)
  repeat
    if cond() then return true end
    task.sleep(20)
  until task.now() > deadline
  return cond()
end

local function lines(path)
  local t = {}
  local f = io.open(path)
  if f then
    for l in f:lines() do t[#t + 1] = l end
    f:close()
  end
  return t
end

-- A worker that reports what it got.
local WORKER = [[
local process = require "process"
print("worker", select("#", ...), table.concat({ ... }, "|"), arg[0], table.concat(process.argv, "|"))
print("env", tostring(process.getenv("LUAIO_FORK_FILE")), tostring(process.getenv("LUAIO_FORK_APP")))
print("bundled", require("bundle").bundled, "helper", require("lib.helper"))
os.exit(tonumber((...)) or 0)
]]

test.case("fork runs a file of the app with its args; wait gives its exit status", function()
  local app = make_app({
    ["main.lua"] = [[
local process = require "process"
local pid = assert(process.fork { file = "worker.lua", args = { "7", "two words", "" } })
print("pid", type(pid), pid ~= process.pid)
print("wait", process.wait(pid, 10000))
local pid2 = assert(process.fork { file = "jobs.worker", args = { "0" } })
print("wait2", process.wait(pid2, 10000))
]],
    ["worker.lua"] = WORKER,
    ["jobs/worker.lua"] = "print('jobs.worker ran', ...)\n",
    ["lib/helper.lua"] = "return 'helped'\n",
  })
  -- run from elsewhere: the child must find the app folder all the same
  local out, status = test.sh("cd / && timeout -s KILL 30 " .. luaio .. " run " .. q(app))
  test.eq(status, 0, out)
  test.match(out, "pid\tnumber\ttrue\n")
  test.match(out, "worker\t3\t7|two words|\tworker.lua\t7|two words|\n")
  test.match(out, "env\tnil\tnil\n")
  test.match(out, "bundled\tfalse\thelper\thelped\n")
  test.match(out, "wait\t7\t0\n")
  test.match(out, "jobs.worker ran\t0\n")
  test.match(out, "wait2\t0\t0\n")
end)

test.case("a bundled app forks worker.lua from its own bundle", function()
  local app = make_app({
    ["main.lua"] = [[
local process = require "process"
local a = assert(process.fork { file = "worker.lua", args = { "3", "from bundle" } })
print("wait a", process.wait(a, 10000))
local b = assert(process.fork { file = "worker", args = { "4" } })
print("wait b", process.wait(b, 10000))
print("missing", process.fork { file = "nope.lua" })
]],
    ["worker.lua"] = WORKER,
    ["lib/helper.lua"] = "return 'helped'\n",
  })
  local exe = app:match("^(.*)/app$") .. "/forker"
  local out, status = test.sh(luaio .. " build " .. q(app) .. " -o " .. q(exe))
  test.eq(status, 0, out)
  test.sh("rm -rf " .. q(app)) -- the bundle alone must be enough
  out, status = test.sh("cd / && timeout -s KILL 30 " .. q(exe))
  test.eq(status, 0, out)
  test.match(out, "worker\t2\t3|from bundle\tworker.lua\t3|from bundle\n")
  test.match(out, "bundled\ttrue\thelper\thelped\n")
  test.match(out, "env\tnil\tnil\n")
  test.match(out, "wait a\t3\t0\n")
  test.match(out, "worker\t1\t4\tworker.lua\t4\n")
  test.match(out, "wait b\t4\t0\n")
  test.match(out, "missing\tnil\tENOENT: no such file or directory\n")
end)

-- LUAIO_FORK_* are for the children process.fork starts (which it marks on their command
-- line) and for no one else: left in an environment, they must not turn luaio commands, or
-- an app, into something else, nor travel further to the programs an app starts.
local FORK_ENV_MAIN = [[
local process = require "process"
print("main", ...)
print("env", tostring(process.getenv("LUAIO_FORK_FILE")), tostring(process.getenv("LUAIO_FORK_APP")),
  tostring(process.getenv("LUAIO_FORK_PARENT")))
io.stdout:flush()
local pid = assert(process.exec({ "sh", "-c", "env | grep -c '^LUAIO_FORK_'" }))
process.wait(pid, 10000)
]]

test.case("LUAIO_FORK_* in the environment neither hijack luaio run nor reach exec'd programs", function()
  local app = make_app({ ["main.lua"] = FORK_ENV_MAIN, ["worker.lua"] = "print('worker ran')\n" })
  local evil = make_app({ ["main.lua"] = "print('foreign code')\n", ["worker.lua"] = "print('foreign code')\n" })
  local env = "LUAIO_FORK_FILE=worker.lua LUAIO_FORK_APP=" .. q(evil) .. " LUAIO_FORK_PARENT=1 "
  local want = "main\ta\nenv\tnil\tnil\tnil\n0\n"
  for _, how in ipairs({ " run " .. q(app) .. " a", " run " .. q(app .. "/main.lua") .. " a", " " .. q(app .. "/main.lua") .. " a" }) do
    local out, status = test.sh(env .. "timeout 10 " .. luaio .. how)
    test.eq(out, want, how)
    test.eq(status, 0, how)
  end
  local out, status = test.sh("LUAIO_FORK_FILE=worker.lua timeout 10 " .. luaio .. " run " .. q(app) .. " a")
  test.eq(out, want, "without LUAIO_FORK_APP: luaio run used to refuse")
  test.eq(status, 0)
  test.eq((test.sh(env .. "timeout 10 " .. luaio .. " version")):match("^luaio "), "luaio ")
end)

test.case("a bundled app ignores LUAIO_FORK_* it did not get from process.fork", function()
  local app = make_app({ ["main.lua"] = FORK_ENV_MAIN, ["worker.lua"] = "print('own worker')\n" })
  local evil = make_app({ ["worker.lua"] = "print('foreign code')\n" })
  local exe = app .. "/../guarded"
  test.sh(luaio .. " build " .. q(app) .. " -o " .. q(exe))
  local out = test.sh("LUAIO_FORK_FILE=worker.lua LUAIO_FORK_APP=" .. q(evil) .. " timeout 10 " .. q(exe) .. " a")
  test.eq(out, "main\ta\nenv\tnil\tnil\tnil\n0\n")
end)

test.case("fork: wrong options raise naming the argument; a missing file is ENOENT", function()
  test.raises(function() process.fork("worker.lua") end, "bad argument #1 to 'fork' %(table expected, got string%)")
  test.raises(function() process.fork {} end, "bad argument #1 to 'fork' %(option 'file': string expected, got nil%)")
  test.raises(function() process.fork { file = "/etc/passwd" } end, "option 'file': a file of the app %(relative, without '..'%) expected")
  test.raises(function() process.fork { file = "../x.lua" } end, "option 'file': a file of the app")
  -- the options are checked before the file is looked for
  local f = "no-such-worker.lua"
  test.raises(function() process.fork { file = f, uid = "root" } end,
    "process_test.lua:%d+: bad argument #1 to 'fork' %(option 'uid': integer from 0 to 2147483647 expected, got string%)")
  test.raises(function() process.fork { file = f, gid = 1.5 } end, "option 'gid': integer from 0 to 2147483647 expected, got 1.5")
  test.raises(function() process.fork { file = f, cpu = 100000 } end,
    "process_test.lua:%d+: bad argument #1 to 'fork' %(option 'cpu': integer from 0 to %d+ expected, got 100000%)")
  test.raises(function() process.fork { file = f, cpu = -1 } end, "option 'cpu': non%-negative integer expected, got %-1")
  test.raises(function() process.fork { file = f, forever = 1 } end, "option 'forever': boolean expected, got number")
  test.raises(function() process.fork { file = f, detached = "yes" } end, "option 'detached': boolean expected")
  test.raises(function() process.fork { file = f, args = "a b" } end, "option 'args': table expected, got string")
  test.raises(function() process.fork { file = f, args = { 1 } } end, "option 'args'%[1%]: string without zero bytes expected, got number")
  test.raises(function() process.fork { file = f, cpus = 1 } end, "bad argument #1 to 'fork' %(unknown option 'cpus'%)")
  local pid, err = process.fork { file = "no/such/worker.lua" }
  test.eq(pid, nil)
  test.eq(err.name, "ENOENT")
end)

test.case("forever: a child killed from outside comes back with a new pid; process.kill stops it", function()
  local dir = test.tmpdir()
  local app = make_app({
    ["main.lua"] = [[
local process = require "process"
local task = require "task"
local dir = ...
local function pids()
  local t = {}
  local f = io.open(dir .. "/pids")
  if f then for l in f:lines() do t[#t + 1] = tonumber(l) end f:close() end
  return t
end
local function await(n)
  for _ = 1, 250 do if #pids() >= n then return end task.sleep(20) end
  error("no incarnation " .. n)
end
local id = assert(process.fork { file = "worker.lua", args = { dir }, forever = true })
await(1)
print("first is id", pids()[1] == id)
os.execute("kill -KILL " .. pids()[1]) -- a crash, as far as the parent knows
await(2)
local second = pids()[2]
print("second differs", second ~= id)
print("kill by id", process.kill(id, "SIGTERM"))
print("wait", process.wait(id, 10000))
task.sleep(500) -- time for a restart that must not happen
print("incarnations", #pids())
print("second gone", os.execute("kill -0 " .. second .. " 2>/dev/null") ~= 0)
]],
    ["worker.lua"] = [[
local dir = ...
local f = io.open(dir .. "/pids", "a")
f:write(require("process").pid, "\n")
f:close()
require("task").sleep(60000)
]],
  })
  local out, status = run(app, q(dir))
  test.eq(status, 0, out)
  test.match(out, "first is id\ttrue\n")
  test.match(out, "second differs\ttrue\n")
  test.match(out, "kill by id\ttrue\n")
  test.match(out, "wait\t0\t15\n")
  test.match(out, "incarnations\t2\n")
  test.match(out, "second gone\ttrue\n")
  for _, pid in ipairs(lines(dir .. "/pids")) do test.ok(not alive(pid), "incarnation " .. pid .. " gone") end
end)

test.case("forever: a child that crashes at start is restarted with a growing delay, not in a spin", function()
  local dir = test.tmpdir()
  local app = make_app({
    ["main.lua"] = [[
local process = require "process"
local task = require "task"
local dir = ...
local id = assert(process.fork { file = "crash.lua", args = { dir }, forever = true })
task.sleep(1700)
print("kill", process.kill(id))
print("wait", process.wait(id, 10000))
]],
    ["crash.lua"] = [[
local f = io.open((...) .. "/starts", "a")
f:write(string.format("%.0f\n", require("system").hrtime() / 1e6))
f:close()
error("crashing on purpose")
]],
  })
  local out, status = run(app, q(dir))
  test.eq(status, 0, out)
  test.match(out, "crashing on purpose")
  test.match(out, "kill\ttrue\n")
  test.match(out, "wait\t1\t0\n") -- the last incarnation's status: an uncaught error exits 1
  local starts = lines(dir .. "/starts")
  -- delays 100, 200, 400, 800 ms fit 5 starts in 1.7 s; a spin would make hundreds
  test.ok(#starts >= 4 and #starts <= 6, "4 to 6 starts in 1.7 s, got " .. #starts)
  local gaps = {}
  for i = 2, #starts do gaps[#gaps + 1] = tonumber(starts[i]) - tonumber(starts[i - 1]) end
  test.ok(gaps[1] >= 95, "first restart after 100 ms, got " .. gaps[1])
  for i = 2, #gaps do
    test.ok(gaps[i] >= gaps[i - 1] * 1.5, ("delay grows: %d then %d ms"):format(gaps[i - 1], gaps[i]))
  end
end)

test.case("cpu pins the child to one cpu, as taskset reads it back", function()
  local ncpu = #require("system").cpuinfo()
  local cpu = ncpu - 1
  local app = make_app({
    ["main.lua"] = [[
local process = require "process"
local cpu = tonumber((...))
local pid = assert(process.fork { file = "sleeper.lua", cpu = cpu })
local p = io.popen("taskset -p " .. pid)
print(p:read("*a"))
p:close()
process.kill(pid)
print("wait", process.wait(pid, 10000))
]],
    ["sleeper.lua"] = "require('task').sleep(30000)\n",
  })
  local out, status = run(app, tostring(cpu))
  test.eq(status, 0, out)
  test.match(out, "current affinity mask: " .. ("%x"):format(2 ^ cpu) .. "\n")
  test.match(out, "wait\t0\t15\n")
end)

test.case("uid and gid: the child runs as nobody (65534)", function()
  if test.sh("id -u") ~= "0\n" then test.skip("needs root to switch users") end
  local app = make_app({
    ["main.lua"] = [[
local process = require "process"
local pid = assert(process.fork { file = "who.lua", uid = 65534, gid = 65534 })
require("task").sleep(300)
local p = io.popen("ps -o uid=,gid= -p " .. pid)
print("ps", (p:read("*a"):gsub("%s+", " ")))
p:close()
print("wait", process.wait(pid, 10000))
]],
    ["who.lua"] = [[
local s = io.open("/proc/self/status"):read("*a")
print("Uid", s:match("Uid:%s+(%d+)%s+(%d+)"))
print("Gid", s:match("Gid:%s+(%d+)%s+(%d+)"))
print("groups", s:match("Groups:([^\n]*)"))
require("task").sleep(1000)
]],
  })
  test.sh("chmod 755 " .. q(app .. "/..") .. " " .. q(app)) -- nobody must read the app
  -- and run the runtime: the checkout may sit in a folder only root can enter (a mktemp -d
  -- clone, as CI makes), so the child execs a copy in the app's own folder
  local exe = app .. "/../luaio"
  test.sh("cp " .. luaio .. " " .. q(exe) .. " && chmod 755 " .. q(exe))
  local out, status = test.sh(("timeout -s KILL 30 %s run %s"):format(q(exe), q(app)))
  test.eq(status, 0, out)
  test.match(out, "Uid\t65534\t65534\n")
  test.match(out, "Gid\t65534\t65534\n")
  test.match(out, "groups\t%s*\n") -- supplementary groups dropped with root
  test.match(out, "ps\t%s*65534 65534%s*\n")
  test.match(out, "wait\t0\t0\n")
end)

test.case("detached: the child gets its own session and outlives the parent", function()
  local dir = test.tmpdir()
  local app = make_app({
    ["main.lua"] = [[
local process = require "process"
local pid = assert(process.fork { file = "bg.lua", args = { (...) }, detached = true })
print("child", pid)
]],
    ["bg.lua"] = [[
local process = require "process"
require("task").sleep(800)
local stat = io.open("/proc/self/stat"):read("*a"):match("%) (.*)")
local fields = {}
for w in stat:gmatch("%S+") do fields[#fields + 1] = w end
local f = io.open((...) .. "/bg", "w")
f:write(process.pid, " ", fields[4], " ", process.ppid, "\n") -- pid, session id, parent
f:close()
]],
  })
  local started = task.now()
  -- output to a file: the child inherits stdout, and a pipe would stay open until it ends
  local _, status = test.sh(("timeout -s KILL 30 %s run %s %s > %s 2>&1"):format(luaio, q(app), q(dir), q(dir .. "/out")))
  local elapsed = task.now() - started
  test.eq(status, 0)
  local out = io.open(dir .. "/out"):read("*a")
  local pid = out:match("child\t(%d+)")
  test.ok(pid, out)
  test.ok(elapsed < 700, "the parent did not wait for the detached child (" .. elapsed .. " ms)")
  test.ok(eventually(function() return #lines(dir .. "/bg") == 1 end, 10000), "the child finished after its parent")
  local bg_pid, sid = lines(dir .. "/bg")[1]:match("^(%d+) (%d+)")
  test.eq(bg_pid, pid)
  test.eq(sid, pid, "the child leads its own session")
  if alive(pid) then test.sh("kill -KILL " .. pid) end
end)

test.case("waiting for a detached child keeps the parent alive until it ends", function()
  local dir = test.tmpdir()
  local app = make_app({
    ["main.lua"] = [[
local process = require "process"
local pid = assert(process.fork { file = "bg.lua", detached = true })
print("timeout", process.wait(pid, 50)) -- after a timeout the child no longer holds us...
print("wait", process.wait(pid)) -- ...but a wait does
]],
    ["bg.lua"] = "require('task').sleep(300) os.exit(4)\n",
  })
  local _, status = test.sh(("timeout -s KILL 30 %s run %s > %s 2>&1"):format(luaio, q(app), q(dir .. "/out")))
  test.eq(status, 0)
  test.eq(io.open(dir .. "/out"):read("*a"), "timeout\tnil\tETIMEDOUT: timed out\nwait\t4\t0\n")
end)

test.case("non-detached children get SIGTERM when the parent exits or is killed", function()
  local dir = test.tmpdir()
  local app = make_app({
    ["main.lua"] = [[
local process = require "process"
local how, dir = ...
local forever = process.fork { file = "sleeper.lua", forever = true }
local plain = process.fork { file = "sleeper.lua" }
local f = io.open(dir .. "/pids", "w")
f:write(forever, "\n", plain, "\n")
f:close()
require("task").sleep(300)
if how == "exit" then process.exit(0) end
require("task").sleep(30000) -- killed by the test
]],
    ["sleeper.lua"] = "require('task').sleep(30000)\n",
  })
  local pidfile = q(dir .. "/pids")
  for _, how in ipairs({ "exit", "kill" }) do
    -- no `timeout` in front: SIGKILL must hit luaio itself
    local cmd = ("%s run %s %s %s > /dev/null 2>&1"):format(luaio, q(app), how, q(dir))
    if how == "kill" then
      cmd = cmd .. " & p=$!; for i in $(seq 200); do [ -s " .. pidfile .. " ] && break; sleep 0.05; done;" ..
        " sleep 0.3; kill -KILL $p; wait $p"
    else
      cmd = "timeout -s KILL 30 " .. cmd
    end
    test.sh("rm -f " .. pidfile .. "; " .. cmd)
    local pids = lines(dir .. "/pids")
    test.eq(#pids, 2, how)
    for _, pid in ipairs(pids) do
      local gone = eventually(function() return not alive(pid) end, 5000)
      if not gone then test.sh("kill -KILL " .. pid) end
      test.ok(gone, how .. ": child " .. pid .. " ended with its parent")
    end
  end
end)

test.case("exec runs a program without a shell: ; $( ) and quotes are not interpreted", function()
  local dir = test.tmpdir()
  local pid = assert(process.exec("touch " .. dir .. "/a;touch " .. dir .. "/$(id) '" .. dir .. "/with space' \"" .. dir .. "/x|y\""))
  test.eq({ process.wait(pid, 10000) }, { 0, 0 })
  test.eq(test.sh("ls -A " .. q(dir)), "$(id)\na;touch\nwith space\nx|y\n")
  -- the table form passes each element as one argument, as is
  pid = assert(process.exec({ "touch", dir .. "/`reboot` && rm -rf ~" }))
  test.eq({ process.wait(pid, 10000) }, { 0, 0 })
  test.eq(select(2, test.sh("test -f " .. q(dir .. "/`reboot` && rm -rf ~"))), 0)
end)

-- Runs the string form of exec with `args` after a program that writes each argument it
-- gets as "[arg]\n" to a file; returns the file's contents.
local function exec_args(args)
  local out = test.tmpdir() .. "/args"
  local pid = assert(process.exec([[sh -c 'printf "[%s]\n" "$@" > "$0"' ]] .. q(out) .. " " .. args))
  test.eq({ process.wait(pid, 10000) }, { 0, 0 })
  local f = assert(io.open(out))
  local got = f:read("*a")
  f:close()
  return got
end

test.case("exec's string form splits as sh does: a string quoted for sh stays one argument", function()
  local hostile = {
    "'; rm -rf ~; echo '", "a' 'b", "x' -rf '/", "it's", "'\\''", [["double" and \back\\slash]],
    "$(id) `id` $HOME ${HOME}", "  spaced  \t tab ", "line1\nline2", "", "\\", "'", '"', "*", "~",
    "a;b|c&d>e<f", "--flag=value with spaces",
  }
  local quoted, expected = {}, {}
  for i, text in ipairs(hostile) do
    quoted[i] = "'" .. text:gsub("'", "'\\''") .. "'" -- sh's quoting (test.quote does the same)
    expected[i] = "[" .. text .. "]\n"
  end
  test.eq(exec_args(table.concat(quoted, " ")), table.concat(expected))
end)

test.case("exec's string form: backslashes and double quotes follow the POSIX shell's rules", function()
  test.eq(exec_args([[a\ b "c\"d" "e\\f" "g\h" 'i\j' k\\l \$m "$n" "x\` y" "" a""b "a"'b'c \'q]]),
    "[a b]\n[c\"d]\n[e\\f]\n[g\\h]\n[i\\j]\n[k\\l]\n[$m]\n[$n]\n[x` y]\n[]\n[ab]\n[abc]\n['q]\n")
  test.eq(exec_args("one\\\ntwo \"three\\\nfour\""), "[onetwo]\n[threefour]\n", "backslash-newline joins lines")
  test.raises(function() process.exec('echo "open') end, [[bad argument #1 to 'exec' %(unterminated " quote%)]])
  test.raises(function() process.exec("echo trailing\\") end, [[bad argument #1 to 'exec' %(\ at the end of the command%)]])
end)

test.case("exec shares stdout; echo prints its arguments literally", function()
  local app = make_app({
    ["main.lua"] = [[
local process = require "process"
io.stdout:setvbuf("no")
local pid = process.exec([=[echo hello; echo $HOME $(id) > /tmp/nope 'single  spaced' "double 'q'"]=])
print("wait", process.wait(pid, 10000))
]],
  })
  local out, status = run(app)
  test.eq(status, 0, out)
  test.eq(out, "hello; echo $HOME $(id) > /tmp/nope single  spaced double 'q'\nwait\t0\t0\n")
end)

test.case("exec: a missing program is ENOENT; bad commands raise naming the argument", function()
  local pid, err = process.exec("no-such-program-luaio --flag")
  test.eq(pid, nil)
  test.eq(err.name, "ENOENT")
  pid, err = process.exec({ "/no/such/path/prog" })
  test.eq(pid, nil)
  test.eq(err.name, "ENOENT")
  test.raises(function() process.exec(42) end, "bad argument #1 to 'exec' %(string or table expected, got number%)")
  test.raises(function() process.exec("   ") end, "bad argument #1 to 'exec' %(empty command%)")
  test.raises(function() process.exec({}) end, "bad argument #1 to 'exec' %(empty command%)")
  test.raises(function() process.exec("echo 'open") end, "bad argument #1 to 'exec' %(unterminated ' quote%)")
  test.raises(function() process.exec({ "echo", {} }) end,
    "process_test.lua:%d+: bad argument #1 to 'exec' %(command%[2%]: string without zero bytes expected, got table%)")
end)

test.case("kill takes signal names and numbers, SIGTERM by default; wait reports the signal", function()
  for _, case in ipairs({ { nil, 15 }, { "SIGKILL", 9 }, { 9, 9 }, { "SIGINT", 2 }, { 10, 10 }, { "SIGHUP", 1 } }) do
    local pid = assert(process.exec("sleep 30"))
    test.eq(process.kill(pid, case[1]), true)
    test.eq({ process.wait(pid, 10000) }, { 0, case[2] }, tostring(case[1]))
  end
  local pid = assert(process.exec("sleep 30"))
  test.eq(process.kill(pid, 0), true, "signal 0 checks the pid exists")
  test.raises(function() process.kill(pid, "SIGFOO") end, "bad argument #2 to 'kill' %(unknown signal 'SIGFOO'%)")
  test.raises(function() process.kill(pid, 99) end, "bad argument #2 to 'kill' %(signal number out of range%)")
  test.raises(function() process.kill(pid, {}) end, "bad argument #2 to 'kill' %(signal name or number expected, got table%)")
  test.raises(function() process.kill("x") end, "bad argument #1 to 'kill'")
  -- 0 and negative numbers name process groups (-1: every process we may signal); a pid
  -- that fell back to 0 would signal our whole group: refused
  for _, bad in ipairs({ 0, -1, -2, -process.pid }) do
    test.raises(function() local _ = process.kill(bad, 0) end,
      "process_test%.lua:%d+: bad argument #1 to 'kill' %(pid above 0 expected, got " .. tostring(bad):gsub("%-", "%%-") .. "%)")
  end
  process.kill(pid, "SIGKILL")
  process.wait(pid, 10000)
  local ok, err = process.kill(2 ^ 30) -- above any pid_max
  test.eq(ok, nil)
  test.eq(err.name, "ESRCH")
end)

test.case("wait: a timeout, a second waiter, an unknown pid, wrong arguments", function()
  local pid = assert(process.exec("sleep 30"))
  local started = task.now()
  local status, err = process.wait(pid, 50)
  test.eq(status, nil)
  test.eq(err.name, "ETIMEDOUT")
  test.ok(task.now() - started >= 45, "waited for the timeout")
  local other = task.spawn(process.wait, pid, 10000)
  task.sleep(10)
  process.kill(pid, "SIGKILL")
  test.eq({ process.wait(pid, 10000) }, { 0, 9 })
  test.eq({ other:join(10000) }, { true, 0, 9 }, "both waiters woke")
  status, err = process.wait(pid)
  test.eq(err.name, "ECHILD", "already waited for")
  status, err = process.wait(1)
  test.eq(err.name, "ECHILD", "init is not our child")
  -- a child that ended before anyone waited is still reported once
  pid = assert(process.exec("true"))
  task.sleep(200)
  test.eq({ process.wait(pid) }, { 0, 0 })
  test.raises(function() process.wait("1") end, "bad argument #1 to 'wait'")
  test.raises(function() process.wait(pid, -1) end, "bad argument #2 to 'wait'")
  test.raises(function() process.wait(pid, 0 / 0) end,
    "process_test.lua:%d+: bad argument #2 to 'wait' %(non%-negative number of milliseconds %(or math.huge%) expected, got nan%)")
  -- math.huge: no timeout
  pid = assert(process.exec("sleep 0.1"))
  test.eq({ process.wait(pid, math.huge) }, { 0, 0 })
  test.eq(err.code, 0, "ECHILD is no libuv error: code 0")
end)

test.case("pid, ppid, execpath, cwd, argv, env, getenv, uptime describe this process", function()
  test.eq(process.pid, tonumber((test.sh("echo $PPID")))) -- the shell popen starts is our child
  local stat = io.open("/proc/self/stat"):read("*a"):match("%) %S+ (%d+)")
  test.eq(process.ppid, tonumber(stat))
  test.eq(process.execpath, (test.sh("readlink -f " .. luaio):gsub("\n$", "")))
  test.eq(process.cwd(), (test.sh("pwd -P"):gsub("\n$", "")))
  test.eq(process.env.PATH, os.getenv("PATH"))
  test.eq(process.getenv("PATH"), os.getenv("PATH"))
  test.eq(process.getenv("LUAIO_SURELY_UNSET_VARIABLE"), nil)
  test.raises(function() process.getenv() end, "bad argument #1 to 'getenv'")
  local up = process.uptime()
  test.ok(type(up) == "number" and up > 0 and up < 3600, "uptime in seconds: " .. up)
  task.sleep(20)
  test.ok(process.uptime() - up >= 0.015, "uptime advances")
  local app = make_app({ ["main.lua"] = [[
local process = require "process"
print(#process.argv, table.concat(process.argv, "|"), process.uptime() < 5)
]] })
  test.eq((run(app, "a 'b c'")), "2\ta|b c\ttrue\n")
end)

-- Variable names, values, file and signal names reach C as C strings: a zero byte would cut
-- them (getenv("PATH\0x") read PATH, fork{file = "worker\0x"} ran worker.lua).
test.case("a zero byte in a variable, file or signal name raises, naming the argument", function()
  local zero = "string without zero bytes expected, got a string with a zero byte"
  test.raises(function() local _ = process.getenv("PATH\0x") end,
    "process_test%.lua:%d+: bad argument #1 to 'getenv' %(" .. zero .. "%)")
  test.raises(function() local _ = process.setenv("LUAIO_T\0PATH", "x") end,
    "process_test%.lua:%d+: bad argument #1 to 'setenv' %(" .. zero .. "%)")
  test.raises(function() local _ = process.setenv("LUAIO_T", "x\0y") end,
    "process_test%.lua:%d+: bad argument #2 to 'setenv' %(" .. zero .. "%)")
  test.eq(process.getenv("LUAIO_T"), nil)
  test.raises(function() local _ = process.fork { file = "worker.lua\0x" } end,
    "process_test%.lua:%d+: bad argument #1 to 'fork' %(option 'file': string without zero bytes expected, got a string with a zero byte%)")
  test.raises(function() local _ = process.kill(process.pid, "SIGKILL\0x") end,
    "process_test%.lua:%d+: bad argument #2 to 'kill' %(" .. zero .. "%)")
  test.raises(function() local _ = process.on("SIGUSR2\0x", print) end, "bad argument #1 to 'on' %(" .. zero .. "%)")
end)

test.case("exit ends the process at once with the status, output flushed; abort dumps", function()
  local app = make_app({ ["main.lua"] = [[
local process = require "process"
io.write("buffered, no newline")
io.stderr:write("to stderr ")
require("task").spawn(function() print("never") end)
process.exit(tonumber((...)))
]] })
  local out, status = run(app, "5")
  test.eq(status, 5)
  test.eq(out, "to stderr buffered, no newline")
  out, status = run(app, "0")
  test.eq(status, 0)
  app = make_app({ ["main.lua"] = "require('process').exit()\n" })
  test.eq(select(2, run(app)), 0, "default status 0")
  app = make_app({ ["main.lua"] = "io.write('before ') require('process').abort()\n" })
  out, status = test.sh("ulimit -c 0; timeout 30 " .. luaio .. " run " .. q(app) .. "; echo \"status $?\"")
  test.match(out, "before .*status 134\n") -- 128 + SIGABRT
end)
