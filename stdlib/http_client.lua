-- http_client: an HTTP/1.1 client over the tcp module (also http.request and http.get).
--
--   local http = require "http"
--   local res, err = http.get("http://127.0.0.1:8080/hello")
--   if res then print(res.status, res.headers["content-type"], res:body()) end
--
-- The sockets and requests are here; the response head parser and the chunked decoder are C
-- (runtime/proto/http/http_client.c, over runtime/proto/http/http_parser.c); idle
-- connections wait in a pool (stdlib/pool.lua).
--
-- Keep-alive: idle connections are kept per scheme, host and port: at most
-- `keepalive_pool` (16) each, the least recently used one closed to make room, each closed
-- after `keepalive_timeout` (60 s) idle by the pool's sweep, whose timer does not keep the
-- process alive. A parked socket keeps reading, so a connection the server closed is
-- noticed before it is handed out again; when a reused connection still fails before any
-- byte of the response, or answers 408 (the close crossed our request), an idempotent
-- request is sent again once on a new connection. A connection goes back to the pool only once its
-- response body was read to the end.
--
-- Time: each wait (connect, a write, a read) has its own inactivity timeout, and the whole
-- request (every redirect and retry, and reading the body) has `total_timeout`, so a server
-- that trickles a byte at a time cannot hold a request forever.
local C = require "luaio.http_client"
local tcp = require "tcp"
local task = require "task"
local pool = require "pool"

local concat, type, tostring, tonumber = table.concat, type, tostring, tonumber
local setmetatable, error, pairs = setmetatable, error, pairs
local floor, ceil = math.floor, math.ceil

local client = {}

local DEFAULT_TIMEOUT = 30000
local DEFAULT_TOTAL = 300000
local DEFAULT_MAX_BODY = 64 * 1024 * 1024
local MAX_HEAD = 64 * 1024 -- a response head larger than this is an error
local MAX_INTERIM = 10 -- more 1xx responses before the final one: an error
local MAX_REDIRECTS = 5
local POOL_SIZE = 16
local POOL_IDLE = 60000
local DRAIN_LIMIT = 64 * 1024 -- a redirect's body up to this is read so the connection is kept

-- Request headers that carry credentials: not sent on to another origin by a redirect.
local CREDENTIALS = { authorization = true, cookie = true, ["proxy-authorization"] = true }

local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true, TRACE = true }

-- --- errors ----------------------------------------------------------------------------------

local function fail(name, message)
  return nil, C.error(name, message)
end

-- --- URLs ------------------------------------------------------------------------------------

-- Splits a URI reference as RFC 3986 appendix B does: scheme, authority, path, query,
-- fragment; the parts that are absent are nil (an empty query "?" is "").
local function split_uri(s)
  local scheme, rest = s:match("^(%a[%w+.-]*):(.*)$")
  if not scheme then rest = s end
  local fragment
  local hash = rest:find("#", 1, true)
  if hash then rest, fragment = rest:sub(1, hash - 1), rest:sub(hash + 1) end
  local query
  local mark = rest:find("?", 1, true)
  if mark then rest, query = rest:sub(1, mark - 1), rest:sub(mark + 1) end
  local authority
  if rest:sub(1, 2) == "//" then
    local slash = rest:find("/", 3, true) or #rest + 1
    authority, rest = rest:sub(3, slash - 1), rest:sub(slash)
  end
  return scheme, authority, rest, query, fragment
end

-- RFC 3986 5.2.4: "/a/b/../c/./d" -> "/a/c/d".
local function remove_dots(path)
  local out, n = {}, 0
  while #path > 0 do
    if path:sub(1, 3) == "../" then
      path = path:sub(4)
    elseif path:sub(1, 2) == "./" then
      path = path:sub(3)
    elseif path:sub(1, 3) == "/./" then
      path = path:sub(3)
    elseif path == "/." then
      path = "/"
    elseif path:sub(1, 4) == "/../" or path == "/.." then
      path = "/" .. path:sub(5)
      if n > 0 then
        out[n] = nil
        n = n - 1
      end
    elseif path == "." or path == ".." then
      path = ""
    else
      local seg = path:match("^/?[^/]*")
      n = n + 1
      out[n] = seg
      path = path:sub(#seg + 1)
    end
  end
  return concat(out, "", 1, n)
end

-- RFC 3986 5.2.3: a relative path merged with the base's.
local function merge(base_authority, base_path, path)
  if base_authority and base_path == "" then return "/" .. path end
  return (base_path:match("^(.*/)") or "") .. path
end

-- client.resolve(base, reference) -> the absolute URL that reference (a Location, a
-- link) names when read against the absolute URL base (RFC 3986 5.2, strict).
function client.resolve(base, reference)
  if type(base) ~= "string" then error("bad argument #1 to 'resolve' (string expected, got " .. type(base) .. ")", 2) end
  if type(reference) ~= "string" then
    error("bad argument #2 to 'resolve' (string expected, got " .. type(reference) .. ")", 2)
  end
  local bs, ba, bp, bq = split_uri(base)
  if not bs then error("bad argument #1 to 'resolve' (absolute URL expected)", 2) end
  local rs, ra, rp, rq, rf = split_uri(reference)
  local s, a, p, q
  if rs then
    s, a, p, q = rs, ra, remove_dots(rp), rq
  elseif ra then
    s, a, p, q = bs, ra, remove_dots(rp), rq
  elseif rp == "" then
    s, a, p, q = bs, ba, bp, rq or bq
  elseif rp:sub(1, 1) == "/" then
    s, a, p, q = bs, ba, remove_dots(rp), rq
  else
    s, a, p, q = bs, ba, remove_dots(merge(ba, bp, rp)), rq
  end
  local out = { s, ":" }
  if a then out[#out + 1] = "//" .. a end
  out[#out + 1] = p
  if q then out[#out + 1] = "?" .. q end
  if rf then out[#out + 1] = "#" .. rf end
  return concat(out)
end

local HTTP_PORTS = { http = 80, https = 443 }

-- Splits an absolute http(s) URL: {scheme, host (lower case), port, path (with the query;
-- the fragment dropped)}, or nil and the reason. ports: the schemes allowed and their default
-- ports (http and https; websocket.lua passes ws and wss). The path is checked here, once for
-- every client: a space or control character in it would split the request line.
local function parse_url(url, ports)
  ports = ports or HTTP_PORTS
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "not an absolute URL (http://host[:port]/path)" end
  scheme = scheme:lower()
  if not ports[scheme] then return nil, "scheme '" .. scheme .. "' is not http" end
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
    port = ports[scheme]
  else
    port = tonumber(port)
    if port < 1 or port > 65535 then return nil, "port out of range in URL" end
  end
  path = path:gsub("#.*$", "")
  if path == "" or path:sub(1, 1) == "?" then path = "/" .. path end
  if path:find("[%c ]") then return nil, "spaces or control characters in the URL's path" end
  return { scheme = scheme, host = host:lower(), port = port, path = path }
end

-- host[:port] as the Host header and URLs write it; the scheme's default port is left out.
local function authority_of(target)
  local host = target.host
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  local secure = target.scheme == "https" or target.scheme == "wss"
  if target.port ~= (secure and 443 or 80) then host = host .. ":" .. target.port end
  return host
end

-- For the WebSocket client (stdlib/websocket.lua): the same URL rules and Host header.
client.parse_url = parse_url
client.authority = authority_of

-- --- options ---------------------------------------------------------------------------------

local OPTIONS = {
  url = "string", host = "string", port = "number", path = "string", method = "string",
  headers = "table", body = "string", timeout = "number", connect_timeout = "number",
  send_timeout = "number", read_timeout = "number", total_timeout = "number",
  follow_redirects = "boolean", keepalive = "boolean", keepalive_timeout = "number",
  keepalive_pool = "number", max_body_size = "number",
  ca = "string", verify = "boolean", tls = "table", -- https: tls.lua's client options
}

local TOKEN = "^[%w!#$%%&'*+.^_`|~-]+$"

local function argerror(fname, argn, message, level)
  error(("bad argument #%d to '%s' (%s)"):format(argn, fname, message), level + 1)
end

-- A copy of the caller's headers (never changed: redirects make new tables), checked: names
-- are tokens, each given once whatever its case, values hold no control character but HTAB.
local function check_headers(given, fname, argn)
  local headers, seen = {}, {}
  for name, value in pairs(given) do
    if type(name) ~= "string" or not name:match(TOKEN) then
      local shown = tostring(name):gsub("%c", function(c) return "\\" .. c:byte() end) -- one line
      argerror(fname, argn, "options.headers: bad header name '" .. shown .. "'", 4)
    end
    local vt = type(value)
    if vt ~= "string" and vt ~= "number" then
      argerror(fname, argn, ("options.headers: %s: string expected, got %s"):format(name, vt), 4)
    end
    local lower = name:lower()
    if seen[lower] then
      argerror(fname, argn, ("options.headers: %s given twice (as %s and %s)"):format(lower, seen[lower], name), 4)
    end
    seen[lower] = name
    if lower == "transfer-encoding" then
      argerror(fname, argn, "options.headers: Transfer-Encoding is not supported (the body is a string)", 4)
    end
    value = tostring(value)
    if value:find("[%z\1-\8\10-\31\127]") then
      argerror(fname, argn, ("options.headers: %s: control character in the value (only HTAB is allowed)"):format(name), 4)
    end
    headers[name] = value
  end
  return headers
end

-- The request's options, checked, with defaults (raises naming the argument when wrong).
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
    opts.target = { scheme = "http", host = opts.host:lower(), port = port, path = path }
  else
    argerror(fname, argn, "options.url or options.host expected", 3)
  end
  local method = opts.method or "GET"
  if not method:match(TOKEN) then argerror(fname, argn, "options.method: not a token", 3) end
  opts.method = method:upper()
  opts.headers = check_headers(opts.headers or {}, fname, argn)
  local timeout = opts.timeout or DEFAULT_TIMEOUT
  opts.connect_timeout = opts.connect_timeout or timeout
  opts.send_timeout = opts.send_timeout or timeout
  opts.read_timeout = opts.read_timeout or timeout
  opts.total_timeout = opts.total_timeout or DEFAULT_TOTAL
  opts.max_body_size = opts.max_body_size or DEFAULT_MAX_BODY
  opts.keepalive = opts.keepalive ~= false
  opts.keepalive_timeout = opts.keepalive_timeout or POOL_IDLE
  opts.keepalive_pool = opts.keepalive_pool or POOL_SIZE
  -- https: the TLS options (ca and verify are shortcuts into them); connections with other
  -- TLS settings are not interchangeable, so the settings are part of the pool key
  local tls_opts = {}
  for k, v in pairs(opts.tls or {}) do tls_opts[k] = v end
  if opts.ca then tls_opts.ca = opts.ca end
  if opts.verify ~= nil then tls_opts.verify = opts.verify end
  if tls_opts.servername then argerror(fname, argn, "options.tls.servername: the URL's host is the name verified", 3) end
  opts.tls = tls_opts
  local parts = {}
  for k, v in pairs(tls_opts) do parts[#parts + 1] = k .. "=" .. tostring(type(v) == "table" and table.concat(v, ",") or v) end
  table.sort(parts)
  opts.tls_key = table.concat(parts, ";")
  return opts
end

-- --- time --------------------------------------------------------------------------------------

local function deadline_error(opts)
  return C.error("ETIMEDOUT", ("request not done within total_timeout (%d ms)"):format(opts.total_timeout))
end

-- The timeout of one wait: the operation's own (0 = none), cut to what is left of the
-- request's total_timeout. Returns it and whether the deadline is the tighter limit, or
-- nil once the deadline has passed.
local function limit(opts, ms)
  local deadline = opts.deadline
  if not deadline then return ms, false end
  local left = deadline - task.now()
  if left <= 0 then return nil end
  left = ceil(left)
  if ms == 0 or left < ms then return left, true end
  return ms, false
end

-- Runs one wait, fn(ms, a, b) -> value | nil, err, with its timeout cut by limit(); an
-- ETIMEDOUT that the deadline caused says so.
local function timed(opts, ms, fn, a, b)
  local cut
  ms, cut = limit(opts, ms)
  if not ms then return nil, deadline_error(opts) end
  local value, err = fn(ms, a, b)
  if value == nil and cut and err.name == "ETIMEDOUT" then err = deadline_error(opts) end
  return value, err
end

local function read_within(ms, sock)
  sock:setTimeout(ms)
  return sock:read()
end

local function write_within(ms, sock, data)
  sock:setTimeout(ms)
  return sock:write(data)
end

local function connect_within(ms, target, opts)
  local tls
  if target.scheme == "https" then
    tls = {}
    for k, v in pairs(opts.tls) do tls[k] = v end
    tls.servername = target.host
  end
  return tcp.connect(target.port, target.host, { timeout = ms, tls = tls })
end

local function timed_read(sock, opts)
  return timed(opts, opts.read_timeout, read_within, sock)
end

-- --- the connection pool ---------------------------------------------------------------------

-- The one place that knows how a socket waits in the pool: parked (true), it keeps reading
-- so that a close by the server is seen, and stops keeping the process alive; unparked, it
-- is an ordinary socket again. Returns whether the socket is still fit for a request.
-- C.park/C.unpark reach into the socket core until sockets have such an operation.
local function idle_socket(sock, parked)
  if parked then return C.park(sock) end
  return C.unpark(sock)
end

local idle = pool.new({
  max_idle = POOL_SIZE,
  idle_timeout = POOL_IDLE,
  park = function(sock) return idle_socket(sock, true) end,
  alive = function(sock) return idle_socket(sock, false) end,
})

-- Connections under one key are interchangeable: same scheme, host, port and TLS settings.
local function pool_key(target, opts)
  local key = target.scheme .. " " .. target.host .. " " .. target.port
  if target.scheme == "https" and opts then key = key .. " " .. opts.tls_key end
  return key
end

-- client.pooled([host, port]) -> idle connections in the pool (to host:port, or in all).
function client.pooled(host, port)
  if host == nil then return idle:stats().idle end
  return idle:stats(pool_key({ scheme = "http", host = host:lower(), port = port or 80 })).idle
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
  local opts = st.opts
  if reusable and st.keepalive and opts.keepalive_timeout > 0 then
    idle:put(st.key, sock, opts.keepalive_timeout, opts.keepalive_pool)
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
  return timed_read(st.sock, st.opts)
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
        if not C.clean_end(st.sock) then -- RFC 9112 9.8: an unclean close is not the end
          return broken(st, C.error("EPROTO", "connection closed without TLS close_notify: the body may be truncated"))
        end
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

local function request_head(opts, target, method, body, headers)
  local lines = { method, " ", target.path, " HTTP/1.1\r\n" }
  local has = {}
  for name, value in pairs(headers) do
    local lower = name:lower()
    if lower ~= "content-length" then -- always the body's own
      has[lower] = true
      lines[#lines + 1] = name .. ": " .. value .. "\r\n"
    end
  end
  if not has.host then lines[#lines + 1] = "Host: " .. authority_of(target) .. "\r\n" end
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

-- Reads the response head, skipping at most MAX_INTERIM interim (1xx) responses:
-- head, bytes after it | nil, err, got_bytes.
local function read_head(sock, opts, method)
  local buf, last, got, interim = "", 0, false, 0
  while true do
    local more = #buf == 0
    while not more do
      local head, err = C.parse_response(buf, last, method == "HEAD")
      if head then
        if head.status >= 200 or head.status == 101 then
          return head, buf:sub(head.length + 1)
        end
        interim = interim + 1 -- informational: the answer follows, unless this never ends
        if interim > MAX_INTERIM then
          return nil, C.error("EPROTO", "more than " .. MAX_INTERIM .. " interim (1xx) responses"), true
        end
        buf, last = buf:sub(head.length + 1), 0
        more = #buf == 0
      elseif err ~= "incomplete" then
        return nil, err, true
      elseif #buf > MAX_HEAD then
        return nil, C.error("EPROTO", "response head larger than " .. MAX_HEAD .. " bytes"), true
      else
        last, more = #buf, true
      end
    end
    local data, err = timed_read(sock, opts)
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

local function new_response(head, rest, sock, key, opts, reusable)
  local res = setmetatable({
    status = head.status,
    reason = head.reason,
    headers = setmetatable(head.headers, HEADERS_MT),
    httpVersion = "1." .. head.minor,
  }, Response)
  local st = {
    sock = sock, key = key, opts = opts, kind = head.body,
    remaining = head.content_length, pending = #rest > 0 and rest or nil,
    keepalive = reusable and opts.keepalive and head.keep_alive and head.status ~= 101,
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

-- One request on one connection, from the pool when one is there: res | nil, err.
local function exchange(opts, target, method, body, headers)
  local key = pool_key(target, opts)
  local head_bytes = request_head(opts, target, method, body, headers)
  local reused = opts.keepalive and idle:take(key) or nil
  local retry = reused and IDEMPOTENT[method]
  while true do
    local sock, err = reused, nil
    if not sock then
      sock, err = timed(opts, opts.connect_timeout, connect_within, target, opts)
      if not sock then return nil, err end
    end
    local sent, sent_err = timed(opts, opts.send_timeout, write_within, sock,
      body and #body > 0 and { head_bytes, body } or head_bytes)
    -- Even when the write failed, the server may have answered before it stopped reading
    -- (a 413 for a body it does not want, then a close): that answer is the result.
    local head, after, got = read_head(sock, opts, method)
    if head and reused and retry and head.status == 408 then
      -- a 408 on a reused connection is the server giving up an idle one as our request
      -- crossed it (as Go's client reads it): a dead connection, not the answer
      head, after, got = nil, C.error("ECONNRESET", "408 on a reused connection"), false
    end
    if head then return new_response(head, after, sock, key, opts, sent) end
    err = sent and after or sent_err -- without a head, read_head's second result is its error
    sock:close()
    if not (reused and retry and not got and err.name ~= "ETIMEDOUT") then return nil, err end
    reused, retry = nil, false -- the pooled connection was dead: once more on a new one
  end
end

-- Where a redirect goes: a new target, or nil, err.
local function redirect_target(from, location)
  -- spaces and non-ASCII bytes (not allowed, but sent) are percent-encoded, as curl does
  location = location:gsub("[ \128-\255]", function(c) return ("%%%02X"):format(c:byte()) end)
  local url = client.resolve(from.scheme .. "://" .. authority_of(from) .. from.path, location)
  local scheme = url:match("^(%a[%w+.-]*):"):lower()
  if scheme ~= "http" and scheme ~= "https" then
    return fail("EINVAL", "redirect to a non-http URL: " .. url:sub(1, 200))
  end
  local target, why = parse_url(url)
  if not target then return fail("EINVAL", "bad redirect location: " .. why) end
  return target
end

-- The headers for the next hop, in a new table: credentials stay with the origin they
-- were meant for (curl and node do the same), and the Content-* headers with the body.
local function redirect_headers(headers, cross_origin, body_dropped)
  local out = {}
  for name, value in pairs(headers) do
    local lower = name:lower()
    if not ((cross_origin and (CREDENTIALS[lower] or lower == "host"))
        or (body_dropped and lower:sub(1, 8) == "content-")) then
      out[name] = value
    end
  end
  return out
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

local REDIRECTS = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }

local function perform(opts)
  local target, method, body, headers = opts.target, opts.method, opts.body, opts.headers
  if opts.total_timeout > 0 then opts.deadline = task.now() + opts.total_timeout end
  local hops = 0
  while true do
    local res, err = exchange(opts, target, method, body, headers)
    if not res then return nil, err end
    local status, location = res.status, res.headers.location
    if not (opts.follow_redirects and location and REDIRECTS[status]) then return res end
    hops = hops + 1
    if hops > MAX_REDIRECTS then
      res:close()
      return fail("ELOOP", "too many redirects (more than " .. MAX_REDIRECTS .. ")")
    end
    discard(res)
    local next_target
    next_target, err = redirect_target(target, location)
    if not next_target then return nil, err end
    -- as fetch does: 303 turns all but HEAD into GET, 301 and 302 turn POST into GET
    local to_get = (status == 303 and method ~= "HEAD" and method ~= "GET")
      or ((status == 301 or status == 302) and method == "POST")
    if to_get then method, body = "GET", nil end
    local cross_origin = next_target.scheme ~= target.scheme or next_target.host ~= target.host
      or next_target.port ~= target.port
    if cross_origin or to_get then headers = redirect_headers(headers, cross_origin, to_get) end
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
