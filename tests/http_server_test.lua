-- The HTTP server against real clients: curl, ab, wrk, node's http client, and raw bytes
-- through socat for the shapes clients do not send (pipelining in one packet, smuggling).
local test = require "test"
local task = require "task"
local tcp = require "tcp"
local helpers = require "tests.helpers"

local q = test.quote

local APP = [[
local http = require "http"
local task = require "task"
local options = %s
options.host = "127.0.0.1"
local server = assert(http.createServer(0, function(req, res)
  local path = req.path
  if path == "/" then
    res:setHeader("Content-Type", "text/plain")
    return res:finish("Hello, World!")
  elseif path == "/echo" then
    local body, err = req:body()
    if not body then res:status(400) return res:finish(tostring(err)) end
    return res:finish(body)
  elseif path == "/count" then -- streams the body, counts bytes: constant memory
    local n = 0
    while true do
      local chunk, err = req:read(65536)
      if not chunk then
        if err then res:status(400) return res:finish(tostring(err)) end
        break
      end
      n = n + #chunk
    end
    local f = io.open("/proc/self/status")
    local rss = f:read("*a"):match("VmRSS:%%s+(%%d+)")
    f:close()
    return res:finish(("%%d bytes, rss %%s kB"):format(n, rss))
  elseif path == "/info" then
    local q = req.query
    local b = type(q.b) == "table" and table.concat(q.b, ",") or tostring(q.b)
    return res:finish(("%%s|%%s|%%s|%%s|%%s|a=%%s|b=%%s"):format(req.method, req.url, req.path,
      req.httpVersion, tostring(req.headers["x-Test"]), tostring(q.a), b))
  elseif path == "/stream" then
    for i = 1, 3 do res:write("part" .. i .. "\n") task.sleep(5) end
    return res:finish()
  elseif path == "/error" then
    error("handler failed on purpose")
  elseif path == "/slow" then
    task.sleep(tonumber(req.query.ms) or 200)
    return res:finish("slow done")
  elseif path == "/headers" then
    res:setHeader("X-One", "1")
    res:setHeader("X-One", "replaced")
    res:setHeader("X-Two", 2)
    res.status = 201
    return res:finish("")
  elseif path == "/nothing" then
    return -- no finish: the server finishes it
  elseif path == "/late" then -- the headers, looked at only after a big body was read
    local body = req:body()
    return res:finish(#body .. " " .. tostring(req.headers["x-late"]))
  elseif path == "/drop" then -- reads the body, ignores any error, answers nothing
    req:body()
    return
  end
  res:status(404)
  res:finish("not found")
end, options))
print("listening " .. server:address().port)
io.stdout:flush()
]]

local function serve(options)
  return helpers.serve(APP:format(options or "{}"))
end

-- Sends raw bytes, returns everything the server answers before closing (or timeout s).
local function raw(port, bytes, timeout)
  local dir = test.tmpdir()
  test.write(dir .. "/req", bytes)
  return test.sh("socat -t " .. (timeout or 1) .. " - TCP4:127.0.0.1:" .. port .. " < " .. dir .. "/req")
end

test.case("curl gets hello world with the headers a client expects", function()
  local port = serve()
  local out, status = test.sh("curl -si http://127.0.0.1:" .. port .. "/")
  test.eq(status, 0)
  test.match(out, "^HTTP/1.1 200 OK\r\n")
  test.match(out, "\r\nContent%-Type: text/plain\r\n")
  test.match(out, "\r\nContent%-Length: 13\r\n")
  test.match(out, "\r\nServer: luaio\r\n")
  test.match(out, "\r\nDate: %a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT\r\n")
  test.match(out, "\r\n\r\nHello, World!$")
end)

test.case("method, url, path, query (decoded, repeated), headers (any case), version", function()
  local port = serve()
  local out = test.sh("curl -s -H 'X-Test: yes' 'http://127.0.0.1:" .. port .. "/info?a=1%202&b=x+y&b=z'")
  test.eq(out, "GET|/info?a=1%202&b=x+y&b=z|/info|1.1|yes|a=1 2|b=x y,z")
  out = test.sh("curl -s -0 http://127.0.0.1:" .. port .. "/info")
  test.match(out, "|1.0|")
end)

test.case("request bodies: Content-Length, chunked upload, 100-continue", function()
  local port = serve()
  test.eq((test.sh("curl -s -d 'hello body' http://127.0.0.1:" .. port .. "/echo")), "hello body")
  local dir = test.tmpdir()
  test.sh("head -c 60000 /dev/urandom > " .. dir .. "/b")
  local want = test.sh("sha256sum < " .. dir .. "/b")
  test.eq(test.sh("curl -s -H 'Transfer-Encoding: chunked' --data-binary @" .. dir ..
    "/b http://127.0.0.1:" .. port .. "/echo | sha256sum"), want, "chunked upload")
  local out = test.sh("curl -sv -H 'Expect: 100-continue' --data-binary @" .. dir ..
    "/b http://127.0.0.1:" .. port .. "/echo -o " .. dir .. "/got 2>&1")
  test.match(out, "< HTTP/1.1 100 Continue")
  test.eq(test.sh("sha256sum < " .. dir .. "/got"), want, "100-continue body")
end)

test.case("headers read after a body bigger than the input buffer are intact", function()
  local port = serve("{ max_body_size = 4000000 }")
  local dir = test.tmpdir()
  test.sh("head -c 1000000 /dev/zero > " .. dir .. "/b")
  test.eq((test.sh("curl -s -H 'X-Late: still here' --data-binary @" .. dir .. "/b http://127.0.0.1:" .. port .. "/late")),
    "1000000 still here")
  test.eq((test.sh("curl -s -H 'X-Late: chunked too' -H 'Transfer-Encoding: chunked' --data-binary @" .. dir ..
    "/b http://127.0.0.1:" .. port .. "/late")), "1000000 chunked too")
end)

test.case("a body split across many tiny packets arrives whole", function()
  local port = serve()
  -- perl writes the request a few bytes at a time with pauses, so each piece is its own packet
  local out = test.sh("perl -MIO::Socket::INET -e '$| = 1; my $s = IO::Socket::INET->new(\"127.0.0.1:" .. port ..
    "\") or die; my $body = \"x\" x 300; my $r = \"POST /echo HTTP/1.1\\r\\nHost: a\\r\\nContent-Length: 300\\r\\nConnection: close\\r\\n\\r\\n$body\";" ..
    " for my $i (0 .. length($r) / 7) { print $s substr($r, $i * 7, 7); select(undef, undef, undef, 0.002) } local $/; print <$s>'")
  test.match(out, "^HTTP/1.1 200 OK")
  test.match(out, "\r\n\r\n" .. ("x"):rep(300) .. "$")
end)

test.case("pipelined requests in one packet are answered in order", function()
  local port = serve()
  local req = "GET /info?a=1 HTTP/1.1\r\nHost: a\r\n\r\n" ..
    "GET /slow?ms=30 HTTP/1.1\r\nHost: a\r\n\r\n" ..
    "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" ..
    "GET /info?a=4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
  local out = raw(port, req, 2)
  local bodies = {}
  for body in out:gmatch("\r\n\r\n([^H]*)") do bodies[#bodies + 1] = body end
  test.eq(bodies, { "GET|/info?a=1|/info|1.1|nil|a=1|b=nil", "slow done", "hello", "GET|/info?a=4|/info|1.1|nil|a=4|b=nil" })
  local _, count = out:gsub("HTTP/1.1 200 OK", "")
  test.eq(count, 4)
  test.match(out, "Connection: close\r\n")
end)

test.case("HEAD gets the headers of GET and no body; keep-alive by default; Connection: close", function()
  local port = serve()
  local out = test.sh("curl -sI http://127.0.0.1:" .. port .. "/")
  test.match(out, "Content%-Length: 13\r\n")
  test.ok(not out:find("Hello"), "no body")
  -- two requests, one connection (curl reuses it and says so)
  out = test.sh("curl -sv http://127.0.0.1:" .. port .. "/ http://127.0.0.1:" .. port .. "/ 2>&1")
  test.match(out, "Re%-using existing connection")
  out = raw(port, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
  test.match(out, "Connection: close\r\n")
  out = raw(port, "GET / HTTP/1.0\r\n\r\n")
  test.match(out, "^HTTP/1.1 200 OK")
  test.match(out, "Connection: close\r\n", "HTTP/1.0 without keep-alive closes")
  out = raw(port, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
  test.match(out, "Connection: keep%-alive\r\n")
end)

test.case("streaming writes are chunked; HTTP/1.0 gets a close-delimited body", function()
  local port = serve()
  local out = raw(port, "GET /stream HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
  test.match(out, "Transfer%-Encoding: chunked\r\n")
  test.match(out, "\r\n\r\n6\r\npart1\n\r\n6\r\npart2\n\r\n6\r\npart3\n\r\n0\r\n\r\n$")
  out = raw(port, "GET /stream HTTP/1.0\r\n\r\n")
  test.ok(not out:find("chunked"), "no chunked for HTTP/1.0")
  test.match(out, "\r\n\r\npart1\npart2\npart3\n$")
  test.eq((test.sh("curl -s http://127.0.0.1:" .. port .. "/stream")), "part1\npart2\npart3\n")
end)

test.case("setHeader replaces, accepts numbers; res.status = code; a handler that does not finish", function()
  local port = serve()
  local out = test.sh("curl -si http://127.0.0.1:" .. port .. "/headers")
  test.match(out, "^HTTP/1.1 201 Created\r\n")
  test.match(out, "X%-One: replaced\r\n")
  test.ok(not out:find("X%-One: 1\r\n"), "the first value is gone")
  test.match(out, "X%-Two: 2\r\n")
  out = test.sh("curl -si http://127.0.0.1:" .. port .. "/nothing")
  test.match(out, "^HTTP/1.1 200 OK\r\n")
  test.match(out, "Content%-Length: 0\r\n")
end)

test.case("an error in the handler gives 500, is logged with a traceback, the server goes on", function()
  local port, peer = serve()
  local out = test.sh("curl -si http://127.0.0.1:" .. port .. "/error")
  test.match(out, "^HTTP/1.1 500 Internal Server Error\r\n")
  test.match(out, "Connection: close\r\n")
  test.eq((test.sh("curl -s http://127.0.0.1:" .. port .. "/")), "Hello, World!")
  local log = helpers.wait_output(peer, "(error in request handler: [^\n]*)")
  test.match(log, "server.lua:%d+: handler failed on purpose")
  test.match(helpers.output(peer), "stack traceback:")
end)

-- The status of the first response line, for a raw request.
local function status_of(port, bytes)
  return tonumber(raw(port, bytes):match("^HTTP/1.1 (%d+)"))
end

test.case("limits: URL length 414, header size 431, header count 431, body size 413", function()
  local port = serve("{ max_url_length = 100, max_header_size = 2048, max_headers = 10, max_body_size = 1000 }")
  test.eq(status_of(port, "GET /" .. ("a"):rep(200) .. " HTTP/1.1\r\nHost: a\r\n\r\n"), 414)
  test.eq(status_of(port, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " .. ("b"):rep(3000) .. "\r\n\r\n"), 431)
  local many = {}
  for i = 1, 20 do many[i] = "X-H" .. i .. ": v\r\n" end
  test.eq(status_of(port, "GET / HTTP/1.1\r\nHost: a\r\n" .. table.concat(many) .. "\r\n"), 431)
  test.eq(status_of(port, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n"), 413)
  -- a chunked body over the limit is caught while it is read: the handler gets EMSGSIZE,
  -- and the server answers 413 whatever the handler then does (it cannot answer itself)
  local chunk = ("c"):rep(600)
  local chunked = "Host: a\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n" .. chunk .. "\r\n258\r\n" .. chunk .. "\r\n0\r\n\r\n"
  test.eq(status_of(port, "POST /echo HTTP/1.1\r\n" .. chunked), 413)
  test.eq(status_of(port, "POST /drop HTTP/1.1\r\n" .. chunked), 413)
  -- and the server still answers
  test.eq((test.sh("curl -s http://127.0.0.1:" .. port .. "/")), "Hello, World!")
end)

test.case("malformed requests get 400 and the connection is closed", function()
  local port = serve()
  local shapes = {
    "GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",             -- space in a name
    "GET / HTTP/1.1\r\nHost : a\r\n\r\n",                               -- space before colon
    "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n",             -- obs-fold
    "GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n",                          -- bare CR
    "GET / HTTP/1.1\nHost: a\n\n",                                      -- bare LF
    "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",                                -- bad token in method
    "GET / HTTP/2.0\r\nHost: a\r\n\r\n",                                -- version
    "GET / HTTP/1.1\r\n\r\n",                                           -- no Host in 1.1
  }
  for i, shape in ipairs(shapes) do
    local out = raw(port, shape)
    test.match(out, "^HTTP/1.1 400 Bad Request\r\n", "shape " .. i)
    test.match(out, "Connection: close\r\n", "shape " .. i)
  end
end)

test.case("request smuggling shapes are all rejected", function()
  local port = serve()
  local shapes = {
    "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!",
    "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
    "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;" .. ("e"):rep(5000) .. "\r\nhello\r\n0\r\n\r\n",
  }
  for i, shape in ipairs(shapes) do
    local status = status_of(port, shape)
    test.ok(status == 400 or status == 501 or status == 413, ("shape %d rejected, got %s"):format(i, tostring(status)))
  end
  test.eq((test.sh("curl -s http://127.0.0.1:" .. port .. "/")), "Hello, World!", "still serving")
end)

test.case("slowloris: a client that sends headers too slowly gets 408 and is closed", function()
  local port = serve("{ header_timeout = 300 }")
  local s = assert(tcp.connect(port))
  test.cleanup(function() s:close() end)
  local started = task.now()
  s:write("GET / HTTP/1.1\r\nHost: a\r\n")
  for _ = 1, 3 do task.sleep(100) s:write("X-Slow: 1\r\n") end -- trickling bytes does not help
  s:setTimeout(3000)
  local chunks = {}
  while true do
    local data = s:read()
    if not data then break end
    chunks[#chunks + 1] = data
  end
  test.match(table.concat(chunks), "^HTTP/1.1 408 Request Timeout\r\n")
  local waited = task.now() - started
  test.ok(waited >= 250 and waited < 2500, "closed after about the header timeout, took " .. waited)
end)

test.case("a body that stops arriving: body_timeout gives 408", function()
  local port = serve("{ body_timeout = 200 }")
  local s = assert(tcp.connect(port))
  test.cleanup(function() s:close() end)
  local started = task.now()
  s:write("POST /drop HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly ten b")
  s:setTimeout(3000)
  local got = {}
  while true do
    local data = s:read()
    if not data then break end
    got[#got + 1] = data
  end
  test.match(table.concat(got), "^HTTP/1.1 408 Request Timeout\r\n")
  test.ok(task.now() - started >= 150, "after about the body timeout")
end)

test.case("a silent keep-alive connection is closed after keepalive_timeout", function()
  local port = serve("{ keepalive_timeout = 200 }")
  local s = assert(tcp.connect(port))
  s:write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
  s:setTimeout(3000)
  local started = task.now()
  local got = {}
  while true do
    local data, err = s:read()
    if not data then test.eq(err.name, "EOF") break end
    got[#got + 1] = data
  end
  s:close()
  test.match(table.concat(got), "Hello, World!$")
  test.ok(task.now() - started >= 150, "kept open for about the idle timeout")
end)

test.case("max_requests closes the connection after that many requests", function()
  local port = serve("{ max_requests = 2 }")
  local out = raw(port, ("GET / HTTP/1.1\r\nHost: a\r\n\r\n"):rep(3))
  local _, count = out:gsub("HTTP/1.1 200", "")
  test.eq(count, 2)
  test.match(out, "Connection: close\r\n")
end)

test.case("a 1 GiB streamed upload is counted in constant memory", function()
  local port = serve("{ max_body_size = 2 * 1024 * 1024 * 1024 }")
  local out, status = test.sh("head -c 1073741824 /dev/zero | curl -s -T - -H 'Transfer-Encoding: chunked' " ..
    "http://127.0.0.1:" .. port .. "/count")
  test.eq(status, 0)
  local n, rss = out:match("^(%d+) bytes, rss (%d+) kB$")
  test.eq(tonumber(n), 1073741824, out)
  test.ok(tonumber(rss) < 20000, "server RSS stayed small: " .. tostring(rss) .. " kB")
end)

test.case("ab: 2,000 keep-alive requests, 20 at a time, none failed", function()
  local port = serve()
  local out, status = test.sh("ab -q -k -n 2000 -c 20 http://127.0.0.1:" .. port .. "/ 2>&1")
  test.eq(status, 0, out)
  test.match(out, "Complete requests:%s+2000")
  test.match(out, "Failed requests:%s+0")
  test.match(out, "Keep%-Alive requests:%s+2000")
end)

test.case("wrk: 2 seconds of load, pipelined too, every response 2xx, memory stays small", function()
  local port = serve()
  local out, status = test.sh("wrk -t1 -c32 -d2 http://127.0.0.1:" .. port .. "/")
  test.eq(status, 0, out)
  test.ok(not out:find("Non%-2xx"), out)
  test.ok(not out:find("Socket errors"), out)
  test.ok(tonumber(out:match("(%d+) requests in")) > 1000, out)
  local script = test.tmpdir() .. "/pipeline.lua"
  test.write(script, [=[
init = function(args) local r = {} for i = 1, 16 do r[i] = wrk.format(nil, "/") end req = table.concat(r) end
request = function() return req end
]=])
  out, status = test.sh("wrk -t1 -c32 -d2 -s " .. script .. " http://127.0.0.1:" .. port .. "/")
  test.eq(status, 0, out)
  test.ok(not out:find("Non%-2xx") and not out:find("Socket errors"), out)
  -- every request leaves garbage only: after a few hundred thousand, RSS is still small
  local rss = tonumber(test.sh("curl -s http://127.0.0.1:" .. port .. "/count"):match("rss (%d+) kB"))
  test.ok(rss and rss < 30000, "server RSS after the load: " .. tostring(rss) .. " kB")
end)

test.case("node's http client: keep-alive agent, POST bodies, parallel requests", function()
  local port = serve()
  local script = helpers.node_script([[
const http = require("http");
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
let done = 0, bad = 0;
const N = 200;
for (let i = 0; i < N; i++) {
  const body = "n" + i;
  const req = http.request({ port: ]] .. port .. [[, host: "127.0.0.1", path: "/echo", method: "POST", agent,
    headers: { "Content-Length": body.length } }, (res) => {
    let got = "";
    res.on("data", (d) => got += d);
    res.on("end", () => {
      if (res.statusCode !== 200 || got !== body) bad++;
      if (++done === N) { console.log(`done ${done} bad ${bad}`); agent.destroy(); }
    });
  });
  req.on("error", (e) => { console.log("error " + e.message); process.exit(1); });
  req.end(body);
}
]])
  test.eq((test.sh("node " .. script)), "done 200 bad 0\n")
end)

-- --- router and static files ------------------------------------------------------------------

local ROUTED = [[
local http = require "http"
local router = http.router()
router:get("/users/:id", function(req, res) res:finish("user " .. req.params.id) end)
router:post("/users/:id/posts/:post", function(req, res)
  res:finish(req.params.id .. "/" .. req.params.post .. ":" .. req:body())
end)
router:get("/files/*", http.static(arg[1]))
router:get("/app/*", http.static("assets", { bundle = true, max_age = 60 }))
router:get("/one", function(req, res) res:sendFile(arg[1] .. "/hello.txt") end)
router:get("/nul", function(req, res) -- a path with a zero byte would be cut there
  local ok, err = pcall(function() res:sendFile(arg[1] .. "/hello.txt\0.x") end)
  res:finish(tostring(ok) .. " " .. tostring(err))
end)
router:get("/nulbundle", function(req, res)
  local ok, err = pcall(function() res:sendFile("assets/logo.svg\0.x") end)
  res:finish(tostring(ok) .. " " .. tostring(err))
end)
router:get("/rel/*", http.static("assets")) -- relative: the app's own folder, or its bundle
router:get("/relone", function(req, res) res:sendFile("assets/logo.svg") end)
local server = assert(http.createServer(0, router, { host = "127.0.0.1" }))
print("listening " .. server:address().port)
io.stdout:flush()
]]

local function serve_routed()
  local root = test.tmpdir()
  test.write(root .. "/hello.txt", "hello from disk\n")
  test.write(root .. "/page/index.html", "<p>index</p>")
  test.write(root .. "/style.css", "body{}")
  test.sh("head -c 3000000 /dev/urandom > " .. root .. "/big.bin")
  local app = test.tmpdir() .. "/app"
  test.write(app .. "/main.lua", ROUTED)
  test.write(app .. "/assets/logo.svg", "<svg/>")
  test.write(app .. "/assets/index.html", "<h1>bundled</h1>")
  local peer = helpers.start(q(test.luaio) .. " run " .. app .. " " .. root)
  return tonumber(helpers.wait_output(peer, "listening (%d+)")), root, app
end

test.case("router: parameters, methods, 404 and 405 with Allow", function()
  local port = serve_routed()
  local base = "http://127.0.0.1:" .. port
  test.eq((test.sh("curl -s " .. base .. "/users/42")), "user 42")
  test.eq((test.sh("curl -s -d body " .. base .. "/users/7/posts/9")), "7/9:body")
  local out = test.sh("curl -si -X DELETE " .. base .. "/users/42")
  test.match(out, "^HTTP/1.1 405 ")
  test.match(out, "Allow: GET\r\n")
  test.match(test.sh("curl -si " .. base .. "/nothing/here"), "^HTTP/1.1 404 ")
end)

test.case("static files from disk: types, ETag, Last-Modified, 304, ranges, HEAD, traversal", function()
  local port, root = serve_routed()
  local base = "http://127.0.0.1:" .. port
  local out = test.sh("curl -si " .. base .. "/files/hello.txt")
  test.match(out, "^HTTP/1.1 200 OK\r\n")
  test.match(out, "Content%-Type: text/plain; charset=utf%-8\r\n")
  test.match(out, "Content%-Length: 16\r\n")
  test.match(out, "\r\n\r\nhello from disk\n$")
  local etag = out:match("ETag: ([^\r]+)\r\n")
  local modified = out:match("Last%-Modified: ([^\r]+)\r\n")
  test.ok(etag and modified, "ETag and Last-Modified")
  test.match(test.sh("curl -si -H " .. q("If-None-Match: " .. etag) .. " " .. base .. "/files/hello.txt"), "^HTTP/1.1 304 ")
  test.match(test.sh("curl -si -H " .. q("If-Modified-Since: " .. modified) .. " " .. base .. "/files/hello.txt"), "^HTTP/1.1 304 ")
  test.match(test.sh("curl -si " .. base .. "/files/style.css"), "Content%-Type: text/css")
  test.eq((test.sh("curl -s " .. base .. "/files/page/")), "<p>index</p>")
  out = test.sh("curl -si -r 6-9 " .. base .. "/files/hello.txt")
  test.match(out, "^HTTP/1.1 206 ")
  test.match(out, "Content%-Range: bytes 6%-9/16\r\n")
  test.match(out, "\r\n\r\nfrom$")
  test.match(test.sh("curl -si -r 100-200 " .. base .. "/files/hello.txt"), "^HTTP/1.1 416 ")
  out = test.sh("curl -sI " .. base .. "/files/big.bin")
  test.match(out, "Content%-Length: 3000000\r\n")
  test.eq(test.sh("curl -s " .. base .. "/files/big.bin | sha256sum"), test.sh("sha256sum < " .. root .. "/big.bin"))
  test.match(test.sh("curl -si --path-as-is " .. base .. "/files/../../etc/passwd"), "^HTTP/1.1 40[04] ")
  test.match(test.sh("curl -si " .. base .. "/files/%2e%2e/%2e%2e/etc/passwd"), "^HTTP/1.1 40[04] ")
  test.eq((test.sh("curl -s " .. base .. "/one")), "hello from disk\n")
  for _, route in ipairs({ "/nul", "/nulbundle" }) do
    test.match(test.sh("curl -s " .. base .. route),
      "^false [^\n]*main%.lua:%d+: bad argument #1 to 'sendFile' %(string without zero bytes expected, got a string with a zero byte%)$")
  end
end)

test.case("static files from the bundle, the same under luaio run and in a built executable", function()
  local port, root, app = serve_routed()
  local base = "http://127.0.0.1:" .. port
  local out = test.sh("curl -si " .. base .. "/app/logo.svg")
  test.match(out, "Content%-Type: image/svg%+xml\r\n")
  test.match(out, "Cache%-Control: max%-age=60\r\n")
  test.match(out, "\r\n\r\n<svg/>$")
  test.eq((test.sh("curl -s " .. base .. "/app/")), "<h1>bundled</h1>")
  local exe = test.tmpdir() .. "/routed"
  test.eq(select(2, test.sh(q(test.luaio) .. " build " .. app .. " -o " .. exe)), 0)
  local peer = helpers.start("cd / && " .. exe .. " " .. root)
  local port2 = tonumber(helpers.wait_output(peer, "listening (%d+)"))
  local out2 = test.sh("curl -si http://127.0.0.1:" .. port2 .. "/app/logo.svg")
  test.eq(out2:match("ETag: ([^\r]+)"), out:match("ETag: ([^\r]+)"))
  test.match(out2, "\r\n\r\n<svg/>$")
end)

test.case("relative static roots and sendFile paths are the app's files, not the current directory's", function()
  local _, root, app = serve_routed()
  -- luaio run from another directory
  local peer = helpers.start("cd / && " .. q(test.luaio) .. " run " .. app .. " " .. root)
  local port = tonumber(helpers.wait_output(peer, "listening (%d+)"))
  test.eq((test.sh("curl -s http://127.0.0.1:" .. port .. "/rel/logo.svg")), "<svg/>")
  test.eq((test.sh("curl -s http://127.0.0.1:" .. port .. "/relone")), "<svg/>")
  test.match(test.sh("curl -si http://127.0.0.1:" .. port .. "/rel/%252e%252e/main.lua"), "^HTTP/1.1 404 ",
    "a path is decoded once, by the server")
  -- and built: the same paths come from the bundle
  local exe = test.tmpdir() .. "/routed"
  test.eq(select(2, test.sh(q(test.luaio) .. " build " .. app .. " -o " .. exe)), 0)
  local peer2 = helpers.start("cd / && " .. exe .. " " .. root)
  local port2 = tonumber(helpers.wait_output(peer2, "listening (%d+)"))
  test.eq((test.sh("curl -s http://127.0.0.1:" .. port2 .. "/rel/logo.svg")), "<svg/>")
  test.eq((test.sh("curl -s http://127.0.0.1:" .. port2 .. "/relone")), "<svg/>")
end)

test.case("access_log writes one combined-format line per response", function()
  local dir = test.tmpdir()
  local port = serve('{ access_log = "' .. dir .. '/access.log" }')
  test.sh("curl -s -A 'agent/1' -e 'http://ref/' 'http://127.0.0.1:" .. port .. "/info?a=1'")
  test.sh("curl -s http://127.0.0.1:" .. port .. "/nope")
  local deadline = task.now() + 3000
  local text = ""
  repeat
    task.sleep(20)
    local f = io.open(dir .. "/access.log")
    text = f and f:read("*a") or ""
    if f then f:close() end
  until select(2, text:gsub("\n", "")) >= 2 or task.now() > deadline
  test.match(text, '^127%.0%.0%.1 %- %- %[%d%d/%a%a%a/%d%d%d%d:%d%d:%d%d:%d%d %+0000%] "GET /info%?a=1 HTTP/1%.1" 200 %d+ "http://ref/" "agent/1"\n')
  test.match(text, '\n127%.0%.0%.1 %- %- %[[^]]+%] "GET /nope HTTP/1%.1" 404 9 "%-" "curl/[%d.]+"\n$')
end)
