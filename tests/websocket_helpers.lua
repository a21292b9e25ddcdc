-- Shared by the WebSocket tests: a server in this process, and a raw client that writes
-- frames byte by byte as a test wants them (masked or not, any opcode, bits and lengths) and
-- reads the server's frames. (Not a *_test.lua file: the runner does not run it.)
local test = require "test"
local tcp = require "tcp"
local http = require "http"
local bit = require "bit"

local char, byte, concat = string.char, string.byte, table.concat

local H = {}

-- H.serve(fn[, options]) -> port: router:websocket("/", fn, options) on 127.0.0.1 in this
-- process, closed when the case ends. fn defaults to an echo that records how receive ended
-- in H.last_end.
function H.serve(fn, options, server_options)
  local router = http.router()
  fn = fn or H.echo
  router:websocket("/", fn, options)
  router:get("/plain", function(req, res) res:finish("plain") end)
  local opts = server_options or {}
  opts.host = "127.0.0.1"
  local server = assert(http.createServer(0, router, opts))
  test.cleanup(function() server:close() end)
  return server:address().port
end

function H.echo(ws)
  while true do
    local data, kind = ws:receive()
    if not data then
      H.last_end = kind
      return
    end
    ws:send(data, kind)
  end
end

-- Masks (or unmasks) data with a 4-byte key.
function H.mask(data, key)
  if key == "\0\0\0\0" then return data end -- a zero key: valid, and fast for big payloads
  local out, k = {}, { byte(key, 1, 4) }
  local bxor = bit.bxor
  for i = 1, #data do out[i] = char(bxor(byte(data, i), k[(i - 1) % 4 + 1])) end
  return concat(out)
end

-- H.frame(op, payload[, o]) -> bytes. o.fin (default true), o.rsv (0-7), o.masked (default
-- true), o.key (4 bytes), o.len16 / o.len64 (force a longer length form than needed).
function H.frame(op, payload, o)
  o = o or {}
  payload = payload or ""
  local fin = o.fin == nil and true or o.fin
  local masked = o.masked == nil and true or o.masked
  local n = #payload
  local parts = { char((fin and 0x80 or 0) + (o.rsv or 0) * 16 + op) }
  local m = masked and 0x80 or 0
  if n < 126 and not o.len16 and not o.len64 then
    parts[2] = char(m + n)
  elseif n < 65536 and not o.len64 then
    parts[2] = char(m + 126, bit.rshift(n, 8), n % 256)
  else
    local b = {}
    for i = 8, 1, -1 do
      b[i] = n % 256
      n = math.floor(n / 256)
    end
    parts[2] = char(m + 127, unpack(b))
  end
  if masked then
    local key = o.key or "\1\2\3\4"
    parts[3] = key
    parts[4] = H.mask(payload, key)
  else
    parts[3] = payload
  end
  return concat(parts)
end

function H.close_payload(code, reason)
  return char(bit.rshift(code, 8), code % 256) .. (reason or "")
end

-- H.connect(port[, headers[, path[, read_kib]]]) -> sock, status, head: a raw TCP connection
-- after its handshake. read(n) waits for n bytes only up to the socket's read_buffer_size:
-- 32 MiB by default (room for 16 MiB frames); a small one makes a peer that reads slowly.
function H.connect(port, headers, path, read_kib)
  local s = assert(tcp.connect(port, "127.0.0.1", { timeout = 5000, read_buffer_size = read_kib or 32768 }))
  s:write("GET " .. (path or "/") .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" .. (headers or "") .. "\r\n")
  local lines = {}
  while true do
    local line = assert(s:readline())
    if line == "" then break end
    lines[#lines + 1] = line
  end
  test.cleanup(function() s:close() end)
  return s, tonumber(lines[1]:match("^HTTP/1%.1 (%d+)")), concat(lines, "\n")
end

-- H.read_frame(sock) -> {fin, rsv, op, payload, masked} | nil, err (EOF, ETIMEDOUT...)
function H.read_frame(s)
  local h, err = s:read(2)
  if not h then return nil, err end
  local b1, b2 = byte(h, 1, 2)
  local n = b2 % 128
  if n == 126 then
    local e = assert(s:read(2))
    n = byte(e, 1) * 256 + byte(e, 2)
  elseif n == 127 then
    local e = assert(s:read(8))
    n = 0
    for i = 1, 8 do n = n * 256 + byte(e, i) end
  end
  local key = b2 >= 128 and assert(s:read(4))
  local payload = n > 0 and assert(s:read(n)) or ""
  if key then payload = H.mask(payload, key) end
  return { fin = b1 >= 128, rsv = bit.band(bit.rshift(b1, 4), 7), op = b1 % 16, payload = payload, masked = key and true or nil }
end

-- Reads frames until a close frame: returns its code (nil when it had none) and reason,
-- answers it (as a peer does), then expects the server to close the connection. Data
-- frames before it are collected in the third result.
function H.expect_close(s)
  local seen = {}
  while true do
    local f, err = H.read_frame(s)
    if not f then error("no close frame; the connection ended with " .. tostring(err), 2) end
    if f.op == 8 then
      local code = #f.payload >= 2 and byte(f.payload, 1) * 256 + byte(f.payload, 2) or nil
      s:write(H.frame(8, f.payload:sub(1, 2)))
      local data, e = s:read()
      if data ~= nil then error("bytes after the close frame: " .. data, 2) end
      if e.name ~= "EOF" and e.name ~= "ECONNRESET" then error("after close: " .. tostring(e), 2) end
      return code, f.payload:sub(3), seen
    end
    seen[#seen + 1] = f
  end
end

-- Sends bytes, then expects the server's close frame with code.
function H.expect_code(s, bytes, code, what)
  if bytes then s:write(bytes) end
  local got = H.expect_close(s)
  test.eq(got, code, what)
end

return H
