-- crypto: Argon2id against RFC 9106's vector and the reference implementation's command
-- (Debian's argon2), PHC strings, the thread pool (the loop goes on while a hash is
-- computed), random bytes, SHA-256 and HMAC vectors, constant-time equality, base64.
local test = require "test"
local task = require "task"
local crypto = require "crypto"
local helpers = require "tests.helpers"

local function unhex(s) return (s:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)) end

test.case("argon2id gives RFC 9106's test vector (secret and associated data included)", function()
  local tag = assert(crypto.argon2id(("\1"):rep(32), ("\2"):rep(16),
    { t = 3, m = 32, p = 4, length = 32, secret = ("\3"):rep(8), ad = ("\4"):rep(12) }))
  test.eq(crypto.hex(tag), "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659")
end)

test.case("argon2id agrees with the reference implementation (the argon2 command) both ways", function()
  if not test.sh("command -v argon2"):find("argon2") then
    test.skip("the argon2 command is not installed (./build.sh test installs it)")
  end
  for _, c in ipairs({ { t = 1, m = 64, p = 1, length = 16 }, { t = 3, m = 256, p = 4, length = 40 } }) do
    local password = "pass word " .. c.t
    local out = test.sh(("printf %%s %s | argon2 salt%dsalt -id -t %d -k %d -p %d -l %d"):format(test.quote(password),
      c.t, c.t, c.m, c.p, c.length))
    local hash, encoded = out:match("Hash:%s+(%x+)"), out:match("Encoded:%s+(%S+)")
    test.ok(hash and encoded, "argon2 printed a hash: " .. out)
    test.eq(crypto.hex(assert(crypto.argon2id(password, "salt" .. c.t .. "salt", c))), hash)
    test.eq(crypto.password_verify(password, encoded), true, "the reference's PHC string verifies")
    test.eq(crypto.password_verify(password .. "!", encoded), false)
    test.eq(crypto.password_needs_rehash(encoded, c), true, "a salt shorter than 16 bytes")
  end
end)

test.case("password_hash makes PHC strings that verify; needs_rehash; malformed strings", function()
  local encoded = assert(crypto.password_hash("correct horse battery staple"))
  test.match(encoded, "^%$argon2id%$v=19%$m=19456,t=2,p=1%$[%w+/]+%$[%w+/]+$")
  local salt, hash = encoded:match("%$([^$]+)%$([^$]+)$")
  test.eq(#salt, 22, "16 bytes of salt, base64 without padding")
  test.eq(#hash, 43, "32 bytes of hash")
  test.ok(encoded ~= crypto.password_hash("correct horse battery staple"), "a new salt each time")
  test.eq(crypto.password_verify("correct horse battery staple", encoded), true)
  test.eq(crypto.password_verify("correct horse battery stapl", encoded), false)
  test.eq(crypto.password_verify("", encoded), false)
  test.eq(crypto.password_needs_rehash(encoded), false)
  test.eq(crypto.password_needs_rehash(encoded, { m = 65536 }), true)

  local peppered = assert(crypto.password_hash("pw", { t = 1, m = 64, secret = "pepper of the app" }))
  test.eq(crypto.password_verify("pw", peppered, { secret = "pepper of the app" }), true)
  test.eq(crypto.password_verify("pw", peppered), false, "without the pepper")

  for _, bad in ipairs({ "", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
    "$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g", "$argon2id$v=19$m=4,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
    "$argon2id$v=19$m=64,t=1,p=1$c2Fs$aGFzaGhhc2g", "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a*", "bcrypt" }) do
    local ok, err = crypto.password_verify("pw", bad)
    test.eq(ok, nil, bad)
    test.eq(err.name, "EINVAL")
  end
  test.raises(function() crypto.password_verify(nil, encoded) end, "bad argument #1 to 'password_verify'")
  test.raises(function() crypto.password_hash("pw", { t = 0 }) end, "option 't': integer from 1")
  test.raises(function() crypto.argon2id("pw", "short") end, "bad argument #2 to 'argon2id' %(salt of 8")
  test.raises(function() crypto.argon2id("pw", "saltsalt", { m = 8, p = 2 }) end, "at least 8 %* p")
  test.raises(function() crypto.password_hash("pw", { colour = 1 }) end, "unknown option 'colour'")
end)

test.case("hashing runs on the thread pool: the loop goes on, hashes in parallel all come back right", function()
  local tick = helpers.ticker()
  local t0 = task.now()
  assert(crypto.argon2id("a long hash", "saltsalt", { t = 10, m = 32768 }))
  local took = task.now() - t0
  local state = tick.stop()
  test.ok(state.ticks >= 10, "the loop ticked while the hash was computed: " .. state.ticks)
  -- a loop blocked by the hash would show one gap as long as the hash
  test.ok(state.max_gap < took * 0.8, ("no stall: longest gap %.0f ms during a %.0f ms hash"):format(state.max_gap, took))

  local expected = crypto.hex(assert(crypto.argon2id("same", "saltsalt", { t = 1, m = 256 })))
  local tasks = {}
  for i = 1, 8 do
    tasks[i] = task.spawn(function() return crypto.hex(assert(crypto.argon2id("same", "saltsalt", { t = 1, m = 256 }))) end)
  end
  for i = 1, 8 do
    local ok, hex = tasks[i]:join()
    test.eq(ok, true)
    test.eq(hex, expected)
  end
end)

test.case("argon2id outside a task raises", function()
  local co = coroutine.create(function() return crypto.argon2id("pw", "saltsalt") end)
  local ok, err = coroutine.resume(co)
  test.eq(ok, false)
  test.match(err, "argon2id")
end)

test.case("random, SHA-256, HMAC (RFC 4231), equal, hex and base64 (RFC 4648)", function()
  local a, b = crypto.random(32), crypto.random(32)
  test.eq(#a, 32)
  test.ok(a ~= b, "two draws differ")
  test.eq(crypto.random(0), "")
  test.eq(#crypto.random(100000), 100000)
  test.raises(function() crypto.random(-1) end, "bad argument #1 to 'random'")
  test.eq(crypto.hex(crypto.sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  test.eq(crypto.hex(crypto.hmac_sha256("Jefe", "what do ya want for nothing?")),
    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
  test.eq(crypto.hex(crypto.hmac_sha256(("\170"):rep(131), "Test Using Larger Than Block-Size Key - Hash Key First")),
    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
  test.eq(crypto.hex(crypto.digest("sha512", "")):sub(1, 16), "cf83e1357eefb8bd")
  test.eq(crypto.hex(crypto.hmac("sha1", "key", "The quick brown fox jumps over the lazy dog")),
    "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9")
  test.raises(function() crypto.digest("md99", "x") end, "unknown digest")
  -- a name with a zero byte is refused, not read up to it ("sha256\0x" was sha256)
  test.raises(function() crypto.digest("sha256\0x", "x") end, "bad argument #1 to 'digest' %(string without zero bytes")
  test.raises(function() crypto.hmac("sha1\0x", "k", "x") end, "bad argument #1 to 'hmac' %(string without zero bytes")
  test.eq(crypto.equal("abc", "abc"), true)
  test.eq(crypto.equal("abc", "abd"), false)
  test.eq(crypto.equal("abc", "abcd"), false)
  test.eq(crypto.hex("\0\255"), "00ff")

  local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==", fooba = "Zm9vYmE=",
    foobar = "Zm9vYmFy" }
  for plain, b64 in pairs(vectors) do
    test.eq(crypto.base64(plain), b64)
    test.eq(crypto.unbase64(b64), plain)
    test.eq(crypto.base64url(plain), (b64:gsub("=", "")))
    test.eq(crypto.unbase64url((b64:gsub("=", ""))), plain)
  end
  test.eq(crypto.base64("\251\255\191"), "+/+/")
  test.eq(crypto.base64url("\251\255\191"), "-_-_")
  test.eq(crypto.unbase64url("-_-_"), "\251\255\191")
  test.eq(crypto.unbase64("Zm8"), nil, "standard base64 wants its padding")
  test.eq(crypto.unbase64("Zm9v!"), nil)
  test.eq(crypto.unbase64url("Zm8="), nil, "URL base64 has no padding")
  test.eq(crypto.unbase64url("+/+/"), nil, "URL base64 has no + or /")
  test.eq(crypto.unbase64url("Z"), nil)
  local bytes = crypto.random(1000)
  test.eq(crypto.unbase64url(crypto.base64url(bytes)), bytes)
  test.eq(unhex("00ff"), "\0\255")
end)
