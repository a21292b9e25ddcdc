-- cookie: the Cookie request header parsed, Set-Cookie values built (RFC 6265), and signed
-- cookies (HMAC-SHA256).
--
--   local cookie = require "cookie"
--   cookie.set(res, "theme", "dark", { max_age = 30 * 86400 * 1000 })   -- HttpOnly, SameSite=Lax
--   cookie.get(req, "theme")                                            --> "dark"
--   cookie.set(res, "uid", "42", { secret = SECRET })                   -- signed
--   cookie.get(req, "uid", SECRET)                                      --> "42", or nil if forged
--
-- Its own module rather than part of `http`: it is plain text work with no tie to the server
-- (a client or a test reads the same headers), and only apps that use cookies load it.
local crypto = require "crypto"
local options = require "luaio.options"

local type, tostring, ipairs, floor = type, tostring, ipairs, math.floor
local format, byte, char = string.format, string.byte, string.char

local cookie = {}

-- Raises at `level` above the function that calls argerror (2, the default: its caller). The
-- helpers below take the same `level`, counted from their own caller.
local function argerror(n, fname, msg, level)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), (level or 2) + 1)
end

-- A cookie name is an RFC 9110 token.
local function check_name(name, n, fname, level)
  if type(name) ~= "string" or name == "" or name:find("[^%w!#$%%&'*+%-.^_`|~]") then
    argerror(n, fname, "cookie name (a token) expected, got " .. (type(name) == "string" and "'" .. name .. "'" or type(name)),
      (level or 2) + 1)
  end
end

-- Values are written as cookie-octets (RFC 6265 4.1.1): anything else, and %, as %XX.
local function encode(value)
  return (value:gsub("[^!#$&'()*+%-./0-9:<=>?@A-Z%[%]^_`a-z{|}~]", function(c) return format("%%%02X", byte(c)) end))
end

local function hexchar(h) return char(tonumber(h, 16)) end

local function decode(value)
  if value:find("%", 1, true) then value = value:gsub("%%(%x%x)", hexchar) end
  return value
end

-- cookie.parse(header) -> {name = value}: the pairs of a Cookie header (nil gives {}).
-- Values are %XX-decoded and unquoted; when a name comes twice the first wins (browsers send
-- the cookie of the longest path first).
function cookie.parse(header)
  local jar = {}
  if header == nil then return jar end
  if type(header) ~= "string" then argerror(1, "parse", "string expected, got " .. type(header)) end
  for pair in header:gmatch("[^;]+") do
    local name, value = pair:match("^%s*([^=]-)%s*=%s*(.-)%s*$")
    if name and name ~= "" and jar[name] == nil then
      if value:sub(1, 1) == '"' and value:sub(-1) == '"' and #value > 1 then value = value:sub(2, -2) end
      jar[name] = decode(value)
    end
  end
  return jar
end

-- --- signing ----------------------------------------------------------------------------------

-- A secret is a string of 16 bytes or more, or an array of them: the first signs, any
-- verifies (rotation: put the new secret first, drop the old one once its cookies expired).
local function secrets(secret, n, fname, level)
  level = (level or 2) + 1
  local list = type(secret) == "table" and secret or { secret }
  if #list == 0 then argerror(n, fname, "secret expected", level) end
  for _, s in ipairs(list) do
    if type(s) ~= "string" or #s < 16 then argerror(n, fname, "secret of at least 16 bytes expected", level) end
  end
  return list
end

-- The MAC covers the name too, so a signed value cannot be moved to another cookie.
local function mac(secret, name, value)
  return crypto.base64url(crypto.hmac_sha256(secret, name .. "=" .. value))
end

-- cookie.sign(name, value, secret) -> "value.MAC" (MAC: 43 characters of base64url)
function cookie.sign(name, value, secret)
  check_name(name, 1, "sign")
  if type(value) ~= "string" then argerror(2, "sign", "string expected, got " .. type(value)) end
  return value .. "." .. mac(secrets(secret, 3, "sign")[1], name, value)
end

-- The value of signed when its MAC verifies with one of the secrets in list (checked).
local function verify(name, signed, list)
  if type(signed) ~= "string" then return nil end
  local value, tag = signed:match("^(.*)%.([%w_%-]+)$")
  if not value then return nil end
  for _, s in ipairs(list) do
    if crypto.equal(mac(s, name, value), tag) then return value end
  end
  return nil
end

-- cookie.unsign(name, signed, secret) -> value, or nil when the MAC does not verify
-- (compared in constant time)
function cookie.unsign(name, signed, secret)
  check_name(name, 1, "unsign")
  return (verify(name, signed, secrets(secret, 3, "unsign")))
end

-- --- Set-Cookie ---------------------------------------------------------------------------------

local SAME_SITE = { strict = "Strict", lax = "Lax", none = "None" }

local ATTRIBUTES = {
  max_age = { "ms" },                      -- a duration in ms, sent in seconds; 0 deletes
  expires = { "number" },                  -- a date: Unix time in seconds
  path = { "string", default = "/" },
  domain = { "string" },
  secure = { "boolean", default = false },
  http_only = { "boolean", default = true },
  same_site = { { "string", "boolean" }, default = "Lax" },
  secret = { { "string", "table" } },
}

local function attribute_value(v, what, argn, fname, level)
  if v:find("[%c;]") then argerror(argn, fname, "option '" .. what .. "': no ';' or control character allowed", level + 1) end
  return v
end

-- cookie.serialize(name, value[, options]) -> the value of a Set-Cookie header. Options:
-- max_age (ms), expires (Unix seconds), path ("/"), domain, secure (false), http_only
-- (true), same_site ("Lax"; "Strict", "None" (needs secure), or false for none), secret
-- (signs the value). The value is %XX-encoded where it is not a cookie-octet.
-- (serialize for fname, whose argument argn is the name; level: the user's, from our caller)
local function serialize(name, value, opts, fname, argn, level)
  level = level + 1
  check_name(name, argn, fname, level)
  if type(value) ~= "string" then
    if type(value) ~= "number" then argerror(argn + 1, fname, "string expected, got " .. type(value), level) end
    value = tostring(value)
  end
  local o = options.check(opts, ATTRIBUTES, argn + 2, fname, level)
  if o.secret then value = value .. "." .. mac(secrets(o.secret, argn + 2, fname, level)[1], name, value) end
  local parts = { name .. "=" .. encode(value) }
  if o.max_age then
    parts[#parts + 1] = "Max-Age=" .. (o.max_age == math.huge and 400 * 86400 or floor(o.max_age / 1000))
  end
  if o.expires then parts[#parts + 1] = "Expires=" .. os.date("!%a, %d %b %Y %H:%M:%S GMT", floor(o.expires)) end
  if o.domain then parts[#parts + 1] = "Domain=" .. attribute_value(o.domain, "domain", argn + 2, fname, level) end
  if o.path then parts[#parts + 1] = "Path=" .. attribute_value(o.path, "path", argn + 2, fname, level) end
  if o.secure then parts[#parts + 1] = "Secure" end
  if o.http_only then parts[#parts + 1] = "HttpOnly" end
  if o.same_site then
    local ss = SAME_SITE[tostring(o.same_site):lower()]
    if not ss then argerror(argn + 2, fname, "option 'same_site': 'Strict', 'Lax', 'None' or false expected", level) end
    if ss == "None" and not o.secure then argerror(argn + 2, fname, "option 'same_site': 'None' needs secure = true", level) end
    parts[#parts + 1] = "SameSite=" .. ss
  end
  return table.concat(parts, "; ")
end

function cookie.serialize(name, value, opts)
  local header = serialize(name, value, opts, "serialize", 1, 2)
  return header
end

-- A response: the server's, or any table with appendHeader (a test's).
local function check_response(res, fname)
  local t = type(res)
  local mt = t == "userdata" and debug.getregistry()["luaio.http.response"]
  if not ((mt and getmetatable(res) == mt) or (t == "table" and res.appendHeader ~= nil)) then
    argerror(1, fname, "response expected, got " .. t, 3)
  end
end

-- cookie.set(res, name, value[, options]) -> res: adds a Set-Cookie header (options as
-- serialize; several cookies make several headers)
function cookie.set(res, name, value, opts)
  check_response(res, "set")
  local header = serialize(name, value, opts, "set", 2, 2)
  return res:appendHeader("Set-Cookie", header)
end

-- cookie.clear(res, name[, options]) -> res: tells the browser to delete the cookie (give
-- the path and domain it was set with)
function cookie.clear(res, name, opts)
  check_response(res, "clear")
  local o = {}
  if opts ~= nil and type(opts) ~= "table" then argerror(3, "clear", "table expected, got " .. type(opts)) end
  for k, v in pairs(opts or {}) do o[k] = v end
  o.max_age, o.expires, o.secret = 0, 0, nil
  local header = serialize(name, "", o, "clear", 2, 2)
  return res:appendHeader("Set-Cookie", header)
end

-- cookie.get(req, name[, secret]) -> the cookie's value, or nil (absent, or with secret: not
-- signed with it). The request's Cookie header is parsed once (kept as req.cookies). req is
-- the server's request or any table with headers.
function cookie.get(req, name, secret)
  if type(req) ~= "table" or type(req.headers) ~= "table" then
    argerror(1, "get", "request expected, got " .. (type(req) == "table" and "table without headers" or type(req)))
  end
  check_name(name, 2, "get")
  local list = secret ~= nil and secrets(secret, 3, "get")
  local jar = rawget(req, "cookies")
  if not jar then
    jar = cookie.parse(req.headers.cookie)
    req.cookies = jar
  end
  local value = jar[name]
  if value == nil or not list then return value end
  return verify(name, value, list)
end

return cookie
