-- tls: TLS contexts for clients and servers, the options every module that speaks TLS
-- takes (tcp, http, https, websocket, redis, mysql). The transport itself is C
-- (runtime/net/tls.c, under the connection core).
--
--   tcp.connect(443, "example.com", { tls = true })                    -- verify, SNI
--   tcp.connect(8443, "127.0.0.1", { tls = { ca = "ca.pem", servername = "test" } })
--   tcp.createServer(8443, onconnect, { tls = { cert = "cert.pem", key = "key.pem" } })
--
-- Certificates, keys and CAs are PEM text or the path of a PEM file (on disk, or in the
-- app's bundle). Contexts are made once per distinct options and shared: they hold the
-- parsed certificates, the client's session cache and the root store.
local C = require "luaio.tls"
local options = require "luaio.options"
local E = require "luaio.error"

local concat, ipairs, pairs, sort, tostring, type = table.concat, ipairs, pairs, table.sort, tostring, type

local tls = {}

-- tls.roots() -> {source, path, count}: the store clients verify against when they name no
-- `ca`: "SSL_CERT_FILE", "SSL_CERT_DIR", "system" (a bundle on disk) or "embedded" (the
-- Mozilla store compiled into luaio, for FROM scratch images).
tls.roots = C.roots

local VERSIONS = { "1.2", "1.3" }

local CLIENT = {
  servername = { "cstring" }, -- SNI and the name verified (default: the host connected to)
  verify = { "boolean" },    -- false: no verification at all, for tests only (warned about)
  ca = { "string" },         -- PEM or path: trust these instead of the root store
  cert = { "string" },       -- a client certificate (mutual TLS) ...
  key = { "string" },        -- ... and its key
  alpn = { "table" },        -- {"h2", "http/1.1"}
  min_version = { "string", values = VERSIONS },
  ciphers = { "string" },      -- TLS 1.2 cipher list (OpenSSL syntax)
  ciphersuites = { "string" }, -- TLS 1.3 suites
  handshake_timeout = { "ms" },
}

local SERVER = {
  cert = { "string" },
  key = { "string" },
  certs = { "table" },       -- {{cert = ..., key = ...}, ...}: chosen by the client's SNI
  sni = { "function" },      -- sni(servername) -> a context from tls.server{...}, or nil
  alpn = { "table" },        -- the server's preference order
  client_ca = { "string" },  -- PEM or path: the CAs client certificates must chain to
  verify_client = { "boolean" }, -- require a client certificate
  min_version = { "string", values = VERSIONS },
  ciphers = { "string" },
  ciphersuites = { "string" },
  handshake_timeout = { "ms" },
  -- true: OpenSSL keeps TLS 1.3 connections after the handshake (9 KB or more each, where
  -- luaio's own record layer holds 200 bytes); for comparison, and a way back
  openssl_records = { "boolean" },
}

-- PEM text given as is, or read from a file (disk first, then the app's bundle); or nil and
-- why not.
local function read_pem(value, name)
  if value:find("-----BEGIN", 1, true) then return value end
  if value:find("\0", 1, true) then -- io.open would cut the path there
    return nil, ("option '%s': PEM text or a path without zero bytes expected"):format(name)
  end
  local f = io.open(value, "rb")
  if f then
    local text = f:read("*a")
    f:close()
    return text
  end
  -- the bundle holds relative paths only (bundle.read raises for others, from a C frame
  -- that the sanitizer build then sees poisoned: docs/internals.md, Conventions)
  if value:sub(1, 1) ~= "/" and not value:find("..", 1, true) then
    local ok, text = pcall(require("bundle").read, value)
    if ok and text then return text end
  end
  return nil, ("option '%s': '%s' is neither PEM text nor a readable file"):format(name, value)
end

local function pem(value, name, argn, fname)
  local text, why = read_pem(value, name)
  if not text then options.argerror(argn, fname, why, 4) end
  return text
end

local function check_alpn(list, argn, fname)
  for i = 1, #list do
    local p = list[i]
    if type(p) ~= "string" or #p == 0 or #p > 255 then
      options.argerror(argn, fname, "option 'alpn': an array of protocol names (1 to 255 bytes) expected", 4)
    end
  end
end

-- A key for the context cache: the checked options, in a stable order.
local function cache_key(opts)
  local parts = {}
  for k, v in pairs(opts) do
    if type(v) == "table" then
      local items = {}
      for i = 1, #v do
        local item = v[i]
        items[i] = type(item) == "table" and (tostring(item.cert) .. "\0" .. tostring(item.key)) or tostring(item)
      end
      v = concat(items, "\1")
    end
    parts[#parts + 1] = k .. "=" .. tostring(v)
  end
  sort(parts)
  return concat(parts, "\2")
end

local cache = setmetatable({}, { __mode = "v" }) -- contexts, by their options
local warned

-- tls.client(options) -> context, servername: for tcp.connect, starttls and the clients.
-- options: true, or the table CLIENT lists.
function tls.client(opts, argn, fname)
  argn, fname = argn or 1, fname or "client"
  if opts == true then opts = {} end
  local o = options.check(opts, CLIENT, argn, fname, 3)
  if o.ca then o.ca = pem(o.ca, "ca", argn, fname) end
  if o.cert then o.cert = pem(o.cert, "cert", argn, fname) end
  if o.key then o.key = pem(o.key, "key", argn, fname) end
  if o.alpn then check_alpn(o.alpn, argn, fname) end
  if (o.cert == nil) ~= (o.key == nil) then
    options.argerror(argn, fname, "options 'cert' and 'key' go together", 3)
  end
  if o.verify == false and not warned then
    warned = true
    io.stderr:write("luaio: TLS certificate verification is off (verify = false): for tests only\n")
  end
  local servername = o.servername
  o.servername = nil
  local key = "client\3" .. cache_key(o)
  local ctx = cache[key]
  if not ctx then
    local err
    ctx, err = C.context(o, false)
    if not ctx then error(("bad argument #%d to '%s' (%s)"):format(argn, fname, tostring(err)), 3) end
    cache[key] = ctx
  end
  return ctx, servername
end

-- Reads the files a server context names and makes it: context, or nil, err (ETLS) when a
-- file is unreadable, a PEM does not parse or a key does not match its certificate.
local function server_context(o)
  local function load(name)
    if o[name] == nil then return true end
    local text, why = read_pem(o[name], name)
    o[name] = text
    return text ~= nil, why
  end
  for _, name in ipairs({ "cert", "key", "client_ca" }) do
    local ok, why = load(name)
    if not ok then return nil, E.new("ETLS", why) end
  end
  if o.certs then
    local certs = {}
    for i, entry in ipairs(o.certs) do
      local cert, why = read_pem(entry.cert, "certs")
      local key, kwhy = read_pem(entry.key, "certs")
      if not cert or not key then return nil, E.new("ETLS", why or kwhy) end
      certs[i] = { cert = cert, key = key }
    end
    o.certs = certs
  end
  return C.context(o, true)
end

-- tls.server(options) -> context: for tcp.createServer, http.createServer, server:setTLS,
-- starttls on the server side, and sni callbacks. Misused options raise; so do unreadable
-- or mismatched certificates, unless `soft` (server:setTLS, a reload): nil, err then.
function tls.server(opts, argn, fname, soft)
  argn, fname = argn or 1, fname or "server"
  local o = options.check(opts, SERVER, argn, fname, 3)
  if o.alpn then check_alpn(o.alpn, argn, fname) end
  if o.certs then
    for _, entry in ipairs(o.certs) do
      if type(entry) ~= "table" or type(entry.cert) ~= "string" or type(entry.key) ~= "string" then
        options.argerror(argn, fname, "option 'certs': an array of {cert = ..., key = ...} expected", 3)
      end
    end
  end
  if (o.cert == nil) ~= (o.key == nil) then
    options.argerror(argn, fname, "options 'cert' and 'key' go together", 3)
  end
  if o.verify_client and not o.client_ca then -- else no client certificate could verify
    options.argerror(argn, fname, "option 'verify_client' needs 'client_ca'", 3)
  end
  if not o.cert and not o.certs and not o.sni then
    options.argerror(argn, fname, "a server needs 'cert' and 'key', 'certs' or 'sni'", 3)
  end
  local ctx, err = server_context(o)
  if not ctx then
    if soft then return nil, err end
    error(("bad argument #%d to '%s' (%s)"):format(argn, fname, tostring(err)), 3)
  end
  return ctx
end

return tls
