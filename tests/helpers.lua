-- Shared by the network tests: peers started in the background, waiting for them, and
-- stopping them when the case ends. (Not a *_test.lua file, so the runner does not run it.)
local test = require "test"
local task = require "task"

local helpers = {}

local luaio = test.quote(test.luaio)

-- helpers.start(command) -> peer {pid, log}: runs command in the background (output to a
-- log file) and stops it when the case ends.
function helpers.start(command)
  local log = test.tmpdir() .. "/peer.log"
  local out = test.sh("{ " .. command .. "\n} > " .. log .. " 2>&1 & echo $!")
  local peer = { pid = tonumber(out:match("(%d+)")), log = log }
  test.cleanup(function() helpers.stop(peer) end)
  return peer
end

-- Kills the peer and everything it started.
function helpers.stop(peer)
  test.sh("pkill -KILL -P " .. peer.pid .. " 2>/dev/null; kill -KILL " .. peer.pid .. " 2>/dev/null")
end

function helpers.output(peer)
  local f = io.open(peer.log, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

-- Waits (without blocking the loop) until the peer's output matches pattern; returns the
-- first capture. Fails the case after timeout_ms (default 5 s).
function helpers.wait_output(peer, pattern, timeout_ms)
  local deadline = task.now() + (timeout_ms or 5000)
  while true do
    local out = helpers.output(peer)
    local found = out:match(pattern)
    if found then return found end
    if task.now() > deadline then
      error(("peer output never matched %q; output so far: %q"):format(pattern, out), 2)
    end
    task.sleep(10)
  end
end

-- helpers.serve(source) -> port, peer: runs a luaio script as a server in its own process.
-- The script must print "listening <port>" once it listens.
function helpers.serve(source)
  local dir = test.tmpdir()
  test.write(dir .. "/server.lua", source)
  local peer = helpers.start(luaio .. " run " .. dir .. "/server.lua")
  local port = tonumber(helpers.wait_output(peer, "listening (%d+)"))
  return port, peer
end

-- Writes a node script to a temporary file and returns its path.
function helpers.node_script(source)
  local path = test.tmpdir() .. "/peer.js"
  test.write(path, source)
  return path
end

-- Waits until a TCP port accepts connections (peers started in the background).
function helpers.wait_port(port, host)
  local tcp = require "tcp"
  local deadline = task.now() + 5000
  while true do
    local s = tcp.connect(port, host or "127.0.0.1")
    if s then
      s:close()
      return
    end
    if task.now() > deadline then error("port " .. port .. " never opened", 2) end
    task.sleep(10)
  end
end

-- helpers.full_backlog() -> port: perl listens there with a backlog of 0 and never accepts,
-- and the queue is then filled, so the kernel drops further SYNs and a connect to the port
-- can only time out. The connections that fill it are closed when the case ends.
function helpers.full_backlog()
  local tcp = require "tcp"
  local port = helpers.free_port()
  helpers.start("perl -MSocket -e 'socket(my $s, PF_INET, SOCK_STREAM, 0); " ..
    "setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1); bind($s, sockaddr_in(" .. port ..
    ", inet_aton(\"127.0.0.1\"))) or die; listen($s, 0); print \"listening\\n\"; $|=1; sleep 30'")
  local held = {}
  test.cleanup(function() for _, s in ipairs(held) do s:close() end end)
  task.sleep(200)
  for _ = 1, 8 do -- a short connect timeout: once one times out, the queue is full
    local s = tcp.connect(port, "127.0.0.1", { timeout = 100 })
    if not s then return port end
    held[#held + 1] = s
  end
  error("the listen queue never filled", 2)
end

-- helpers.ticker(): a task ticking every 2 ms; ticker.stop() returns {ticks, max_gap}, the
-- longest gap between two ticks: the proof that the loop was never blocked meanwhile.
function helpers.ticker()
  local state = { ticks = 0, max_gap = 0, running = true }
  local t = task.spawn(function()
    local last = task.now()
    while state.running do
      task.sleep(2)
      local now = task.now()
      if now - last > state.max_gap then state.max_gap = now - last end
      last = now
      state.ticks = state.ticks + 1
    end
  end)
  function state.stop()
    state.running = false
    t:join()
    return state
  end
  return state
end

-- A free TCP port, found by binding port 0.
function helpers.free_port()
  local tcp = require "tcp"
  local server = assert(tcp.createServer(0, function() end, { host = "127.0.0.1" }))
  local port = server:address().port
  server:close()
  return port
end

return helpers
