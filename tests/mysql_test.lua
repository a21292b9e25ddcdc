-- The mysql client against a real MariaDB server (tests/mysql_helpers.lua starts it):
-- authentication, every column type through both protocols, NULLs, a 20 MiB blob, several
-- result sets, transactions, errors, pipelining, TLS and timeouts.
local test = require "test"
local task = require "task"
local mysql = require "mysql"
local mh = require "tests.mysql_helpers"
local C = require "luaio.mysql"

local null = mysql.null

local function fresh_table(db, name, ddl)
  assert(db:query("DROP TABLE IF EXISTS " .. name))
  assert(db:query("CREATE TABLE " .. name .. " " .. ddl))
end

-- A fake server's side of the wire: packets out and in, and the first packet (Handshake V10).
local function packet(s, payload, seq)
  return s:write(string.char(#payload % 256, math.floor(#payload / 256) % 256, 0, seq) .. payload)
end
local function read_packet(s)
  local h = assert(s:read(4))
  local n = h:byte(1) + h:byte(2) * 256 + h:byte(3) * 65536
  return n > 0 and assert(s:read(n)) or "", h:byte(4)
end
local function greeting(version, nonce, caps, plugin)
  return "\10" .. version .. "\0" .. "\1\0\0\0" .. nonce:sub(1, 8) .. "\0" ..
    string.char(caps % 256, math.floor(caps / 256) % 256) .. "\45\2\0" ..
    string.char(math.floor(caps / 65536) % 256, math.floor(caps / 16777216) % 256) .. "\21" .. string.rep("\0", 10) ..
    nonce:sub(9) .. "\0" .. plugin .. "\0"
end
local function handshake(s, version, nonce, caps, plugin)
  packet(s, greeting(version, nonce, caps, plugin), 0)
end

-- A hostile server in Python: connection k gets case k of its arguments (they cycle), each
-- "kind:hex". g: the hex is the greeting. r: a valid greeting, then the hex answers the
-- handshake response. q: a valid greeting, an OK, then the hex (packets, framed) answers
-- every command. Then the server half-closes and waits for the client to go.
local FAKE = [[
import socket, struct, sys
def pkt(seq, p): return struct.pack('<I', len(p))[:3] + bytes([seq & 255]) + p
port, greeting, cases = int(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[3:]
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(('127.0.0.1', port)); l.listen(16)
print('listening', flush=True)
k = 0
while True:
    c, _ = l.accept()
    kind, data = cases[k % len(cases)].split(':'); k += 1
    data = bytes.fromhex(data)
    f = c.makefile('rb')
    def read():
        h = f.read(4)
        if len(h) < 4: return None, None
        return f.read(h[0] | h[1] << 8 | h[2] << 16), h[3]
    try:
        c.settimeout(10)
        if kind == 'g':
            c.sendall(pkt(0, data))
        else:
            c.sendall(pkt(0, greeting))
            p, seq = read()
            if kind == 'r':
                c.sendall(pkt(seq + 1, data))
            else:
                c.sendall(pkt(seq + 1, b'\0\0\0\2\0\0\0'))
                while True:
                    p, seq = read()
                    if p is None or p[:1] == b'\x01': break
                    c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        while c.recv(65536): pass
    except OSError:
        pass
    c.close()
]]

local function tohex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
local NATIVE_GREETING = greeting("10.11.0-fake", "abcdefghijklmnopqrst", 0xFFFFF7FF, "mysql_native_password")

-- Starts FAKE with these cases ({kind, bytes}...); returns its port.
local function fake_server(cases)
  local helpers = require "tests.helpers"
  local port = helpers.free_port()
  local args = { port, tohex(NATIVE_GREETING) }
  for _, c in ipairs(cases) do args[#args + 1] = c[1] .. ":" .. tohex(c[2]) end
  helpers.wait_output(helpers.python(FAKE, unpack(args)), "listening")
  return port
end

-- Framing for FAKE's q cases: a result set's packets.
local function lenenc(n)
  if n < 251 then return string.char(n) end
  if n < 65536 then return "\252" .. string.char(n % 256, math.floor(n / 256)) end
  local t = {}
  for i = 1, 8 do t[i] = string.char(n % 256) n = math.floor(n / 256) end
  return "\254" .. table.concat(t)
end
local function frame(seq, payload)
  local n = #payload
  return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536), seq % 256) .. payload
end
local function lstr(s) return lenenc(#s) .. s end
local function coldef(name) -- a VAR_STRING column
  return lstr("def") .. lstr("db") .. lstr("t") .. lstr("t") .. lstr(name) .. lstr(name) .. "\12" ..
    "\33\0" .. "\255\0\0\0" .. "\253" .. "\0\0" .. "\0" .. "\0\0"
end

-- --- authentication ------------------------------------------------------------------------

test.case("mysql_native_password over TCP and over the Unix socket", function()
  local srv = mh.server()
  local db = mh.connect(srv)
  local rows = assert(db:query("SELECT CURRENT_USER() AS u, 1 + 1 AS two"))
  test.eq(rows[1].u, "native@%")
  test.eq(rows[1].two, 2)
  db:close()
  local viasock = assert(mysql.connect({ path = srv.sock, user = "native", password = "native-pw" }))
  test.eq(assert(viasock:query("SELECT CURRENT_USER() AS u"))[1].u, "native@localhost")
  viasock:close()
end)

test.case("client_ed25519 (MariaDB's ed25519 plugin), signed on OpenSSL", function()
  local srv = mh.server()
  for _ = 1, 4 do -- each signature picks a fresh nonce and its own signs
    local db, err = mysql.connect({ port = srv.port, user = "ed", password = "ed-pw with spaces and a long tail 0123456789" })
    test.ok(db, tostring(err))
    test.eq(assert(db:query("SELECT CURRENT_USER() AS u"))[1].u, "ed@%")
    db:close()
  end
  local db, err = mysql.connect({ port = srv.port, user = "ed", password = "wrong" })
  test.eq(db, nil)
  test.eq(err.errno, 1045)
end)

-- A nonce that ends in a zero byte (1 in 256 of MariaDB's) is all nonce: client_ed25519 signs
-- its 32 bytes. A server here sends one; openssl checks the signature with the public key
-- MariaDB stores for the same password.
test.case("client_ed25519 signs a nonce that ends in a zero byte whole", function()
  local tcp = require "tcp"
  local srv = mh.server()
  local password = "ed-pw with spaces and a long tail 0123456789"
  local created = assert(srv.root:query("SHOW CREATE USER 'ed'@'%'"))[1]
  local _, stmt = next(created)
  local pub_b64 = assert(stmt:match("USING '([%w+/]+)'"), stmt)
  local nonce = string.rep("\7", 31) .. "\0"
  local signature
  local server = assert(tcp.createServer(0, function(s)
    handshake(s, "10.11.0-fake", "abcdefghijklmnopqrst", 0xFFFFF7FF, "mysql_native_password") -- no SSL
    local _, seq = read_packet(s)
    packet(s, "\254client_ed25519\0" .. nonce, seq + 1) -- as MariaDB sends it: no NUL after
    local p
    p, seq = read_packet(s)
    signature = p
    packet(s, "\0\0\0\2\0\0\0", seq + 1)
    task.sleep(100)
  end, { host = "127.0.0.1" }))
  test.cleanup(function() server:close() end)
  local db = assert(mysql.connect({ port = server:address().port, user = "ed", password = password }))
  db:close()
  test.eq(#signature, 64)
  local dir = test.tmpdir()
  local der_prefix = "\48\42\48\5\6\3\43\101\112\3\33\0" -- SubjectPublicKeyInfo of an Ed25519 key
  local b64 = pub_b64 .. string.rep("=", (4 - #pub_b64 % 4) % 4)
  test.write(dir .. "/pub.b64", b64 .. "\n")
  test.write(dir .. "/prefix.der", der_prefix)
  test.write(dir .. "/nonce", nonce)
  test.write(dir .. "/sig", signature)
  local out, status = test.sh("cd " .. dir .. " && base64 -d pub.b64 > a.raw && cat prefix.der a.raw > pub.der && " ..
    "openssl pkeyutl -verify -pubin -keyform DER -inkey pub.der -rawin -in nonce -sigfile sig 2>&1")
  test.eq(status, 0, out)
  test.match(out, "Signature Verified Successfully")
end)

test.case("an empty password, unix_socket for root, and a wrong password", function()
  local srv = mh.server()
  local db = assert(mysql.connect({ port = srv.port, user = "nopw" }))
  test.eq(assert(db:query("SELECT CURRENT_USER() AS u"))[1].u, "nopw@%")
  db:close()
  local root = assert(mysql.connect({ path = srv.sock, user = "root" })) -- unix_socket: we are root
  test.eq(assert(root:query("SELECT CURRENT_USER() AS u"))[1].u, "root@localhost")
  root:close()
  local bad, err = mysql.connect({ port = srv.port, user = "native", password = "nope" })
  test.eq(bad, nil)
  test.eq(err.name, "EMYSQL")
  test.eq(err.errno, 1045)
  test.eq(err.sqlstate, "28000")
  test.match(err.message, "Access denied")
end)

-- Vectors published with go-sql-driver/mysql's tests (auth_test.go): MariaDB has no
-- caching_sha2_password server, so its scramble is checked against them, and its exchange
-- against a server written here (below).
local function bytes(t) local s = {} for i, b in ipairs(t) do s[i] = string.char(b) end return table.concat(s) end
local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end

test.case("the scrambles match published test vectors", function()
  local n = bytes({ 10, 47, 74, 111, 75, 73, 34, 48, 88, 76, 114, 74, 37, 13, 3, 80, 82, 2, 23, 21 })
  test.eq(hex(C.sha256("secret", n)), "f490e76f66d9d86665ce54d98c78d0acfe2fb0b08b423da807144873d30b312c")
  test.eq(hex(C.sha256("secret2", n)), "abc3934a012cf342e876071c8ee202de51785b430258a7a0138bc79c4d800bc6")
  local n2 = bytes({ 90, 105, 74, 126, 30, 48, 37, 56, 3, 23, 115, 127, 69, 22, 41, 84, 32, 123, 43, 118 })
  test.eq(C.sha256("secret", n2), bytes({ 102, 32, 5, 35, 143, 161, 140, 241, 171, 232, 56, 139, 43, 14, 107,
    196, 249, 170, 147, 60, 220, 204, 120, 178, 214, 15, 184, 150, 26, 61, 57, 235 }))
  local n3 = bytes({ 70, 114, 92, 94, 1, 38, 11, 116, 63, 114, 23, 101, 126, 103, 26, 95, 81, 17, 24, 21 })
  test.eq(C.native("secret", n3), bytes({ 53, 177, 140, 159, 251, 189, 127, 53, 109, 252, 172, 50, 211, 192,
    240, 164, 26, 48, 207, 45 }))
  test.eq(C.native("", n3), "")
  test.eq(C.sha256("", n3), "")
end)

-- A server that speaks only the handshake, with caching_sha2_password: `mode` "fast" (the
-- scramble is checked against the vector's formula by the client... and answered 0x01 0x03),
-- "rsa" (full authentication: the client asks for the key and sends the password encrypted;
-- openssl decrypts it here) or "tls" (full authentication over TLS: the password in clear).
local function sha2_server(mode, password)
  local tcp = require "tcp"
  local dir = test.tmpdir()
  local out, status = test.sh("cd " .. dir .. " && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out key.pem 2>&1 && openssl pkey -in key.pem -pubout -out pub.pem 2>&1")
  assert(status == 0, out)
  local pub = assert(io.open(dir .. "/pub.pem")):read("*a")
  local nonce = "0123456789abcdefghij"
  local result = {}
  local server = assert(tcp.createServer(0, function(s)
    local caps = 0xFFFFF7FF -- everything but SSL ...
    if mode == "tls" then caps = 0xFFFFFFFF end
    handshake(s, "8.0.36-fake", nonce, caps, "caching_sha2_password")
    local p, seq = read_packet(s)
    if mode == "tls" then
      assert(s:starttls({ server = true, cert = mh.certs().cert, key = mh.certs().key }))
      p, seq = read_packet(s)
    end
    local user_end = p:find("\0", 33, true)
    local alen = p:byte(user_end + 1)
    result.scramble = p:sub(user_end + 2, user_end + 1 + alen)
    if mode == "fast" then
      packet(s, "\1\3", seq + 1)
      packet(s, "\0\0\0\2\0\0\0", seq + 2)
      return
    end
    packet(s, "\1\4", seq + 1)
    p, seq = read_packet(s)
    if mode == "tls" then
      result.password = p
    else
      result.asked = p
      packet(s, "\1" .. pub, seq + 1)
      p, seq = read_packet(s)
      test.write(dir .. "/cipher", p)
      local plain = test.sh("openssl pkeyutl -decrypt -inkey " .. dir .. "/key.pem -pkeyopt rsa_padding_mode:oaep -in " .. dir .. "/cipher")
      local t = {}
      for i = 1, #plain do t[i] = string.char(bit.bxor(plain:byte(i), nonce:byte((i - 1) % 20 + 1))) end
      result.password = table.concat(t)
    end
    packet(s, "\0\0\0\2\0\0\0", seq + 1)
    task.sleep(100)
  end, { host = "127.0.0.1" }))
  test.cleanup(function() server:close() end)
  return server:address().port, result, nonce
end

test.case("caching_sha2_password: fast path, full authentication with RSA and over TLS", function()
  local port, result, nonce = sha2_server("fast")
  local db, err = mysql.connect({ port = port, user = "u", password = "secret" })
  test.ok(db, tostring(err))
  test.eq(result.scramble, C.sha256("secret", nonce))
  db:close()
  port, result = sha2_server("rsa")
  db, err = mysql.connect({ port = port, user = "u", password = "s3cr3t pass" })
  test.ok(db, tostring(err))
  test.eq(result.asked, "\2")
  test.eq(result.password, "s3cr3t pass\0")
  db:close()
  -- over TLS, with a server in Python (luaio's server-side starttls would miss a ClientHello
  -- that came in the same read as the SSLRequest)
  local helpers = require "tests.helpers"
  local c = mh.certs()
  port = helpers.free_port()
  local py = test.tmpdir() .. "/sha2_tls.py"
  test.write(py, ([[
import socket, ssl, struct
def pkt(s, payload, seq): s.sendall(struct.pack('<I', len(payload))[:3] + bytes([seq]) + payload)
def recv(s, n):
    b = b''
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d: raise SystemExit('eof')
        b += d
    return b
def read(s):
    h = recv(s, 4)
    return recv(s, h[0] | h[1] << 8 | h[2] << 16), h[3]
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(('127.0.0.1', %d)); l.listen(1)
print('listening', flush=True)
s, _ = l.accept()
nonce = b'0123456789abcdefghij'
caps = 0xFFFFFFFF
pkt(s, b'\x0a8.0.36-fake\x00\x01\x00\x00\x00' + nonce[:8] + b'\x00' + struct.pack('<H', caps & 0xffff) + b'\x2d\x02\x00' +
    struct.pack('<H', caps >> 16) + b'\x15' + b'\x00' * 10 + nonce[8:] + b'\x00caching_sha2_password\x00', 0)
req, seq = read(s)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain('%s', '%s')
t = ctx.wrap_socket(s, server_side=True)
resp, seq = read(t)
pkt(t, b'\x01\x04', seq + 1)
pw, seq = read(t)
print('password', pw.hex(), flush=True)
pkt(t, b'\x00\x00\x00\x02\x00\x00\x00', seq + 1)
t.recv(100)
]]):format(port, c.cert, c.key))
  local peer = helpers.start("python3 " .. py)
  helpers.wait_output(peer, "listening")
  db, err = mysql.connect({ port = port, user = "u", password = "over tls", tls = { ca = c.ca } })
  test.ok(db, tostring(err))
  test.eq(helpers.wait_output(peer, "password (%x+)"), hex("over tls\0"))
  db:close()
end)

test.case("a broken greeting or authentication reply: nil, EPROTO, never a raised error", function()
  local g = NATIVE_GREETING
  local plugin_at = g:find("mysql_native_password", 1, true)
  local cases, expect = {}, {}
  for n = 0, #g - 1 do -- every cut of the greeting
    cases[#cases + 1] = { "g", g:sub(1, n) }
    expect[#cases] = n < plugin_at - 1 and "EPROTO" or true -- past the nonce: the plugin is cut
  end
  local replies = {
    { "", "EPROTO" }, { "\0", "EPROTO" }, { "\0\0", "EPROTO" }, { "\0\0\0", "EPROTO" }, { "\0\0\0\2", "EPROTO" },
    { "\0\251\0\2\0\0\0", "EPROTO" }, { "\0\252\1", "EPROTO" }, { "\0\254\1\0\0", "EPROTO" },
    { "\255", "EPROTO" }, { "\255\21", "EPROTO" }, { "\255\21\4", "EMYSQL" }, { "\255\21\4#28", "EMYSQL" },
    { "\254", "ENOTSUP" }, { "\254mysql_native_password", true }, { "\254dialog\0abc", "ENOTSUP" },
    { "\1", "EPROTO" }, { "\254sha256_password\0", "EPROTO" }, { "\2", "EPROTO" },
  }
  for _, r in ipairs(replies) do
    cases[#cases + 1] = { "r", r[1] }
    expect[#cases] = r[2]
  end
  local port = fake_server(cases)
  for i, c in ipairs(cases) do
    local what = c[1] .. " " .. tohex(c[2])
    local ok, db, err = pcall(mysql.connect, { port = port, user = "u", password = "pw", rsa_public_key = "no key",
      connect_timeout = 5000 })
    test.ok(ok, what .. " raised " .. tostring(db))
    test.eq(db, nil, what)
    test.ok(type(err) == "table" and err.name, what .. ": " .. tostring(err))
    if expect[i] ~= true then test.eq(err and err.name, expect[i], what .. ": " .. tostring(err)) end
  end
end)

test.case("a hostile result: impossible column counts, more cells than columns: EPROTO", function()
  local done = "\254\0\0\2\0\0\0" -- the OK that ends rows (CLIENT_DEPRECATE_EOF)
  local function result(count, rows)
    local out, seq = { frame(1, count), frame(2, coldef("a")) }, 3
    for _, r in ipairs(rows) do
      out[#out + 1] = frame(seq, r)
      seq = seq + 1
    end
    out[#out + 1] = frame(seq, done)
    return table.concat(out)
  end
  local good, bad21 = {}, {}
  for i = 1, 20 do good[i], bad21[i] = lstr(tostring(i)), lstr(tostring(i)) end
  bad21[21] = lstr("1") .. lstr("2")
  local cases = {
    { "2^32 + 1 columns", result("\254\1\0\0\0\1\0\0\0", { lstr("1") }) },
    { "2^40 columns", result("\254\0\0\0\0\0\1\0\0", { lstr("1") }) },
    { "65536 columns", result(lenenc(65536), { lstr("1") }) },
    { "2^64 - 1 columns", result("\254" .. string.rep("\255", 8), { lstr("1") }) },
    { "3 cells in 1 column", result(lenenc(1), { lstr("1") .. lstr("2") .. lstr("3") }) },
    { "a NULL cell too many", result(lenenc(1), { lstr("1") .. "\251" }) },
    { "the 21st row has 2 cells (batched rows)", result(lenenc(1), bad21) },
  }
  local fake = {}
  for i, c in ipairs(cases) do fake[i] = { "q", c[2] } end
  fake[#fake + 1] = { "q", result(lenenc(1), good) } -- and a good one still passes
  local port = fake_server(fake)
  for _, c in ipairs(cases) do
    local db = assert(mysql.connect({ port = port, user = "u", password = "pw", timeout = 3000 }))
    local r, err = db:query("SELECT a")
    test.eq(r, nil, c[1])
    test.eq(err and err.name, "EPROTO", c[1] .. ": " .. tostring(err))
    test.eq(db:state(), false, c[1] .. ": the connection is dropped")
    db:close()
  end
  local db = assert(mysql.connect({ port = port, user = "u", password = "pw", timeout = 3000 }))
  local rows = assert(db:query("SELECT a"))
  test.eq(#rows, 20)
  test.eq(rows[20].a, "20")
  db:close()
end)

-- --- types ------------------------------------------------------------------------------------

local TYPES = [[(
  id INT PRIMARY KEY, ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  f FLOAT, d DOUBLE, dc DECIMAL(20,6), dt DATE, tm TIME, tm6 TIME(6), dtm DATETIME, dtm3 DATETIME(3),
  ts TIMESTAMP(6) NULL, y YEAR, c CHAR(10), vc VARCHAR(100), tx TEXT, bn BINARY(4), vb VARBINARY(20),
  bl BLOB, lb LONGBLOB, js JSON, bt BIT(12), en ENUM('a','b'), st SET('x','y'))]]

local COLS = { "id", "ti", "tiu", "si", "siu", "mi", "miu", "i", "iu", "bi", "biu", "f", "d", "dc", "dt", "tm", "tm6",
  "dtm", "dtm3", "ts", "y", "c", "vc", "tx", "bn", "vb", "bl", "lb", "js", "bt", "en", "st" }

local all_bytes = {}
for b = 0, 255 do all_bytes[#all_bytes + 1] = string.char(b) end
all_bytes = table.concat(all_bytes)

-- What each row reads back as: the values given, in their typed forms.
local ROWS = {
  { 1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, "-9223372036854775808",
    "18446744073709551615", 1.1, 1.7976931348623157e308, "-12345678901234.123456", "2024-02-29", "-838:59:59",
    "12:34:56.123456", "9999-12-31 23:59:59", "2024-01-02 03:04:05.678", "2030-01-01 00:00:00.500000", 2155,
    "chars", "h\195\169llo \226\156\147", string.rep("text ", 2000), "\0\1\2\255", "\0a\0b", all_bytes, "",
    '{"a": [1, 2, null]}', "\10\170", "b", "x,y" },
  { 2, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0, 9007199254740992, 9007199254740992, -0.5, 0.1, "0.000001",
    "1000-01-01", "00:00:00", "-00:00:00.000001", "1000-01-01 00:00:00", "1970-01-02 00:00:00.000",
    "2000-02-29 12:00:00.000001", 1901, "", "", "", "\0\0\0\0", "", "", "x", "[]", "\0\0", "a", "" },
  { 3, 0, 1, -1, 1, -1, 1, -1, 1, "9007199254740993", "9007199254740993", 1.5e38, -2.5e-300,
    "99999999999999.999999", "2024-12-31", "838:59:59", "00:00:00.500000", "2024-06-30 23:59:59",
    "2024-06-30 23:59:59.999", "2038-01-01 00:00:00.000000", 2000, "a b", "'quoted' \"and\" \\", "\n\r\26\0",
    "ab\0\0", "\255", "\0", string.rep("\1", 100000), '"s"', "\15\255", "a", "y" },
}

local function check_row(row, expected, what)
  for k, name in ipairs(COLS) do test.eq(row[name], expected[k], what .. " " .. name) end
end

test.case("every column type round-trips through both protocols", function()
  local db = mh.connect(mh.server())
  fresh_table(db, "types", TYPES)
  local marks = string.rep("?", #COLS, ", ")
  for _, r in ipairs(ROWS) do
    assert(db:execute("INSERT INTO types VALUES (" .. marks .. ")", unpack(r, 1, #COLS)))
  end
  local text = assert(db:query("SELECT * FROM types ORDER BY id"))
  local binary = assert(db:execute("SELECT * FROM types ORDER BY id"))
  test.eq(#text, 3)
  test.eq(#binary, 3)
  for i, r in ipairs(ROWS) do
    check_row(text[i], r, "text row " .. i)
    check_row(binary[i], r, "binary row " .. i)
  end
  test.eq(text.columns[1].name, "id")
  test.eq(text.columns[1].type, "LONG")
  test.eq(text.columns[10].type, "LONGLONG")
  test.eq(binary.columns[14].type, "NEWDECIMAL")
  test.eq(#binary.columns, #COLS)
  -- NULLs in every column, both protocols
  local nulls = { 4 }
  for k = 2, #COLS do nulls[k] = null end
  assert(db:execute("INSERT INTO types VALUES (" .. marks .. ")", unpack(nulls, 1, #COLS)))
  local t = assert(db:query("SELECT * FROM types WHERE id = 4"))[1]
  local b = assert(db:execute("SELECT * FROM types WHERE id = ?", 4))[1]
  for k = 2, #COLS do
    test.eq(t[COLS[k]], null, "text NULL " .. COLS[k])
    test.eq(b[COLS[k]], null, "binary NULL " .. COLS[k])
  end
  -- parameters of each Lua type, and nil
  local p = assert(db:execute("SELECT ? AS a, ? AS b, ? AS c, ? AS d, ? AS e, ? AS f", nil, true, false, 42, 0.25, "s"))[1]
  test.eq(p.a, null)
  test.eq(p.b, 1)
  test.eq(p.c, 0)
  test.eq(p.d, 42)
  test.eq(p.e, 0.25)
  test.eq(p.f, "s")
  -- arrays, and mysql.quote through the text protocol
  local q = assert(db:query("SELECT " .. mysql.quote("it's \\ \0 \n \26 \"q\"") .. " AS s, 2 AS n", { arrays = true }))
  test.eq(q[1], { "it's \\ \0 \n \26 \"q\"", 2 })
  db:close()
end)

test.case("a 20 MiB blob goes in and out whole (packets split and joined)", function()
  local db = mh.connect(mh.server())
  fresh_table(db, "big", "(id INT PRIMARY KEY, b LONGBLOB)")
  local blob = string.rep(all_bytes, 20 * 4096) .. "tail"
  assert(#blob > 20 * 1024 * 1024)
  assert(db:execute("INSERT INTO big VALUES (?, ?)", 1, blob))
  local t = assert(db:query("SELECT id, b, LENGTH(b) AS n FROM big"))
  test.eq(t[1].n, #blob)
  test.ok(t[1].b == blob, "text protocol: the bytes")
  local b = assert(db:execute("SELECT b, id FROM big WHERE id = ?", 1))
  test.ok(b[1].b == blob, "binary protocol: the bytes")
  test.eq(b[1].id, 1)
  -- the same through a text query over 16 MiB
  assert(db:query("DELETE FROM big"))
  assert(db:query("INSERT INTO big VALUES (2, " .. mysql.quote(blob) .. ")"))
  test.eq(assert(db:query("SELECT LENGTH(b) AS n, MD5(b) = MD5(" .. mysql.quote(blob) .. ") AS same FROM big"))[1],
    { n = #blob, same = 1 })
  test.eq(assert(db:query("SELECT 1 AS one"))[1].one, 1, "the connection goes on")
  db:close()
end)

-- --- results and statements --------------------------------------------------------------------

test.case("several result sets: multi-statements and CALL, in both protocols", function()
  local db = mh.connect(mh.server(), { multi_statements = true })
  fresh_table(db, "m", "(id INT PRIMARY KEY AUTO_INCREMENT, v INT)")
  local r = assert(db:query("SELECT 1 AS a; INSERT INTO m (v) VALUES (5), (6); SELECT 2 AS b"))
  test.eq(r[1].a, 1)
  test.eq(r.next.affected_rows, 2)
  test.eq(r.next.insert_id, 1)
  test.eq(r.next.next[1].b, 2)
  test.eq(r.next.next.next, nil)
  assert(db:query("DROP PROCEDURE IF EXISTS p"))
  assert(db:query("CREATE PROCEDURE p(IN n INT) BEGIN SELECT n AS x; SELECT n * 2 AS y, 'z' AS z; END"))
  for _, res in ipairs({ assert(db:query("CALL p(21)")), assert(db:execute("CALL p(?)", 21)) }) do
    test.eq(res[1].x, 21)
    test.eq(res.next[1], { y = 42, z = "z" })
    test.eq(res.next.next.affected_rows, 0) -- CALL's own status
  end
  local bad, err = db:query("SELECT 7 AS s; SELECT * FROM no_such_table; SELECT 8")
  test.eq(bad, nil)
  test.eq(err.errno, 1146)
  test.eq(err.results[1].s, 7)
  test.eq(assert(db:query("SELECT 9 AS n"))[1].n, 9)
  db:close()
end)

-- Past its first rows, a result's rows are built by code generated for its column names
-- (stdlib/mysql.lua, fill_for); the first ones, long rows and results of very many columns
-- are built in C. Both must give the same values, in both protocols.
test.case("long results: every row as a short result gives it, in both shapes and both protocols", function()
  local db = mh.connect(mh.server(), { multi_statements = true })
  local cols = "seq AS id, seq * 1000003 AS a, CONCAT('name-', seq) AS b, seq / 7 AS c, " ..
    "CAST(seq / 3 AS DECIMAL(10,2)) AS d, '2024-01-01 00:00:00' + INTERVAL seq MINUTE AS e, " ..
    "IF(seq % 5 = 0, NULL, seq) AS `i`, 9007199254740993 + seq AS big, -seq AS neg, " ..
    "CAST(seq / 4 AS FLOAT) AS f, IF(seq = 150, REPEAT('L', 20000), REPEAT('x', seq % 40)) AS g, " ..
    "seq AS `we\"ird ]] \\ name\n`, seq + 1 AS dup, seq + 2 AS dup"
  local sql = "SELECT " .. cols .. " FROM seq_1_to_300"
  local rows = assert(db:query(sql))
  local arrays = assert(db:query(sql, { arrays = true }))
  test.eq(#rows, 300)
  test.eq(#arrays, 300)
  test.eq(rows.columns[12].name, 'we"ird ]] \\ name\n')
  for _, k in ipairs({ 1, 16, 17, 18, 100, 144, 145, 149, 150, 151, 299, 300 }) do
    local one = "SELECT " .. cols .. " FROM seq_1_to_300 WHERE seq = " .. k
    test.eq(rows[k], assert(db:query(one))[1], "row " .. k)
    test.eq(arrays[k], assert(db:query(one, { arrays = true }))[1], "array " .. k)
  end
  test.eq(rows[17].big, "9007199254741010", "past 2^53: the digits")
  test.eq(rows[20].i, mysql.null)
  test.eq(rows[21].dup, 23, "a repeated name: the last column's value")
  test.eq(#rows[150].g, 20000)
  -- the binary protocol (execute), keyed and as arrays (a connection option there)
  local dba = mh.connect(mh.server(), { arrays = true })
  local brows, barrays = assert(db:execute(sql)), assert(dba:execute(sql))
  test.eq({ #brows, #barrays }, { 300, 300 })
  for _, k in ipairs({ 1, 16, 17, 18, 100, 144, 145, 149, 150, 151, 299, 300 }) do
    local one = "SELECT " .. cols .. " FROM seq_1_to_300 WHERE seq = ?"
    test.eq(brows[k], assert(db:execute(one, k))[1], "binary row " .. k)
    test.eq(barrays[k], assert(dba:execute(one, k))[1], "binary array " .. k)
  end
  test.eq(brows[17].big, "9007199254741010", "binary, past 2^53: the digits")
  test.eq(brows[20].i, mysql.null)
  test.eq(brows[17].e, "2024-01-01 00:17:00", "binary, a DATETIME as text")
  test.eq(#brows[150].g, 20000)
  dba:close()
  -- two long result sets in one answer, and a server error after 200 rows
  local two = assert(db:query("SELECT seq AS x FROM seq_1_to_40; SELECT seq * 2 AS y FROM seq_1_to_50"))
  test.eq({ #two, two[40].x, #two.next, two.next[50].y }, { 40, 40, 50, 100 })
  assert(db:query("DROP FUNCTION IF EXISTS boom"))
  assert(db:query("CREATE FUNCTION boom(x INT) RETURNS INT BEGIN IF x = 200 THEN " ..
    "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'boom'; END IF; RETURN x; END"))
  local bad, err = db:query("SELECT boom(seq) AS v, 'text' AS t FROM seq_1_to_300")
  test.eq(bad, nil)
  test.eq(err.message, "boom")
  test.eq(assert(db:query("SELECT 9 AS n"))[1].n, 9, "the connection goes on")
  -- very many columns: built in C
  local many = {}
  for i = 1, 250 do many[i] = "seq + " .. i .. " AS c" .. i end
  local wide = assert(db:query("SELECT " .. table.concat(many, ", ") .. " FROM seq_1_to_40"))
  test.eq({ #wide, wide[40].c1, wide[40].c250 }, { 40, 41, 290 })
  db:close()
end)

test.case("wide results: past 4096 columns, and past what a Lua stack holds, in both protocols", function()
  local db = mh.connect(mh.server())
  for _, n in ipairs({ 4097, 9000 }) do
    local cols = {}
    for i = 1, n do cols[i] = "x.n + " .. i .. " AS c" .. i end
    local sql = "SELECT " .. table.concat(cols, ", ") .. " FROM (SELECT 0 AS n" ..
      string.rep(" UNION ALL SELECT 1", 19) .. ") x"
    for _, how in ipairs({ "query", "execute" }) do
      for _, arrays in ipairs({ false, true }) do
        local rows, err
        if how == "query" then rows, err = db:query(sql, { arrays = arrays }) else rows, err = db:execute(sql) end
        local what = n .. " columns, " .. how .. (arrays and ", arrays" or "")
        test.ok(rows, what .. ": " .. tostring(err))
        test.eq(#rows, 20, what)
        test.eq(#rows.columns, n, what)
        test.eq(rows.columns[n].name, "c" .. n)
        local last = rows[20]
        if how == "query" and arrays then
          test.eq({ last[1], last[n] }, { 2, n + 1 }, what)
        else
          test.eq({ last.c1, last["c" .. n] }, { 2, n + 1 }, what)
        end
        if how == "execute" then break end
      end
    end
  end
  test.eq(assert(db:query("SELECT 1 AS one"))[1].one, 1, "the connection is still usable")
  db:close()
end)

test.case("prepare, execute with parameters, close; the statement cache", function()
  local db = mh.connect(mh.server(), { statement_cache = 2 })
  local st = assert(db:prepare("SELECT ? * 2 AS v, ? AS s"))
  test.eq(st.params, 2)
  test.eq(st.columns, 2)
  for i = 1, 3 do test.eq(assert(st:execute(i, "x"))[1], { v = i * 2, s = "x" }) end
  -- misuse raises at the caller's line, the bad parameter numbered as the caller counts
  local function raises_here(fn, pattern) -- fn is written on the line that calls this
    test.raises(fn, "^tests/mysql_test%.lua:" .. debug.getinfo(2, "l").currentline .. ": " .. pattern)
  end
  raises_here(function() st:execute(1) end, "mysql: the statement takes 2 parameters, got 1")
  raises_here(function() st:execute(1, {}) end, "bad argument #2 to 'execute' %(nil, boolean, number or string expected, got table%)")
  raises_here(function() db:execute("SELECT ?", {}) end, "bad argument #2 to 'execute' %(nil, boolean, number or string expected, got table%)")
  raises_here(function() db:execute("SELECT ?, ?", 1, print) end, "bad argument #3 to 'execute' %(.*got function%)")
  raises_here(function() db:execute("SELECT ?", 1, 2) end, "mysql: the statement takes 1 parameters, got 2")
  raises_here(function() db:execute(42) end, "bad argument #1 to 'execute' %(string expected, got number%)")
  test.eq(assert(db:execute("SELECT ? AS v", 5))[1].v, 5, "usable after them")
  st:close()
  raises_here(function() st:execute(1, 2) end, "statement closed")
  for i = 1, 5 do -- more SQL texts than the cache holds: old statements close
    test.eq(assert(db:execute("SELECT ? + " .. i .. " AS v", 1))[1].v, 1 + i)
  end
  local count = assert(db:query("SHOW SESSION STATUS LIKE 'Prepared_stmt_count'"))
  test.ok(tonumber(count[1].Value) <= 3, "statements closed: " .. count[1].Value)
  local nocache = mh.connect(mh.server(), { statement_cache = 0 })
  local function prepared() return assert(nocache:query("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'"))[1].Value end
  local before = prepared()
  for i = 1, 3 do test.eq(assert(nocache:execute("SELECT ? AS v", i))[1].v, i) end
  test.eq(prepared(), before, "statement_cache = 0 closes each statement")
  nocache:close()
  -- the columns of a cached statement change with the table
  fresh_table(db, "alt", "(a INT)")
  assert(db:query("INSERT INTO alt VALUES (1)"))
  test.eq(assert(db:execute("SELECT * FROM alt"))[1], { a = 1 })
  assert(db:query("ALTER TABLE alt ADD COLUMN b VARCHAR(5) DEFAULT 'bb'"))
  test.eq(assert(db:execute("SELECT * FROM alt"))[1], { a = 1, b = "bb" })
  db:close()
end)

test.case("pipelining: 200 tasks share one connection, each gets its own answer", function()
  local db = mh.connect(mh.server())
  local tasks = {}
  for i = 1, 200 do
    tasks[i] = task.spawn(function()
      local how = i % 2 == 0 and db.query or db.execute
      local res = assert(how(db, "SELECT " .. i .. " AS n, REPEAT('x', " .. i .. ") AS s"))
      return res[1].n, #res[1].s
    end)
  end
  for i = 1, 200 do
    local ok, n, len = tasks[i]:join()
    test.ok(ok, tostring(n))
    test.eq(n, i)
    test.eq(len, i)
  end
  db:close()
end)

-- --- transactions and errors ------------------------------------------------------------------

test.case("transactions: commit, a forced rollback, and other tasks wait their turn", function()
  local db = mh.connect(mh.server())
  fresh_table(db, "acct", "(id INT PRIMARY KEY, bal INT) ENGINE=InnoDB")
  assert(db:query("INSERT INTO acct VALUES (1, 100), (2, 0)"))
  local sum = assert(db:transaction(function(tx)
    assert(tx:execute("UPDATE acct SET bal = bal - 30 WHERE id = ?", 1))
    assert(tx:execute("UPDATE acct SET bal = bal + 30 WHERE id = ?", 2))
    return tonumber(assert(tx:query("SELECT SUM(bal) AS s FROM acct"))[1].s)
  end))
  test.eq(sum, 100)
  local ok, err = db:transaction(function(tx)
    assert(tx:execute("UPDATE acct SET bal = 0 WHERE id = ?", 1))
    error("forced")
  end)
  test.eq(ok, nil)
  test.match(tostring(err), "forced")
  local bal = assert(db:query("SELECT bal FROM acct ORDER BY id"))
  test.eq({ bal[1].bal, bal[2].bal }, { 70, 30 })
  -- while one task's transaction runs, another task's statement waits for it to end
  local order = {}
  local t = task.spawn(function()
    return db:transaction(function(tx)
      order[#order + 1] = "tx begins"
      assert(tx:query("UPDATE acct SET bal = bal + 1 WHERE id = 1"))
      task.sleep(50)
      assert(tx:query("SELECT 1"))
      order[#order + 1] = "tx ends"
      return true
    end)
  end)
  task.sleep(10)
  local v = assert(db:query("SELECT bal FROM acct WHERE id = 1"))[1].bal
  order[#order + 1] = "other ran"
  test.eq(v, 71, "the other task saw the committed transaction")
  test.ok(t:join())
  test.eq(order, { "tx begins", "tx ends", "other ran" })
  local _, _, in_trans = db:state()
  test.eq(in_trans, false)
  local _, nested = db:transaction(function(tx) tx:transaction(function() end) end)
  test.match(tostring(nested), "do not nest")
  db:close()
end)

test.case("a statement prepared while another task's transaction begins waits for it to end", function()
  -- db:execute's first use of its SQL waits for PREPARE; a transaction that begins meanwhile
  -- must not have the execute run inside it (and rolled back with it)
  local db = mh.connect(mh.server())
  fresh_table(db, "logt", "(who VARCHAR(10)) ENGINE=InnoDB")
  local b = task.spawn(function() return db:execute("INSERT INTO logt VALUES (?)", "B") end)
  local a = task.spawn(function()
    return db:transaction(function(tx)
      assert(tx:query("INSERT INTO logt VALUES ('A')"))
      error("A aborts")
    end)
  end)
  local _, r = b:join()
  test.eq(r and r.affected_rows, 1)
  local _, ra, erra = a:join()
  test.eq(ra, nil)
  test.match(tostring(erra), "A aborts")
  local rows = assert(mh.connect(mh.server()):query("SELECT who FROM logt"))
  test.eq(#rows, 1, "B's acknowledged row is there")
  test.eq(rows[1] and rows[1].who, "B")
  -- the same with the statement cache off (each execute prepares)
  local nc = mh.connect(mh.server(), { statement_cache = 0 })
  fresh_table(nc, "logt", "(who VARCHAR(10)) ENGINE=InnoDB")
  b = task.spawn(function() return nc:execute("INSERT INTO logt VALUES (?)", "B") end)
  a = task.spawn(function()
    return nc:transaction(function(tx)
      assert(tx:query("INSERT INTO logt VALUES ('A')"))
      error("A aborts")
    end)
  end)
  test.eq(select(2, b:join()).affected_rows, 1)
  a:join()
  test.eq(#assert(db:query("SELECT who FROM logt WHERE who = 'B'")), 1)
  nc:close()
  db:close()
end)

test.case("server errors keep the connection: duplicate key, syntax, LOAD DATA LOCAL refused", function()
  local db = mh.connect(mh.server())
  fresh_table(db, "dup", "(id INT PRIMARY KEY)")
  assert(db:execute("INSERT INTO dup VALUES (?)", 1))
  local r, err = db:execute("INSERT INTO dup VALUES (?)", 1)
  test.eq(r, nil)
  test.eq(err.name, "EMYSQL")
  test.eq(err.errno, 1062)
  test.eq(err.sqlstate, "23000")
  test.match(err.message, "Duplicate entry '1'")
  test.match(tostring(err), "^EMYSQL: Duplicate entry")
  r, err = db:query("SELEC 1")
  test.eq(err.errno, 1064)
  test.eq(err.sqlstate, "42000")
  r, err = db:prepare("SELECT * FROM nowhere WHERE x = ?")
  test.eq(err.errno, 1146)
  local path = test.tmpdir() .. "/secret.txt"
  test.write(path, "1\n2\n")
  r, err = db:query("LOAD DATA LOCAL INFILE '" .. path .. "' INTO TABLE dup")
  test.eq(r, nil, "LOAD DATA LOCAL is refused")
  test.ok(err.errno, tostring(err))
  test.eq(assert(db:query("SELECT COUNT(*) AS n FROM dup"))[1].n, 1)
  test.ok(db:ping())
  db:close()
  test.eq(select(2, db:query("SELECT 1")).name, "ECANCELED")
end)

test.case("a connection killed during a query; a query killed", function()
  local srv = mh.server()
  local db = mh.connect(srv)
  local id = assert(db:query("SELECT CONNECTION_ID() AS id"))[1].id
  local t = task.spawn(function() return db:query("SELECT SLEEP(20)") end)
  mh.wait_running(srv, id, "SELECT SLEEP")
  assert(srv.root:query("KILL QUERY " .. id))
  local _, r, err = t:join()
  test.eq(r, nil, "a killed query ends with an error")
  test.eq(err.errno, 1317)
  test.eq(assert(db:query("SELECT 5 AS five"))[1].five, 5, "usable after KILL QUERY")
  t = task.spawn(function() return db:query("SELECT SLEEP(20)") end)
  mh.wait_running(srv, id, "SELECT SLEEP")
  local started = task.now()
  assert(srv.root:query("KILL " .. id))
  local _, r2, err2 = t:join()
  test.eq(r2, nil)
  test.ok(err2, "an error")
  test.ok(task.now() - started < 5000, "at once")
  local again, err3 = db:query("SELECT 1")
  test.eq(again, nil)
  test.ok(err3.name ~= nil, tostring(err3))
  test.eq(db:state(), false)
end)

-- --- timeouts and TLS ---------------------------------------------------------------------------

test.case("timeouts: a slow response, a connect to a full backlog", function()
  local helpers = require "tests.helpers"
  local db = mh.connect(mh.server(), { timeout = 300 })
  local started = task.now()
  local r, err = db:query("SELECT SLEEP(3)")
  test.eq(r, nil)
  test.eq(err.name, "ETIMEDOUT")
  test.ok(task.now() - started < 2500, "within the timeout")
  test.eq(db:state(), false, "the connection is dropped")
  local port = helpers.full_backlog()
  started = task.now()
  local c, cerr = mysql.connect({ port = port, user = "x", connect_timeout = 300 })
  test.eq(c, nil)
  test.eq(cerr.name, "ETIMEDOUT")
  test.ok(task.now() - started < 2500)
end)

test.case("TLS: verified against the test CA; a user that requires it; a failed verification", function()
  local srv = mh.server()
  local ca = mh.certs().ca
  local db = mh.connect(srv, { tls = { ca = ca } })
  local st = assert(db:query("SHOW SESSION STATUS LIKE 'Ssl_version'"))
  test.match(st[1].Value, "^TLSv1%.[23]$")
  test.eq(#assert(db:execute("SELECT REPEAT('z', ?) AS z", 100000))[1].z, 100000)
  db:close()
  local plain, err = mysql.connect({ port = srv.port, user = "tlsonly", password = "tls-pw" })
  test.eq(plain, nil)
  test.eq(err.errno, 1045)
  local sec = assert(mysql.connect({ port = srv.port, user = "tlsonly", password = "tls-pw", tls = { ca = ca } }))
  test.eq(assert(sec:query("SELECT CURRENT_USER() AS u"))[1].u, "tlsonly@%")
  sec:close()
  local unverified, verr = mysql.connect({ port = srv.port, user = "native", password = "native-pw", host = "127.0.0.1",
    tls = true })
  test.eq(unverified, nil, "the test CA is not trusted by default")
  test.ok(verr, "an error")
end)
