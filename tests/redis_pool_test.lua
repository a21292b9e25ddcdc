-- redis.pool against a real redis-server: borrowing and giving back, the size bound, waiters
-- that time out, connections that must not be reused, and a loop that never blocks.
local test = require "test"
local task = require "task"
local redis = require "redis"
local helpers = require "tests.helpers"
local rh = require "tests.redis_helpers"

test.case("pool:call borrows, runs, gives back; pipeline and transaction too", function()
  local srv = rh.server()
  local p = redis.pool(srv.url, { size = 2 })
  test.eq(p:call("set", "k", "v"), "OK")
  test.eq(p:call("get", "k"), "v")
  local v, err = p:call("incr", "k")
  test.eq(v, nil)
  test.match(err, "^ERR value is not an integer", "an error reply, and the connection stays in the pool")
  test.eq(p:stats(), { idle = 1, busy = 0, waiting = 0 }, "one connection did it all")
  test.eq(p:pipeline(function(q) q:set("a", 1) q:incr("a") end), { "OK", 2 })
  test.eq(p:transaction(function(t) t:incr("a") t:incr("a") end), { 3, 4 })
  test.raises(function() p:call("set", "k", {}) end, "bad argument")
  test.eq(p:stats().busy, 0, "given back even when the call raised")
  p:close()
  local closed, cerr = p:call("ping")
  test.eq(closed, nil)
  test.eq(cerr.name, "ECANCELED")
end)

test.case("pool:get and client:release; a released client is dead", function()
  local srv = rh.server()
  local p = redis.pool({ url = srv.url, db = 1, size = 3 })
  local c = assert(p:get())
  local id = c:client("ID")
  test.eq(c:set("k", "db1"), "OK")
  c:release()
  test.raises(function() c:get("k") end, "released to its pool")
  test.raises(function() c:release() end, "a client from pool:get%(%) expected")
  local c2 = assert(p:get())
  test.eq(c2:client("ID"), id, "the same connection again")
  test.eq(c2:get("k"), "db1", "its database")
  c2:release()
  local plain = rh.connect(srv)
  test.raises(function() plain:release() end, "a client from pool:get%(%) expected")
end)

test.case("connections in a transaction, subscribed, elsewhere or broken are not reused", function()
  local srv = rh.server()
  local admin = rh.connect(srv)
  local p = redis.pool(srv.url, { size = 1 })
  local function next_id()
    local c = assert(p:get())
    local id = c:client("ID")
    c:release()
    return id
  end
  local id = next_id()
  test.eq(next_id(), id, "a clean connection is reused")
  local cases = {
    { "in MULTI", function(c) c:multi() end },
    { "WATCHing", function(c) c:watch("x") end },
    { "subscribed", function(c) c:subscribe("ch") end },
    { "another database", function(c) c:select(3) end },
    { "a name", function(c) c:client("SETNAME", "mine") end },
    { "killed by the server", function(c)
      admin:client("KILL", "ID", c:client("ID"))
      rh.wait_for("the kill to arrive", 2000, function() return c:ping() == nil end)
    end },
  }
  for _, case in ipairs(cases) do
    local c = assert(p:get())
    local before = c:client("ID")
    case[2](c)
    c:release()
    local after = next_id()
    test.ok(after ~= before, case[1] .. ": closed, not reused")
  end
  local c = assert(p:get())
  c:watch("x")
  c:unwatch()
  local keep = c:client("ID")
  c:release()
  test.eq(next_id(), keep, "after UNWATCH it is fine again")
  c = assert(p:get())
  keep = c:client("ID")
  c:transaction(function(t) t:set("x", 1) end)
  c:release()
  test.eq(next_id(), keep, "a finished transaction leaves it clean")
end)

test.case("size bounds the connections; waiters wait, time out, or are turned away", function()
  local srv = rh.server()
  local admin = rh.connect(srv)
  local p = redis.pool(srv.url, { size = 2, max_waiters = 1, wait_timeout = 300 })
  local a, b = assert(p:get()), assert(p:get())
  local ticker = helpers.ticker()
  local waiter = task.spawn(function() return p:get() end)
  task.sleep(20)
  local v, err = p:get()
  test.eq(v, nil)
  test.eq(err.name, "EBUSY", "max_waiters 1: the second waiter is turned away")
  a:release()
  local ok, c = waiter:join()
  test.ok(ok and c, "the waiter got the released connection")
  local started = task.now()
  v, err = p:get()
  test.eq(v, nil)
  test.eq(err.name, "ETIMEDOUT")
  test.ok(task.now() - started >= 290, "waited wait_timeout")
  local t = ticker.stop()
  test.ok(t.max_gap < 200, "the loop went on meanwhile (longest gap " .. t.max_gap .. " ms)")
  test.eq(tonumber(rh.info_field(admin, "clients", "connected_clients")), 3, "admin + 2")
  b:release()
  c:release()
end)

test.case("a borrowed client dropped without release gives its place back", function()
  local srv = rh.server()
  local p = redis.pool(srv.url, { size = 1, wait_timeout = 3000 })
  test.ok(task.spawn(function() -- the task's end drops every reference to the client
    local c = assert(p:get())
    c:set("x", 1)
  end):join())
  for _ = 1, 3 do collectgarbage("collect") end -- the client, then its guard
  local c, err = p:get()
  test.ok(c, "the place came back: " .. tostring(err))
  test.eq(c:get("x"), "1")
  c:release()
end)

test.case("idle connections close after idle_timeout; a dead server fails calls, then it is back", function()
  local srv = rh.server()
  local admin = rh.connect(srv)
  local p = redis.pool(srv.url, { size = 4, idle_timeout = 200 })
  local tasks = {}
  for i = 1, 4 do tasks[i] = task.spawn(function() return p:call("echo", i) end) end
  for i = 1, 4 do test.eq({ tasks[i]:join() }, { true, i .. "" }) end
  test.eq(p:stats().idle, 4)
  rh.wait_for("the idle connections to close", 5000, function() return p:stats().idle == 0 end)
  rh.wait_for("the server to see them go", 5000, function()
    return tonumber(rh.info_field(admin, "clients", "connected_clients")) == 1
  end)
  test.eq(p:call("ping"), "PONG")
  rh.kill(srv)
  local v, err = p:call("ping")
  test.eq(v, nil)
  test.ok(type(err) == "table", "an I/O error: " .. tostring(err))
  test.eq(p:stats(), { idle = 0, busy = 0, waiting = 0 }, "the broken connection is gone")
  local again = rh.server(nil, { port = srv.port })
  test.eq(p:call("ping"), "PONG", "a new connection to the restarted server")
  test.ok(again)
end)
