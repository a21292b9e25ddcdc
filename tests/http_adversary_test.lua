-- The HTTP server under attack: each case is one defect found by attacking it on the wire
-- (smuggling, unbounded output, no send timeout, truncation, framing the app can break,
-- held output, heads at the size of the input block, Host, error responses), and demands
-- the correct behaviour, seen on the wire or in the server process.
local test = require "test"
local task = require "task"
local tcp = require "tcp"
local system = require "system"
local helpers = require "tests.helpers"

local q = test.quote

-- The server under test: a router (so absolute-form targets are checked against real
-- routes). %s: the options; %q: the root of http.static.
local APP = [[
local http = require "http"
local task = require "task"
local process = require "process"
local system = require "system"
local options = %s
options.host = "127.0.0.1"
local MiB = ("x"):rep(1048576)
local PIECE = ("y"):rep(65536)
local bigs = {}
local router = http.router()
local server

router:all("/", function(req, res)
  res:setHeader("Content-Type", "text/plain")
  res:finish("Hello, World!")
end)
router:all("/admin", function(req, res) res:finish("ADMIN") end)
router:all("/read4", function(req, res) -- reads 4 bytes of the body, ignores the rest
  local part = req:read(4)
  res:finish("read " .. tostring(part))
end)
router:all("/ignore", function(req, res) res:finish("ignored") end)
router:all("/echo", function(req, res)
  local body, err = req:body()
  if not body then res:status(400) return res:finish(tostring(err)) end
  res:finish(body)
end)
router:all("/big", function(req, res) -- mb MiB in one finish()
  local mb = tonumber(req.query.mb) or 1
  bigs[mb] = bigs[mb] or MiB:rep(mb)
  res:finish(bigs[mb])
end)
router:all("/stream", function(req, res) -- mb MiB in 64 KiB res:write()s
  for _ = 1, (tonumber(req.query.mb) or 1) * 16 do
    local ok, err = res:write(PIECE)
    if not ok then
      io.stderr:write("stream write failed: ", tostring(err), "\n")
      return
    end
  end
  res:finish()
  io.stderr:write("stream done\n")
end)
router:all("/setcl", function(req, res) -- an app Content-Length, then finish("abc")
  res:setHeader("Content-Length", req.query.v)
  res:finish("abc")
end)
router:all("/partial", function(req, res)
  res:write("partial ")
  error("failed after a partial body")
end)
router:all("/streamhead", function(req, res)
  res:write("streamed ")
  res:write("body")
  res:finish()
end)
router:all("/over", function(req, res) -- declares 5 bytes, writes 10
  res:setHeader("Content-Length", "5")
  res:write("abcdefghij")
  res:finish()
end)
router:all("/under", function(req, res) -- declares 10 bytes, writes 3
  res:setHeader("Content-Length", "10")
  res:write("abc")
  if req.query.finish then res:finish() end
end)
router:all("/ticks", function(req, res) -- a tick, then waits (5 s at most) for the client's ack
  res:write("tick\n")
  local deadline = task.now() + 5000
  while task.now() < deadline do
    local f = io.open(req.query.ack)
    if f then
      f:close()
      return res:finish("acked\n")
    end
    task.sleep(10)
  end
  res:finish("no ack\n")
end)
router:all("/spin", function(req, res) -- keeps the loop busy for ms, then says when it ended
  local started = system.hrtime()
  while system.hrtime() - started < tonumber(req.query.ms) * 1e6 do end
  res:finish(tostring(system.hrtime()))
end)
router:all("/conns", function(req, res) res:finish(tostring(server:connections())) end)
router:all("/path", function(req, res)
  res:finish(("path q=%%s host=%%s"):format(tostring(req.query.q), tostring(req.headers.host)))
end)
router:all("/status", function(req, res)
  res:status(tonumber(req.query.code))
  res:finish("")
end)
router:all("/hdr", function(req, res) -- an app header: ?n=name&v=value (append=1: appendHeader)
  if req.query.append then res:appendHeader(req.query.n, req.query.v) else res:setHeader(req.query.n, req.query.v) end
  res:finish("set")
end)
router:all("/bodyless", function(req, res) -- ?code=&cl= (an app Content-Length)&body=&write=1
  res:status(tonumber(req.query.code))
  res:setHeader("ETag", '"abc"')
  if req.query.cl then res:setHeader("Content-Length", req.query.cl) end
  if req.query.write then res:write(req.query.body or "") end
  res:finish(not req.query.write and req.query.body or nil)
end)
router:get("/static/*", http.static(%q))

server = assert(http.createServer(0, router, options))
print("listening " .. server:address().port .. " pid " .. process.pid)
io.stdout:flush()
]]

-- serve([options[, static_root]]) -> port, pid, peer
local function serve(options, root)
  local port, peer = helpers.serve(APP:format(options or "{}", root or "/nonexistent"))
  return port, tonumber(helpers.wait_output(peer, "pid (%d+)")), peer
end

local function get(path, extra)
  return "GET " .. path .. " HTTP/1.1\r\nHost: a\r\n" .. (extra or "") .. "\r\n"
end

-- The bodies of the responses, for a short failure message.
local function summary(responses, rest)
  local parts = {}
  for i, r in ipairs(responses) do
    parts[i] = ("%d %s [%s]"):format(r.status, r.framing, #r.body > 40 and #r.body .. " bytes" or r.body)
  end
  return table.concat(parts, " | ") .. (rest ~= "" and (" | rest " .. ("%q"):format(rest:sub(1, 80))) or "")
end

-- --- 1. request smuggling through a body the handler left unread -------------------------------

local SMUGGLED = "XXXXGET /admin HTTP/1.1\r\nHost: a\r\n\r\n" -- 36 bytes: 0x24
local LAST = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" -- ends the exchange

-- The server answered the POST with "read XXXX" and nothing from inside its body: then either
-- the request after the body, or nothing more (the connection closed).
local function not_smuggled(data, ending)
  local responses, rest = helpers.parse_responses(data)
  local desc = summary(responses, rest) .. ", ending " .. ending
  test.ok(not data:find("ADMIN"), "no response to the smuggled /admin: " .. desc)
  test.ok(responses[1], "a response: " .. desc)
  test.eq(responses[1].body, "read XXXX", desc)
  test.ok(#responses == 1 or (#responses == 2 and responses[2].body == "Hello, World!"),
    "one response, or one and the answer to the request after the body: " .. desc)
  test.eq(rest, "", "nothing else: " .. desc)
  test.ok(helpers.closed(ending), "the connection is closed at the end: " .. desc)
end

test.case("smuggling: the unread rest of a chunked body is discarded, never parsed as a request", function()
  local port = serve()
  test.eq(#SMUGGLED, 0x24)
  not_smuggled(helpers.exchange(port, "POST /read4 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" ..
    "24\r\n" .. SMUGGLED .. "\r\n0\r\n\r\n" .. LAST, { idle = 3000 }))
end)

test.case("smuggling: the unread rest of a Content-Length body is discarded, never parsed as a request", function()
  local port = serve()
  not_smuggled(helpers.exchange(port, "POST /read4 HTTP/1.1\r\nHost: a\r\nContent-Length: 36\r\n\r\n" .. SMUGGLED .. LAST,
    { idle = 3000 }))
end)

test.case("smuggling: a chunked body arriving in packets after the handler answered is never parsed as a request", function()
  local port = serve()
  not_smuggled(helpers.exchange(port, {
    "POST /read4 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n24\r\nXXXX", 300,
    "GET /admin HTTP/1.1\r\n", 100, "Host: a\r\n\r\n", 100, "\r\n", 100, "0\r\n\r\n" .. LAST,
  }, { idle = 3000 }))
end)

-- --- 2. output a client never reads ---------------------------------------------------------------

-- Sends `request` in batches of 50 for about 3 s on one connection that never reads, and
-- returns the server's highest RSS (KiB) meanwhile (it stops early past limit_kb).
local function flood_without_reading(port, pid, request, limit_kb)
  local s = assert(tcp.connect(port))
  local batch = request:rep(50)
  local sending, sent = true, 0
  local writer = task.spawn(function()
    while sending and sent < 2000 do
      if not s:write(batch) then return end
      sent = sent + 50
      task.sleep(20)
    end
  end)
  local peak = 0
  local deadline = task.now() + 3000
  while task.now() < deadline do
    task.sleep(50)
    local rss = helpers.rss_kb(pid)
    test.ok(rss, "the server process is still there")
    if rss > peak then peak = rss end
    if peak > limit_kb then break end
  end
  sending = false
  s:close()
  writer:join(2000)
  return peak, sent
end

test.case("memory: pipelined requests for 1 MiB responses a client never reads keep the server's RSS bounded", function()
  local port, pid = serve()
  local peak, sent = flood_without_reading(port, pid, get("/big?mb=1"), 65536)
  test.ok(peak < 65536, ("server RSS stays under 64 MB (%d requests sent): peak %d kB"):format(sent, peak))
  test.eq((helpers.exchange(port, get("/", "Connection: close\r\n"))):match("\r\n\r\n(.*)$"), "Hello, World!",
    "the server still answers")
end)

test.case("memory: pipelined requests for a 4 MiB http.static file a client never reads keep the server's RSS bounded", function()
  local root = test.tmpdir()
  test.sh("head -c 4194304 /dev/urandom > " .. root .. "/big.bin")
  local port, pid = serve(nil, root)
  local peak, sent = flood_without_reading(port, pid, get("/static/big.bin"), 65536)
  test.ok(peak < 65536, ("server RSS stays under 64 MB (%d requests sent): peak %d kB"):format(sent, peak))
end)

-- --- 3. send_timeout ------------------------------------------------------------------------------

test.case("send_timeout: a client that stops reading a large response is disconnected and its handler learns it", function()
  -- a long keepalive_timeout: only the send timeout may end this connection
  local port, _, peer = serve("{ send_timeout = 500, keepalive_timeout = 60000 }")
  local s = assert(tcp.connect(port))
  test.cleanup(function() s:close() end)
  assert(s:write(get("/stream?mb=64")))
  -- the stuck connection must go: then the only connection left is the one asking
  local deadline, conns = task.now() + 10000, nil
  repeat
    task.sleep(100)
    conns = (helpers.exchange(port, get("/conns", "Connection: close\r\n"))):match("\r\n\r\n(%d+)$")
  until conns == "1" or task.now() > deadline
  test.eq(conns, "1", "the connection that stopped reading was closed within 10 s")
  helpers.wait_output(peer, "stream write failed", 2000) -- its res:write returned nil, err
  -- what the client still gets is a truncated response, then the end of the connection
  s:setTimeout(5000)
  local n = 0
  while true do
    local data, err, partial = s:read()
    n = n + #(data or partial or "")
    if not data then
      test.ok(err.name ~= "ETIMEDOUT", "the connection is closed, not just silent")
      break
    end
  end
  test.ok(n < 64 * 1048576, "the response was cut: " .. n .. " bytes")
end)

-- --- 4. truncated responses -----------------------------------------------------------------------

-- Requests path, half-closes at once, waits before reading (so the server sees the FIN while
-- it still has output to write), then reads everything; returns the one response.
local function half_closed(port, path)
  local data, ending = helpers.exchange(port, get(path), { shutdown = true, wait = 300, idle = 5000 })
  local responses, rest = helpers.parse_responses(data)
  test.eq(#responses, 1, path .. ": one response, ending " .. ending .. ": " .. summary(responses, rest))
  return responses[1]
end

test.case("truncation: a client that half-closes after its request gets the whole 8 MiB response", function()
  local port = serve()
  local got = {}
  for _, path in ipairs({ "/big?mb=8", "/stream?mb=8" }) do
    local r = half_closed(port, path)
    got[#got + 1] = ("%s: %d body bytes%s"):format(path, #r.body, r.complete and "" or " (incomplete)")
  end
  test.eq(got, { "/big?mb=8: 8388608 body bytes", "/stream?mb=8: 8388608 body bytes" })
end)

-- Reads a response of size body bytes with a pause after each read (16 MiB: 1-2 s):
-- the response, and how the reading ended when it is incomplete.
local function slow_read(port, path, size)
  local s = assert(tcp.connect(port))
  test.cleanup(function() s:close() end)
  assert(s:write(get(path)))
  s:setTimeout(5000)
  local got, n, want, ending = {}, 0, nil, nil
  local deadline = task.now() + 20000
  while task.now() < deadline and not (want and n >= want) do
    local data, err, partial = s:read()
    data = data or partial
    if data then
      got[#got + 1] = data
      n = n + #data
    end
    if not want then -- the head is in the first pieces
      local head_end = table.concat(got):find("\r\n\r\n", 1, true)
      if head_end then want = head_end + 3 + size end
    end
    if err then ending = err.name break end
    task.sleep(5)
  end
  s:close()
  return helpers.parse_responses(table.concat(got))[1], ending
end

test.case("truncation: a slow reader with a short keepalive_timeout gets every byte of a 16 MiB response", function()
  local port = serve("{ keepalive_timeout = 100 }")
  local r, ending = slow_read(port, "/big?mb=16", 16 * 1048576)
  test.ok(r, "a response head")
  test.ok(r.complete, ("the response is complete: got %d body bytes, then %s"):format(#r.body, tostring(ending)))
  test.eq(#r.body, 16 * 1048576)
end)

-- --- 5. framing the app can break -------------------------------------------------------------

-- A response whose framing agrees with what the wire carries: 500 (the handler raised) or a
-- Content-Length that is the real length.
local function check_followed(port, first, what)
  local data, ending = helpers.exchange(port, first .. get("/", "Connection: close\r\n"), { idle = 3000 })
  local responses, rest = helpers.parse_responses(data)
  local desc = what .. ": " .. summary(responses, rest) .. ", ending " .. ending
  test.ok(responses[1] and responses[1].complete, desc)
  test.eq(rest, "", "no stray bytes: " .. desc)
  local r = responses[1]
  test.ok(r.status == 500 or (r.status == 200 and r.body == "abc"), "a 500 or a correct length: " .. desc)
  if responses[2] then
    test.eq(#responses, 2, desc)
    test.eq(responses[2].body, "Hello, World!", "the next request is answered in sync: " .. desc)
  else
    test.match(r.head, "\r\nConnection: close\r\n", "no second response: the first closed the connection: " .. desc)
    test.ok(helpers.closed(ending), desc)
  end
end

test.case("framing: an app Content-Length contradicting finish()'s body never reaches the wire; keep-alive stays in sync", function()
  local port = serve()
  check_followed(port, get("/setcl?v=5"), "Content-Length 5, body abc")
  check_followed(port, get("/setcl?v=1"), "Content-Length 1, body abc")
end)

test.case("framing: malformed Content-Length values set by the app raise in the handler (500), never reach the wire", function()
  local port = serve()
  local wrong = {}
  for _, v in ipairs({ "%2B5", "-1", "%205", "5%20", "99999999999999999999999", "0x5", "" }) do
    local data = helpers.exchange(port, get("/setcl?v=" .. v, "Connection: close\r\n"), { idle = 1500 })
    local responses, rest = helpers.parse_responses(data)
    local r = responses[1]
    if not r or r.status ~= 500 or r.head:find("Content%-Length: [^%d]") or r.head:find("9999999999", 1, true) then
      wrong[#wrong + 1] = ("'%s' -> %s"):format(v, r and (r.head:match("\r\n(Content%-Length: [^\r]*)") or r.status) or "nothing")
    end
  end
  test.eq(wrong, {}, "values that were not refused with a 500")
end)

test.case("framing: a handler that raises after res:write does not end the chunked body cleanly", function()
  local port = serve()
  local data, ending = helpers.exchange(port, get("/partial"), { idle = 3000 })
  test.ok(helpers.closed(ending), "the connection is closed, ending " .. ending)
  test.ok(data:find("partial ", 1, true), "the partial body was sent: " .. ("%q"):format(data))
  test.ok(not data:find("0\r\n\r\n", 1, true), "no terminating chunk: " .. ("%q"):format(data))
  local responses = helpers.parse_responses(data)
  test.eq(responses[1].complete, false, "the client sees an incomplete body")
  -- curl tells the truncation: a non-zero exit status
  local out, status = test.sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:" .. port .. "/partial")
  test.ok(status ~= 0, "curl reports an error for the cut body (exit status " .. status .. ", " .. out .. ")")
end)

test.case("framing: HEAD on a route that streams with res:write sends no body bytes, keep-alive stays in sync", function()
  local port = serve()
  local data = helpers.exchange(port, "HEAD /streamhead HTTP/1.1\r\nHost: a\r\n\r\n" .. get("/", "Connection: close\r\n"),
    { idle = 1500 })
  local responses, rest = helpers.parse_responses(data, { "HEAD", "GET" })
  test.eq(#responses, 2, "two responses: " .. summary(responses, rest))
  test.eq(rest, "", "no stray bytes")
  test.match(data, "^HTTP/1%.1 200 [^\r]*\r\n.-\r\n\r\nHTTP/1%.1 200 ", "the HEAD head is followed at once by the next response")
  test.eq(responses[2].body, "Hello, World!")
  -- node's http client: HEAD then GET on one keep-alive socket
  local script = helpers.node_script([[
const http = require("http");
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function go(method, path, next) {
  const req = http.request({ port: ]] .. port .. [[, host: "127.0.0.1", path, method, agent }, (res) => {
    let body = "";
    res.on("data", (d) => body += d);
    res.on("end", () => { console.log(method + " " + res.statusCode + " " + body); next(); });
    res.on("aborted", () => { console.log("aborted"); process.exit(1); });
  });
  req.on("error", (e) => { console.log("error " + e.message); process.exit(1); });
  req.end();
}
go("HEAD", "/streamhead", () => go("GET", "/", () => go("GET", "/", () => agent.destroy())));
]])
  test.eq((test.sh("node " .. script)), "HEAD 200 \nGET 200 Hello, World!\nGET 200 Hello, World!\n")
  -- curl: HEAD, then a GET on the same connection
  local out, status = test.sh("curl -sv -I http://127.0.0.1:" .. port .. "/streamhead --next -s http://127.0.0.1:" ..
    port .. "/ 2>&1")
  test.eq(status, 0, out)
  test.match(out, "Re%-using existing connection", "curl kept the connection")
  test.match(out, "Hello, World!$", out)
end)

test.case("framing: writing more than the app's Content-Length: the extra bytes never reach the wire, the connection closes", function()
  local port = serve()
  local data, ending = helpers.exchange(port, get("/over") .. get("/"), { idle = 3000 })
  local head, body = data:match("^(.-\r\n\r\n)(.*)$")
  test.ok(head, "a response: " .. ("%q"):format(data))
  test.match(head, "\r\nContent%-Length: 5\r\n")
  test.ok(#body <= 5 and ("abcde"):sub(1, #body) == body, "at most the 5 declared bytes: " .. ("%q"):format(body))
  test.ok(helpers.closed(ending), "the connection is closed, ending " .. ending)
end)

test.case("framing: writing less than the app's Content-Length, then returning or finishing: the connection closes", function()
  local port = serve()
  for _, path in ipairs({ "/under", "/under?finish=1" }) do
    local data, ending = helpers.exchange(port, get(path) .. get("/"), { idle = 3000 })
    test.ok(not data:find("Hello, World!", 1, true), path .. ": no response read from a desynchronized connection: " .. ("%q"):format(data))
    test.ok(helpers.closed(ending), path .. ": the connection is closed, ending " .. ending)
  end
end)

-- --- 6. a malformed body the handler ignores --------------------------------------------------------

test.case("a malformed chunk size in the head's packet, handler ignores the body: 400 and close", function()
  local port = serve()
  local data, ending = helpers.exchange(port,
    "POST /ignore HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n" .. get("/admin"),
    { idle = 2000 })
  local responses, rest = helpers.parse_responses(data)
  test.eq(#responses, 1, summary(responses, rest))
  test.eq(responses[1].status, 400, summary(responses, rest))
  test.ok(helpers.closed(ending), "the connection is closed, ending " .. ending)
end)

test.case("a malformed chunk arriving after the handler answered: connection closed, nothing parsed from it", function()
  local port = serve()
  local data, ending = helpers.exchange(port, {
    "POST /ignore HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 300,
    "zz\r\n" .. get("/admin"),
  }, { idle = 2000 })
  local responses, rest = helpers.parse_responses(data)
  test.ok(not data:find("ADMIN"), "nothing parsed from the garbage: " .. summary(responses, rest))
  test.eq(#responses, 1, summary(responses, rest))
  test.ok(helpers.closed(ending), "the connection is closed, ending " .. ending)
end)

-- --- 8. res:write holds output -------------------------------------------------------------------

test.case("res:write sends at once: the client sees the first tick while the handler still runs", function()
  local port = serve()
  local ack = test.tmpdir() .. "/ack"
  local s = assert(tcp.connect(port))
  test.cleanup(function() s:close() end)
  assert(s:write(get("/ticks?ack=" .. ack, "Connection: close\r\n")))
  s:setTimeout(8000)
  local got = ""
  while not got:find("tick\n", 1, true) do -- the handler waits for our ack before it ends
    local data, err = s:read()
    test.ok(data, "reading the first tick: " .. tostring(err))
    got = got .. data
  end
  test.write(ack, "")
  while true do
    local data = s:read()
    if not data then break end
    got = got .. data
  end
  local responses = helpers.parse_responses(got)
  test.eq(responses[1] and responses[1].body, "tick\nacked\n",
    "the tick reached the client before the handler ended (it gives up after 5 s without the ack)")
end)

test.case("a finished response leaves at once, not after the handlers of other connections read in the same loop iteration", function()
  local port = serve()
  local function connect()
    local s = assert(tcp.connect(port))
    test.cleanup(function() s:close() end)
    s:setTimeout(10000)
    return s
  end
  local function response(s) -- the next response, whole (keep-alive: a connection that
    local got = "" -- closes after its response flushes at once anyway)
    while true do
      local r = helpers.parse_responses(got)[1]
      if r and r.complete then return r end
      local data = s:read()
      if not data then return nil end
      got = got .. data
    end
  end
  -- two idle keep-alive connections, each answered once: reading on both
  local quick, slow, busy = connect(), connect(), connect()
  for _, s in ipairs({ quick, slow }) do
    assert(s:write(get("/")))
    test.eq(response(s).body, "Hello, World!")
  end
  assert(busy:write(get("/spin?ms=300"))) -- the server's loop is busy with this for 300 ms,
  task.sleep(50)
  assert(quick:write(get("/"))) -- while this request arrives,
  task.sleep(20)
  assert(slow:write(get("/spin?ms=600"))) -- then this one: both are read in the next iteration
  local quick_response = response(quick)
  local quick_at = system.hrtime()
  test.eq(quick_response and quick_response.body, "Hello, World!")
  local slow_ended = tonumber(response(slow).body)
  test.ok(quick_at < slow_ended, ("the quick response arrived %.0f ms after the slow handler (read after it) ended")
    :format((quick_at - slow_ended) / 1e6))
  test.eq(response(busy).status, 200)
end)

-- --- 9. heads at the size of the input block ------------------------------------------------------

-- A request head of exactly size bytes (a padding header makes up the difference).
local function head_of(size, path, extra)
  local start = "POST " .. path .. " HTTP/1.1\r\nHost: a\r\n" .. extra .. "X-Pad: "
  return start .. ("p"):rep(size - #start - 4) .. "\r\n\r\n"
end

test.case("a request head of exactly 16384 bytes followed by a small body is served", function()
  local port = serve("{ body_timeout = 30000 }")
  local head = head_of(16384, "/echo", "Content-Length: 5\r\nConnection: close\r\n")
  test.eq(#head, 16384)
  local data, ending = helpers.exchange(port, head .. "hello", { idle = 6000 })
  local responses, rest = helpers.parse_responses(data)
  test.ok(responses[1], "a response within 6 s (ending " .. ending .. ")")
  test.eq(responses[1].status, 200, summary(responses, rest))
  test.eq(responses[1].body, "hello")
end)

-- The read() calls the process made so far, from /proc/PID/io, or nil.
local function syscr(pid)
  local f = io.open("/proc/" .. pid .. "/io")
  local text = f and f:read("*a")
  if f then f:close() end
  return text and tonumber(text:match("syscr:%s*(%d+)"))
end

test.case("a head just under 16384 bytes with a 1 MiB body: the body arrives intact, read in big pieces", function()
  local port, pid = serve("{ max_body_size = 4194304 }")
  local body = {}
  for i = 1, 65536 do body[i] = ("%015d\n"):format(i) end
  body = table.concat(body)
  test.eq(#body, 1048576)
  local function post(head)
    local before = syscr(pid)
    local data = helpers.exchange(port, head .. body, { idle = 5000 })
    local after = syscr(pid)
    local responses = helpers.parse_responses(data)
    test.ok(responses[1], "a response")
    test.eq(responses[1].status, 200)
    test.ok(responses[1].body == body, "the body came back intact (" .. #responses[1].body .. " bytes)")
    return before and after and after - before
  end
  local extra = "Content-Length: 1048576\r\nConnection: close\r\n"
  local normal = post("POST /echo HTTP/1.1\r\nHost: a\r\n" .. extra .. "\r\n")
  local near_full = post(head_of(16374, "/echo", extra))
  if not normal or not near_full then test.skip("/proc/PID/io is not readable here") end
  test.ok(near_full < math.max(10 * normal, 5000),
    ("read() calls for the body behind a near-full head: %d, behind a small head: %d"):format(near_full, normal))
end)

test.case("max_header_size = 32768 accepts a 20000-byte head (not silently clamped)", function()
  local port = serve("{ max_header_size = 32768 }")
  local head = head_of(20000, "/echo", "Content-Length: 5\r\nConnection: close\r\n")
  local data = helpers.exchange(port, head .. "hello", { idle = 5000 })
  local responses, rest = helpers.parse_responses(data)
  test.ok(responses[1], "a response")
  test.eq(responses[1].status, 200, summary(responses, rest))
  test.eq(responses[1].body, "hello")
end)

-- --- 10. Host ------------------------------------------------------------------------------------

test.case("Host validation (RFC 9112 3.2): bad values, two Hosts, none in 1.1: 400; HTTP/1.0 without Host: 200", function()
  local port = serve()
  local bad = { -- the Host lines of requests that must get a 400
    "Host: a b/c@d\r\n", "Host: a, b\r\n", "Host: a\r\nHost: b\r\n", "Host: a/b\r\n", "Host: user@a\r\n", "",
  }
  local wrong = {}
  for _, host in ipairs(bad) do
    local data = helpers.exchange(port, "GET / HTTP/1.1\r\n" .. host .. "Connection: close\r\n\r\n", { idle = 1500 })
    if not data:find("^HTTP/1%.1 400 ") then wrong[#wrong + 1] = ("%q -> %s"):format(host, data:match("^[^\r]*")) end
  end
  test.eq(wrong, {}, "requests not refused with a 400")
  local ok = { "GET / HTTP/1.0\r\n\r\n", "GET / HTTP/1.1\r\nHost: example.com:8080\r\nConnection: close\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n", "GET / HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n" }
  for _, shape in ipairs(ok) do
    local data = helpers.exchange(port, shape, { idle = 1500 })
    test.match(data, "^HTTP/1%.1 200 ", ("%q"):format(shape))
  end
end)

test.case("an absolute-form target is routed by its path, and its authority wins over Host", function()
  local port = serve()
  local data = helpers.exchange(port, "GET http://example.com/path?q=1 HTTP/1.1\r\nHost: other.org\r\nConnection: close\r\n\r\n",
    { idle = 1500 })
  local responses, rest = helpers.parse_responses(data)
  test.ok(responses[1], "a response")
  test.eq(responses[1].status, 200, "the router's /path answers: " .. summary(responses, rest))
  test.match(responses[1].body, "^path q=1 ", "req.path and req.query from the target")
  test.eq(responses[1].body, "path q=1 host=example.com", "req.headers.host is the target's authority")
end)

-- --- 11. the server's own error responses; reason phrases ---------------------------------------

test.case("the server's own error responses (400, 408, 413, 414, 431, 501) carry Date and are access-logged", function()
  local dir = test.tmpdir()
  local port = serve('{ header_timeout = 300, max_url_length = 100, max_header_size = 2048, max_body_size = 1000, ' ..
    'access_log = "' .. dir .. '/access.log" }')
  local shapes = {
    [400] = "GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
    [408] = "GET / HTTP/1.1\r\nHost: a\r\n",
    [413] = "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n",
    [414] = "GET /" .. ("a"):rep(200) .. " HTTP/1.1\r\nHost: a\r\n\r\n",
    [431] = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " .. ("b"):rep(3000) .. "\r\n\r\n",
    [501] = "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
  }
  for status, shape in pairs(shapes) do
    local data = helpers.exchange(port, shape, { idle = 3000 })
    test.match(data, "^HTTP/1%.1 " .. status .. " ", "status " .. status)
    test.match(data, "\r\nDate: %a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT\r\n", "Date in the " .. status)
  end
  local deadline, text = task.now() + 3000, ""
  repeat
    task.sleep(50)
    local f = io.open(dir .. "/access.log")
    text = f and f:read("*a") or ""
    if f then f:close() end
  until select(2, text:gsub("\n", "")) >= 6 or task.now() > deadline
  for status in pairs(shapes) do
    test.match(text, '" ' .. status .. ' ', "a log line for the " .. status .. ": " .. ("%q"):format(text))
  end
end)

test.case("res:status sends the IANA reason phrase", function()
  local port = serve()
  local phrases = {
    [421] = "Misdirected Request", [422] = "Unprocessable Content", [425] = "Too Early",
    [426] = "Upgrade Required", [428] = "Precondition Required", [451] = "Unavailable For Legal Reasons",
    [506] = "Variant Also Negotiates", [507] = "Insufficient Storage", [508] = "Loop Detected",
    [511] = "Network Authentication Required",
  }
  local wrong = {}
  for code, phrase in pairs(phrases) do
    local data = helpers.exchange(port, get("/status?code=" .. code, "Connection: close\r\n"), { idle = 1500 })
    local line = data:match("^([^\r\n]*)")
    if line ~= "HTTP/1.1 " .. code .. " " .. phrase then wrong[#wrong + 1] = line end
  end
  table.sort(wrong)
  test.eq(wrong, {}, "status lines with a wrong reason phrase")
end)

-- --- 13. out of memory inside callbacks fails requests, not the process ------------------------

test.case("out of memory under load fails some requests, never the process", function()
  -- A 400 MB address-space limit and handlers that each hold 20 MiB across a wait: memory
  -- runs out in handlers and in the C callbacks that build requests. Every Lua entry from
  -- a callback is protected, so only the requests involved fail.
  test.static() -- AddressSanitizer needs far more address space than the limit
  local dir = test.tmpdir()
  test.write(dir .. "/server.lua", [[
local http = require "http"
local task = require "task"
local server = assert(http.createServer(0, function(req, res)
  local n = tonumber(req.query.mb) or 0
  local big = n > 0 and ("x"):rep(n * 1024 * 1024) .. req.url or ""
  task.sleep(200)
  res:finish(tostring(#big))
end, { host = "127.0.0.1" }))
print("listening " .. server:address().port)
io.stdout:flush()
]])
  local peer = helpers.start("ulimit -v 400000; exec " .. test.quote(test.luaio) .. " run " .. dir .. "/server.lua")
  local port = tonumber(helpers.wait_output(peer, "listening (%d+)"))
  local tasks = {}
  for i = 1, 60 do
    tasks[i] = task.spawn(function()
      return helpers.exchange(port, "GET /?mb=20&i=" .. i .. " HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        { idle = 10000 })
    end)
  end
  local codes = {}
  for i = 1, 60 do
    local _, data = tasks[i]:join()
    local code = data and data:match("^HTTP/1%.1 (%d+)") or "none"
    codes[code] = (codes[code] or 0) + 1
  end
  local data = helpers.exchange(port, "GET /?mb=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", { idle = 5000 })
  test.match(data, "^HTTP/1%.1 200 ", "the server still answers after the load")
  test.match(data, "\r\n\r\n1048582$")
  test.ok((codes["200"] or 0) > 0, "some requests were served")
  test.eq(select(2, test.sh("kill -0 " .. peer.pid)), 0, "the process is alive")
end)

-- --- 14. the response's state the app sets: status, Connection, bodyless statuses ----------------

test.case("a handler that asks for a 1xx status gets a 500, never a lone 1xx that the next response would answer", function()
  local port = serve()
  for _, code in ipairs({ 100, 101, 103 }) do
    for _, version in ipairs({ "1.1", "1.0" }) do
      local first = version == "1.1" and get("/status?code=" .. code)
        or "GET /status?code=" .. code .. " HTTP/1.0\r\n\r\n"
      local data, ending = helpers.exchange(port, first .. get("/admin"), { idle = 3000 })
      local responses, rest = helpers.parse_responses(data)
      local desc = code .. " HTTP/" .. version .. ": " .. summary(responses, rest) .. ", ending " .. ending
      test.ok(not data:find("^HTTP/1%.1 1"), "no interim response first: " .. desc)
      test.eq(#responses, 1, desc)
      test.eq(responses[1].status, 500, desc)
      test.ok(not data:find("ADMIN"), "the pipelined request is not taken as this one's answer: " .. desc)
      test.ok(helpers.closed(ending), desc)
    end
  end
end)

test.case("an app's Connection: close closes the connection after its response; the server's Connection line is the only one", function()
  local port = serve()
  for _, shape in ipairs({ "v=close", "v=Close", "v=keep-alive,%20close", "v=close&append=1" }) do
    local data, ending = helpers.exchange(port, get("/hdr?n=Connection&" .. shape) .. get("/admin"), { idle = 3000 })
    local responses, rest = helpers.parse_responses(data)
    local desc = shape .. ": " .. summary(responses, rest) .. ", ending " .. ending
    test.eq(#responses, 1, "no answer to the request after it: " .. desc)
    test.eq(responses[1] and responses[1].count.connection, 1, "one Connection line: " .. desc)
    test.ok(helpers.closed(ending), "closed after the response: " .. desc)
  end
  -- keep-alive asked by the app on a connection the server closes (HTTP/1.0, Connection: close)
  for _, request in ipairs({ "GET /hdr?n=Connection&v=keep-alive HTTP/1.0\r\n\r\n",
      get("/hdr?n=Connection&v=keep-alive", "Connection: close\r\n") }) do
    local data, ending = helpers.exchange(port, request .. get("/admin"), { idle = 3000 })
    local responses, rest = helpers.parse_responses(data)
    local desc = ("%q"):format(request) .. ": " .. summary(responses, rest) .. ", ending " .. ending
    test.eq(#responses, 1, desc)
    test.eq(responses[1].count.connection, 1, "one Connection line: " .. desc)
    test.eq(responses[1].headers.connection, "close", "the server's decision: " .. desc)
    test.ok(helpers.closed(ending), desc)
  end
  -- keep-alive asked on a connection the server keeps: kept, one line at most
  local data, ending = helpers.exchange(port, get("/hdr?n=Connection&v=keep-alive") .. get("/admin", "Connection: close\r\n"),
    { idle = 3000 })
  local responses, rest = helpers.parse_responses(data)
  local desc = summary(responses, rest) .. ", ending " .. ending
  test.eq(#responses, 2, desc)
  test.ok((responses[1].count.connection or 0) <= 1, desc)
  test.ok(responses[1].headers.connection ~= "close", desc)
end)

test.case("Expect: 100-continue, the handler does not read: the body already here is dropped and the connection kept; else Connection: close", function()
  local port = serve()
  local post = "POST /ignore HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
  -- the whole body came with the head (as clients that do not wait send it): kept, like nginx
  for _, body in ipairs({ "hello", "5\r\nhello\r\n0\r\n\r\n" }) do
    local request = body == "hello" and post or post:gsub("Content%-Length: 5", "Transfer-Encoding: chunked")
    local data, ending = helpers.exchange(port, request .. body .. get("/admin", "Connection: close\r\n"), { idle = 3000 })
    local responses, rest = helpers.parse_responses(data)
    local desc = summary(responses, rest) .. ", ending " .. ending
    test.eq(#responses, 2, desc)
    test.eq(responses[1].body, "ignored", desc)
    test.eq(responses[1].headers.connection, nil, "no Connection: close: " .. desc)
    test.eq(responses[2] and responses[2].body, "ADMIN", desc)
  end
  -- the client waits for 100 Continue that never comes: the answer says the connection ends
  local data, ending = helpers.exchange(port, post, { idle = 3000 })
  local responses, rest = helpers.parse_responses(data)
  local desc = summary(responses, rest) .. ", ending " .. ending
  test.eq(#responses, 1, desc)
  test.eq(responses[1].headers.connection, "close", "the close is announced: " .. desc)
  test.ok(helpers.closed(ending), desc)
  -- luaio's client (it sends the body with the head) on one pooled connection: every POST answered
  local got = {}
  for i = 1, 3 do
    local res, err = require("http").request({ url = "http://127.0.0.1:" .. port .. "/ignore", method = "POST",
      body = "hello", headers = { Expect = "100-continue" } })
    got[i] = res and (res.status .. " " .. res:body()) or (err.name .. " " .. err.message)
  end
  test.eq(got, { "200 ignored", "200 ignored", "200 ignored" })
end)

test.case("an unread Content-Length body over 1 MiB: the answer says Connection: close, then the connection closes", function()
  local port = serve("{ max_body_size = 8388608 }")
  local data, ending = helpers.exchange(port,
    "POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: 2097152\r\n\r\n" .. ("x"):rep(65536), { idle = 3000 })
  local responses, rest = helpers.parse_responses(data)
  local desc = summary(responses, rest) .. ", ending " .. ending
  test.eq(#responses, 1, desc)
  test.eq(responses[1].body, "ignored", desc)
  test.eq(responses[1].headers.connection, "close", "the close is announced: " .. desc)
  test.ok(helpers.closed(ending), desc)
  -- up to 1 MiB unread: dropped, the connection kept, nothing to announce
  data, ending = helpers.exchange(port, "POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n" ..
    ("x"):rep(1048576) .. get("/admin", "Connection: close\r\n"), { idle = 3000 })
  responses, rest = helpers.parse_responses(data)
  desc = summary(responses, rest) .. ", ending " .. ending
  test.eq(#responses, 2, desc)
  test.eq(responses[1].headers.connection, nil, desc)
  test.eq(responses[2].body, "ADMIN", desc)
end)

test.case("304 and HEAD keep an app's Content-Length without a body; 204 never has one; 205 has no content (Content-Length: 0)", function()
  local port = serve()
  local cases = { -- request, status, Content-Length expected in the head (false: none)
    { get("/bodyless?code=304&cl=1234"), 304, "1234" },
    { "HEAD /bodyless?code=200&cl=1234 HTTP/1.1\r\nHost: a\r\n\r\n", 200, "1234" },
    { get("/bodyless?code=204&cl=1234"), 204, false },
    { get("/bodyless?code=204&body=SHOULD-NOT-APPEAR"), 204, false },
    { get("/bodyless?code=205&body=SHOULD-NOT-APPEAR"), 205, "0" },
    { get("/bodyless?code=205&body=SHOULD-NOT-APPEAR&write=1"), 205, "0" },
    { get("/bodyless?code=205&cl=17&body=SHOULD-NOT-APPEAR"), 205, "0" },
    { "GET /bodyless?code=205&body=SHOULD-NOT-APPEAR&write=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 205, "0" },
  }
  for _, case in ipairs(cases) do
    local request, status, length = case[1], case[2], case[3]
    local data, ending = helpers.exchange(port, request .. get("/admin", "Connection: close\r\n"), { idle = 3000 })
    local responses, rest = helpers.parse_responses(data, { request:match("^HEAD") and "HEAD" or "GET", "GET" })
    local desc = ("%q"):format(request) .. ": " .. summary(responses, rest) .. ", ending " .. ending
    test.ok(not data:find("SHOULD-NOT-APPEAR", 1, true), "no content: " .. desc)
    test.eq(#responses, 2, "the connection goes on in sync: " .. desc)
    test.eq(responses[1].status, status, desc)
    test.eq(responses[1].headers["content-length"] or false, length, desc)
    test.eq(responses[1].headers["transfer-encoding"], nil, desc)
    test.eq(responses[2] and responses[2].body, "ADMIN", desc)
  end
end)

test.case("an unread chunked body is dropped up to 1 MiB, then the connection closes (as for Content-Length)", function()
  local port = serve()
  local head = "POST /ignore HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
  local chunk = "10000\r\n" .. ("x"):rep(65536) .. "\r\n"
  -- 4 MiB in 64 KiB chunks after the answer: the server stops dropping them past 1 MiB
  local data, ending = helpers.exchange(port, { head, 300, chunk:rep(64), "0\r\n\r\n" .. get("/admin") }, { idle = 4000 })
  local responses, rest = helpers.parse_responses(data)
  local desc = summary(responses, rest) .. ", ending " .. ending
  test.eq(#responses, 1, desc)
  test.eq(responses[1].body, "ignored", desc)
  test.ok(not data:find("ADMIN"), "the request after the body is not served: " .. desc)
  test.ok(helpers.closed(ending), "closed: " .. desc)
  -- under 1 MiB (in chunks of every size, across reads): dropped, the connection kept
  data, ending = helpers.exchange(port, { head, 300, chunk:rep(8), "ff\r\n" .. ("z"):rep(255) .. "\r\n",
    100, chunk:rep(7), "0\r\n\r\n" .. get("/admin", "Connection: close\r\n") }, { idle = 4000 })
  responses, rest = helpers.parse_responses(data)
  desc = summary(responses, rest) .. ", ending " .. ending
  test.eq(#responses, 2, desc)
  test.eq(responses[2] and responses[2].body, "ADMIN", desc)
end)

test.case("a request target over max_url_length gets 414 however its bytes arrive", function()
  local port = serve()
  local wrong = {}
  for _, size in ipairs({ 9000, 20000, 40000 }) do
    local request = "GET /" .. ("a"):rep(size) .. " HTTP/1.1\r\nHost: a\r\n\r\n"
    for _, parts in ipairs({ { request }, { request:sub(1, 17000), 300, request:sub(17001) },
        { request:sub(1, 100), 300, request:sub(101) } }) do
      local data = helpers.exchange(port, parts, { idle = 3000 })
      local line = data:match("^[^\r]*")
      if line ~= "HTTP/1.1 414 URI Too Long" then wrong[#wrong + 1] = ("%d bytes in %d writes: %s"):format(size, #parts, line) end
    end
  end
  -- a request line past max_url_length followed by headers that fill the buffer: 414 too
  local data = helpers.exchange(port, "GET /" .. ("a"):rep(9000) .. " HTTP/1.1\r\nHost: a\r\nX-Big: " .. ("b"):rep(30000),
    { idle = 3000 })
  if not data:find("^HTTP/1%.1 414 ") then wrong[#wrong + 1] = "long target, then a buffer full of headers: " .. data:match("^[^\r]*") end
  test.eq(wrong, {})
end)

test.case("a header name over 255 bytes gets 431 (two such names must not merge in req.headers)", function()
  local port = serve()
  local long = ("X"):rep(255)
  local data, ending = helpers.exchange(port, "GET / HTTP/1.1\r\nHost: a\r\n" .. long .. "-one: 1\r\n" .. long .. "-two: 2\r\n\r\n",
    { idle = 3000 })
  test.match(data, "^HTTP/1%.1 431 ")
  test.ok(helpers.closed(ending), ending)
  data = helpers.exchange(port, "GET / HTTP/1.1\r\nHost: a\r\n" .. long .. ": 1\r\nConnection: close\r\n\r\n", { idle = 3000 })
  test.match(data, "^HTTP/1%.1 200 ", "255 bytes are fine")
end)

test.case("a request target with a fragment ('#'), origin-form or absolute-form, gets 400", function()
  local port = serve()
  for _, target in ipairs({ "/path#frag", "/path?q=1#frag", "/#", "http://a/path#frag", "http://a#frag", "http://a/?q#" }) do
    local data, ending = helpers.exchange(port, "GET " .. target .. " HTTP/1.1\r\nHost: a\r\n\r\n", { idle = 3000 })
    test.match(data, "^HTTP/1%.1 400 ", target)
    test.ok(helpers.closed(ending), target .. ": " .. ending)
  end
  test.match((helpers.exchange(port, get("/path?q=%23", "Connection: close\r\n"))), "\r\n\r\npath q=# ", "an encoded # is data")
end)
