-- Raw HTTP peers for the client's tests (tests/http_client_test.lua,
-- tests/http_client_hostile_test.lua): an in-process TCP server and helpers to read the
-- requests it gets. (Not a *_test.lua file, so the runner does not run it.)
local test = require "test"
local tcp = require "tcp"

local peers = {}

-- peers.serve(onconnect) -> base URL, port: an in-process TCP server; it and its
-- connections are closed when the case ends (a connection left open would serve the next
-- case from the client's pool when the port comes again).
function peers.serve(onconnect)
  local open = {}
  local server = assert(tcp.createServer(0, function(socket)
    open[socket] = true
    onconnect(socket)
    open[socket] = nil
  end, { host = "127.0.0.1" }))
  test.cleanup(function()
    server:close()
    for socket in pairs(open) do socket:close() end
  end)
  local port = server:address().port
  return "http://127.0.0.1:" .. port, port
end

-- peers.read_request(socket) -> the lines of one request head (without the empty one), or
-- nil once the connection ends.
function peers.read_request(socket)
  local lines = {}
  while true do
    local line = socket:readline()
    if not line then return nil end
    if line == "" then return lines end
    lines[#lines + 1] = line
  end
end

-- peers.header(lines, name) -> the value of a header in lines from read_request, or nil.
function peers.header(lines, name)
  for i = 2, #lines do
    local n, v = lines[i]:match("^([^:]+):%s*(.*)$")
    if n and n:lower() == name:lower() then return v end
  end
  return nil
end

return peers
