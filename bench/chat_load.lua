-- Load for examples/chat (bench/chat.sh): CLIENTS WebSocket members over ROOMS rooms, BIG of
-- them in room "big"; one member of "big" posts RATE messages a second for SECONDS, each
-- carrying its send time (the monotonic clock, shared by the processes of one machine); every
-- member of "big" notes how long each took to arrive. One message a second in each other room
-- is background traffic. Prints the delivery latencies (every copy of every message).
--   out/luaio run bench/chat_load.lua PORT [CLIENTS=5000] [ROOMS=100] [BIG=1000] [SECONDS=10] [RATE=20]
local websocket = require "websocket"
local task = require "task"

local port = assert(tonumber(arg[1]), "port")
local clients, rooms, big = tonumber(arg[2]) or 5000, tonumber(arg[3]) or 100, tonumber(arg[4]) or 1000
local seconds, rate = tonumber(arg[5]) or 10, tonumber(arg[6]) or 20

local latencies, n, expected = {}, 0, 0
local members, joined, failed = {}, 0, 0
local running = true

local function member(i)
  local room = i <= big and "big" or ("r" .. (i - big) % (rooms - 1))
  local ws, err
  for _ = 1, 5 do -- a connect refused while the listen queue is full is tried again
    ws, err = websocket.connect(("ws://127.0.0.1:%d/ws?room=%s&nick=u%d"):format(port, room, i), { timeout = 30000 })
    if ws then break end
    task.sleep(100)
  end
  if not ws then failed = failed + 1; io.stderr:write("connect: ", tostring(err), "\n"); return end
  members[i] = { ws = ws, room = room }
  local data = ws:receive() -- hello
  if data then joined = joined + 1 end
  while true do
    data = ws:receive()
    if not data then return end
    if room == "big" then
      local sent = data:match('"text":"t=([%d.]+)"')
      if sent then
        n = n + 1
        latencies[n] = task.now() - tonumber(sent)
      end
    end
  end
end

local started = task.now()
for i = 1, clients do
  task.spawn(member, i)
  if i % 200 == 0 then task.sleep(20) end -- a pace the listen queue takes
end
while joined + failed < clients do task.sleep(50) end
print(("%d members joined in %.1f s (%d failed)"):format(joined, (task.now() - started) / 1000, failed))
task.sleep(1000) -- join notices settle

-- background: one message a second in each small room, from its first member
local talkers = {}
for i = big + 1, math.min(clients, big + rooms - 1) do talkers[#talkers + 1] = members[i] end
task.spawn(function()
  while running do
    for _, m in ipairs(talkers) do m.ws:send('{"type":"msg","text":"background"}') end
    task.sleep(1000)
  end
end)

local sender = members[1].ws
local ticker = task.ticker(1000 / rate)
for _ = 1, seconds * rate do
  ticker:wait()
  sender:send(('{"type":"msg","text":"t=%.3f"}'):format(task.now()))
  expected = expected + big
end
running = false
task.sleep(2000)
table.sort(latencies)
local function pct(q) return latencies[math.max(1, math.ceil(#latencies * q))] or 0 end
print(("%d messages to %d members of 'big' (%d copies expected, %d received); latency ms: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f")
  :format(seconds * rate, big, expected, n, pct(0.5), pct(0.9), pct(0.99), pct(1)))
os.exit(0)
