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
local E = require "luaio.error"
local options = require "luaio.options"

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

local argerror = options.argerror

-- process.wait(pid[, timeout_ms]) -> exit_status, term_signal | nil, err
-- Waits for a child started by fork or exec to end (for a forever child: to end for good,
-- after process.kill stopped its restarts). term_signal is 0 when it exited by itself.
-- err.name is "ETIMEDOUT" after timeout_ms, "ECHILD" when pid is no child of ours (or was
-- already waited for).
function process.wait(pid, timeout)
  if type(pid) ~= "number" or pid % 1 ~= 0 then argerror(1, "wait", "integer pid expected, got " .. type(pid), 2) end
  if timeout ~= nil then timeout = options.ms(timeout, 2, "wait") end
  local e = ended[pid]
  if e then
    ended[pid] = nil
    return e[1], e[2]
  end
  if not c.running(pid) then return nil, E.new("ECHILD", "no child process") end
  local me = sched.waiter("wait")
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
    return nil, E.new("ETIMEDOUT", "timed out")
  end
  return status, term_signal
end

-- --- exec ----------------------------------------------------------------------------------

-- Splits a command line into words as a POSIX shell would, without ever running one: blanks
-- separate words; '...' keeps everything inside as it is; "..." too, except that \ before
-- " \ $ ` or a newline stands for that character (a newline: nothing); outside quotes \
-- makes the next character plain (\ newline: nothing). Nothing is expanded or special
-- besides: $, `, ;, |, &, <, >, *, ~ reach the program as they are. So a string quoted
-- as for sh ('...' with each ' written '\'') is one word, whatever it holds.
local BLANK = { [" "] = true, ["\t"] = true, ["\n"] = true }
local DQ_ESCAPES = { ['"'] = true, ["\\"] = true, ["$"] = true, ["`"] = true, ["\n"] = true }

local function split(command)
  local words, word, inword = {}, {}, false
  local i, n = 1, #command
  while i <= n do
    local ch = command:sub(i, i)
    if BLANK[ch] then
      if inword then
        words[#words + 1] = concat(word)
        word, inword = {}, false
      end
    elseif ch == "'" then
      local close = command:find("'", i + 1, true)
      if not close then return nil, "unterminated ' quote" end
      word[#word + 1] = command:sub(i + 1, close - 1)
      inword, i = true, close
    elseif ch == '"' then
      inword = true
      i = i + 1
      while true do
        if i > n then return nil, 'unterminated " quote' end
        local c2 = command:sub(i, i)
        if c2 == '"' then break end
        if c2 == "\\" and DQ_ESCAPES[command:sub(i + 1, i + 1)] then
          i = i + 1
          c2 = command:sub(i, i)
          if c2 == "\n" then c2 = "" end
        end
        word[#word + 1] = c2
        i = i + 1
      end
    elseif ch == "\\" then
      if i == n then return nil, "\\ at the end of the command" end
      i = i + 1
      local nextch = command:sub(i, i)
      if nextch ~= "\n" then
        word[#word + 1] = nextch
        inword = true
      end
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
-- command: {prog, args...} (each element one argument, as it is: the safe way to pass text
-- from outside) or a string "prog arg 'an arg' ..." split as above. prog is found through
-- PATH; no shell ever sees the command. The child shares our stdin, stdout and stderr.
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

-- The upper bound of cpu (the number of cpus - 1) is checked in C, which knows that number.
local FORK_OPTIONS = {
  file = { "cstring", required = true, check = function(file)
    file = file:gsub("^%./", "")
    if file == "" or file:find("^/") or ("/" .. file .. "/"):find("/%.%./") then
      return "a file of the app (relative, without '..')"
    end
  end },
  args = { "table" },
  uid = { "integer", min = 0, max = 2147483647 },
  gid = { "integer", min = 0, max = 2147483647 },
  cpu = { "integer", min = 0 },
  forever = { "boolean" },
  detached = { "boolean" },
}

-- process.fork(options) -> pid | nil, err
-- Runs options.file of this same app in a new process of this same executable, with
-- options.args as its arguments. See docs/api.md for uid, gid, forever, cpu and detached.
function process.fork(opts)
  opts = options.check(opts, FORK_OPTIONS, 1, "fork")
  local path = app_file((opts.file:gsub("^%./", ""))) -- nil: c.fork says ENOENT
  local pid, err = start(fork, opts, path)
  return pid, err
end

return process
