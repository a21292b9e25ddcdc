-- chat: rooms over WebSocket, shared by every process through Redis.
--
--   REDIS_URL=redis://127.0.0.1:6379 PORT=8080 WORKERS=2 out/luaio run examples/chat
--   (or: out/luaio build examples/chat -o out/chat && out/chat)
--
-- A browser opens / (static/index.html from the bundle), then /ws?room=NAME&nick=NAME. Every
-- event of a room goes through the Redis channel chat:ROOM: the process that gets a message
-- stores it (the last HISTORY of each room, in a Redis list) and publishes it; every process
-- with members in that room is subscribed to the channel and hands the event to its own
-- sockets with websocket.publish, framed once for all of them. So workers of one machine,
-- and instances on several machines behind a load balancer, share rooms.
--
-- Client to server, JSON text frames: {"type":"msg","text":"..."}, {"type":"typing"}.
-- Server to client: hello (room, nick, members, history), msg (id, nick, text, ts), join,
-- leave, typing (nick), error (error, retry_ms).
--
-- Configuration (environment): PORT (8080), HOST (0.0.0.0), REDIS_URL
-- (redis://127.0.0.1:6379: use a numeric address where there is no resolver, as under chroot),
-- WORKERS (0: this process serves), HISTORY (50 messages kept per room), RATE and BURST (5
-- messages a second per connection, bursts of 10), MAX_STRIKES (messages refused in a row
-- before the connection is closed: 20).
local http = require "http"
local websocket = require "websocket"
local redis = require "redis"
local cjson = require "cjson"
local ratelimit = require "ratelimit"
local process = require "process"
local task = require "task"
local log = require "log"

local function env(name, default, number)
  local v = process.getenv(name)
  if v == nil or v == "" then return default end
  if number then v = assert(tonumber(v), name .. " must be a number") end
  return v
end

local config = {
  port = env("PORT", 8080, true),
  host = env("HOST", "0.0.0.0"),
  redis = env("REDIS_URL", "redis://127.0.0.1:6379"),
  workers = env("WORKERS", 0, true),
  history = env("HISTORY", 50, true),
  rate = env("RATE", 5, true),
  burst = env("BURST", 10, true),
  max_strikes = env("MAX_STRIKES", 20, true),
}

local MEMBER_TTL = 45 -- seconds a member stays listed without its process refreshing it
local REFRESH_MS = 15000

-- --- Redis: one shared client for commands (tasks sharing it are pipelined), one subscriber --

local shared
local function call(name, ...)
  if not shared then
    local c, err = redis.connect(config.redis)
    if not c then return nil, err end
    shared = c
  end
  local c = shared
  local reply, err = c:call(name, ...)
  if reply == nil and type(err) == "table" then -- the connection broke: the next call reconnects
    if shared == c then shared = nil end
    c:close()
  end
  return reply, err
end

-- Stores a message and publishes it, atomically: its id is the room's counter, so history
-- and the live stream agree on the order (a client drops what it already has by id).
local POST = [[
local id = redis.call('INCR', KEYS[1])
local msg = '{"type":"msg","id":' .. id .. ',' .. string.sub(ARGV[1], 2)
redis.call('RPUSH', KEYS[2], msg)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('PUBLISH', KEYS[3], msg)
return id
]]

-- Claims a nickname in a room unless a live member holds it.
local CLAIM = [[
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if seen and tonumber(seen) > tonumber(ARGV[2]) - tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
]]

local function channel(room) return "chat:" .. room end
local function key(room, what) return "chat:" .. room .. ":" .. what end

-- --- rooms of this process ------------------------------------------------------------------

local rooms = {} -- name -> {members = {[nick] = true}, count, subscribed (a task handle)}
local subscriber -- the subscribed client, while connected

local function enter(name)
  local room = rooms[name]
  if not room then
    room = { members = {}, count = 0 }
    rooms[name] = room
    -- every member that enters meanwhile waits for the same subscription
    room.subscribed = task.spawn(function()
      if subscriber then return subscriber:subscribe(channel(name)) end
    end)
  end
  room.count = room.count + 1
  room.subscribed:join()
  return room
end

local function leave(name)
  local room = rooms[name]
  room.count = room.count - 1
  if room.count == 0 then
    rooms[name] = nil
    if subscriber then subscriber:unsubscribe(channel(name)) end
  end
end

-- Receives the rooms' events and hands each to this process's sockets; reconnects (and
-- subscribes again to the rooms in use) when Redis goes away.
local function listen()
  local delay = 100
  while true do
    local sub, err = redis.connect(config.redis)
    if sub then
      -- rooms entered from now on subscribe themselves; those entered before, here
      subscriber = sub
      local names = {}
      for name in pairs(rooms) do names[#names + 1] = channel(name) end
      if #names == 0 or sub:subscribe(unpack(names)) then
        delay = 100
        while true do
          local kind, ch, payload = sub:receive()
          if not kind then err = ch break end
          if kind == "message" then websocket.publish(ch, payload) end
        end
      end
      subscriber = nil
      sub:close()
    end
    log.warn("chat: Redis subscriber down, reconnecting", { err = err, delay_ms = delay })
    task.sleep(delay)
    delay = math.min(delay * 2, 5000)
  end
end

-- Members still listed in Redis are refreshed by their process; a crashed process's
-- members fade out after MEMBER_TTL.
local function refresh()
  local now = os.time()
  if not shared then call("PING") end -- connects
  local c = shared
  if not c then return end
  c:pipeline(function(p) -- one round trip for them all
    for name, room in pairs(rooms) do
      for nick in pairs(room.members) do p:zadd(key(name, "members"), now, nick) end
    end
  end)
end

-- --- one connection ------------------------------------------------------------------------

local function event(kind, fields)
  fields.type, fields.ts = kind, os.time()
  return cjson.encode(fields)
end

local function send_error(ws, message, extra)
  local e = { type = "error", error = message }
  for k, v in pairs(extra or {}) do e[k] = v end
  ws:send(cjson.encode(e))
end

local function valid(s, max) return type(s) == "string" and #s >= 1 and #s <= max and s:match("^[%w_%-%.]+$") end

-- What a member sends, until it leaves.
local function converse(ws, name, nick)
  local limit = ratelimit.new(config.rate, config.burst)
  local typing = ratelimit.new(1, 2)
  local strikes = 0
  while true do
    local data, kind = ws:receive()
    if not data then return end
    local ok, m = pcall(cjson.decode, data)
    if kind ~= "text" or not ok or type(m) ~= "table" then
      send_error(ws, "JSON objects expected")
    elseif m.type == "msg" then
      local text = m.text
      if type(text) ~= "string" or text == "" or #text > 1000 then
        send_error(ws, "text of 1 to 1000 bytes expected")
      else
        local allowed, wait_ms = limit:take()
        if allowed then
          strikes = 0
          local body = cjson.encode({ nick = nick, text = text, ts = os.time() })
          local id, err = call("EVAL", POST, 3, key(name, "seq"), key(name, "history"), channel(name), body,
            config.history)
          if not id then send_error(ws, "not stored: " .. tostring(err)) end
        else
          strikes = strikes + 1
          if strikes > config.max_strikes then
            ws:close(1008, "rate limit")
            return
          end
          send_error(ws, "rate limited", { retry_ms = math.ceil(wait_ms) })
        end
      end
    elseif m.type == "typing" then
      if typing:take() then call("PUBLISH", channel(name), event("typing", { nick = nick })) end
    else
      send_error(ws, "unknown type")
    end
  end
end

local function session(ws, req)
  local name, nick = req.query.room, req.query.nick
  if not valid(name, 32) or not valid(nick, 20) then
    send_error(ws, "room and nick: 1 to 32 and 1 to 20 letters, digits, '_', '-' or '.'")
    return ws:close(1008, "bad room or nick")
  end
  local claimed, err = call("EVAL", CLAIM, 1, key(name, "members"), nick, os.time(), MEMBER_TTL)
  if claimed ~= 1 then
    send_error(ws, claimed == 0 and "nickname taken" or "Redis: " .. tostring(err))
    return ws:close(1008, claimed == 0 and "nickname taken" or "unavailable")
  end
  local room = enter(name)
  room.members[nick] = true
  local ok, failure = pcall(function()
    -- subscribed first, history next: what was posted in between comes twice, and the
    -- client keeps one of each id
    ws:subscribe(channel(name))
    local history = call("LRANGE", key(name, "history"), 0, -1)
    local members = call("ZRANGEBYSCORE", key(name, "members"), os.time() - MEMBER_TTL, "+inf")
    ws:send(('{"type":"hello","room":%s,"nick":%s,"server":%d,"members":%s,"history":[%s]}'):format(
      cjson.encode(name), cjson.encode(nick), process.pid,
      cjson.encode(setmetatable(type(members) == "table" and members or {}, cjson.empty_array_mt)),
      table.concat(type(history) == "table" and history or {}, ",")))
    call("PUBLISH", channel(name), event("join", { nick = nick }))
    converse(ws, name, nick)
  end)
  room.members[nick] = nil
  call("ZREM", key(name, "members"), nick)
  call("PUBLISH", channel(name), event("leave", { nick = nick }))
  leave(name)
  if not ok then error(failure, 0) end
end

-- --- the server -------------------------------------------------------------------------------

local router = http.router()
router:get("/", function(req, res) res:sendFile("static/index.html") end)
router:get("/static/*", http.static("static"))
router:get("/health", function(req, res)
  local count = 0
  for _, room in pairs(rooms) do count = count + room.count end
  res:setHeader("Content-Type", "application/json")
  res:finish(cjson.encode({ pid = process.pid, connections = count, redis = subscriber ~= nil }))
end)
router:websocket("/ws", session, { max_message_size = 4096, idle_timeout = 90000 })

local server = assert(http.createServer(config.port, router, {
  host = config.host, workers = config.workers > 0 and config.workers or nil,
}))
if server.workers then -- the master: the workers serve, the master restarts them
  print(("chat: %d workers on port %d"):format(#server.workers, config.port))
  return
end
task.spawn(listen)
task.every(REFRESH_MS, refresh)
print(("chat: pid %d listening on %s:%d, Redis %s"):format(process.pid, config.host, server:address().port,
  config.redis))
io.stdout:flush()
