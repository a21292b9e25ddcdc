-- examples/game through its public interface: the binary protocol over WebSocket, the
-- fixed-rate tick, interest management, reconnection with a token; the built executable
-- alone in a chroot; two Chromium pages, one moving, the other seeing it move.
local test = require "test"
local task = require "task"
local cjson = require "cjson"
local http = require "http"
local ah = require "tests.app_helpers"
local P = require "examples.game.proto"

local function game(extra)
  local env = { GAME_DEBUG = "1" }
  for k, v in pairs(extra or {}) do env[k] = v end
  return ah.start("game", env)
end

local function decode(data) return assert(P.decode(data)) end

-- A bot: its client, its WELCOME, and the names it was told.
local function join(app, name, x, y)
  local c = ah.connect(("ws://127.0.0.1:%d/ws"):format(app.port))
  assert(c:send(P.join(name, x, y), "binary"))
  local welcome = ah.until_match(c, function(m) return m.op == P.WELCOME end, 5000, decode)
  return c, welcome
end

local function snapshot(c, pred)
  return ah.until_match(c, function(m) return m.op == P.SNAPSHOT and (pred == nil or pred(m)) end, 5000, decode)
end

local function find(m, id)
  for _, p in ipairs(m.players) do if p.id == id then return p end end
end

local function stats(app)
  local res = assert(http.get("http://127.0.0.1:" .. app.port .. "/stats"))
  return cjson.decode(assert(res:body()))
end

test.case("snapshots: the server moves a player by its inputs; ticks count up at the rate asked", function()
  local app = game({ TICK_HZ = 30 })
  local c, welcome = join(app, "runner", 500, 500)
  test.eq({ welcome.world, welcome.hz, welcome.cell }, { 2000, 30, 250 })
  test.eq(#welcome.token, 16)
  local first = snapshot(c)
  local me = find(first, welcome.id)
  test.eq({ me.x, me.y, me.hp }, { 500, 500, 100 })
  assert(c:send(P.input(1, P.RIGHT + P.DOWN, 0), "binary"))
  local moved = snapshot(c, function(m) return m.ack == 1 and find(m, welcome.id).x >= 560 end)
  local p = find(moved, welcome.id)
  test.ok(p.y > 500 and math.abs((p.x - 500) - (p.y - 500)) <= 1, "diagonal movement")
  test.ok(moved.tick > first.tick, "tick numbers grow")
  assert(c:send(P.input(2, 0, 0), "binary"))
  local stopped = snapshot(c, function(m) return m.ack == 2 end)
  local a = find(stopped, welcome.id)
  local later = snapshot(c, function(m) return m.tick >= stopped.tick + 3 end)
  test.eq({ find(later, welcome.id).x, find(later, welcome.id).y }, { a.x, a.y }, "no keys, no movement")
  assert(c:send(P.input(1, P.LEFT, 0), "binary")) -- an old sequence number is ignored
  local ignored = snapshot(c, function(m) return m.tick >= later.tick + 3 end)
  test.eq(find(ignored, welcome.id).x, a.x)
  local s = stats(app)
  test.ok(s.tick >= later.tick and s.hz == 30 and s.online == 1, cjson.encode(s))
  test.ok(s.late_ms.max >= 0 and s.cpu_ms.avg >= 0 and s.tick_ms.p99 >= 0, "tick figures reported")
end)

test.case("interest management: a player receives only what is near it", function()
  local app = game({ WORLD = 2000, CELL = 250 })
  local a, wa = join(app, "a", 100, 100)    -- cell (0, 0)
  local b, wb = join(app, "b", 200, 100)    -- the same cell
  local c, wc = join(app, "c", 1100, 120)   -- four cells to the right
  local sa = snapshot(a, function(m) return find(m, wb.id) end)
  test.eq(find(sa, wc.id), nil, "a does not see c")
  local sc = snapshot(c)
  test.eq({ find(sc, wa.id), find(sc, wb.id) }, { nil, nil }, "c sees neither")
  test.ok(find(sc, wc.id), "c sees itself")
  -- c walks left: once one cell away from a's it shows in a's snapshots
  assert(c:send(P.input(1, P.LEFT, 0), "binary"))
  local seen = snapshot(a, function(m) return find(m, wc.id) end)
  local x = find(seen, wc.id).x
  -- a's cell is (0, 0): c shows up once in cell (1, 0), x < 500 (it moves 7.3 units a tick;
  -- a late tick steps up to 5 times)
  test.ok(x < 500 and x >= 450, "c shows up as it enters the neighbouring cell: x " .. x)
  -- a shot: b fires at a, a's hp drops
  assert(b:send(P.input(1, P.FIRE, 32768), "binary")) -- aim left, towards a
  local hurt = snapshot(a, function(m) local me = find(m, wa.id) return me and me.hp < 100 end)
  test.ok(find(hurt, wa.id).hp <= 80)
end)

test.case("reconnect: the token resumes the same player within the grace period, not after", function()
  local app = game({ GRACE_MS = 3000 })
  local watcher, ww = join(app, "watcher", 300, 300)
  local c, w = join(app, "flaky", 320, 300)
  assert(c:send(P.input(1, P.DOWN, 0), "binary"))
  local moved = snapshot(c, function(m) return find(m, w.id).y >= 340 end)
  c:close()
  -- the player stays, still, while nobody drives it
  local still = snapshot(watcher, function(m) return m.tick > moved.tick + 5 end)
  local p = find(still, w.id)
  test.ok(p, "the player waits in the world")
  local back = ah.connect(("ws://127.0.0.1:%d/ws"):format(app.port))
  assert(back:send(P.resume(w.token), "binary"))
  local again = ah.until_match(back, function(m) return m.op == P.WELCOME end, 5000, decode)
  test.eq({ again.id, again.token }, { w.id, w.token })
  local resumed = snapshot(back)
  test.eq({ find(resumed, w.id).x, find(resumed, w.id).y }, { p.x, p.y }, "where it was left")
  assert(back:send(P.input(2, P.UP, 0), "binary"))
  snapshot(back, function(m) return find(m, w.id).y < p.y end)
  -- gone for longer than the grace: removed, and the token no longer works
  back:close()
  ah.until_match(watcher, function(m) return m.op == P.GONE and m.id == w.id end, 15000, decode)
  local late = ah.connect(("ws://127.0.0.1:%d/ws"):format(app.port))
  assert(late:send(P.resume(w.token), "binary"))
  test.eq(ah.until_match(late, function(m) return m.op == P.ERROR end, 5000, decode).message, "unknown token")
  test.ok(ww.id ~= w.id)
end)

test.case("refusals: a first message that is not JOIN or RESUME, a bad name, a text frame", function()
  local app = game()
  local c = ah.connect(("ws://127.0.0.1:%d/ws"):format(app.port))
  assert(c:send(P.input(1, 0, 0), "binary"))
  test.eq(ah.until_match(c, function(m) return m.op == P.ERROR end, 5000, decode).message, "JOIN or RESUME expected")
  c = ah.connect(("ws://127.0.0.1:%d/ws"):format(app.port))
  assert(c:send(P.join("<script>"), "binary"))
  test.match(ah.until_match(c, function(m) return m.op == P.ERROR end, 5000, decode).message, "^name")
  local ok, w = join(app, "fine")
  assert(ok:send("hello", "text"))
  test.eq(ah.until_match(ok, function(m) return m.op == P.ERROR end, 5000, decode).message, "INPUT expected")
  test.ok(w.id)
end)

test.case("the built executable serves its page and plays alone in a chroot", function()
  test.static()
  local root, exe = ah.build("game")
  local app = ah.start("game", { GAME_DEBUG = "1" }, { root = root, exe = exe })
  local res = assert(http.get("http://127.0.0.1:" .. app.port .. "/"))
  test.eq(res.status, 200)
  test.match(assert(res:body()), "<title>luaio arena</title>")
  res = assert(http.get("http://127.0.0.1:" .. app.port .. "/static/game.js"))
  test.eq(res.status, 200)
  local c, w = join(app, "jailed", 100, 100)
  assert(c:send(P.input(1, P.RIGHT, 0), "binary"))
  snapshot(c, function(m) return find(m, w.id).x > 130 end)
end)

test.case("two Chromium pages: both join, one moves, the other sees it move", function()
  ah.need_browser()
  local app = game({ GAME_SPAWN = "1000,1000" })
  ah.browser([[
  const browser = await launch();
  const open = async (name) => {
    const page = await browser.newPage();
    await page.setViewport({ width: 640, height: 400 });
    await page.goto(base + "/", { waitUntil: "load" });
    await page.type("#name", name);
    await page.click("#play");
    await page.waitForFunction(() => window.game.connected && window.game.players.has(window.game.me), { timeout: 5000, polling: 50 });
    return page;
  };
  const alice = await open("alice");
  const bob = await open("bob");
  const aliceId = await alice.evaluate(() => window.game.me);
  await bob.waitForFunction((id) => window.game.players.has(id) && window.game.names.get(id) === "alice", { timeout: 5000, polling: 50 }, aliceId);
  const before = await bob.evaluate((id) => window.game.players.get(id).x, aliceId);
  await alice.bringToFront();
  await alice.keyboard.down("KeyD");
  await bob.waitForFunction((id, x) => window.game.players.get(id) && window.game.players.get(id).x > x + 150, { timeout: 5000, polling: 50 }, aliceId, before);
  await alice.keyboard.up("KeyD");
  const hidden = await alice.$eval("#join", (e) => e.hidden && getComputedStyle(e).display === "none");
  if (!hidden) throw new Error("the join form is still shown");
  await alice.mouse.move(120, 140); // aim up and left, towards bob
  await alice.keyboard.down("Space"); // shots, for the picture
  await new Promise((r) => setTimeout(r, 600));
  await alice.keyboard.up("Space");
  await bob.bringToFront();
  await new Promise((r) => setTimeout(r, 50));
  await bob.screenshot({ path: shots + "/game.png" });
  await browser.close();
]], "http://127.0.0.1:" .. app.port)
  local f = assert(io.open("out/screenshots/game.png", "rb"))
  test.eq(f:read(8), "\137PNG\r\n\26\n")
  f:close()
end)
