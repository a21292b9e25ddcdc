-- community: a small forum. Accounts (Argon2id), sessions in Redis behind a signed cookie,
-- CSRF tokens, boards, threads and posts in MySQL/MariaDB, server-rendered pages and a JSON
-- API for the same data.
--
--   MYSQL_PORT=3306 REDIS_URL=redis://127.0.0.1:6379 SECRET=... out/luaio run examples/community
--   out/luaio build examples/community -o out/community && out/community
--
-- Configuration (environment):
--   PORT            port to listen on (8080; 0: any free port)
--   MYSQL_HOST, MYSQL_PORT, MYSQL_USER, MYSQL_PASSWORD, MYSQL_DATABASE
--                   the database (127.0.0.1, 3306, root, "", community); the schema is
--                   migrated at start (migrations/)
--   REDIS_URL       the session store (redis://127.0.0.1:6379)
--   SECRET          signs the session cookie (16 bytes or more; without it a random one,
--                   and sessions end with the process)
--   SESSION_TTL     ms a session lasts after its last request (7 days)
--   PAGE_SIZE       threads or posts per page (20)
--   COOKIE_SECURE   1: the cookie is sent over HTTPS only
--   ACCESS_LOG      1: an access log on stdout; or a file to append it to
-- It prints "listening <port>" once it serves.
local http = require "http"
local log = require "log"
local mysql = require "mysql"
local process = require "process"
local redis = require "redis"
local session = require "session"
local crypto = require "crypto"
local task = require "task"

local accounts = require "accounts"
local app = require "app"
local forum = require "forum"
local migrate = require "migrate"

io.stdout:setvbuf("line")

local function env(name, default)
  local v = process.getenv(name)
  if v == nil or v == "" then return default end
  return v
end

local function number(name, default)
  local v = tonumber(env(name, default))
  if not v then error(name .. " must be a number", 0) end
  return v
end

local config = {
  port = number("PORT", 8080),
  page_size = number("PAGE_SIZE", 20),
  mysql = {
    host = env("MYSQL_HOST", "127.0.0.1"), port = number("MYSQL_PORT", 3306), user = env("MYSQL_USER", "root"),
    password = env("MYSQL_PASSWORD", ""), database = env("MYSQL_DATABASE", "community"),
  },
  redis = env("REDIS_URL", "redis://127.0.0.1:6379"),
  secret = env("SECRET"),
  session_ttl = number("SESSION_TTL", 7 * 86400 * 1000),
  secure = env("COOKIE_SECURE") == "1",
}
if not config.secret then
  log.warn("SECRET is not set: a random one signs cookies, sessions end with this process")
  config.secret = crypto.base64url(crypto.random(32))
end

-- The database may still be starting (a container next to ours): try for 30 s.
local applied, err
local deadline = task.now() + 30000
repeat
  applied, err = migrate.run(config.mysql)
  if not applied and task.now() < deadline then task.sleep(500) end
until applied or task.now() >= deadline
if not applied then error(err, 0) end
for _, version in ipairs(applied) do log.info("migration applied", { version = version }) end

local db = mysql.pool(config.mysql)
local sessions = session.new({
  store = session.redis(redis.pool(config.redis)),
  secret = config.secret,
  ttl = config.session_ttl,
  cookie = { secure = config.secure, same_site = "Lax" },
})
local data = forum.new(db)
local a = app.new({ config = config, forum = data, accounts = accounts.new(data), sessions = sessions })

local router = http.router()
router:get("/static/*", http.static("static"))
require("api")(router, a)
require("web")(router, a)

-- Headers for every answer: no framing, no sniffing, scripts and styles from here only.
local function serve(req, res)
  res:setHeader("X-Content-Type-Options", "nosniff")
  res:setHeader("X-Frame-Options", "DENY")
  res:setHeader("Referrer-Policy", "same-origin")
  res:setHeader("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
  return router(req, res)
end

local access_log = env("ACCESS_LOG")
local server = assert(http.createServer(config.port, serve, { access_log = access_log == "1" or access_log }))
print("listening " .. server:address().port)
