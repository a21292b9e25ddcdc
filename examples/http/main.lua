-- An HTTP app: a router, JSON-ish API handlers, static files from the bundle, an access log.
--   out/luaio run examples/http [port]        then: curl localhost:8080/hello/you
--   out/luaio build examples/http -o web && ./web
local http = require "http"
local task = require "task"

local port = tonumber((...)) or 8080
local router = http.router()
local hits = 0

router:get("/hello/:name", function(req, res)
  hits = hits + 1
  res:setHeader("Content-Type", "text/plain")
  res:finish(("hello %s (request %d)\n"):format(req.params.name, hits))
end)

router:post("/echo", function(req, res)
  local body, err = req:body()
  if not body then
    res:status(400)
    return res:finish(tostring(err) .. "\n")
  end
  res:setHeader("Content-Type", req.headers["content-type"] or "application/octet-stream")
  res:finish(body)
end)

router:get("/slow", function(req, res) -- waits without blocking anyone else
  task.sleep(tonumber(req.query.ms) or 100)
  res:finish("done\n")
end)

router:get("/*", http.static("public", { bundle = true }))

local server = assert(http.createServer(port, router, { access_log = true }))
print(("listening on http://127.0.0.1:%d"):format(server:address().port))
