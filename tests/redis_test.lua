-- The Redis client against real redis-server processes (tests/redis_helpers.lua): connecting,
-- replies of every RESP2/RESP3 type, errors, pipelines, transactions, automatic pipelining,
-- ACL users and passwords, Unix sockets, timeouts, the client's lifetime.
local test = require "test"
local task = require "task"
local tcp = require "tcp"
local redis = require "redis"
local helpers = require "tests.helpers"
local rh = require "tests.redis_helpers"

local null = redis.null

test.case("connect: URLs, option tables, databases, a Unix socket", function()
  local srv = rh.server()
  local r = assert(redis.connect(srv.url))
  test.eq(r:set("k", "db0"), "OK")
  local r3 = assert(redis.connect({ port = srv.port, db = 3 }))
  test.eq(r3:get("k"), null, "another database")
  test.eq(r3:set("k", "db3"), "OK")
  local u = assert(redis.connect(srv.url .. "/3"))
  test.eq(u:get("k"), "db3", "database from the URL's path")
  local s = assert(redis.connect("unix://" .. srv.sock .. "?db=3"))
  test.eq(s:get("k"), "db3", "unix socket, database from the query")
  local s2 = assert(redis.connect({ path = srv.sock }))
  test.eq(s2:get("k"), "db0")
  local s3 = assert(redis.connect("redis+unix://" .. srv.sock, { db = 3 }))
  test.eq(s3:get("k"), "db3", "options after a URL")
  test.match(tostring(r), "^redis client %(")
  for _, c in ipairs({ r, r3, u, s, s2, s3 }) do c:close() end
  test.eq(tostring(r), "redis client (closed)")
  local v, err = r:get("k")
  test.eq(v, nil)
  test.eq(err.name, "ECANCELED", "a closed client")
end)

test.case("connect: refused, bad URLs and options raise", function()
  local port = helpers.free_port()
  local r, err = redis.connect({ port = port })
  test.eq(r, nil)
  test.eq(err.name, "ECONNREFUSED")
  test.raises(function() redis.connect("http://127.0.0.1/") end, "bad argument #1 to 'connect' %(redis://")
  test.raises(function() redis.connect("redis://127.0.0.1/x") end, "bad database")
  test.raises(function() redis.connect({ port = 1, bogus = true }) end, "unknown option 'bogus'")
  test.raises(function() redis.connect({ port = 70000 }) end, "option 'port'")
  test.raises(function() redis.connect("redis://127.0.0.1:1?nope=1") end, "unknown URL option 'nope'")
  test.raises(function() redis.connect("redis://127.0.0.1:1", 5) end, "bad argument #2 to 'connect'")
  test.raises(function() redis.connect({ port = 1, tls = { nope = 1 } }) end, "unknown option 'nope'")
  -- host names and socket paths reach the resolver and the kernel as C strings: refused
  -- with a zero byte, which would cut them there ("127.0.0.1\0.evil" was 127.0.0.1)
  local zero = "string without zero bytes expected, got a string with a zero byte"
  test.raises(function() local _ = redis.connect({ port = 1, host = "127.0.0.1\0.evil" }) end,
    "redis_test%.lua:%d+: bad argument #1 to 'connect' %(option 'host': " .. zero .. "%)")
  test.raises(function() local _ = redis.connect({ path = "/tmp/redis.sock\0x" }) end,
    "redis_test%.lua:%d+: bad argument #1 to 'connect' %(option 'path': " .. zero .. "%)")
  test.raises(function() local _ = redis.connect("redis://127.0.0.1%00.evil:1/") end, "option 'host': " .. zero)
  test.raises(function() local _ = redis.connect("redis://127.0.0.1:1/?path=/tmp/s%00x") end, "option 'path': " .. zero)
end)

test.case("TLS: rediss:// and tls options, verified against a CA, mutual TLS", function()
  local certs = rh.certs()
  local srv = rh.server(nil, { tls = { cert = certs.server_cert, key = certs.server_key, ca = certs.ca,
    auth_clients = "optional" } })
  local r = assert(redis.connect("rediss://localhost:" .. srv.port, { tls = { ca = certs.ca } }))
  test.eq(r:set("k", "over tls"), "OK")
  test.eq(r:get("k"), "over tls")
  local big = string.rep("0123456789", 200000) -- 2 MB each way: many records
  test.eq(r:set("big", big), "OK")
  test.eq(r:get("big"), big)
  test.eq(#assert(r:pipeline(function(p) for i = 1, 1000 do p:incr("n") end end)), 1000)
  local r2 = assert(redis.connect({ port = srv.port, tls = { ca = certs.ca, servername = "localhost" }, protocol = 3 }))
  test.eq(r2:get("n"), "1000", "RESP3 over TLS, an IP address and a servername")
  local bad, err = redis.connect("rediss://localhost:" .. srv.port) -- the system's roots
  test.eq(bad, nil)
  test.ok(type(err) == "table", "not trusted: " .. tostring(err))
  local plain = assert(redis.connect({ port = srv.port, timeout = 2000 })) -- no AUTH: no round trip yet
  local v, perr = plain:ping()
  test.eq(v, nil, "plaintext to a TLS port")
  test.ok(type(perr) == "table", "an I/O error: " .. tostring(perr))
  local mtls = rh.server(nil, { tls = { cert = certs.server_cert, key = certs.server_key, ca = certs.ca,
    auth_clients = "yes" } })
  -- TLS 1.3: the server refuses a missing client certificate after the client's handshake
  local anon, aerr = redis.connect({ port = mtls.port, tls = { ca = certs.ca, servername = "localhost" } })
  if anon then anon, aerr = anon:ping() end
  test.eq(anon, nil, "no client certificate: refused")
  test.ok(type(aerr) == "table", tostring(aerr))
  local me = assert(redis.connect({ port = mtls.port, tls = { ca = certs.ca, servername = "localhost",
    cert = certs.client_cert, key = certs.client_key } }))
  test.eq(me:ping(), "PONG", "mutual TLS")
  local p = redis.pool("rediss://localhost:" .. srv.port, { tls = { ca = certs.ca }, size = 2 })
  test.eq(p:call("get", "k"), "over tls", "a pool over TLS")
  p:close()
end)

test.case("replies: strings, numbers, nil, arrays, binary data", function()
  local srv = rh.server()
  local r = rh.connect(srv)
  local binary = "a\0b\r\nc" .. string.rep("\255\0\r\n", 50000)
  test.eq(r:set("bin", binary), "OK")
  test.eq(r:get("bin"), binary, "binary-safe both ways")
  test.eq(r:get("missing"), null, "nil reply")
  test.eq(r:incr("n"), 1)
  test.eq(r:incrby("n", -5), -4)
  test.eq(r:set("f", 1.5), "OK")
  test.eq(r:get("f"), "1.5", "numbers go as Redis reads them")
  test.eq(r:incrbyfloat("f", 0.25), "1.75")
  test.eq(r:set("big", 2 ^ 53), "OK")
  test.eq(r:get("big"), "9007199254740992")
  test.eq(r:zadd("z", math.huge, "top", -math.huge, "bottom"), 2, "infinities are inf and -inf")
  test.eq(r:zrange("z", 0, -1), { "bottom", "top" })
  test.eq(r:rpush("list", "a", 2, "c"), 3)
  test.eq(r:lrange("list", 0, -1), { "a", "2", "c" })
  test.eq(r:lrange("nolist", 0, -1), {}, "an empty array")
  test.eq(r:mget("missing", "n"), { null, "-4" }, "nil inside an array")
  test.eq(r:call("ECHO", "any case"), "any case")
  test.eq(r:call("echo", ""), "", "an empty string")
  test.eq(r:eval("return {1, 'two', {3, {err = 'inner'}}, redis.status_reply('FINE')}", 0),
    { 1, "two", { 3, { err = "inner" } }, "FINE" }, "nested, with an error inside")
  test.eq(r:exists("n", "f", "nope"), 2)
end)

test.case("errors: a server error is nil, message; the connection goes on", function()
  local srv = rh.server()
  local r = rh.connect(srv)
  r:set("s", "text")
  local v, err = r:incr("s")
  test.eq(v, nil)
  test.eq(err, "ERR value is not an integer or out of range", "the server's message, a string")
  v, err = r:lpush("s", "x")
  test.match(err, "^WRONGTYPE ")
  v, err = r:nosuchcommand("a")
  test.match(err, "^ERR unknown command 'nosuchcommand'")
  test.eq(r:ping(), "PONG", "still usable")
  test.raises(function() r:set("k", {}) end, "bad argument #2 to 'set' %(string or number expected, got table%)")
  test.raises(function() r:set("k", nil, "x") end, "bad argument #2 to 'set'")
  test.raises(function() r:call(5) end, "bad argument #1 to 'call'")
  test.raises(function() r:monitor() end, "'monitor' is not supported")
  test.raises(function() r:client("REPLY", "OFF") end, "'client reply' is not supported")
  test.eq(r:get("s"), "text", "nothing half-written by the refused calls")
  local ok, msg = pcall(function() return r.get(nil) end)
  test.eq(ok, false)
  test.match(msg, "redis client expected")
end)

test.case("RESP3: maps, sets, doubles, booleans, big numbers, verbatim strings, attributes", function()
  local srv = rh.server()
  local r = rh.connect(srv, { protocol = 3 })
  local hello = r:hello()
  test.eq(hello.proto, 3, "HELLO answers a map")
  test.eq(hello.server, "redis")
  test.eq(r:debug("protocol", "string"), "Hello World")
  test.eq(r:debug("protocol", "integer"), 12345)
  test.eq(r:debug("protocol", "double"), 3.141)
  test.eq(r:debug("protocol", "bignum"), "1234567999999999999999999999999999999")
  test.eq(r:debug("protocol", "null"), null)
  test.eq(r:debug("protocol", "array"), { 0, 1, 2 })
  test.eq(r:debug("protocol", "set"), { [0] = true, [1] = true, [2] = true })
  test.eq(r:debug("protocol", "map"), { [0] = false, [1] = true, [2] = false })
  test.eq(r:debug("protocol", "attrib"), "Some real reply following the attribute", "the attribute is skipped")
  test.eq(r:debug("protocol", "verbatim"), "This is a verbatim\nstring", "without its txt: prefix")
  test.eq(r:debug("protocol", "true"), true)
  test.eq(r:debug("protocol", "false"), false)
  r:hset("h", "a", "1", "b", "2")
  test.eq(r:hgetall("h"), { a = "1", b = "2" }, "HGETALL is a map")
  r:sadd("s", "x", "y")
  test.eq(r:smembers("s"), { x = true, y = true }, "SMEMBERS is a set")
  test.eq(r:zscore("nothing", "m"), null)
  r:zadd("z", 1.5, "m")
  test.eq(r:zscore("z", "m"), 1.5, "a double")
  -- the same server in RESP2
  local r2 = rh.connect(srv)
  test.eq(r2:hgetall("h"), { "a", "1", "b", "2" }, "RESP2: a flat array")
  test.eq(r2:debug("protocol", "double"), "3.141")
  test.eq(r2:debug("protocol", "true"), 1)
end)

test.case("pipeline: replies in order, errors in place, large ones, other tasks meanwhile", function()
  local srv = rh.server()
  local r = rh.connect(srv)
  local replies = assert(r:pipeline(function(p)
    p:set("a", "1")
    p:incr("a")
    p:set("s", "x"):incr("s") -- methods chain
    p:get("a")
    p:call("ECHO", "called")
    p:get("missing")
  end))
  test.eq(replies, { "OK", 2, "OK", { err = "ERR value is not an integer or out of range" }, "2", "called", null })
  test.eq(r:pipeline(function() end), {}, "an empty pipeline sends nothing")
  local n = 20000
  local others = task.spawn(function()
    local got = {}
    for i = 1, 50 do got[i] = r:echo("other " .. i) end
    return got
  end)
  local big = assert(r:pipeline(function(p) for i = 1, n do p:incr("counter") end end))
  test.eq(#big, n)
  for i = 1, n do if big[i] ~= i then error("reply " .. i .. " is " .. tostring(big[i])) end end
  local ok, got = others:join()
  test.ok(ok)
  for i = 1, 50 do test.eq(got[i], "other " .. i) end
  test.raises(function() r:pipeline(function(p) p:subscribe("x") end) end, "cannot be pipelined")
  test.raises(function() r:pipeline(function(p) p:set("k", true) end) end, "bad argument #2 to 'set'")
  test.raises(function() r:pipeline("no") end, "bad argument #1 to 'pipeline'")
end)

test.case("transactions: MULTI/EXEC, a WATCHed key, a refused command, MULTI by hand", function()
  local srv = rh.server()
  local r = rh.connect(srv)
  test.eq(r:transaction(function(t) t:set("t", 5) t:incrby("t", 2) t:get("t") end), { "OK", 7, "7" })
  local w = rh.connect(srv)
  test.eq(w:watch("wk"), "OK")
  test.eq(w:get("wk"), null)
  r:set("wk", "changed by someone else")
  test.eq(w:transaction(function(t) t:set("wk", "mine") end), null, "EXEC aborted")
  test.eq(r:get("wk"), "changed by someone else")
  test.eq(w:watch("wk"), "OK")
  test.eq(w:transaction(function(t) t:set("wk", "mine") end), { "OK" }, "nobody changed it this time")
  local v, err = r:transaction(function(t) t:set("only-key") t:incr("t") end)
  test.eq(v, nil)
  test.match(err, "^ERR wrong number of arguments", "the refused command's message")
  test.eq(r:get("t"), "7", "nothing ran")
  local res = r:transaction(function(t) t:set("s", "x") t:incr("s") t:get("s") end)
  test.eq(res, { "OK", { err = "ERR value is not an integer or out of range" }, "x" }, "a runtime error in place")
  test.eq(w:multi(), "OK")
  test.eq(w:set("m", 1), "QUEUED")
  test.eq(w:incr("m"), "QUEUED")
  test.eq(w:exec(), { "OK", 2 })
end)

-- A RESP server on a luaio socket that records what arrives: reads counts the reads it took
-- until `want` commands were there; every command gets +OK... or the ECHO of its argument.
local function fake_server(want, stats)
  local server = assert(tcp.createServer(0, function(s)
    local buf, commands = "", {}
    while #commands < want do
      local data = s:read()
      if not data then return end
      stats.reads = stats.reads + 1
      buf = buf .. data
      while true do
        local argc, at = buf:match("^%*(%d+)\r\n()")
        if not argc then break end
        local args, pos = {}, at
        for _ = 1, tonumber(argc) do
          local len, p2 = buf:match("^%$(%d+)\r\n()", pos)
          if not len or #buf < p2 + len + 1 then args = nil break end
          args[#args + 1] = buf:sub(p2, p2 + len - 1)
          pos = p2 + len + 2
        end
        if not args then break end
        commands[#commands + 1] = args
        buf = buf:sub(pos)
      end
    end
    stats.commands = commands
    local out = {}
    for i, args in ipairs(commands) do out[i] = "$" .. #args[2] .. "\r\n" .. args[2] .. "\r\n" end
    s:write(table.concat(out))
    s:read() -- until the client goes
  end, { host = "127.0.0.1" }))
  test.cleanup(function() server:close() end)
  return server:address().port
end

test.case("automatic pipelining: many tasks' commands leave in one write, replies in order", function()
  local stats = { reads = 0 }
  local port = fake_server(200, stats)
  local r = assert(redis.connect({ port = port }))
  local tasks = {}
  for i = 1, 200 do
    tasks[i] = task.spawn(function() return r:echo("task " .. i) end)
  end
  for i = 1, 200 do
    local ok, v = tasks[i]:join()
    test.ok(ok)
    test.eq(v, "task " .. i, "each task gets its own reply")
  end
  test.eq(#stats.commands, 200)
  test.eq(stats.reads, 1, "the 200 commands of one loop turn came in one write")
  for i = 1, 200 do test.eq(stats.commands[i], { "echo", "task " .. i }, "in the order issued") end
  r:close()
  -- the same against Redis, with tasks that keep issuing commands
  local srv = rh.server()
  local shared = rh.connect(srv)
  local bad = 0
  for i = 1, 100 do
    tasks[i] = task.spawn(function()
      for j = 1, 200 do
        if shared:echo(i .. ":" .. j) ~= i .. ":" .. j then bad = bad + 1 end
      end
    end)
  end
  for i = 1, 100 do test.ok(tasks[i]:join()) end
  test.eq(bad, 0, "replies matched to their tasks")
end)

test.case("ACL users and passwords, in RESP2 and RESP3", function()
  local srv = rh.server({ "user alice on >wonderland ~cached:* +get +set +ping +hello +auth" },
    { password = "s3cret" })
  local anon = assert(redis.connect({ port = srv.port }))
  local v, err = anon:ping()
  test.eq(v, nil)
  test.match(err, "^NOAUTH")
  local r, cerr = redis.connect({ port = srv.port, password = "wrong" })
  test.eq(r, nil)
  test.eq(cerr.name, "WRONGPASS", "a refused AUTH fails connect with the server's error")
  test.match(tostring(cerr), "^WRONGPASS: invalid username%-password pair")
  r = assert(redis.connect({ port = srv.port, password = "s3cret" }))
  test.eq(r:set("any", 1), "OK", "the default user")
  local alice = assert(redis.connect("redis://alice:wonderland@127.0.0.1:" .. srv.port))
  test.eq(alice:set("cached:a", "1"), "OK")
  test.eq(alice:get("cached:a"), "1")
  v, err = alice:set("other", "1")
  test.eq(v, nil)
  test.match(err, "^NOPERM", "a key outside alice's pattern")
  v, err = alice:flushall()
  test.match(err, "^NOPERM")
  test.eq(alice:ping(), "PONG", "still usable")
  local a3 = assert(redis.connect({ port = srv.port, username = "alice", password = "wonderland", protocol = 3 }))
  test.eq(a3:get("cached:a"), "1", "HELLO 3 AUTH alice")
  local bad3, berr = redis.connect({ port = srv.port, username = "alice", password = "no", protocol = 3 })
  test.eq(bad3, nil)
  test.eq(berr.name, "WRONGPASS")
  -- a password with reserved characters, percent-encoded in the URL
  r:acl("setuser", "bob", "on", ">p@ss:w/rd%", "~*", "+@all")
  local bob = assert(redis.connect("redis://bob:p%40ss%3Aw%2Frd%25@127.0.0.1:" .. srv.port .. "/2"))
  test.eq(bob:acl("whoami"), "bob")
  test.eq(bob:set("k", "v"), "OK")
  test.eq(r:select(2), "OK")
  test.eq(r:get("k"), "v", "bob's database 2 from the URL")
  local sock = assert(redis.connect({ path = srv.sock, username = "alice", password = "wonderland" }))
  test.eq(sock:get("cached:a"), "1", "a Unix socket with a user")
end)

test.case("timeouts: a server that never answers, a connect that never completes", function()
  local silent = assert(tcp.createServer(0, function(s)
    while s:read() do end
  end, { host = "127.0.0.1" }))
  test.cleanup(function() silent:close() end)
  local r = assert(redis.connect({ port = silent:address().port, timeout = 200 }))
  local started = task.now()
  local other = task.spawn(function() return r:get("y") end)
  local v, err = r:get("x")
  test.eq(v, nil)
  test.eq(err.name, "ETIMEDOUT")
  test.ok(task.now() - started >= 190, "not before the timeout")
  local _, ov, oerr = other:join()
  test.eq(ov, nil)
  test.eq(oerr.name, "ETIMEDOUT", "every waiter learns it")
  v, err = r:get("z")
  test.eq(err.name, "ETIMEDOUT", "the connection is gone: calls fail with why")
  local port = helpers.full_backlog()
  local c, cerr = redis.connect({ port = port, connect_timeout = 200 })
  test.eq(c, nil)
  test.eq(cerr.name, "ETIMEDOUT")
end)

test.case("lifetime: a client nobody holds still answers, is collected and closed once idle", function()
  local srv = rh.server()
  local admin = rh.connect(srv)
  local function clients() return tonumber(rh.info_field(admin, "clients", "connected_clients")) end
  test.eq(clients(), 1)
  local tasks = {}
  for i = 1, 20 do
    tasks[i] = task.spawn(function()
      local v = assert(redis.connect({ port = srv.port })):echo("x" .. i) -- the client is a temporary
      collectgarbage("collect")
      return v
    end)
  end
  for i = 1, 20 do
    local ok, v = tasks[i]:join()
    test.ok(ok)
    test.eq(v, "x" .. i)
  end
  collectgarbage("collect")
  collectgarbage("collect")
  rh.wait_for("the dropped clients to be closed", 5000, function() return clients() == 1 end)
end)

test.case("an idle client does not keep the process alive", function()
  local srv = rh.server()
  local dir = test.tmpdir()
  test.write(dir .. "/main.lua", ([[
    local redis = require "redis"
    local r = assert(redis.connect({ port = %d }))
    assert(r:set("from-child", "yes"))
    print("done")
  ]]):format(srv.port))
  local out, status = test.sh("timeout 10 " .. test.quote(test.luaio) .. " run " .. dir .. "/main.lua")
  test.eq(status, 0, "exited by itself: " .. out)
  test.match(out, "done")
  test.eq(rh.connect(srv):get("from-child"), "yes")
end)

test.case("calls that wait raise outside a task", function()
  local srv = rh.server()
  local r = rh.connect(srv)
  local co = coroutine.create(function() return r:get("x") end)
  local ok, err = coroutine.resume(co)
  test.eq(ok, false)
  test.match(err, "cannot wait here")
  test.eq(r:ping(), "PONG")
end)
