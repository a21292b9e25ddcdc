-- crypto: random bytes, digests, HMAC, constant-time comparison, base64, and password
-- hashing with Argon2id, on OpenSSL 3.5 (the C half is runtime/lib/crypto.c).
--
--   local crypto = require "crypto"
--   local stored = crypto.password_hash("correct horse")   -- $argon2id$v=19$m=19456,t=2,p=1$...
--   crypto.password_verify("correct horse", stored)        --> true
--   local token = crypto.base64url(crypto.random(32))
--   local mac = crypto.hmac_sha256(secret, message)
--
-- Hashing waits in the calling task while libuv's thread pool computes it: the loop never
-- blocks on it.
local C = require "luaio.crypto"
local options = require "luaio.options"
local lerror = require "luaio.error"

local type, tonumber, tostring = type, tonumber, tostring
local format, byte = string.format, string.byte

local crypto = { random = C.random, equal = C.equal, digest = C.digest, hmac = C.hmac }

-- crypto.sha256(data) -> 32 raw bytes
function crypto.sha256(data) return C.digest("sha256", data) end

-- crypto.hmac_sha256(key, data) -> 32 raw bytes
function crypto.hmac_sha256(key, data) return C.hmac("sha256", key, data) end

-- crypto.hex(bytes) -> lower-case hexadecimal
function crypto.hex(s)
  if type(s) ~= "string" then error("bad argument #1 to 'hex' (string expected, got " .. type(s) .. ")", 2) end
  return (s:gsub(".", function(c) return format("%02x", byte(c)) end))
end

function crypto.base64(s) return C.base64(s, false) end
function crypto.unbase64(s) return C.unbase64(s, false) end
function crypto.base64url(s) return C.base64(s, true) end
function crypto.unbase64url(s) return C.unbase64(s, true) end

-- --- Argon2id -------------------------------------------------------------------------------

-- OWASP's first choice for Argon2id (19 MiB, 2 passes, 1 lane); RFC 9106's salt and tag sizes.
local KDF = {
  t = { "integer", default = 2, min = 1, max = 65536 },
  m = { "integer", default = 19456, min = 8, max = 4194304 },
  p = { "integer", default = 1, min = 1, max = 255 },
  length = { "integer", default = 32, min = 4, max = 1024 },
  salt_length = { "integer", default = 16, min = 8, max = 1024 },
  secret = { "string" },
  ad = { "string" },
}

-- crypto.argon2id(password, salt[, options]) -> raw hash | nil, err. Options t, m (KiB), p,
-- length, secret (a pepper kept out of the database), ad (associated data).
function crypto.argon2id(password, salt, opts)
  local o = options.check(opts, KDF, 3, "argon2id")
  if o.m < 8 * o.p then error("bad argument #3 to 'argon2id' (option 'm': at least 8 * p expected)", 2) end
  return C.argon2id(password, salt, o.t, o.m, o.p, o.length, o.secret, o.ad)
end

local function nopad(b64) return (b64:gsub("=+$", "")) end

-- PHC strings use standard base64 without padding: the URL form's rules, the other alphabet.
local URL_ALPHABET = { ["+"] = "-", ["/"] = "_" }
local function unbase64_nopad(s)
  if s:find("[^%w+/]") then return nil end
  return C.unbase64((s:gsub("[+/]", URL_ALPHABET)), true)
end

-- crypto.password_hash(password[, options]) -> "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>"
-- (the PHC string format of the reference implementation), or nil, err.
function crypto.password_hash(password, opts)
  if type(password) ~= "string" then
    error("bad argument #1 to 'password_hash' (string expected, got " .. type(password) .. ")", 2)
  end
  local o = options.check(opts, KDF, 2, "password_hash")
  local salt = C.random(o.salt_length)
  local hash, err = C.argon2id(password, salt, o.t, o.m, o.p, o.length, o.secret)
  if not hash then return nil, err end
  return format("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", o.m, o.t, o.p, nopad(C.base64(salt, false)),
    nopad(C.base64(hash, false)))
end

-- Parses a PHC Argon2id string: {m, t, p, salt, hash}, or nil.
local function parse(encoded)
  if type(encoded) ~= "string" then return nil end
  local v, m, t, p, salt, hash = encoded:match("^%$argon2id%$v=(%d+)%$m=(%d+),t=(%d+),p=(%d+)%$([^$]+)%$([^$]+)$")
  if v ~= "19" then return nil end
  m, t, p, salt, hash = tonumber(m), tonumber(t), tonumber(p), unbase64_nopad(salt), unbase64_nopad(hash)
  if not (salt and hash) or t < 1 or t > 65536 or p < 1 or p > 255 or m < 8 * p or m > 4194304 or #salt < 8
    or #hash < 4 or #hash > 1024 then
    return nil
  end
  return { m = m, t = t, p = p, salt = salt, hash = hash }
end

local VERIFY = { secret = { "string" } }

-- crypto.password_verify(password, encoded[, {secret}]) -> true | false, or nil, err (EINVAL:
-- not an Argon2id PHC string; the hashing's own error). The comparison takes constant time.
function crypto.password_verify(password, encoded, opts)
  if type(password) ~= "string" then
    error("bad argument #1 to 'password_verify' (string expected, got " .. type(password) .. ")", 2)
  end
  local o = options.check(opts, VERIFY, 3, "password_verify")
  local h = parse(encoded)
  if not h then return nil, lerror.new("EINVAL", "not an argon2id hash: " .. tostring(encoded):sub(1, 40)) end
  local hash, err = C.argon2id(password, h.salt, h.t, h.m, h.p, #h.hash, o.secret)
  if not hash then return nil, err end
  return C.equal(hash, h.hash)
end

-- crypto.password_needs_rehash(encoded[, options]) -> true when encoded was not made with
-- these options (or the defaults): hash the password again after a successful verify.
function crypto.password_needs_rehash(encoded, opts)
  local o = options.check(opts, KDF, 2, "password_needs_rehash")
  local h = parse(encoded)
  return not h or h.m ~= o.m or h.t ~= o.t or h.p ~= o.p or #h.hash ~= o.length or #h.salt < o.salt_length
end

return crypto
