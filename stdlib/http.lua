-- http: an HTTP/1.1 server (the request loop is in C: runtime/proto/http/).
--
--   local http = require "http"
--   http.createServer(8080, function(req, res)
--     res:setHeader("Content-Type", "text/plain")
--     res:finish("Hello, World!")
--   end)
--
-- Each request runs handler(req, res) in a task. Keep-alive and pipelining are on; responses
-- go out in order. See docs/api.md for req and res.
local C = require "luaio.http"
local task = require "task"
local options_checker = require "luaio.options"

local concat, type, xpcall = table.concat, type, xpcall
local traceback = debug.traceback

local http = {}

local C_read, C_done = C.read, C.done

-- --- the request object's methods ----------------------------------------------------------

local request = {}

-- req:read([n]) -> up to n bytes of the body (or what has arrived), nil at its end, or nil, err
function request.read(req, n)
  local res = req[1]
  while true do
    local data, err = C_read(res, n)
    if data ~= false then return data, err end
  end
end

-- req:body() -> the whole body (bounded by max_body_size), or nil, err
function request.body(req)
  local parts, n = {}, 0
  while true do
    local data, err = request.read(req)
    if data == nil then
      if err then return nil, err end
      return concat(parts, "", 1, n)
    end
    n = n + 1
    parts[n] = data
  end
end

-- req:tlsinfo() -> HTTPS: the connection's TLS (socket:tlsinfo(): version, cipher, peer for a
-- client certificate, ...); nil for plain HTTP
function request.tlsinfo(req)
  return C.tlsinfo(req[1])
end

-- req:header(name) -> the value of a header (any case), or nil
function request.header(req, name)
  return req.headers[name]
end

-- req:form() -> the fields of an application/x-www-form-urlencoded body (a table like
-- req.query), read once and kept; nil, err when the body cannot be read, or (EINVAL) is
-- of another type
function request.form(req)
  local form = rawget(req, "form_fields")
  if form then return form end
  local ctype = req.headers["content-type"] or ""
  if not ctype:lower():find("^%s*application/x%-www%-form%-urlencoded%s*;?") then
    return nil, require("luaio.error").new("EINVAL", "not a form body (Content-Type: " .. ctype .. ")")
  end
  local body, err = request.body(req)
  if not body then return nil, err end
  form = C.form(body)
  req.form_fields = form
  return form
end

-- --- the worker loop -------------------------------------------------------------------------

local function on_error(err)
  return traceback(tostring(err), 2)
end

-- A worker task serves requests until the pool it returns to is full. C.done finishes the
-- response and returns the next request on the same connection, or parks the task.
local function worker(handler, req, res)
  while handler do
    local ok, err = xpcall(handler, on_error, req, res)
    handler, req, res = C_done(res, ok, err)
  end
end

-- res:sendFile(path[, options]) serves one file (see stdlib/http_static.lua): from disk, or
-- from the app's bundle with options.bundle.
local response_methods = debug.getregistry()["luaio.http.response"].methods
function response_methods.sendFile(res, path, options)
  options_checker.cstring(path, 1, "sendFile")
  return require("http_static").send_file(C.request(res), res, path, options)
end

-- http.decodeForm(text) -> the table of a form-encoded text ("a=1&b=x+y": {a = "1", b = "x y"};
-- a repeated name gives an array)
function http.decodeForm(text)
  if type(text) ~= "string" then
    error("bad argument #1 to 'decodeForm' (string expected, got " .. type(text) .. ")", 2)
  end
  return C.form(text)
end

-- http.static(root[, options]) -> a handler serving the files under root (disk, or the
-- bundle with options.bundle); see stdlib/http_static.lua.
function http.static(root, options)
  return require("http_static").handler(root, options)
end

C.init(worker, request)

-- --- the router -----------------------------------------------------------------------------------

-- local router = http.router()
-- router:get("/users/:id", function(req, res) res:finish(req.params.id) end)
-- router:get("/files/*", ...)            -- req.params["*"] is the rest of the path
-- http.createServer(8080, router)
-- Routes match in the order they were added. No match: 404; a path that matches under other
-- methods only: 405 with an Allow header.
local Router = {}
Router.__index = Router

-- Compiles "/users/:id/*" into a Lua pattern and the names of its captures.
local function compile(pattern)
  local names = {}
  local lua = pattern:gsub("[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0")
  lua = lua:gsub(":([%w_]+)", function(name)
    names[#names + 1] = name
    return "([^/]+)"
  end)
  if lua:sub(-1) == "*" then
    names[#names + 1] = "*"
    lua = lua:sub(1, -2) .. "(.*)"
  end
  return "^" .. lua .. "$", names
end

-- Checks a route's pattern (argument argn of fname) and handler (argn + 1) for the caller of
-- the router method that calls it (which must not tail-call it).
local function check_route(pattern, handler, fname, argn)
  if type(pattern) ~= "string" or pattern:sub(1, 1) ~= "/" then
    options_checker.argerror(argn, fname, "path pattern starting with '/' expected, got " ..
      (type(pattern) == "string" and "'" .. pattern .. "'" or type(pattern)), 3)
  end
  if type(handler) ~= "function" then
    options_checker.argerror(argn + 1, fname, "function expected, got " .. type(handler), 3)
  end
end

local function add(self, method, pattern, handler)
  local lua, names = compile(pattern)
  self.routes[#self.routes + 1] = { method = method, pattern = lua, names = names, handler = handler }
  return self
end

-- router:add(method, pattern, handler): method nil is any
function Router:add(method, pattern, handler)
  if method ~= nil and type(method) ~= "string" then
    options_checker.argerror(1, "add", "string expected, got " .. type(method))
  end
  check_route(pattern, handler, "add", 2)
  return add(self, method, pattern, handler)
end

for _, method in ipairs({ "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS" }) do
  local fname = method:lower()
  Router[fname] = function(self, pattern, handler)
    check_route(pattern, handler, fname, 1)
    return add(self, method, pattern, handler)
  end
end

-- router:all(pattern, handler): any method
function Router:all(pattern, handler)
  check_route(pattern, handler, "all", 1)
  return add(self, nil, pattern, handler)
end

-- router:websocket(pattern, fn[, options]): a WebSocket endpoint; fn(ws, req) runs once the
-- handshake is done (see the websocket module; options are websocket.upgrade's).
function Router:websocket(pattern, fn, options)
  check_route(pattern, fn, "websocket", 1)
  local handler = require("websocket")._handler(fn, options, "websocket", 3, 2)
  return add(self, "GET", pattern, handler)
end

local function hex_byte(h) return string.char(tonumber(h, 16)) end

-- Routes match the path as sent (so "%2F" in a parameter does not split it); the
-- parameters are then percent-decoded. (The server already refused a path with a bad
-- escape or a NUL.)
local function match(route, path)
  local captures = { path:match(route.pattern) }
  if captures[1] == nil then return nil end
  local params = {}
  for i, name in ipairs(route.names) do
    local value = captures[i]
    if value:find("%", 1, true) then value = value:gsub("%%(%x%x)", hex_byte) end
    params[name] = value
  end
  return params
end

function Router:__call(req, res)
  local path, method = rawget(req, "rawPath") or req.path, req.method
  local allowed
  for _, route in ipairs(self.routes) do
    local params = match(route, path)
    if params then
      local m = route.method
      if m == nil or m == method or (m == "GET" and method == "HEAD") then
        req.params = params
        return route.handler(req, res)
      end
      allowed = allowed or {}
      allowed[#allowed + 1] = m
    end
  end
  if allowed then
    res:status(405)
    res:setHeader("Allow", concat(allowed, ", "))
    return res:finish("method not allowed\n")
  end
  res:status(404)
  return res:finish("not found\n")
end

function http.router()
  return setmetatable({ routes = {} }, Router)
end

-- --- servers ------------------------------------------------------------------------------------

-- Defaults are http_server.c's (docs/api.md lists them).
local OPTIONS = {
  family = { "integer", values = { 4, 6 } },
  host = { "cstring" },
  tcp_nodelay = { "boolean" },
  tcp_keepalive = { "boolean" },
  tcp_keepidle = { "integer", min = 0, max = 32767 },
  tcp_backlog = { "integer", min = 0, max = 65535 },
  tcp_reuseport = { "boolean" },
  maxconnections = { "integer", min = 0, max = 2147483647 },
  max_header_size = { "integer", min = 256, max = 1048576 }, -- bytes
  max_headers = { "integer", min = 1, max = 1024 },
  max_url_length = { "integer", min = 1, max = 1048576 },
  max_body_size = { "integer", min = 0 },
  max_requests = { "integer", min = 1, max = 4294967295 },
  header_timeout = { "ms" },
  body_timeout = { "ms" },
  keepalive_timeout = { "ms" },
  send_timeout = { "ms" },
  write_buffer_size = { "integer", min = 1, max = 1048576 }, -- KiB
  server_name = { { "string", "boolean" } },
  graceful = { "boolean" },
  shutdown_timeout = { "ms" },
  workers = { "integer", min = 0, max = 4096 },
  access_log = { { "string", "boolean", "table" } },
  tls = { "table" }, -- HTTPS: tls.lua's server options (cert, key, certs, sni, alpn, ...)
}

local function check_options(options)
  local copy = options_checker.check(options, OPTIONS, 3, "createServer", 3)
  if copy.server_name == true then copy.server_name = nil end
  if type(copy.server_name) == "string" then -- it goes into every response head, as setHeader's values
    local problem = C.value_problem(copy.server_name)
    if problem then options_checker.argerror(3, "createServer", "option 'server_name': " .. problem, 3) end
  end
  if copy.tls then
    local tls = {}
    for k, v in pairs(copy.tls) do tls[k] = v end
    tls.alpn = tls.alpn or { "http/1.1" } -- HTTP/2 will add "h2"
    copy.tls = require("tls").server(tls, 3, "createServer")
  end
  return copy
end

-- server:setTLS(options): new connections get these certificates (tls.lua's server options),
-- those open keep theirs: a renewed certificate is picked up without a restart.
local server_methods = debug.getregistry()["luaio.http.server"].__index
local raw_settls = server_methods.setTLS
function server_methods.setTLS(server, opts)
  local tls = {}
  for k, v in pairs(type(opts) == "table" and opts or {}) do tls[k] = v end
  tls.alpn = tls.alpn or { "http/1.1" }
  local ctx, err = require("tls").server(tls, 1, "setTLS", true)
  if not ctx then return nil, err end
  return raw_settls(server, ctx)
end

local function callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return mt ~= nil and type(mt.__call) == "function"
end

-- --- graceful shutdown --------------------------------------------------------------------------

local servers = {} -- listening servers of this process
local on_sigterm -- installed once, by the first server

-- http.shutdown([timeout_ms = 10000]) -> true when every request in flight finished, false when
-- the time ran out. Stops accepting, closes idle keep-alive connections at once and the others
-- after their current response.
function http.shutdown(timeout)
  timeout = timeout == nil and 10000 or require("luaio.options").ms(timeout, 1, "shutdown")
  local list = servers
  servers = {}
  for _, server in ipairs(list) do server:close() end
  local deadline = task.now() + timeout
  while true do
    local busy = 0
    for _, server in ipairs(list) do busy = busy + server:connections() end
    if busy == 0 then return true end
    if task.now() > deadline then return false end
    task.sleep(10)
  end
end

-- SIGTERM runs every handler (process.on adds). Ours drains; then, as in node, the process
-- exits only when the app has no SIGTERM handler of its own: an app that handles SIGTERM
-- decides when it ends (its handler calls process.exit, or the process ends once nothing is
-- left to do, the servers being closed).
local function sigterm_exit(process)
  if require("luaio.signal").count("SIGTERM") <= 1 then process.exit(0) end
end

local function install_sigterm(timeout)
  if on_sigterm then return end
  local process = require "process"
  on_sigterm = function()
    http.shutdown(timeout)
    sigterm_exit(process)
  end
  process.on("SIGTERM", on_sigterm)
end

-- --- the access log -------------------------------------------------------------------------------

-- access_log = true (stdout), a file path, or a logger from log.new{format = "common" |
-- "combined" | "json"}: one line per response, in the combined format by default.
local function access_hook(target)
  local log = require "log"
  local logger, err = target, nil
  if target == true then
    logger, err = log.new { output = "stdout" }
  elseif type(target) == "string" then
    logger, err = log.new { output = target }
  end
  if not logger then return nil, err end
  local fields = {} -- reused: logging copies what it needs at once
  local none = { method = "-", url = "-", httpVersion = "1.1", headers = {} }
  return function(req, status, bytes, addr)
    req = req or none -- the server's own error answers (400, 408, 431, ...) have no request
    local headers = req.headers
    fields.remote_addr, fields.method, fields.path = addr, req.method, req.url
    fields.protocol, fields.status, fields.bytes = "HTTP/" .. req.httpVersion, status, bytes
    fields.referer, fields.user_agent = headers["referer"], headers["user-agent"]
    log.access(logger, fields)
  end
end

-- --- workers ------------------------------------------------------------------------------------

local WORKER_ENV = "LUAIO_HTTP_WORKER"

-- A worker learns that it is one from its environment, once, when this module loads: the
-- variable goes then, so that what the worker starts (process.exec, process.fork of another
-- app with workers of its own) does not take itself for a worker too.
local is_worker = require("process").getenv(WORKER_ENV) ~= nil
if is_worker then require("process").setenv(WORKER_ENV) end

-- In the master: forks the workers (the same app, which then listens with SO_REUSEPORT) and
-- returns an object standing for them. They are restarted when they die; SIGTERM stops them.
local function start_workers(port, count)
  local process = require "process"
  local bundle = require "bundle"
  process.setenv(WORKER_ENV, "1")
  local pids = {}
  for i = 1, count do
    local pid, err = process.fork { file = bundle.entry, args = process.argv, forever = true }
    if not pid then
      process.setenv(WORKER_ENV)
      for _, started in ipairs(pids) do process.kill(started, "SIGTERM") end
      return nil, err
    end
    pids[i] = pid
  end
  process.setenv(WORKER_ENV)
  local group = { workers = pids }
  function group.address() return { port = port } end
  function group.connections() return 0 end
  function group.close()
    for _, pid in ipairs(pids) do process.kill(pid, "SIGTERM") end
    for _, pid in ipairs(pids) do process.wait(pid, 10000) end
  end
  if not on_sigterm then
    on_sigterm = function() group.close() sigterm_exit(process) end
    process.on("SIGTERM", on_sigterm)
  end
  return group
end

-- http.createServer(port, onrequest[, options]) -> server | nil, err
function http.createServer(port, onrequest, options)
  if type(port) ~= "number" or port ~= math.floor(port) or port < 0 or port > 65535 then
    error("bad argument #1 to 'createServer' (port number 0-65535 expected)", 2)
  end
  if not callable(onrequest) then
    error("bad argument #2 to 'createServer' (function expected, got " .. type(onrequest) .. ")", 2)
  end
  local opts = check_options(options)
  if opts.workers and opts.workers > 0 then
    if port == 0 then error("bad argument #1 to 'createServer' (workers need a fixed port)", 2) end
    if not is_worker then return start_workers(port, opts.workers) end
    opts.tcp_reuseport = true -- a worker: share the port with the others
  end
  if type(onrequest) ~= "function" then
    local handler = onrequest
    onrequest = function(req, res) return handler(req, res) end
  end
  if opts.host and require("tcp").isIP(opts.host) == 0 then
    local addrs, err = require("dns").resolve4(opts.host)
    if not addrs then return nil, err end
    opts.host = addrs[1]
  end
  opts.host = opts.host or (opts.family == 6 and "::" or "0.0.0.0")
  if opts.access_log then
    local hook, err = access_hook(opts.access_log)
    if not hook then return nil, err end
    opts.access_hook = hook
  end
  local server, err = C.listen(port, onrequest, opts)
  if not server then return nil, err end
  servers[#servers + 1] = server
  if opts.graceful ~= false then install_sigterm(opts.shutdown_timeout) end
  return server
end

http.request = require("http_client").request
http.get = require("http_client").get

return http
