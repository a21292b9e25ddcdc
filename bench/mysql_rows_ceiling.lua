-- What LuaJIT alone costs to build the rows of bench/mysql.sh's `rows` load, with no
-- socket, no packet and no parsing: the same 10,000 rows of the `wide` table (same keys,
-- same values, NULLs where MariaDB has them), each string made from bytes in memory as
-- the client makes it from a packet, each row by a table constructor with constant keys
-- as the client's generated fill function does (stdlib/mysql.lua). The client cannot be
-- faster than this; bench/mysql.sh prints it beside mysql2's rate.
-- Prints "ops=N wall=S cpu=S" like bench/mysql_client.lua. DURATION (seconds).
local ffi = require "ffi"
local task = require "task"
local env = require("process").env

local duration = tonumber(env.DURATION or 5) * 1000
local N = 10000
local EPOCH = 1704067200 -- 2024-01-01 00:00:00 UTC

-- The text cells of each row, back to back in one buffer as they are in a packet.
local texts, offsets = {}, {}
local at = 0
local function cell(s)
  texts[#texts + 1] = s
  local off = at
  at = at + #s
  return { off, #s }
end
for i = 1, N do
  offsets[i] = {
    cell(("name-%d"):format(i)),
    cell(("%.2f"):format(i / 3)),
    cell(os.date("!%Y-%m-%d %H:%M:%S", EPOCH + i * 60)),
    cell(("x"):rep(i % 40)),
    cell(os.date("!%Y-%m-%d", EPOCH + (i % 365) * 86400)),
  }
end
local bytes = ffi.new("char[?]", at, table.concat(texts))
texts = nil -- the strings die, as a result's strings do: each run makes them anew
collectgarbage()
local null = ffi.cast("void *", nil)
local str = ffi.string

local function build()
  local rows = {}
  for i = 1, N do
    local o = offsets[i]
    local b, d, e, g, h = o[1], o[2], o[3], o[4], o[5]
    rows[i] = {
      id = i,
      a = i * 1000003,
      b = str(bytes + b[1], b[2]),
      c = i / 7,
      d = str(bytes + d[1], d[2]),
      e = str(bytes + e[1], e[2]),
      f = i % 100,
      g = str(bytes + g[1], g[2]),
      h = str(bytes + h[1], h[2]),
      i = i % 5 == 0 and null or i,
    }
  end
  return rows
end

assert(#build() == N)
local rows, t0, c0 = 0, task.now(), os.clock()
while task.now() - t0 < duration do
  rows = rows + #build()
end
print(("ops=%d wall=%.3f cpu=%.3f"):format(rows, (task.now() - t0) / 1000, os.clock() - c0))
