-- proto: the game's binary messages, little-endian, in struct (Lua 5.3 string.pack) formats.
-- The server, the tests and the bots use this file; static/game.js reads and writes the same
-- layouts with a DataView.
--
-- Client to server                          Server to client
--   JOIN    B op, s1 name[, H x, H y]         WELCOME  B op, H id, c16 token, H world, B hz,
--   RESUME  B op, c16 token                             H view, H cell
--   INPUT   B op, I4 seq, B keys, H aim       SNAPSHOT B op, I4 tick, I4 acked seq, H score,
--                                                      H n, n x PLAYER, H m, m x SHOT
--                                             INFO     B op, H n, n x (H id, B color, s1 name)
--                                             GONE     B op, H id
--                                             ERROR    B op, s1 message
-- PLAYER is H id, H x, H y, B angle, B hp; SHOT is H x, H y (world units, rounded down).
-- x and y in JOIN are honoured only when the server runs with GAME_DEBUG=1 (tests). aim is
-- an angle, 0 to 65535 for a full turn; keys is a set of the bits below.
local struct = require "struct"

local pack, unpack = struct.pack, struct.unpack

local P = {
  JOIN = 1, RESUME = 2, INPUT = 3,
  WELCOME = 1, SNAPSHOT = 2, INFO = 3, GONE = 4, ERROR = 5,
  UP = 1, DOWN = 2, LEFT = 4, RIGHT = 8, FIRE = 16,
  PLAYER = "<H H H B B", PLAYER_SIZE = 8,
  SHOT = "<H H", SHOT_SIZE = 4,
  INPUT_FORMAT = "<B I4 B H", INPUT_SIZE = 8,
}

-- --- client to server ---

function P.join(name, x, y)
  if x then return pack("<B s1 H H", P.JOIN, name, x, y) end
  return pack("<B s1", P.JOIN, name)
end
function P.resume(token) return pack("<B c16", P.RESUME, token) end
function P.input(seq, keys, aim) return pack(P.INPUT_FORMAT, P.INPUT, seq, keys, aim) end

-- --- server to client ---

function P.welcome(id, token, world, hz, view, cell) return pack("<B H c16 H B H H", P.WELCOME, id, token, world, hz, view, cell) end
function P.gone(id) return pack("<B H", P.GONE, id) end
function P.error(message) return pack("<B s1", P.ERROR, message) end

-- P.info(players) -> one INFO message naming each of the array's players.
function P.info(players)
  local parts = { pack("<B H", P.INFO, #players) }
  for i, p in ipairs(players) do parts[i + 1] = pack("<H B s1", p.id, p.color, p.name) end
  return table.concat(parts)
end

-- P.decode(data) -> a table for any message of either side ({op = ..., fields}), or nil, why.
function P.decode(data, from_client)
  local ok, m = pcall(P.read, data, from_client)
  if ok then return m end
  return nil, m
end

function P.read(data, from_client)
  local op = data:byte(1)
  if from_client then
    if op == P.JOIN then
      local _, name, pos = unpack("<B s1", data)
      local m = { op = op, name = name }
      if pos <= #data then m.x, m.y = unpack("<H H", data, pos) end
      return m
    elseif op == P.RESUME then
      local _, token = unpack("<B c16", data)
      return { op = op, token = token }
    elseif op == P.INPUT then
      local _, seq, keys, aim = unpack(P.INPUT_FORMAT, data)
      return { op = op, seq = seq, keys = keys, aim = aim }
    end
  elseif op == P.WELCOME then
    local _, id, token, world, hz, view, cell = unpack("<B H c16 H B H H", data)
    return { op = op, id = id, token = token, world = world, hz = hz, view = view, cell = cell }
  elseif op == P.SNAPSHOT then
    local _, tick, ack, score, n, pos = unpack("<B I4 I4 H H", data)
    local m = { op = op, tick = tick, ack = ack, score = score, players = {}, shots = {} }
    local id, x, y, angle, hp
    for i = 1, n do
      id, x, y, angle, hp, pos = unpack(P.PLAYER, data, pos)
      m.players[i] = { id = id, x = x, y = y, angle = angle, hp = hp }
    end
    n, pos = unpack("<H", data, pos)
    for i = 1, n do
      x, y, pos = unpack(P.SHOT, data, pos)
      m.shots[i] = { x = x, y = y }
    end
    return m
  elseif op == P.INFO then
    local _, n, pos = unpack("<B H", data)
    local m = { op = op, players = {} }
    local id, color, name
    for i = 1, n do
      id, color, name, pos = unpack("<H B s1", data, pos)
      m.players[i] = { id = id, color = color, name = name }
    end
    return m
  elseif op == P.GONE then
    local _, id = unpack("<B H", data)
    return { op = op, id = id }
  elseif op == P.ERROR then
    local _, message = unpack("<B s1", data)
    return { op = op, message = message }
  end
  error("unknown message " .. tostring(op))
end

return P
