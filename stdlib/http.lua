-- http: an HTTP/1.1 server (the request loop is in C: runtime/http.c).
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

C.init(worker, request)

-- --- servers ------------------------------------------------------------------------------------

local OPTIONS = {
  family = "number", host = "string", tcp_nodelay = "boolean", tcp_keepalive = "boolean",
  tcp_keepidle = "number", tcp_backlog = "number", tcp_reuseport = "boolean",
  maxconnections = "number", max_header_size = "number", max_headers = "number",
  max_url_length = "number", max_body_size = "number", max_requests = "number",
  header_timeout = "number", body_timeout = "number", keepalive_timeout = "number",
  server_name = { string = true, boolean = true },
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
  return copy
end

-- http.createServer(port, onrequest[, options]) -> server | nil, err
function http.createServer(port, onrequest, options)
  if type(port) ~= "number" or port ~= math.floor(port) or port < 0 or port > 65535 then
    error("bad argument #1 to 'createServer' (port number 0-65535 expected)", 2)
  end
  if type(onrequest) ~= "function" then
    error("bad argument #2 to 'createServer' (function expected, got " .. type(onrequest) .. ")", 2)
  end
  local opts = check_options(options)
  if opts.host and require("tcp").isIP(opts.host) == 0 then
    local addrs, err = require("dns").resolve4(opts.host)
    if not addrs then return nil, err end
    opts.host = addrs[1]
  end
  opts.host = opts.host or (opts.family == 6 and "::" or "0.0.0.0")
  return C.listen(port, onrequest, opts)
end

return http
