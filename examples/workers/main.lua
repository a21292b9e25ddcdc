-- A master that forks one worker per CPU; every worker serves the same port (tcp_reuseport)
-- and the kernel spreads connections among them. A worker that dies is restarted
-- (forever), so the port keeps answering. SIGTERM or SIGINT stops everything.
--
--   out/luaio run examples/workers [port]      (or build it: out/luaio build examples/workers)
local process = require "process"
local system = require "system"

local port = tonumber((...)) or 8080
local workers = {}

for i = 1, #system.cpuinfo() do
  workers[i] = assert(process.fork { file = "worker.lua", args = { tostring(port), tostring(i) }, forever = true })
end
print(("master %d: %d workers on port %d: %s"):format(process.pid, #workers, port, table.concat(workers, " ")))
io.stdout:flush()

local function stop()
  for _, pid in ipairs(workers) do process.kill(pid, "SIGTERM") end
  for _, pid in ipairs(workers) do process.wait(pid, 5000) end
  process.exit(0)
end
process.on("SIGTERM", stop)
process.on("SIGINT", stop)

for _, pid in ipairs(workers) do process.wait(pid) end
