-- The HTTP server's life: SIGTERM under load drains in-flight requests and exits 0; a
-- worker killed under load is replaced and no response is lost.
local test = require "test"
local task = require "task"
local helpers = require "tests.helpers"

local q = test.quote

-- A node client: `concurrency` loops of keep-alive requests against PATH until told to stop
-- (stop file appears) or the server is gone; it prints "running" after 20 good responses
-- (node can take a while to start on a loaded machine: the test waits for it). A GET whose connection closed before any byte
-- of a response came is retried, twice at most (RFC 9112 9.3.1: what browsers and proxies
-- do; it covers a keep-alive connection closed while idle and a connection the kernel
-- queued for a worker that was killed). Every response must be a 200 with the right body.
local CLIENT = [==[
const http = require("http");
const fs = require("fs");
const [port, path, concurrency, stopFile, expect] = [Number(process.argv[2]), process.argv[3], Number(process.argv[4]), process.argv[5], process.argv[6]];
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
let ok = 0, failed = 0, refused = 0, retried = 0, unserved = 0, running = concurrency;
const failures = [];
function once(tries, done) {
  const req = http.get({ port, host: "127.0.0.1", path, agent }, (res) => {
    let body = "";
    res.on("data", (d) => body += d);
    res.on("end", () => {
      if (res.statusCode === 200 && body.startsWith(expect)) { if (++ok === 20) console.log("running"); }
      else { failed++; failures.push(res.statusCode + " " + body.slice(0, 40)); }
      done(true);
    });
    res.on("error", (e) => { failed++; failures.push("body " + e.message); done(true); });
  });
  req.on("error", (e) => {
    if (e.code === "ECONNREFUSED") { refused++; return done(false); }
    if (tries < 2) { retried++; return once(tries + 1, done); }
    // reset before any byte of a response, three times: the server never took the request
    if (e.code === "ECONNRESET") { unserved++; return done(false); }
    failed++; failures.push(e.code || e.message); done(true);
  });
}
function loop() {
  if (fs.existsSync(stopFile)) { if (--running === 0) finish(); return; }
  once(0, (again) => again ? setImmediate(loop) : (--running === 0 && finish()));
}
function finish() {
  console.log(`ok=${ok} failed=${failed} refused=${refused} retried=${retried} unserved=${unserved} ${failures.slice(0, 3).join(";")}`);
  agent.destroy();
}
for (let i = 0; i < concurrency; i++) loop();
]==]

local SERVER = [[
local http = require "http"
local process = require "process"
local task = require "task"
local server = assert(http.createServer(tonumber(arg[1]) or 0, function(req, res)
  if req.path == "/slow" then task.sleep(50) end
  res:finish("pid " .. process.pid)
end, %s))
print("listening " .. server:address().port .. " pid " .. process.pid)
io.stdout:flush()
]]

local function start_client(port, path, concurrency, expect)
  local dir = test.tmpdir()
  test.write(dir .. "/client.js", CLIENT)
  local stop = dir .. "/stop"
  local client = helpers.start("node " .. dir .. "/client.js " .. port .. " " .. path .. " " .. concurrency ..
    " " .. stop .. " " .. q(expect))
  return client, stop
end

test.case("SIGTERM under load: in-flight requests finish, idle connections close, exit 0", function()
  local dir = test.tmpdir()
  test.write(dir .. "/server.lua", SERVER:format('{ host = "127.0.0.1", shutdown_timeout = 5000, access_log = "' .. dir .. '/access.log" }'))
  local peer = helpers.start(q(test.luaio) .. " run " .. dir .. "/server.lua; echo \"exit status $?\"")
  local port = tonumber(helpers.wait_output(peer, "listening (%d+)"))
  local pid = tonumber(helpers.wait_output(peer, "pid (%d+)"))
  local client = start_client(port, "/slow", 16, "pid " .. pid)
  helpers.wait_output(client, "running", 15000)
  task.sleep(200) -- requests in flight on every connection
  test.sh("kill -TERM " .. pid)
  helpers.wait_output(peer, "exit status (%d+)", 8000)
  test.eq(helpers.wait_output(peer, "exit status (%d+)"), "0")
  local summary = helpers.wait_output(client, "(ok=%d+ failed=%d+[^\n]*)", 8000)
  test.eq(tonumber(summary:match("failed=(%d+)")), 0, summary)
  test.ok(tonumber(summary:match("ok=(%d+)")) > 50, summary)
  test.ok(tonumber(summary:match("refused=(%d+)")) > 0, "the clients saw the server go: " .. summary)
  -- every response the server logged (it flushes its log at exit) reached the client whole
  local f = assert(io.open(dir .. "/access.log"))
  local _, logged = f:read("*a"):gsub("\n", "")
  f:close()
  test.eq(logged, tonumber(summary:match("ok=(%d+)")), "responses sent = responses received: " .. summary)
end)

test.case("a worker killed under load is replaced and no response is lost", function()
  local dir = test.tmpdir()
  local port = helpers.free_port()
  test.write(dir .. "/main.lua", SERVER:format('{ host = "127.0.0.1", workers = 2 }'))
  local master = helpers.start(q(test.luaio) .. " run " .. dir .. " " .. port)
  helpers.wait_port(port)
  -- the responses name the worker's pid; any worker will do
  local client, stop = start_client(port, "/", 8, "pid ")
  helpers.wait_output(client, "running", 15000)
  local before = test.sh("curl -s http://127.0.0.1:" .. port .. "/")
  local victim = tonumber(before:match("pid (%d+)"))
  test.ok(victim, "a worker answered: " .. before)
  test.sh("kill -KILL " .. victim)
  task.sleep(700)
  local seen = {}
  for _ = 1, 20 do
    local out = test.sh("curl -s http://127.0.0.1:" .. port .. "/")
    seen[out:match("pid (%d+)") or "none"] = true
  end
  test.ok(not seen[tostring(victim)], "the killed worker no longer answers")
  test.ok(not seen.none, "every request answered")
  test.write(stop, "")
  local summary = helpers.wait_output(client, "(ok=%d+ failed=%d+[^\n]*)", 8000)
  test.eq(tonumber(summary:match("failed=(%d+)")), 0, summary)
  test.ok(tonumber(summary:match("ok=(%d+)")) > 100, "load ran: " .. summary)
end)

test.case("a worker's environment no longer says it is a worker: what it starts is not taken for one", function()
  local dir = test.tmpdir()
  local port = helpers.free_port()
  test.write(dir .. "/main.lua", [[
local http = require "http"
local process = require "process"
assert(http.createServer(tonumber(arg[1]), function(req, res)
  res:finish(tostring(process.getenv("LUAIO_HTTP_WORKER")) .. " " .. process.pid)
end, { host = "127.0.0.1", workers = 2 }))
]])
  local master = helpers.start(q(test.luaio) .. " run " .. dir .. " " .. port)
  helpers.wait_port(port)
  local out = test.sh("curl -s http://127.0.0.1:" .. port .. "/")
  test.match(out, "^nil %d+$")
  test.ok(tonumber(out:match("%d+")) ~= master.pid, "a worker answered: " .. out)
end)
