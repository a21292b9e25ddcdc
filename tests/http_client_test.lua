-- The HTTP client against real servers: nginx (files, a 5 MiB download, gzip'd chunked
-- responses, keep-alive, redirects, an idle-closing server), our own HTTP server (POST,
-- 303/307) and raw TCP peers for the shapes a well-behaved server does not send.
local test = require "test"
local task = require "task"
local http = require "http"
local client = require "http_client"
local helpers = require "tests.helpers"
local peers = require "tests.http_peers"

local q = test.quote

-- --- peers ------------------------------------------------------------------------------------

local NGINX_CONF = [[
daemon off;
master_process off;
worker_processes 1;
pid DIR/nginx.pid;
error_log DIR/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path DIR/tmp;
  proxy_temp_path DIR/tmp;
  fastcgi_temp_path DIR/tmp;
  uwsgi_temp_path DIR/tmp;
  scgi_temp_path DIR/tmp;
  types { text/plain txt; }
  default_type application/octet-stream;
  keepalive_timeout 60s;
  server {
    listen 127.0.0.1:PORT;
    root DIR/www;
    location /gz/ { alias DIR/www/; gzip on; gzip_types text/plain; gzip_min_length 1; }
    location = /conn { return 200 "$connection"; }
    location = /old { return 301 /hello.txt; }
    location = /rel/start { return 302 next; }
    location = /rel/next { return 200 "relative ok"; }
    location = /loop { return 302 /loop; }
    location = /teapot { return 418 "short and stout"; }
    location = /empty { return 204; }
    location = /to-https { return 301 https://127.0.0.1/; }
  }
  server { # closes idle keep-alive connections quickly
    listen 127.0.0.1:PORT2;
    keepalive_timeout 100ms;
    location = /conn { return 200 "$connection"; }
  }
}
]]

-- Starts nginx for this case: base URL, the idle-closing server's base URL, www folder.
local function nginx()
  if not test.sh("command -v nginx") :find("nginx") then test.skip("nginx is not installed") end
  local dir = test.tmpdir()
  local port, port2 = helpers.free_port(), helpers.free_port()
  while port2 == port do port2 = helpers.free_port() end
  test.sh("mkdir -p " .. dir .. "/tmp " .. dir .. "/www")
  test.write(dir .. "/nginx.conf", (NGINX_CONF:gsub("DIR", dir):gsub("PORT2", port2):gsub("PORT", port)))
  test.write(dir .. "/www/hello.txt", "hello from nginx\n")
  test.sh("seq 1 30000 > " .. dir .. "/www/numbers.txt")
  helpers.start("nginx -p " .. dir .. " -c " .. dir .. "/nginx.conf -e " .. dir .. "/error.log")
  helpers.wait_port(port)
  helpers.wait_port(port2)
  return "http://127.0.0.1:" .. port, "http://127.0.0.1:" .. port2, dir .. "/www"
end

-- Our own HTTP server in its own process.
local APP = [[
local http = require "http"
local server = assert(http.createServer(0, function(req, res)
  if req.path == "/echo" then
    local body = req:body()
    return res:finish(req.method .. " " .. tostring(req.headers["content-type"]) .. " " .. body)
  elseif req.path == "/info" then
    return res:finish(req.method .. " " .. tostring(req.headers["content-length"]) .. " " ..
      tostring(req.headers["x-test"]) .. " " .. req:body())
  elseif req.path == "/r303" then
    res:status(303) res:setHeader("Location", "/info") return res:finish("see other")
  elseif req.path == "/r307" then
    res:status(307) res:setHeader("Location", "/echo") return res:finish("")
  elseif req.path == "/r308" then
    res:status(308) res:setHeader("Location", "/echo") return res:finish("")
  end
  res:status(404)
  res:finish("nothing here")
end, { host = "127.0.0.1" }))
print("listening " .. server:address().port)
io.stdout:flush()
]]

local serve_here, read_request = peers.serve, peers.read_request

local function sha256_file(path)
  return (test.sh("sha256sum < " .. q(path)):match("^(%x+)"))
end

-- --- nginx ------------------------------------------------------------------------------------

test.case("nginx: a file, its headers in any case, the version, 404 and 418 as responses", function()
  local base = nginx()
  local res = assert(http.get(base .. "/hello.txt"))
  test.eq(res.status, 200)
  test.eq(res.httpVersion, "1.1")
  test.eq(res.headers["content-length"], "17")
  test.eq(res.headers["Content-Length"], "17")
  test.eq(res.headers.SERVER:match("^nginx"), "nginx")
  test.eq(res:body(), "hello from nginx\n")
  test.eq(res:read(), nil, "read after the end")

  res = assert(http.get(base .. "/no/such/file"))
  test.eq(res.status, 404)
  test.match(res:body(), "404 Not Found")
  res = assert(http.request({ url = base .. "/teapot" }))
  test.eq(res.status, 418)
  test.eq(res:body(), "short and stout")
  res = assert(http.get(base .. "/empty"))
  test.eq(res.status, 204)
  test.eq(res:body(), "")
end)

test.case("nginx: a 5 MiB file streamed with read(n), sha256 checked", function()
  local base, _, www = nginx()
  test.sh("head -c 5242880 /dev/urandom > " .. www .. "/big.bin")
  local res = assert(http.get(base .. "/big.bin"))
  test.eq(res.headers["content-length"], "5242880")
  local dir = test.tmpdir()
  local f = assert(io.open(dir .. "/got", "wb"))
  local total, biggest = 0, 0
  while true do
    local data, err = res:read(10000)
    test.eq(err, nil)
    if not data then break end
    total = total + #data
    if #data > biggest then biggest = #data end
    f:write(data)
  end
  f:close()
  test.eq(total, 5242880)
  test.ok(biggest <= 10000, "read(n) gives at most n bytes")
  test.eq(sha256_file(dir .. "/got"), sha256_file(www .. "/big.bin"))
  -- and whole, with body()
  res = assert(http.get(base .. "/big.bin"))
  test.eq(#res:body(), 5242880)
  res = assert(http.get(base .. "/big.bin", { max_body_size = 1000000 }))
  local body, err = res:body()
  test.eq(body, nil)
  test.eq(err.name, "EMSGSIZE")
end)

test.case("nginx: a gzip'd response comes chunked and is decoded to the exact bytes", function()
  local base, _, www = nginx()
  local res = assert(http.get(base .. "/gz/numbers.txt", { headers = { ["Accept-Encoding"] = "gzip" } }))
  test.eq(res.status, 200)
  test.eq(res.headers["transfer-encoding"], "chunked")
  test.eq(res.headers["content-encoding"], "gzip")
  test.eq(res.headers["content-length"], nil)
  local dir = test.tmpdir()
  test.write(dir .. "/got.gz", assert(res:body()))
  local out, status = test.sh("gzip -dc " .. dir .. "/got.gz | cmp - " .. www .. "/numbers.txt")
  test.eq(status, 0, "gunzip of the decoded body is the file: " .. out)
  -- the same connection serves the next request: the chunked body was read to its end
  test.eq(client.pooled("127.0.0.1", tonumber(base:match("(%d+)$"))), 1)
end)

test.case("nginx: keep-alive: requests in a row share one connection ($connection)", function()
  local base = nginx()
  local port = tonumber(base:match("(%d+)$"))
  local first = assert(http.get(base .. "/conn")):body()
  test.eq(client.pooled("127.0.0.1", port), 1)
  local second = assert(http.get(base .. "/conn")):body()
  local third = assert(http.request({ host = "127.0.0.1", port = port, path = "/conn" })):body()
  test.eq(second, first)
  test.eq(third, first)
  -- HEAD has no body and keeps the connection too
  local res = assert(http.request({ url = base .. "/hello.txt", method = "HEAD" }))
  test.eq(res.headers["content-length"], "17")
  test.eq(res:body(), "")
  test.eq(assert(http.get(base .. "/conn")):body(), first)
  -- keepalive = false: Connection: close, a new connection, nothing pooled
  local own = assert(http.get(base .. "/conn", { keepalive = false })):body()
  test.ok(own ~= first, "keepalive=false uses its own connection")
  test.eq(client.pooled("127.0.0.1", port), 1)
  -- a response not read to its end does not go back to the pool
  res = assert(http.get(base .. "/numbers.txt"))
  test.eq(client.pooled("127.0.0.1", port), 0)
  test.eq(#res:read(5), 5)
  res:close()
  test.eq(client.pooled("127.0.0.1", port), 0)
  test.ok(assert(http.get(base .. "/conn")):body() ~= first, "a new connection after close")
end)

test.case("nginx: the pool is bounded, LRU, and idle connections expire", function()
  local base = nginx()
  local port = tonumber(base:match("(%d+)$"))
  local options = { keepalive_pool = 2, keepalive_timeout = 300 }
  local conns = {}
  local tasks = {}
  for i = 1, 3 do -- three at once: three connections
    tasks[i] = task.spawn(function() return assert(http.get(base .. "/conn", options)) end)
  end
  local responses = {}
  for i = 1, 3 do
    local ok, res = tasks[i]:join()
    test.ok(ok, "request " .. i)
    responses[i] = res
  end
  -- bodies read in a known order: each connection goes back to the pool as its body ends
  for i = 1, 3 do conns[i] = responses[i]:body() end
  test.ok(conns[1] ~= conns[2] and conns[2] ~= conns[3] and conns[1] ~= conns[3],
    "three connections: " .. table.concat(conns, " "))
  test.eq(client.pooled("127.0.0.1", port), 2, "bounded at keepalive_pool")
  -- the most recently parked is reused first; the least recently used one was closed
  local a = assert(http.get(base .. "/conn", options))
  local b = assert(http.get(base .. "/conn", options))
  local c = assert(http.get(base .. "/conn", options))
  test.eq(a:body(), conns[3])
  test.eq(b:body(), conns[2])
  local fresh = c:body()
  test.ok(fresh ~= conns[1] and fresh ~= conns[2] and fresh ~= conns[3], "conns[1] was evicted")
  test.eq(client.pooled("127.0.0.1", port), 2)
  local again = assert(http.get(base .. "/conn", options)):body()
  -- expired after keepalive_timeout, closed by the sweep timer within a second or so
  task.sleep(1500)
  test.eq(client.pooled("127.0.0.1", port), 0)
  local later = assert(http.get(base .. "/conn", options)):body()
  test.ok(later ~= again, "a new connection after the idle timeout")
end)

test.case("nginx: a connection the server closed while idle is not reused, the request succeeds", function()
  local _, closing = nginx()
  local first = assert(http.get(closing .. "/conn")):body()
  task.sleep(400) -- nginx's keepalive_timeout there is 100 ms
  local res, err = http.get(closing .. "/conn")
  test.eq(err, nil)
  test.ok(res:body() ~= first, "a new connection")
end)

test.case("nginx: redirects followed (relative too) or not, at most 5, none to https", function()
  local base = nginx()
  local res = assert(http.get(base .. "/old"))
  test.eq(res.status, 301)
  test.eq(res.headers.location, base .. "/hello.txt")
  res:body()
  res = assert(http.get(base .. "/old", { follow_redirects = true }))
  test.eq(res.status, 200)
  test.eq(res:body(), "hello from nginx\n")
  res = assert(http.get(base .. "/rel/start", { follow_redirects = true }))
  test.eq(res:body(), "relative ok")
  local err
  res, err = http.get(base .. "/loop", { follow_redirects = true })
  test.eq(res, nil)
  test.eq(err.name, "ELOOP")
  test.match(err.message, "too many redirects")
  -- a redirect to https is followed (nothing listens on 127.0.0.1:443 here)
  res, err = http.get(base .. "/to-https", { follow_redirects = true })
  test.eq(res, nil)
  test.eq(err.name, "ECONNREFUSED")
end)

-- --- our own server ------------------------------------------------------------------------

test.case("luaio server: POST with a body, headers, 303 -> GET, 307 and 308 keep method and body", function()
  local port = helpers.serve(APP)
  local base = "http://127.0.0.1:" .. port
  local res = assert(http.request({
    url = base .. "/info", method = "POST", body = "some data",
    headers = { ["X-Test"] = "yes", ["Content-Length"] = "999" },
  }))
  test.eq(res.status, 200)
  test.eq(res:body(), "POST 9 yes some data", "Content-Length is the body's")
  res = assert(http.request({ url = base .. "/info", method = "post" }))
  test.eq(res:body(), "POST 0 nil ", "a POST without a body says Content-Length: 0")
  local big = ("0123456789"):rep(100000)
  res = assert(http.request({ url = base .. "/echo", method = "PUT", body = big, headers = { ["Content-Type"] = "x/y" } }))
  test.eq(res:body(), "PUT x/y " .. big)

  res = assert(http.request({ url = base .. "/r303", method = "POST", body = "gone", follow_redirects = true }))
  test.eq(res:body(), "GET nil nil ", "303: GET without the body")
  res = assert(http.request({ url = base .. "/r307", method = "POST", body = "kept",
    headers = { ["content-type"] = "text/plain" }, follow_redirects = true }))
  test.eq(res:body(), "POST text/plain kept")
  res = assert(http.request({ url = base .. "/r308", method = "PUT", body = "kept too", follow_redirects = true }))
  test.eq(res:body(), "PUT nil kept too")
  res = assert(http.request({ url = base .. "/r307", method = "POST", body = "not followed" }))
  test.eq(res.status, 307)
  test.eq(res.headers.location, "/echo")
  test.eq(assert(http.get(base .. "/nowhere")).status, 404)
end)

-- --- raw peers ------------------------------------------------------------------------------

test.case("raw: close-delimited, HTTP/1.0, 1xx skipped, chunked in tiny pieces with trailers", function()
  local base = serve_here(function(socket)
    local req = read_request(socket)
    local path = req[1]:match("^GET (%S+)")
    if path == "/close" then
      socket:write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
    elseif path == "/old" then
      socket:write("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    elseif path == "/early" then
      socket:write("HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    elseif path == "/chunks" then
      local msg = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" ..
        "5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
      for i = 1, #msg, 3 do
        socket:write(msg:sub(i, i + 2))
        task.sleep(1)
      end
    elseif path == "/bad-chunks" then
      socket:write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    elseif path == "/short" then
      socket:write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
    elseif path == "/garbage" then
      socket:write("SMTP ready\r\n\r\n")
    end
  end)
  local res = assert(http.get(base .. "/close"))
  test.eq(res:body(), "until the end")
  res = assert(http.get(base .. "/old"))
  test.eq(res.httpVersion, "1.0")
  test.eq(res:body(), "abc")
  res = assert(http.get(base .. "/early"))
  test.eq(res.status, 200)
  test.eq(res:body(), "ok")
  res = assert(http.get(base .. "/chunks"))
  test.eq(res:body(), "hello world")
  res = assert(http.get(base .. "/bad-chunks"))
  local body, err = res:body()
  test.eq(body, nil)
  test.eq(err.name, "EPROTO")
  res = assert(http.get(base .. "/short"))
  body, err = res:body()
  test.eq(body, nil)
  test.eq(err.name, "EPROTO")
  res, err = http.get(base .. "/garbage")
  test.eq(res, nil)
  test.eq(err.name, "EPROTO")
  test.eq(client.pooled("127.0.0.1", tonumber(base:match("(%d+)$"))), 0, "none of these connections is reusable")
end)

-- The second request on a kept connection meets the server's close of an idle connection:
-- the close itself, or a 408 it sent just before (what Go's client takes as such a close).
for _, answer in ipairs({ "close", "408" }) do
  test.case("raw: a pooled connection closed (" .. answer .. ") as the next request arrives: GET retried once, POST not",
    function()
      local connections = 0
      local base = serve_here(function(socket)
        connections = connections + 1
        local n = connections
        read_request(socket)
        socket:write("HTTP/1.1 200 OK\r\nContent-Length: " .. #tostring(n) .. "\r\n\r\n" .. n)
        local req = read_request(socket)
        if answer == "408" and req then
          local len = tonumber(peers.header(req, "content-length") or "0")
          if len > 0 then socket:read(len) end
          socket:write("HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        end
      end)
      test.eq(assert(http.get(base .. "/")):body(), "1")
      test.eq(assert(http.get(base .. "/")):body(), "2", "the GET was sent again on a new connection")
      local res, err = http.request({ url = base .. "/", method = "POST", body = "x" })
      if answer == "408" then
        test.eq(res.status, 408, "a POST is not sent twice: the 408 is its answer")
      else
        test.eq(res, nil, "a POST is not retried")
        test.eq(err.name, "ECONNRESET")
      end
      test.eq(connections, 2)
    end)
end

test.case("timeouts: a server that never answers (read), a full backlog (connect)", function()
  local base = serve_here(function(socket) repeat until not socket:read() end)
  local started = task.now()
  local res, err = http.get(base .. "/", { read_timeout = 200 })
  test.eq(res, nil)
  test.eq(err.name, "ETIMEDOUT")
  test.ok(task.now() - started >= 190, "waited for the read timeout")
  started = task.now()
  res, err = http.get(base .. "/", { timeout = 150 })
  test.eq(err.name, "ETIMEDOUT")
  test.ok(task.now() - started < 1000, "timeout applies to reads")

  local port = helpers.full_backlog()
  started = task.now()
  res, err = http.get("http://127.0.0.1:" .. port .. "/", { connect_timeout = 300 })
  test.eq(res, nil)
  test.eq(err.name, "ETIMEDOUT")
  test.ok(task.now() - started >= 290, "waited for the connect timeout")
end)

test.case("pooled connections and the idle timer do not keep the process alive", function()
  local base = nginx()
  local dir = test.tmpdir()
  test.write(dir .. "/app.lua", ([[
local http = require "http"
local res = assert(http.get("%s/conn"))
print(res:body(), require("http_client").pooled())
]]):format(base))
  local started = task.now()
  local out, status = test.sh("timeout 10 " .. q(test.luaio) .. " run " .. dir .. "/app.lua")
  test.eq(status, 0)
  test.match(out, "^%d+\t1\n$")
  test.ok(task.now() - started < 3000, "exited at once")
end)

-- --- errors -----------------------------------------------------------------------------------

test.case("connection refused; bad arguments raise naming them", function()
  local res, err = http.get("http://127.0.0.1:" .. helpers.free_port() .. "/")
  test.eq(res, nil)
  test.eq(err.name, "ECONNREFUSED")

  test.raises(function() http.get() end, "bad argument #1 to 'get' %(string expected, got nil%)")
  test.raises(function() http.get(42) end, "bad argument #1 to 'get'")
  test.raises(function() http.get("127.0.0.1/x") end, "bad argument #1 to 'get' %(not an absolute URL")
  test.raises(function() http.get("ftp://host/") end, "bad argument #1 to 'get' %(scheme 'ftp'")
  test.raises(function() http.get("http://:80/") end, "bad argument #1 to 'get' %(bad host")
  test.raises(function() http.get("http://h:99999/") end, "port out of range")
  test.raises(function() http.get("http://u@h/") end, "user info")
  test.raises(function() http.get("http://h/a b") end, "spaces")
  test.raises(function() http.get("http://h/", 5) end, "bad argument #2 to 'get' %(table expected")
  test.raises(function() http.get("http://h/", { timeout = "1" }) end,
    "bad argument #2 to 'get' %(options.timeout: number expected, got string%)")
  test.raises(function() http.request() end, "bad argument #1 to 'request' %(table expected, got nil%)")
  test.raises(function() http.request({}) end, "options.url or options.host expected")
  test.raises(function() http.request({ url = "http://h/", timout = 5 }) end, "unknown option 'timout'")
  test.raises(function() http.request({ url = 5 }) end, "options.url: string expected, got number")
  test.raises(function() http.request({ url = "http://h/", method = "GE T" }) end, "options.method")
  test.raises(function() http.request({ url = "http://h/", headers = { ["X-A"] = "a\r\nX-B: b" } }) end,
    "options.headers: X%-A: control character in the value")
  test.raises(function() http.request({ url = "http://h/", headers = { ["Bad Name"] = "a" } }) end,
    "options.headers: bad header name")
  test.raises(function() http.request({ url = "http://h/", timeout = -1 }) end, "options.timeout")
  test.raises(function() http.request({ url = "http://h/", headers = { ["transfer-encoding"] = "chunked" } }) end,
    "Transfer%-Encoding is not supported")
  test.raises(function() http.request({ host = "h", port = 0 }) end, "options.port: out of range")
  test.raises(function() http.request({ host = "h", path = "x" }) end, "options.path")
  test.raises(function() http.request({ url = "http://h/", body = {} }) end, "options.body: string expected")
end)

-- --- the C half ---------------------------------------------------------------------------------

test.case("luaio.http_client: heads in steps, joined headers, framing, chunked pieces", function()
  local C = require "luaio.http_client"
  local full = "HTTP/1.1 200 OK\r\nSet-Thing: a\r\nX-Long: x\r\nset-thing: b\r\nContent-Length: 3\r\n\r\nabc"
  local last = 0
  for i = 1, #full do -- a byte at a time, as a slow server would send it
    local head, err = C.parse_response(full:sub(1, i), last)
    if head then
      test.eq(i, #full - 3, "complete exactly at the empty line")
      test.eq(head.headers, { ["set-thing"] = "a, b", ["x-long"] = "x", ["content-length"] = "3" })
      test.eq({ head.status, head.minor, head.reason, head.length, head.body, head.content_length, head.keep_alive },
        { 200, 1, "OK", #full - 3, "length", 3, true })
      break
    end
    test.eq(err, "incomplete")
    last = i
  end
  local head = C.parse_response("HTTP/1.0 304 Not Modified\r\nContent-Length: 10\r\n\r\n")
  test.eq({ head.body, head.keep_alive }, { "none", false })
  head = C.parse_response("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", 0, true)
  test.eq(head.body, "none", "a response to HEAD")
  local _, err = C.parse_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")
  test.eq(err.name, "EPROTO", "a coding other than chunked")
  test.eq(err.message, "unsupported transfer coding 'gzip' (only chunked is decoded)")
  for _, te in ipairs({ "gzip, chunked", " ,", "chunked;x=1", "x-chunked" }) do
    _, err = C.parse_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: " .. te .. "\r\n\r\n")
    test.eq(err and err.name, "EPROTO", te)
  end
  head = C.parse_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: , CHUNKED\t\r\n\r\n")
  test.eq(head.body, "chunked", "chunked in any case, empty elements ignored")
  head = C.parse_response("HTTP/1.1 204 No Content\r\nTransfer-Encoding: gzip\r\n\r\n")
  test.eq(head.body, "none", "no body: the coding does not matter")
  head = C.parse_response("HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT\r\n" ..
    "Content-Length: 0\r\nSET-COOKIE: b=2\r\n\r\n")
  test.eq(head.headers["set-cookie"], { "a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT", "b=2" })
  _, err = C.parse_response("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
  test.eq(err.name, "EPROTO")
  _, err = C.parse_response("HTTP/1.1 200 OK\nContent-Length: 1\n\n")
  test.eq(err.name, "EPROTO", "bare LF")
  _, err = C.parse_response("HTTP/1.1 200 OK\r\n" .. ("A: b\r\n"):rep(200) .. "\r\n")
  test.match(err.message, "too many header lines")

  local body = "4\r\nWiki\r\n6;x=y\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nT: v\r\n\r\nNEXT"
  for step = 1, 7 do
    local d, out, done, rest = C.decoder(), {}, false, nil
    for i = 1, #body, step do
      local data, fin, leftover = d:decode(body:sub(i, i + step - 1))
      out[#out + 1] = data
      if fin then
        done = true
        rest = (rest or "") .. leftover
      end
    end
    test.eq({ table.concat(out), done, rest }, { "Wikipedia in \r\n\r\nchunks.", true, "NEXT" }, "steps of " .. step)
  end
  local data, e = C.decoder():decode("5\r\nabcdeX\r\n")
  test.eq(data, nil)
  test.eq(e.name, "EPROTO")
  test.raises(function() C.parse_response(nil) end, "bad argument #1 to 'parse_response'")
  test.raises(function() C.parse_response("x", 5) end, "bad argument #2 to 'parse_response'")
end)
