-- WebSocket echo server for bench/ws_echo.sh: luaio run bench/ws_echo_server.lua PORT
-- Every message goes back as it came, at "/".
local http = require "http"
local router = http.router()
router:websocket("/", function(ws)
  while true do
    local data, kind = ws:receive()
    if not data or not ws:send(data, kind) then return end
  end
end, { max_message_size = 64 * 1024 * 1024 })
assert(http.createServer(tonumber(arg[1]) or 9085, router, { host = "127.0.0.1" }))
print("listening " .. (tonumber(arg[1]) or 9085))
