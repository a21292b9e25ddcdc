-- session: server-side sessions behind a signed cookie, in Redis or in memory.
--
--   local session = require "session"
--   local sessions = session.new{ store = session.redis(redis_pool), secret = SECRET }
--   router:post("/login", function(req, res)
--     local s = assert(sessions:load(req, res))
--     ... check the password ...
--     s.data.user = name
--     assert(s:rotate())            -- a new id at login (no session fixation), saved
--   end)
--
-- The cookie holds only a random id (256 bits, HMAC-signed); the data (a table that
-- cjson can encode) lives in the store under that id, for `ttl` ms after its last use.
local cjson = require "cjson.safe"
local cookie = require "cookie"
local crypto = require "crypto"
local task = require "task"
local options = require "luaio.options"

local type, setmetatable, pairs, next = type, setmetatable, pairs, next

local session = {}

-- --- stores: get(id, ttl) -> text | nil (none) | nil, err; set(id, text, ttl) -> true | nil,
-- err; delete(id) -> true | nil, err. ttl in ms; get extends the entry's life to ttl.

local RedisStore = {}
RedisStore.__index = RedisStore

-- session.redis(client[, {prefix = "session:"}]) -> a store on a redis client, pool or
-- cluster (anything with call(name, ...)). Needs Redis 6.2 or later (GETEX).
function session.redis(client, opts)
  if type(client) ~= "table" and type(client) ~= "userdata" then
    error("bad argument #1 to 'redis' (redis client, pool or cluster expected)", 2)
  end
  local o = options.check(opts, { prefix = { "string", default = "session:" } }, 2, "redis")
  return setmetatable({ client = client, prefix = o.prefix }, RedisStore)
end

local function redis_result(v, err)
  if v == nil then return nil, type(err) == "string" and require("luaio.error").new("EREDIS", err) or err end
  return v
end

function RedisStore:get(id, ttl)
  local v, err = redis_result(self.client:call("GETEX", self.prefix .. id, "PX", ttl))
  if v == nil then return nil, err end
  if type(v) ~= "string" then return nil end -- redis.null: no such session
  return v
end

function RedisStore:set(id, text, ttl)
  local ok, err = redis_result(self.client:call("SET", self.prefix .. id, text, "PX", ttl))
  if not ok then return nil, err end
  return true
end

function RedisStore:delete(id)
  local ok, err = redis_result(self.client:call("DEL", self.prefix .. id))
  if not ok then return nil, err end
  return true
end

local MemoryStore = {}
MemoryStore.__index = MemoryStore

-- session.memory() -> a store in this process's memory (tests, development, one process)
function session.memory()
  return setmetatable({ entries = {}, count = 0 }, MemoryStore)
end

function MemoryStore:get(id, ttl)
  local e = self.entries[id]
  if not e then return nil end
  local now = task.now()
  if e.expires <= now then
    self.entries[id] = nil
    return nil
  end
  e.expires = now + ttl
  return e.text
end

function MemoryStore:set(id, text, ttl)
  self.count = self.count + 1
  if self.count % 1000 == 0 then -- now and then, forget what expired (amortised O(1))
    local now = task.now()
    for k, e in pairs(self.entries) do
      if e.expires <= now then self.entries[k] = nil end
    end
  end
  self.entries[id] = { text = text, expires = task.now() + ttl }
  return true
end

function MemoryStore:delete(id)
  self.entries[id] = nil
  return true
end

-- --- sessions -------------------------------------------------------------------------------

local Session = {}
Session.__index = Session

local Manager = {}
Manager.__index = Manager

local OPTIONS = {
  store = { "table", required = true },
  secret = { { "string", "table" }, required = true },
  name = { "string", default = "sid" },
  ttl = { "ms", default = 86400000 },
  cookie = { "table" },
}

local COOKIE = {
  path = { "string" }, domain = { "string" }, secure = { "boolean" }, same_site = { { "string", "boolean" } },
  max_age = { "ms" },
}

-- session.new(options) -> a session manager. Options: store (required), secret (required:
-- signs the cookie; a string of 16 bytes or more, or an array for rotation), name ("sid"),
-- ttl (ms a session lives after its last use, default 1 day), cookie ({path, domain, secure,
-- same_site, max_age}: the cookie's attributes; HttpOnly always; without max_age the cookie
-- ends with the browser session).
function session.new(opts)
  local o = options.check(opts, OPTIONS, 1, "new")
  local c = options.check(o.cookie, COOKIE, 1, "new")
  if not pcall(cookie.sign, "x", "", o.secret) then -- checked now, not at the first request
    error("bad argument #1 to 'new' (option 'secret': a string of 16 bytes or more, or an array of them, expected)", 2)
  end
  c.http_only, c.secret = true, o.secret
  if o.ttl == math.huge then o.ttl = 400 * 86400000 end
  return setmetatable({ store = o.store, secret = o.secret, name = o.name, ttl = o.ttl, cookie = c }, Manager)
end

local function new_id() return crypto.base64url(crypto.random(32)) end

-- sessions:load(req, res) -> the request's session, or nil, err when the store fails. A
-- request without a valid session cookie gets a new, empty session that is stored only when
-- saved. The session is kept on req (a second load returns it).
function Manager:load(req, res)
  if type(req) ~= "table" then error("bad argument #1 to 'load' (request expected, got " .. type(req) .. ")", 2) end
  if type(res) ~= "userdata" and type(res) ~= "table" then
    error("bad argument #2 to 'load' (response expected, got " .. type(res) .. ")", 2)
  end
  local s = rawget(req, "session")
  if s then return s end
  local id = cookie.get(req, self.name, self.secret)
  local data
  if id and #id == 43 then
    local text, err = self.store:get(id, self.ttl)
    if err then return nil, err end
    data = text and cjson.decode(text)
    if type(data) ~= "table" then id = nil end
  else
    id = nil
  end
  s = setmetatable({ id = id, data = data or {}, manager = self, res = res }, Session)
  req.session = s
  return s
end

-- s:save() -> true | nil, err: stores the data (a new session gets its id and its cookie)
function Session:save()
  local m = self.manager
  local text, err = cjson.encode(self.data)
  if not text then error("session data cannot be stored: " .. err, 2) end
  local fresh = self.id == nil
  if fresh then self.id = new_id() end
  local ok
  ok, err = m.store:set(self.id, text, m.ttl)
  if not ok then
    if fresh then self.id = nil end
    return nil, err
  end
  if fresh then cookie.set(self.res, m.name, self.id, m.cookie) end
  return true
end

-- s:rotate() -> true | nil, err: the same data under a new id (and cookie); the old id is
-- deleted. Call it when the user logs in or gains rights.
function Session:rotate()
  local old = self.id
  self.id = nil
  local ok, err = self:save()
  if not ok then
    self.id = old
    return nil, err
  end
  if old then self.manager.store:delete(old) end
  return true
end

-- s:destroy() -> true | nil, err: deletes the session and its cookie (log out); the object
-- is empty and new afterwards
function Session:destroy()
  local m = self.manager
  local old = self.id
  self.id, self.data = nil, {}
  cookie.clear(self.res, m.name, { path = m.cookie.path, domain = m.cookie.domain, secure = m.cookie.secure })
  if old then return m.store:delete(old) end
  return true
end

-- s:empty() -> true when the session holds no data
function Session:empty() return next(self.data) == nil end

return session
