-- redis: a Redis client on the connection core (runtime/proto/redis/redis.c), with pools
-- (on stdlib/pool.lua) and Redis Cluster (stdlib/redis/cluster.lua).
--
--   local redis = require "redis"
--   local r = assert(redis.connect("redis://127.0.0.1:6379/0"))
--   r:set("k", "v")
--   print(r:get("k"))                       --> v
--   local replies = r:pipeline(function(p) p:incr("n") p:get("n") end)
--
-- Every Redis command is a method (r:hset(k, f, v), r:eval(...)), plus r:call(name, ...).
-- A command returns its reply; an error reply returns nil and the server's message (a
-- string: the connection stays usable); a broken connection returns nil and an error table
-- {code, name, message}. Many tasks may share one client: what they send during one loop
-- turn leaves in one write, and the replies come back in order (automatic pipelining).
local C = require "luaio.redis"
local tcp = require "tcp"
local pool = require "pool"
local options = require "luaio.options"
local E = require "luaio.error"

local type, tonumber, error, pcall, pairs, setmetatable, getmetatable, unpack, newproxy =
  type, tonumber, error, pcall, pairs, setmetatable, getmetatable, unpack, newproxy
local char = string.char

local redis = { null = C.null }

local methods = C.methods -- the client's methods: C ones (commands, call, close, subscribe...)
local pipe_methods = C.pipe_methods

-- Any other name is a Redis command: its method is made once, on first use.
local function command_index(make)
  return function(t, name)
    if type(name) ~= "string" or not name:match("^[%a][%w_]*$") then return nil end
    local f = make(name)
    rawset(t, name, f)
    return f
  end
end
setmetatable(methods, { __index = command_index(C.method) })
setmetatable(pipe_methods, { __index = command_index(C.pipe_method) })

-- --- options ------------------------------------------------------------------------------

local CONNECT = {
  url = { "string" },
  host = { "cstring" },
  port = { "integer", min = 1, max = 65535 },
  path = { "cstring" }, -- a Unix socket
  family = { "integer", values = { 4, 6 } },
  username = { "string" },
  password = { "string" },
  db = { "integer", min = 0, max = 2147483647 },
  protocol = { "integer", values = { 2, 3 } },
  name = { "string" }, -- CLIENT SETNAME
  timeout = { "ms" }, -- silence while replies are due before the connection is dropped
  connect_timeout = { "ms" },
  tls = { { "table", "boolean" } }, -- true, or the tls module's client options
  max_pushes = { "integer", min = 1, max = 1073741824 },
}
redis.CONNECT_OPTIONS = CONNECT

-- Raises "bad argument #argn to 'fname' (message)" at `level` (error's numbering, from the
-- function that calls argerror).
local function argerror(argn, fname, message, level)
  error(("bad argument #%d to '%s' (%s)"):format(argn, fname, message), level + 1)
end

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

-- redis://[user[:password]@]host[:port][/db][?option=value&...], rediss:// (TLS),
-- unix://[user[:password]@]/path/to/socket[?db=N&...] (also redis+unix://). Errors are
-- raised at `level` (counted from parse_url's caller).
local function parse_url(url, argn, fname, level)
  level = level + 1
  local scheme, rest = url:match("^([%w+]+)://(.*)$")
  scheme = scheme and scheme:lower()
  if scheme ~= "redis" and scheme ~= "rediss" and scheme ~= "unix" and scheme ~= "redis+unix" then
    argerror(argn, fname, "redis://, rediss:// or unix:// URL expected, got '" .. url .. "'", level)
  end
  local o = {}
  local query
  rest, query = rest:match("^([^?#]*)%??([^#]*)")
  local userinfo, hostpart
  if scheme == "unix" or scheme == "redis+unix" then
    userinfo, o.path = rest:match("^(.*)@(/.*)$")
    if not userinfo then o.path = rest end
    if o.path == "" then argerror(argn, fname, "no socket path in '" .. url .. "'", level) end
    o.path = unescape(o.path)
  else
    local authority, path = rest:match("^([^/]*)(.*)$")
    userinfo, hostpart = authority:match("^(.*)@(.*)$")
    if not userinfo then hostpart = authority end
    local host, port = hostpart:match("^%[([^%]]*)%]:?(%d*)$")
    if not host then host, port = hostpart:match("^([^:]*):?(%d*)$") end
    if not host then argerror(argn, fname, "bad host in '" .. url .. "'", level) end
    if host ~= "" then o.host = unescape(host) end
    if port ~= "" then o.port = tonumber(port) end
    local db = path:match("^/(%d+)/?$")
    if db then
      o.db = tonumber(db)
    elseif path ~= "" and path ~= "/" then
      argerror(argn, fname, "bad database '" .. path .. "' in '" .. url .. "'", level)
    end
    if scheme == "rediss" then o.tls = true end
  end
  if userinfo then
    local user, pass = userinfo:match("^([^:]*):(.*)$")
    if user then
      if user ~= "" then o.username = unescape(user) end
      o.password = unescape(pass)
    elseif userinfo ~= "" then
      o.username = unescape(userinfo)
    end
  end
  for k, v in query:gmatch("([^&=]+)=?([^&]*)") do
    k, v = unescape(k), unescape(v)
    local rule = CONNECT[k]
    if not rule or k == "url" or k == "tls" then argerror(argn, fname, "unknown URL option '" .. k .. "'", level) end
    o[k] = (rule[1] == "string" or rule[1] == "cstring") and v or tonumber(v) or v
  end
  return o
end

-- The settings for a connection from a URL or an options table (plus more options),
-- checked against spec; the URL's fields give way to the options'. depth: the frames
-- between config's caller and the user's call (1: called by the API function itself).
local function config(target, given, fname, spec, depth)
  local merged, argn = {}, 1
  local function take(t) for k, v in pairs(t) do merged[k] = v end end
  if type(target) == "string" then
    if given ~= nil and type(given) ~= "table" then
      argerror(2, fname, "table expected, got " .. type(given), depth + 2)
    end
    take(parse_url(target, 1, fname, depth + 2))
    if given then take(given) argn = 2 end
  elseif type(target) == "table" then
    take(target)
    if type(merged.url) == "string" then
      local url = merged.url
      merged.url = nil
      for k, v in pairs(parse_url(url, 1, fname, depth + 2)) do
        if merged[k] == nil then merged[k] = v end
      end
    end
  else
    argerror(1, fname, "URL or options table expected, got " .. type(target), depth + 2)
  end
  local o = options.check(merged, spec, argn, fname, depth + 2)
  o.port = o.port or 6379
  o.db = o.db or 0
  o.protocol = o.protocol or 2
  o.timeout = o.timeout or 0
  o.connect_timeout = o.connect_timeout or (o.timeout > 0 and o.timeout or 10000)
  if o.tls == false then o.tls = nil end
  return o
end
redis._config = config

-- --- connecting ----------------------------------------------------------------------------

-- An error reply as an error table: "WRONGPASS invalid..." -> {name = "WRONGPASS", ...}.
local function server_error(message)
  local name, text = message:match("^(%u[%u%d_]*) (.*)$")
  return E.new(name or "ERR", text or message)
end
redis.server_error = server_error

local function handshake(r, o)
  local p = C.newpipeline()
  if o.protocol == 3 then
    if o.password then p:hello(3, "AUTH", o.username or "default", o.password) else p:hello(3) end
  elseif o.password then
    if o.username then p:auth(o.username, o.password) else p:auth(o.password) end
  end
  if o.db ~= 0 then p:select(o.db) end
  if o.name then p:client("SETNAME", o.name) end
  local replies, err = C.pipeline(r, p)
  if not replies then return nil, err end
  for i = 1, #replies do
    local v = replies[i]
    if type(v) == "table" and v.err then return nil, server_error(v.err) end
  end
  C.configure(r, o.protocol == 3)
  return true
end

-- Opens a connection with checked settings o. TLS is the connection core's: tcp.connect
-- returns a socket whose handshake is done, and the client speaks plaintext over it.
local function open(o)
  local sopts = { timeout = o.connect_timeout, family = o.family, tls = o.tls }
  local sock, err
  if o.path then
    sock, err = tcp.connect(o.path, sopts)
  else
    sock, err = tcp.connect(o.port, o.host or "127.0.0.1", sopts)
  end
  if not sock then return nil, err end
  local r = C.attach(sock, { timeout = o.timeout, max_pushes = o.max_pushes })
  if not r then return nil, E.new("ENOTCONN") end
  local ok, herr = handshake(r, o)
  if not ok then
    r:close()
    return nil, herr
  end
  return r
end
redis._open = open

-- redis.connect(url | options[, options]) -> client | nil, err
function redis.connect(target, given)
  local o = config(target, given, "connect", CONNECT, 1)
  return open(o)
end

-- --- the client's Lua methods ---------------------------------------------------------------

-- The pipeline fn records (for fname: "pipeline" or "transaction", which adds MULTI and
-- EXEC around it); the cluster client records its pipelines here too.
function redis._record(fn, fname)
  if type(fn) ~= "function" then
    error(("bad argument #1 to '%s' (function expected, got %s)"):format(fname, type(fn)), 3)
  end
  local p = C.newpipeline()
  if fname == "transaction" then p:multi() end
  fn(p)
  if fname == "transaction" then p:exec() end
  return p
end
local record = redis._record

-- A transaction's replies (MULTI's, QUEUED..., EXEC's) -> EXEC's reply, or nil and why it
-- failed: the first command the server refused while queueing says it better than
-- EXECABORT.
function redis._exec_result(replies, err)
  if not replies then return nil, err end
  local exec = replies[#replies]
  if type(exec) == "table" and exec.err then
    for i = 1, #replies - 1 do
      local v = replies[i]
      if type(v) == "table" and v.err then return nil, v.err end
    end
    return nil, exec.err
  end
  return exec
end
local exec_result = redis._exec_result

-- r:pipeline(fn) -> {replies...} | nil, err. fn(p) records commands (p:set(...), p:get(...));
-- they are sent together once it returns. Error replies are {err = message} in the list.
function methods:pipeline(fn)
  return C.pipeline(self, record(fn, "pipeline"))
end

-- r:transaction(fn) -> {results...} | redis.null (a WATCHed key changed) | nil, err.
-- MULTI, the commands fn records, EXEC, sent together: no other task's command can fall in
-- between, even on a shared client. A command the server refuses while queueing aborts the
-- transaction: nil and its message.
function methods:transaction(fn)
  return exec_result(C.pipeline(self, record(fn, "transaction")))
end

-- r:stream(sink, name, args...) -> length | reply | nil, err. Sends a command whose reply is
-- a (large) bulk string and hands it to sink(piece) piece by piece as it arrives, in the
-- calling task (sink may wait: write to a file, a socket). Memory stays at the input
-- buffer's size whatever the length. A reply of another kind is returned as is (null:
-- redis.null); sink is not called then. If sink raises, the rest is dropped and the error
-- raised again.
function methods:stream(sink, name, ...)
  if type(sink) ~= "function" then
    error("bad argument #1 to 'stream' (function expected, got " .. type(sink) .. ")", 2)
  end
  local kind, v = C.stream(self, name, ...)
  while kind == "piece" do
    local ok, err = pcall(sink, v)
    if not ok then
      C.stream_abort(self)
      error(err, 0)
    end
    kind, v = C.stream_next(self)
  end
  if kind == "done" or kind == "value" then return v end
  return nil, v
end

-- r:receive([timeout_ms]) -> kind, channel, message (pmessage: and the pattern) | kind, ...
-- for other pushes ("invalidate", keys) | nil, err (ETIMEDOUT: the client stays usable).
function methods:receive(timeout)
  if timeout ~= nil then options.ms(timeout, 1, "receive") end -- raised at the caller's line
  local m, err = C.receive(self, timeout)
  if not m then return nil, err end
  local kind = m[1]
  if kind == "pmessage" then return kind, m[3], m[4], m[2] end
  return unpack(m, 1, #m)
end

-- --- pools -------------------------------------------------------------------------------------

local POOL = pool.user_options(CONNECT)

local Pool = {}
Pool.__index = Pool

-- redis.pool(url | options[, options]) -> a pool of connections to one server.
function redis.pool(target, given)
  local o = config(target, given, "pool", POOL, 1)
  local p = pool.new(pool.settings(o, 16, {
    connect = function() return open(o) end,
    alive = function(r) local _, reusable = C.state(r) return reusable end,
    close = function(r) r:close() end,
  }))
  return setmetatable({ pool = p }, Pool)
end

-- Borrowed clients: the box handed out -> {pool, inner (the box the pool keeps), guard}.
-- A borrowed client that is dropped without release() is given back (closed) by its guard.
local borrowed = setmetatable({}, { __mode = "k" })

local function guard(p, inner)
  local g = newproxy(true)
  getmetatable(g).__gc = function() p:release(inner, false) end
  return g
end

-- pool:get() -> client | nil, err: a connection of your own until client:release().
function Pool:get()
  local inner, err = self.pool:acquire()
  if not inner then return nil, err end
  local user = C.rebox(inner)
  borrowed[user] = { pool = self.pool, inner = inner, guard = guard(self.pool, inner) }
  return user
end

-- client:release(): back to its pool, unless it is not fit for the next user (broken, in a
-- transaction, subscribed, with replies due, another database selected...): then closed.
-- The client object is dead afterwards (every method raises).
function methods:release()
  local b = borrowed[self]
  if not b then error("bad argument #1 to 'release' (a client from pool:get() expected)", 2) end
  borrowed[self] = nil
  getmetatable(b.guard).__gc = nil
  local _, reusable = C.state(self)
  C.rebox(self, b.inner)
  b.pool:release(b.inner, reusable)
end

-- Runs fn(client, ...) on a borrowed connection and gives it back, even if fn raises.
local function with(self, fn, ...)
  local r, err = self.pool:acquire()
  if not r then return nil, err end
  local function done(ok, ...)
    local _, reusable = C.state(r)
    self.pool:release(r, reusable)
    if not ok then error((...), 0) end
    return ...
  end
  return done(pcall(fn, r, ...))
end

-- pool:call(name, ...), pool:pipeline(fn), pool:transaction(fn): borrow, run, give back.
function Pool:call(name, ...) return with(self, methods.call, name, ...) end
function Pool:pipeline(fn) return with(self, methods.pipeline, fn) end
function Pool:transaction(fn) return with(self, methods.transaction, fn) end

-- pool:stats() -> {idle, busy, waiting}
function Pool:stats() return self.pool:stats("") end

-- pool:close(): idle connections close, waiters fail with ECANCELED.
function Pool:close() self.pool:close() end

-- --- cluster ------------------------------------------------------------------------------------

-- redis.cluster{seeds = {...}, ...} -> a cluster client (stdlib/redis/cluster.lua).
function redis.cluster(given)
  return require("redis.cluster").new(given)
end

-- redis.slot(key) -> the key's hash slot (CRC16 of the key or its {hash tag}, mod 16384).
redis.slot = C.slot

return redis
