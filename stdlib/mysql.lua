-- mysql: a MySQL/MariaDB client on the connection core (runtime/proto/mysql/), with pools
-- (on stdlib/pool.lua).
--
--   local mysql = require "mysql"
--   local db = assert(mysql.connect{ user = "app", password = "...", database = "shop" })
--   local rows = assert(db:query("SELECT id, name FROM users"))   -- rows[1].name
--   local user = assert(db:execute("SELECT * FROM users WHERE id = ?", 42))[1]
--
-- The handshake (capabilities, TLS, the authentication plugins) runs here over a Lua socket;
-- then the socket's connection becomes the C protocol, which encodes commands into the
-- output queue and builds typed rows in C. Several tasks may share a connection: their
-- commands are pipelined and answered in order; a transaction keeps it to its task.
local C = require "luaio.mysql"
local tcp = require "tcp"
local pool = require "pool"
local options = require "luaio.options"
local E = require "luaio.error"
local sched = require "luaio.task"

local bit = require "bit"
local band, bor = bit.band, bit.bor
local type, error, pcall, pairs, setmetatable, tostring, select, next = type, error, pcall, pairs, setmetatable, tostring, select, next
local getmetatable, newproxy = getmetatable, newproxy
local byte, char, sub, find, gsub = string.byte, string.char, string.sub, string.find, string.gsub
local concat, floor = table.concat, math.floor

local mysql = { null = C.null }

-- Capability flags.
local LONG_PASSWORD, FOUND_ROWS, LONG_FLAG, CONNECT_WITH_DB = 1, 2, 4, 8
local PROTOCOL_41, SSL, TRANSACTIONS, SECURE_CONNECTION = 512, 2048, 8192, 32768
local MULTI_STATEMENTS, MULTI_RESULTS, PS_MULTI_RESULTS = 65536, 131072, 262144
local PLUGIN_AUTH, PLUGIN_AUTH_LENENC, DEPRECATE_EOF = 524288, 2097152, 16777216

local COM_PING, COM_INIT_DB, COM_RESET_CONNECTION = 0x0e, 0x02, 0x1f

-- Collation ids for the handshake's character set; any other name is set with SET NAMES.
local CHARSETS = { utf8mb4 = 45, utf8mb3 = 33, utf8 = 33, latin1 = 8, binary = 63, ascii = 11 }

local CONNECT = {
  host = { "string" },
  port = { "integer", min = 1, max = 65535 },
  path = { "string" }, -- a Unix socket
  user = { "string" },
  password = { "string" },
  database = { "string" },
  charset = { "string" },
  timeout = { "ms" }, -- silence while a response is due before the connection is dropped
  connect_timeout = { "ms" },
  tls = { { "table", "boolean" } }, -- true, or the tls module's client options
  rsa_public_key = { "string" }, -- PEM: caching_sha2/sha256 full authentication without TLS
  multi_statements = { "boolean" },
  found_rows = { "boolean" }, -- affected_rows counts matched rows, not changed ones
  arrays = { "boolean" }, -- rows as arrays instead of tables keyed by column name
  max_packet_size = { "integer", min = 1024, max = 0x7fffff00 },
  statement_cache = { "integer", min = 0, max = 16382 },
}

-- --- little-endian fields -------------------------------------------------------------------
-- The handshake reads bytes a server chose: every reader gives nil past the end.

local function le(n, bytes)
  local t = {}
  for i = 1, bytes do
    t[i] = n % 256
    n = floor(n / 256)
  end
  return char(unpack(t))
end

local function u16(s, i)
  local a, b = byte(s, i, i + 1)
  if not b then return nil end
  return a + b * 256
end

local function u32(s, i)
  local a, b, c, d = byte(s, i, i + 3)
  if not d then return nil end
  return a + b * 256 + c * 65536 + d * 16777216
end

local function lenenc(n)
  if n < 251 then return char(n) end
  if n < 65536 then return "\252" .. le(n, 2) end
  if n < 16777216 then return "\253" .. le(n, 3) end
  return "\254" .. le(n, 8)
end

local function read_lenenc(s, i)
  local b = byte(s, i)
  if not b then return nil, i end
  if b < 251 then return b, i + 1 end
  local n = (b == 252 and 2) or (b == 253 and 3) or (b == 254 and 8) or nil
  if not n or #s < i + n then return nil, i + 1 end
  local v, m = 0, 1
  for k = 1, n do
    v, m = v + byte(s, i + k) * m, m * 256
  end
  return v, i + 1 + n
end

-- A NUL-terminated string at i: the string and the index after its NUL.
local function cstring(s, i)
  local j = find(s, "\0", i, true)
  if not j then return sub(s, i), #s + 1 end
  return sub(s, i, j - 1), j + 1
end

-- --- errors -----------------------------------------------------------------------------------

local function proto_error(message) return E.new("EPROTO", message) end

-- An ERR packet as {name = "EMYSQL", message, errno, sqlstate}.
local function server_error(p)
  if #p < 3 then return E.new("EPROTO", "short error packet") end
  local code, state, message = u16(p, 2), "HY000", sub(p, 4)
  if sub(p, 4, 4) == "#" then state, message = sub(p, 5, 9), sub(p, 10) end
  local err = E.new("EMYSQL", message)
  err.errno, err.sqlstate = code, state
  return err
end

-- --- packets over the socket (the handshake only) ------------------------------------------------

local function read_packet(sock)
  local h, err = sock:read(4)
  if not h then return nil, err end
  local len = u16(h, 1) + byte(h, 3) * 65536
  local p = ""
  if len > 0 then
    p, err = sock:read(len)
    if not p then return nil, err end
  end
  return p, byte(h, 4)
end

local function write_packet(sock, payload, seq)
  return sock:write({ le(#payload, 3) .. char(seq % 256), payload })
end

-- --- authentication ---------------------------------------------------------------------------

-- The response to `plugin`'s challenge, or nil, err for a plugin this client does not speak.
local function auth_response(plugin, o, nonce, secure)
  local pw = o.password or ""
  if plugin == "mysql_native_password" then return C.native(pw, nonce) end
  if plugin == "caching_sha2_password" then return C.sha256(pw, nonce) end
  if plugin == "client_ed25519" then return C.ed25519(pw, nonce) end
  if plugin == "sha256_password" then
    if pw == "" then return "\0" end
    if secure then return pw .. "\0" end
    if o.rsa_public_key then
      if nonce == "" then return nil, proto_error("no nonce") end
      local cipher, err = C.rsa_encrypt(o.rsa_public_key, pw, nonce)
      if not cipher then return nil, proto_error(err) end
      return cipher
    end
    return "\1" -- asks for the server's public key
  end
  return nil, E.new("ENOTSUP", "authentication plugin '" .. tostring(plugin) .. "' is not supported")
end

-- caching_sha2_password / sha256_password after the scramble: the server wants the password
-- itself (code 4, or a public key it sent): in clear over TLS or a Unix socket, else
-- encrypted with its RSA key (given as rsa_public_key, or asked for).
local function full_auth(sock, o, nonce, secure, seq, data)
  local pw = o.password or ""
  if secure then return write_packet(sock, pw .. "\0", seq) end
  local key = o.rsa_public_key
  if not key and data and find(data, "BEGIN PUBLIC KEY", 1, true) then key = data end
  if not key then
    local ok, err = write_packet(sock, "\2", seq)
    if not ok then return nil, err end
    local p, s = read_packet(sock)
    if not p then return nil, s end
    if byte(p, 1) ~= 1 then return nil, byte(p, 1) == 0xff and server_error(p) or proto_error("no public key") end
    key, seq = sub(p, 2), s + 1
  end
  if nonce == "" then return nil, proto_error("no nonce") end
  local cipher, err = C.rsa_encrypt(key, pw, nonce)
  if not cipher then return nil, proto_error(err) end
  return write_packet(sock, cipher, seq)
end

-- The authentication exchange after the handshake response: OK, or a switch of plugin,
-- more data, an error. Returns the OK packet.
local function authenticate(sock, o, plugin, nonce, secure)
  while true do
    local p, seq = read_packet(sock)
    if not p then return nil, seq end
    local kind = byte(p, 1)
    if kind == 0x00 then return p end
    if kind == 0xff then return nil, server_error(p) end
    local ok, err
    if kind == 0xfe then -- switch to another plugin
      if #p == 1 then return nil, E.new("ENOTSUP", "old password authentication is not supported") end
      local i
      plugin, i = cstring(p, 2)
      nonce = sub(p, i)
      -- The 20-byte scrambles come with a NUL after them; client_ed25519's 32 bytes do not,
      -- and may end in a zero byte of their own (1 in 256).
      if #nonce == 21 and byte(nonce, -1) == 0 then nonce = sub(nonce, 1, 20) end
      local resp, rerr = auth_response(plugin, o, nonce, secure)
      if not resp then return nil, rerr end
      ok, err = write_packet(sock, resp, seq + 1)
    elseif kind == 0x01 then -- more data for the plugin
      local data = sub(p, 2)
      if plugin == "caching_sha2_password" and data == "\3" then
        ok = true -- the fast path succeeded: the OK follows
      elseif (plugin == "caching_sha2_password" and data == "\4") or plugin == "sha256_password" then
        ok, err = full_auth(sock, o, nonce, secure, seq + 1, data)
      else
        return nil, proto_error("unexpected authentication data for " .. tostring(plugin))
      end
    else
      return nil, proto_error("unexpected packet during authentication")
    end
    if not ok then return nil, err end
  end
end

-- The server's first packet (Handshake V10): the version, NUL; connection id (4), nonce (8),
-- filler (1), capabilities (2), charset (1), status (2), capabilities (2), nonce length (1),
-- reserved (10); the nonce's rest; the plugin's name.
local function parse_handshake(p)
  local version = byte(p, 1)
  if version == nil then return nil, proto_error("empty handshake") end
  if version == 0xff then return nil, server_error(p) end
  if version ~= 10 then return nil, proto_error("unsupported protocol version " .. tostring(version)) end
  local h = {}
  local nul = find(p, "\0", 2, true)
  if not nul or #p < nul + 31 then return nil, proto_error("short handshake") end
  h.version = sub(p, 2, nul - 1)
  local i = nul + 1
  h.id = u32(p, i)
  local nonce = sub(p, i + 4, i + 11)
  i = i + 13
  local caps = u16(p, i) + u16(p, i + 5) * 65536
  h.charset, h.status = byte(p, i + 2), u16(p, i + 3)
  local alen = byte(p, i + 7)
  i = i + 18
  if band(caps, SECURE_CONNECTION) ~= 0 then
    local n = math.max(13, alen - 8)
    if #p < i + n - 1 then return nil, proto_error("short handshake") end
    nonce = nonce .. sub(p, i, i + n - 1)
    i = i + n
    if byte(nonce, -1) == 0 then nonce = sub(nonce, 1, -2) end
  end
  h.caps, h.nonce = caps, nonce
  h.plugin = band(caps, PLUGIN_AUTH) ~= 0 and cstring(p, i) or "mysql_native_password"
  return h
end

-- The handshake over a connected socket: TLS when asked, authentication. Returns the
-- negotiated capabilities and the OK packet.
local function handshake(sock, o)
  local p, err = read_packet(sock)
  if not p then return nil, err end
  local h, herr = parse_handshake(p)
  if not h then return nil, herr end
  local charset = CHARSETS[o.charset] or 45
  local want = bor(LONG_PASSWORD, LONG_FLAG, PROTOCOL_41, TRANSACTIONS, SECURE_CONNECTION, MULTI_RESULTS,
    PS_MULTI_RESULTS, PLUGIN_AUTH, PLUGIN_AUTH_LENENC, DEPRECATE_EOF)
  if o.database then want = bor(want, CONNECT_WITH_DB) end
  if o.multi_statements then want = bor(want, MULTI_STATEMENTS) end
  if o.found_rows then want = bor(want, FOUND_ROWS) end
  local seq = 1
  local secure = o.path ~= nil
  if o.tls then
    if band(h.caps, SSL) == 0 then return nil, E.new("ENOTSUP", "the server does not support TLS") end
    want = bor(want, SSL)
  end
  local caps = band(want, h.caps)
  if band(caps, PROTOCOL_41) == 0 then return nil, E.new("ENOTSUP", "server too old (no protocol 4.1)") end
  local head = le(caps, 4) .. le(16777216, 4) .. char(charset) .. string.rep("\0", 23)
  if o.tls then
    local ok, werr = write_packet(sock, head, seq)
    if not ok then return nil, werr end
    seq = seq + 1
    local topts = {}
    if type(o.tls) == "table" then for k, v in pairs(o.tls) do topts[k] = v end end
    if topts.servername == nil then topts.servername = o.host or (o.path and "localhost" or "127.0.0.1") end
    local tok, terr = sock:starttls(topts)
    if not tok then return nil, terr end
    secure = true
  end
  local resp, rerr = auth_response(h.plugin, o, h.nonce, secure)
  if not resp then -- an unknown first plugin: answer as native, the server may switch
    resp, h.plugin = C.native(o.password or "", h.nonce), "mysql_native_password"
  end
  local auth = band(caps, PLUGIN_AUTH_LENENC) ~= 0 and lenenc(#resp) .. resp or char(#resp) .. resp
  local body = { head, (o.user or "root") .. "\0", auth }
  if o.database then body[#body + 1] = o.database .. "\0" end
  if band(caps, PLUGIN_AUTH) ~= 0 then body[#body + 1] = h.plugin .. "\0" end
  local ok, werr = write_packet(sock, concat(body), seq)
  if not ok then return nil, werr end
  local okp, aerr = authenticate(sock, o, h.plugin, h.nonce, secure)
  if not okp then return nil, aerr end
  local affected, i = read_lenenc(okp, 2)
  local insert_id
  insert_id, i = read_lenenc(okp, i)
  local status = affected and insert_id and #okp >= i + 3 and u16(okp, i)
  if not status then return nil, proto_error("short OK packet") end
  return caps, status, h
end

-- --- rows of long results -------------------------------------------------------------------------

-- The C half parses a long result's rows (either protocol) into cells (mcell in mysql.c) and has them
-- built here, by a function generated once for its column names: a table constructor with
-- the names as constant keys is a copy of a template table for LuaJIT, where the C API
-- inserts every key into every row. The values are those C would push: numbers, strings,
-- mysql.null.
local ffi = require "ffi"
local cells_t = ffi.typeof("const struct { double num; int32_t off, len; } *")
local bytes_t = ffi.typeof("const char *")

local FILL = [[
local cast, cells_t, bytes_t, str, null = ...
local function value(c, b)
  local n = c.len
  if n >= 0 then return str(b + c.off, n) end
  if n == -1 then return null end
  return c.num
end
return function(rows, n, cells, sbuf, count)
  local c, b = cast(cells_t, cells), cast(bytes_t, sbuf)
  for _ = 1, count do
    n = n + 1
    rows[n] = %s
    c = c + %d
  end
end]]

local fills, nfills = {}, 0

local function fill_for(arrays, ...)
  local names = { ... }
  local key = { arrays and "a" or "k" }
  for i = 1, #names do key[i + 1] = #names[i] .. ":" .. names[i] end
  key = concat(key)
  local fn = fills[key]
  if fn then return fn end
  local fields = {}
  for i = 1, #names do
    fields[i] = (arrays and "" or "[" .. ("%q"):format(names[i]) .. "] = ") .. "value(c[" .. (i - 1) .. "], b)"
  end
  fn = assert(load(FILL:format("{ " .. concat(fields, ", ") .. " }", #names), "=mysql rows"))(ffi.cast,
    cells_t, bytes_t, ffi.string, C.null)
  if nfills >= 256 then fills, nfills = {}, 0 end -- a bound, not an LRU: column sets are few
  fills[key], nfills = fn, nfills + 1
  return fn
end
C.rowgen(fill_for)

-- --- connections --------------------------------------------------------------------------------

local Conn = {}
Conn.__index = Conn

local function check(self, fname)
  local u = self.u
  if u == nil then error("bad argument #1 to '" .. fname .. "' (mysql connection released to its pool)", 3) end
  return u, self.r
end

-- A transaction keeps the connection to its task: others wait for their turn. A command
-- must be sent with no yield between its wait_turn and its send: a transaction that begins
-- in between would take it in.
local function wait_turn(r)
  local me = sched.current()
  while r.owner and r.owner ~= me do
    local q = r.queue
    q[#q + 1] = sched.waiter("mysql") -- raises, listing nothing, where it cannot wait
    sched.suspend()
  end
end

local function release_turn(r)
  r.owner = nil
  local q = r.queue
  r.queue = {}
  for i = 1, #q do sched.wake(q[i], true) end
end

-- db:query(sql[, {arrays = true}]) -> rows (rows.columns) | {affected_rows, insert_id,
-- warnings, info} | nil, err. More result sets: result.next.
function Conn:query(sql, opts)
  local u, r = check(self, "query")
  if type(sql) ~= "string" then error("bad argument #1 to 'query' (string expected, got " .. type(sql) .. ")", 2) end
  local arrays = r.arrays
  if opts ~= nil then
    if type(opts) ~= "table" then error("bad argument #2 to 'query' (table expected, got " .. type(opts) .. ")", 2) end
    if opts.arrays ~= nil then arrays = opts.arrays end
  end
  if r.owner then wait_turn(r) end
  local res, err = C.query(u, sql, arrays)
  return res, err
end

local Stmt = {}
Stmt.__index = Stmt

-- db:prepare(sql) -> statement | nil, err. stmt:execute(...), stmt:close(); stmt.params and
-- stmt.columns count what it takes and gives.
function Conn:prepare(sql)
  local u, r = check(self, "prepare")
  if type(sql) ~= "string" then error("bad argument #1 to 'prepare' (string expected, got " .. type(sql) .. ")", 2) end
  if r.owner then wait_turn(r) end
  local st, err = C.prepare(u, sql)
  if not st then return nil, err end
  local params, columns = C.stmt_info(st)
  return setmetatable({ st = st, conn = self, params = params, columns = columns }, Stmt)
end

-- C.execute's report of a misuse (false, place, message), raised at the caller of the method
-- that called this; first: the caller's number for the first parameter.
local function misuse(place, message, first)
  if place == 0 then error(message, 3) end
  error(("bad argument #%d to 'execute' (%s)"):format(first + place - 1, message), 3)
end

function Stmt:execute(...)
  local u, r = check(self.conn, "execute")
  if r.owner then wait_turn(r) end
  local res, err, message = C.execute(u, self.st, r.arrays, ...)
  if res == false then misuse(err, message, 1) end
  return res, err
end

function Stmt:close()
  C.close_stmt(self.st)
end

-- The cached statement for sql (prepared on first use). The cache holds at most
-- statement_cache statements; one more closes an old one (its close is queued after any
-- execute already sent, so the server finishes that first).
local function cached(u, r, sql)
  local st = r.stmts[sql]
  if st then return st end
  local err
  st, err = C.prepare(u, sql)
  if not st then return nil, err end
  local have = r.stmts[sql]
  if have then -- another task prepared it meanwhile
    C.close_stmt(st)
    return have
  end
  if r.cache_max > 0 and r.nstmts >= r.cache_max then
    local old, ost = next(r.stmts)
    r.stmts[old] = nil
    r.nstmts = r.nstmts - 1
    C.close_stmt(ost)
  end
  if r.cache_max > 0 then
    r.stmts[sql] = st
    r.nstmts = r.nstmts + 1
  end
  return st
end

-- db:execute(sql, ...) -> as query, through a server-side prepared statement cached by sql.
function Conn:execute(sql, ...)
  local u, r = check(self, "execute")
  if type(sql) ~= "string" then error("bad argument #1 to 'execute' (string expected, got " .. type(sql) .. ")", 2) end
  local me, st, err = sched.current(), nil, nil
  repeat -- the PREPARE yields: whose turn it is is asked again after it
    if r.owner then wait_turn(r) end
    if st and r.cache_max == 0 then C.close_stmt(st) end
    st, err = cached(u, r, sql)
    if not st then return nil, err end
  until r.owner == nil or r.owner == me
  local res, xerr, message = C.execute(u, st, r.arrays, ...)
  if r.cache_max == 0 then C.close_stmt(st) end
  if res == false then misuse(xerr, message, 2) end
  return res, xerr
end

-- db:ping() -> true | nil, err
function Conn:ping()
  local u, r = check(self, "ping")
  if r.owner then wait_turn(r) end
  local ok, err = C.command(u, COM_PING)
  return ok and true, err
end

-- db:select_db(name) -> true | nil, err
function Conn:select_db(name)
  local u, r = check(self, "select_db")
  if type(name) ~= "string" then error("bad argument #1 to 'select_db' (string expected, got " .. type(name) .. ")", 2) end
  if r.owner then wait_turn(r) end
  local ok, err = C.command(u, COM_INIT_DB, name)
  return ok and true, err
end

local function finish_transaction(self, u, r, ok, ...)
  local sql = ok and "COMMIT" or "ROLLBACK"
  local res, err = C.query(u, sql)
  release_turn(r)
  if not ok then return nil, (...) end
  if not res then return nil, err end
  return ...
end

-- db:transaction(fn) -> fn's results once committed | nil, err. BEGIN, fn(db), COMMIT; when
-- fn raises, ROLLBACK and nil with what it raised. Other tasks' commands on this connection
-- wait until it ends.
function Conn:transaction(fn)
  local u, r = check(self, "transaction")
  if type(fn) ~= "function" then error("bad argument #1 to 'transaction' (function expected, got " .. type(fn) .. ")", 2) end
  if r.owner == sched.current() then error("transaction: already in a transaction (they do not nest)", 2) end
  if r.owner then wait_turn(r) end
  r.owner = sched.current()
  local ok, err = C.query(u, "BEGIN")
  if not ok then
    release_turn(r)
    return nil, err
  end
  return finish_transaction(self, u, r, pcall(fn, self))
end

-- db:close(): waiting commands get ECANCELED; the connection ends after COM_QUIT.
function Conn:close()
  if self.u then C.close(self.u) end
end

-- db:state() -> open, reusable, in_transaction, autocommit
function Conn:state()
  if not self.u then return false, false, false, false end
  return C.state(self.u)
end

Conn.__tostring = function(self) return self.u and tostring(self.u) or "mysql connection (released)" end

-- --- connecting ----------------------------------------------------------------------------------

local function config(given, fname, spec)
  if type(given) ~= "table" then
    error(("bad argument #1 to '%s' (table expected, got %s)"):format(fname, type(given)), 3)
  end
  local o = options.check(given, spec, 1, fname, 3)
  o.port = o.port or 3306
  o.charset = o.charset or "utf8mb4"
  o.timeout = o.timeout or 0
  o.connect_timeout = o.connect_timeout or (o.timeout > 0 and o.timeout or 10000)
  if o.tls == false then o.tls = nil end
  return o
end

local function open(o)
  local sopts = { timeout = o.connect_timeout }
  local sock, err
  if o.path then
    sock, err = tcp.connect(o.path, sopts)
  else
    sock, err = tcp.connect(o.port, o.host or "127.0.0.1", sopts)
  end
  if not sock then return nil, err end
  local caps, status = handshake(sock, o)
  if not caps then
    sock:close()
    return nil, status
  end
  local u = C.attach(sock, { timeout = o.timeout, max_packet = o.max_packet_size,
    deprecate_eof = band(caps, DEPRECATE_EOF) ~= 0, status = status })
  if not u then return nil, E.new("ENOTCONN") end
  local r = { stmts = {}, nstmts = 0, cache_max = o.statement_cache or 256, arrays = o.arrays or false, queue = {} }
  local db = setmetatable({ u = u, r = r }, Conn)
  if not CHARSETS[o.charset] then
    local ok, serr = C.query(u, "SET NAMES " .. mysql.quote(o.charset))
    if not ok then
      C.close(u)
      return nil, serr
    end
  end
  return db
end

-- mysql.connect(options) -> connection | nil, err
function mysql.connect(given)
  return open(config(given, "connect", CONNECT))
end

-- mysql.quote(s) -> s as a single-quoted SQL literal (for the rare statement that cannot take
-- parameters; wrong with the NO_BACKSLASH_ESCAPES SQL mode).
local ESCAPES = { ["\0"] = "\\0", ["\n"] = "\\n", ["\r"] = "\\r", ["\\"] = "\\\\", ["'"] = "\\'",
  ['"'] = '\\"', ["\26"] = "\\Z" }
function mysql.quote(s)
  if type(s) ~= "string" then error("bad argument #1 to 'quote' (string expected, got " .. type(s) .. ")", 2) end
  return "'" .. gsub(s, "[%z\n\r\\'\"\26]", ESCAPES) .. "'"
end

-- --- pools ---------------------------------------------------------------------------------------

local POOL = pool.user_options(CONNECT)

local Pool = {}
Pool.__index = Pool

-- A pooled connection is reusable when open, idle, not in a transaction, autocommit on,
-- nothing unread.
local function reusable(db)
  local _, ok = C.state(db.u)
  return ok and db.r.owner == nil
end

-- A pool's connection: autocommit on, even when the server's default is off (a pooled
-- statement is its own transaction: nobody would commit it).
local function open_pooled(o)
  local db, err = open(o)
  if not db then return nil, err end
  local _, _, _, autocommit = C.state(db.u)
  if not autocommit then
    local ok, serr = C.query(db.u, "SET autocommit = 1")
    if not ok then
      db:close()
      return nil, serr
    end
  end
  return db
end

-- mysql.pool(options) -> a pool of connections to one server: connect's options, and size,
-- max_idle, idle_timeout, max_waiters, wait_timeout.
function mysql.pool(given)
  local o = config(given, "pool", POOL)
  local p = pool.new(pool.settings(o, 10, {
    connect = function() return open_pooled(o) end,
    alive = reusable,
    close = function(db) db:close() end,
  }))
  return setmetatable({ pool = p }, Pool)
end

-- Borrowed connections: the object handed out -> {pool, inner (the one the pool keeps),
-- guard}. One dropped without release() gives its place back when collected, through its
-- guard: closed, since nobody knows what state it was left in.
local borrowed = setmetatable({}, { __mode = "k" })

local function guard(p, inner)
  local g = newproxy(true)
  getmetatable(g).__gc = function() p:release(inner, false) end
  return g
end

-- pool:get() -> connection | nil, err: yours until conn:release().
function Pool:get()
  local inner, err = self.pool:acquire()
  if not inner then return nil, err end
  local db = setmetatable({ u = inner.u, r = inner.r }, Conn)
  borrowed[db] = { pool = self.pool, inner = inner, guard = guard(self.pool, inner) }
  return db
end

-- conn:release(): back to its pool, or closed when it is not fit for the next user (broken,
-- in a transaction, a command still waiting). The object is dead afterwards.
function Conn:release()
  local b = borrowed[self]
  if not b then error("bad argument #1 to 'release' (a connection from pool:get() expected)", 2) end
  borrowed[self] = nil
  getmetatable(b.guard).__gc = nil
  self.u, self.r = nil, nil
  b.pool:release(b.inner, reusable(b.inner))
end

-- A one-shot call (query, execute) that leaves a transaction open or autocommit off: the
-- connection is closed (the server rolls back) and the call fails, so that no statement is
-- acknowledged and then lost.
local function left_open(fname, in_trans)
  return E.new("EINVAL", ("pool:%s left %s: rolled back and the connection closed (use pool:transaction, " ..
    "or pool:get for session state)"):format(fname, in_trans and "a transaction open" or "autocommit off"))
end

-- Raises again, for with, what a method raised: a misuse raised inside pcall has no
-- position, and gets that of the pool method's caller: level 3, since Pool:query... call
-- with, and with calls done (which calls this), as tail calls.
local function raise_here(e)
  if type(e) == "string" and not find(e, "^[%w_%./%-]+:%d+: ") then error(e, 3) end
  error(e, 0)
end

local function with(self, fname, ...)
  local db, err = self.pool:acquire()
  if not db then return nil, err end
  local function done(ok, ...)
    local open, _, in_trans, autocommit = C.state(db.u)
    self.pool:release(db, reusable(db))
    if not ok then raise_here((...)) end
    if open and (in_trans or not autocommit) and fname ~= "transaction" and (...) ~= nil then
      return nil, left_open(fname, in_trans)
    end
    return ...
  end
  return done(pcall(Conn[fname], db, ...))
end

-- pool:query(sql[, opts]), pool:execute(sql, ...), pool:transaction(fn): borrow, run, give back.
function Pool:query(...) return with(self, "query", ...) end
function Pool:execute(...) return with(self, "execute", ...) end
function Pool:transaction(...) return with(self, "transaction", ...) end

-- pool:stats() -> {idle, busy, waiting}
function Pool:stats() return self.pool:stats("") end

-- pool:close(): idle connections close, waiters fail with ECANCELED.
function Pool:close() self.pool:close() end

return mysql
