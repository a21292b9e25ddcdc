-- TCP echo server for bench/tcp_echo.sh: luaio echo.lua PORT
local tcp = require "tcp"
local port = tonumber(arg[1]) or 9000
assert(tcp.createServer(port, function(socket)
  while true do
    local data = socket:read()
    if not data or not socket:write(data) then return end
  end
end, { host = "127.0.0.1" }))
