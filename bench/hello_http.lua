-- The HTTP hello world of bench/http.sh and ../shared/bench/http_compare.sh:
-- GET / -> 200, Content-Type: text/plain, "Hello, World!", keep-alive.
--   luaio run bench/hello_http.lua PORT
local http = require "http"
assert(http.createServer(tonumber(arg[1]) or 8085, function(req, res)
  res:setHeader("Content-Type", "text/plain")
  res:finish("Hello, World!")
end))
