-- The WebSocket protocol, case by case, in the groups of the Autobahn testsuite's case list
-- (1 framing, 2 pings and pongs, 3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close
-- handling, 9 limits, 12/13 compression), plus the handshake and the API. The server runs in
-- this process; the client is a raw socket writing frames exactly as each case wants them
-- (tests/websocket_helpers.lua), or our own client. Real peers (node's ws, python3-websockets,
-- ws_load) are in websocket_peers_test.lua.
local test = require "test"
local task = require "task"
local tcp = require "tcp"
local websocket = require "websocket"
local H = require "tests.websocket_helpers"

local rep, char = string.rep, string.char
local TEXT, BINARY, CLOSE, PING, PONG, CONT = 1, 2, 8, 9, 10, 0

local function echo_check(s, op, payload, what)
  s:write(H.frame(op, payload))
  local f = assert(H.read_frame(s))
  test.eq(f.op, op, what)
  test.eq(f.fin, true, what)
  test.eq(f.masked, nil, (what or "") .. ": a server's frames are not masked")
  test.ok(f.payload == payload, (what or "") .. ": payload of " .. #payload .. " bytes echoed")
end

-- --- the handshake ---------------------------------------------------------------------------

test.case("handshake: 101 with the RFC's accept value; Upgrade and Connection tokens in any case", function()
  local port = H.serve()
  local s, status, head = H.connect(port)
  test.eq(status, 101)
  test.match(head, "\nSec%-WebSocket%-Accept: s3pPLMBiTxaQ9kYGzzhZRbK%+xOo=")
  test.match(head, "\nUpgrade: websocket")
  s:close()
  local raw = H.connect
  local s2, status2 = raw(port, "") -- the helper's own tokens; now other spellings:
  s2:close()
  test.eq(status2, 101)
  local c = assert(tcp.connect(port, "127.0.0.1", { timeout = 3000 }))
  c:write("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive, UPGRADE\r\n" ..
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
  test.eq(c:readline(), "HTTP/1.1 101 Switching Protocols")
  c:close()
end)

test.case("handshake: not an upgrade gets 400, another version 426, a bad key 400, and nil, err", function()
  local errs = {}
  local router = require("http").router()
  router:get("/", function(req, res)
    local ws, err = websocket.upgrade(req, res)
    errs[#errs + 1] = err and err.name or "ws"
  end)
  local server = assert(require("http").createServer(0, router, { host = "127.0.0.1" }))
  test.cleanup(function() server:close() end)
  local port = server:address().port
  local function try(headers, body)
    local c = assert(tcp.connect(port, "127.0.0.1", { timeout = 3000 }))
    c:write("GET / HTTP/1.1\r\nHost: x\r\n" .. headers .. "\r\n" .. (body or ""))
    local line = c:readline()
    local parts = {}
    repeat
      parts[#parts + 1] = assert(c:readline())
    until parts[#parts] == ""
    local rest = table.concat(parts, "\n")
    c:close()
    return tonumber(line:match(" (%d%d%d) ")), rest
  end
  local base = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
  test.eq(try("Sec-WebSocket-Version: 13\r\n"), 400, "no Upgrade")
  test.eq(try(base), 426, "no version")
  local status, rest = try(base .. "Sec-WebSocket-Version: 8\r\n")
  test.eq(status, 426, "version 8")
  test.match(rest, "Sec%-WebSocket%-Version: 13")
  test.eq(try("Upgrade: websocket\r\nConnection: close\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"), 400, "Connection without upgrade")
  test.eq(try("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n"), 400, "bad key")
  test.eq(try("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"), 400, "no key")
  -- a handshake is a GET without a body: one with a body is refused (400, not an error)
  local v13 = base .. "Sec-WebSocket-Version: 13\r\n"
  test.eq(try(v13 .. "Content-Length: 5\r\n", "hello"), 400, "a body")
  test.eq(try(v13 .. "Transfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400, "a chunked body")
  test.eq(try(v13 .. "Content-Length: 0\r\n"), 101, "Content-Length: 0")
  test.eq(errs, { "EPROTO", "EPROTO", "EPROTO", "EPROTO", "EPROTO", "EPROTO", "EPROTO", "EPROTO", "ws" })
end)

test.case("wrong arguments to upgrade, handler and connect raise naming the argument, at the caller's line", function()
  local here = "^tests/websocket_test%.lua:%d+: "
  local errs = {}
  local router = require("http").router()
  router:get("/", function(req, res)
    for _, f in ipairs({
      function() websocket.upgrade(nil, res) end,
      function() websocket.upgrade(req, nil) end,
      function() websocket.upgrade(req, "res") end,
      function() websocket.upgrade(req, res, 5) end,
      function() websocket.upgrade(req, res, { nope = 1 }) end,
      function() websocket.upgrade(req, res, { protocols = { "chat", 5 } }) end,
    }) do
      local ok, err = pcall(f)
      errs[#errs + 1] = ok and "no error" or tostring(err)
    end
    res:finish("done")
  end)
  local server = assert(require("http").createServer(0, router, { host = "127.0.0.1" }))
  test.cleanup(function() server:close() end)
  local c = assert(tcp.connect(server:address().port, "127.0.0.1", { timeout = 3000 }))
  c:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
  test.eq(c:readline(), "HTTP/1.1 200 OK", "every call raised before answering")
  c:close()
  test.eq(#errs, 6)
  test.match(errs[1], here .. "bad argument #1 to 'upgrade' %(request expected, got nil%)")
  test.match(errs[2], here .. "bad argument #2 to 'upgrade' %(response expected, got nil%)")
  test.match(errs[3], here .. "bad argument #2 to 'upgrade' %(response expected, got string%)")
  test.match(errs[4], here .. "bad argument #3 to 'upgrade' %(table expected, got number%)")
  test.match(errs[5], here .. "bad argument #3 to 'upgrade' %(unknown option 'nope'%)")
  test.match(errs[6], here .. "bad argument #3 to 'upgrade' %(option 'protocols': tokens expected, got table%)")
  test.raises(function() websocket.handler(5) end, here .. "bad argument #1 to 'handler' %(function expected, got number%)")
  test.raises(function() websocket.handler(function() end, { protocols = { "a b" } }) end,
    here .. "bad argument #2 to 'handler' %(option 'protocols': tokens expected, got table%)")
  test.raises(function() websocket.connect("ws://x/", { headers = { ["X-A"] = "a\r\nb" } }) end,
    here .. "bad argument #2 to 'connect' %(option 'headers': control character in X%-A%)")
  test.raises(function() websocket.connect("ws://x/", { headers = { ["X A"] = "a" } }) end,
    here .. "bad argument #2 to 'connect' %(option 'headers': bad header name X A%)")
  test.raises(function() websocket.connect("ws://x/", { protocols = { 5 } }) end,
    here .. "bad argument #2 to 'connect' %(option 'protocols': tokens expected, got table%)")
end)

test.case("handshake: a POST to a websocket route is not upgraded; a GET elsewhere still works", function()
  local port = H.serve()
  local c = assert(tcp.connect(port, "127.0.0.1", { timeout = 3000 }))
  c:write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\nGET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
  test.match(c:readline(), "^HTTP/1.1 405")
  c:close()
end)

test.case("handshake: subprotocols (server's preference), origins, req.headers after the takeover", function()
  local seen = {}
  local port = H.serve(function(ws, req)
    seen.protocol = ws.protocol
    seen.origin = req.headers.origin
    seen.custom = req.headers["x-custom"]
    seen.address = ws:remoteAddress().address
    ws:close()
  end, { protocols = { "chat.v2", "chat.v1" }, origins = { "https://good.example" } })
  local s, status, head = H.connect(port, "Sec-WebSocket-Protocol: chat.v1, chat.v2\r\nOrigin: https://good.example\r\nX-Custom: yes\r\n")
  test.eq(status, 101)
  test.match(head, "Sec%-WebSocket%-Protocol: chat.v2")
  test.eq(H.expect_close(s), 1000)
  test.eq(seen, { protocol = "chat.v2", origin = "https://good.example", custom = "yes", address = "127.0.0.1" })
  local _, status2 = H.connect(port, "Origin: https://evil.example\r\n")
  test.eq(status2, 403)
  -- no protocol in common: no header, the connection goes on without one
  local s3, status3, head3 = H.connect(port, "Sec-WebSocket-Protocol: other\r\nOrigin: https://good.example\r\n")
  test.eq(status3, 101)
  test.ok(not head3:find("Sec%-WebSocket%-Protocol"), head3)
  H.expect_close(s3)
end)

test.case("bytes sent right behind the handshake reach the websocket", function()
  local port = H.serve()
  local c = assert(tcp.connect(port, "127.0.0.1", { timeout = 3000 }))
  c:write("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" .. H.frame(TEXT, "early"))
  repeat local line = c:readline() until line == ""
  test.eq(H.read_frame(c).payload, "early")
  c:close()
end)

-- --- 1 framing ---------------------------------------------------------------------------------

test.case("1.1/1.2 framing: text and binary of 0, 1, 125, 126, 127, 128, 65535, 65536, 1 MiB bytes", function()
  local port = H.serve()
  local s = H.connect(port)
  for _, n in ipairs({ 0, 1, 125, 126, 127, 128, 65535, 65536, 1048576 }) do
    echo_check(s, TEXT, rep("*", n), "text " .. n)
    echo_check(s, BINARY, rep("\255\0", math.floor(n / 2)) .. (n % 2 == 1 and "\1" or ""), "binary " .. n)
  end
end)

test.case("1.x framing: lengths must be minimally encoded (16- and 64-bit forms for short payloads: 1002)", function()
  local port = H.serve()
  H.expect_code(H.connect(port), H.frame(TEXT, "abc", { len16 = true }), 1002, "16-bit length for 3 bytes")
  H.expect_code(H.connect(port), H.frame(TEXT, rep("x", 300), { len64 = true }), 1002, "64-bit length for 300")
  -- the most significant bit of a 64-bit length must be 0
  H.expect_code(H.connect(port), "\129\255\128\0\0\0\0\0\0\1\1\2\3\4", 1002, "64-bit length with the top bit")
end)

test.case("1.x framing: a client's unmasked frame is refused (1002); frames arrive a byte at a time", function()
  local port = H.serve()
  H.expect_code(H.connect(port), H.frame(TEXT, "hello", { masked = false }), 1002)
  local s = H.connect(port)
  local bytes = H.frame(TEXT, "slowly") .. H.frame(BINARY, rep("b", 200))
  for i = 1, #bytes do s:write(bytes:sub(i, i)) end
  test.eq(H.read_frame(s).payload, "slowly")
  test.eq(H.read_frame(s).payload, rep("b", 200))
end)

-- --- 2 pings and pongs ------------------------------------------------------------------------------

test.case("2.x pings: answered with their payload (0, 125 bytes, binary); many in a row; unsolicited pongs ignored", function()
  local port = H.serve()
  local s = H.connect(port)
  for _, payload in ipairs({ "", "hello", rep("p", 125), "\0\255\1\254" }) do
    s:write(H.frame(PING, payload))
    local f = H.read_frame(s)
    test.eq({ f.op, f.payload }, { PONG, payload })
  end
  s:write(H.frame(PONG, "unsolicited") .. H.frame(TEXT, "after"))
  test.eq(H.read_frame(s).payload, "after")
  local batch = {}
  for i = 1, 10 do batch[i] = H.frame(PING, "n" .. i) end
  s:write(table.concat(batch))
  for i = 1, 10 do test.eq(H.read_frame(s).payload, "n" .. i) end
end)

test.case("2.x pings: 126 bytes (1002), fragmented ping (1002)", function()
  local port = H.serve()
  H.expect_code(H.connect(port), "\137\254\0\126\1\2\3\4" .. rep("x", 126), 1002, "ping of 126")
  H.expect_code(H.connect(port), H.frame(PING, "x", { fin = false }), 1002, "fragmented ping")
end)

test.case("2.x ws:ping() and on_pong; ping_interval pings an idle peer", function()
  local pongs = {}
  local port = H.serve(function(ws)
    ws:ping("from server")
    task.sleep(400) -- idle: the ping interval (100 ms) sends pings meanwhile
    ws:receive()
  end, { ping_interval = 100, on_pong = function(data) pongs[#pongs + 1] = data end })
  local s = H.connect(port)
  local f = H.read_frame(s)
  test.eq({ f.op, f.payload }, { PING, "from server" })
  s:write(H.frame(PONG, "reply"))
  local more = H.read_frame(s)
  test.eq(more.op, PING, "an interval ping")
  test.eq(more.payload, "")
  s:write(H.frame(PONG, "") .. H.frame(CLOSE, H.close_payload(1000)))
  test.eq(H.expect_close(s), 1000) -- answered as it comes, even while the handler sleeps
  test.eq(pongs[1], "reply")
end)

-- The ping deadline is not moved for every message (on_timeout moves it by what arrived
-- since): a peer that keeps talking must still never be pinged, and one that stops must be
-- pinged ping_interval after its last bytes, not earlier.
test.case("ping_interval runs from the last bytes received: a talking peer is never pinged", function()
  local port = H.serve(nil, { ping_interval = 300 })
  local s = H.connect(port)
  local stop = task.now() + 1000
  local last_sent
  while task.now() < stop do
    s:write(H.frame(TEXT, "tick"))
    last_sent = task.now()
    local f = H.read_frame(s)
    test.eq({ f.op, f.payload }, { TEXT, "tick" }, "an echo, not a ping, while messages flow")
    task.sleep(60)
  end
  local f = H.read_frame(s)
  local quiet = task.now() - last_sent
  test.eq(f.op, PING, "a ping once the peer is silent")
  test.ok(quiet >= 290 and quiet < 3000, "the ping came " .. quiet .. " ms after the last message")
  s:close()
end)

-- --- 3 reserved bits, 4 opcodes ----------------------------------------------------------------------

test.case("3.x reserved bits: RSV1-3 on text, binary, ping and close without an extension: 1002", function()
  local port = H.serve()
  for rsv = 1, 7 do
    H.expect_code(H.connect(port), H.frame(TEXT, "x", { rsv = rsv }), 1002, "text rsv " .. rsv)
  end
  H.expect_code(H.connect(port), H.frame(BINARY, "x", { rsv = 2 }), 1002, "binary")
  H.expect_code(H.connect(port), H.frame(PING, "x", { rsv = 4 }), 1002, "ping")
  H.expect_code(H.connect(port), H.frame(CLOSE, H.close_payload(1000), { rsv = 1 }), 1002, "close")
  -- a good message first is answered; the bad one after it closes
  local s = H.connect(port)
  s:write(H.frame(TEXT, "good") .. H.frame(TEXT, "bad", { rsv = 1 }))
  local code, _, seen = H.expect_close(s)
  test.eq(code, 1002)
  test.eq(seen[1].payload, "good")
end)

test.case("4.x opcodes: reserved data (3-7) and control (11-15) opcodes: 1002", function()
  local port = H.serve()
  for _, op in ipairs({ 3, 4, 5, 6, 7, 11, 12, 13, 14, 15 }) do
    H.expect_code(H.connect(port), H.frame(op, "x"), 1002, "opcode " .. op)
  end
end)

-- --- 5 fragmentation -----------------------------------------------------------------------------------

test.case("5.x fragmentation: fragments reassembled, pings between fragments answered at once", function()
  local port = H.serve()
  local s = H.connect(port)
  s:write(H.frame(TEXT, "frag", { fin = false }) .. H.frame(PING, "mid") .. H.frame(CONT, "men", { fin = false }) ..
    H.frame(CONT, "ted"))
  local f = H.read_frame(s)
  test.eq({ f.op, f.payload }, { PONG, "mid" })
  f = H.read_frame(s)
  test.eq({ f.op, f.payload }, { TEXT, "fragmented" })
  -- one byte per fragment, binary, with empty fragments
  local parts = { H.frame(BINARY, "", { fin = false }) }
  for i = 1, 50 do parts[#parts + 1] = H.frame(CONT, char(i), { fin = false }) end
  parts[#parts + 1] = H.frame(CONT, "")
  s:write(table.concat(parts))
  local want = {}
  for i = 1, 50 do want[i] = char(i) end
  f = H.read_frame(s)
  test.eq({ f.op, f.payload }, { BINARY, table.concat(want) })
end)

test.case("5.x fragmentation errors: continuation first, fragmented control, new message inside one: 1002", function()
  local port = H.serve()
  H.expect_code(H.connect(port), H.frame(CONT, "x"), 1002, "continuation without a start")
  H.expect_code(H.connect(port), H.frame(CONT, "x", { fin = false }), 1002, "unfinished continuation first")
  H.expect_code(H.connect(port), H.frame(TEXT, "a", { fin = false }) .. H.frame(TEXT, "b"), 1002, "text inside text")
  H.expect_code(H.connect(port), H.frame(TEXT, "a", { fin = false }) .. H.frame(CLOSE, H.close_payload(1000), { fin = false }), 1002, "fragmented close")
end)

-- --- 6 UTF-8 --------------------------------------------------------------------------------------------

local VALID = {
  "", "Hello-µ@ßöäüàá-UTF-8!!", "κόσμε", "\xef\xbb\xbf", "\xf0\x9f\x98\x80 emoji",
  "\x00\x7f", "\xc2\x80\xdf\xbf", "\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf",
  "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", "\xef\xbf\xbe\xef\xbf\xbf", -- non-characters are valid
}
local INVALID = {
  "\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xe0\x9f\xbf", "\xed\xa0\x80", "\xed\xbf\xbf",
  "\xf0\x80\x80\x80", "\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\xfe",
  "\xc2", "\xe0\xa0", "\xf0\x90\x80", "abc\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
  "\xed\xa0\x80\xed\xb0\x80", "\xc2\x41",
}

test.case("6.x UTF-8: valid texts echoed whole and split into fragments at every byte", function()
  local port = H.serve()
  local s = H.connect(port)
  for _, text in ipairs(VALID) do
    echo_check(s, TEXT, text, ("%q"):format(text))
    for cut = 1, #text - 1 do
      s:write(H.frame(TEXT, text:sub(1, cut), { fin = false }) .. H.frame(CONT, text:sub(cut + 1)))
      local f = H.read_frame(s)
      test.ok(f.payload == text, ("%q split at %d"):format(text, cut))
    end
  end
end)

test.case("6.x UTF-8: invalid texts close with 1007, whole and split at every byte", function()
  local port = H.serve()
  for _, text in ipairs(INVALID) do
    H.expect_code(H.connect(port), H.frame(TEXT, text), 1007, ("%q"):format(text))
    for cut = 1, #text - 1 do
      H.expect_code(H.connect(port), H.frame(TEXT, text:sub(1, cut), { fin = false }) .. H.frame(CONT, text:sub(cut + 1)),
        1007, ("%q split at %d"):format(text, cut))
    end
  end
end)

test.case("6.4 UTF-8 fails fast: 1007 comes before the rest of the frame or message is sent", function()
  local port = H.serve()
  -- one frame of 1000 bytes; the bad byte is in the first 10
  local s = H.connect(port)
  local whole = H.frame(TEXT, "\xce\xba\xe1\xbd\xb9\xed\xa0\x80" .. rep("a", 992))
  s:write(whole:sub(1, 30))
  test.eq(H.expect_close(s), 1007)
  -- a fragmented message: the first fragment is bad, the last never comes
  local s2 = H.connect(port)
  s2:write(H.frame(TEXT, "ok \xf4\x90", { fin = false }))
  test.eq(H.expect_close(s2), 1007)
end)

test.case("6.x UTF-8: binary messages are not checked", function()
  local port = H.serve()
  local s = H.connect(port)
  for _, data in ipairs(INVALID) do echo_check(s, BINARY, data) end
end)

-- --- 7 close handling -----------------------------------------------------------------------------

test.case("7.x close: the peer's code is echoed and receive says CLOSED with its code and reason", function()
  local ends = {}
  local port = H.serve(function(ws)
    local data, err = ws:receive()
    ends[#ends + 1] = { data = data, name = err.name, code = err.code, reason = err.reason }
    test.eq(ws:send("late"), nil) -- closed: nothing more is sent
  end)
  local s = H.connect(port)
  s:write(H.frame(CLOSE, H.close_payload(1000, "bye now")))
  test.eq(H.expect_close(s), 1000)
  local s2 = H.connect(port)
  s2:write(H.frame(CLOSE, ""))
  test.eq(H.expect_close(s2), nil, "an empty close is answered with an empty close")
  local s3 = H.connect(port)
  s3:write(H.frame(CLOSE, H.close_payload(4321, "app code")))
  test.eq(H.expect_close(s3), 4321)
  task.sleep(50)
  test.eq(ends, {
    { name = "CLOSED", code = 1000, reason = "bye now" },
    { name = "CLOSED", code = 1005, reason = "" },
    { name = "CLOSED", code = 4321, reason = "app code" },
  })
end)

test.case("7.x close: valid codes echoed; invalid codes, a 1-byte payload and a bad reason refused", function()
  local port = H.serve()
  for _, code in ipairs({ 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999 }) do
    H.expect_code(H.connect(port), H.frame(CLOSE, H.close_payload(code)), code, "code " .. code)
  end
  for _, code in ipairs({ 0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535 }) do
    H.expect_code(H.connect(port), H.frame(CLOSE, H.close_payload(code)), 1002, "code " .. code)
  end
  H.expect_code(H.connect(port), H.frame(CLOSE, "\3"), 1002, "one-byte payload")
  H.expect_code(H.connect(port), H.frame(CLOSE, H.close_payload(1000, "\xed\xa0\x80")), 1007, "bad reason")
  H.expect_code(H.connect(port), H.frame(CLOSE, H.close_payload(1000, rep("r", 123))), 1000, "123-byte reason")
end)

test.case("7.x close: frames after the close are ignored; the server closes TCP", function()
  local port = H.serve()
  local s = H.connect(port)
  s:write(H.frame(CLOSE, H.close_payload(1000)) .. H.frame(TEXT, "after close") .. H.frame(PING, "x"))
  local code, _, seen = H.expect_close(s)
  test.eq(code, 1000)
  test.eq(#seen, 0)
end)

test.case("7.x ws:close() does the closing handshake; the handler returning closes with 1000", function()
  local result = {}
  local port = H.serve(function(ws, req)
    if req.path == "/" then
      result.close = { ws:close(4000, "done") }
      result.receive = { ws:receive() }
    end
  end)
  local s = H.connect(port)
  local f = H.read_frame(s)
  test.eq({ f.op, f.payload }, { CLOSE, H.close_payload(4000, "done") })
  s:write(H.frame(CLOSE, H.close_payload(4000)))
  test.eq(select(2, s:read()).name, "EOF")
  task.sleep(50)
  test.eq(result.close, { true })
  test.eq(result.receive[2].name, "CLOSED")
  test.eq(result.receive[2].code, 4000)
  -- a handler that just returns
  local port2 = H.serve(function() end)
  test.eq(H.expect_close(H.connect(port2)), 1000)
end)

test.case("7.x ws:close(): the whole reason is sent, NUL bytes and all", function()
  local port = H.serve(function(ws) ws:close(4000, "before\0after") end)
  local s = H.connect(port)
  local f = H.read_frame(s)
  test.eq({ f.op, f.payload }, { CLOSE, H.close_payload(4000, "before\0after") })
  -- and our client's receive gives it whole in err.reason
  local ws = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/"))
  local data, err = ws:receive()
  test.eq(data, nil)
  test.eq({ err.code, err.reason }, { 4000, "before\0after" })
end)

test.case("7.x close_timeout: a peer that never answers the close; a peer that vanishes without one", function()
  local result = {}
  local port = H.serve(function(ws, req)
    local t0 = task.now()
    result.close = { ws:close() }
    result.ms = task.now() - t0
  end, { close_timeout = 200 })
  local s = H.connect(port)
  test.eq(H.read_frame(s).op, CLOSE)
  task.sleep(600)
  test.eq(result.close[1], nil)
  test.eq(result.close[2].name, "ETIMEDOUT")
  test.ok(result.ms >= 150, "waited close_timeout")
  -- vanishing: TCP closes under a waiting receive
  local ended
  local port2 = H.serve(function(ws) ended = select(2, ws:receive()) end)
  local s2 = H.connect(port2)
  s2:close()
  local deadline = task.now() + 3000
  while not ended and task.now() < deadline do task.sleep(10) end
  test.eq({ ended.name, ended.code }, { "CLOSED", 1006 })
end)

test.case("idle_timeout: a silent peer (it answers no ping) is dropped with ETIMEDOUT", function()
  local ended
  local port = H.serve(function(ws) ended = select(2, ws:receive()) end, { ping_interval = 100, idle_timeout = 300 })
  local s = H.connect(port)
  test.eq(H.read_frame(s).op, PING)
  local deadline = task.now() + 3000
  while not ended and task.now() < deadline do task.sleep(10) end
  test.eq(ended and ended.name, "ETIMEDOUT")
  s:close()
end)

-- --- 9 limits --------------------------------------------------------------------------------------------

test.case("9.x limits: a message over max_message_size closes with 1009 (one frame, or fragments)", function()
  local port = H.serve(nil, { max_message_size = 1000 })
  local s = H.connect(port)
  echo_check(s, TEXT, rep("a", 1000), "exactly the limit passes")
  s:write(H.frame(TEXT, rep("a", 1001)))
  test.eq(H.expect_close(s), 1009)
  test.eq(H.last_end.name, "EMSGSIZE")
  local s2 = H.connect(port)
  s2:write(H.frame(BINARY, rep("b", 600), { fin = false }) .. H.frame(CONT, rep("b", 401)))
  test.eq(H.expect_close(s2), 1009)
  -- the header alone says too much: closed before the payload comes
  local s3 = H.connect(port)
  s3:write(H.frame(BINARY, rep("c", 5000)):sub(1, 20))
  test.eq(H.expect_close(s3), 1009)
end)

test.case("9.x limits: messages of 16 MiB (the default limit) in one frame and in 64 KiB fragments", function()
  local port = H.serve()
  local s = H.connect(port)
  local big = rep("0123456789abcdef", 1048576)
  local zero = "\0\0\0\0"
  s:write(H.frame(BINARY, big, { key = zero }))
  local f = H.read_frame(s)
  test.ok(f.payload == big, "16 MiB echoed")
  local parts = {}
  for i = 0, 255 do
    parts[#parts + 1] = H.frame(i == 0 and BINARY or CONT, big:sub(i * 65536 + 1, (i + 1) * 65536), { fin = i == 255, key = zero })
  end
  s:write(table.concat(parts))
  test.ok(H.read_frame(s).payload == big, "16 MiB in fragments echoed")
end)

-- --- 12/13 compression -------------------------------------------------------------------------------------

local PMD = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"

test.case("12.x compression: negotiated when offered and enabled; compressed messages both ways", function()
  local port = H.serve(nil, { compress = true })
  local s, status, head = H.connect(port, PMD)
  test.eq(status, 101)
  test.match(head, "Sec%-WebSocket%-Extensions: permessage%-deflate; server_no_context_takeover")
  -- an uncompressed message (RSV1 clear) is fine too; the answer comes compressed
  s:write(H.frame(TEXT, rep("hello ", 100)))
  local f = H.read_frame(s)
  test.eq(f.rsv, 4, "RSV1: compressed")
  test.ok(#f.payload < 100, "600 bytes compressed to " .. #f.payload)
  -- echo our own compressed frame back to the server: it inflates it
  s:write(H.frame(TEXT, f.payload, { rsv = 4 }))
  local g = H.read_frame(s)
  test.eq(g.payload, f.payload, "same bytes: no context kept by the server")
  -- not enabled on the server: no extension in the answer, RSV1 is an error
  local port2 = H.serve()
  local s2, _, head2 = H.connect(port2, PMD)
  test.ok(not head2:find("Extensions"), head2)
  H.expect_code(s2, H.frame(TEXT, f.payload, { rsv = 4 }), 1002)
end)

test.case("13.x compression parameters: windows, context takeover, refused offers", function()
  local port = H.serve(nil, { compress = true })
  local _, _, head = H.connect(port, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10; client_no_context_takeover\r\n")
  test.match(head, "permessage%-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10")
  -- 8 bits cannot be honoured (zlib): the offer is declined, the next one taken
  local _, _, head2 = H.connect(port, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8, permessage-deflate\r\n")
  test.match(head2, "Extensions: permessage%-deflate; server_no_context_takeover\n?")
  local _, _, head3 = H.connect(port, "Sec-WebSocket-Extensions: permessage-deflate; unknown_param\r\n")
  test.ok(not head3:find("Extensions"), "unknown parameter: declined")
  -- bad compressed data: 1007; too big once inflated: 1009
  local s4 = H.connect(port, PMD)
  H.expect_code(s4, H.frame(BINARY, "\255\255\255\255", { rsv = 4 }), 1007)
  local port5 = H.serve(nil, { compress = true, max_message_size = 1000 })
  local s5 = H.connect(port5, PMD)
  local c = H.connect(port, PMD)
  c:write(H.frame(BINARY, rep("z", 5000)))
  local zipped = H.read_frame(c).payload
  H.expect_code(s5, H.frame(BINARY, zipped, { rsv = 4 }), 1009)
end)

test.case("13.x compression with our client: context takeover kept by a peer that wants it", function()
  local port = H.serve(nil, { compress = true })
  local ws = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/", { compress = true }))
  test.match(ws.extensions, "permessage%-deflate")
  for i = 1, 20 do
    local msg = rep("message " .. i .. " ", i * 10)
    assert(ws:send(msg))
    local data, kind = ws:receive()
    test.eq(kind, "text")
    test.ok(data == msg, "message " .. i)
  end
  assert(ws:send(rep("\0\1\2", 100000), "binary"))
  test.ok(ws:receive() == rep("\0\1\2", 100000))
  test.eq(ws:close(), true)
end)

-- --- the API -----------------------------------------------------------------------------------------------

test.case("our client against our server: messages, ws:close(), wrong use raises", function()
  local port = H.serve()
  local ws = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/?x=1", { protocols = { "p1" }, timeout = 3000 }))
  test.eq(ws.protocol, nil)
  for _, n in ipairs({ 0, 1, 125, 126, 65535, 65536, 300000 }) do
    assert(ws:send(rep("x", n)))
    local data, kind = ws:receive()
    test.eq({ #data, kind }, { n, "text" })
  end
  assert(ws:send("\0\255", "binary"))
  test.eq({ ws:receive() }, { "\0\255", "binary" })
  test.raises(function() ws:send("\255") end, "invalid UTF%-8")
  test.raises(function() ws:send("x", "texty") end, "invalid option")
  test.raises(function() ws:close(1005) end, "close code")
  test.raises(function() ws:ping(rep("p", 126)) end, "125")
  test.eq(ws:close(1000, "bye"), true)
  local data, err = ws:receive()
  test.eq(data, nil)
  test.eq({ err.name, err.code }, { "CLOSED", 1000 })
  test.eq(ws:close(), true, "closing twice is harmless")
  local _, serr = ws:send("x")
  test.eq(serr.name, "CLOSED")
end)

test.case("client: refused handshakes, bad URLs, wss:// to a plain server", function()
  local port = H.serve()
  local ws, err = websocket.connect("ws://127.0.0.1:" .. port .. "/plain")
  test.eq(ws, nil)
  test.match(err.message, "answered 200")
  ws, err = websocket.connect("ws://127.0.0.1:1/")
  test.eq(err.name, "ECONNREFUSED")
  ws, err = websocket.connect("wss://127.0.0.1:" .. port .. "/", { timeout = 2000 })
  test.eq(ws, nil)
  test.eq(err.name, "ETLS") -- our ClientHello got an HTTP 400 back
  test.raises(function() websocket.connect("ws://x/", { tls = true }) end, "option 'tls' is for wss://")
  test.raises(function() websocket.connect("wss://x/", { tls = false }) end, "tls = false")
  test.raises(function() websocket.connect("http://x/") end, "ws:// or wss://")
  test.raises(function() websocket.connect("ws://x/", { nope = 1 }) end, "unknown option 'nope'")
  test.raises(function() websocket.connect("ws://x/", { headers = { ["X-A"] = "a\r\nb" } }) end, "control character")
  -- the URL's path and query are checked as http.get checks them: no request splitting
  local injected = "ws://127.0.0.1:" .. port .. "/?x=1 HTTP/1.1\r\nX-Injected: yes\r\n\r\nGET /second"
  test.raises(function() websocket.connect(injected) end, "spaces or control characters in the URL's path")
  test.raises(function() require("http").get("http" .. injected:sub(3)) end, "spaces or control characters in the URL's path")
  test.raises(function() websocket.connect("ws://127.0.0.1/a\0b") end, "control characters")
  test.raises(function() websocket.connect("ws://u@127.0.0.1/") end, "user info")
end)

-- wss:// : the server is an HTTPS server (the websocket takes the TLS connection over), the
-- client verifies it like any TLS client.
test.case("wss:// : our client and our HTTPS server, compressed and not; verification on by default", function()
  local certs = require "tests.tls_certs"
  local c = certs.make()
  local port = H.serve(nil, { compress = true }, { tls = certs.pair() })
  for _, compress in ipairs({ false, true }) do
    local ws = assert(websocket.connect("wss://localhost:" .. port .. "/", { tls = { ca = c.ca }, compress = compress }))
    for _, n in ipairs({ 0, 125, 65536, 1048576 }) do
      local msg = rep("s", n)
      assert(ws:send(msg))
      local data, kind = ws:receive()
      test.ok(data == msg and kind == "text", "echo of " .. n .. " bytes")
    end
    assert(ws:send(rep("\0\255", 100000), "binary"))
    test.eq(#assert(ws:receive()), 200000)
    test.eq(ws:close(4000, "bye"), true)
  end
  local ws, err = websocket.connect("wss://localhost:" .. port .. "/") -- the test CA is not a root
  test.eq(ws, nil)
  test.eq(err.name, "ECERT")
  ws, err = websocket.connect("wss://127.0.0.1:" .. port .. "/", { tls = { ca = c.ca, servername = "wrong.test" } })
  test.eq(err and err.message, "hostname mismatch")
end)

-- For a raw server: reads the handshake request, returns its Sec-WebSocket-Key.
local function request_key(sock)
  local key
  while true do
    local line = sock:readline()
    if not line or line == "" then return key end
    key = line:match("^Sec%-WebSocket%-Key: (.+)$") or key
  end
end

test.case("client: a server sending masked frames or a bad accept is refused", function()
  local server = assert(tcp.createServer(0, function(sock)
    local key = request_key(sock)
    local accept = sock.path == "bad" and "nope" or require("luaio.websocket").accept_key(key)
    sock:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " ..
      accept .. "\r\n\r\n" .. H.frame(TEXT, "masked by a server"))
    sock:read()
  end, { host = "127.0.0.1" }))
  test.cleanup(function() server:close() end)
  local ws = assert(websocket.connect("ws://127.0.0.1:" .. server:address().port .. "/"))
  local data, err = ws:receive()
  test.eq(data, nil)
  test.eq(err.name, "EPROTO")
  test.match(err.message, "masked frame from the server")
end)

-- A server that trickles its 101 a byte at a time never lets the socket go idle: the
-- client's timeout is a deadline for the connect and the whole handshake, not an idle timer.
test.case("client: timeout bounds the whole handshake, even against a server trickling its answer", function()
  local server = assert(tcp.createServer(0, function(sock)
    local key = request_key(sock)
    local answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
      "Sec-WebSocket-Accept: " .. require("luaio.websocket").accept_key(key) .. "\r\nX-Pad: " .. rep("a", 100) .. "\r\n\r\n"
    for i = 1, #answer do -- about 6 s in all
      if not sock:write(answer:sub(i, i)) then return end
      task.sleep(30)
    end
    sock:read()
  end, { host = "127.0.0.1" }))
  test.cleanup(function() server:close() end)
  local t0 = task.now()
  local ws, err = websocket.connect("ws://127.0.0.1:" .. server:address().port .. "/", { timeout = 1000 })
  local took = task.now() - t0
  test.eq(ws, nil)
  test.eq(err and err.name, "ETIMEDOUT")
  test.ok(took < 4000, "gave up after " .. math.floor(took) .. " ms (timeout 1000)")
end)

test.case("send waits while the backlog is over max_backlog: a reader that does not read holds the writer", function()
  local sent, finished = 0, false
  local port = H.serve(function(ws)
    local chunk = rep("x", 65536)
    for _ = 1, 400 do
      if not ws:send(chunk) then break end
      sent = sent + 1
    end
    finished = true
  end, { max_backlog = 256 * 1024 })
  local s = H.connect(port, nil, nil, 16)
  task.sleep(300)
  test.ok(sent < 400, "the writer waits (" .. sent .. " sent)")
  local got = 0
  while got < 400 do
    local h = assert(s:read(4)) -- 64 KiB frames, read in pieces a 16 KiB socket can take
    test.eq(h, "\129\127\0\0")
    local n = assert(s:read(6))
    for _ = 1, 4 do assert(s:read(16384)) end
    got = got + 1
  end
  task.sleep(50)
  test.ok(finished)
end)

-- A peer that keeps sending (so it is never idle) but reads nothing: the waiting send ends
-- with ETIMEDOUT after send_timeout instead of waiting forever.
test.case("send_timeout: a peer that sends but never reads cannot hold a waiting send forever", function()
  local result, sent = nil, 0
  local port = H.serve(function(ws)
    local chunk = rep("x", 65536)
    while true do
      local ok, err = ws:send(chunk)
      if not ok then result = err break end
      sent = sent + 1
    end
  end, { max_backlog = 64 * 1024, send_timeout = 400, ping_interval = 100, idle_timeout = 1000 })
  local s = H.connect(port, nil, nil, 16)
  local deadline = task.now() + 5000
  while not result and task.now() < deadline do
    s:write(H.frame(PING, "alive")) -- frames keep coming: idle_timeout never fires
    task.sleep(50)
  end
  test.eq(result and result.name, "ETIMEDOUT")
  test.ok(sent > 0, "some messages were queued first")
  s:close()
end)

test.case("publish: one frame to every subscriber; unsubscribe; subscriptions end with the connection", function()
  local ready = 0
  local port = H.serve(function(ws, req)
    ws:subscribe("room")
    if req.query.both then ws:subscribe("other") end
    if req.query.leave then ws:unsubscribe("room") end
    ready = ready + 1
    ws:receive()
  end)
  local socks = {}
  for i = 1, 5 do socks[i] = H.connect(port, nil, i == 5 and "/?leave=1" or i == 4 and "/?both=1" or "/") end
  while ready < 5 do task.sleep(5) end
  test.eq(websocket.subscribers("room"), 4)
  test.eq(websocket.publish("room", "hello all"), 4)
  test.eq(websocket.publish("other", "\0\1", "binary"), 1)
  test.eq(websocket.publish("nobody", "x"), 0)
  for i = 1, 4 do test.eq(H.read_frame(socks[i]).payload, "hello all") end
  test.eq(H.read_frame(socks[4]).payload, "\0\1")
  socks[1]:write(H.frame(CLOSE, H.close_payload(1000)))
  H.expect_close(socks[1])
  socks[2]:close()
  local deadline = task.now() + 3000
  while websocket.subscribers("room") > 2 and task.now() < deadline do task.sleep(10) end
  test.eq(websocket.subscribers("room"), 2)
  test.raises(function() websocket.publish("room", "\255") end, "invalid UTF%-8")
end)

test.case("publish: a subscriber past its backlog is dropped with 1008; the publisher never waits", function()
  local ends = {}
  local port = H.serve(function(ws, req)
    ws:subscribe("feed")
    local _, err = ws:receive()
    ends[req.query.who] = err
  end, { max_backlog = 100000 })
  local slow = H.connect(port, nil, "/?who=slow", 16)
  local fast = H.connect(port, nil, "/?who=fast")
  while websocket.subscribers("feed") < 2 do task.sleep(5) end
  local reader = task.spawn(function()
    local n = 0
    while n < 2000 do
      local f = assert(H.read_frame(fast))
      n = n + 1
    end
    return n
  end)
  local msg = rep("m", 10000)
  local t0 = task.now()
  for i = 1, 2000 do
    websocket.publish("feed", msg)
    if i % 20 == 0 then task.sleep(1) end
  end
  test.ok(task.now() - t0 < 10000, "the publisher did not wait")
  test.eq(select(2, reader:join(20000)), 2000, "the fast subscriber got everything")
  test.eq(websocket.subscribers("feed"), 1, "the slow one was dropped")
  local code = H.expect_close(slow)
  test.eq(code, 1008)
  task.sleep(20)
  test.eq(ends.slow.name, "ENOBUFS")
end)

-- As for sockets (tcp_test.lua): a message sent in answer leaves when the handler waits
-- again, not after the handlers of the other connections read in the same loop iteration.
test.case("an answer leaves at once, not after other connections' handlers in the same iteration", function()
  local helpers = require "tests.helpers"
  local port = helpers.serve(helpers.ANSWER .. [[
local http = require "http"
local router = http.router()
router:websocket("/", function(ws)
  while true do
    local data = ws:receive()
    if not data then return end
    ws:send(answer(data))
  end
end)
local server = assert(http.createServer(0, router, { host = "127.0.0.1" }))
print("listening " .. server:address().port)
io.stdout:flush()
]])
  helpers.answer_at_once(function()
    local ws = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/", { timeout = 10000 }))
    test.cleanup(function() ws:close() end)
    return {
      send = function(msg) assert(ws:send(msg)) end,
      receive = function() return (ws:receive()) end,
    }
  end)
end)

-- --- hostile and careless peers ----------------------------------------------------------

-- A python3 peer that floods masked (client) or unmasked (server) 125-byte pings and reads
-- nothing (its receive buffer is made small), until it has sent `mb` MiB or 20 s passed.
local PING_FLOOD = [[
import socket, sys, time, base64, hashlib
mode, port, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def flood(s, masked):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    frame = (b"\x89\xfd\x01\x02\x03\x04" if masked else b"\x89\x7d") + b"p" * 125
    chunk = frame * 512
    s.settimeout(0.2)
    sent, t0 = 0, time.time()
    while sent < mb * 1048576 and time.time() - t0 < 20:
        try: sent += s.send(chunk)
        except socket.timeout: pass
        except OSError as e: print("ENDED %d %s" % (sent, e), flush=True); return
    print("DONE %d" % sent, flush=True)
    time.sleep(2)
if mode == "client":
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head: head += s.recv(1)
    flood(s, True)
else:
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0)); ls.listen()
    print("listening %d" % ls.getsockname()[1], flush=True)
    c, _ = ls.accept()
    head = b""
    while b"\r\n\r\n" not in head: head += c.recv(1)
    key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key")][0]
    acc = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Accept: " + acc + b"\r\n\r\n")
    flood(c, False)
]]

-- This process's VmRSS or VmSize (field), in MiB.
local function memory_mb(field)
  local f = assert(io.open("/proc/self/status"))
  local status = f:read("*a")
  f:close()
  return tonumber(status:match(field .. ":%s*(%d+)")) / 1024
end

local function rss_mb() return memory_mb("VmRSS") end

-- Waits for the flooding peer's last line while sampling this process's memory; returns the
-- line and the largest growth seen (MiB).
local function watch_flood(peer)
  local helpers = require "tests.helpers"
  local base, grew = rss_mb(), 0
  local deadline = task.now() + 30000
  while task.now() < deadline do
    grew = math.max(grew, rss_mb() - base)
    local out = helpers.output(peer)
    local line = out:match("(DONE %d+)") or out:match("(ENDED[^\n]*)")
    if line then return line, grew end
    task.sleep(20)
  end
  error("the flooding peer never finished: " .. helpers.output(peer))
end

-- Pongs are owed, not queued without end: while the output is over max_backlog, only the
-- latest ping is answered once it drains (RFC 6455 5.5.3), so memory stays bounded.
test.case("a ping flood from a peer that reads nothing: the server's memory stays bounded", function()
  local helpers = require "tests.helpers"
  local port = H.serve()
  local peer = helpers.python(PING_FLOOD, "client", port, 256)
  local line, grew = watch_flood(peer)
  test.match(line, "^DONE")
  test.ok(grew < 64, ("memory grew by %.0f MiB while 256 MiB of pings came"):format(grew))
end)

test.case("pings while the output is over max_backlog: one pong, for the latest, once it drains", function()
  local port = H.serve(function(ws)
    ws:send(rep("B", 16 * 1024 * 1024), "binary") -- more than the kernel's buffers take
    ws:receive()
  end, { max_backlog = 1000 })
  local s = H.connect(port, nil, nil, 16) -- a socket that takes 16 KiB at most
  task.sleep(200) -- the send waits: nothing is read yet
  s:write(H.frame(PING, "a") .. H.frame(PING, "b") .. H.frame(PING, "c"))
  task.sleep(100)
  test.eq(assert(s:read(10)), "\130\127\0\0\0\0\1\0\0\0", "the 16 MiB message first")
  for _ = 1, 1024 do assert(s:read(16384)) end
  local f = assert(H.read_frame(s))
  test.eq({ f.op, f.payload }, { PONG, "c" })
  s:write(H.frame(PING, "d"))
  f = assert(H.read_frame(s))
  test.eq({ f.op, f.payload }, { PONG, "d" }, "answered at once again")
end)

-- The flood goes on and the peer takes nothing: send_timeout drops it, as it drops a peer
-- that holds a waiting send.
test.case("a ping flood from a peer that reads nothing is dropped after send_timeout", function()
  local helpers = require "tests.helpers"
  local port = H.serve(nil, { send_timeout = 300 })
  local peer = helpers.python(PING_FLOOD, "client", port, 100000)
  local line = watch_flood(peer)
  test.match(line, "^ENDED")
end)

test.case("a ping flood from a server while our client waits in receive: memory stays bounded", function()
  local helpers = require "tests.helpers"
  local peer = helpers.python(PING_FLOOD, "server", 0, 256)
  local port = tonumber(helpers.wait_output(peer, "listening (%d+)", 10000))
  local ws = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/"))
  test.cleanup(function() ws:close() end)
  local received
  task.spawn(function() received = { ws:receive() } end)
  local line, grew = watch_flood(peer)
  test.match(line, "^DONE")
  test.ok(grew < 64, ("memory grew by %.0f MiB while 256 MiB of pings came"):format(grew))
end)

-- Several tasks may send on one websocket: each message is queued in call order, and each
-- send waits while the backlog is over max_backlog. None is refused after being queued.
test.case("send from several tasks: queued in order, each waits its turn, none gets EBUSY", function()
  local results = {}
  local port = H.serve(function(ws)
    local big = rep("B", 16 * 1024 * 1024 - 6) -- more than the kernel's buffers take
    local queued = false
    local t1 = task.spawn(function()
      queued = true -- send queues before it waits
      return ws:send("first " .. big, "binary")
    end)
    while not queued do task.sleep(1) end
    results.second = { ws:send("second", "text") }
    results.first = { t1:join(10000) }
    ws:receive()
  end, { max_backlog = 1000 })
  local s = H.connect(port, nil, nil, 16)
  task.sleep(200) -- both sends wait: nothing is read yet
  test.eq(assert(s:read(16)), "\130\127\0\0\0\0\1\0\0\0first ", "the first message first")
  for _ = 1, 1023 do assert(s:read(16384)) end
  assert(s:read(16384 - 6))
  local f = assert(H.read_frame(s))
  test.eq({ f.op, f.payload }, { TEXT, "second" })
  local deadline = task.now() + 3000
  while not results.first and task.now() < deadline do task.sleep(5) end
  test.eq(results.second, { true })
  test.eq(results.first, { true, true })
end)

-- A handler that only sends still answers the peer's ping and close (RFC 6455 5.5.1,
-- 5.5.2): frames are parsed as they arrive, and messages are kept for a later receive.
test.case("a handler that never receives still answers pings and the close; messages wait for receive", function()
  local result = {}
  local port = H.serve(function(ws)
    local i = 0
    while true do
      i = i + 1
      local ok, err = ws:send("tick " .. i)
      if not ok then result.send = err break end
      task.sleep(20)
    end
    result.first = { ws:receive() }
    result.second = { ws:receive() }
    result.third = { ws:receive() }
  end)
  local s = H.connect(port)
  test.eq(H.read_frame(s).payload, "tick 1")
  s:write(H.frame(TEXT, "kept 1") .. H.frame(BINARY, "kept 2") .. H.frame(PING, "are you there"))
  local f
  repeat f = assert(H.read_frame(s)) until f.op ~= TEXT
  test.eq({ f.op, f.payload }, { PONG, "are you there" })
  s:write(H.frame(CLOSE, H.close_payload(4001, "bye")))
  repeat f = assert(H.read_frame(s)) until f.op ~= TEXT
  test.eq({ f.op, f.payload }, { CLOSE, H.close_payload(4001) })
  test.eq(select(2, s:read()).name, "EOF")
  local deadline = task.now() + 3000
  while not result.third and task.now() < deadline do task.sleep(10) end
  test.eq(result.send and result.send.name, "CLOSED")
  test.eq(result.first, { "kept 1", "text" })
  test.eq(result.second, { "kept 2", "binary" })
  test.eq({ result.third[1], result.third[2].name, result.third[2].code }, { nil, "CLOSED", 4001 })
end)

-- A frame's header claims its length before its bytes come: the input buffer grows as they
-- come, not to the claim (200 connections claiming 16 MiB each took 3.2 GB of address space).
test.case("a frame header claiming 16 MiB costs no 16 MiB before its bytes arrive", function()
  local function vmsize_mb() return memory_mb("VmSize") end
  local port = H.serve()
  local socks = {}
  for i = 1, 20 do socks[i] = H.connect(port) end
  task.sleep(50)
  local before = vmsize_mb()
  local header = "\130\255\0\0\0\0\1\0\0\0\1\2\3\4" -- binary, masked, 16 MiB, then a key
  for i = 1, 20 do socks[i]:write(header .. "a few bytes") end
  task.sleep(200)
  local grew = vmsize_mb() - before
  test.ok(grew < 100, ("address space grew by %.0f MiB for 20 frames claiming 16 MiB each"):format(grew))
  -- and a whole 16 MiB frame still arrives (the buffer grows as it comes)
  local s = H.connect(port)
  local payload = rep("z", 16 * 1024 * 1024)
  s:write(H.frame(BINARY, payload, { key = "\0\0\0\0" }))
  local f = assert(H.read_frame(s))
  test.eq({ f.op, #f.payload }, { BINARY, #payload })
end)
