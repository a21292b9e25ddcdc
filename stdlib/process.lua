-- process: this process and its children (seed-api.md, "process").
--
--   local process = require "process"
--   local pid = process.fork { file = "worker.lua", args = { "8080" }, forever = true }
--   process.on("SIGTERM", function() process.kill(pid); process.wait(pid, 5000); process.exit(0) end)
--
-- The C half is luaio.process (runtime/os/process.c: children, this process) and luaio.signal
-- (runtime/os/signal.c: handlers). This file adds what is easier in Lua: finding the file a
-- fork runs, splitting an exec command line, and process.wait.
local c = require "luaio.process"
local signal = require "luaio.signal"
local sched = require "luaio.task"
local bundle = require "bundle"

local concat, remove, type = table.concat, table.remove, type

local process = {}

process.pid, process.ppid = c.pids()
process.execpath = c.execpath()

-- The app's arguments (arg[1..n]: what `...` holds in main.lua), as an array.
process.argv = {}
do
  local arg = rawget(_G, "arg")
  if type(arg) == "table" then
    for i = 1, #arg do process.argv[i] = arg[i] end
  end
end

-- A snapshot taken when the module is first required; process.getenv reads the live value.
process.env = c.environ()

process.abort = c.abort
process.cwd = c.cwd
process.exit = c.exit
process.getenv = c.getenv
process.setenv = c.setenv
process.kill = c.kill
process.uptime = c.uptime
process.on = signal.on
process.off = signal.off

-- --- waiting for children ------------------------------------------------------------------

local MAX_UNWAITED = 1024 -- exit records nobody waited for: kept for a later wait, bounded
local ended, ended_order = {}, {}
local waiters = {} -- id -> array of waiting coroutines

c.onexit(function(id, status, term_signal)
  local list = waiters[id]
  if list then
    waiters[id] = nil
    for i = 1, #list do sched.wake(list[i], status, term_signal) end
    return
  end
  ended[id] = { status, term_signal }
  ended_order[#ended_order + 1] = id
  if #ended_order > MAX_UNWAITED then
    local old = remove(ended_order, 1)
    if ended[old] and old ~= id then ended[old] = nil end
  end
end)

-- Calls C function fn of this module on behalf of our caller's caller: an argument error
-- raised in C then points at the user's line, not at this file. A new child may reuse the
-- pid of one that ended unwaited: that old record is stale now.
local function start(fn, ...)
  local ok, pid, err = pcall(fn, ...)
  if not ok then error((tostring(pid):gsub("^[^\n]-:%d+: ", "")), 3) end
  if pid then ended[pid] = nil end
  return pid, err
end
local function exec(argv) local pid, err = c.exec(argv); return pid, err end
local function fork(options, path) local pid, err = c.fork(options, path); return pid, err end

local function argerror(n, fname, msg, level)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), level + 1)
end

-- process.wait(pid[, timeout_ms]) -> exit_status, term_signal | nil, err
-- Waits for a child started by fork or exec to end (for a forever child: to end for good,
-- after process.kill stopped its restarts). term_signal is 0 when it exited by itself.
-- err.name is "ETIMEDOUT" after timeout_ms, "ECHILD" when pid is no child of ours (or was
-- already waited for).
function process.wait(pid, timeout)
  if type(pid) ~= "number" or pid % 1 ~= 0 then argerror(1, "wait", "integer pid expected, got " .. type(pid), 2) end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0 or timeout ~= timeout) then
    argerror(2, "wait", "non-negative number of milliseconds expected, got " .. tostring(timeout), 2)
  end
  local e = ended[pid]
  if e then
    ended[pid] = nil
    return e[1], e[2]
  end
  if not c.running(pid) then return c.error("ECHILD") end
  local me = sched.current()
  if me == nil then
    error("wait: cannot wait here: waiting calls must run in a luaio task", 2)
  end
  local list = waiters[pid]
  if not list then
    list = {}
    waiters[pid] = list
  end
  list[#list + 1] = me
  c.hold(pid, true) -- even a detached child keeps us alive while we wait for it
  local status, term_signal = sched.suspend(timeout)
  if status == nil then
    for i = #list, 1, -1 do
      if list[i] == me then remove(list, i) end
    end
    if #list == 0 and waiters[pid] == list then
      waiters[pid] = nil
      c.hold(pid, false)
    end
    return c.error("ETIMEDOUT")
  end
  return status, term_signal
end

-- --- exec ----------------------------------------------------------------------------------

-- Splits a command line into words: blanks separate words, '...' and "..." quote (the quotes
-- go, their contents stay as they are). Nothing else is special: no $, ;, |, *, \ or ~.
local function split(command)
  local words, word, inword = {}, {}, false
  local i, n = 1, #command
  while i <= n do
    local ch = command:sub(i, i)
    if ch:find("^%s") then
      if inword then
        words[#words + 1] = concat(word)
        word, inword = {}, false
      end
    elseif ch == "'" or ch == '"' then
      local close = command:find(ch, i + 1, true)
      if not close then return nil, "unterminated " .. ch .. " quote" end
      word[#word + 1] = command:sub(i + 1, close - 1)
      inword = true
      i = close
    else
      word[#word + 1] = ch
      inword = true
    end
    i = i + 1
  end
  if inword then words[#words + 1] = concat(word) end
  return words
end

-- process.exec(command) -> pid | nil, err
-- command: "prog arg 'an arg' ..." or {prog, args...}. prog is found through PATH; no shell
-- ever sees the command. The child shares our stdin, stdout and stderr.
function process.exec(command)
  local argv = command
  if type(command) == "string" then
    local err
    argv, err = split(command)
    if not argv then argerror(1, "exec", err, 2) end
    if #argv == 0 then argerror(1, "exec", "empty command", 2) end
  elseif type(command) ~= "table" then
    argerror(1, "exec", "string or table expected, got " .. type(command), 2)
  end
  local pid, err = start(exec, argv) -- not a tail call: start raises at our caller's level
  return pid, err
end

-- --- fork ----------------------------------------------------------------------------------

-- The app file options.file names: "worker.lua" as is, "worker" or "jobs.worker" as a module
-- ("jobs/worker.lua", then "jobs/worker/init.lua"). nil when the app has no such file.
local function app_file(file)
  local candidates
  if file:find("%.lua$") then
    candidates = { file }
  else
    local base = file:gsub("%.", "/")
    candidates = { base .. ".lua", base .. "/init.lua", file }
  end
  for _, path in ipairs(candidates) do
    if bundle.read(path) then return path end
  end
end

-- process.fork(options) -> pid | nil, err
-- Runs options.file of this same app in a new process of this same executable, with
-- options.args as its arguments. See docs/api.md for uid, gid, forever, cpu and detached.
function process.fork(options)
  if type(options) ~= "table" then argerror(1, "fork", "table expected, got " .. type(options), 2) end
  local file = options.file
  if type(file) ~= "string" then
    argerror(1, "fork", "options.file: string expected, got " .. type(file), 2)
  end
  file = file:gsub("^%./", "")
  if file == "" or file:find("^/") or ("/" .. file .. "/"):find("/%.%./") then
    argerror(1, "fork", "options.file: a file of the app expected (relative, without '..')", 2)
  end
  local path = app_file(file) -- nil: c.fork checks the other options, then says ENOENT
  local pid, err = start(fork, options, path)
  return pid, err
end

return process
