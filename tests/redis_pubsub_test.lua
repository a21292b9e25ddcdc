-- Pub/sub and pushes with real redis-server processes: subscribe, psubscribe, receive in
-- RESP2 and RESP3, pushes between pipelined replies, client-side caching invalidations,
-- a subscriber under load, and one that does not read.
local test = require "test"
local task = require "task"
local redis = require "redis"
local rh = require "tests.redis_helpers"

for _, proto in ipairs({ 2, 3 }) do
  test.case("subscribe, psubscribe, receive, unsubscribe (RESP" .. proto .. ")", function()
    local srv = rh.server()
    local sub = rh.connect(srv, { protocol = proto })
    local pub = rh.connect(srv)
    test.eq(sub:subscribe("news", "sport"), 2, "subscriptions after the call")
    test.eq(sub:psubscribe("log.*"), 3)
    test.eq(pub:publish("news", "hello"), 1)
    test.eq(pub:publish("log.err", "disk full"), 1)
    test.eq(pub:publish("sport", ""), 1)
    test.eq({ sub:receive(1000) }, { "message", "news", "hello" })
    test.eq({ sub:receive(1000) }, { "pmessage", "log.err", "disk full", "log.*" }, "pattern last")
    test.eq({ sub:receive(1000) }, { "message", "sport", "" })
    local v, err = sub:receive(50)
    test.eq(v, nil)
    test.eq(err.name, "ETIMEDOUT", "nothing more")
    local pong = sub:ping()
    if proto == 2 then test.eq(pong, { "pong", "" }) else test.eq(pong, "PONG") end
    test.eq(sub:unsubscribe("news"), 2)
    test.eq(pub:publish("news", "unheard"), 0)
    test.eq(sub:unsubscribe(), 1, "from every channel; the pattern stays")
    test.eq(sub:punsubscribe(), 0)
    test.eq(sub:set("k", "back to normal"), "OK")
    test.eq(sub:get("k"), "back to normal")
    test.eq(sub:unsubscribe(), 0, "nothing to leave: one confirmation")
    test.raises(function() sub:subscribe() end, "needs at least one name")
    for _, bad in ipairs({ -5, "soon", 0 / 0 }) do -- at the caller's line, not redis.lua's
      test.raises(function() local _ = sub:receive(bad) end,
        "^[^\n]*redis_pubsub_test%.lua:%d+: bad argument #1 to 'receive' %(non%-negative number of milliseconds")
    end
    local blocked = task.spawn(function() return sub:receive(5000) end)
    task.sleep(20)
    local busy, berr = sub:receive(10)
    test.eq(busy, nil)
    test.eq(berr.name, "EBUSY", "one receiver at a time")
    test.eq(sub:subscribe("late"), 1)
    pub:publish("late", "m")
    test.eq({ select(2, blocked:join()) }, { "message", "late", "m" })
  end)
end

test.case("RESP3: pushes between replies, a shared client subscribes and commands", function()
  local srv = rh.server()
  local r = rh.connect(srv, { protocol = 3 })
  local replies = assert(r:pipeline(function(p)
    p:set("a", "1")
    p:debug("protocol", "push") -- a push message, then its reply
    p:get("a")
  end))
  test.eq(replies, { "OK", "Some real reply following the push reply", "1" })
  test.eq({ r:receive(1000) }, { "server-cpu-usage", 42 })
  local pub = rh.connect(srv)
  test.eq(r:subscribe("ch"), 1)
  local tasks = {}
  for i = 1, 20 do tasks[i] = task.spawn(function() return r:incr("n") end) end
  pub:publish("ch", "between")
  for i = 1, 20 do test.ok(tasks[i]:join()) end
  test.eq({ r:receive(1000) }, { "message", "ch", "between" })
  test.eq(r:get("n"), "20", "commands on a subscribed RESP3 connection")
end)

test.case("client-side caching: invalidations as RESP3 pushes and RESP2 messages", function()
  local srv = rh.server()
  local writer = rh.connect(srv)
  local r3 = rh.connect(srv, { protocol = 3 })
  test.eq(r3:client("TRACKING", "on"), "OK")
  writer:set("cached", "1")
  test.eq(r3:get("cached"), "1")
  writer:set("cached", "2")
  local kind, keys = r3:receive(2000)
  test.eq(kind, "invalidate")
  test.eq(keys, { "cached" })
  test.eq(r3:get("cached"), "2", "read again")
  writer:flushall()
  kind, keys = r3:receive(2000)
  test.eq(kind, "invalidate")
  test.eq(keys, redis.null, "FLUSHALL: every key")
  -- RESP2: the invalidations go to another connection, subscribed to __redis__:invalidate
  local inv = rh.connect(srv)
  local id = inv:client("ID")
  test.eq(inv:subscribe("__redis__:invalidate"), 1)
  local r2 = rh.connect(srv)
  test.eq(r2:client("TRACKING", "on", "REDIRECT", id), "OK")
  writer:set("k2", "a")
  test.eq(r2:get("k2"), "a")
  writer:set("k2", "b")
  local k, channel, message = inv:receive(2000)
  test.eq(k, "message")
  test.eq(channel, "__redis__:invalidate")
  test.eq(message, { "k2" })
end)

test.case("pub/sub under load: every message, in order per publisher", function()
  local srv = rh.server()
  local sub = rh.connect(srv)
  local shared_pub = rh.connect(srv)
  test.eq(sub:subscribe("a", "b"), 2)
  test.eq(sub:psubscribe("p:*"), 3)
  local publishers, per = 8, 3000
  local tasks = {}
  for p = 1, publishers do
    tasks[p] = task.spawn(function()
      local own = p % 2 == 0 and rh.connect(srv) or shared_pub -- some share one client
      for i = 1, per do
        local channel = i % 3 == 0 and "p:" .. p or (i % 2 == 0 and "a" or "b")
        assert(own:publish(channel, p .. ":" .. i))
      end
    end)
  end
  local last, got = {}, 0
  for p = 1, publishers do last[p] = 0 end
  while got < publishers * per do
    local kind, channel, message = sub:receive(10000)
    if not kind then error("stopped after " .. got .. " messages: " .. tostring(channel)) end
    local p, i = message:match("^(%d+):(%d+)$")
    p, i = tonumber(p), tonumber(i)
    if i ~= last[p] + 1 then error(("publisher %d: message %d after %d"):format(p, i, last[p])) end
    if (i % 3 == 0) ~= (kind == "pmessage") then error("message " .. message .. " came as " .. kind) end
    last[p] = i
    got = got + 1
  end
  for p = 1, publishers do test.ok(tasks[p]:join()) end
  local v, err = sub:receive(50)
  test.eq(err and err.name, "ETIMEDOUT", "nothing extra")
end)

test.case("a subscriber that does not read holds the server back, not its memory", function()
  local srv = rh.server({ "client-output-buffer-limit pubsub 0 0 0" })
  local sub = rh.connect(srv, { max_pushes = 100 })
  local pub = rh.connect(srv)
  local admin = rh.connect(srv)
  test.eq(sub:subscribe("flood"), 1)
  local payload = string.rep("x", 1000)
  local n = 30000 -- 30 MB: more than the socket buffers hold
  assert(pub:pipeline(function(p) for i = 1, n do p:publish("flood", i .. ":" .. payload) end end))
  local omem = rh.wait_for("the server to hold the subscriber's backlog", 5000, function()
    local list = admin:client("LIST", "TYPE", "pubsub")
    local m = tonumber(list:match("omem=(%d+)"))
    return m and m > 1000000 and m
  end)
  test.ok(omem > 1000000, "the server buffers what the client does not take")
  for i = 1, n do
    local kind, _, message = sub:receive(10000)
    if kind ~= "message" or message ~= i .. ":" .. payload then
      error(("message %d: %s %s"):format(i, tostring(kind), tostring(message):sub(1, 40)))
    end
  end
  test.eq(sub:ping(), { "pong", "" }, "and the connection goes on")
end)

test.case("a message larger than the input buffer, met while reading is paused", function()
  local srv = rh.server()
  local sub = rh.connect(srv, { max_pushes = 1 })
  local pub = rh.connect(srv)
  local admin = rh.connect(srv)
  test.eq(sub:subscribe("c"), 1)
  local huge = string.rep("h", 3 * 1024 * 1024)
  -- "small" fills the queue: parsing stops before the huge one, whose first bytes then fill
  -- the input buffer; receiving "small" restarts parsing, which must grow the buffer past
  -- its usual limit (and have reading go on) to get the rest
  assert(pub:publish("c", "small"))
  assert(pub:publish("c", huge))
  assert(pub:publish("c", "after"))
  test.eq(admin:ping(), "PONG")
  task.sleep(200) -- the bytes arrive meanwhile (the result does not depend on it)
  test.eq({ sub:receive(5000) }, { "message", "c", "small" })
  test.eq({ sub:receive(5000) }, { "message", "c", huge }, "read past the usual limit")
  test.eq({ sub:receive(5000) }, { "message", "c", "after" })
end)
