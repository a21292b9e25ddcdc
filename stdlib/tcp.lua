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

local SERVER_OPTIONS = {
  family = "number", host = "string", timeout = "number", tcp_nodelay = "boolean",
  tcp_keepalive = "boolean", tcp_keepidle = "number", tcp_backlog = "number",
  tcp_reuseport = "boolean", read_buffer_size = "number", maxconnections = "number",
  write_buffer_size = "number", send_timeout = "number",
}
local CONNECT_OPTIONS = {
  family = "number", timeout = "number", tcp_nodelay = "boolean", tcp_keepalive = "boolean",
  tcp_keepidle = "number", read_buffer_size = "number", write_buffer_size = "number",
  send_timeout = "number",
}

-- Returns a copy of options with every known option checked; unknown ones are errors
-- (a typo in an option name should not pass silently).
local function check_options(options, known, fname, argn)
  if options == nil then return {} end
  if type(options) ~= "table" then
    error(("bad argument #%d to '%s' (table expected, got %s)"):format(argn, fname, type(options)), 3)
  end
  local copy = {}
  for name, value in pairs(options) do
    local want = known[name]
    if want == nil then
      error(("bad argument #%d to '%s' (unknown option '%s')"):format(argn, fname, tostring(name)), 3)
    end
    if type(value) ~= want then
      error(("bad argument #%d to '%s' (option '%s': %s expected, got %s)")
        :format(argn, fname, name, want, type(value)), 3)
    end
    if want == "number" and (value < 0 or value ~= math.floor(value)) then
      error(("bad argument #%d to '%s' (option '%s' must be a non-negative integer)")
        :format(argn, fname, name), 3)
    end
    copy[name] = value
  end
  if copy.family and copy.family ~= 4 and copy.family ~= 6 then
    error(("bad argument #%d to '%s' (option 'family' must be 4 or 6)"):format(argn, fname), 3)
  end
  for _, name in ipairs({ "read_buffer_size", "write_buffer_size" }) do
    if copy[name] == 0 then
      error(("bad argument #%d to '%s' (option '%s' must be at least 1 KiB)"):format(argn, fname, name), 3)
    end
  end
  return copy
end

local function check_port(port, fname)
  if type(port) == "string" then return port end -- a Unix socket path
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
function tcp.createServer(port, onconnect, options)
  port = check_port(port, "createServer")
  if type(onconnect) ~= "function" then
    error("bad argument #2 to 'createServer' (function expected, got " .. type(onconnect) .. ")", 2)
  end
  local opts = check_options(options, SERVER_OPTIONS, "createServer", 3)
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
function tcp.connect(port, host, options)
  port = check_port(port, "connect")
  if type(host) == "table" and options == nil then host, options = nil, host end
  if host ~= nil and type(host) ~= "string" then
    error("bad argument #2 to 'connect' (string expected, got " .. type(host) .. ")", 2)
  end
  local opts = check_options(options, CONNECT_OPTIONS, "connect", 3)
  if type(port) == "string" then return C.connect(port, nil, opts) end
  local address, err = resolve(host or (opts.family == 6 and "::1" or "127.0.0.1"), opts.family)
  if not address then return nil, err end
  return C.connect(port, address, opts)
end

return tcp
