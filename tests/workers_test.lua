-- examples/workers: a master forks a worker per CPU on one port (tcp_reuseport); a killed
-- worker is restarted and the port keeps answering; SIGTERM stops the master and workers.
local test = require "test"
local task = require "task"
local tcp = require "tcp"
local helpers = require "tests.helpers"

local function ask(port)
  local s, err = tcp.connect(port, "127.0.0.1", { timeout = 2000 })
  if not s then return nil, err end
  s:setTimeout(2000)
  s:write("hi\n")
  local line, rerr = s:readline()
  s:close()
  return line, rerr
end

local function pids_of_master(master)
  local out = test.sh("pgrep -P " .. master)
  local pids = {}
  for pid in out:gmatch("%d+") do pids[#pids + 1] = tonumber(pid) end
  return pids
end

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local state = f:read("*a"):match("^%d+ %b() (%a)")
  f:close()
  return state ~= "Z"
end

local function run_workers(command)
  local port = helpers.free_port()
  local master = helpers.start(command .. " " .. port)
  helpers.wait_output(master, "workers on port")
  local ncpu = #require("system").cpuinfo()
  local deadline = task.now() + 5000
  while #pids_of_master(master.pid) < ncpu and task.now() < deadline do task.sleep(20) end
  test.eq(#pids_of_master(master.pid), ncpu, "one worker per cpu")
  helpers.wait_port(port)
  return port, master
end

local function check_restart_and_stop(port, master)
  local seen = {}
  for _ = 1, 60 do
    local line = assert(ask(port))
    seen[line:match("pid (%d+)")] = true
  end
  local workers = pids_of_master(master.pid)
  for _, pid in ipairs(workers) do test.ok(seen[tostring(pid)], "worker " .. pid .. " served connections") end

  -- kill one worker: the port keeps answering the whole time, and a new worker appears.
  -- A connection the kernel had already queued for the dying worker is reset with it (that
  -- is SO_REUSEPORT), so each request may retry once, as a client behind a balancer would.
  local victim = workers[1]
  test.sh("kill -KILL " .. victim)
  local failures = 0
  for _ = 1, 30 do
    local line = ask(port) or ask(port)
    if not line then failures = failures + 1 end
    task.sleep(10)
  end
  test.eq(failures, 0, "no request failed twice while a worker was down")
  local deadline = task.now() + 5000
  local replaced
  repeat
    task.sleep(50)
    local now = pids_of_master(master.pid)
    replaced = #now == #workers
    for _, pid in ipairs(now) do if pid == victim then replaced = false end end
  until replaced or task.now() > deadline
  test.ok(replaced, "the killed worker was replaced by a new process")

  -- SIGTERM: the master stops its workers and exits 0
  workers = pids_of_master(master.pid)
  test.sh("kill -TERM " .. master.pid)
  deadline = task.now() + 5000
  while (alive(master.pid) or alive(workers[1])) and task.now() < deadline do task.sleep(20) end
  test.ok(not alive(master.pid), "master exited")
  for _, pid in ipairs(workers) do test.ok(not alive(pid), "worker " .. pid .. " exited") end
end

test.case("master and workers under luaio run", function()
  local port, master = run_workers(test.quote(test.luaio) .. " run examples/workers")
  check_restart_and_stop(port, master)
end)

test.case("the same app as one built executable forks workers from its own bundle", function()
  local exe = test.tmpdir() .. "/workers"
  local out, status = test.sh(test.quote(test.luaio) .. " build examples/workers -o " .. exe)
  test.eq(status, 0, out)
  local port, master = run_workers("cd / && " .. exe)
  check_restart_and_stop(port, master)
end)
