-- The community example (examples/community) through its public interface: the pages and the
-- JSON API over HTTP, with a real MariaDB and a real redis-server, run by `luaio run` and as
-- a built executable alone in an empty root. The browser test is community_browser_test.lua.
local test = require "test"
local cjson = require "cjson"
local redis = require "redis"
local ch = require "tests.community_helpers"

local function login_page_token(c, path)
  local res, html = c:get(path or "/login")
  test.eq(res.status, 200)
  return test.ok(ch.token(html), "a CSRF token in the form")
end

local function register(c, name, password)
  local token = login_page_token(c, "/register")
  local res = c:post("/register", { _csrf = token, name = name, password = password or "password-" .. name })
  test.eq(res.status, 303, "registered " .. name)
  return res
end

local function logged_in_as(c)
  local _, html = c:get("/")
  return html:match('<span class="me">([^<]*)</span>')
end

test.case("pages: register, log in and out, CSRF refusals, threads, replies and pagination", function()
  local app = ch.start(ch.backends())
  local c = ch.client(app)
  local res, html = c:get("/")
  test.eq(res.status, 200)
  test.match(html, 'href="/b/general">General</a>')
  test.eq(res.headers["x-frame-options"], "DENY")
  test.match(res.headers["content-security-policy"], "default%-src 'self'")
  test.eq(#c.set, 0, "browsing makes no session")

  -- the form page starts a session: a signed, HttpOnly, SameSite cookie
  local token = login_page_token(c, "/register")
  test.match(c.set[1], "^sid=[%w_%-]+%.[%w_%-]+; Path=/; HttpOnly; SameSite=Lax$")
  local before = c.jar.sid

  -- no token, a wrong token, another session's token: 403, nothing done
  res, html = c:post("/register", { name = "alice", password = "password-alice" })
  test.eq(res.status, 403)
  test.match(html, "CSRF")
  res = c:post("/register", { _csrf = token:sub(2) .. "x", name = "alice", password = "password-alice" })
  test.eq(res.status, 403)
  local other = ch.client(app)
  res = other:post("/register", { _csrf = token, name = "alice", password = "password-alice" })
  test.eq(res.status, 403, "a token is good only with its own session")
  test.eq(logged_in_as(c), nil)

  -- bad input is refused with the form again
  res, html = c:post("/register", { _csrf = token, name = "a", password = "password-alice" })
  test.eq(res.status, 400)
  test.match(html, "a name is 3 to 32")
  res, html = c:post("/register", { _csrf = token, name = "alice", password = "short" })
  test.eq(res.status, 400)
  test.match(html, "at least 8 characters")

  -- registering logs in, under a new session id (no fixation)
  res = c:post("/register", { _csrf = token, name = "alice", password = "password-alice" })
  test.eq(res.status, 303)
  test.eq(res.headers.location, "/")
  test.ok(c.jar.sid ~= before, "a new session id at login")
  test.eq(logged_in_as(c), "alice")
  local _, page = c:get("/")
  token = ch.token(page)
  test.ok(token, "the logged-in page has the logout form")
  local stale = ch.client(app)
  stale.jar.sid = before
  test.eq(logged_in_as(stale), nil, "the session id from before the login is dead")

  -- a name is taken once
  local d = ch.client(app)
  local dtoken = login_page_token(d, "/register")
  res, html = d:post("/register", { _csrf = dtoken, name = "alice", password = "password-other" })
  test.eq(res.status, 409)
  test.match(html, "is taken")

  -- a thread, with markup escaped
  res = c:post("/b/general", { _csrf = token, title = "Hello <world>", body = "first\n\n<script>alert(1)</script>" })
  test.eq(res.status, 303)
  local thread = test.ok(res.headers.location:match("^/t/(%d+)$"), "redirected to the thread")
  res, html = c:get("/t/" .. thread)
  test.eq(res.status, 200)
  test.match(html, "<h1>Hello &lt;world&gt;</h1>")
  test.match(html, "<p>&lt;script&gt;alert%(1%)&lt;/script&gt;</p>")
  test.ok(not html:find("<script>alert", 1, true), "no raw markup from a post")
  res, html = c:post("/b/general", { _csrf = token, title = "  ", body = "x" })
  test.eq(res.status, 400)
  test.match(html, "the title is empty")
  res = c:post("/b/nowhere", { _csrf = token, title = "t", body = "b" })
  test.eq(res.status, 404)

  -- eight posts at three a page: pages 1, 2, 3 (two posts), no page 4
  for i = 2, 8 do
    res = c:post("/t/" .. thread, { _csrf = token, body = "reply number " .. i })
    test.eq(res.status, 303)
    test.eq(res.headers.location:match("page=(%d+)"), tostring(math.ceil(i / 3)), "the reply's page")
  end
  res, html = c:get("/t/" .. thread .. "?page=3")
  test.eq(res.status, 200)
  local numbers = {}
  for n in html:gmatch("reply number (%d)") do numbers[#numbers + 1] = tonumber(n) end
  test.eq(numbers, { 7, 8 })
  test.match(html, 'rel="prev" href="/t/' .. thread .. '%?page=2"')
  test.match(html, "8 posts")
  _, html = c:get("/t/" .. thread)
  numbers = {}
  for n in html:gmatch("reply number (%d)") do numbers[#numbers + 1] = tonumber(n) end
  test.eq(numbers, { 2, 3 }, "page 1: the first post and two replies")
  test.eq((c:get("/t/" .. thread .. "?page=4")).status, 404)
  test.eq((c:get("/t/" .. thread .. "?page=0")).status, 404)
  test.eq((c:get("/t/999999")).status, 404)

  -- board pages: the most recently active thread first
  for i = 1, 3 do
    test.eq((c:post("/b/general", { _csrf = token, title = "thread " .. i, body = "body " .. i })).status, 303)
  end
  _, html = c:get("/b/general")
  local titles = {}
  for t in html:gmatch('class="title" href="/t/%d+">([^<]*)</a>') do titles[#titles + 1] = t end
  test.eq(titles, { "thread 3", "thread 2", "thread 1" })
  _, html = c:get("/b/general?page=2")
  test.match(html, "Hello &lt;world&gt;")
  res = c:post("/t/" .. thread, { _csrf = token, body = "bump" })
  _, html = c:get("/b/general")
  test.match(html, '^.-class="title" href="/t/' .. thread .. '">', "a reply bumps its thread to the top")

  -- logged out: no posting, the old cookie is dead
  local sid = c.jar.sid
  res = c:post("/logout", { _csrf = token })
  test.eq(res.status, 303)
  test.eq(c.jar.sid, nil, "the cookie is deleted")
  test.eq(logged_in_as(c), nil)
  local replay = ch.client(app)
  replay.jar.sid = sid
  test.eq(logged_in_as(replay), nil, "the session is gone from the store")
  res = replay:post("/t/" .. thread, { _csrf = token, body = "after logout" })
  test.eq(res.status, 403, "no session, no token")

  -- logging in: a wrong password and an unknown name read the same
  token = login_page_token(c)
  res, html = c:post("/login", { _csrf = token, name = "alice", password = "wrong-password" })
  test.eq(res.status, 401)
  test.match(html, "wrong name or password")
  res, html = c:post("/login", { _csrf = token, name = "nobody", password = "wrong-password" })
  test.eq(res.status, 401)
  test.match(html, "wrong name or password")
  res = c:post("/login", { _csrf = token, name = "alice", password = "password-alice", next = "/t/" .. thread })
  test.eq(res.status, 303)
  test.eq(res.headers.location, "/t/" .. thread)
  test.eq(logged_in_as(c), "alice")
  res = c:post("/login", { _csrf = token, name = "alice", password = "password-alice" })
  test.eq(res.status, 403, "the token from before the login is dead")
  local _, fresh = c:get("/login")
  res = c:post("/login", { _csrf = ch.token(fresh), name = "alice", password = "password-alice", next = "//evil.example/" })
  test.eq(res.headers.location, "/", "no redirect off the site")

  res, html = c:get("/no/such/page")
  test.eq(res.status, 404)
  test.match(html, '<p class="problem">no such page</p>')

  -- the static files come from the app
  res, html = c:get("/static/style.css")
  test.eq(res.status, 200)
  test.match(res.headers["content-type"], "^text/css")
  test.match(html, "%-%-accent")
end)

local function api(c, method, path, value, token)
  local headers = { ["Content-Type"] = "application/json", ["X-CSRF-Token"] = token }
  local res, text = c:request(method, path, value and cjson.encode(value), headers)
  test.match(res.headers["content-type"], "^application/json", method .. " " .. path)
  return res.status, cjson.decode(text)
end

test.case("JSON API: the same accounts, boards, threads and posts; CSRF header; errors", function()
  local app = ch.start(ch.backends())
  local c = ch.client(app)
  local status, v = api(c, "GET", "/api/me")
  test.eq(status, 200)
  test.eq(v.user, cjson.null)
  local token = test.ok(v.csrf)

  status, v = api(c, "POST", "/api/register", { name = "bob", password = "password-bob" })
  test.eq(status, 403, "no X-CSRF-Token")
  status, v = api(c, "POST", "/api/register", { name = "bob", password = "password-bob" }, token)
  test.eq(status, 201)
  test.eq(v.user.name, "bob")
  test.ok(v.csrf ~= token, "a new token with the new session")
  token = v.csrf
  status, v = api(c, "POST", "/api/register", { name = "bob", password = "password-bob" }, token)
  test.eq(status, 409)
  test.match(v.error, "taken")

  status, v = api(c, "GET", "/api/boards")
  test.eq(status, 200)
  test.eq(#v.boards, 3)
  test.eq(v.boards[1].slug, "general")

  status, v = api(c, "POST", "/api/boards/luaio/threads", { title = "From the API", body = "posted as JSON" }, token)
  test.eq(status, 201)
  local id = v.thread.id
  test.eq(v.thread.title, "From the API")
  status = api(c, "POST", "/api/boards/luaio/threads", { title = "", body = "x" }, token)
  test.eq(status, 400)
  status, v = api(c, "POST", "/api/boards/luaio/threads", "not an object", token)
  test.eq(status, 400)
  test.eq(v.error, "a JSON object expected")
  status = api(c, "POST", "/api/boards/nowhere/threads", { title = "t", body = "b" }, token)
  test.eq(status, 404)

  for i = 1, 4 do
    status, v = api(c, "POST", "/api/threads/" .. id .. "/posts", { body = "api reply " .. i }, token)
    test.eq(status, 201)
    test.eq(v.post.number, i + 1)
    test.eq(v.page, math.ceil((i + 1) / 3))
  end
  status = api(c, "POST", "/api/threads/424242/posts", { body = "nowhere" }, token)
  test.eq(status, 404)

  status, v = api(c, "GET", "/api/threads/" .. id .. "?page=2")
  test.eq(status, 200)
  test.eq(v.pages, 2)
  test.eq(v.page, 2)
  test.eq(#v.posts, 2)
  test.eq(v.posts[1].body, "api reply 3")
  test.eq(v.posts[1].author, "bob")
  test.match(v.posts[1].created_at, "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$")
  test.eq(v.thread.posts, 5)
  test.eq(v.thread.board, "luaio")
  status = api(c, "GET", "/api/threads/" .. id .. "?page=3")
  test.eq(status, 404)
  status, v = api(c, "GET", "/api/boards/luaio")
  test.eq(status, 200)
  test.eq(v.threads[1].title, "From the API")
  test.eq(v.board.threads, 1)
  test.eq(v.board.posts, 5)
  status, v = api(c, "GET", "/api/boards/meta")
  test.eq(v.threads, {}, "an empty board")
  local _, raw = c:get("/api/boards/meta")
  test.match(raw, '"threads":%[%]')

  -- the pages show what the API wrote, and the API what the pages wrote
  local _, html = c:get("/t/" .. id)
  test.match(html, "posted as JSON")
  test.match(html, "api reply 2")
  local form_token = ch.token(html)
  test.eq(form_token, token, "one token per session, for forms and scripts alike")
  c:post("/t/" .. id, { _csrf = form_token, body = "from the form" })
  status, v = api(c, "GET", "/api/threads/" .. id .. "?page=2")
  test.eq(v.posts[#v.posts].body, "from the form")

  -- logged out: 401 for writes; logging in again through the API
  status = api(c, "POST", "/api/logout", {}, token)
  test.eq(status, 200)
  status, v = api(c, "GET", "/api/me")
  test.eq(v.user, cjson.null)
  token = v.csrf
  status, v = api(c, "POST", "/api/threads/" .. id .. "/posts", { body = "anonymous" }, token)
  test.eq(status, 401)
  status, v = api(c, "POST", "/api/login", { name = "bob", password = "nope-nope" }, token)
  test.eq(status, 401)
  test.eq(v.error, "wrong name or password")
  status, v = api(c, "POST", "/api/login", { name = "bob", password = "password-bob" }, token)
  test.eq(status, 200)
  test.eq(v.user.name, "bob")
  status = api(c, "GET", "/api/nothing")
  test.eq(status, 404)
end)

test.case("sessions live in Redis for SESSION_TTL after their last request, then expire", function()
  local b = ch.backends()
  local ttl = 2000
  local app = ch.start(b, { SESSION_TTL = tostring(ttl) })
  local c = ch.client(app)
  register(c, "carol")
  test.eq(logged_in_as(c), "carol")
  local r = assert(redis.connect({ port = b.redis.port }))
  local keys = r:keys("session:*")
  test.eq(#keys, 1, "one session in Redis")
  local id = keys[1]:match("^session:(.*)$")
  test.eq(c.jar.sid:match("^([^.]+)%."), id, "the cookie holds the id, signed")
  local data = cjson.decode(r:get(keys[1]))
  test.eq(data.name, "carol")
  local pttl = r:pttl(keys[1])
  test.ok(pttl > 0 and pttl <= ttl, "the key expires within the TTL: " .. pttl)

  -- each request extends the session: a tampered cookie is no session at all
  local forged = ch.client(app)
  forged.jar.sid = id .. ".AAAA" .. c.jar.sid:sub(#id + 6)
  test.eq(logged_in_as(forged), nil, "a cookie with a wrong MAC")
  forged.jar.sid = id
  test.eq(logged_in_as(forged), nil, "an unsigned cookie")

  r:pexpire(keys[1], 300) -- as if the last request were long ago
  test.eq(logged_in_as(c), "carol", "the request in time finds the session")
  pttl = r:pttl(keys[1])
  test.ok(pttl > 300, "and gives it the whole TTL again: " .. pttl)
  ch.wait_for("the session to expire", 10000, function() return r:exists(keys[1]) == 0 end)
  test.eq(logged_in_as(c), nil, "expired: logged out")
  r:close()
end)

test.case("migrations run once: a second instance on the same database applies none and sees the data", function()
  local b = ch.backends()
  local first = ch.start(b)
  local c = ch.client(first)
  register(c, "dave")
  local helpers = require "tests.helpers"
  test.match(helpers.output(first.peer), "migration applied version=001_schema")
  local second = ch.start(b)
  local out = helpers.output(second.peer)
  test.ok(not out:find("migration applied"), "nothing to apply: " .. out)
  local rows = assert(b.mysql.root:query("SELECT version FROM " .. b.database .. ".schema_migrations ORDER BY version"))
  test.eq(#rows, 2)
  test.eq(rows[1].version, "001_schema")
  -- one store of sessions: logged in on the first, logged in on the second
  local other = ch.client(second)
  other.jar = c.jar
  test.eq(logged_in_as(other), "dave")
end)

test.case("the built executable serves everything from its bundle, alone in an empty root (chroot)", function()
  test.static()
  if test.sh("id -u"):match("%d+") ~= "0" then test.skip("chroot needs root") end
  local root = test.tmpdir()
  ch.build(root)
  test.eq(test.sh("ls -A " .. test.quote(root)), "community\n", "nothing beside the executable")
  local chroot = test.sh("command -v chroot"):match("%S+")
  local app = ch.start(ch.backends(), nil, chroot .. " " .. test.quote(root) .. " /community")
  local c = ch.client(app)
  local res, html = c:get("/")
  test.eq(res.status, 200)
  test.match(html, "General")
  res, html = c:get("/static/app.js")
  test.eq(res.status, 200)
  test.match(html, "relative times")
  register(c, "erin")
  local _, page = c:get("/")
  local token = ch.token(page)
  res = c:post("/b/meta", { _csrf = token, title = "chrooted", body = "from a FROM scratch world" })
  test.eq(res.status, 303)
  _, html = c:get(res.headers.location)
  test.match(html, "from a FROM scratch world")
  local status, v = api(c, "GET", "/api/boards/meta")
  test.eq(status, 200)
  test.eq(v.threads[1].title, "chrooted")
end)
