-- The request and response objects as handlers and middleware see them: who asked
-- (remoteAddress), what was sent (statusCode, headersSent, bytesSent, getHeader), paths
-- percent-decoded with their raw forms kept, route parameters decoded, and res:upgrade()
-- handing the connection to a raw socket. The server runs in this process; the clients
-- are curl and raw sockets.
local test = require "test"
local task = require "task"
local tcp = require "tcp"
local http = require "http"
local helpers = require "tests.helpers"

local function serve(handler, options)
  options = options or {}
  options.host = "127.0.0.1"
  local server = assert(http.createServer(0, handler, options))
  test.cleanup(function() server:close() end)
  return server:address().port
end

-- Sends raw bytes on a fresh connection, returns all the server sends until it closes.
-- (The server runs in this process: a client must not block the loop, so no curl here.)
local function raw(port, bytes)
  local data = helpers.exchange(port, bytes, { idle = 3000 })
  return data
end

local function get(port, path, options)
  options = options or {}
  options.url = "http://127.0.0.1:" .. port .. path
  local res = assert(http.request(options))
  return res, res:body()
end

test.case("req.remoteAddress and req.remotePort name the client", function()
  local seen
  local port = serve(function(req, res)
    seen = { req.remoteAddress, req.remotePort }
    res:finish("ok")
  end)
  local s = assert(tcp.connect(port, "127.0.0.1"))
  local mine = s:localAddress()
  s:write("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
  while s:read() do end
  s:close()
  test.eq(seen[1], "127.0.0.1")
  test.eq(seen[2], mine.port, "the client's own port")
end)

test.case("res.statusCode, res.headersSent, res.bytesSent and res:getHeader tell what was sent", function()
  local seen = {}
  local port = serve(function(req, res)
    seen.status0, seen.sent0 = res.statusCode, res.headersSent
    res:status(201)
    res:setHeader("X-Mine", "yes")
    seen.header, seen.missing = res:getHeader("x-mine"), res:getHeader("x-other")
    seen.status1 = res.statusCode
    res:write("hello ")
    seen.sent1, seen.bytes1 = res.headersSent, res.bytesSent
    res:finish("world")
    seen.bytes2, seen.finished = res.bytesSent, res.finished
  end)
  local res, body = get(port, "/")
  test.eq(res.status, 201)
  test.eq(body, "hello world")
  test.eq(seen, { status0 = 200, sent0 = false, header = "yes", status1 = 201, sent1 = true,
    bytes1 = 6, bytes2 = 11, finished = true })
end)

test.case("res.statusCode = code sets the status, as res.status = code does", function()
  local port = serve(function(req, res)
    res.statusCode = 418
    res:finish("teapot")
  end)
  test.eq(get(port, "/").status, 418)
end)

test.case("req.path is percent-decoded; req.rawPath and req.url keep what was sent", function()
  local seen
  local port = serve(function(req, res)
    seen = { req.path, req.rawPath, req.url, req.query.q }
    res:finish("ok")
  end)
  raw(port, "GET /caf%C3%A9/a%2Fb+c?q=x%20y+z HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
  test.eq(seen, { "/café/a/b+c", "/caf%C3%A9/a%2Fb+c", "/caf%C3%A9/a%2Fb+c?q=x%20y+z", "x y z" })
  raw(port, "GET /plain HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
  test.eq(seen[1], "/plain")
  test.eq(seen[2], "/plain", "rawPath without escapes")
end)

test.case("a path with a bad escape or an encoded NUL is refused with 400", function()
  local called = false
  local port = serve(function(req, res) called = true res:finish("ok") end)
  for _, target in ipairs({ "/a%2", "/a%zz", "/a%00b", "/%" }) do
    local data = raw(port, "GET " .. target .. " HTTP/1.1\r\nHost: a\r\n\r\n")
    test.match(data, "^HTTP/1.1 400 ", target)
  end
  test.eq(called, false, "no handler ran")
end)

test.case("route parameters are decoded after matching: %2F stays inside its parameter", function()
  local router = http.router()
  router:get("/files/:name/raw", function(req, res) res:finish("name=" .. req.params.name) end)
  router:get("/rest/*", function(req, res) res:finish("rest=" .. req.params["*"]) end)
  local port = serve(router)
  test.eq(select(2, get(port, "/files/a%2Fb%20c/raw")), "name=a/b c")
  test.eq(select(2, get(port, "/files/x/raw")), "name=x")
  test.eq(select(2, get(port, "/rest/p%C3%A9/q")), "rest=pé/q")
end)

test.case("res:upgrade() sends 101 and hands the connection to a raw socket", function()
  local port = serve(function(req, res)
    res:setHeader("Upgrade", "echo")
    res:setHeader("Connection", "Upgrade")
    local sock = assert(res:upgrade())
    while true do
      local line = sock:readline()
      if not line or line == "bye" then break end
      sock:write("echo: " .. line .. "\n")
    end
    sock:write("done\n")
  end)
  local s = assert(tcp.connect(port, "127.0.0.1", { timeout = 3000 }))
  -- the first line after the head comes in the same packet: it must reach the socket too
  s:write("GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nfirst\n")
  test.eq(s:readline(), "HTTP/1.1 101 Switching Protocols")
  local headers = {}
  while true do
    local line = assert(s:readline())
    if line == "" then break end
    headers[#headers + 1] = line
  end
  local head = table.concat(headers, "\n")
  test.match(head, "Upgrade: echo")
  test.match(head, "Connection: Upgrade")
  test.ok(not head:find("Content%-Length") and not head:find("Transfer%-Encoding"), head)
  test.eq(s:readline(), "echo: first")
  s:write("second\n")
  test.eq(s:readline(), "echo: second")
  s:write("bye\n")
  test.eq(s:readline(), "done")
  local data, err = s:read()
  test.eq(data, nil)
  test.eq(err.name, "EOF", "the socket closes when the handler returns")
  s:close()
end)

test.case("res:upgrade() is refused once the head is sent, and with a body still unread", function()
  local errors = {}
  local port = serve(function(req, res)
    if req.path == "/late" then
      res:write("x")
      errors.late = select(2, pcall(res.upgrade, res))
      return res:finish()
    end
    errors.body = select(2, pcall(res.upgrade, res))
    res:finish("no")
  end)
  get(port, "/late")
  get(port, "/body", { method = "POST", body = "some body" })
  test.match(tostring(errors.late), "headers already sent")
  test.match(tostring(errors.body), "body still to read")
end)

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local text = f:read("*a")
  f:close()
  return text
end

-- Waits (without blocking the loop) until the file holds a line matching pattern.
local function wait_line(path, pattern)
  local deadline, text = task.now() + 3000, ""
  repeat
    text = read_file(path)
    if text:find(pattern) then return text end
    task.sleep(20)
  until task.now() > deadline
  return text
end

test.case("access_log takes true, a file path, or a logger (combined, common or json)", function()
  local log = require "log"
  local dir = test.tmpdir()
  local targets = {
    path = dir .. "/path.log",
    combined = log.new { output = dir .. "/combined.log", format = "combined" },
    common = log.new { output = dir .. "/common.log", format = "common" },
    json = log.new { output = dir .. "/json.log", format = "json" },
  }
  for name, target in pairs(targets) do
    local port = serve(function(req, res) res:finish("abc") end, { access_log = target })
    get(port, "/" .. name .. "?y=1", { headers = { ["User-Agent"] = "agent/1" } })
  end
  test.match(wait_line(dir .. "/path.log", "agent/1"), '"GET /path%?y=1 HTTP/1.1" 200 3 "%-" "agent/1"\n$')
  test.match(wait_line(dir .. "/combined.log", "agent/1"), '"GET /combined%?y=1 HTTP/1.1" 200 3 "%-" "agent/1"\n$')
  test.match(wait_line(dir .. "/common.log", "200"), '"GET /common%?y=1 HTTP/1.1" 200 3\n$')
  local json = wait_line(dir .. "/json.log", "agent")
  test.match(json, '"status":200')
  test.match(json, '"path":"/json%?y=1"')
  test.match(json, '"user_agent":"agent/1"')
  -- true writes to stdout: seen from a server in its own process
  local port, peer = helpers.serve([[
local http = require "http"
local server = assert(http.createServer(0, function(req, res) res:finish("x") end,
  { host = "127.0.0.1", access_log = true }))
print("listening " .. server:address().port)
io.stdout:flush()
]])
  get(port, "/stdout")
  helpers.wait_output(peer, '"GET /stdout HTTP/1.1" 200 1')
  -- anything else is an argument error naming the option
  test.raises(function() http.createServer(0, function() end, { access_log = 5 }) end, "access_log")
  test.raises(function() http.createServer(0, function() end, { host = "127.0.0.1\0x" }) end,
    "bad argument #3 to 'createServer' %(option 'host': string without zero bytes expected, got a string with a zero byte%)")
  test.raises(function() local _ = http.static("/tmp\0x") end,
    "http_api_test%.lua:%d+: bad argument #1 to 'static' %(folder path without zero bytes expected")
end)

test.case("http.static's and res:sendFile's options are checked, errors at the caller's line", function()
  local here = "^tests/http_api_test%.lua:%d+: "
  test.raises(function() local _ = http.static("/tmp", 5) end, here .. "bad argument #2 to 'static' %(table expected, got number%)")
  test.raises(function() local _ = http.static("/tmp", { maxage = 1 }) end, here .. "bad argument #2 to 'static' %(unknown option 'maxage'%)")
  test.raises(function() local _ = http.static("/tmp", { max_age = 1.5 }) end, here .. "bad argument #2 to 'static' %(option 'max_age'")
  test.raises(function() local _ = http.static("/tmp", { index = "a\0b" }) end, here .. "bad argument #2 to 'static' %(option 'index'")
  test.raises(function() local _ = http.static("/tmp", { bundle = "yes" }) end, here .. "bad argument #2 to 'static' %(option 'bundle'")
  local errs = {}
  local port = serve(function(req, res)
    for _, opts in ipairs({ 5, { index = "x.html" } }) do
      local ok, err = pcall(function() res:sendFile("hello.txt", opts) end)
      errs[#errs + 1] = ok and "no error" or tostring(err)
    end
    res:finish("ok")
  end)
  test.eq(select(2, get(port, "/")), "ok")
  test.match(errs[1], here .. "bad argument #2 to 'sendFile' %(table expected, got number%)")
  test.match(errs[2], here .. "bad argument #2 to 'sendFile' %(unknown option 'index'%)")
end)

test.case("the router's methods name themselves and their arguments, at the caller's line", function()
  local here = "^tests/http_api_test%.lua:%d+: "
  local r = http.router()
  local fn = function() end
  test.raises(function() r:get("x", fn) end, here .. "bad argument #1 to 'get' %(path pattern starting with '/' expected, got 'x'%)")
  test.raises(function() r:post("/", 5) end, here .. "bad argument #2 to 'post' %(function expected, got number%)")
  test.raises(function() r:all(nil, fn) end, here .. "bad argument #1 to 'all' %(path pattern starting with '/' expected, got nil%)")
  test.raises(function() r:add("GET", "/", 5) end, here .. "bad argument #3 to 'add' %(function expected, got number%)")
  test.raises(function() r:add(5, "/", fn) end, here .. "bad argument #1 to 'add' %(string expected, got number%)")
  test.raises(function() r:websocket("/", 5) end, here .. "bad argument #2 to 'websocket' %(function expected, got number%)")
  test.raises(function() r:websocket("/", fn, 5) end, here .. "bad argument #3 to 'websocket' %(table expected, got number%)")
  test.raises(function() r:websocket("/", fn, { nope = 1 }) end, here .. "bad argument #3 to 'websocket' %(unknown option 'nope'%)")
  test.eq(#r.routes, 0, "nothing was added")
  test.ok(r:get("/a", fn) == r and r:add(nil, "/b", fn) == r and r:websocket("/c", fn) == r)
  test.eq(#r.routes, 3)
end)

test.case("res:status refuses 1xx (interim responses are the server's), non-integers and codes outside 100-599", function()
  local refused, taken = {}, {}
  local port = serve(function(req, res)
    for _, code in ipairs({ 100, 101, 103, 199, 99, 600, 999, 1000, 200.5, 0 / 0, "abc" }) do
      local ok, err = pcall(res.status, res, code)
      local ok2 = pcall(function() res.status = code end)
      if ok or ok2 then
        taken[#taken + 1] = tostring(code)
      else
        refused[#refused + 1] = tostring(code)
        test.match(err, type(code) == "number" and "^bad argument #%d to '[^']*' %(status code: an integer from 200 to 599 expected"
          or "^bad argument #%d to '[^']*' %(number expected", tostring(code) .. ": " .. err)
      end
    end
    for _, code in ipairs({ 200, 204, 404, 599, "302" }) do
      local ok, err = pcall(res.status, res, code)
      if ok then taken[#taken + 1] = tostring(code) else refused[#refused + 1] = tostring(code) .. " " .. err end
    end
    res:status(201)
    res:finish("ok")
  end)
  local res, body = get(port, "/")
  test.eq({ res.status, body }, { 201, "ok" })
  test.eq(taken, { "200", "204", "404", "599", "302" }, "the codes res:status took")
  test.eq(#refused, 11, "refused: " .. table.concat(refused, ", "))
end)

test.case("server_name with CR, LF, NUL or another control character raises naming the option, as setHeader does", function()
  for _, name in ipairs({ "app\r\nSet-Cookie: injected=1", "app\n", "a\rb", "a\0b", "a\127" }) do
    local ok, err = pcall(http.createServer, 0, function() end, { host = "127.0.0.1", server_name = name })
    test.ok(not ok, ("%q is refused"):format(name))
    test.match(tostring(err), "^[^\n]*bad argument #3 to 'createServer' %(option 'server_name': control character in header value", tostring(err))
  end
  local port = serve(function(req, res)
    local ok, err = pcall(res.setHeader, res, "X-Name", "app\r\nSet-Cookie: injected=1")
    res:finish(ok and "taken" or tostring(err))
  end, { server_name = "app\t1" })
  local res, body = get(port, "/")
  test.eq(res.headers.server, "app\t1")
  test.match(body, "control character in header value")
end)
