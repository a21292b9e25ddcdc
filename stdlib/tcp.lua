-- tcp: servers and client connections (seed-api.md, "tcp").
--
--   local tcp = require "tcp"
--   tcp.createServer(8080, function(socket)
--     local line = socket:readline()
--     socket:write({ "you said: ", line, "\n" })
--   end)
--
-- Every connection runs its handler in a task of its own; the socket is closed when the
-- handler returns or raises (the error is reported with a traceback; the server goes on).
-- A path instead of a port means a Unix domain socket.
local C = require "luaio.tcp"

local tcp = {}

tcp.isIP = C.isIP

local options = require "luaio.options"

-- Defaults are tcp.c's (docs/api.md lists them).
local CONNECT_OPTIONS = {
  family = { "integer", values = { 4, 6 } },
  timeout = { "ms" },
  tcp_nodelay = { "boolean" },
  tcp_keepalive = { "boolean" },
  tcp_keepidle = { "integer", min = 0, max = 32767 }, -- seconds; Linux takes no more
  read_buffer_size = { "integer", min = 1, max = 1048576 }, -- KiB
  write_buffer_size = { "integer", min = 1, max = 1048576 }, -- KiB: a write waits above it
  send_timeout = { "ms" }, -- written bytes the peer takes nothing of for this long: closed
  tls = { { "boolean", "table" } }, -- true or tls.lua's client options
}
local SERVER_OPTIONS = {
  host = { "cstring" },
  tcp_backlog = { "integer", min = 0, max = 65535 },
  tcp_reuseport = { "boolean" },
  maxconnections = { "integer", min = 0, max = 2147483647 },
}
for name, rule in pairs(CONNECT_OPTIONS) do SERVER_OPTIONS[name] = rule end
SERVER_OPTIONS.tls = { "table" } -- tls.lua's server options

local function check_options(opts, spec, argn, fname)
  opts = options.check(opts, spec, argn, fname, 3)
  return opts
end

local function check_port(port, fname)
  if type(port) == "string" then -- a Unix socket path
    options.cstring(port, 1, fname, "socket path", 3) -- not a tail call: level 3 counts this frame
    return port
  end
  if type(port) ~= "number" or port ~= math.floor(port) or port < 0 or port > 65535 then
    error(("bad argument #1 to '%s' (port number 0-65535 or socket path expected, got %s)")
      :format(fname, type(port) == "number" and tostring(port) or type(port)), 3)
  end
  return port
end

-- Resolves host to one numeric address of the family asked for (or either).
local function resolve(host, family)
  if C.isIP(host) ~= 0 then return host end
  local dns = require "dns"
  local addrs, err
  if family ~= 6 then addrs, err = dns.resolve4(host) end
  if (not addrs or #addrs == 0) and family ~= 4 then addrs, err = dns.resolve6(host) end
  if not addrs or #addrs == 0 then return nil, err end
  return addrs[1]
end

-- tcp.createServer(port, onconnect[, options]) -> server | nil, err
function tcp.createServer(port, onconnect, given)
  port = check_port(port, "createServer")
  if type(onconnect) ~= "function" then
    error("bad argument #2 to 'createServer' (function expected, got " .. type(onconnect) .. ")", 2)
  end
  local opts = check_options(given, SERVER_OPTIONS, 3, "createServer")
  if opts.tls then opts.tls = require("tls").server(opts.tls, 3, "createServer") end
  if type(port) == "number" then
    if opts.host then
      local host, err = resolve(opts.host, opts.family)
      if not host then return nil, err end
      opts.host = host
    else
      opts.host = opts.family == 6 and "::" or "0.0.0.0"
    end
  end
  return C.listen(port, onconnect, opts)
end

-- tcp.connect(port[, host][, options]) -> socket | nil, err. host defaults to 127.0.0.1.
function tcp.connect(port, host, given)
  port = check_port(port, "connect")
  local argn = 3
  if type(host) == "table" and given == nil then host, given, argn = nil, host, 2 end
  if host ~= nil then options.cstring(host, 2, "connect") end
  local opts = check_options(given, CONNECT_OPTIONS, argn, "connect")
  local name = host or (opts.family == 6 and "::1" or "127.0.0.1")
  if opts.tls then
    local servername
    opts.tls, servername = require("tls").client(opts.tls, argn, "connect")
    opts.servername = servername or (type(port) == "number" and name or nil)
  else
    opts.tls = nil
  end
  if type(port) == "string" then return C.connect(port, nil, opts) end
  local address, err = resolve(name, opts.family)
  if not address then return nil, err end
  return C.connect(port, address, opts)
end

-- socket:starttls([options]) -> true | nil, err: TLS from here on. options: tls.lua's client
-- options (servername is then required to verify), or its server ones with server = true.
local socket_methods = debug.getregistry()["luaio.socket"].__index
local raw_starttls = socket_methods.starttls
function socket_methods.starttls(socket, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'starttls' (table expected, got " .. type(opts) .. ")", 2)
  end
  local t = require "tls"
  if opts and opts.server then
    local copy = {}
    for k, v in pairs(opts) do if k ~= "server" then copy[k] = v end end
    return raw_starttls(socket, t.server(copy, 1, "starttls"))
  end
  local ctx, servername = t.client(opts or {}, 1, "starttls")
  return raw_starttls(socket, ctx, servername)
end

-- server:setTLS(options): new connections use these certificates (tls.lua's server options);
-- those open keep theirs. For a renewed certificate: on SIGHUP, say.
local server_methods = debug.getregistry()["luaio.server"].__index
local raw_settls = server_methods.setTLS
function server_methods.setTLS(server, opts)
  local ctx, err = require("tls").server(opts, 1, "setTLS", true)
  if not ctx then return nil, err end
  return raw_settls(server, ctx)
end

return tcp
