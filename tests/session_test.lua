-- session and csrf: sessions behind a signed cookie in memory and in a real redis-server,
-- through a real HTTP server and client: saving, loading, rotation, destruction, expiry,
-- forged cookies, a failing store; CSRF tokens checked on unsafe methods.
local test = require "test"
local task = require "task"
local http = require "http"
local http_client = require "http_client"
local session = require "session"
local csrf = require "csrf"
local redis = require "redis"
local rh = require "tests.redis_helpers"

local SECRET = "a secret for the session tests"

-- A server whose paths act on the session: /get, /set?k=v, /rotate, /destroy, /token, /post.
local function serve(store, opts)
  local o = { store = store, secret = SECRET }
  for k, v in pairs(opts or {}) do o[k] = v end
  local sessions = session.new(o)
  local server = assert(http.createServer(0, function(req, res)
    local s, err = sessions:load(req, res)
    if not s then
      res:status(503)
      return res:finish("store: " .. err.name)
    end
    test.ok(sessions:load(req, res) == s, "one session per request")
    local p = req.path
    if p == "/set" then
      for k, v in pairs(req.query) do s.data[k] = v end
      assert(s:save())
    elseif p == "/rotate" then
      assert(s:rotate())
    elseif p == "/destroy" then
      assert(s:destroy())
    elseif p == "/token" then
      return res:finish(assert(csrf.token(s)))
    elseif p == "/reset" then
      csrf.reset(s)
      assert(s:rotate())
      return res:finish(s.data._csrf)
    elseif p == "/post" then
      return res:finish(csrf.verify(req, s) and "allowed" or "refused")
    end
    local keys = {}
    for k, v in pairs(s.data) do if k ~= "_csrf" then keys[#keys + 1] = k .. "=" .. tostring(v) end end
    table.sort(keys)
    res:finish((s.id and "id " or "new ") .. table.concat(keys, ","))
  end, { host = "127.0.0.1" }))
  test.cleanup(function() server:close() end)
  local client = { jar = {}, base = "http://127.0.0.1:" .. server:address().port }
  function client.go(path, method, body, headers)
    local h = { Cookie = client.jar.sid and "sid=" .. client.jar.sid }
    for k, v in pairs(headers or {}) do h[k] = v end
    local res = assert(http_client.request({ url = client.base .. path, method = method, body = body, headers = h }))
    local text = assert(res:body())
    client.set = res.headers["set-cookie"] or {}
    for _, line in ipairs(client.set) do
      local v = line:match("^sid=([^;]*)")
      if v then client.jar.sid = (v ~= "" and v) or nil end
    end
    return text, res
  end
  return client, sessions
end

local function lifecycle(store, peek)
  local c = serve(store)
  test.eq(c.go("/get"), "new ", "no cookie: a new session")
  test.eq(#c.set, 0, "not stored, no cookie, until saved")
  test.eq(c.go("/set?user=ann&role=admin"), "id role=admin,user=ann")
  test.match(c.set[1], "^sid=[%w_%-]+%.[%w_%-]+; Path=/; HttpOnly; SameSite=Lax$")
  local id = c.jar.sid:match("^([^.]+)")
  test.eq(#id, 43, "256 random bits")
  test.ok(peek(id), "stored under its id")
  test.eq(c.go("/get"), "id role=admin,user=ann")
  test.eq(#c.set, 0, "loading sends no cookie")
  c.go("/set?more=1")
  test.eq(#c.set, 0, "saving a known session sends no cookie again")

  -- forged cookies are no session
  local real = c.jar.sid
  c.jar.sid = id
  test.eq(c.go("/get"), "new ", "an id without its MAC")
  c.jar.sid = id .. "x" .. real:sub(#id + 1)
  test.eq(c.go("/get"), "new ", "a MAC for another id")
  c.jar.sid = real

  -- rotation: same data, new id; the old id is gone
  test.eq(c.go("/rotate"), "id more=1,role=admin,user=ann")
  local id2 = c.jar.sid:match("^([^.]+)")
  test.ok(id2 ~= id, "a new id")
  test.ok(not peek(id), "the old id is deleted")
  test.ok(peek(id2), "the new one stored")
  c.jar.sid = real
  test.eq(c.go("/get"), "new ", "the old cookie finds nothing")

  -- destroy: the store forgets, the cookie is deleted
  c.jar.sid = nil
  c.go("/set?x=1")
  local id3 = c.jar.sid:match("^([^.]+)")
  test.eq(c.go("/destroy"), "new ")
  test.match(c.set[1], "^sid=; Max%-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; HttpOnly")
  test.ok(not peek(id3), "deleted from the store")
  test.eq(c.jar.sid, nil)
end

test.case("memory store: save, load, rotate, destroy, forged cookies", function()
  local store = session.memory()
  lifecycle(store, function(id) return store.entries[id] ~= nil end)
end)

test.case("memory store: a session expires ttl ms after its last use", function()
  local store = session.memory()
  local c = serve(store, { ttl = 300 })
  c.go("/set?a=1")
  for _ = 1, 4 do -- used every 100 ms: alive past its first 300 ms
    task.sleep(100)
    test.eq(c.go("/get"), "id a=1")
  end
  task.sleep(400)
  test.eq(c.go("/get"), "new ", "expired")
end)

test.case("redis store: the same life cycle in a real redis-server, with key TTLs", function()
  local srv = rh.server()
  local r = rh.connect(srv)
  local pool = redis.pool({ port = srv.port })
  test.cleanup(function() pool:close() end)
  lifecycle(session.redis(pool), function(id) return r:exists("session:" .. id) == 1 end)

  local c = serve(session.redis(pool, { prefix = "app:s:" }), { ttl = 60000, cookie = { max_age = 3600000 } })
  c.go("/set?n=1")
  test.match(c.set[1], "; Max%-Age=3600; ")
  local key = "app:s:" .. c.jar.sid:match("^([^.]+)")
  local ttl = r:pttl(key)
  test.ok(ttl > 50000 and ttl <= 60000, "PX ttl: " .. ttl)
  r:pexpire(key, 1000)
  c.go("/get")
  test.ok(r:pttl(key) > 50000, "a load extends the key to the whole ttl (GETEX)")
  r:pexpire(key, 1)
  rh.wait_for("the key to expire", 5000, function() return r:exists(key) == 0 end)
  test.eq(c.go("/get"), "new ", "expired in Redis")

  -- a store that fails: load answers nil, err
  r:call("SHUTDOWN", "NOSAVE") -- the server goes: its connections end
  local text, res = c.go("/get")
  test.eq(res.status, 503)
  test.match(text, "^store: E")
end)

test.case("csrf: a token per session; unsafe methods need it in the header or the form", function()
  local c = serve(session.memory())
  test.eq(c.go("/post", "GET"), "allowed", "safe methods pass")
  test.eq(c.go("/post", "POST", ""), "refused", "no session, no token")
  local token = c.go("/token")
  test.eq(#token, 43)
  test.ok(c.jar.sid, "making a token saves the session")
  test.eq(c.go("/token"), token, "the same token for the session's life")
  test.eq(c.go("/post", "POST", ""), "refused", "no token sent")
  test.eq(c.go("/post", "POST", "", { ["X-CSRF-Token"] = token }), "allowed")
  test.eq(c.go("/post", "DELETE", "", { ["X-CSRF-Token"] = token:sub(1, -2) }), "refused")
  test.eq(c.go("/post", "POST", "_csrf=" .. token, { ["Content-Type"] = "application/x-www-form-urlencoded" }),
    "allowed", "the form field")
  test.eq(c.go("/post", "PUT", "_csrf=x", { ["Content-Type"] = "application/x-www-form-urlencoded" }), "refused")
  test.eq(c.go("/post", "POST", '{"_csrf":"' .. token .. '"}', { ["Content-Type"] = "application/json" }), "refused",
    "only forms carry it in the body")
  local other = serve(session.memory())
  test.eq(other.go("/post", "POST", "", { ["X-CSRF-Token"] = token }), "refused", "another server's session")
  local fresh = c.go("/reset")
  test.ok(fresh ~= token, "a new token")
  test.eq(c.go("/post", "POST", "", { ["X-CSRF-Token"] = token }), "refused", "the old token is dead")
  test.eq(c.go("/post", "POST", "", { ["X-CSRF-Token"] = fresh }), "allowed")
end)

test.case("session.new checks its options", function()
  test.raises(function() session.new({ secret = SECRET }) end, "option 'store'")
  test.raises(function() session.new({ store = session.memory() }) end, "option 'secret'")
  test.raises(function() session.new({ store = session.memory(), secret = "short" }) end, "16 bytes")
  test.raises(function() session.new({ store = session.memory(), secret = SECRET, ttl = -1 }) end, "option 'ttl'")
  test.raises(function() session.new({ store = session.memory(), secret = SECRET, cookie = { http_only = false } }) end,
    "unknown option 'http_only'")
  test.raises(function() session.redis(nil) end, "bad argument #1 to 'redis'")
  local sessions = session.new({ store = session.memory(), secret = SECRET })
  test.raises(function() sessions:load(nil, {}) end, "^tests/session_test%.lua:%d+: bad argument #1 to 'load' %(request expected, got nil%)")
  test.raises(function() sessions:load({ headers = {} }) end, "^tests/session_test%.lua:%d+: bad argument #2 to 'load' %(response expected, got nil%)")
end)

test.case("csrf: no session, or no request, is an argument error at the caller's line", function()
  local post = { method = "POST", headers = {} }
  local here = "^tests/session_test%.lua:%d+: "
  test.raises(function() csrf.token(nil) end, here .. "bad argument #1 to 'token' %(session expected, got nil%)")
  test.raises(function() csrf.token({}) end, here .. "bad argument #1 to 'token' %(session expected, got table%)")
  test.raises(function() csrf.reset("s") end, here .. "bad argument #1 to 'reset' %(session expected, got string%)")
  test.raises(function() csrf.verify(post, nil) end, here .. "bad argument #2 to 'verify' %(session expected, got nil%)")
  test.raises(function() csrf.verify({ method = "GET", headers = {} }) end, here .. "bad argument #2 to 'verify'") -- even for GET
  test.raises(function() csrf.verify(nil, { data = {} }) end, here .. "bad argument #1 to 'verify' %(request expected, got nil%)")
  -- a token that is not a string is the client's doing (a repeated _csrf field is an array), not misuse
  local s = { data = {} }
  test.eq(csrf.reset(s), s.data._csrf)
  test.eq(csrf.verify(post, s, { s.data._csrf }), false)
  test.eq(csrf.verify(post, s, s.data._csrf), true)
end)
