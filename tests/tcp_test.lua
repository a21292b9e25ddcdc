-- tcp: our server against real clients (socat, node), our client against real servers, and
-- both against each other, on loopback over IPv4, IPv6 and Unix sockets.
local test = require "test"
local task = require "task"
local tcp = require "tcp"
local helpers = require "tests.helpers"

local q = test.quote

-- An echo server script for helpers.serve; options is Lua source for the options table.
local function echo_server(options)
  return ([[
local tcp = require "tcp"
local server = assert(tcp.createServer(0, function(socket)
  while true do
    local data, err = socket:read()
    if not data then return end
    assert(socket:write(data))
  end
end, %s))
print("listening " .. server:address().port)
io.stdout:flush()
]]):format(options or "{}")
end

-- An in-process server; closed when the case ends.
-- Everything the peer sends until it closes, as one string.
local function read_to_end(s)
  local parts = {}
  while true do
    local data = s:read()
    if not data then return table.concat(parts) end
    parts[#parts + 1] = data
  end
end

local function serve_here(onconnect, options)
  local server = assert(tcp.createServer(0, onconnect, options or { host = "127.0.0.1" }))
  test.cleanup(function() server:close() end)
  return server, server:address().port
end

test.case("our echo server answers socat over IPv4", function()
  local port = helpers.serve(echo_server())
  local out, status = test.sh("printf 'hello\\nworld\\n' | socat -t 2 - TCP4:127.0.0.1:" .. port)
  test.eq(status, 0)
  test.eq(out, "hello\nworld\n")
end)

test.case("our echo server answers socat over IPv6", function()
  local port = helpers.serve(echo_server('{ family = 6, host = "::1" }'))
  local out, status = test.sh("printf 'over six\\n' | socat -t 2 - TCP6:[::1]:" .. port)
  test.eq(status, 0)
  test.eq(out, "over six\n")
end)

test.case("a server on :: (the IPv6 default) takes IPv4 clients too", function()
  local port = helpers.serve(echo_server("{ family = 6 }"))
  test.eq((test.sh("printf 'dual\\n' | socat -t 2 - TCP4:127.0.0.1:" .. port)), "dual\n")
  test.eq((test.sh("printf 'dual6\\n' | socat -t 2 - TCP6:[::1]:" .. port)), "dual6\n")
end)

test.case("our client talks to a node echo server", function()
  local peer = helpers.start("node " .. q(helpers.node_script(io.open("tests/peers/echo_server.js"):read("*a"))))
  local port = tonumber(helpers.wait_output(peer, "listening (%d+)"))
  local s = assert(tcp.connect(port, "127.0.0.1"))
  assert(s:write("ping\n"))
  test.eq(s:readline(), "ping")
  assert(s:write({ "a", "b", "c\n" }))
  test.eq(s:readline(), "abc")
  test.eq(s:localAddress().address, "127.0.0.1")
  test.eq(s:remoteAddress(), { family = 4, port = port, address = "127.0.0.1" })
  s:close()
end)

test.case("our client talks to socat over IPv6, and reads exactly n bytes", function()
  local port = helpers.free_port()
  helpers.start("socat TCP6-LISTEN:" .. port .. ",bind=[::1],reuseaddr,fork SYSTEM:'printf 0123456789'")
  helpers.wait_port(port, "::1")
  local s = assert(tcp.connect(port, "::1", { family = 6 }))
  test.eq(s:remoteAddress().family, 6)
  test.eq(s:read(4), "0123")
  test.eq(s:read(6), "456789")
  local data, err = s:read()
  test.eq(data, nil)
  test.eq(err.name, "EOF")
  s:close()
end)

test.case("our client and our server, readline with \\n and \\r\\n, array writes", function()
  local _, port = serve_here(function(socket)
    local a = socket:readline()
    local b = socket:readline()
    socket:write({ a, "|", b, "\n" })
  end)
  local s = assert(tcp.connect(port))
  assert(s:write("first\r\nsecond\n"))
  test.eq(s:readline(), "first|second")
  s:close()
end)

test.case("connecting to a closed port gives ECONNREFUSED", function()
  local port = helpers.free_port()
  local s, err = tcp.connect(port, "127.0.0.1")
  test.eq(s, nil)
  test.eq(err.name, "ECONNREFUSED")
  test.ok(err.code < 0 and type(err.message) == "string", "error table has code and message")
  test.eq(tostring(err), "ECONNREFUSED: connection refused")
end)

test.case("connect honours its timeout when the peer's backlog is full", function()
  local port = helpers.full_backlog()
  local started = task.now()
  local s, err = tcp.connect(port, "127.0.0.1", { timeout = 300 })
  test.eq(s, nil)
  test.eq(err.name, "ETIMEDOUT")
  test.ok(task.now() - started >= 290, "waited for the timeout")
end)

test.case("a read times out after setTimeout and the socket stays usable", function()
  local result = {}
  local _, port = serve_here(function(socket)
    socket:setTimeout(100)
    local started = task.now()
    local data, err = socket:read()
    result.data, result.err, result.waited = data, err, task.now() - started
    result.write_ok = socket:write("still here\n")
    result.after = socket:readline()
  end)
  local s = assert(tcp.connect(port))
  test.eq(s:readline(), "still here")
  assert(s:write("late line\n"))
  task.sleep(50)
  test.eq(result.data, nil)
  test.eq(result.err.name, "ETIMEDOUT")
  test.ok(result.waited >= 95, "waited about 100 ms, got " .. tostring(result.waited))
  test.eq(result.write_ok, true)
  test.eq(result.after, "late line")
  s:close()
end)

test.case("the server's timeout option applies to every connection", function()
  local got = {}
  local _, port = serve_here(function(socket)
    got.data, got.err = socket:read()
  end, { host = "127.0.0.1", timeout = 80 })
  local s = assert(tcp.connect(port))
  local data, err = s:read() -- the server gives up and closes
  test.eq(data, nil)
  test.eq(err.name, "EOF")
  test.eq(got.err.name, "ETIMEDOUT")
  s:close()
end)

test.case("a peer reset reaches the reader as ECONNRESET", function()
  local port, peer = helpers.serve([[
local tcp = require "tcp"
local server = assert(tcp.createServer(0, function(socket)
  local line, err, partial = socket:readline()
  print("result", line, err and err.name, partial)
  io.stdout:flush()
end))
print("listening " .. server:address().port)
io.stdout:flush()
]])
  test.sh("node tests/peers/reset_client.js " .. port)
  local result = helpers.wait_output(peer, "result[^\n]*")
  test.match(result, "result\tnil\tECONNRESET")
end)

test.case("EOF in the middle of a line gives nil, EOF and the partial line", function()
  local got = {}
  local _, port = serve_here(function(socket)
    got.line, got.err, got.partial = socket:readline()
  end)
  test.sh("printf 'no newline here' | socat -t 1 - TCP4:127.0.0.1:" .. port)
  task.sleep(50)
  test.eq(got.line, nil)
  test.eq(got.err.name, "EOF")
  test.eq(got.partial, "no newline here")
end)

test.case("read(n) at EOF returns the partial bytes as the third value", function()
  local got = {}
  local _, port = serve_here(function(socket)
    got.data, got.err, got.partial = socket:read(100)
  end)
  test.sh("printf 'short' | socat -t 1 - TCP4:127.0.0.1:" .. port)
  task.sleep(50)
  test.eq({ got.data, got.err and got.err.name, got.partial }, { nil, "EOF", "short" })
end)

test.case("an overlong line is an error, not an unbounded buffer", function()
  local got = {}
  local _, port = serve_here(function(socket)
    got.line, got.err = socket:readline()
  end, { host = "127.0.0.1", read_buffer_size = 1 })
  local s = assert(tcp.connect(port))
  s:write(("x"):rep(5000))
  task.sleep(100)
  test.eq(got.line, nil)
  test.eq(got.err.name, "ENOBUFS")
  s:close()
end)

test.case("maxconnections: connections over the limit are closed at once, the server stays healthy", function()
  local port, peer = helpers.serve(echo_server("{ maxconnections = 2 }"))
  local a = assert(tcp.connect(port))
  local b = assert(tcp.connect(port))
  assert(a:write("a\n")); test.eq(a:readline(), "a")
  assert(b:write("b\n")); test.eq(b:readline(), "b")
  local c = assert(tcp.connect(port)) -- the kernel completes the handshake; the server closes
  local data, err = c:read()
  test.eq(data, nil)
  test.ok(err.name == "EOF" or err.name == "ECONNRESET", "third connection closed: " .. tostring(err))
  c:close()
  a:close()
  task.sleep(50)
  local d = assert(tcp.connect(port))
  assert(d:write("d\n"))
  test.eq(d:readline(), "d", "a new connection is served once one closed")
  d:close()
  b:close()
  test.eq(select(2, test.sh("kill -0 " .. peer.pid)), 0, "the server process is alive")
end)

local COUNTING_SERVER = [[
local tcp = require "tcp"
local function count(socket)
  local total = 0
  while true do
    local data = socket:read()
    if not data then break end
    total = total + #data
  end
  socket:write("got " .. total .. " bytes\n")
end
local port_server = assert(tcp.createServer(0, count))
if arg[1] then assert(tcp.createServer(arg[1], count)) end
print("listening " .. port_server:address().port)
io.stdout:flush()
]]

test.case("half close: the client shuts down writing and still reads the answer", function()
  local port = helpers.serve(COUNTING_SERVER)
  -- socat half-closes when its stdin ends and keeps reading
  test.eq((test.sh("head -c 100000 /dev/zero | socat -t 3 - TCP4:127.0.0.1:" .. port)), "got 100000 bytes\n")
  -- and our own client's shutdown() does the same
  local s = assert(tcp.connect(port))
  assert(s:write("12345"))
  test.eq(s:shutdown(), true)
  test.eq(s:readline(), "got 5 bytes")
  s:close()
end)

test.case("socket['end'] is the seed's name for shutdown", function()
  local _, port = serve_here(function(socket)
    local data = socket:read(3)
    socket:write(data .. "!")
  end)
  local s = assert(tcp.connect(port))
  s:write("abc")
  test.eq(s["end"](s), true)
  test.eq(s:read(4), "abc!")
  s:close()
end)

test.case("64 MiB through one socket arrive intact (sha256), both directions", function()
  local dir = test.tmpdir()
  local file = dir .. "/big.bin"
  test.sh("head -c 67108864 /dev/urandom > " .. q(file))
  local want = test.sh("sha256sum < " .. q(file))
  -- socat sends the file, our server echoes it back, socat's output is hashed
  local port = helpers.serve(echo_server())
  test.eq(test.sh("socat -t 5 -b 262144 TCP4:127.0.0.1:" .. port .. " - < " .. q(file) .. " | sha256sum"), want)
  -- our server writes the whole file in one write() call to a socat reader
  local port2 = helpers.serve(([[
local tcp = require "tcp"
local f = assert(io.open(%q, "rb"))
local data = f:read("*a")
f:close()
local server = assert(tcp.createServer(0, function(socket) assert(socket:write(data)) end))
print("listening " .. server:address().port)
io.stdout:flush()
]]):format(file))
  test.eq(test.sh("socat -u TCP4:127.0.0.1:" .. port2 .. " - | sha256sum"), want)
end)

test.case("5,000 concurrent connections from node are all echoed", function()
  local port = helpers.serve(echo_server())
  local out, status = test.sh("node tests/peers/many_clients.js " .. port .. " 5000")
  test.eq(status, 0, out)
  test.eq(out, "ok 5000 5000\n")
end)

test.case("writing to a socket the peer closed gives an error, not SIGPIPE", function()
  local got = {}
  local finished = false
  local _, port = serve_here(function(socket)
    socket:read() -- wait for the client to go away
    for _ = 1, 50 do
      local ok, err = socket:write(("x"):rep(65536))
      if not ok then got.err = err break end
      task.sleep(5)
    end
    finished = true
  end)
  local s = assert(tcp.connect(port))
  s:write("bye")
  task.sleep(20)
  s:close()
  local deadline = task.now() + 3000
  while not finished and task.now() < deadline do task.sleep(10) end
  test.ok(got.err, "a write failed")
  test.ok(got.err.name == "EPIPE" or got.err.name == "ECONNRESET", "got " .. tostring(got.err))
end)

test.case("operations on a closed socket return ENOTCONN; close twice is harmless", function()
  local _, port = serve_here(function(socket) socket:read() end)
  local s = assert(tcp.connect(port))
  s:close()
  s:close()
  local data, err = s:read()
  test.eq(data, nil)
  test.eq(err.name, "ENOTCONN")
  test.eq(select(2, s:write("x")).name, "ENOTCONN")
  test.eq(tostring(s), "socket (closed)")
end)

test.case("two tasks reading one socket: the second gets EBUSY", function()
  local _, port = serve_here(function(socket) task.sleep(100) end)
  local s = assert(tcp.connect(port))
  local first = task.spawn(function() return s:read() end)
  task.sleep(10)
  local data, err = s:read()
  test.eq(data, nil)
  test.eq(err.name, "EBUSY")
  s:close()
  local _, fdata, ferr = first:join()
  test.eq(fdata, nil)
  test.eq(ferr.name, "ECANCELED", "the waiting reader learns of the close")
end)

test.case("an error in a handler is logged with a traceback and the server keeps serving", function()
  local port, peer = helpers.serve([[
local tcp = require "tcp"
local server = assert(tcp.createServer(0, function(socket)
  local line = socket:readline()
  if line == "boom" then error("handler exploded") end
  socket:write("fine\n")
end))
print("listening " .. server:address().port)
io.stdout:flush()
]])
  test.sh("printf 'boom\\n' | socat -t 1 - TCP4:127.0.0.1:" .. port)
  test.eq((test.sh("printf 'ok\\n' | socat -t 2 - TCP4:127.0.0.1:" .. port)), "fine\n")
  local log = helpers.wait_output(peer, "(uncaught error in task: [^\n]*handler exploded[^\n]*\nstack traceback:)")
  test.match(log, "server.lua:4: handler exploded")
end)

test.case("a handler that raises has its socket closed: the client reads EOF, not a timeout", function()
  local _, port = serve_here(function(socket)
    socket:readline()
    socket:write("before the error\n")
    local nothing
    return nothing.field -- raises, several frames below the task's own function
  end)
  local s = assert(tcp.connect(port, { timeout = 5000 }))
  s:write("hi\n")
  test.eq(s:readline(), "before the error", "what the handler wrote before raising is still sent")
  local data, err = s:read()
  test.eq(data, nil)
  test.eq(err.name, "EOF", "the socket was closed when the handler raised")
  s:close()
end)

test.case("read(n) larger than read_buffer_size waits for all n bytes, not for a timeout", function()
  local payload = ("r"):rep(100 * 1024)
  local _, port = serve_here(function(socket)
    socket:readline()
    socket:write(payload)
  end)
  local s = assert(tcp.connect(port, { read_buffer_size = 16, timeout = 5000 }))
  s:write("go\n")
  local data, err = s:read(#payload)
  s:close()
  test.eq(err, nil)
  test.eq(data and #data, #payload)
end)

test.case("close() right after a large write still delivers every byte", function()
  local payload = ("0123456789abcdef"):rep(256 * 1024) -- 4 MiB
  local _, port = serve_here(function(socket)
    socket:readline()
    assert(socket:write(payload))
    socket:close() -- queued, not yet written: close waits for it
  end)
  local s = assert(tcp.connect(port, { timeout = 5000 }))
  s:write("go\n")
  local got = read_to_end(s)
  s:close()
  test.eq(#got, #payload)
  test.ok(got == payload, "the bytes are intact")
end)

test.case("a writer far ahead of a peer that does not read waits (write_buffer_size), memory stays bounded", function()
  local written, chunk = 0, ("w"):rep(65536)
  local _, port = serve_here(function(socket)
    while written < 256 * 1024 * 1024 do
      if not socket:write(chunk) then return end
      written = written + #chunk
    end
  end, { host = "127.0.0.1", write_buffer_size = 64 })
  local s = assert(tcp.connect(port))
  task.sleep(500) -- not reading: the kernel's buffers fill, then the writer must wait
  local stalled = written
  test.ok(stalled < 64 * 1024 * 1024, "the writer waited: " .. stalled .. " bytes accepted")
  task.sleep(200)
  test.eq(written, stalled, "and is still waiting")
  local got = 0
  while got < 8 * 1024 * 1024 do got = got + #assert(s:read()) end
  s:close()
  test.ok(written > stalled, "reading let the writer go on")
end)

test.case("several tasks waiting to write to a peer that does not read: each write is queued, waits, returns true, in order", function()
  local results, MB = {}, 1024 * 1024
  local _, port = serve_here(function(socket)
    local writers = {}
    for i, byte in ipairs({ "a", "b", "c" }) do -- each far above write_buffer_size
      writers[i] = task.spawn(function() return socket:write(byte:rep(16 * MB)) end)
    end
    for i = 1, 3 do results[i] = { select(2, writers[i]:join()) } end
    socket:close()
  end, { host = "127.0.0.1", write_buffer_size = 64 })
  local s = assert(tcp.connect(port))
  task.sleep(300) -- not reading yet: the first writer waits, the others arrive behind it
  local all = read_to_end(s)
  s:close()
  for i = 1, 3 do test.eq(results[i], { true }, "writer " .. i) end
  test.eq(#all, 48 * MB)
  test.ok(all == ("a"):rep(16 * MB) .. ("b"):rep(16 * MB) .. ("c"):rep(16 * MB), "in the order they wrote")
end)

test.case("a write where the task cannot wait (inside gsub) does not wait: true, and its bytes are sent once", function()
  local result, MB = {}, 1024 * 1024
  local _, port = serve_here(function(socket)
    result.ok, result.err = pcall(string.gsub, "x", "x", function() -- the kernel cannot take 64 MiB at once
      result.wrote = { socket:write(("g"):rep(64 * MB)) }
    end)
    socket:close()
  end, { host = "127.0.0.1", write_buffer_size = 64 })
  local s = assert(tcp.connect(port))
  task.sleep(200)
  local got = #read_to_end(s)
  s:close()
  test.eq(result.ok, true, tostring(result.err))
  test.eq(result.wrote, { true })
  test.eq(got, 64 * MB)
end)

test.case("send_timeout closes a connection whose peer takes nothing; the waiting write fails", function()
  local result = {}
  local _, port = serve_here(function(socket)
    local chunk = ("s"):rep(65536)
    while true do
      local ok, err = socket:write(chunk)
      if not ok then result.err = err break end
    end
    result.done = true
  end, { host = "127.0.0.1", send_timeout = 300, write_buffer_size = 64 })
  local s = assert(tcp.connect(port))
  local deadline = task.now() + 10000
  while not result.done and task.now() < deadline do task.sleep(20) end
  s:close()
  test.ok(result.done, "the write returned within 10 s")
  test.eq(result.err and result.err.name, "ETIMEDOUT")
end)

test.case("port 0 picks a free port; connections() counts; close() stops accepting only", function()
  local release = false
  local server, port = serve_here(function(socket)
    while not release do task.sleep(5) end
    socket:write("bye\n")
  end)
  test.ok(port > 0, "a real port")
  test.eq(server:address().address, "127.0.0.1")
  local a = assert(tcp.connect(port))
  local b = assert(tcp.connect(port))
  task.sleep(30)
  test.eq(server:connections(), 2)
  server:close()
  local c, err = tcp.connect(port)
  test.eq(c, nil, "no longer accepting")
  test.eq(err.name, "ECONNREFUSED")
  release = true
  test.eq(a:readline(), "bye", "open connections finish")
  test.eq(b:readline(), "bye")
  a:close()
  b:close()
  task.sleep(20)
  test.eq(server:connections(), 0)
end)

test.case("a port in use gives EADDRINUSE", function()
  local _, port = serve_here(function() end)
  local server, err = tcp.createServer(port, function() end, { host = "127.0.0.1" })
  test.eq(server, nil)
  test.eq(err.name, "EADDRINUSE")
end)

test.case("tcp_reuseport lets two servers share a port", function()
  local a = assert(tcp.createServer(0, function(s) s:write("a\n") end, { host = "127.0.0.1", tcp_reuseport = true }))
  test.cleanup(function() a:close() end)
  local port = a:address().port
  local b = assert(tcp.createServer(port, function(s) s:write("b\n") end, { host = "127.0.0.1", tcp_reuseport = true }))
  test.cleanup(function() b:close() end)
  local seen = {}
  for _ = 1, 40 do
    local s = assert(tcp.connect(port))
    seen[s:readline()] = true
    s:close()
  end
  test.ok(seen.a and seen.b, "connections went to both servers")
end)

test.case("Unix domain sockets through the same API, with socat as the peer", function()
  local path = test.tmpdir() .. "/echo.sock"
  local server = assert(tcp.createServer(path, function(socket)
    socket:write("unix says " .. socket:readline() .. "\n")
  end))
  test.cleanup(function() server:close() end)
  test.eq(server:address().path, path)
  local s = assert(tcp.connect(path))
  s:write("hi\n")
  test.eq(s:readline(), "unix says hi")
  s:close()
  -- socat as the client, against a server in its own process (test.sh blocks this one)
  local dir = test.tmpdir()
  test.write(dir .. "/server.lua", COUNTING_SERVER)
  local other = dir .. "/count.sock"
  local peer = helpers.start(test.quote(test.luaio) .. " run " .. dir .. "/server.lua " .. other)
  helpers.wait_output(peer, "listening")
  test.eq((test.sh("printf 'there' | socat -t 2 - UNIX-CONNECT:" .. q(other))), "got 5 bytes\n")
end)

test.case("setNodelay and setKeepalive answer true on TCP sockets", function()
  local _, port = serve_here(function(socket) socket:read() end)
  local s = assert(tcp.connect(port, "127.0.0.1", { tcp_nodelay = false, tcp_keepalive = false }))
  test.eq(s:setNodelay(), true)
  test.eq(s:setNodelay(false), true)
  test.eq(s:setKeepalive(true, 30), true)
  test.eq(s:setKeepalive(false), true)
  s:close()
end)

test.case("isIP tells IPv4, IPv6 and neither", function()
  test.eq(tcp.isIP("127.0.0.1"), 4)
  test.eq(tcp.isIP("::1"), 6)
  test.eq(tcp.isIP("fe80::1:2"), 6)
  test.eq(tcp.isIP("localhost"), 0)
  test.eq(tcp.isIP("256.1.1.1"), 0)
  test.eq(tcp.isIP(""), 0)
end)

test.case("wrong arguments raise errors naming them", function()
  test.raises(function() tcp.createServer("x", nil) end, "bad argument #2 to 'createServer' %(function expected")
  test.raises(function() tcp.createServer(70000, print) end, "bad argument #1 to 'createServer' %(port number")
  test.raises(function() tcp.createServer(0, print, { timout = 5 }) end, "unknown option 'timout'")
  test.raises(function() tcp.createServer(0, print, { timeout = "5" }) end, "option 'timeout': .* expected, got string")
  test.raises(function() tcp.createServer(0, print, { family = 5 }) end,
    "tcp_test.lua:%d+: bad argument #3 to 'createServer' %(option 'family': 4 or 6 expected, got 5%)")
  for _, bad in ipairs({ -1, 0 / 0, "5" }) do
    test.raises(function() tcp.createServer(0, print, { timeout = bad }) end,
      "tcp_test.lua:%d+: bad argument #3 to 'createServer' %(option 'timeout': non%-negative number of milliseconds %(or math.huge%) expected")
    test.raises(function() tcp.connect(1, { timeout = bad }) end,
      "tcp_test.lua:%d+: bad argument #2 to 'connect' %(option 'timeout': non%-negative number of milliseconds")
  end
  test.raises(function() tcp.createServer(0, print, { tcp_backlog = 1.5 }) end, "option 'tcp_backlog': integer from 0 to 65535 expected, got 1.5")
  test.raises(function() tcp.connect(1, "127.0.0.1", { read_buffer_size = 0 }) end,
    "bad argument #3 to 'connect' %(option 'read_buffer_size': integer from 1 to 1048576 expected, got 0%)")
  test.raises(function() tcp.connect(1, { host = "x" }) end, "bad argument #2 to 'connect' %(unknown option 'host'%)")
  test.raises(function() tcp.connect(true) end, "bad argument #1 to 'connect'")
  test.raises(function() tcp.connect(80, 42) end, "bad argument #2 to 'connect' %(string expected")
  local _, port = serve_here(function(socket) socket:read() end)
  local s = assert(tcp.connect(port))
  test.cleanup(function() s:close() end)
  -- method calls count arguments after self, as Lua's own errors do
  test.raises(function() s:read(-1) end, "bad argument #1 to 'read' %(must not be negative%)")
  test.raises(function() s:read("x") end, "bad argument #1 to 'read'")
  test.raises(function() s:write(42) end, "bad argument #1 to 'write' %(string or array of strings expected%)")
  test.raises(function() s:write({ "a", 42 }) end, "bad argument #1 to 'write' %(array of strings expected%)")
  test.raises(function() s:setTimeout(-5) end, "bad argument #1 to 'setTimeout'")
end)

-- Host names and socket paths reach the resolver and the kernel as C strings: a zero byte
-- would cut them, so "127.0.0.1\0.evil.example" connected to 127.0.0.1.
test.case("a host or socket path with a zero byte raises, naming the argument", function()
  local _, port = serve_here(function(socket) socket:close() end)
  local zero = "string without zero bytes expected, got a string with a zero byte"
  for _, host in ipairs({ "127.0.0.1\0.evil.example", "localhost\0.evil.example" }) do
    test.raises(function() local _ = tcp.connect(port, host) end,
      "tcp_test%.lua:%d+: bad argument #2 to 'connect' %(" .. zero .. "%)")
    test.raises(function() local _ = tcp.connect(port, host, { tls = { verify = false } }) end,
      "tcp_test%.lua:%d+: bad argument #2 to 'connect' %(" .. zero .. "%)")
  end
  local path = test.tmpdir() .. "/sock"
  local unix = assert(tcp.createServer(path, function(socket) socket:close() end))
  test.cleanup(function() unix:close() end)
  test.raises(function() local _ = tcp.connect(path .. "\0x") end,
    "tcp_test%.lua:%d+: bad argument #1 to 'connect' %(socket path without zero bytes expected, got a string with a zero byte%)")
  test.raises(function() local _ = tcp.createServer(path .. "2\0x", print) end,
    "tcp_test%.lua:%d+: bad argument #1 to 'createServer' %(socket path without zero bytes expected, got a string with a zero byte%)")
  test.raises(function() local _ = tcp.createServer(0, print, { host = "127.0.0.1\0x" }) end,
    "tcp_test%.lua:%d+: bad argument #3 to 'createServer' %(option 'host': string without zero bytes expected")
  test.raises(function() local _ = tcp.connect(port, { tls = { servername = "a.example\0b" } }) end,
    "tcp_test%.lua:%d+: bad argument #2 to 'connect' %(option 'servername': string without zero bytes expected")
  test.raises(function() local _ = tcp.connect(port, { tls = { ca = "/etc/ssl/certs/ca-certificates.crt\0x" } }) end,
    "tcp_test%.lua:%d+: bad argument #2 to 'connect' %(option 'ca': PEM text or a path without zero bytes expected%)")
  test.raises(function() local _ = tcp.isIP("127.0.0.1\0x") end, "bad argument #1 to 'isIP' %(" .. zero .. "%)")
end)

-- What a handler writes in answer leaves when it waits again, not at the loop's end after
-- the handlers of the other connections read in the same iteration (it used to wait for
-- them, and the server held one output block per connection meanwhile).
test.case("an answer leaves at once, not after other connections' handlers in the same iteration", function()
  local port = helpers.serve(helpers.ANSWER .. [[
local tcp = require "tcp"
local server = assert(tcp.createServer(0, function(socket)
  while true do
    local line = socket:readline()
    if not line then return end
    socket:write(answer(line) .. "\n")
  end
end, { host = "127.0.0.1" }))
print("listening " .. server:address().port)
io.stdout:flush()
]])
  helpers.answer_at_once(function()
    local s = assert(tcp.connect(port, "127.0.0.1"))
    test.cleanup(function() s:close() end)
    s:setTimeout(10000)
    return {
      send = function(msg) assert(s:write(msg .. "\n")) end,
      receive = function() return s:readline() end,
    }
  end)
end)
