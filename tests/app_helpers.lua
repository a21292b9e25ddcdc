-- Shared by the example apps' tests (tests/chat_test.lua, tests/game_test.lua): running an
-- app (luaio run, or its built executable alone in a chroot), WebSocket clients with time
-- limits, and headless Chromium driven by puppeteer-core. (Not a *_test.lua file, so the
-- runner does not run it.)
local test = require "test"
local task = require "task"
local helpers = require "tests.helpers"
local websocket = require "websocket"

local ah = {}

local q = test.quote
ah.NODE_PATH = "out/peers/node_modules"

-- ah.start(app, env[, options]) -> {port, peer}: runs examples/<app> with `luaio run` and the
-- environment variables of `env` (PORT is added: a free port), and waits for its line
-- "listening". options.exe: run this built executable instead; options.root: inside a chroot
-- there, with nothing but the environment given (env -i).
function ah.start(app, env, options)
  options = options or {}
  local port = env.PORT or helpers.free_port()
  local vars = { "PORT=" .. port }
  for k, v in pairs(env) do
    if k ~= "PORT" then vars[#vars + 1] = k .. "=" .. q(tostring(v)) end
  end
  local command
  if options.root then
    local chroot = test.sh("command -v chroot"):match("%S+") -- env -i leaves no PATH
    command = "exec env -i " .. table.concat(vars, " ") .. " " .. chroot .. " " .. q(options.root) .. " /" ..
      options.exe
  else
    command = "exec env " .. table.concat(vars, " ") .. " " .. q(test.luaio) .. " run examples/" .. app
  end
  local peer = helpers.start(command)
  helpers.wait_output(peer, "listening", 10000)
  return { port = port, peer = peer }
end

-- ah.build(app) -> root, name: builds examples/<app> into an empty folder (a chroot root).
function ah.build(app)
  local root = test.tmpdir()
  local out, status = test.sh(q(test.luaio) .. " build examples/" .. app .. " -o " .. q(root .. "/" .. app))
  test.eq(status, 0, out)
  test.eq(test.sh("ls -A " .. q(root)), app .. "\n", "nothing beside the executable")
  return root, app
end

-- ah.connect(url[, options]) -> client: a WebSocket client whose messages a task of its own
-- reads into a queue, so that waiting for one can time out without losing any; closed when
-- the case ends. client:receive([timeout_ms = 5000]) -> data, kind | nil, err (ETIMEDOUT, or
-- how the connection ended); client:send(data[, kind]); client:close(); client.ws.
local Client = {}
Client.__index = Client

function ah.connect(url, options)
  local ws = assert(websocket.connect(url, options))
  local c = setmetatable({ ws = ws, queue = {}, head = 1 }, Client)
  c.reader = task.spawn(function()
    while true do
      local data, kind = ws:receive()
      c.queue[#c.queue + 1] = { data, kind }
      if not data then return end
    end
  end)
  test.cleanup(function() ws:close() end)
  return c
end

function Client:receive(timeout_ms)
  local deadline = task.now() + (timeout_ms or 5000)
  while self.head > #self.queue do
    if task.now() >= deadline then return nil, { name = "ETIMEDOUT" } end
    task.sleep(2)
  end
  local m = self.queue[self.head]
  if m[1] == nil then return nil, m[2] end -- the end stays at the head of the queue
  self.head = self.head + 1
  return m[1], m[2]
end

function Client:send(data, kind) return self.ws:send(data, kind) end
function Client:close(...) return self.ws:close(...) end

-- ah.receive(client[, timeout_ms]): client:receive(timeout_ms).
function ah.receive(client, timeout_ms) return client:receive(timeout_ms) end

-- ah.until_match(ws, pred[, timeout_ms = 5000]) -> the first message m with pred(m) true,
-- and the array of messages before it. decode(data) makes m (default: the data itself).
-- Raises when the connection ends or time runs out first.
function ah.until_match(ws, pred, timeout_ms, decode)
  local deadline = task.now() + (timeout_ms or 5000)
  local before = {}
  while true do
    local left = deadline - task.now()
    if left <= 0 then error("no matching message in time; got " .. #before .. " others", 2) end
    local data, kind = ah.receive(ws, left)
    if not data then error("no matching message: " .. (kind.name or "?") .. " " .. tostring(kind.code or ""), 2) end
    local m = data
    if decode then m = decode(data) end
    if pred(m) then return m, before end
    before[#before + 1] = m
  end
end

-- --- the browser -----------------------------------------------------------------------------

-- Skips the case when chromium or puppeteer-core is missing (./build.sh test installs both).
function ah.need_browser()
  if not test.sh("command -v chromium"):find("chromium") then
    test.skip("chromium is not installed (./build.sh test installs it)")
  end
  local f = io.open(ah.NODE_PATH .. "/puppeteer-core/package.json")
  if not f then test.skip("puppeteer-core is missing: ./build.sh test installs it into " .. ah.NODE_PATH) end
  f:close()
end

-- The start of every browser script: `launch()` gives a headless Chromium with a fresh
-- profile, and nothing that reaches out to the network by itself.
local PRELUDE = [[
const puppeteer = require("puppeteer-core");
const fs = require("fs"), os = require("os"), path = require("path");
const base = process.argv[2], shots = process.argv[3];
async function launch() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "luaio-chromium-"));
  const browser = await puppeteer.launch({
    executablePath: "/usr/bin/chromium",
    userDataDir: profile,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--disable-dev-shm-usage"],
  });
  const close = browser.close.bind(browser);
  browser.close = async () => { await close(); fs.rmSync(profile, { recursive: true, force: true }); };
  return browser;
}
async function main() {
]]

local POSTLUDE = [[
}
main().then(() => { console.log("browser: ok"); process.exit(0); },
  (e) => { console.log("browser: FAILED " + (e && e.stack || e)); process.exit(1); });
]]

-- ah.browser(body, base_url) -> output: runs the body of an async node function (the
-- PRELUDE's `launch`, `base` and `shots`, the folder for screenshots, in scope) with
-- puppeteer-core; fails the case unless it ends well. Screenshots go to out/screenshots/.
function ah.browser(body, base_url)
  local path = test.tmpdir() .. "/browser.js"
  test.write(path, PRELUDE .. body .. POSTLUDE)
  test.sh("mkdir -p out/screenshots")
  local out, status = test.sh("NODE_PATH=" .. ah.NODE_PATH .. " timeout 60 node " .. q(path) .. " " ..
    q(base_url) .. " out/screenshots")
  test.eq(status, 0, out)
  test.match(out, "browser: ok")
  return out
end

return ah
