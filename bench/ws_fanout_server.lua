-- Fan-out server for bench/ws_fanout.sh: luaio run bench/ws_fanout_server.lua PORT [SIZE]
-- Every connection subscribes to "all"; a text message "go" from any of them publishes one
-- message of SIZE bytes to every subscriber (framed once, the same bytes queued on each).
local http = require "http"
local websocket = require "websocket"
local port, size = tonumber(arg[1]) or 9086, tonumber(arg[2]) or 64
local payload = string.rep("f", size)
local router = http.router()
router:websocket("/", function(ws)
  ws:subscribe("all")
  while true do
    local data = ws:receive()
    if not data then return end
    if data == "go" then websocket.publish("all", payload) end
  end
end, { max_backlog = 1024 * 1024 })
assert(http.createServer(port, router, { host = "127.0.0.1" }))
print("listening " .. port)
