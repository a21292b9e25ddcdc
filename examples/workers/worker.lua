-- One worker: answers each line with "worker <n> (pid <pid>): <line>".
local process = require "process"
local tcp = require "tcp"

local port, n = tonumber((...)), select(2, ...)
assert(tcp.createServer(port, function(socket)
  while true do
    local line = socket:readline()
    if not line then return end
    socket:write(("worker %s (pid %d): %s\n"):format(n, process.pid, line))
  end
end, { tcp_reuseport = true, host = "127.0.0.1" }))
