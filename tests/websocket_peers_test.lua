-- WebSocket against real peers: the shared benchmark's protocol check (ws_load -C), node's
-- `ws` package (npm) and python3-websockets (Debian) as clients of our server and as servers
-- for our client, with compression on and off; 10,000 connections at once. ./build.sh test
-- installs the peers (node's ws into out/peers/node_modules).
local test = require "test"
local task = require "task"
local websocket = require "websocket"
local helpers = require "tests.helpers"
local H = require "tests.websocket_helpers"

local rep = string.rep
local NODE_PATH = "out/peers/node_modules"
local PYTHON = "/usr/bin/python3"

local function need_node_ws()
  local f = io.open(NODE_PATH .. "/ws/package.json")
  if not f then error("node's ws package is missing: ./build.sh test installs it into " .. NODE_PATH, 2) end
  f:close()
end

local function need_python_websockets()
  local out, status = test.sh(PYTHON .. " -c 'import websockets'")
  if status ~= 0 then error("python3-websockets is missing (apt-get install python3-websockets): " .. out, 2) end
end

-- Runs a peer in the background and waits for its last line: "OK ..." or a failure.
local function run_peer(command, timeout_ms)
  local peer = helpers.start(command)
  local result = helpers.wait_output(peer, "\n?((%u%u%u*)[^\n]*)\n$", timeout_ms or 30000)
  return result, helpers.output(peer)
end

local function node(source, ...)
  need_node_ws()
  local path = helpers.node_script(source)
  local args = { ... }
  for i, a in ipairs(args) do args[i] = test.quote(tostring(a)) end
  return "NODE_PATH=" .. NODE_PATH .. " node " .. path .. " " .. table.concat(args, " ")
end

local function python(source, ...)
  need_python_websockets()
  local path = test.tmpdir() .. "/peer.py"
  test.write(path, source)
  local args = { ... }
  for i, a in ipairs(args) do args[i] = test.quote(tostring(a)) end
  return PYTHON .. " " .. path .. " " .. table.concat(args, " ")
end

-- --- ws_load -C ----------------------------------------------------------------------------------

local function find_ws_load()
  for _, dir in ipairs({ "../shared/bench", "/work/shared/bench" }) do
    local f = io.open(dir .. "/ws_load.c")
    if f then
      f:close()
      return dir .. "/ws_load.c"
    end
  end
end

test.case("ws_load -C (the shared benchmark's protocol check) passes against our echo server", function()
  local src = find_ws_load()
  if not src then test.skip("../shared/bench/ws_load.c is not here") end
  local bin = test.tmpdir() .. "/ws_load"
  local out, status = test.sh("gcc -O2 -o " .. bin .. " " .. src)
  test.eq(status, 0, out)
  local port = H.serve()
  local result, all = run_peer(bin .. " -p " .. port .. " -C; echo STATUS=$?")
  test.match(all, "check=ok")
  test.match(result, "STATUS=0")
end)

-- --- node's ws as the client ---------------------------------------------------------------------

local NODE_CLIENT = [[
const WebSocket = require('ws');
const [port, compress] = [process.argv[2], process.argv[3] === 'on'];
const ca = process.argv[4];
const ws = ca ? new WebSocket('wss://localhost:' + port + '/', ['chat'], { perMessageDeflate: compress, maxPayload: 64 << 20, ca: require('fs').readFileSync(ca) })
  : new WebSocket('ws://127.0.0.1:' + port + '/', ['chat'], { perMessageDeflate: compress, maxPayload: 64 << 20 });
const sizes = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20];
const msgs = [];
for (const n of sizes) { msgs.push(['x'.repeat(n), false]); msgs.push([Buffer.alloc(n, 7), true]); }
msgs.push(['κόσμε 😀 unicode', false]);
let i = 0;
ws.on('open', () => {
  if (compress && !/permessage-deflate/.test(ws.extensions)) { console.log('FAIL no extension'); process.exit(1); }
  console.log('protocol=' + ws.protocol + ' extensions=' + ws.extensions);
  ws.send(msgs[0][0], { binary: msgs[0][1] });
});
ws.on('message', (data, isBinary) => {
  const [want, bin] = msgs[i];
  if (isBinary !== bin || !Buffer.from(data).equals(Buffer.from(want))) { console.log('FAIL message ' + i); process.exit(1); }
  if (++i < msgs.length) ws.send(msgs[i][0], { binary: msgs[i][1] });
  else ws.close(4000, 'node done');
});
ws.on('close', (code, reason) => { console.log('OK close ' + code + ' ' + reason + ' after ' + i); process.exit(0); });
ws.on('error', (e) => { console.log('FAIL ' + e.message); process.exit(1); });
]]

for _, compress in ipairs({ "off", "on" }) do
  test.case("node ws client -> our server, compression " .. compress, function()
    H.last_end = nil
    local port = H.serve(nil, { compress = true, protocols = { "chat" } })
    local result, all = run_peer(node(NODE_CLIENT, port, compress))
    test.match(result, "^OK close 4000 +after 17", all) -- we echo the code, not the reason
    test.match(all, "protocol=chat")
    if compress == "on" then test.match(all, "extensions=permessage%-deflate") end
    test.eq(H.last_end and { H.last_end.code, H.last_end.reason }, { 4000, "node done" })
  end)
end

test.case("node ws client -> our server over wss:// (an HTTPS server), compression on", function()
  local certs = require "tests.tls_certs"
  H.last_end = nil
  local port = H.serve(nil, { compress = true, protocols = { "chat" } }, { tls = certs.pair() })
  local result, all = run_peer(node(NODE_CLIENT, port, "on", certs.make().ca))
  test.match(result, "^OK close 4000 +after 17", all)
  test.eq(H.last_end and { H.last_end.code, H.last_end.reason }, { 4000, "node done" })
end)

-- --- python3-websockets as the client ---------------------------------------------------------------

local PY_CLIENT = [[
import asyncio, sys
import websockets
port, compress = sys.argv[1], sys.argv[2] == "on"
async def main():
    async with websockets.connect("ws://127.0.0.1:%s/" % port, compression="deflate" if compress else None,
                                  max_size=64 << 20, subprotocols=["chat"]) as ws:
        ext = ws.response_headers.get("Sec-WebSocket-Extensions", "")
        if compress and "permessage-deflate" not in ext:
            print("FAIL no extension", flush=True); return
        print("extensions=" + ext, flush=True)
        n = 0
        for size in (0, 1, 125, 126, 65535, 65536, 1 << 20):
            for msg in ("y" * size, bytes([size % 251]) * size):
                await ws.send(msg)
                back = await ws.recv()
                if back != msg or type(back) != type(msg):
                    print("FAIL message of %d" % size, flush=True); return
                n += 1
        await ws.send("κόσμε 😀")
        if await ws.recv() != "κόσμε 😀":
            print("FAIL unicode", flush=True); return
        await ws.ping(b"py")
        await ws.close(4001, "python done")
        print("OK %d messages, close %s" % (n + 1, ws.close_code), flush=True)
asyncio.run(main())
]]

for _, compress in ipairs({ "off", "on" }) do
  test.case("python3-websockets client -> our server, compression " .. compress, function()
    H.last_end = nil
    local port = H.serve(nil, { compress = true, protocols = { "chat" } })
    local result, all = run_peer(python(PY_CLIENT, port, compress))
    test.match(result, "^OK 15 messages, close 4001", all)
    if compress == "on" then test.match(all, "extensions=permessage%-deflate") end
    test.eq(H.last_end and { H.last_end.code, H.last_end.reason }, { 4001, "python done" })
  end)
end

-- --- our client against their servers -----------------------------------------------------------------

local NODE_SERVER = [[
const { WebSocketServer } = require('ws');
const fs = require('fs');
const compress = process.argv[2] === 'on';
const cert = process.argv[3], key = process.argv[4];
const common = { maxPayload: 64 << 20, perMessageDeflate: compress ? { threshold: 0 } : false,
  handleProtocols: (p) => p.has('chat') ? 'chat' : false };
let wss;
if (cert) { // wss: an https server under it
  const server = require('https').createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) });
  wss = new WebSocketServer({ server, ...common });
  server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
} else {
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...common });
  wss.on('listening', () => console.log('listening ' + wss.address().port));
}
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.toString() === 'close please') ws.close(4002, 'node server done');
    else ws.send(data, { binary: isBinary });
  });
});
]]

local PY_SERVER = [[
import asyncio, sys
import websockets
compress = sys.argv[1] == "on"
async def handler(ws, path=None):
    async for msg in ws:
        if msg == "close please":
            await ws.close(4003, "python server done")
            return
        await ws.send(msg)
async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, compression="deflate" if compress else None,
                                max_size=64 << 20, subprotocols=["chat"]) as server:
        print("listening %d" % server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
]]

local function exercise(port, compress, want_code, want_reason, ca)
  local url = (ca and "wss://localhost:" or "ws://127.0.0.1:") .. port .. "/"
  local ws = assert(websocket.connect(url, { compress = compress, protocols = { "chat" }, timeout = 5000, tls = ca and { ca = ca } or nil }))
  test.eq(ws.protocol, "chat")
  if compress then test.match(ws.extensions or "", "permessage%-deflate") else test.eq(ws.extensions, nil) end
  for _, n in ipairs({ 0, 1, 125, 126, 127, 65535, 65536, 1048576 }) do
    local text, bin = rep("t", n), rep("\1\254", math.floor(n / 2))
    assert(ws:send(text))
    local data, kind = ws:receive()
    test.ok(data == text and kind == "text", "text of " .. n)
    assert(ws:send(bin, "binary"))
    data, kind = ws:receive()
    test.ok(data == bin and kind == "binary", "binary of " .. n)
  end
  assert(ws:ping("are you there"))
  assert(ws:send("κόσμε 😀"))
  test.eq(ws:receive(), "κόσμε 😀")
  assert(ws:send("close please"))
  local data, err = ws:receive()
  test.eq(data, nil)
  test.eq({ err.name, err.code, err.reason }, { "CLOSED", want_code, want_reason })
end

for _, compress in ipairs({ false, true }) do
  local label = compress and "on" or "off"
  test.case("our client -> node ws server, compression " .. label, function()
    local peer = helpers.start(node(NODE_SERVER, label))
    local port = tonumber(helpers.wait_output(peer, "listening (%d+)"))
    exercise(port, compress, 4002, "node server done")
  end)
  test.case("our client -> python3-websockets server, compression " .. label, function()
    local peer = helpers.start(python(PY_SERVER, label))
    local port = tonumber(helpers.wait_output(peer, "listening (%d+)", 10000))
    exercise(port, compress, 4003, "python server done")
  end)
end

test.case("our client -> node ws server over wss:// (node's https), compression on", function()
  local certs = require "tests.tls_certs"
  local c = certs.make()
  local peer = helpers.start(node(NODE_SERVER, "on", c.server, c.server_key))
  local port = tonumber(helpers.wait_output(peer, "listening (%d+)"))
  exercise(port, true, 4002, "node server done", c.ca)
end)

-- --- many connections ---------------------------------------------------------------------------------------

local NODE_MANY = [[
const WebSocket = require('ws');
const [port, total] = [process.argv[2], Number(process.argv[3])];
let opened = 0, echoed = 0, started = 0, inflight = 0, failed = 0;
const all = [];
function launch() {
  while (inflight < 200 && started < total) {
    started++; inflight++;
    const ws = new WebSocket('ws://127.0.0.1:' + port + '/');
    all.push(ws);
    ws.on('open', () => { opened++; ws.send('hello ' + started); });
    ws.once('message', () => { echoed++; inflight--; launch(); check(); });
    ws.on('error', (e) => { failed++; inflight--; launch(); check(); });
  }
}
function check() {
  if (echoed + failed < total) return;
  console.log('ALL open ' + opened + ' echoed ' + echoed + ' failed ' + failed);
  process.stdin.once('data', () => {
    let closed = 0;
    for (const ws of all) { ws.on('close', () => { if (++closed === all.length) { console.log('DONE closed ' + closed); process.exit(0); } }); ws.close(1000); }
  });
}
launch();
]]

test.case("10,000 connections at once: each echoed, all held open together, all closed", function()
  local open, max_open = 0, 0
  local port = H.serve(function(ws)
    open = open + 1
    if open > max_open then max_open = open end
    H.echo(ws)
    open = open - 1
  end)
  local fifo = test.tmpdir() .. "/in"
  test.sh("mkfifo " .. fifo)
  local peer = helpers.start("exec 3<>" .. fifo .. "; " .. node(NODE_MANY, port, 10000) .. " <&3")
  helpers.wait_output(peer, "ALL open (%d+)", 120000)
  test.match(helpers.output(peer), "ALL open 10000 echoed 10000 failed 0")
  test.eq(max_open, 10000, "every handler waited in receive at once")
  local f = io.open(fifo, "w")
  f:write("go\n")
  f:close()
  helpers.wait_output(peer, "DONE closed (%d+)", 60000)
  local deadline = task.now() + 30000
  while open > 0 and task.now() < deadline do task.sleep(20) end
  test.eq(open, 0)
end)
