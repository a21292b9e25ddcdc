-- game: an arena of moving players and shots over WebSocket, with a binary protocol
-- (proto.lua), an authoritative world (world.lua) stepped by a fixed-rate tick that does not
-- drift (task.every), interest management (each player gets only what is near it) and
-- reconnection (a token resumes your player within a grace period).
--
--   PORT=8090 out/luaio run examples/game      (or: out/luaio build examples/game -o out/game)
--
-- Each tick moves the world and publishes each player's snapshot to that player's own topic
-- (websocket.publish never waits: a client that cannot keep up is dropped, and resumes with
-- its token). Names go to everyone as INFO messages when players come, GONE when they leave.
--
-- Configuration (environment): PORT (8090), HOST (0.0.0.0), TICK_HZ (30, from 20 to 60),
-- WORLD (2000 units a side), CELL (250 units: the interest grid), GRACE_MS (10000: how long a
-- disconnected player waits for its token), MAX_PLAYERS (5000), GAME_DEBUG=1 (JOIN may give a
-- position: for tests), GAME_SPAWN=x,y (everyone starts near that point).
local http = require "http"
local websocket = require "websocket"
local process = require "process"
local task = require "task"
local ratelimit = require "ratelimit"
local cjson = require "cjson"
local crypto = require "crypto"
local P = require "proto"
local unpack = require("struct").unpack
local world = require "world"

local function env(name, default)
  local v = process.getenv(name)
  if v == nil or v == "" then return default end
  return type(default) == "number" and assert(tonumber(v), name .. " must be a number") or v
end

local config = {
  port = env("PORT", 8090), host = env("HOST", "0.0.0.0"), hz = env("TICK_HZ", 30), size = env("WORLD", 2000),
  cell = env("CELL", 250), grace = env("GRACE_MS", 10000), max_players = env("MAX_PLAYERS", 5000),
  debug = env("GAME_DEBUG", "") == "1", spawn = env("GAME_SPAWN", nil),
}
assert(config.hz >= 20 and config.hz <= 60, "TICK_HZ: 20 to 60")
assert(config.size >= config.cell and config.size <= 65535, "WORLD: CELL to 65535")
if config.spawn then
  local x, y = config.spawn:match("^(%d+),(%d+)$")
  config.spawn = { assert(tonumber(x), "GAME_SPAWN: x,y"), tonumber(y) }
end

local function random_token() return crypto.random(16) end -- a resume token

math.randomseed(process.pid + os.time())
local arena = world.new({ size = config.size, cell = config.cell, view = 1, spawn = config.spawn })
local tokens = {} -- token -> player

-- --- the tick ---------------------------------------------------------------------------------

-- The last STATS ticks, for /stats: how late each tick started (jitter), its wall time and
-- its CPU time (os.clock: this process's CPU).
local STATS = 1024
local stats = { late = {}, wall = {}, cpu = {}, n = 0, missed = 0 }
local period = 1000 / config.hz
local last_missed = 0

local function publish_snapshot(p, data) websocket.publish(p.topic, data, "binary") end

local function expire(now)
  local list = arena.list
  for i = #list, 1, -1 do
    local p = list[i]
    if not p.online and now - p.offline_at > config.grace then
      arena:remove(p)
      tokens[p.token] = nil
      websocket.publish("all", P.gone(p.id), "binary")
    end
  end
end

local function tick(t)
  local wall0, cpu0 = task.now(), os.clock()
  -- a tick that came after others were skipped steps the world for them too (up to 5)
  local missed = t.missed - last_missed
  last_missed = t.missed
  for _ = 1, 1 + math.min(missed, 4) do arena:step(period / 1000) end
  expire(wall0)
  arena:snapshots(publish_snapshot)
  local i = stats.n % STATS + 1
  stats.n = stats.n + 1
  stats.late[i], stats.wall[i], stats.cpu[i] = t.late, task.now() - wall0, (os.clock() - cpu0) * 1000
  stats.missed = t.missed
end

-- --- one connection ---------------------------------------------------------------------------

local function refuse(ws, why)
  ws:send(P.error(why), "binary")
  ws:close(4000, why)
end

-- The first message: JOIN (a new player) or RESUME (the player of a token).
local function attach(ws)
  local data, kind = ws:receive()
  if not data then return nil end
  local m = kind == "binary" and P.decode(data, true)
  if not m or (m.op ~= P.JOIN and m.op ~= P.RESUME) then return refuse(ws, "JOIN or RESUME expected") end
  if m.op == P.RESUME then
    local p = tokens[m.token]
    if not p then return refuse(ws, "unknown token") end
    local old = p.ws
    if old then task.spawn(function() old:close(4001, "resumed elsewhere") end) end
    return p
  end
  if not m.name:match("^[%w_%-%. ]+$") or #m.name > 16 then return refuse(ws, "name: 1 to 16 letters or digits") end
  if #arena.list >= config.max_players then return refuse(ws, "the arena is full") end
  local p = arena:add(m.name, config.debug and m.x or nil, config.debug and m.y or nil)
  p.token, p.topic = random_token(), "p" .. p.id
  tokens[p.token] = p
  websocket.publish("all", P.info({ p }), "binary")
  return p
end

local function play(ws)
  local p = attach(ws)
  if not p then return end
  p.ws, p.online, p.offline_at = ws, true, nil
  ws:subscribe("all")
  ws:subscribe(p.topic)
  ws:send(P.welcome(p.id, p.token, config.size, config.hz, math.floor(config.cell * 1.5), config.cell), "binary")
  ws:send(P.info(arena.list), "binary")
  local limit = ratelimit.new(120, 60) -- inputs a second: more are dropped
  while true do
    local data, kind = ws:receive()
    if not data then break end
    if kind ~= "binary" or #data ~= P.INPUT_SIZE or data:byte(1) ~= P.INPUT then
      refuse(ws, "INPUT expected")
      break
    end
    -- read in place (no table: ten inputs a second from each player make no garbage)
    local _, seq, keys, aim = unpack(P.INPUT_FORMAT, data)
    if seq > p.seq and limit:take() then p.seq, p.keys, p.aim = seq, keys, aim end
  end
  if p.ws == ws then -- not resumed elsewhere meanwhile: wait for a resume
    p.ws, p.online, p.offline_at, p.keys = nil, false, task.now(), 0
  end
end

-- --- the server -------------------------------------------------------------------------------

local function percentile(values, q)
  local sorted = {}
  for i = 1, #values do sorted[i] = values[i] end
  table.sort(sorted)
  if #sorted == 0 then return 0 end
  return sorted[math.max(1, math.ceil(#sorted * q))]
end

local router = http.router()
router:get("/", function(req, res) res:sendFile("static/index.html") end)
router:get("/static/*", http.static("static"))
router:get("/stats", function(req, res)
  local online = 0
  for _, p in ipairs(arena.list) do if p.online then online = online + 1 end end
  local function summary(values)
    local sum = 0
    for i = 1, #values do sum = sum + values[i] end
    return { avg = #values > 0 and sum / #values or 0, p50 = percentile(values, 0.5), p99 = percentile(values, 0.99),
      max = percentile(values, 1) }
  end
  res:setHeader("Content-Type", "application/json")
  res:finish(cjson.encode({
    tick = arena.tick, hz = config.hz, players = #arena.list, online = online, shots = #arena.shots,
    missed = stats.missed, late_ms = summary(stats.late), tick_ms = summary(stats.wall), cpu_ms = summary(stats.cpu),
    window = math.min(stats.n, STATS),
  }))
end)
router:websocket("/ws", play, { max_message_size = 256, max_backlog = 256 * 1024 })

local server = assert(http.createServer(config.port, router, { host = config.host }))
task.every(period, tick)
print(("game: pid %d listening on %s:%d, %d Hz, world %d, cells of %d"):format(process.pid, config.host,
  server:address().port, config.hz, config.size, config.cell))
io.stdout:flush()
