-- The pool module in both of its uses: an idle cache (put/take, as the HTTP client's
-- keep-alive uses it) and a bounded pool with waiters (acquire/release, for database
-- clients), with plain Lua objects as connections where only the bookkeeping matters and
-- real sockets to a luaio server where a connection dies.
local test = require "test"
local task = require "task"
local tcp = require "tcp"
local pool = require "pool"
local helpers = require "tests.helpers"

-- A stand-in connection: counts its closes.
local made = 0
local function conn(name)
  made = made + 1
  return { name = name or ("c" .. made), closes = 0, dead = false,
    close = function(self) self.closes = self.closes + 1 end }
end

local function alive(c) return not c.dead end

-- Runs fn in n tasks and waits for all: the results of each, in order.
local function all(n, fn)
  local tasks, results = {}, {}
  for i = 1, n do tasks[i] = task.spawn(fn, i) end
  local function pack(...) return { n = select("#", ...), ... } end
  for i = 1, n do
    local r = pack(tasks[i]:join(20000))
    test.ok(r[1] ~= nil, "task " .. i .. " still waiting")
    test.ok(r[1], "task " .. i .. " raised: " .. tostring(r[2]))
    results[i] = { unpack(r, 2, r.n) }
  end
  return results
end

-- --- the idle cache: put and take ---------------------------------------------------------

test.case("cache: take gives the most recently put first; keys are apart; nothing is nil", function()
  local p = pool.new()
  local a, b, c = conn("a"), conn("b"), conn("c")
  test.eq(p:take("k"), nil)
  test.eq(p:put("k", a), true)
  test.eq(p:put("k", b), true)
  test.eq(p:put("other", c), true)
  test.eq(p:stats(), { idle = 3, busy = 0, waiting = 0 })
  test.eq(p:stats("k"), { idle = 2, busy = 0, waiting = 0 })
  test.eq(p:take("k"), b)
  test.eq(p:take("k"), a)
  test.eq(p:take("k"), nil)
  test.eq(p:take("other"), c)
  test.eq({ a.closes, b.closes, c.closes }, { 0, 0, 0 })
  test.eq(p:stats(), { idle = 0, busy = 0, waiting = 0 })
end)

test.case("cache: max_idle per key, the least recently used one closed; a put may lower it", function()
  local p = pool.new({ max_idle = 2 })
  local c1, c2, c3, c4 = conn(), conn(), conn(), conn()
  p:put("k", c1)
  p:put("k", c2)
  p:put("k", c3) -- c1 goes
  test.eq(c1.closes, 1)
  test.eq(p:stats("k").idle, 2)
  p:put("k", c4, nil, 1) -- room for one: c2 and c3 go
  test.eq({ c2.closes, c3.closes, c4.closes }, { 1, 1, 0 })
  test.eq(p:take("k"), c4)
  local none = pool.new({ max_idle = 0 })
  local c5 = conn()
  test.eq(none:put("k", c5), false, "max_idle 0 keeps nothing")
  test.eq(c5.closes, 1)
end)

test.case("cache: alive checked on take, park on put; a dead one is closed and skipped", function()
  local parked = {}
  local p = pool.new({ alive = alive, park = function(c)
    parked[#parked + 1] = c.name
    return c.name ~= "unfit"
  end })
  local good, dying, unfit = conn("good"), conn("dying"), conn("unfit")
  test.eq(p:put("k", good), true)
  test.eq(p:put("k", dying), true)
  test.eq(p:put("k", unfit), false, "park said no")
  test.eq(unfit.closes, 1)
  test.eq(parked, { "good", "dying", "unfit" })
  dying.dead = true -- the server closed it while it waited
  test.eq(p:take("k"), good, "the dead one is skipped")
  test.eq(dying.closes, 1)
  test.eq(p:stats().idle, 0)
end)

test.case("cache: idle_timeout: expired ones are not handed out, the sweep closes them", function()
  local p = pool.new({ idle_timeout = 100, alive = alive })
  local a, b, forever = conn(), conn(), conn()
  p:put("k", a)
  p:put("k", b, 5000)
  p:put("keep", forever, 0) -- 0: never expires
  task.sleep(250)
  test.eq(p:take("k"), b, "b has its own, longer, timeout")
  test.eq(p:take("k"), nil, "a expired")
  test.eq(a.closes, 1)
  local c, d = conn(), conn()
  p:put("k", c)
  p:put("k", d)
  d.dead = true
  -- nobody takes: the sweep (once a second) closes the expired and the dead
  local deadline = task.now() + 5000
  while p:stats("k").idle > 0 and task.now() < deadline do task.sleep(100) end
  test.eq(p:stats("k").idle, 0)
  test.eq({ c.closes, d.closes }, { 1, 1 })
  test.eq(p:stats("keep").idle, 1, "idle_timeout 0 never expires")
  test.eq(forever.closes, 0)
  p:close()
  test.eq(forever.closes, 1, "close() closes idle connections")
end)

test.case("cache: real sockets: one the server closes while idle is dropped by the sweep", function()
  local C = require "luaio.http_client" -- the socket idle adapter the HTTP client uses
  local accepted = {}
  local server = assert(tcp.createServer(0, function(socket)
    accepted[#accepted + 1] = socket
    socket:read() -- until we close it, or the case closes it
  end, { host = "127.0.0.1" }))
  test.cleanup(function() server:close() end)
  local port = server:address().port
  local p = pool.new({ idle_timeout = 60000, park = C.park, alive = C.unpark })
  local s1 = assert(tcp.connect(port, "127.0.0.1"))
  local s2 = assert(tcp.connect(port, "127.0.0.1"))
  while #accepted < 2 do task.sleep(5) end
  test.eq(p:put("k", s1), true)
  test.eq(p:put("k", s2), true)
  accepted[1]:close() -- the server ends s1's connection while it is idle
  local deadline = task.now() + 5000
  while p:stats("k").idle > 1 and task.now() < deadline do task.sleep(50) end
  test.eq(p:stats("k").idle, 1, "the sweep dropped the dead one")
  test.eq(p:take("k"), s2)
  test.eq((select(2, s1:read())).name, "ENOTCONN", "it was closed")
  assert(s2:write("still there"))
  s2:close()
  accepted[2]:close()
end)

test.case("cache: idle connections and the sweep do not keep the process alive", function()
  local dir = test.tmpdir()
  test.write(dir .. "/app.lua", [[
local pool = require "pool"
local p = pool.new({ idle_timeout = 60000 })
for i = 1, 3 do p:put("k", { close = function() end }) end
print("idle", p:stats().idle)
]])
  local started = task.now()
  local out, status = test.sh("timeout 10 " .. test.quote(test.luaio) .. " run " .. dir .. "/app.lua")
  test.eq(status, 0)
  test.eq(out, "idle\t3\n")
  test.ok(task.now() - started < 3000, "exited at once")
end)

-- --- the bounded pool: acquire and release ------------------------------------------------

test.case("bounded: 50 tasks share size = 3 connections; never more than 3 out", function()
  local connects, out, most = 0, 0, 0
  local p = pool.new({ size = 3, connect = function(key)
    connects = connects + 1
    task.sleep(5) -- connecting takes a while: others pile up meanwhile
    return conn(key .. connects)
  end })
  local results = all(50, function(i)
    local c, err = p:acquire("db")
    if not c then return nil, err end
    out = out + 1
    if out > most then most = out end
    task.sleep(i % 3)
    out = out - 1
    p:release(c)
    return c.name
  end)
  for i, r in ipairs(results) do test.ok(r[1], "task " .. i .. ": " .. tostring(r[2])) end
  test.eq(most, 3)
  test.eq(connects, 3, "released connections are reused")
  test.eq(p:stats("db"), { idle = 3, busy = 0, waiting = 0 })
end)

test.case("bounded: waiters are served in order, straight from release", function()
  local p = pool.new({ size = 1, connect = function() return conn() end })
  local first = assert(p:acquire())
  local order = {}
  local tasks = {}
  for i = 1, 5 do
    tasks[i] = task.spawn(function()
      local c = assert(p:acquire())
      order[#order + 1] = i
      task.sleep(1)
      p:release(c)
      return c
    end)
  end
  task.sleep(20)
  test.eq(p:stats(""), { idle = 0, busy = 1, waiting = 5 })
  p:release(first)
  for i = 1, 5 do
    local ok, c = tasks[i]:join(5000)
    test.ok(ok, "task " .. i)
    test.eq(c, first, "the one connection went round")
  end
  test.eq(order, { 1, 2, 3, 4, 5 })
end)

test.case("bounded: a waiter times out after wait_timeout with ETIMEDOUT; its place is given up", function()
  local p = pool.new({ size = 1, wait_timeout = 150, connect = function() return conn() end })
  local held = assert(p:acquire("k"))
  local started = task.now()
  local c, err = p:acquire("k")
  test.eq(c, nil)
  test.eq(err.name, "ETIMEDOUT")
  test.ok(err.code < 0, "a libuv error code")
  test.match(tostring(err), "^ETIMEDOUT: .*wait_timeout")
  test.ok(task.now() - started >= 140, "waited")
  test.eq(p:stats("k"), { idle = 0, busy = 1, waiting = 0 })
  p:release(held)
  test.eq(p:stats("k"), { idle = 1, busy = 0, waiting = 0 })
  test.eq(assert(p:acquire("k")), held)
end)

test.case("bounded: more than max_waiters waiting fails at once (EBUSY)", function()
  local p = pool.new({ size = 1, max_waiters = 2, wait_timeout = 5000, connect = function() return conn() end })
  local held = assert(p:acquire())
  local waiting = {}
  for i = 1, 2 do waiting[i] = task.spawn(function() return p:acquire() end) end
  task.sleep(10)
  local started = task.now()
  local c, err = p:acquire()
  test.eq(c, nil)
  test.eq(err.name, "EBUSY")
  test.match(err.message, "max_waiters")
  test.ok(task.now() - started < 100, "at once")
  local none = pool.new({ size = 1, max_waiters = 0, connect = function() return conn() end })
  assert(none:acquire())
  test.eq(select(2, none:acquire()).name, "EBUSY", "max_waiters 0: nobody waits")
  p:release(held)
  local ok, got = waiting[1]:join(5000)
  test.ok(ok)
  test.eq(got, held)
  p:release(got)
  ok, got = waiting[2]:join(5000)
  test.eq(got, held)
end)

test.case("bounded: a broken connection released is closed, never reused; the waiter gets a new one", function()
  local connects = 0
  local p = pool.new({ size = 1, connect = function()
    connects = connects + 1
    return conn()
  end })
  local a = assert(p:acquire())
  local waiter = task.spawn(function() return p:acquire() end)
  task.sleep(10)
  p:release(a, false)
  test.eq(a.closes, 1)
  local ok, b = waiter:join(5000)
  test.ok(ok)
  test.ok(b ~= a, "a new connection")
  test.eq(connects, 2)
  p:release(b, false)
  test.eq(p:stats(), { idle = 0, busy = 0, waiting = 0 })
  local c = assert(p:acquire())
  test.ok(c ~= a and c ~= b)
  test.raises(function() p:release(a) end, "bad argument #1 to 'release' %(not a connection acquired from this pool")
  p:release(c)
  test.raises(function() p:release(c) end, "released twice")
  test.raises(function() p:release({}) end, "not a connection acquired")
end)

test.case("bounded: a connection that died while idle is closed and replaced on acquire", function()
  local connects = 0
  local p = pool.new({ size = 2, alive = alive, connect = function()
    connects = connects + 1
    return conn()
  end })
  local a = assert(p:acquire())
  p:release(a)
  a.dead = true
  local b = assert(p:acquire())
  test.ok(b ~= a)
  test.eq(a.closes, 1)
  test.eq(connects, 2)
  p:release(b)
end)

test.case("bounded: connect failing or raising gives its place back (to a waiter first)", function()
  local fail_next, connects = true, 0
  local p = pool.new({ size = 1, connect = function()
    connects = connects + 1
    task.sleep(20)
    if fail_next then return nil, { name = "ECONNREFUSED" } end
    return conn()
  end })
  local results = all(3, function() return p:acquire() end)
  for i = 1, 3 do
    test.eq(results[i][1], nil)
    test.eq(results[i][2].name, "ECONNREFUSED", "each waiter tried in turn")
  end
  test.eq(connects, 3)
  test.eq(p:stats(), { idle = 0, busy = 0, waiting = 0 })
  local raising = pool.new({ size = 1, connect = function() error("boom") end })
  test.raises(function() raising:acquire() end, "boom")
  test.eq(raising:stats().busy, 0, "the place is not lost")
  fail_next = false
  local c = assert(p:acquire())
  p:release(c)
  test.raises(function() pool.new({ size = 1 }):acquire() end, "no connect function")
end)

test.case("bounded: close() fails waiters with ECANCELED and closes what comes back", function()
  local p = pool.new({ size = 1, connect = function() return conn() end })
  local held = assert(p:acquire())
  local waiter = task.spawn(function() return p:acquire() end)
  task.sleep(10)
  p:close()
  local ok, c, err = waiter:join(5000)
  test.ok(ok)
  test.eq(c, nil)
  test.eq(err.name, "ECANCELED")
  p:release(held)
  test.eq(held.closes, 1)
  test.eq(select(2, p:acquire()).name, "ECANCELED")
  local other = conn()
  test.eq(p:put("k", other), false)
  test.eq(other.closes, 1)
end)

test.case("bounded: real sockets to an echo server, many tasks, the loop never blocked", function()
  local server = assert(tcp.createServer(0, function(socket)
    while true do
      local line = socket:readline()
      if not line then return end
      if line == "die" then return end
      socket:write(line .. "\n")
    end
  end, { host = "127.0.0.1" }))
  test.cleanup(function() server:close() end)
  local port = server:address().port
  local C = require "luaio.http_client"
  local opened = 0
  local p = pool.new({ size = 4, max_waiters = 100, wait_timeout = 10000, park = C.park, alive = C.unpark,
    connect = function()
      opened = opened + 1
      return tcp.connect(port, "127.0.0.1")
    end })
  local ticker = helpers.ticker()
  local results = all(60, function(i)
    local s, err = p:acquire()
    if not s then return nil, err end
    if i % 10 == 0 then -- this one breaks its connection: the server hangs up
      s:write("die\n")
      local _, rerr = s:read()
      p:release(s, false)
      return rerr and rerr.name
    end
    assert(s:write("hello " .. i .. "\n"))
    local line = s:readline()
    p:release(s)
    return line
  end)
  local t = ticker.stop()
  for i, r in ipairs(results) do
    test.eq(r[1], i % 10 == 0 and "EOF" or "hello " .. i)
  end
  test.ok(opened <= 4 + 6, "at most size, plus one for each broken one: " .. opened)
  test.ok(p:stats().idle <= 4)
  test.ok(t.ticks > 0 and t.max_gap < 2000, "the loop ran meanwhile")
  p:close()
end)

test.case("pool.new and the methods check their arguments", function()
  test.raises(function() pool.new(5) end, "bad argument #1 to 'new' %(table expected")
  test.raises(function() pool.new({ sise = 1 }) end, "unknown option 'sise'")
  test.raises(function() pool.new({ size = 0 }) end, "options.size: at least 1")
  test.raises(function() pool.new({ size = -1 }) end, "options.size: non%-negative integer")
  test.raises(function() pool.new({ connect = 1 }) end, "options.connect: function expected, got number")
  local p = pool.new()
  test.raises(function() p:put(1, conn()) end, "bad argument #1 to 'put' %(string key expected")
  test.raises(function() p:put("k", nil) end, "bad argument #2 to 'put'")
  test.raises(function() p:put("k", conn(), -1) end, "bad argument #3 to 'put'")
  test.raises(function() p:take() end, "bad argument #1 to 'take'")
  test.raises(function() p:acquire(5) end, "bad argument #1 to 'acquire'")
end)
