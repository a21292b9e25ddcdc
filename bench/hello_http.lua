-- The HTTP hello world of bench/http.sh and ../shared/bench/http_compare.sh:
-- GET / -> 200, Content-Type: text/plain, "Hello, World!", keep-alive; HTTPS when given a
-- certificate and its key.
--   luaio run bench/hello_http.lua PORT [CERT KEY]
local http = require "http"
local port, cert, key = tonumber(arg[1]) or 8085, arg[2], arg[3]
assert(http.createServer(port, function(req, res)
  res:setHeader("Content-Type", "text/plain")
  res:finish("Hello, World!")
end, {
  tls = cert and { cert = cert, key = key } or nil,
  -- nginx's default (the peers keep idle connections at least this long): with the 5 s
  -- default, the idle-connection count of an HTTPS run, whose 10,000 handshakes take longer
  -- than that, found most connections already closed
  keepalive_timeout = 75000,
}))
