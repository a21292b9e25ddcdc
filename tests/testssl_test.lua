-- testssl.sh (the Debian package's `testssl`) against luaio's HTTPS server: no finding of
-- severity MEDIUM or worse about the server.
--
-- Run time: testssl runs --fast (one openssl call per cipher list instead of one per
-- cipher) and every default check but the client simulations (-c, about 15 s of simulated
-- browsers), so about 40-55 s on 2 cores. Findings about the certificate itself (cert_*:
-- the test CA is not a public one, no CRL or OCSP URI) and the app's headers
-- (security_headers: HSTS and the like are the application's to send) are not the
-- server's and are left out.
local test = require "test"
local http = require "http"
local helpers = require "tests.helpers"
local certs = require "tests.tls_certs"

local q = test.quote

local function findings(json)
  local list = {}
  for object in json:gmatch("%b{}") do
    local id = object:match('"id"%s*:%s*"([^"]*)"')
    local severity = object:match('"severity"%s*:%s*"([^"]*)"')
    local finding = object:match('"finding"%s*:%s*"([^"]*)"')
    if id then list[#list + 1] = { id = id, severity = severity, finding = finding } end
  end
  return list
end

test.case("testssl.sh finds nothing of severity MEDIUM or worse in the HTTPS server", function()
  local testssl = test.sh("command -v testssl testssl.sh"):match("(%S+)")
  if not testssl then test.skip("testssl.sh is not installed") end
  local c = certs.make()
  local server = assert(http.createServer(0, function(req, res) res:finish("hello") end,
    { host = "127.0.0.1", tls = { cert = c.server, key = c.server_key } }))
  test.cleanup(function() server:close() end)
  local port = server:address().port
  local dir = test.tmpdir()
  local json = dir .. "/findings.json"
  local peer = helpers.start(("%s --quiet --fast --color 0 --warnings off --add-ca %s --jsonfile %s " ..
    "--ip 127.0.0.1 -p -s -f -P -S -h -U https://localhost:%d; echo \"testssl exit $?\"")
    :format(testssl, q(c.ca), q(json), port))
  helpers.wait_output(peer, "testssl exit %d+", 120000)
  local f = io.open(json, "rb")
  test.ok(f, "testssl wrote its findings: " .. helpers.output(peer):sub(-2000))
  local text = f:read("*a")
  f:close()
  local list = findings(text)
  test.ok(#list > 30, "testssl checked things (" .. #list .. " findings)")
  local bad = {}
  local seen = {}
  for _, item in ipairs(list) do
    seen[item.id] = item.finding
    local serious = item.severity == "MEDIUM" or item.severity == "HIGH" or item.severity == "CRITICAL"
    if serious and not item.id:match("^cert_") and item.id ~= "security_headers" then
      bad[#bad + 1] = item.id .. " (" .. item.severity .. "): " .. tostring(item.finding)
    end
  end
  test.eq(bad, {}, "findings of severity MEDIUM or worse")
  -- what was checked, and what it says
  test.match(seen["TLS1_3"] or "", "^offered")
  test.match(seen["TLS1_2"] or "", "^offered")
  test.match(seen["TLS1_1"] or "", "^not offered")
  test.match(seen["TLS1"] or "", "^not offered")
  test.match(seen["heartbleed"] or "", "not vulnerable")
  test.match(seen["secure_client_renego"] or "", "not vulnerable")
end)
