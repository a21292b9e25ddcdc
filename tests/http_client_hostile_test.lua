-- The HTTP client against hostile servers: in-process luaio TCP servers that trickle,
-- flood, lie about framing or close early, and a Python peer for a connection that dies
-- under a request body. Each case is a defect that was found this way (its regression test).
local test = require "test"
local task = require "task"
local http = require "http"
local client = require "http_client"

local peers = require "tests.http_peers"

local serve_here, read_request, header = peers.serve, peers.read_request, peers.header

-- Runs fn in a task and fails the case when it has not returned after ms (a hang is the
-- defect some of these cases look for; the case must fail, not wait for the runner).
local function within(ms, fn)
  local t = task.spawn(fn)
  local joined, a, b = t:join(ms)
  test.ok(joined ~= nil, "still waiting after " .. ms .. " ms")
  test.ok(joined, "raised: " .. tostring(a))
  return a, b
end

-- --- 1. timeouts: inactivity per wait, total_timeout for the whole request ------------------

test.case("a head trickled a byte every 50 ms ends at total_timeout, not never", function()
  local base = serve_here(function(socket)
    read_request(socket)
    local head = "HTTP/1.1 200 OK\r\n" .. ("X-Slow: y\r\n"):rep(1000)
    for i = 1, #head do
      if not socket:write(head:sub(i, i)) then return end
      task.sleep(50)
    end
  end)
  local started = task.now()
  local res, err = within(10000, function()
    return http.get(base .. "/", { timeout = 1000, total_timeout = 600 })
  end)
  test.eq(res, nil)
  test.eq(err.name, "ETIMEDOUT")
  test.match(err.message, "total_timeout")
  local took = task.now() - started
  test.ok(took >= 590 and took < 5000, "took " .. took .. " ms")
end)

test.case("a body trickled a byte every 50 ms ends at total_timeout in res:body()", function()
  local base = serve_here(function(socket)
    read_request(socket)
    socket:write("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    while socket:write("x") do task.sleep(50) end
  end)
  local started = task.now()
  local body, err = within(10000, function()
    local res = assert(http.get(base .. "/", { timeout = 1000, total_timeout = 700 }))
    return res:body()
  end)
  test.eq(body, nil)
  test.eq(err.name, "ETIMEDOUT")
  test.match(err.message, "total_timeout")
  test.ok(task.now() - started < 5000, "bounded")
end)

test.case("total_timeout also bounds the body read piece by piece after the head came", function()
  local base = serve_here(function(socket)
    read_request(socket)
    socket:write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    while socket:write("1\r\nx\r\n") do task.sleep(30) end
  end)
  local res = assert(http.get(base .. "/", { total_timeout = 500 }))
  local n, err = 0, nil
  within(10000, function()
    while true do
      local data
      data, err = res:read()
      if not data then return end
      n = n + #data
    end
  end)
  test.eq(err and err.name, "ETIMEDOUT")
  test.ok(n > 0, "some bytes came before the deadline")
end)

test.case("total_timeout cuts a connect that hangs and a body write the server never reads", function()
  local helpers = require "tests.helpers"
  local port = helpers.full_backlog()
  local started = task.now()
  local res, err = http.get("http://127.0.0.1:" .. port .. "/", { connect_timeout = 20000, total_timeout = 300 })
  test.eq(res, nil)
  test.eq(err.name, "ETIMEDOUT")
  test.match(err.message, "total_timeout")
  test.ok(task.now() - started < 5000, "not the connect_timeout")
  local base = serve_here(function(socket)
    read_request(socket)
    task.sleep(10000) -- reads nothing more: the client's write stalls
  end)
  started = task.now()
  res, err = within(10000, function()
    return http.request({ url = base .. "/", method = "POST", body = ("b"):rep(64 * 1024 * 1024),
      send_timeout = 20000, total_timeout = 500 })
  end)
  test.eq(res, nil)
  test.eq(err.name, "ETIMEDOUT")
  test.match(err.message, "total_timeout")
  test.ok(task.now() - started < 5000, "not the send_timeout")
end)

test.case("endless 100 Continue: an error after 10 interim responses, not a hang", function()
  local sent = 0
  local base = serve_here(function(socket)
    read_request(socket)
    while socket:write("HTTP/1.1 100 Continue\r\n\r\n") do
      sent = sent + 1
      task.sleep(5)
    end
  end)
  local res, err = within(10000, function() return http.get(base .. "/") end)
  test.eq(res, nil)
  test.eq(err.name, "EPROTO")
  test.match(err.message, "interim")
  test.ok(sent < 1000, "stopped reading early")
end)

test.case("10 interim responses (103 Early Hints, 100) then the answer: accepted", function()
  local base = serve_here(function(socket)
    read_request(socket)
    socket:write(("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"):rep(9) ..
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
  end)
  local res = assert(http.get(base .. "/"))
  test.eq(res.status, 200)
  test.eq(res:body(), "ok")
end)

test.case("total_timeout: option checks and the default is documented as 300000", function()
  test.raises(function() http.get("http://h/", { total_timeout = "5" }) end,
    "options.total_timeout: number expected, got string")
  test.raises(function() http.get("http://h/", { total_timeout = -1 }) end, "options.total_timeout")
  -- 0 = no total limit: a quick server answers as usual
  local base = serve_here(function(socket)
    read_request(socket)
    socket:write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
  end)
  test.eq(assert(http.get(base .. "/", { total_timeout = 0 })):body(), "ok")
end)

-- --- 2, and credentials: redirects never touch the caller's tables ----------------------------

test.case("a redirect to GET leaves the caller's headers and options tables as they were", function()
  local seen = {}
  local base = serve_here(function(socket)
    while true do
      local req = read_request(socket)
      if not req then return end
      local len = tonumber(header(req, "content-length") or "0")
      if len > 0 then socket:read(len) end
      seen[#seen + 1] = req
      if req[1]:match("^POST /form") then
        socket:write("HTTP/1.1 303 See Other\r\nLocation: /done\r\nContent-Length: 0\r\n\r\n")
      else
        socket:write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
      end
    end
  end)
  local headers = { ["Content-Type"] = "application/x-www-form-urlencoded", ["Content-Language"] = "en",
    ["X-Keep"] = "1" }
  local options = { url = base .. "/form", method = "POST", body = "a=1", headers = headers,
    follow_redirects = true }
  local res = assert(http.request(options))
  test.eq(res:body(), "done")
  test.eq(headers, { ["Content-Type"] = "application/x-www-form-urlencoded", ["Content-Language"] = "en",
    ["X-Keep"] = "1" }, "the caller's headers")
  test.eq(options.headers, headers)
  test.eq(options.method, "POST")
  test.eq(options.url, base .. "/form")
  test.eq(options.body, "a=1")
  test.eq(seen[2][1], "GET /done HTTP/1.1")
  test.eq(header(seen[2], "content-type"), nil, "Content-* headers go with the body")
  test.eq(header(seen[2], "content-language"), nil)
  test.eq(header(seen[2], "x-keep"), "1")
  -- the same table works again, unchanged, for a second request
  res = assert(http.request(options))
  test.eq(res:body(), "done")
  test.eq(header(seen[3], "content-type"), "application/x-www-form-urlencoded")
end)

test.case("Authorization, Cookie and Proxy-Authorization do not follow a redirect to another origin", function()
  local got = {}
  local function recorder(name)
    return serve_here(function(socket)
      local req = read_request(socket)
      got[name] = req
      local target = req[1]:match("^%S+ (%S+)")
      local location = target:match("^/go%?to=(.*)$")
      if location then
        socket:write("HTTP/1.1 307 Temporary Redirect\r\nLocation: " .. location ..
          "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
      else
        socket:write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
      end
    end)
  end
  local a, b = recorder("a"), recorder("b")
  local headers = { Authorization = "Bearer secret", Cookie = "sid=1", ["Proxy-Authorization"] = "Basic x",
    ["X-Other"] = "kept" }
  -- another port is another origin
  local res = assert(http.get(a .. "/go?to=" .. b .. "/landing", { headers = headers, follow_redirects = true }))
  test.eq(res:body(), "ok")
  test.eq(got.b[1], "GET /landing HTTP/1.1")
  test.eq(header(got.b, "authorization"), nil)
  test.eq(header(got.b, "cookie"), nil)
  test.eq(header(got.b, "proxy-authorization"), nil)
  test.eq(header(got.b, "x-other"), "kept")
  test.eq(header(got.a, "authorization"), "Bearer secret")
  test.eq(headers.Authorization, "Bearer secret", "the caller's table keeps them")
  -- the same origin keeps them
  res = assert(http.get(a .. "/go?to=/landing", { headers = headers, follow_redirects = true }))
  test.eq(res:body(), "ok")
  test.eq(header(got.a, "authorization"), "Bearer secret")
  test.eq(header(got.a, "cookie"), "sid=1")
  -- a host name that differs only in case is the same origin; localhost is not 127.0.0.1
  local port = a:match(":(%d+)$")
  res = assert(http.get(a .. "/go?to=http://localhost:" .. port .. "/x", { headers = headers,
    follow_redirects = true }))
  test.eq(res:body(), "ok")
  test.eq(header(got.a, "authorization"), nil, "localhost is another host")
end)

test.case("redirect methods as fetch: 303 -> GET (HEAD stays), 301/302 turn POST only into GET", function()
  local base = serve_here(function(socket)
    while true do
      local req = read_request(socket)
      if not req then return end
      local method, target = req[1]:match("^(%S+) (%S+)")
      local len = tonumber(header(req, "content-length") or "0")
      local body = len > 0 and socket:read(len) or ""
      local status = target:match("^/r(%d%d%d)$")
      if status then
        socket:write("HTTP/1.1 " .. status .. " Moved\r\nLocation: /landed\r\nContent-Length: 0\r\n\r\n")
      else
        local answer = method .. " " .. body .. " " .. tostring(header(req, "content-type"))
        socket:write("HTTP/1.1 200 OK\r\nX-Answer: " .. answer .. "\r\nContent-Length: " .. #answer .. "\r\n\r\n" ..
          (method == "HEAD" and "" or answer))
      end
    end
  end)
  local function via(status, method)
    local res = assert(http.request({ url = base .. "/r" .. status, method = method, body = method ~= "HEAD" and "data" or nil,
      headers = { ["Content-Type"] = "text/plain" }, follow_redirects = true }))
    res:body()
    return res.headers["x-answer"]
  end
  test.eq(via(303, "POST"), "GET  nil")
  test.eq(via(303, "PUT"), "GET  nil")
  test.eq(via(303, "HEAD"), "HEAD  text/plain", "HEAD stays HEAD, with its headers")
  test.eq(via(301, "POST"), "GET  nil")
  test.eq(via(302, "POST"), "GET  nil")
  test.eq(via(302, "PUT"), "PUT data text/plain", "301/302 keep other methods and their body")
  test.eq(via(301, "DELETE"), "DELETE data text/plain")
  test.eq(via(307, "POST"), "POST data text/plain")
  test.eq(via(308, "PATCH"), "PATCH data text/plain")
end)

-- --- 3. Location resolved as RFC 3986 section 5 says -------------------------------------------

-- RFC 3986 5.4.1 and 5.4.2, base http://a/b/c/d;p?q (strict parser: "http:g" stays).
local RFC3986 = {
  { "g:h", "g:h" }, { "g", "http://a/b/c/g" }, { "./g", "http://a/b/c/g" }, { "g/", "http://a/b/c/g/" },
  { "/g", "http://a/g" }, { "//g", "http://g" }, { "?y", "http://a/b/c/d;p?y" },
  { "g?y", "http://a/b/c/g?y" }, { "#s", "http://a/b/c/d;p?q#s" }, { "g#s", "http://a/b/c/g#s" },
  { "g?y#s", "http://a/b/c/g?y#s" }, { ";x", "http://a/b/c/;x" }, { "g;x", "http://a/b/c/g;x" },
  { "g;x?y#s", "http://a/b/c/g;x?y#s" }, { "", "http://a/b/c/d;p?q" }, { ".", "http://a/b/c/" },
  { "./", "http://a/b/c/" }, { "..", "http://a/b/" }, { "../", "http://a/b/" }, { "../g", "http://a/b/g" },
  { "../..", "http://a/" }, { "../../", "http://a/" }, { "../../g", "http://a/g" },
  -- abnormal
  { "../../../g", "http://a/g" }, { "../../../../g", "http://a/g" }, { "/./g", "http://a/g" },
  { "/../g", "http://a/g" }, { "g.", "http://a/b/c/g." }, { ".g", "http://a/b/c/.g" },
  { "g..", "http://a/b/c/g.." }, { "..g", "http://a/b/c/..g" }, { "./../g", "http://a/b/g" },
  { "./g/.", "http://a/b/c/g/" }, { "g/./h", "http://a/b/c/g/h" }, { "g/../h", "http://a/b/c/h" },
  { "g;x=1/./y", "http://a/b/c/g;x=1/y" }, { "g;x=1/../y", "http://a/b/c/y" },
  { "g?y/./x", "http://a/b/c/g?y/./x" }, { "g?y/../x", "http://a/b/c/g?y/../x" },
  { "g#s/./x", "http://a/b/c/g#s/./x" }, { "g#s/../x", "http://a/b/c/g#s/../x" }, { "http:g", "http:g" },
}

test.case("http_client.resolve: every example of RFC 3986 5.4", function()
  for _, case in ipairs(RFC3986) do
    test.eq(client.resolve("http://a/b/c/d;p?q", case[1]), case[2], "reference " .. case[1])
  end
  -- more shapes a Location takes
  test.eq(client.resolve("http://h:8080/a/b?x", "//other:81/p?q"), "http://other:81/p?q")
  test.eq(client.resolve("http://h/a/b", "HTTP://X/./y/../z"), "HTTP://X/z")
  test.eq(client.resolve("http://h", "a"), "http://h/a", "a base with an empty path")
  test.eq(client.resolve("http://h/a#frag", "b"), "http://h/b")
  test.eq(client.resolve("http://h/a/b/", "mailto:x@y"), "mailto:x@y")
  test.raises(function() client.resolve("/relative", "x") end, "bad argument #1 to 'resolve'")
  test.raises(function() client.resolve("http://h/", nil) end, "bad argument #2 to 'resolve'")
end)

test.case("redirects: ?q, ../a, //host, /abs and a/b with dot segments reach the right path", function()
  local paths = {}
  local base, port = serve_here(function(socket)
    while true do
      local req = read_request(socket)
      if not req then return end
      local target = req[1]:match("^%S+ (%S+)")
      paths[#paths + 1] = target
      local location = ({
        ["/x/y/query"] = "?q=1",
        ["/x/y/up"] = "../a",
        ["/x/y/net"] = "//127.0.0.1:PORT/net/./landed",
        ["/x/y/abs"] = "/abs/../abs2",
        ["/x/y/rel"] = "a/b/./c/../d",
        ["/x/y/frag"] = "done#part",
      })[target]
      if location then
        location = location:gsub("PORT", socket:localAddress().port)
        socket:write("HTTP/1.1 302 Found\r\nLocation: " .. location .. "\r\nContent-Length: 0\r\n\r\n")
      else
        socket:write("HTTP/1.1 200 OK\r\nContent-Length: " .. #target .. "\r\n\r\n" .. target)
      end
    end
  end)
  local function final(path)
    return assert(http.get(base .. path, { follow_redirects = true })):body()
  end
  test.eq(final("/x/y/query"), "/x/y/query?q=1")
  test.eq(final("/x/y/up"), "/x/a")
  test.eq(final("/x/y/net"), "/net/landed")
  test.eq(final("/x/y/abs"), "/abs2")
  test.eq(final("/x/y/rel"), "/x/y/a/b/d")
  test.eq(final("/x/y/frag"), "/x/y/done", "the fragment is not sent")
  test.ok(port > 0)
end)

test.case("a redirect to mailto:, file: or another non-http scheme is an error, not a path", function()
  local requests = 0
  local base = serve_here(function(socket)
    while true do
      local req = read_request(socket)
      if not req then return end
      requests = requests + 1
      local to = req[1]:match("^GET /%?to=(%S+)")
      if to then
        socket:write("HTTP/1.1 301 Moved\r\nLocation: " .. to .. "\r\nContent-Length: 0\r\n\r\n")
      else
        socket:write("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
      end
    end
  end)
  for _, to in ipairs({ "mailto:someone@example.com", "file:///etc/passwd", "ftp://h/x", "javascript:alert(1)",
    "data:text/plain,hi" }) do
    local before = requests
    local res, err = http.get(base .. "/?to=" .. to, { follow_redirects = true })
    test.eq(res, nil, to)
    test.eq(err.name, "EINVAL", to)
    test.match(err.message, "redirect", to)
    test.eq(requests, before + 1, "nothing more was requested for " .. to)
  end
  -- not followed: the 301 itself comes back, as always
  local res = assert(http.get(base .. "/?to=mailto:x@y"))
  test.eq(res.status, 301)
  test.eq(res.headers.location, "mailto:x@y")
end)

-- --- 4. Set-Cookie is a list ---------------------------------------------------------------

test.case("Set-Cookie is always an array, never joined (its dates hold commas)", function()
  local base = serve_here(function(socket)
    while true do
      local req = read_request(socket)
      if not req then return end
      if req[1]:match("^GET /two") then
        socket:write("HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT\r\n" ..
          "X-Dup: 1\r\nset-cookie: b=2; Path=/\r\nX-Dup: 2\r\nContent-Length: 0\r\n\r\n")
      elseif req[1]:match("^GET /one") then
        socket:write("HTTP/1.1 200 OK\r\nSet-Cookie: only=1\r\nContent-Length: 0\r\n\r\n")
      else
        socket:write("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
      end
    end
  end)
  local res = assert(http.get(base .. "/two"))
  test.eq(res.headers["set-cookie"], { "a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT", "b=2; Path=/" })
  test.eq(res.headers["Set-Cookie"], res.headers["set-cookie"])
  test.eq(res.headers["x-dup"], "1, 2", "other repeated fields are still joined")
  res = assert(http.get(base .. "/one"))
  test.eq(res.headers["set-cookie"], { "only=1" })
  res = assert(http.get(base .. "/none"))
  test.eq(res.headers["set-cookie"], nil)
end)

-- --- 5. a response sent before the request body was read ----------------------------------

test.case("a 413 sent before the body was read, then a close: the 413 comes back, not EPIPE", function()
  local base = serve_here(function(socket)
    read_request(socket)
    socket:write("HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!")
    -- returns: the socket closes with the body unread (the kernel sends a reset)
  end)
  local body = ("x"):rep(32 * 1024 * 1024)
  for _ = 1, 3 do
    local res, err = http.request({ url = base .. "/upload", method = "POST", body = body })
    test.eq(err, nil)
    test.eq(res.status, 413)
    test.eq(res:body(), "too big!")
  end
  test.eq(client.pooled("127.0.0.1", tonumber(base:match("(%d+)$"))), 0, "not reused")
end)

test.case("a server that answers early but keeps the connection: the response after the body", function()
  -- python reads the head, answers, then reads (and drops) the body, as nginx does
  local helpers = require "tests.helpers"
  local peer = helpers.start("python3 -c " .. test.quote([[
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(8)
print("listening %d" % s.getsockname()[1], flush=True)
c, _ = s.accept()
buf = b""
while b"\r\n\r\n" not in buf: buf += c.recv(65536)
c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope")
n = len(buf) - buf.index(b"\r\n\r\n") - 4
while n < 4000000:
  d = c.recv(65536)
  if not d: break
  n += len(d)
c.close()
]]))
  local port = tonumber(helpers.wait_output(peer, "listening (%d+)"))
  local res = assert(http.request({ url = "http://127.0.0.1:" .. port .. "/", method = "PUT",
    body = ("y"):rep(4000000) }))
  test.eq(res.status, 403)
  test.eq(res:body(), "nope")
end)

-- --- 6. transfer codings other than chunked -----------------------------------------------

test.case("Transfer-Encoding: gzip, chunked (and gzip alone) is EPROTO, not gzip bytes", function()
  local base = serve_here(function(socket)
    local req = read_request(socket)
    local te = req[1]:match("^%u+ /(%S+)"):gsub("_", ", ")
    socket:write("HTTP/1.1 200 OK\r\nTransfer-Encoding: " .. te .. "\r\nConnection: close\r\n\r\n" ..
      "5\r\n\31\139\8\0\0\r\n0\r\n\r\n")
  end)
  for _, te in ipairs({ "gzip_chunked", "gzip", "deflate_chunked", "identity", "chunked_gzip" }) do
    local res, err = http.get(base .. "/" .. te)
    test.eq(res, nil, te)
    test.eq(err.name, "EPROTO", te)
    test.match(err.message, "unsupported transfer coding", te)
  end
  local res = assert(http.get(base .. "/Chunked"))
  test.eq(res:body(), "\31\139\8\0\0", "chunked alone, any case, is decoded")
  -- a response without a body says what it likes
  res = assert(http.request({ url = base .. "/gzip_chunked", method = "HEAD" }))
  test.eq(res.status, 200)
end)

-- --- 7. what the caller puts in a request --------------------------------------------------

test.case("control characters in header values, names and targets raise naming the header", function()
  local function req(headers) return function() http.request({ url = "http://h/", headers = headers }) end end
  for _, bad in ipairs({ "a\rb", "a\nb", "a\0b", "a\1b", "a\27[31m", "a\127", "\r\nX-Injected: 1" }) do
    test.raises(req({ ["X-Bad"] = bad }), "options.headers: X%-Bad: control character")
  end
  test.raises(req({ ["X-A\r\nX-B"] = "v" }), "options.headers: bad header name")
  test.raises(req({ ["X-A:"] = "v" }), "options.headers: bad header name")
  test.raises(req({ [""] = "v" }), "options.headers: bad header name")
  test.raises(req({ ["Host"] = "a", ["host"] = "b" }), "options.headers: [Hh]ost given twice")
  test.raises(function() http.request({ url = "http://h/a\1b" }) end, "options.url")
  test.raises(function() http.request({ host = "h", path = "/a\127" }) end, "options.path")
  test.raises(function() http.request({ host = "h", path = "/a\r\nX: y" }) end, "options.path")
  test.raises(function() http.request({ url = "http://h/", method = "GET\r\n" }) end, "options.method")
  test.raises(function() http.request({ url = "http://h/", method = "G\0T" }) end, "options.method")
  -- HTAB is allowed in a value, and sent as is
  local got
  local base = serve_here(function(socket)
    got = read_request(socket)
    socket:write("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
  end)
  assert(http.request({ url = base .. "/", headers = { ["X-Tab"] = "a\tb" } }))
  test.eq(header(got, "x-tab"), "a\tb")
end)

-- --- max_body_size for every framing ------------------------------------------------------

test.case("max_body_size stops an endless chunked or close-delimited body", function()
  local base = serve_here(function(socket)
    local req = read_request(socket)
    local piece = ("z"):rep(4096)
    if req[1]:match("^GET /chunked") then
      socket:write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
      while socket:write("1000\r\n" .. piece .. "\r\n") do end
    else
      socket:write("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
      while socket:write(piece) do end
    end
  end)
  for _, path in ipairs({ "/chunked", "/close" }) do
    local body, err = within(20000, function()
      return assert(http.get(base .. path, { max_body_size = 100000 })):body()
    end)
    test.eq(body, nil, path)
    test.eq(err.name, "EMSGSIZE", path)
  end
  test.eq(client.pooled("127.0.0.1", tonumber(base:match("(%d+)$"))), 0)
end)
