-- The Redis client when things go wrong, and with large values: a server killed with
-- replies due, replies cut short or malformed, a value of 128 MiB.
local test = require "test"
local task = require "task"
local tcp = require "tcp"
local redis = require "redis"
local rh = require "tests.redis_helpers"

test.case("a server killed mid-pipeline: every waiter gets an error, nothing hangs", function()
  local srv = rh.server()
  local r = rh.connect(srv)
  assert(r:set("k", "v"))
  local pipe = task.spawn(function()
    return r:pipeline(function(p)
      for _ = 1, 1000 do p:get("k") end
      p:debug("sleep", 10) -- the server holds the rest back while it is killed
      for _ = 1, 1000 do p:get("k") end
    end)
  end)
  local others = {}
  for i = 1, 10 do others[i] = task.spawn(function() return r:get("k") end) end
  task.sleep(300)
  rh.kill(srv)
  local ok, v, err = pipe:join(5000)
  test.ok(ok, "the pipeline's task ended")
  test.eq(v, nil)
  test.ok(err and (err.name == "EOF" or err.name == "ECONNRESET"), "an I/O error table: " .. tostring(err))
  for i = 1, 10 do
    local _, ov, oerr = others[i]:join(5000)
    test.eq(ov, nil)
    test.eq(oerr.name, err.name, "the tasks behind it too")
  end
  local later, lerr = r:get("k")
  test.eq(later, nil)
  test.eq(lerr.name, err.name, "later calls fail at once with why")
  local _, perr = r:pipeline(function(p) p:get("k") end)
  test.eq(perr.name, err.name)
end)

-- A server on a luaio socket that answers the first command with `reply` and then, when
-- `close` is set, closes.
local function fake(reply, close)
  local server = assert(tcp.createServer(0, function(s)
    s:read()
    s:write(reply)
    if close then return end
    while s:read() do end
  end, { host = "127.0.0.1" }))
  test.cleanup(function() server:close() end)
  return server:address().port
end

test.case("replies cut short, malformed, or unasked for close the connection", function()
  local cases = {
    { "a bulk string cut short", "$1000\r\n" .. string.rep("x", 500), true, "EOF" },
    { "an array cut short", "*3\r\n:1\r\n:2\r\n", true, "EOF" },
    { "a bad type byte", "?what\r\n", false, "EPROTO" },
    { "a bad length", "$12x\r\n", false, "EPROTO" },
    { "a bare LF", "+OK\n", false, "EPROTO" },
    { "a line that never ends", "+" .. string.rep("y", 300 * 1024), false, "EPROTO" },
    { "one reply too many", "+OK\r\n+EXTRA\r\n", false, "EPROTO" },
    { "nesting past the limit", string.rep("*1\r\n", 100) .. ":1\r\n", false, "EPROTO" },
  }
  for _, c in ipairs(cases) do
    local r = assert(redis.connect({ port = fake(c[2], c[3]) }))
    local first, ferr = r:get("a")
    local v, err
    if c[1] == "one reply too many" then
      test.eq(first, "OK", c[1] .. ": the first reply")
      v, err = r:get("b") -- the extra reply arrived with nobody waiting: the stream is lost
    else
      v, err = first, ferr
    end
    test.eq(v, nil, c[1])
    test.eq(type(err) == "table" and err.name, c[4], c[1] .. ": " .. tostring(err))
    local again, aerr = r:ping()
    test.eq(again, nil)
    test.ok(type(aerr) == "table", c[1] .. ": closed")
  end
end)

-- The large-value check runs in a process of its own, so that its memory is its own.
local LARGE = [=[
local redis = require "redis"
local port, n = tonumber(arg[1]), tonumber(arg[2])
local function status(field)
  local f = io.open("/proc/self/status")
  local text = f:read("*a")
  f:close()
  return tonumber(text:match(field .. ":%s+(%d+)")) * 1024
end
local function reset_peak() -- the kernel's peak RSS counter starts again from now
  local f = assert(io.open("/proc/self/clear_refs", "w"))
  f:write("5")
  f:close()
end
local pattern = "0123456789abcdef"
local r = assert(redis.connect({ port = port }))
do
  local big = pattern:rep(n / 16)
  assert(r:set("big", big) == "OK")
end
for _ = 1, 3 do collectgarbage("collect") end
reset_peak()
local base = status("VmRSS")
local total, bad, pieces = 0, 0, 0
local len = assert(r:stream(function(piece)
  local off = total % 16
  local want = (pattern .. pattern):sub(off + 1, off + 16)
  if piece:sub(1, 16) ~= want:sub(1, math.min(16, #piece)) then bad = bad + 1 end
  total, pieces = total + #piece, pieces + 1
end, "get", "big"))
print(("stream length=%d total=%d bad=%d pieces=%d peak=%d"):format(len, total, bad, pieces, status("VmHWM") - base))
for _ = 1, 3 do collectgarbage("collect") end
reset_peak()
base = status("VmRSS")
local v = assert(r:get("big"))
local ok = #v == n and v:sub(1, 32) == pattern:rep(2) and v:sub(-16) == pattern and v:sub(n / 2 + 1, n / 2 + 16) == pattern
print(("get length=%d ok=%s peak=%d"):format(#v, tostring(ok), status("VmHWM") - base))
]=]

test.case("a 128 MiB value: set without a copy, get with one, stream in constant memory", function()
  local srv = rh.server()
  local dir = test.tmpdir()
  test.write(dir .. "/large.lua", LARGE)
  local n = 128 * 1024 * 1024
  local out, status = test.sh(test.quote(test.luaio) .. " run " .. dir .. "/large.lua " .. srv.port .. " " .. n)
  test.eq(status, 0, out)
  local slen, stotal, sbad, spieces, speak = out:match("stream length=(%d+) total=(%d+) bad=(%d+) pieces=(%d+) peak=(%-?%d+)")
  test.ok(slen, "the stream line: " .. out)
  test.eq(tonumber(slen), n)
  test.eq(tonumber(stotal), n)
  test.eq(tonumber(sbad), 0, "every piece where it belongs")
  test.ok(tonumber(spieces) > 100, "in pieces")
  test.ok(tonumber(speak) < 24 * 1024 * 1024, "stream: memory stays small (peak grew by " .. speak .. " bytes)")
  local glen, gok, gpeak = out:match("get length=(%d+) ok=(%a+) peak=(%-?%d+)")
  test.eq(tonumber(glen), n)
  test.eq(gok, "true")
  -- the reply buffer, sized once from the bulk header, then the Lua string: twice, not more
  test.ok(tonumber(gpeak) > n, "get holds the value (peak grew by " .. gpeak .. " bytes)")
  test.ok(tonumber(gpeak) < 2 * n + 32 * 1024 * 1024, "get: at most the reply buffer and the string (peak grew by " .. gpeak .. " bytes)")
  io.stdout:write(out) -- the figures, for the record
end)
