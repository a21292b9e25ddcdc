-- world: the arena, authoritative and without I/O. Players move by the keys they hold and
-- shoot where they aim; shots fly for a while and hurt whom they touch. The arena is cut
-- into square cells: collisions look at neighbouring cells only, and each player is sent
-- what is in its own cell and the cells around it (interest management). Each cell's
-- players and shots are packed once per tick, and a player's snapshot is those blocks
-- joined: packing costs one struct.pack per entity, whatever the number of viewers.
local bit = require "bit"
local struct = require "struct"
local P = require "proto"

local band = bit.band
local floor, sqrt, min, max, random = math.floor, math.sqrt, math.min, math.max, math.random
local cos, sin, pi = math.cos, math.sin, math.pi
local pack, concat = struct.pack, table.concat

local SPEED = 220        -- units a second
local SHOT_SPEED = 700
local SHOT_TTL = 0.8     -- seconds
local RADIUS = 18        -- a player's
local COOLDOWN = 0.25    -- seconds between two shots
local DAMAGE = 20
local MAX_HP = 100

local World = {}
World.__index = World

local world = {}

-- world.new{size, cell, view = 1} -> a world of size x size units, cells of `cell` units; a
-- player sees the cells within `view` cells of its own.
function world.new(o)
  local cols = math.ceil(o.size / o.cell)
  return setmetatable({
    size = o.size, cell = o.cell, cols = cols, view = o.view or 1, spawn = o.spawn,
    list = {}, byid = {}, shots = {}, next_id = 1, tick = 0,
  }, World)
end

local function place(w, p, x, y)
  if not x then
    if w.spawn then -- everyone near one point (GAME_SPAWN: the page's browser test)
      x, y = w.spawn[1] + random(-60, 60), w.spawn[2] + random(-60, 60)
    else
      x, y = random(RADIUS, w.size - RADIUS), random(RADIUS, w.size - RADIUS)
    end
  end
  p.x, p.y = max(0, min(w.size - 1, x)), max(0, min(w.size - 1, y))
  p.hp = MAX_HP
end

-- world:add(name[, x, y]) -> a new player (at x, y, or at random).
function World:add(name, x, y)
  local id = self.next_id
  while self.byid[id] do id = id % 65535 + 1 end
  self.next_id = id % 65535 + 1
  local p = { id = id, name = name, color = random(0, 255), angle = 0, score = 0, keys = 0, aim = 0, seq = 0,
    cooldown = 0 }
  place(self, p, x, y)
  self.byid[id] = p
  self.list[#self.list + 1] = p
  return p
end

function World:remove(p)
  self.byid[p.id] = nil
  local list = self.list
  for i = 1, #list do
    if list[i] == p then
      list[i] = list[#list]
      list[#list] = nil
      return
    end
  end
end

local function cell_of(w, x, y)
  local c = w.cell
  return floor(y / c) * w.cols + floor(x / c)
end

-- world:step(dt): moves everything by dt seconds.
function World:step(dt)
  self.tick = self.tick + 1
  local size, list, shots = self.size, self.list, self.shots
  for i = 1, #list do
    local p = list[i]
    local k = p.keys
    local dx = (band(k, P.RIGHT) ~= 0 and 1 or 0) - (band(k, P.LEFT) ~= 0 and 1 or 0)
    local dy = (band(k, P.DOWN) ~= 0 and 1 or 0) - (band(k, P.UP) ~= 0 and 1 or 0)
    if dx ~= 0 or dy ~= 0 then
      local f = SPEED * dt / sqrt(dx * dx + dy * dy)
      p.x = max(0, min(size - 1, p.x + dx * f))
      p.y = max(0, min(size - 1, p.y + dy * f))
    end
    p.angle = floor(p.aim / 256)
    p.cooldown = p.cooldown - dt
    if band(k, P.FIRE) ~= 0 and p.cooldown <= 0 then
      p.cooldown = COOLDOWN
      local a = p.aim / 65536 * 2 * pi
      local vx, vy = cos(a), sin(a)
      shots[#shots + 1] = { x = p.x + vx * RADIUS, y = p.y + vy * RADIUS, vx = vx * SHOT_SPEED,
        vy = vy * SHOT_SPEED, ttl = SHOT_TTL, owner = p }
    end
  end
  -- players by cell, for the collisions
  local grid = {}
  for i = 1, #list do
    local p = list[i]
    local c = cell_of(self, p.x, p.y)
    local in_cell = grid[c]
    if in_cell then in_cell[#in_cell + 1] = p else grid[c] = { p } end
  end
  local cols, cell = self.cols, self.cell
  for i = #shots, 1, -1 do
    local s = shots[i]
    s.x, s.y, s.ttl = s.x + s.vx * dt, s.y + s.vy * dt, s.ttl - dt
    local hit = false
    if s.ttl > 0 and s.x >= 0 and s.y >= 0 and s.x < size and s.y < size then
      local cx, cy = floor(s.x / cell), floor(s.y / cell)
      for gy = cy - 1, cy + 1 do
        for gx = cx - 1, cx + 1 do
          local in_cell = gx >= 0 and gx < cols and grid[gy * cols + gx]
          if in_cell then
            for j = 1, #in_cell do
              local p = in_cell[j]
              local ddx, ddy = p.x - s.x, p.y - s.y
              if not hit and p ~= s.owner and ddx * ddx + ddy * ddy < RADIUS * RADIUS then
                hit = true
                p.hp = p.hp - DAMAGE
                if p.hp <= 0 then
                  s.owner.score = s.owner.score + 1
                  place(self, p)
                end
              end
            end
          end
        end
      end
    else
      hit = true -- out of time or out of the arena
    end
    if hit then
      shots[i] = shots[#shots]
      shots[#shots] = nil
    end
  end
end

-- Each cell's entities packed: {[cell] = {players = string, np = count, shots = string, ns = count}}.
local function pack_cells(w)
  local cells = {}
  local function get(c)
    local e = cells[c]
    if not e then
      e = { p = {}, s = {} }
      cells[c] = e
    end
    return e
  end
  local list, shots = w.list, w.shots
  for i = 1, #list do
    local p = list[i]
    local e = get(cell_of(w, p.x, p.y))
    e.p[#e.p + 1] = pack(P.PLAYER, p.id, floor(p.x), floor(p.y), p.angle, max(0, p.hp))
  end
  for i = 1, #shots do
    local s = shots[i]
    local e = get(cell_of(w, s.x, s.y))
    e.s[#e.s + 1] = pack(P.SHOT, floor(s.x), floor(s.y))
  end
  for _, e in pairs(cells) do
    e.np, e.ns = #e.p, #e.s
    e.players, e.shots = concat(e.p), concat(e.s)
  end
  return cells
end

-- The part of a snapshot after its header for a player in cell (cx, cy): what the cells
-- around it hold. Every player of one cell gets the same, so it is joined once per cell.
local function body(w, cells, cx, cy, parts, shot_parts)
  local cols, view = w.cols, w.view
  local np, ns, n, m = 0, 0, 1, 0
  for gy = cy - view, cy + view do
    for gx = cx - view, cx + view do
      local e = gx >= 0 and gx < cols and gy >= 0 and cells[gy * cols + gx]
      if e then
        if e.np > 0 then n, np = n + 1, np + e.np; parts[n] = e.players end
        if e.ns > 0 then m, ns = m + 1, ns + e.ns; shot_parts[m] = e.shots end
      end
    end
  end
  parts[1] = pack("<H", np)
  n = n + 1
  parts[n] = pack("<H", ns)
  for j = 1, m do parts[n + j] = shot_parts[j] end
  return concat(parts, "", 1, n + m)
end

-- world:snapshots(send): send(player, snapshot) for each player whose `online` is set, with
-- what is near it.
function World:snapshots(send)
  local cells = pack_cells(self)
  local cell, cols = self.cell, self.cols
  local list, tick = self.list, self.tick
  local bodies, parts, shot_parts = {}, {}, {}
  for i = 1, #list do
    local p = list[i]
    if p.online then
      local cx, cy = floor(p.x / cell), floor(p.y / cell)
      local c = cy * cols + cx
      local b = bodies[c]
      if not b then
        b = body(self, cells, cx, cy, parts, shot_parts)
        bodies[c] = b
      end
      send(p, pack("<B I4 I4 H", P.SNAPSHOT, tick, p.seq, min(p.score, 65535)) .. b)
    end
  end
end

return world
