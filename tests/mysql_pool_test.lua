-- mysql pools (on stdlib/pool.lua) against a real MariaDB, and a server that dies.
local test = require "test"
local task = require "task"
local mysql = require "mysql"
local mh = require "tests.mysql_helpers"

local function pool_for(srv, extra)
  local o = { port = srv.port, user = "native", password = "native-pw", database = "test" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return mysql.pool(o)
end

local function threads(srv)
  return tonumber(assert(srv.root:query("SHOW GLOBAL STATUS LIKE 'Threads_connected'"))[1].Value)
end

test.case("a pool of 8 serves 200 concurrent tasks", function()
  local srv = mh.server()
  local p = pool_for(srv, { size = 8 })
  local before = threads(srv)
  local peak = 0
  local tasks = {}
  for i = 1, 200 do
    tasks[i] = task.spawn(function()
      local sum = 0
      for k = 1, 5 do
        local rows = assert(p:execute("SELECT ? + ? AS v, CONNECTION_ID() AS c", i, k))
        sum = sum + rows[1].v
        if k == 3 and i % 50 == 0 then peak = math.max(peak, threads(srv) - before) end
      end
      local q = assert(p:query("SELECT " .. i .. " AS n"))
      return sum, q[1].n
    end)
  end
  for i = 1, 200 do
    local ok, sum, n = tasks[i]:join()
    test.ok(ok, tostring(sum))
    test.eq(sum, 5 * i + 15)
    test.eq(n, i)
  end
  test.ok(peak <= 8, "at most 8 connections at once, saw " .. peak)
  local st = p:stats()
  test.eq(st.busy, 0)
  test.ok(st.idle >= 1 and st.idle <= 8, "idle " .. st.idle)
  p:close()
end)

test.case("get/release; a connection in a transaction or broken is not handed on", function()
  local srv = mh.server()
  local p = pool_for(srv, { size = 2 })
  local a = assert(p:get())
  local id = assert(a:query("SELECT CONNECTION_ID() AS id"))[1].id
  a:release()
  test.raises(function() a:query("SELECT 1") end, "released to its pool")
  local b = assert(p:get())
  test.eq(assert(b:query("SELECT CONNECTION_ID() AS id"))[1].id, id, "the idle connection is reused")
  assert(b:query("BEGIN"))
  assert(b:query("SELECT 1"))
  local _, _, in_trans = b:state()
  test.eq(in_trans, true)
  b:release() -- in a transaction: closed, not reused
  local c = assert(p:get())
  local id2 = assert(c:query("SELECT CONNECTION_ID() AS id"))[1].id
  test.ok(id2 ~= id, "a new connection after the one left in a transaction")
  assert(srv.root:query("KILL " .. id2)) -- broken while idle in the pool
  c:release()
  task.sleep(100)
  local n = assert(p:query("SELECT 7 AS n"))
  test.eq(n[1].n, 7, "a dead idle connection is dropped, a new one made")
  -- a transaction through the pool commits and gives the connection back
  assert(p:query("DROP TABLE IF EXISTS pt"))
  assert(p:query("CREATE TABLE pt (v INT)"))
  test.eq(p:transaction(function(tx)
    assert(tx:execute("INSERT INTO pt VALUES (?)", 1))
    return "done"
  end), "done")
  local r, err = p:transaction(function(tx)
    assert(tx:execute("INSERT INTO pt VALUES (?)", 2))
    error("rolled back")
  end)
  test.eq(r, nil)
  test.match(tostring(err), "rolled back")
  test.eq(tonumber(assert(p:query("SELECT COUNT(*) AS n FROM pt"))[1].n), 1)
  test.eq(p:stats().busy, 0)
  p:close()
end)

test.case("a borrowed connection dropped without release gives its place back, closed", function()
  local srv = mh.server()
  local p = pool_for(srv, { size = 2, wait_timeout = 3000 })
  local ids = {}
  for i = 1, 2 do -- a handler raises before its release (its caller catches that)
    local ok, err = pcall(function()
      local c = assert(p:get())
      ids[i] = assert(c:query("SELECT CONNECTION_ID() AS id"))[1].id
      error("handler bug " .. i)
    end)
    test.eq(ok, false)
    test.match(err, "handler bug")
  end
  for _ = 1, 3 do collectgarbage("collect") end -- the connection objects, then their guards
  test.eq(p:stats().busy, 0, "both places came back")
  local r, err = p:query("SELECT CONNECTION_ID() AS id")
  test.ok(r, "a query after them: " .. tostring(err))
  test.ok(r[1].id ~= ids[1] and r[1].id ~= ids[2], "a dropped connection is closed, not reused")
  local deadline = task.now() + 5000
  while true do -- the server sees both go
    local n = assert(srv.root:query("SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID IN (" ..
      ids[1] .. ", " .. ids[2] .. ")"))[1].n
    if tonumber(n) == 0 then break end
    test.ok(task.now() < deadline, "the dropped connections were closed")
    task.sleep(20)
  end
  local c = assert(p:get()) -- released by hand: not closed by a guard later
  local id = assert(c:query("SELECT CONNECTION_ID() AS id"))[1].id
  c:release()
  c = nil
  for _ = 1, 3 do collectgarbage("collect") end
  test.eq(assert(p:query("SELECT CONNECTION_ID() AS id"))[1].id, id, "a released connection is reused")
  p:close()
end)

test.case("a pooled call that leaves autocommit off or a transaction open: rolled back, closed, an error", function()
  local srv = mh.server()
  local p = pool_for(srv, { size = 1, multi_statements = true })
  assert(p:query("DROP TABLE IF EXISTS t7"))
  assert(p:query("CREATE TABLE t7 (v INT) ENGINE=InnoDB"))
  local function count() return tonumber(assert(srv.root:query("SELECT COUNT(*) AS n FROM test.t7"))[1].n) end
  local r, err = p:query("SET autocommit = 0")
  test.eq(r, nil)
  test.eq(err and err.name, "EINVAL")
  test.match(tostring(err), "autocommit off")
  test.eq(p:stats(), { idle = 0, busy = 0, waiting = 0 }, "that connection was closed")
  r = assert(p:execute("INSERT INTO t7 VALUES (?)", 1))
  test.eq(r.affected_rows, 1)
  test.eq(count(), 1, "the next call's acknowledged insert is kept")
  r, err = p:query("BEGIN")
  test.eq(r, nil)
  test.match(tostring(err), "transaction open")
  r, err = p:query("START TRANSACTION; INSERT INTO t7 VALUES (2)")
  test.eq(r, nil, "an insert inside a transaction left open is not acknowledged")
  test.match(tostring(err), "rolled back")
  test.eq(count(), 1)
  r, err = p:query("SET autocommit = 0; INSERT INTO t7 VALUES (3)")
  test.eq(r, nil)
  test.eq(count(), 1)
  -- a borrowed connection left with autocommit off is closed when it comes back
  local c = assert(p:get())
  local id = assert(c:query("SELECT CONNECTION_ID() AS id"))[1].id
  assert(c:query("SET autocommit = 0"))
  local open, reusable = c:state()
  test.eq({ open, reusable }, { true, false })
  c:release()
  test.ok(assert(p:query("SELECT CONNECTION_ID() AS id"))[1].id ~= id, "not handed on")
  -- pool:transaction commits even when fn turned autocommit off; that connection is closed
  test.eq(p:transaction(function(tx)
    assert(tx:query("SET autocommit = 0"))
    assert(tx:execute("INSERT INTO t7 VALUES (?)", 4))
    return "done"
  end), "done")
  test.eq(count(), 2)
  test.eq(p:stats().idle, 0)
  p:close()
  -- a server whose default is autocommit off: the pool turns it on for its connections
  assert(srv.root:query("SET GLOBAL autocommit = 0"))
  test.cleanup(function() srv.root:query("SET GLOBAL autocommit = 1") end)
  p = pool_for(srv, { size = 1 })
  r = assert(p:execute("INSERT INTO t7 VALUES (?)", 5))
  test.eq(r.affected_rows, 1)
  assert(srv.root:query("SET GLOBAL autocommit = 1"))
  test.eq(count(), 3)
  test.eq(p:stats().idle, 1, "and keeps them")
  p:close()
end)

test.case("misuse through the pool raises at the caller's line and gives the connection back", function()
  local p = pool_for(mh.server(), { size = 1 })
  local function raises_here(fn, pattern) -- fn is written on the line that calls this
    test.raises(fn, "^tests/mysql_pool_test%.lua:" .. debug.getinfo(2, "l").currentline .. ": " .. pattern)
  end
  raises_here(function() p:execute("SELECT ?", {}) end, "bad argument #2 to 'execute' %(nil, boolean, number or string expected, got table%)")
  raises_here(function() p:execute("SELECT ?", 1, 2) end, "mysql: the statement takes 1 parameters, got 2")
  raises_here(function() p:query(42) end, "bad argument #1 to 'query' %(string expected, got number%)")
  test.eq(p:stats().busy, 0)
  test.eq(assert(p:execute("SELECT ? AS v", 3))[1].v, 3)
  p:close()
end)

test.case("max_waiters and wait_timeout", function()
  local srv = mh.server()
  local p = pool_for(srv, { size = 1, max_waiters = 1, wait_timeout = 200 })
  local held = assert(p:get())
  local waiter = task.spawn(function() return p:query("SELECT 1 AS one") end)
  task.sleep(10)
  local r, err = p:query("SELECT 2")
  test.eq(r, nil)
  test.eq(err.name, "EBUSY")
  local _, r2, err2 = waiter:join()
  test.eq(r2, nil)
  test.eq(err2.name, "ETIMEDOUT")
  held:release()
  test.eq(assert(p:query("SELECT 3 AS v"))[1].v, 3)
  p:close()
end)

test.case("the server killed: queries in flight fail, the pool fails fast and holds nothing", function()
  local srv = mh.own_server()
  local p = pool_for(srv, { size = 4 })
  assert(p:query("SELECT 1"))
  local db = mh.connect(srv)
  local t = task.spawn(function() return db:query("SELECT SLEEP(20)") end)
  local t2 = task.spawn(function() return p:query("SELECT SLEEP(20)") end)
  task.sleep(200)
  mh.kill(srv)
  local _, r, err = t:join()
  test.eq(r, nil)
  test.ok(err and err.name, tostring(err))
  local _, r2, err2 = t2:join()
  test.eq(r2, nil)
  test.ok(err2 and err2.name, tostring(err2))
  local r3, err3 = p:query("SELECT 1")
  test.eq(r3, nil)
  test.eq(err3.name, "ECONNREFUSED")
  test.eq(p:stats().busy, 0)
  p:close()
end)
