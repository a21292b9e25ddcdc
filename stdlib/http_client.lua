-- http_client: an HTTP/1.1 client over the tcp module (also http.request and http.get).
--
--   local http = require "http"
--   local res, err = http.get("http://127.0.0.1:8080/hello")
--   if res then print(res.status, res.headers["content-type"], res:body()) end
--
-- The sockets, requests and the keep-alive pool are here; the response head parser and
-- the chunked decoder are C (runtime/proto/http/http_client.c, over runtime/proto/http/http_parser.c).
--
-- The pool keeps idle connections per host:port: at most `keepalive_pool` (16) each, the
-- least recently used one closed to make room, each closed after `keepalive_timeout` (60 s)
-- idle by a timer that does not keep the process alive. A parked socket keeps reading, so a
-- connection the server closed is noticed before it is handed out again; when a reused
-- connection still fails before any byte of the response (the close crossed our request),
-- an idempotent request is sent again once on a new connection. A connection goes back to
-- the pool only once its response body was read to the end.
local C = require "luaio.http_client"
local tcp = require "tcp"
local task = require "task"

local concat, type, tostring, tonumber = table.concat, type, tostring, tonumber
local setmetatable, error, pairs, ipairs = setmetatable, error, pairs, ipairs
local floor = math.floor

local client = {}

local DEFAULT_TIMEOUT = 30000
local DEFAULT_MAX_BODY = 64 * 1024 * 1024
local MAX_HEAD = 64 * 1024 -- a response head larger than this is an error
local MAX_REDIRECTS = 5
local POOL_SIZE = 16
local POOL_IDLE = 60000
local SWEEP_EVERY = 1000
local DRAIN_LIMIT = 64 * 1024 -- a redirect's body up to this is read so the connection is kept

local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true, TRACE = true }

-- --- errors ----------------------------------------------------------------------------------

local function fail(name, message)
  return nil, C.error(name, message)
end

-- --- options and URLs ------------------------------------------------------------------------

local OPTIONS = {
  url = "string", host = "string", port = "number", path = "string", method = "string",
  headers = "table", body = "string", timeout = "number", connect_timeout = "number",
  send_timeout = "number", read_timeout = "number", follow_redirects = "boolean",
  keepalive = "boolean", keepalive_timeout = "number", keepalive_pool = "number",
  max_body_size = "number",
}

local function argerror(fname, argn, message, level)
  error(("bad argument #%d to '%s' (%s)"):format(argn, fname, message), level + 1)
end

-- Splits an absolute URL: scheme, host, port, path (with the query; the fragment dropped),
-- or nil and the reason.
local function parse_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "not an absolute URL (http://host[:port]/path)" end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then return nil, "scheme '" .. scheme .. "' is not http" end
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  if authority:find("@", 1, true) then return nil, "user info in URLs is not supported" end
  local host, port
  if authority:sub(1, 1) == "[" then
    host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
  else
    host, port = authority:match("^([%w.%-_]+):?(%d*)$")
  end
  if not host then return nil, "bad host in URL" end
  if port == "" then
    port = scheme == "https" and 443 or 80
  else
    port = tonumber(port)
    if port < 1 or port > 65535 then return nil, "port out of range in URL" end
  end
  path = path:gsub("#.*$", "")
  if path == "" or path:sub(1, 1) == "?" then path = "/" .. path end
  if path:find("[%c ]") then return nil, "spaces or control characters in the URL's path" end
  return { scheme = scheme, host = host, port = port, path = path }
end

-- The request's target from options (raises naming the argument when they are wrong).
local function check_options(options, fname, argn)
  local opts = {}
  for name, value in pairs(options) do
    local want = OPTIONS[name]
    if want == nil then argerror(fname, argn, "unknown option '" .. tostring(name) .. "'", 3) end
    if type(value) ~= want then
      argerror(fname, argn, ("options.%s: %s expected, got %s"):format(name, want, type(value)), 3)
    end
    if want == "number" and (value < 0 or value ~= floor(value)) then
      argerror(fname, argn, ("options.%s: non-negative integer expected"):format(name), 3)
    end
    opts[name] = value
  end
  if opts.url then
    local target, why = parse_url(opts.url)
    if not target then argerror(fname, argn, "options.url: " .. why, 3) end
    opts.target = target
  elseif opts.host then
    if not opts.host:match("^[%w.%-_:]+$") then argerror(fname, argn, "options.host: bad host name", 3) end
    local port = opts.port or 80
    if port < 1 or port > 65535 then argerror(fname, argn, "options.port: out of range (1 to 65535)", 3) end
    local path = opts.path or "/"
    if path:sub(1, 1) ~= "/" or path:find("[%c ]") then
      argerror(fname, argn, "options.path: must start with / and hold no spaces or control characters", 3)
    end
    opts.target = { scheme = "http", host = opts.host, port = port, path = path }
  else
    argerror(fname, argn, "options.url or options.host expected", 3)
  end
  local method = opts.method or "GET"
  if not method:match("^[%w!#$%%&'*+.^_`|~-]+$") then argerror(fname, argn, "options.method: not a token", 3) end
  opts.method = method:upper()
  if opts.headers then
    for name, value in pairs(opts.headers) do
      if type(name) ~= "string" or not name:match("^[%w!#$%%&'*+.^_`|~-]+$") then
        argerror(fname, argn, "options.headers: bad header name " .. tostring(name), 3)
      end
      local vt = type(value)
      if vt ~= "string" and vt ~= "number" then
        argerror(fname, argn, ("options.headers: %s: string expected, got %s"):format(name, vt), 3)
      end
      if name:lower() == "transfer-encoding" then
        argerror(fname, argn, "options.headers: Transfer-Encoding is not supported (the body is a string)", 3)
      end
      if tostring(value):find("[\r\n%z]") then
        argerror(fname, argn, ("options.headers: %s: CR, LF or NUL in the value"):format(name), 3)
      end
    end
  end
  local timeout = opts.timeout or DEFAULT_TIMEOUT
  opts.connect_timeout = opts.connect_timeout or timeout
  opts.send_timeout = opts.send_timeout or timeout
  opts.read_timeout = opts.read_timeout or timeout
  opts.max_body_size = opts.max_body_size or DEFAULT_MAX_BODY
  opts.keepalive = opts.keepalive ~= false
  opts.keepalive_timeout = opts.keepalive_timeout or POOL_IDLE
  opts.keepalive_pool = opts.keepalive_pool or POOL_SIZE
  return opts
end

-- --- the connection pool ---------------------------------------------------------------------

-- pools[host:port] = array of {sock, expires}, the most recently parked last.
local pools, pooled = {}, 0

local function sweep()
  local now = task.now()
  for key, list in pairs(pools) do
    local keep = {}
    for _, entry in ipairs(list) do
      if entry.expires > now and C.unpark(entry.sock) then
        C.park(entry.sock)
        keep[#keep + 1] = entry
      else
        entry.sock:close()
        pooled = pooled - 1
      end
    end
    pools[key] = #keep > 0 and keep or nil
  end
  if pooled == 0 then C.sweep(nil) end
end

-- A pooled connection to key that is still alive, or nil.
local function pool_take(key)
  local list = pools[key]
  if not list then return nil end
  local now = task.now()
  while #list > 0 do
    local entry = list[#list]
    list[#list] = nil
    pooled = pooled - 1
    if C.unpark(entry.sock) and entry.expires > now then
      if #list == 0 then pools[key] = nil end
      return entry.sock
    end
    entry.sock:close()
  end
  pools[key] = nil
  return nil
end

local function pool_put(key, sock, idle_ms, size)
  if size == 0 or idle_ms == 0 or not C.park(sock) then
    sock:close()
    return
  end
  local list = pools[key]
  if not list then
    list = {}
    pools[key] = list
  end
  while #list >= size do -- full: the least recently used one goes
    table.remove(list, 1).sock:close()
    pooled = pooled - 1
  end
  list[#list + 1] = { sock = sock, expires = task.now() + idle_ms }
  if pooled == 0 then C.sweep(sweep, SWEEP_EVERY) end
  pooled = pooled + 1
end

-- client.pooled([host, port]) -> idle connections in the pool (to host:port, or in all).
function client.pooled(host, port)
  if host == nil then return pooled end
  local list = pools[host .. ":" .. (port or 80)]
  return list and #list or 0
end

-- --- responses -------------------------------------------------------------------------------

local Response = {}
Response.__index = Response

local STATE = {} -- res[STATE]: what only this file sees

-- Case-insensitive lookup: names are stored in lower case.
local HEADERS_MT = {
  __index = function(t, name)
    if type(name) == "string" then return rawget(t, name:lower()) end
  end,
}

-- The body was read to the end (or is abandoned): the socket goes back to the pool or closes.
local function release(st, reusable)
  local sock = st.sock
  if not sock then return end
  st.sock = nil
  if reusable and st.keepalive then
    pool_put(st.key, sock, st.opts.keepalive_timeout, st.opts.keepalive_pool)
  else
    sock:close()
  end
end

local function broken(st, err)
  release(st, false)
  st.err = err
  return nil, err
end

-- Raw bytes after the head first, then from the socket.
local function raw_read(st)
  local data = st.pending
  if data then
    st.pending = nil
    return data
  end
  return st.sock:read()
end

-- The next piece of the body: data (not empty), or nil at the end, or nil, err.
local function next_piece(st)
  while true do
    if st.kind == "none" then
      release(st, true)
      return nil
    end
    local raw, err = raw_read(st)
    if not raw then
      if st.kind == "close" and err.name == "EOF" then
        release(st, false)
        return nil
      end
      if err.name == "EOF" then return broken(st, C.error("EPROTO", "connection closed before the end of the body")) end
      return broken(st, err)
    end
    if st.kind == "length" then
      local extra = #raw > st.remaining
      if extra then raw = raw:sub(1, st.remaining) end -- bytes the server should not have sent
      st.remaining = st.remaining - #raw
      if st.remaining == 0 then -- the end: the connection is free before the data is handed out
        st.kind = "none"
        release(st, not extra)
      end
      if #raw > 0 then return raw end
    elseif st.kind == "chunked" then
      local data, done, leftover = st.decoder:decode(raw)
      if not data then return broken(st, done) end
      if done then
        st.kind = "none"
        release(st, #leftover == 0)
      end
      if #data > 0 then return data end
    elseif #raw > 0 then -- until close
      return raw
    end
  end
end

-- res:read([n]) -> up to n bytes of the body (without n: what has arrived), nil at its end,
-- or nil, err.
function Response.read(res, n)
  if n ~= nil and (type(n) ~= "number" or n < 1 or n ~= floor(n)) then
    error("bad argument #1 to 'read' (positive integer expected)", 2)
  end
  local st = res[STATE]
  if st.err then return nil, st.err end
  local data = st.out
  if data then
    st.out = nil
  else
    local err
    data, err = next_piece(st)
    if not data then return nil, err end
  end
  if n and #data > n then
    st.out = data:sub(n + 1)
    data = data:sub(1, n)
  end
  return data
end

-- res:body() -> the whole body (at most max_body_size bytes), or nil, err.
function Response.body(res)
  local st = res[STATE]
  local max = st.opts.max_body_size
  local too_big = "response body larger than max_body_size (" .. max .. " bytes)"
  if st.kind == "length" and st.remaining > max then
    return broken(st, C.error("EMSGSIZE", too_big))
  end
  local parts, n, size = {}, 0, 0
  while true do
    local data, err = Response.read(res)
    if not data then
      if err then return nil, err end
      return concat(parts, "", 1, n)
    end
    size = size + #data
    if size > max then return broken(st, C.error("EMSGSIZE", too_big)) end
    n = n + 1
    parts[n] = data
  end
end

-- res:close(): gives up the rest of the body (the connection is closed, not pooled).
function Response.close(res)
  local st = res[STATE]
  if st.sock then release(st, false) end
  st.kind, st.out = "none", nil
end

-- --- requests --------------------------------------------------------------------------------

local function host_header(target)
  local host = target.host
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  if target.port ~= 80 then host = host .. ":" .. target.port end
  return host
end

local function request_head(opts, target, method, body)
  local lines = { method, " ", target.path, " HTTP/1.1\r\n" }
  local has = {}
  local user = opts.headers or {}
  for name, value in pairs(user) do
    local lower = name:lower()
    if lower ~= "content-length" then -- always the body's own
      has[lower] = true
      lines[#lines + 1] = name .. ": " .. tostring(value) .. "\r\n"
    end
  end
  if not has.host then lines[#lines + 1] = "Host: " .. host_header(target) .. "\r\n" end
  if not has["user-agent"] then lines[#lines + 1] = "User-Agent: luaio\r\n" end
  if not opts.keepalive and not has.connection then lines[#lines + 1] = "Connection: close\r\n" end
  if body then
    lines[#lines + 1] = "Content-Length: " .. #body .. "\r\n"
  elseif method == "POST" or method == "PUT" or method == "PATCH" then
    lines[#lines + 1] = "Content-Length: 0\r\n"
  end
  lines[#lines + 1] = "\r\n"
  return concat(lines)
end

-- Reads the response head: head, bytes after it | nil, err, got_bytes.
local function read_head(sock, method)
  local buf, last = "", 0
  local got = false
  while true do
    local more = #buf == 0
    while not more do
      local head, err = C.parse_response(buf, last, method == "HEAD")
      if head then
        if head.status >= 200 or head.status == 101 then
          return head, buf:sub(head.length + 1)
        end
        buf, last = buf:sub(head.length + 1), 0 -- 1xx: informational, the answer follows
        more = #buf == 0
      elseif err ~= "incomplete" then
        return nil, err, true
      elseif #buf > MAX_HEAD then
        return nil, C.error("EPROTO", "response head larger than " .. MAX_HEAD .. " bytes"), true
      else
        last, more = #buf, true
      end
    end
    local data, err = sock:read()
    if not data then
      if err.name == "EOF" then
        err = C.error(got and "EPROTO" or "ECONNRESET",
          got and "connection closed in the response head" or "connection closed before any response")
      end
      return nil, err, got
    end
    got = true
    buf = buf .. data
  end
end

-- One request on one connection, from the pool when one is there: res | nil, err.
local function exchange(opts, target, method, body)
  local key = target.host .. ":" .. target.port
  local head_bytes = request_head(opts, target, method, body)
  local reused = opts.keepalive and pool_take(key) or nil
  local retry = reused and IDEMPOTENT[method]
  while true do
    local sock, err = reused, nil
    if not sock then
      sock, err = tcp.connect(target.port, target.host, { timeout = opts.connect_timeout })
      if not sock then return nil, err end
    end
    sock:setTimeout(opts.send_timeout)
    local ok
    ok, err = sock:write(body and #body > 0 and { head_bytes, body } or head_bytes)
    local head, rest, got
    if ok then
      sock:setTimeout(opts.read_timeout)
      head, err, got = read_head(sock, method)
    end
    if head then
      rest = err
      local res = setmetatable({
        status = head.status,
        reason = head.reason,
        headers = setmetatable(head.headers, HEADERS_MT),
        httpVersion = "1." .. head.minor,
      }, Response)
      local st = {
        sock = sock, key = key, opts = opts, kind = head.body,
        remaining = head.content_length, pending = #rest > 0 and rest or nil,
        keepalive = opts.keepalive and head.keep_alive and head.status ~= 101,
      }
      if head.body == "chunked" then st.decoder = C.decoder() end
      if head.body == "length" and head.content_length == 0 then st.kind = "none" end
      res[STATE] = st
      if st.kind == "none" then
        if st.pending then st.keepalive = false end -- bytes after a bodiless response
        release(st, true)
      end
      return res
    end
    sock:close()
    if not (reused and retry and not got and err.name ~= "ETIMEDOUT") then return nil, err end
    reused, retry = nil, false -- the pooled connection was dead: once more on a new one
  end
end

-- Where a redirect goes: a new target, or nil, err.
local function redirect_target(from, location)
  if location:match("^%a[%w+.-]*://") then
    local target, why = parse_url(location)
    if not target then return fail("EINVAL", "bad redirect location: " .. why) end
    return target
  end
  if location:sub(1, 2) == "//" then
    local target, why = parse_url("http:" .. location)
    if not target then return fail("EINVAL", "bad redirect location: " .. why) end
    return target
  end
  local path = location
  if path:sub(1, 1) ~= "/" then -- relative to the current path's folder
    local dir = from.path:match("^([^?]*/)") or "/"
    path = dir .. path
  end
  path = path:gsub("#.*$", "")
  if path:find("[%c ]") then return fail("EINVAL", "bad redirect location") end
  return { scheme = from.scheme, host = from.host, port = from.port, path = path }
end

-- Reads a small body to the end so its connection is kept; a large one is closed.
local function discard(res)
  local st = res[STATE]
  local total = 0
  while st.kind ~= "none" or st.out do
    if total > DRAIN_LIMIT then return res:close() end
    local data = res:read()
    if not data then return end
    total = total + #data
  end
end

local function perform(opts)
  local target, method, body = opts.target, opts.method, opts.body
  local hops = 0
  while true do
    if target.scheme == "https" then return fail("ENOTSUP", "https is not supported yet") end
    local res, err = exchange(opts, target, method, body)
    if not res then return nil, err end
    local status, location = res.status, res.headers.location
    if not (opts.follow_redirects and location and
        (status == 301 or status == 302 or status == 303 or status == 307 or status == 308)) then
      return res
    end
    hops = hops + 1
    if hops > MAX_REDIRECTS then
      res:close()
      return fail("ELOOP", "too many redirects (more than " .. MAX_REDIRECTS .. ")")
    end
    discard(res)
    local next_target
    next_target, err = redirect_target(target, location)
    if not next_target then return nil, err end
    if status <= 303 and method ~= "HEAD" then method, body = "GET", nil end
    if next_target.host ~= target.host or next_target.port ~= target.port then
      local headers = {} -- credentials stay with the host they were meant for
      for name, value in pairs(opts.headers or {}) do
        local lower = name:lower()
        if lower ~= "authorization" and lower ~= "cookie" and lower ~= "host" then headers[name] = value end
      end
      opts.headers = headers
    end
    if method == "GET" and opts.headers then
      for name in pairs(opts.headers) do
        if name:lower() == "content-type" then opts.headers[name] = nil end
      end
    end
    target = next_target
  end
end

-- client.request(options) -> res | nil, err
function client.request(options)
  if type(options) ~= "table" then argerror("request", 1, "table expected, got " .. type(options), 2) end
  return perform(check_options(options, "request", 1))
end

-- client.get(url[, options]) -> res | nil, err
function client.get(url, options)
  if type(url) ~= "string" then argerror("get", 1, "string expected, got " .. type(url), 2) end
  if options ~= nil and type(options) ~= "table" then
    argerror("get", 2, "table expected, got " .. type(options), 2)
  end
  local target, why = parse_url(url)
  if not target then argerror("get", 1, why, 2) end
  local copy = {}
  for name, value in pairs(options or {}) do copy[name] = value end
  copy.url, copy.host, copy.port, copy.path = url, nil, nil, nil
  copy.method = copy.method or "GET"
  return perform(check_options(copy, "get", 2))
end

return client
