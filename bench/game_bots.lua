-- Bots for examples/game (bench/game.sh): BOTS players over WebSocket, each changing its keys
-- and aim every second or two and shooting now and then, sending its input ten times a
-- second, reading every snapshot. Prints what they received.
--   out/luaio run bench/game_bots.lua PORT [BOTS=1000] [SECONDS=40]
local websocket = require "websocket"
local task = require "task"
local struct = require "struct"
local P = dofile("examples/game/proto.lua")

local port = assert(tonumber(arg[1]), "port")
local bots, seconds = tonumber(arg[2]) or 1000, tonumber(arg[3]) or 40
local joined, failed, snapshots, bytes, seen = 0, 0, 0, 0, 0
local running = true

local function bot(i)
  local ws, err = websocket.connect(("ws://127.0.0.1:%d/ws"):format(port), { timeout = 30000 })
  if not ws then failed = failed + 1; io.stderr:write("connect: ", tostring(err), "\n"); return end
  ws:send(P.join("bot" .. i), "binary")
  task.spawn(function()
    local seq, keys, aim = 0, 0, 0
    while running do
      if math.random() < 0.07 then
        keys = math.random(0, 15)
        aim = math.random(0, 65535)
      end
      local fire = math.random() < 0.3 and P.FIRE or 0
      seq = seq + 1
      if not ws:send(P.input(seq, keys + fire, aim), "binary") then return end
      task.sleep(100)
    end
    ws:close()
  end)
  joined = joined + 1
  while true do
    local data = ws:receive()
    if not data then return end
    if data:byte(1) == P.SNAPSHOT then
      snapshots, bytes = snapshots + 1, bytes + #data
      seen = seen + struct.unpack("<H", data, 12)
    end
  end
end

for i = 1, bots do
  task.spawn(bot, i)
  if i % 100 == 0 then task.sleep(20) end
end
while joined + failed < bots do task.sleep(50) end
print(("%d bots joined (%d failed)"):format(joined, failed))
local s0, b0, seen0, t0 = snapshots, bytes, seen, task.now()
task.sleep(seconds * 1000)
local s, secs = snapshots - s0, (task.now() - t0) / 1000
print(("bots received %.0f snapshots/s (%.1f per bot per second), %.1f MB/s, %.1f players in view per snapshot")
  :format(s / secs, s / secs / joined, (bytes - b0) / secs / 1e6, (seen - seen0) / math.max(1, s)))
running = false
os.exit(0)
