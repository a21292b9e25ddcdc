-- Token buckets.
local test = require "test"
local task = require "task"
local ratelimit = require "ratelimit"

test.case("a full bucket gives its burst at once, then refuses and says how long to wait", function()
  local b = ratelimit.new(10, 3)
  test.ok(b:take())
  test.ok(b:take())
  test.ok(b:take())
  local ok, ms = b:take()
  test.eq(ok, false)
  test.ok(ms > 0 and ms <= 100, "about 100 ms for one token at 10/s: " .. ms)
end)

test.case("tokens come back at the rate, never past the burst", function()
  local b = ratelimit.new(100, 2)
  test.ok(b:take(2))
  test.eq(b:take(), false)
  task.sleep(25) -- 2.5 tokens at 100/s, capped at 2
  test.ok(b:tokens() >= 1.99 and b:tokens() <= 2, "refilled to the burst")
  test.ok(b:take(2))
end)

test.case("wait slows a sender to the rate", function()
  local b = ratelimit.new(50, 1) -- one every 20 ms
  local started = task.now()
  for _ = 1, 6 do b:wait() end
  test.ok(task.now() - started >= 95, "six tokens at 50/s from a burst of one take 100 ms")
end)

test.case("misuse raises naming the argument", function()
  test.raises(function() ratelimit.new(0) end, "bad argument #1 to 'new'")
  test.raises(function() ratelimit.new("5") end, "bad argument #1 to 'new'")
  test.raises(function() ratelimit.new(5, -1) end, "bad argument #2 to 'new'")
  local b = ratelimit.new(5, 2)
  test.raises(function() b:take(3) end, "bad argument #1 to 'take'")
  test.raises(function() b:take(0) end, "bad argument #1 to 'take'")
  test.eq(ratelimit.new(0.5).burst, 1, "the burst defaults to at least one")
end)
