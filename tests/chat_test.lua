-- examples/chat through its public interface: its page, its WebSocket protocol, with a real
-- redis-server; two processes (and two workers) sharing rooms, history, notices, typing,
-- rate limits; the built executable alone in a chroot; two Chromium pages talking.
local test = require "test"
local task = require "task"
local cjson = require "cjson"
local http = require "http"
local rh = require "tests.redis_helpers"
local ah = require "tests.app_helpers"

local function chat(srv, extra)
  local env = { REDIS_URL = srv.url }
  for k, v in pairs(extra or {}) do env[k] = v end
  return ah.start("chat", env)
end

-- A member: its socket and its hello.
local function join(app, room, nick)
  local ws = ah.connect(("ws://127.0.0.1:%d/ws?room=%s&nick=%s"):format(app.port, room, nick))
  local hello = ah.until_match(ws, function(m) return m.type == "hello" end, 5000, cjson.decode)
  return ws, hello
end

local function send(ws, text) assert(ws:send(cjson.encode({ type = "msg", text = text }))) end

local function expect(ws, kind, field, value, timeout)
  return ah.until_match(ws, function(m) return m.type == kind and (field == nil or m[field] == value) end,
    timeout, cjson.decode)
end

test.case("two processes share a room through Redis: messages, join, typing and leave notices", function()
  local srv = rh.server()
  local one, two = chat(srv), chat(srv)
  local alice, hello = join(one, "lobby", "alice")
  test.eq({ hello.room, hello.nick, hello.members, #hello.history }, { "lobby", "alice", { "alice" }, 0 })
  local bob, bob_hello = join(two, "lobby", "bob")
  test.eq(bob_hello.members, { "alice", "bob" }, "members across processes")
  test.ok(bob_hello.server ~= hello.server, "two processes")
  expect(alice, "join", "nick", "bob")
  send(alice, "hello from process one")
  local m = expect(bob, "msg")
  test.eq({ m.nick, m.text, m.id }, { "alice", "hello from process one", 1 })
  assert(bob:send('{"type":"typing"}'))
  expect(alice, "typing", "nick", "bob")
  send(bob, "and back, with ünïcode ✓")
  local back = expect(alice, "msg", "nick", "bob")
  test.eq({ back.text, back.id }, { "and back, with ünïcode ✓", 2 })
  bob:close()
  expect(alice, "leave", "nick", "bob")
  -- someone else's room hears nothing of this one
  local other = join(two, "elsewhere", "carol")
  send(alice, "only for the lobby")
  expect(alice, "msg", "text", "only for the lobby")
  send(other, "elsewhere")
  local mine = expect(other, "msg")
  test.eq({ mine.text, mine.id }, { "elsewhere", 1 }, "ids count per room")
end)

test.case("history: a newcomer gets the last HISTORY messages, in order, with their ids", function()
  local srv = rh.server()
  local app = chat(srv, { HISTORY = 5, BURST = 100 })
  local alice = join(app, "h", "alice")
  for i = 1, 8 do send(alice, "m" .. i) end
  expect(alice, "msg", "text", "m8")
  local _, hello = join(app, "h", "dave")
  local texts, ids = {}, {}
  for i, h in ipairs(hello.history) do texts[i], ids[i] = h.text, h.id end
  test.eq(texts, { "m4", "m5", "m6", "m7", "m8" })
  test.eq(ids, { 4, 5, 6, 7, 8 })
  local r = rh.connect(srv)
  test.eq(r:llen("chat:h:history"), 5, "the list is trimmed in Redis")
end)

test.case("rate limit: a burst passes, more is refused with retry_ms, a flood is disconnected", function()
  local srv = rh.server()
  -- one token every 10 s: none comes back while the test runs, however slow the machine
  local app = chat(srv, { RATE = 0.1, BURST = 3, MAX_STRIKES = 4 })
  local spammer = join(app, "r", "spammer")
  local watcher = join(app, "r", "watcher")
  for i = 1, 4 do send(spammer, "s" .. i) end
  local refused = expect(spammer, "error")
  test.eq(refused.error, "rate limited")
  test.ok(refused.retry_ms > 0 and refused.retry_ms <= 10000, "retry_ms within the 10 s a token takes")
  expect(watcher, "msg", "text", "s3") -- the burst of three got through
  for i = 5, 12 do send(spammer, "s" .. i) end
  local data, err
  repeat data, err = ah.receive(spammer, 5000) until not data
  test.eq({ err.name, err.code, err.reason }, { "CLOSED", 1008, "rate limit" })
  -- the watcher never saw a refused message
  local m = ah.receive(watcher, 300)
  while m do
    local e = cjson.decode(m)
    test.ok(not (e.type == "msg" and e.text:match("^s%d+$") and tonumber(e.text:sub(2)) > 3),
      "a refused message was delivered: " .. m)
    m = ah.receive(watcher, 300)
  end
end)

test.case("refusals: a nickname in use, a bad room name, bad frames", function()
  local srv = rh.server()
  local app = chat(srv)
  local alice = join(app, "x", "alice")
  local ws = ah.connect(("ws://127.0.0.1:%d/ws?room=x&nick=alice"):format(app.port))
  test.eq(cjson.decode((ah.receive(ws))).error, "nickname taken")
  local _, err = ah.receive(ws)
  test.eq({ err.code, err.reason }, { 1008, "nickname taken" })
  ws = ah.connect(("ws://127.0.0.1:%d/ws?room=a%%20b&nick=eve"):format(app.port))
  test.match(cjson.decode((ah.receive(ws))).error, "^room and nick")
  assert(alice:send("not json"))
  test.eq(expect(alice, "error").error, "JSON objects expected")
  send(alice, ("x"):rep(1001))
  test.eq(expect(alice, "error").error, "text of 1 to 1000 bytes expected")
  assert(alice:send('{"type":"dance"}'))
  test.eq(expect(alice, "error").error, "unknown type")
end)

test.case("workers = 2: members served by different workers share the room", function()
  local srv = rh.server()
  local app = chat(srv, { WORKERS = 2 })
  require("tests.helpers").wait_output(app.peer, "listening.-\n.-listening", 10000) -- both workers
  -- the kernel spreads connections over the two workers (SO_REUSEPORT): join until both serve
  local first, hello = join(app, "w", "m0")
  local other, other_hello
  for i = 1, 40 do
    local ws, h = join(app, "w", "m" .. i)
    if h.server ~= hello.server then other, other_hello = ws, h break end
  end
  test.ok(other, "a second worker served someone")
  send(first, "across workers")
  expect(other, "msg", "text", "across workers")
  test.ok(other_hello.server ~= hello.server)
end)

test.case("the page and its files come from the bundle; the built app chats alone in a chroot", function()
  test.static()
  local srv = rh.server()
  local root, exe = ah.build("chat")
  local app = ah.start("chat", { REDIS_URL = "redis://127.0.0.1:" .. srv.port }, { root = root, exe = exe })
  local res = assert(http.get("http://127.0.0.1:" .. app.port .. "/"))
  test.eq(res.status, 200)
  test.match(assert(res:body()), "<title>luaio chat</title>")
  for _, path in ipairs({ "/static/chat.js", "/static/chat.css" }) do
    res = assert(http.get("http://127.0.0.1:" .. app.port .. path))
    test.eq(res.status, 200, path)
    test.ok(#assert(res:body()) > 500, path)
  end
  local a = join(app, "c", "ann")
  local b = join(app, "c", "ben")
  send(a, "from a chroot")
  expect(b, "msg", "text", "from a chroot")
end)

test.case("Redis restarted: the subscriber reconnects and the room goes on", function()
  local srv = rh.server()
  local app = chat(srv)
  local a = join(app, "z", "ann")
  local b = join(app, "z", "ben")
  rh.kill(srv)
  local again = rh.server(nil, { port = srv.port })
  -- until the subscriber is back, messages are stored but may not be heard: retry
  local heard
  for i = 1, 50 do
    send(a, "after restart " .. i)
    local data = ah.receive(b, 200)
    while data do
      local m = cjson.decode(data)
      if m.type == "msg" and m.text:match("^after restart") then heard = m break end
      data = ah.receive(b, 200)
    end
    if heard then break end
  end
  test.ok(heard, "a message after the restart was delivered")
  test.ok(again)
end)

test.case("two Chromium pages: join in both, a message and typing in one show in the other", function()
  ah.need_browser()
  local srv = rh.server()
  local app = chat(srv)
  ah.browser([[
  const browser = await launch();
  const open = async (nick) => {
    const page = await browser.newPage();
    await page.setViewport({ width: 760, height: 420 });
    await page.goto(base + "/", { waitUntil: "load" });
    await page.type("#nick", nick);
    await page.$eval("#room", (e) => { e.value = "browsers"; });
    await page.click("#enter");
    await page.waitForSelector("#chat:not([hidden])", { timeout: 5000, polling: 50 });
    return page;
  };
  const alice = await open("alice");
  await alice.type("#text", "hi from the first tab");
  await alice.keyboard.press("Enter");
  const bob = await open("bob");
  // history: bob joined after the first message
  await bob.waitForFunction(() => document.querySelector("#log").textContent.includes("hi from the first tab"), { timeout: 5000, polling: 50 });
  await alice.waitForFunction(() => document.querySelector("#log").textContent.includes("bob joined"), { timeout: 5000, polling: 50 });
  await bob.type("#text", "hello alice");
  await alice.waitForFunction(() => document.querySelector("#typing").textContent.includes("bob is typing"), { timeout: 5000, polling: 50 });
  await bob.keyboard.press("Enter");
  await alice.waitForFunction(() => [...document.querySelectorAll("#log .msg")].some((p) => p.textContent.includes("bobhello alice")), { timeout: 5000, polling: 50 });
  const members = await alice.$eval("#members", (e) => e.textContent);
  if (!members.includes("alice (you)") || !members.includes("bob")) throw new Error("members: " + members);
  await alice.type("#text", "see you");
  await alice.keyboard.press("Enter");
  await bob.waitForFunction(() => document.querySelector("#log").textContent.includes("see you"), { timeout: 5000, polling: 50 });
  await bob.screenshot({ path: shots + "/chat.png" });
  await browser.close();
]], "http://127.0.0.1:" .. app.port)
  local f = assert(io.open("out/screenshots/chat.png", "rb"))
  test.eq(f:read(8), "\137PNG\r\n\26\n")
  f:close()
end)
