-- The community example (examples/community) under test: a real MariaDB (the run's shared
-- server, a database per app), a real redis-server per case, and the app itself, run by
-- `luaio run` or built and run alone in an empty root. (Not a *_test.lua file, so the
-- runner does not run it.)
local test = require "test"
local task = require "task"
local http_client = require "http_client"
local helpers = require "tests.helpers"
local mh = require "tests.mysql_helpers"
local rh = require "tests.redis_helpers"

local ch = {}

ch.APP = "examples/community"

local databases = 0

-- ch.backends() -> {mysql = srv, database = name, redis = srv}: a fresh database on the
-- shared MariaDB and a redis-server for this case.
function ch.backends()
  local srv = mh.server()
  databases = databases + 1
  local name = "community_" .. databases
  assert(srv.root:query("CREATE DATABASE " .. name .. " CHARACTER SET utf8mb4"))
  return { mysql = srv, database = name, redis = rh.server() }
end

-- The environment the app reads its configuration from.
local function environment(b, extra)
  local env = {
    PORT = "0", MYSQL_HOST = "127.0.0.1", MYSQL_PORT = tostring(b.mysql.port), MYSQL_USER = "native",
    MYSQL_PASSWORD = "native-pw", MYSQL_DATABASE = b.database, REDIS_URL = "redis://127.0.0.1:" .. b.redis.port,
    SECRET = "a test secret of enough bytes", PAGE_SIZE = "3",
  }
  for k, v in pairs(extra or {}) do env[k] = v end
  local parts = {}
  for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. test.quote(v) end
  table.sort(parts)
  return table.concat(parts, " ")
end

-- ch.start(b[, env][, command]) -> app {port, peer, url}: runs the app (by default `luaio run
-- examples/community`; command: another way to run it) with b's servers, until it listens.
function ch.start(b, extra, command)
  command = command or (test.quote(test.luaio) .. " run " .. ch.APP)
  local peer = helpers.start("exec env -i " .. environment(b, extra) .. " " .. command)
  local port = tonumber(helpers.wait_output(peer, "listening (%d+)", 30000))
  return { port = port, peer = peer, url = "http://127.0.0.1:" .. port }
end

-- ch.build(dir) -> the path of the app built into dir/community (the only file there)
function ch.build(dir)
  local exe = dir .. "/community"
  local out, status = test.sh(test.quote(test.luaio) .. " build " .. ch.APP .. " -o " .. test.quote(exe))
  if status ~= 0 then error("luaio build failed:\n" .. out, 2) end
  return exe
end

-- A browser of sorts: a cookie jar (Set-Cookie honoured, Max-Age=0 deletes) over the HTTP
-- client. c:get(path), c:post(path, fields | text[, headers]) -> res, body.
local Client = {}
Client.__index = Client

function ch.client(app) return setmetatable({ app = app, jar = {}, set = {} }, Client) end

local function form(fields)
  local parts = {}
  for k, v in pairs(fields) do
    parts[#parts + 1] = k .. "=" .. tostring(v):gsub("[^%w%-_.~]", function(c) return ("%%%02X"):format(c:byte()) end)
  end
  return table.concat(parts, "&")
end
ch.form = form

function Client:request(method, path, body, headers)
  local h = {}
  for k, v in pairs(headers or {}) do h[k] = v end
  local cookies = {}
  for name, value in pairs(self.jar) do cookies[#cookies + 1] = name .. "=" .. value end
  if #cookies > 0 then h.Cookie = table.concat(cookies, "; ") end
  if type(body) == "table" then
    body = form(body)
    h["Content-Type"] = "application/x-www-form-urlencoded"
  end
  local res, err = http_client.request({ url = self.app.url .. path, method = method, body = body, headers = h })
  if not res then error(method .. " " .. path .. ": " .. tostring(err), 2) end
  local text = assert(res:body())
  self.set = res.headers["set-cookie"] or {}
  for _, line in ipairs(self.set) do
    local name, value = line:match("^([^=]+)=([^;]*)")
    if line:find("; Max-Age=0", 1, true) then self.jar[name] = nil else self.jar[name] = value end
  end
  return res, text
end

function Client:get(path, headers) return self:request("GET", path, nil, headers) end
function Client:post(path, body, headers) return self:request("POST", path, body, headers) end

-- The CSRF token in a page's form.
function ch.token(html)
  return html:match('name="_csrf" value="([^"]+)"')
end

-- Waits (polling) until fn() is true; raises with what after timeout_ms.
ch.wait_for = rh.wait_for

return ch
