-- SIGTERM drains the HTTP server: no connection is left with a keep-alive response and
-- then silence, and no request written in full to an open connection goes unanswered.
local test = require "test"
local task = require "task"
local tcp = require "tcp"
local process = require "process"
local helpers = require "tests.helpers"

local q = test.quote

local SERVER = [[
local http = require "http"
local process = require "process"
local task = require "task"
local server = assert(http.createServer(0, function(req, res)
  if req.path == "/slow" then task.sleep(tonumber(req.query.ms) or 500) return res:finish("slow done") end
  res:finish("fast done")
end, { host = "127.0.0.1", shutdown_timeout = 5000 }))
print("listening " .. server:address().port .. " pid " .. process.pid)
io.stdout:flush()
]]

-- Starts the server; returns port, pid and the peer, whose output ends with "exit status N".
local function serve()
  local dir = test.tmpdir()
  test.write(dir .. "/server.lua", SERVER)
  local peer = helpers.start(q(test.luaio) .. " run " .. dir .. "/server.lua; echo \"exit status $?\"")
  local port = tonumber(helpers.wait_output(peer, "listening (%d+)"))
  return port, tonumber(helpers.wait_output(peer, "pid (%d+)")), peer
end

test.case("SIGTERM while a pipelined request runs: no keep-alive response followed by silence; exit 0", function()
  local port, pid, peer = serve()
  local s = assert(tcp.connect(port))
  test.cleanup(function() s:close() end)
  assert(s:write("GET /slow?ms=500 HTTP/1.1\r\nHost: a\r\n\r\nGET /fast HTTP/1.1\r\nHost: a\r\n\r\n"))
  task.sleep(150) -- /slow is running
  assert(process.kill(pid, "SIGTERM"))
  s:setTimeout(5000)
  local got = {}
  while true do
    local data, err, partial = s:read()
    got[#got + 1] = data or partial
    if not data then
      test.ok(err.name ~= "ETIMEDOUT", "the server closed the connection (no silence on an open one)")
      break
    end
  end
  local responses, rest = helpers.parse_responses(table.concat(got))
  test.eq(rest, "")
  test.ok(#responses >= 1, "/slow was answered")
  test.eq(responses[1].body, "slow done")
  if responses[2] then test.eq(responses[2].body, "fast done") end
  test.match(responses[#responses].head, "\r\nConnection: close\r\n",
    ("the last of the %d responses says Connection: close"):format(#responses))
  test.eq(helpers.wait_output(peer, "exit status (%d+)", 5000), "0")
end)

-- A client task: keep-alive requests back to back, a new connection after a Connection:
-- close, until a connect fails (the server is gone). It counts the requests written in full
-- on a connection that already carried a response and never answered (lost), and those on
-- a fresh connection (fresh_lost: a connection the kernel completed just as the listener
-- closed can be reset without the server ever seeing it).
local function client(port, stats)
  local request = "GET /fast HTTP/1.1\r\nHost: a\r\n\r\n"
  while true do
    local s = tcp.connect(port)
    if not s then return end
    s:setTimeout(5000)
    local answered = 0
    while true do
      if not s:write(request) then break end
      stats.sent = stats.sent + 1
      local head, err = s:read() -- the whole response is small: one read, or a few
      local data = head or ""
      while head and not data:find("\r\n\r\nfast done", 1, true) do
        head, err = s:read()
        data = data .. (head or "")
      end
      if not head then
        if answered > 0 then stats.lost = stats.lost + 1 else stats.fresh_lost = stats.fresh_lost + 1 end
        stats.errors[#stats.errors + 1] = err and err.name or "?"
        break
      end
      stats.ok = stats.ok + 1
      answered = answered + 1
      if data:find("\r\nConnection: close\r\n", 1, true) then
        stats.closed = stats.closed + 1
        break
      end
    end
    s:close()
  end
end

test.case("SIGTERM under steady keep-alive load: no request written to an open connection is lost", function()
  local port, pid, peer = serve()
  local stats = { sent = 0, ok = 0, lost = 0, fresh_lost = 0, closed = 0, errors = {} }
  local clients = {}
  for i = 1, 8 do clients[i] = task.spawn(client, port, stats) end
  task.sleep(500)
  local before = stats.ok
  assert(process.kill(pid, "SIGTERM"))
  for _, c in ipairs(clients) do test.ok(c:join(15000), "the client ended") end
  local desc = ("sent %d, answered %d (%d before SIGTERM), lost %d, lost on fresh connections %d, closed by the server %d, errors %s")
    :format(stats.sent, stats.ok, before, stats.lost, stats.fresh_lost, stats.closed, table.concat(stats.errors, ","))
  test.ok(before > 100, "load ran: " .. desc)
  test.eq(stats.lost, 0, "requests lost: " .. desc)
  test.eq(helpers.wait_output(peer, "exit status (%d+)", 5000), "0")
end)
