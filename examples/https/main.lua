-- An HTTPS server that picks up a renewed certificate on SIGHUP, without a restart and
-- without dropping a connection: open connections keep the certificate they began with,
-- new ones get the new files.
--   out/luaio run examples/https CERT.pem KEY.pem [port]
--   curl --cacert CA.pem https://localhost:8443/
--   (renew CERT.pem and KEY.pem)  kill -HUP <pid>
-- A bad pair (a key that does not match, an unreadable file) is refused and logged; the
-- certificate in use stays.
local https = require "https"
local process = require "process"
local log = require "log"

local cert, key, port = ...
if not cert or not key then
  io.stderr:write("usage: examples/https CERT.pem KEY.pem [port]\n")
  process.exit(2)
end
port = tonumber(port) or 8443

local function tls() return { cert = cert, key = key } end

local server = assert(https.createServer(port, function(req, res)
  res:setHeader("Content-Type", "text/plain")
  res:finish("hello over TLS\n")
end, { tls = tls(), host = "127.0.0.1" }))

process.on("SIGHUP", function()
  local ok, err = server:setTLS(tls())
  if ok then
    log.info("certificate reloaded", { cert = cert })
  else
    log.error("certificate reload failed: the one in use stays", { cert = cert, err = err })
  end
end)

log.info("listening", { port = server:address().port, pid = process.pid })
