-- The HTTP hello world of bench/http.sh and ../shared/bench/http_compare.sh:
-- GET / -> 200, Content-Type: text/plain, "Hello, World!", keep-alive; HTTPS when given a
-- certificate and its key.
--   luaio run bench/hello_http.lua PORT [CERT KEY]
local http = require "http"
local port, cert, key = tonumber(arg[1]) or 8085, arg[2], arg[3]
assert(http.createServer(port, function(req, res)
  res:setHeader("Content-Type", "text/plain")
  res:finish("Hello, World!")
end, cert and { tls = { cert = cert, key = key } } or nil))
