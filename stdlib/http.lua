-- http: an HTTP/1.1 server (the request loop is in C: runtime/proto/http/http.c).
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

-- req:header(name) -> the value of a header (any case), or nil
function request.header(req, name)
  return req.headers[name]
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
  if type(path) ~= "string" then
    error("bad argument #1 to 'sendFile' (string expected, got " .. type(path) .. ")", 2)
  end
  return require("http_static").send_file(C.request(res), res, path, options)
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
  if type(pattern) ~= "string" or pattern:sub(1, 1) ~= "/" then
    error("bad argument #1 to route (path pattern starting with '/' expected)", 3)
  end
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

function Router:add(method, pattern, handler)
  if type(handler) ~= "function" then
    error("bad argument #2 to route (function expected, got " .. type(handler) .. ")", 3)
  end
  local lua, names = compile(pattern)
  self.routes[#self.routes + 1] = { method = method, pattern = lua, names = names, handler = handler }
  return self
end

for _, method in ipairs({ "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS" }) do
  Router[method:lower()] = function(self, pattern, handler) return self:add(method, pattern, handler) end
end

-- router:all(pattern, handler): any method
function Router:all(pattern, handler) return self:add(nil, pattern, handler) end

local function match(route, path)
  local captures = { path:match(route.pattern) }
  if captures[1] == nil then return nil end
  local params = {}
  for i, name in ipairs(route.names) do params[name] = captures[i] end
  return params
end

function Router:__call(req, res)
  local path, method = req.path, req.method
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

local OPTIONS = {
  family = "number", host = "string", tcp_nodelay = "boolean", tcp_keepalive = "boolean",
  tcp_keepidle = "number", tcp_backlog = "number", tcp_reuseport = "boolean",
  maxconnections = "number", max_header_size = "number", max_headers = "number",
  max_url_length = "number", max_body_size = "number", max_requests = "number",
  header_timeout = "number", body_timeout = "number", keepalive_timeout = "number",
  send_timeout = "number", write_buffer_size = "number",
  server_name = { string = true, boolean = true }, graceful = "boolean",
  shutdown_timeout = "number", workers = "number",
  access_log = { string = true, boolean = true, table = true },
}

local function check_options(options)
  if options == nil then return {} end
  if type(options) ~= "table" then
    error("bad argument #3 to 'createServer' (table expected, got " .. type(options) .. ")", 3)
  end
  local copy = {}
  for name, value in pairs(options) do
    local want = OPTIONS[name]
    if want == nil then
      error(("bad argument #3 to 'createServer' (unknown option '%s')"):format(tostring(name)), 3)
    end
    local ok = type(want) == "table" and want[type(value)] or type(value) == want
    if not ok then
      error(("bad argument #3 to 'createServer' (option '%s': %s expected, got %s)")
        :format(name, type(want) == "table" and "string or boolean" or want, type(value)), 3)
    end
    if type(value) == "number" and (value < 0 or value ~= math.floor(value)) then
      error(("bad argument #3 to 'createServer' (option '%s' must be a non-negative integer)"):format(name), 3)
    end
    copy[name] = value
  end
  if copy.server_name == true then copy.server_name = nil end
  if copy.max_headers and copy.max_headers > 1024 then
    error("bad argument #3 to 'createServer' (option 'max_headers' may be at most 1024)", 3)
  end
  if copy.max_header_size and copy.max_header_size > 1048576 then
    error("bad argument #3 to 'createServer' (option 'max_header_size' may be at most 1 MiB)", 3)
  end
  if copy.write_buffer_size == 0 then
    error("bad argument #3 to 'createServer' (option 'write_buffer_size' must be at least 1 KiB)", 3)
  end
  return copy
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
    if not require("process").getenv(WORKER_ENV) then return start_workers(port, opts.workers) end
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
