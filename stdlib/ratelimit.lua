-- ratelimit: token buckets, for limits such as "5 messages a second, bursts of 10" per
-- connection, per user or per address.
--
--   local ratelimit = require "ratelimit"
--   local limit = ratelimit.new(5, 10)        -- 5 tokens a second, at most 10 saved up
--   if not limit:take() then ws:send('{"error":"slow down"}') end
--
-- A bucket holds up to `burst` tokens and gains `rate` of them a second; each action takes
-- some. Tokens are counted from the monotonic clock when asked, so an idle bucket costs
-- nothing (no timer): a table of three numbers.
local sched = require "luaio.task"
local options = require "luaio.options"

local min, tostring, type, huge = math.min, tostring, type, math.huge
local now = sched.now

local ratelimit = {}

local Bucket = {}
Bucket.__index = Bucket

local function positive(v, argn, fname, what)
  if type(v) ~= "number" or not (v > 0) or v == huge then
    options.argerror(argn, fname, what .. " expected, got " .. (type(v) == "number" and tostring(v) or type(v)), 3)
  end
  return v
end

-- ratelimit.new(rate[, burst = max(rate, 1)]) -> a full bucket: rate tokens a second (a
-- fraction: 0.5 is one every two seconds), at most burst saved.
function ratelimit.new(rate, burst)
  positive(rate, 1, "new", "tokens per second above 0")
  if burst == nil then burst = rate > 1 and rate or 1 else positive(burst, 2, "new", "burst above 0") end
  return setmetatable({ rate = rate, per_ms = rate / 1000, burst = burst, have = burst, at = now() }, Bucket)
end

local function refill(b)
  local t = now()
  b.have = min(b.burst, b.have + (t - b.at) * b.per_ms)
  b.at = t
  return b.have
end

local function count(b, n, fname)
  if n == nil then return 1 end
  if type(n) ~= "number" or not (n > 0) or n > b.burst then
    options.argerror(1, fname, "number of tokens from 0 to the burst (" .. b.burst .. ") expected, got " ..
      (type(n) == "number" and tostring(n) or type(n)), 3)
  end
  return n
end

-- bucket:take([n = 1]) -> true (the n tokens are taken), or false, ms: not enough yet, and ms
-- is how long until there will be (nothing is taken).
function Bucket:take(n)
  n = count(self, n, "take")
  local have = refill(self)
  if have >= n then
    self.have = have - n
    return true
  end
  return false, (n - have) / self.per_ms
end

-- bucket:wait([n = 1]): waits in the task until n tokens are there, and takes them (to slow
-- a sender down rather than refuse it).
function Bucket:wait(n)
  n = count(self, n, "wait")
  while true do
    local ok, ms = self:take(n)
    if ok then return true end
    sched.sleep(ms)
  end
end

-- bucket:tokens() -> the tokens there now (a float).
function Bucket:tokens() return refill(self) end

return ratelimit
