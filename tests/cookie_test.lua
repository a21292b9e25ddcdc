-- cookie: parsing Cookie headers, building Set-Cookie values, signed cookies; through a real
-- server with curl's cookie engine as the browser. Also res:appendHeader and req:form(),
-- which cookies and forms need from the HTTP server.
local test = require "test"
local cookie = require "cookie"
local http = require "http"
local crypto = require "crypto"

local SECRET = "sixteen bytes at least, really"

test.case("parse: pairs, blanks, quotes, %XX, the first of a repeated name", function()
  test.eq(cookie.parse("a=1; b=two;c=3"), { a = "1", b = "two", c = "3" })
  test.eq(cookie.parse('  q = "quoted value" ; e=; sp=a%20b%3B'), { q = "quoted value", e = "", sp = "a b;" })
  test.eq(cookie.parse("x=first; x=second"), { x = "first" })
  test.eq(cookie.parse("novalue; =nokey; ok=1"), { ok = "1" })
  test.eq(cookie.parse(nil), {})
  test.eq(cookie.parse(""), {})
  test.raises(function() cookie.parse(42) end, "bad argument #1 to 'parse'")
end)

test.case("serialize: attributes, defaults, encoding, and what it refuses", function()
  test.eq(cookie.serialize("sid", "abc"), "sid=abc; Path=/; HttpOnly; SameSite=Lax")
  test.eq(cookie.serialize("theme", "dark", { max_age = 86400000, path = "/app", domain = "example.com",
    secure = true, same_site = "strict", http_only = false }),
    "theme=dark; Max-Age=86400; Domain=example.com; Path=/app; Secure; SameSite=Strict")
  test.eq(cookie.serialize("t", "x", { expires = 0, same_site = false }),
    "t=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; HttpOnly")
  test.eq(cookie.serialize("n", 42), "n=42; Path=/; HttpOnly; SameSite=Lax")
  test.eq(cookie.serialize("v", 'a b;"\\,%\n'), "v=a%20b%3B%22%5C%2C%25%0A; Path=/; HttpOnly; SameSite=Lax")
  test.eq(cookie.parse(cookie.serialize("v", 'a b;"\\,%\n'):match("^[^;]+")).v, 'a b;"\\,%\n')
  test.eq(cookie.serialize("x", "1", { same_site = "None", secure = true }), "x=1; Path=/; Secure; HttpOnly; SameSite=None")
  test.raises(function() cookie.serialize("x", "1", { same_site = "None" }) end, "'None' needs secure")
  test.raises(function() cookie.serialize("x", "1", { same_site = "sometimes" }) end, "option 'same_site'")
  test.raises(function() cookie.serialize("bad name", "1") end, "bad argument #1 to 'serialize' %(cookie name")
  test.raises(function() cookie.serialize("x", "1", { path = "/;evil" }) end, "option 'path'")
  test.raises(function() cookie.serialize("x", "1", { maxage = 1 }) end, "unknown option 'maxage'")
  test.raises(function() cookie.serialize("x", {}) end, "bad argument #2")
end)

test.case("sign and unsign: HMAC-SHA256 over name and value, secret rotation, forgeries refused", function()
  local signed = cookie.sign("uid", "42", SECRET)
  local value, mac = signed:match("^(.*)%.([^.]+)$")
  test.eq(value, "42")
  test.eq(mac, crypto.base64url(crypto.hmac_sha256(SECRET, "uid=42")))
  test.eq(cookie.unsign("uid", signed, SECRET), "42")
  test.eq(cookie.unsign("uid", "43." .. mac, SECRET), nil, "another value")
  test.eq(cookie.unsign("admin", signed, SECRET), nil, "another cookie's name")
  test.eq(cookie.unsign("uid", signed, "another secret of 16 bytes"), nil)
  test.eq(cookie.unsign("uid", "42", SECRET), nil, "unsigned")
  test.eq(cookie.unsign("uid", nil, SECRET), nil)
  local new = "the next secret, 16+ bytes"
  test.eq(cookie.unsign("uid", signed, { new, SECRET }), "42", "old cookies verify during a rotation")
  test.eq(cookie.unsign("uid", cookie.sign("uid", "7", { new, SECRET }), new), "7", "the first secret signs")
  test.eq(cookie.unsign("p", cookie.sign("p", "a.b.c", SECRET), SECRET), "a.b.c", "dots in the value")
  test.raises(function() cookie.sign("uid", "1", "short") end, "secret of at least 16 bytes")
  test.raises(function() cookie.sign("uid", "1", {}) end, "secret expected")
  -- every argument error points at the caller's line, and set/clear name themselves
  local res = { appendHeader = function(self) return self end }
  local here = "^cookie_test%.lua:%d+: "
  for _, c in ipairs({
    { function() local _ = cookie.serialize({}, "1") end, "bad argument #1 to 'serialize' %(cookie name" },
    { function() local _ = cookie.serialize("x", "1", { secret = "short" }) end, "bad argument #3 to 'serialize' %(secret of at least" },
    { function() local _ = cookie.serialize("x", "1", { path = "/;evil" }) end, "bad argument #3 to 'serialize' %(option 'path'" },
    { function() local _ = cookie.serialize("x", "1", { same_site = "None" }) end, "bad argument #3 to 'serialize' %(option 'same_site'" },
    { function() local _ = cookie.sign({}, "1", ("k"):rep(16)) end, "bad argument #1 to 'sign' %(cookie name" },
    { function() local _ = cookie.sign("x", "1", "short") end, "bad argument #3 to 'sign' %(secret of at least" },
    { function() local _ = cookie.unsign({}, "1", ("k"):rep(16)) end, "bad argument #1 to 'unsign' %(cookie name" },
    { function() local _ = cookie.set(res, nil, "1") end, "bad argument #2 to 'set' %(cookie name" },
    { function() local _ = cookie.set(res, "x", {}) end, "bad argument #3 to 'set' %(string expected" },
    { function() local _ = cookie.set(res, "x", "1", { maxage = 1 }) end, "bad argument #4 to 'set' %(unknown option 'maxage'" },
    { function() local _ = cookie.clear(res, "bad name") end, "bad argument #2 to 'clear' %(cookie name" },
    { function() local _ = cookie.clear(res, "x", 5) end, "bad argument #3 to 'clear' %(table expected" },
    { function() local _ = cookie.set(nil, "x", "1") end, "bad argument #1 to 'set' %(response expected, got nil%)" },
    { function() local _ = cookie.clear("res", "x") end, "bad argument #1 to 'clear' %(response expected, got string%)" },
    { function() local _ = cookie.get("req", "x") end, "bad argument #1 to 'get' %(request expected, got string%)" },
    { function() local _ = cookie.get({}, "x") end, "bad argument #1 to 'get' %(request expected, got table without headers%)" },
    { function() local _ = cookie.get({ headers = {} }, 5) end, "bad argument #2 to 'get' %(cookie name" },
    { function() local _ = cookie.get({ headers = {} }, "x", "short") end, "bad argument #3 to 'get' %(secret of at least" },
  }) do
    local ok, err = pcall(c[1])
    test.eq(ok, false)
    test.match(tostring(err):gsub("^tests/", ""), here .. c[2])
  end
  -- get takes any table with headers (a client's response, a test's fake request)
  local req = { headers = { cookie = "a=1; uid=" .. cookie.sign("uid", "7", SECRET) } }
  test.eq({ cookie.get(req, "a"), cookie.get(req, "uid", SECRET), cookie.get(req, "uid", ("k"):rep(16)) }, { "1", "7" })
end)

local helpers = require "tests.helpers"

-- The server runs in a process of its own: curl (test.sh) blocks this one's loop.
local function serve(handler_source)
  local port = helpers.serve(([[
local http = require "http"
local cookie = require "cookie"
local SECRET = %q
local server = assert(http.createServer(0, %s, { host = "127.0.0.1" }))
io.stdout:setvbuf("line") -- the log is a file: print at once
print("listening " .. server:address().port)
]]):format(SECRET, handler_source))
  return "http://127.0.0.1:" .. port
end

test.case("a real client keeps what cookie.set sends and sends it back (curl's cookie engine)", function()
  local url = serve([[function(req, res)
    if req.path == "/set" then
      cookie.set(res, "plain", "hello world")
      cookie.set(res, "signed", "user 7", { secret = SECRET })
      cookie.set(res, "gone", "soon")
      return res:finish("set\n")
    elseif req.path == "/clear" then
      cookie.clear(res, "gone")
      return res:finish("cleared\n")
    end
    res:finish(("plain=%s signed=%s forged=%s gone=%s\n"):format(tostring(cookie.get(req, "plain")),
      tostring(cookie.get(req, "signed", SECRET)), tostring(cookie.get(req, "signed", "not the secret!!")),
      tostring(cookie.get(req, "gone"))))
  end]])
  local jar = test.tmpdir() .. "/jar"
  local out = test.sh("curl -s -D - -c " .. jar .. " " .. url .. "/set")
  local lines = {}
  for l in out:gmatch("Set%-Cookie: ([^\r\n]+)") do lines[#lines + 1] = l end
  test.eq(#lines, 3, "one Set-Cookie header per cookie: " .. out)
  test.eq(lines[1], "plain=hello%20world; Path=/; HttpOnly; SameSite=Lax")
  out = test.sh("curl -s -b " .. jar .. " -c " .. jar .. " " .. url .. "/clear")
  test.eq(out, "cleared\n")
  out = test.sh("curl -s -b " .. jar .. " " .. url .. "/read")
  test.eq(out, "plain=hello world signed=user 7 forged=nil gone=nil\n")
  out = test.sh("curl -s -H 'Cookie: signed=user%207.AAAA' " .. url .. "/read")
  test.match(out, "signed=nil")
end)

test.case("req:form() decodes a form body once; http.decodeForm; other bodies are EINVAL", function()
  local url = serve([[function(req, res)
    local form, err = req:form()
    if not form then return res:finish("error " .. err.name .. "\n") end
    if req:form() ~= form then return res:finish("not kept\n") end
    local keys = {}
    for k, v in pairs(form) do keys[#keys + 1] = k .. "=" .. (type(v) == "table" and table.concat(v, ",") or v) end
    table.sort(keys)
    res:finish(table.concat(keys, " ") .. "\n")
  end]])
  test.eq(test.sh("curl -s --data 'a=1&b=x+y%21&c&a=2&%C3%A9=%E2%82%AC' " .. url), "a=1,2 b=x y! c= é=€\n")
  test.eq(test.sh("curl -s -H 'Content-Type: application/x-www-form-urlencoded; charset=UTF-8' --data 'k=v' " .. url),
    "k=v\n")
  test.eq(test.sh("curl -s -H 'Content-Type: application/json' --data '{}' " .. url), "error EINVAL\n")
  test.eq(test.sh("curl -s -F 'a=1' " .. url), "error EINVAL\n", "multipart is not a urlencoded form")
  test.eq(http.decodeForm("x=1&y=%2F&x=2&z"), { x = { "1", "2" }, y = "/", z = "" })
  test.eq(http.decodeForm(""), {})
  test.raises(function() http.decodeForm(nil) end, "bad argument #1 to 'decodeForm'")
end)
