-- websocket: WebSocket servers and clients (RFC 6455), permessage-deflate (RFC 7692) and
-- publish/subscribe. The protocol is C (runtime/proto/ws/ws.c); here are the handshakes, the
-- options and the router shortcut.
--
--   local websocket = require "websocket"
--   router:websocket("/chat", function(ws, req)
--     ws:subscribe("chat")
--     while true do
--       local data, kind = ws:receive()
--       if not data then break end
--       websocket.publish("chat", data, kind)
--     end
--   end)
--
-- See docs/api.md for the object and the options.
local C = require "luaio.websocket"
local options = require "luaio.options"
local errors = require "luaio.error"
local task = require "task"

local concat, type, tostring, tonumber, ipairs = table.concat, type, tostring, tonumber, ipairs

local websocket = {}

local COMMON = {
  max_message_size = { "integer", min = 1, max = 1073741824 }, -- bytes; default 16 MiB
  max_backlog = { "integer", min = 1, max = 1073741824 }, -- bytes queued before send waits; 1 MiB
  compress = { "boolean" }, -- permessage-deflate when the peer agrees; default false
  ping_interval = { "ms" }, -- a ping after this long without a frame; default 30 s
  idle_timeout = { "ms" }, -- dropped after this long without a frame; default 60 s
  close_timeout = { "ms" }, -- how long close() waits for the peer's close; default 5 s
  send_timeout = { "ms" }, -- a send waiting on a peer that takes nothing for this long fails; 60 s
  on_pong = { "function" }, -- on_pong(data) for every pong
}

-- Subprotocols are tokens (RFC 6455 4.1): a list with anything else is refused up front.
local function tokens(list)
  if type(list) ~= "table" then return nil end
  for _, p in ipairs(list) do
    if type(p) ~= "string" or not p:match("^[%w!#$%%&'*+%-.^_`|~]+$") then return "tokens" end
  end
end

local SERVER_OPTIONS = {
  protocols = { { "table", "function" }, check = tokens }, -- supported subprotocols, preferred first, or fn(offered, req)
  origins = { { "table", "function" } }, -- allowed Origin values, or fn(origin, req) -> boolean
}
local CLIENT_OPTIONS = {
  headers = { "table" },
  protocols = { "table", check = tokens },
  timeout = { "ms" }, -- a deadline for the connect and the handshake together; default 10 s
  tls = { { "boolean", "table" } }, -- wss://: tcp.connect's tls options (ca, servername, verify...)
}
for name, rule in pairs(COMMON) do
  SERVER_OPTIONS[name] = rule
  CLIENT_OPTIONS[name] = rule
end

-- The options C.accept and C.adopt read.
local function core_options(opts)
  return {
    max_message_size = opts.max_message_size,
    max_backlog = opts.max_backlog,
    ping_interval = opts.ping_interval,
    idle_timeout = opts.idle_timeout,
    close_timeout = opts.close_timeout,
    send_timeout = opts.send_timeout,
    on_pong = opts.on_pong,
  }
end

-- --- header values -----------------------------------------------------------------------

-- The comma-separated elements of a header value, trimmed, empty ones dropped.
local function list(value)
  local items = {}
  for item in (value or ""):gmatch("[^,]+") do
    item = item:match("^[ \t]*(.-)[ \t]*$")
    if item ~= "" then items[#items + 1] = item end
  end
  return items
end

local function has_token(value, token)
  for _, item in ipairs(list(value)) do
    if item:lower() == token then return true end
  end
  return false
end

-- Sec-WebSocket-Extensions: offers {name = "permessage-deflate", params = {{name, value}...}}.
-- Values may be quoted strings (RFC 6455 9.1). nil when the header is malformed.
local function extensions(value)
  local offers = {}
  for _, item in ipairs(list(value)) do
    local parts = {}
    for part in (item .. ";"):gmatch("([^;]*);") do parts[#parts + 1] = part:match("^[ \t]*(.-)[ \t]*$") end
    local offer = { name = parts[1]:lower(), params = {} }
    if not offer.name:match("^[%w!#$%%&'*+%-.^_`|~]+$") then return nil end
    for i = 2, #parts do
      local name, v = parts[i]:match("^([%w_%-]+)[ \t]*=[ \t]*(.-)$")
      name = name or parts[i]:match("^([%w_%-]+)$")
      if not name then return nil end
      if v then v = v:match('^"(.*)"$') or v end
      offer.params[#offer.params + 1] = { name:lower(), v }
    end
    offers[#offers + 1] = offer
  end
  return offers
end

-- Window bits from a parameter value: 8-15 as digits, or nil.
local function bits(v)
  local n = v and v:match("^%d%d?$") and tonumber(v)
  return n and n >= 8 and n <= 15 and n or nil
end

-- The server's answer to one permessage-deflate offer: the response value and the options
-- for C.accept, or nil when the offer cannot be accepted as made (RFC 7692 7.1).
local function accept_deflate(offer)
  local seen, server_bits, client_no_takeover = {}, 15, false
  for _, p in ipairs(offer.params) do
    local name, v = p[1], p[2]
    if seen[name] then return nil end
    seen[name] = true
    if name == "server_no_context_takeover" then
      if v then return nil end
    elseif name == "client_no_context_takeover" then
      if v then return nil end
      client_no_takeover = true
    elseif name == "server_max_window_bits" then
      -- zlib cannot make a 256-byte window (8): such an offer is declined
      server_bits = bits(v)
      if not server_bits or server_bits < 9 then return nil end
    elseif name == "client_max_window_bits" then
      if v and not bits(v) then return nil end -- we ask no limit of the client: we inflate
                                                -- with a 32 KiB window
    else
      return nil
    end
  end
  -- We never keep our compression context (so no connection holds a deflate stream), and
  -- say so even when not asked (7.1.1.1).
  local answer = { "permessage-deflate", "server_no_context_takeover" }
  if client_no_takeover then answer[#answer + 1] = "client_no_context_takeover" end
  if seen.server_max_window_bits then answer[#answer + 1] = "server_max_window_bits=" .. server_bits end
  return concat(answer, "; "), server_bits, not client_no_takeover
end

-- --- the server ------------------------------------------------------------------------------

local function refuse(res, status, why, extra)
  if not res.headersSent then
    res:status(status)
    res:setHeader("Content-Type", "text/plain")
    for name, value in pairs(extra or {}) do res:setHeader(name, value) end
    res:finish(why .. "\n")
  end
  return nil, errors.new("EPROTO", why)
end

local function choose_protocol(protocols, offered, req)
  if type(protocols) == "function" then
    local chosen = protocols(offered, req)
    for _, p in ipairs(offered) do
      if p == chosen then return chosen end
    end
    return nil
  end
  for _, mine in ipairs(protocols) do
    for _, p in ipairs(offered) do
      if p == mine then return mine end
    end
  end
  return nil
end

local function origin_allowed(origins, origin, req)
  if type(origins) == "function" then return origins(origin, req) and true or false end
  for _, o in ipairs(origins) do
    if o == origin then return true end
  end
  return false
end

local function upgrade(req, res, opts)
  local up, connection, version, key, protocol, ext, origin, length, te = C.headers(res, "upgrade", "connection",
    "sec-websocket-version", "sec-websocket-key", "sec-websocket-protocol", "sec-websocket-extensions", "origin",
    "content-length", "transfer-encoding")
  if req.method ~= "GET" then return refuse(res, 400, "a WebSocket handshake is a GET") end
  if req.httpVersion ~= "1.1" then return refuse(res, 400, "a WebSocket handshake needs HTTP/1.1") end
  -- A GET with a body is no handshake (and its bytes would be taken for frames).
  if te or (length and length ~= "0") then return refuse(res, 400, "a WebSocket handshake has no body") end
  if not has_token(up, "websocket") then return refuse(res, 400, "Upgrade: websocket expected") end
  if not has_token(connection, "upgrade") then return refuse(res, 400, "Connection: Upgrade expected") end
  if version ~= "13" then
    return refuse(res, 426, "Sec-WebSocket-Version 13 expected", { ["Sec-WebSocket-Version"] = "13" })
  end
  if not key or not C.key_ok(key) then return refuse(res, 400, "bad Sec-WebSocket-Key") end
  if opts.origins and not origin_allowed(opts.origins, origin, req) then
    return refuse(res, 403, "origin not allowed")
  end
  local core = core_options(opts)
  if protocol and opts.protocols then
    core.protocol = choose_protocol(opts.protocols, list(protocol), req)
  end
  if opts.compress and ext then
    local offers = extensions(ext)
    if not offers then return refuse(res, 400, "malformed Sec-WebSocket-Extensions") end
    for _, offer in ipairs(offers) do
      if offer.name == "permessage-deflate" then
        local answer, server_bits, peer_takeover = accept_deflate(offer)
        if answer then
          core.extensions, core.deflate_bits, core.peer_takeover = answer, server_bits, peer_takeover
          break
        end
      end
    end
  end
  res:setHeader("Upgrade", "websocket")
  res:setHeader("Connection", "Upgrade")
  res:setHeader("Sec-WebSocket-Accept", C.accept_key(key))
  if core.protocol then res:setHeader("Sec-WebSocket-Protocol", core.protocol) end
  if core.extensions then res:setHeader("Sec-WebSocket-Extensions", core.extensions) end
  return C.accept(res, core)
end

-- websocket.upgrade(req, res[, options]) -> ws | nil, err. Inside an HTTP handler: answers
-- the handshake (101) and returns the websocket, which closes when the handler returns. A
-- request that is not a valid upgrade is answered (400, 426 for another version, 403 for an
-- origin not allowed) and gets nil, err.
function websocket.upgrade(req, res, given)
  if type(req) ~= "table" then options.argerror(1, "upgrade", "request expected, got " .. type(req)) end
  if type(res) ~= "userdata" or getmetatable(res) ~= debug.getregistry()["luaio.http.response"] then
    options.argerror(2, "upgrade", "response expected, got " .. type(res))
  end
  local opts = options.check(given, SERVER_OPTIONS, 3, "upgrade")
  return upgrade(req, res, opts)
end

-- websocket.handler(fn[, options]) -> an HTTP handler that upgrades and runs fn(ws, req)
-- (what router:websocket uses).
-- (websocket._handler: the same for router:websocket, whose options are argument argn of
-- fname, errors raised at `level` above its caller)
local function handler(fn, given, fname, argn, level)
  local opts = options.check(given, SERVER_OPTIONS, argn, fname, level + 1)
  return function(req, res)
    local ws = upgrade(req, res, opts)
    if ws then return fn(ws, req) end
  end
end
websocket._handler = handler

function websocket.handler(fn, given)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'handler' (function expected, got " .. type(fn) .. ")", 2)
  end
  local h = handler(fn, given, "handler", 2, 2)
  return h
end

websocket.publish = C.publish
websocket.subscribers = C.subscribers

-- --- the client ----------------------------------------------------------------------------------

local WS_PORTS = { ws = 80, wss = 443 }

-- ws://host[:port][/path][?query] -> secure, host, port, target, authority; or nil, why.
-- The rules are the HTTP client's (http_client.lua), so a URL one refuses the other refuses
-- too: no user info, no space or control character in the path (request splitting).
local function parse_url(url)
  local scheme = url:match("^(%a[%w+.-]*)://")
  if not scheme or not WS_PORTS[scheme:lower()] then return nil end
  local http_client = require "http_client"
  local t, why = http_client.parse_url(url, WS_PORTS)
  if not t then return nil, why end
  return t.scheme == "wss", t.host, t.port, t.path, http_client.authority(t)
end

local function check_header(name, value)
  if type(name) ~= "string" or not name:match("^[%w!#$%%&'*+%-.^_`|~]+$") then
    error("bad argument #2 to 'connect' (option 'headers': bad header name " .. tostring(name) .. ")", 3)
  end
  value = tostring(value)
  if value:find("[\r\n%z]") then
    error("bad argument #2 to 'connect' (option 'headers': control character in " .. name .. ")", 3)
  end
  return value
end

local MAX_HEAD = 65536 -- a response head larger than this is refused

-- The time left until deadline (task.now() ms) as the socket's timeout for its next wait,
-- or nil, ETIMEDOUT once it has passed. Each wait is cut to what is left, so a server that
-- trickles its answer a byte at a time cannot stretch the handshake past the deadline.
local function late()
  return nil, errors.new("ETIMEDOUT", "the handshake was not done within timeout")
end

local function within(sock, deadline)
  local left = deadline - task.now()
  if left <= 0 then return late() end
  sock:setTimeout(math.ceil(left))
  return true
end

-- Reads the response head by the deadline: status, headers (lower-case names, repeats
-- joined with ", "), and the bytes that came right behind the head (frames: they are the
-- websocket's).
local function read_head(sock, deadline)
  local parts, size, tail, head, rest = {}, 0, "", nil, nil
  while not head do
    local ok, err = within(sock, deadline)
    if not ok then return nil, err end
    local data
    data, err = sock:read()
    if not data then
      if err.name == "ETIMEDOUT" then return late() end -- the read waited for what was left
      return nil, err
    end
    parts[#parts + 1] = data
    size = size + #data
    if (tail .. data):find("\r\n\r\n", 1, true) then -- only now are the parts joined
      local all = concat(parts)
      local e = all:find("\r\n\r\n", 1, true)
      head, rest = all:sub(1, e + 1), all:sub(e + 4)
    elseif size > MAX_HEAD then
      return nil, errors.new("EPROTO", "response head over " .. MAX_HEAD .. " bytes")
    else
      tail = (tail .. data):sub(-3)
    end
  end
  local lines = head:gmatch("(.-)\r?\n")
  local line = lines()
  local status = line:match("^HTTP/1%.[01] (%d%d%d)")
  if not status then return nil, errors.new("EPROTO", "not an HTTP response: " .. line:sub(1, 80)) end
  local headers = {}
  for l in lines do
    local name, value = l:match("^([^:]+):[ \t]*(.-)[ \t]*$")
    if not name then return nil, errors.new("EPROTO", "malformed header line in the response") end
    name = name:lower()
    headers[name] = headers[name] and headers[name] .. ", " .. value or value
  end
  return tonumber(status), headers, rest
end

-- The server's permessage-deflate answer: deflate bits and peer takeover, or nil, why.
local function client_deflate(value)
  local offers = extensions(value)
  if not offers or #offers ~= 1 or offers[1].name ~= "permessage-deflate" then
    return nil, "the server answered with extensions we did not offer: " .. value
  end
  local seen, our_bits, peer_takeover = {}, 15, true
  for _, p in ipairs(offers[1].params) do
    local name, v = p[1], p[2]
    if seen[name] then return nil, "repeated " .. name end
    seen[name] = true
    if name == "server_no_context_takeover" and not v then
      peer_takeover = false
    elseif name == "client_no_context_takeover" and not v then
      -- we never keep our context anyway
    elseif name == "server_max_window_bits" and bits(v) then
      -- we inflate with a 32 KiB window: any size the server uses is fine
    elseif name == "client_max_window_bits" and bits(v) then
      our_bits = bits(v)
      if our_bits < 9 then return nil, "client_max_window_bits=8 is not supported" end
    else
      return nil, "bad permessage-deflate parameter " .. name
    end
  end
  return our_bits, peer_takeover
end

local function handshake(sock, opts, target, authority, deadline)
  local key = C.new_key()
  local lines = {
    "GET " .. target .. " HTTP/1.1", "Host: " .. authority, "Upgrade: websocket", "Connection: Upgrade",
    "Sec-WebSocket-Key: " .. key, "Sec-WebSocket-Version: 13",
  }
  if opts.protocols and #opts.protocols > 0 then
    lines[#lines + 1] = "Sec-WebSocket-Protocol: " .. concat(opts.protocols, ", ")
  end
  if opts.compress then
    lines[#lines + 1] = "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; client_max_window_bits"
  end
  for name, value in pairs(opts.headers or {}) do
    lines[#lines + 1] = name .. ": " .. check_header(name, value)
  end
  lines[#lines + 1] = "\r\n"
  local ok, err = within(sock, deadline)
  if ok then ok, err = sock:write(concat(lines, "\r\n")) end
  if not ok then return nil, err end
  local status, headers, rest = read_head(sock, deadline)
  if not status then return nil, headers end
  local function bad(why) return nil, errors.new("EPROTO", why) end
  if status ~= 101 then return bad("the server answered " .. status .. ", not 101") end
  if not has_token(headers.upgrade, "websocket") then return bad("no Upgrade: websocket in the answer") end
  if not has_token(headers.connection, "upgrade") then return bad("no Connection: Upgrade in the answer") end
  if headers["sec-websocket-accept"] ~= C.accept_key(key) then return bad("wrong Sec-WebSocket-Accept") end
  local core = core_options(opts)
  local protocol = headers["sec-websocket-protocol"]
  if protocol then
    local offered = false
    for _, p in ipairs(opts.protocols or {}) do offered = offered or p == protocol end
    if not offered then return bad("the server chose a subprotocol we did not offer: " .. protocol) end
    core.protocol = protocol
  end
  local ext = headers["sec-websocket-extensions"]
  if ext then
    if not opts.compress then return bad("the server answered with extensions we did not offer: " .. ext) end
    local our_bits, peer_takeover = client_deflate(ext)
    if not our_bits then return bad(peer_takeover) end
    core.extensions, core.deflate_bits, core.peer_takeover = ext, our_bits, peer_takeover
  end
  return C.adopt(sock, core, rest)
end

-- websocket.connect(url[, options]) -> ws | nil, err: ws://, or wss:// (TLS, verified as
-- tcp.connect verifies: options.tls adds ca, servername, ...).
function websocket.connect(url, given)
  if type(url) ~= "string" then
    error("bad argument #1 to 'connect' (string expected, got " .. type(url) .. ")", 2)
  end
  local opts = options.check(given, CLIENT_OPTIONS, 2, "connect")
  local secure, host, port, target, authority = parse_url(url)
  if secure == nil then
    -- the URL as %q shows it: its control characters cannot break the message's line
    error("bad argument #1 to 'connect' (" .. (host or "ws:// or wss:// URL expected") .. ", got " ..
      ("%q"):format(url):gsub("\\\n", "\\n") .. ")", 2)
  end
  if opts.tls ~= nil and not secure then
    error("bad argument #2 to 'connect' (option 'tls' is for wss:// URLs)", 2)
  end
  if secure and opts.tls == false then
    error("bad argument #2 to 'connect' (wss:// with tls = false)", 2)
  end
  for name, value in pairs(opts.headers or {}) do check_header(name, value) end
  local timeout = opts.timeout or 10000
  local deadline = timeout > 0 and task.now() + timeout or math.huge -- 0 or math.huge: none
  local sock, err = require("tcp").connect(port, host, { timeout = timeout, tls = secure and (opts.tls or true) or nil })
  if not sock then return nil, err end
  local ws
  ws, err = handshake(sock, opts, target, authority, deadline)
  if not ws then
    sock:close()
    return nil, err
  end
  return ws
end

return websocket
