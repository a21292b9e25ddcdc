-- https: the seed's module for HTTP over TLS. The server is http.createServer with its `tls`
-- option; the client is http.request and http.get, which take https:// URLs (and verify
-- certificates) themselves.
--
--   local https = require "https"
--   https.createServer(8443, handler, { tls = { cert = "cert.pem", key = "key.pem" } })
--   local res = https.get("https://example.com/")
local http = require "http"

local https = {}

-- https.createServer(port, onrequest, options) -> server | nil, err. options are
-- http.createServer's; options.tls (certificates) is required.
function https.createServer(port, onrequest, options)
  if type(options) ~= "table" or type(options.tls) ~= "table" then
    error("bad argument #3 to 'createServer' (options with tls = {cert = ..., key = ...} expected)", 2)
  end
  return http.createServer(port, onrequest, options)
end

https.request = http.request
https.get = http.get

return https
