-- The system module, checked against what Linux itself says.
local test = require "test"
local system = require "system"

local function read(path)
  local f = assert(io.open(path))
  local s = f:read("*a")
  f:close()
  return s
end

test.case("cpuinfo lists every cpu with model, speed and times", function()
  local cpus = system.cpuinfo()
  local nproc = tonumber((test.sh("nproc --all")))
  test.eq(#cpus, nproc, "one entry per cpu")
  for _, cpu in ipairs(cpus) do
    test.eq(type(cpu.model), "string")
    test.eq(type(cpu.speed), "number")
    for _, k in ipairs({ "user", "nice", "sys", "idle", "irq" }) do
      test.ok(type(cpu.times[k]) == "number" and cpu.times[k] >= 0, "times." .. k)
    end
  end
end)

test.case("meminfo matches /proc/meminfo", function()
  local m = system.meminfo()
  local total_kb = tonumber(read("/proc/meminfo"):match("MemTotal:%s+(%d+) kB"))
  test.eq(m.total, total_kb * 1024)
  test.ok(m.free > 0 and m.free <= m.total, "0 < free <= total")
end)

test.case("loadavg gives three non-negative numbers close to /proc/loadavg", function()
  local l = system.loadavg()
  test.eq(#l, 3)
  local one = tonumber(read("/proc/loadavg"):match("^(%S+)"))
  test.ok(math.abs(l[1] - one) < 1, "1-minute load close to /proc/loadavg")
  for i = 1, 3 do test.ok(l[i] >= 0) end
end)

test.case("hrtime is monotonic nanoseconds", function()
  local a = system.hrtime()
  require("task").sleep(10)
  local b = system.hrtime()
  test.ok(b - a >= 9e6 and b - a < 5e9, "10 ms sleep measured in ns, got " .. (b - a))
end)

test.case("uptime matches /proc/uptime", function()
  local proc = tonumber(read("/proc/uptime"):match("^(%S+)"))
  test.ok(math.abs(system.uptime() - proc) < 2, "within 2 s of /proc/uptime")
end)
