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

-- The "an answer leaves at once" scenario (tcp_test, websocket_test). The server runs in
-- another process; its handler answers each message with itself, except "spin MS", which
-- keeps the server's loop busy for MS ms and then answers with the time it ended.
-- connect() returns {send = function(msg), receive = function() -> msg}. An answer must leave
-- when its handler waits again, not after the handlers of the other connections read in
-- the same loop iteration.
helpers.ANSWER = [[
local system = require "system"
local function answer(msg)
  local ms = tonumber(msg:match("^spin (%d+)"))
  if not ms then return msg end
  local started = system.hrtime()
  while system.hrtime() - started < ms * 1e6 do end
  return tostring(system.hrtime())
end
]] -- the server's side of answer_at_once, for the script given to helpers.serve

function helpers.answer_at_once(connect)
  local quick, slow, busy = connect(), connect(), connect()
  for _, c in ipairs({ quick, slow }) do -- both served once: their handlers wait again
    c.send("hello")
    test.eq(c.receive(), "hello")
  end
  busy.send("spin 300") -- the server's loop is busy with this for 300 ms,
  task.sleep(50)
  quick.send("quick") -- while this arrives,
  task.sleep(20)
  slow.send("spin 600") -- then this: both are read in the next iteration
  test.eq(quick.receive(), "quick")
  local quick_at = require("system").hrtime()
  local slow_ended = tonumber(slow.receive())
  test.ok(quick_at < slow_ended, ("the quick answer arrived %.0f ms after the slow handler (read after it) ended")
    :format((quick_at - slow_ended) / 1e6))
  test.ok(tonumber(busy.receive()), "the busy handler answered")
end

-- Writes a node script to a temporary file and returns its path.
function helpers.node_script(source)
  local path = test.tmpdir() .. "/peer.js"
  test.write(path, source)
  return path
end

-- helpers.python(source, ...) -> peer: runs a python3 script (written to a temporary file)
-- with the arguments, in the background, like helpers.start.
function helpers.python(source, ...)
  local path = test.tmpdir() .. "/peer.py"
  test.write(path, source)
  local args = { "python3", test.quote(path) }
  for _, a in ipairs({ ... }) do args[#args + 1] = test.quote(tostring(a)) end
  return helpers.start(table.concat(args, " "))
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

-- The first port of the kernel's ephemeral range: connect() takes its local ports there.
local function ephemeral_low()
  local f = io.open("/proc/sys/net/ipv4/ip_local_port_range")
  local low = f and tonumber(f:read("*l"):match("^(%d+)"))
  if f then f:close() end
  return low and low > 21000 and low or 32768
end

-- A port for a server that a peer (redis-server, nginx, ...) binds later. A port bind(0)
-- gives is in the ephemeral range, where an outgoing connection of the tests may take it
-- before that server binds it (Redis's cluster bus port did, under the sanitizer build):
-- this one is below the range, chosen at random, and was free when tried.
function helpers.free_port()
  local tcp = require "tcp"
  local low = ephemeral_low()
  local random = require("crypto").random
  for _ = 1, 100 do
    local b1, b2 = random(2):byte(1, 2)
    local port = 20000 + (b1 * 256 + b2) % (low - 20000)
    local server = tcp.createServer(port, function() end, { host = "127.0.0.1" })
    if server then
      server:close()
      return port
    end
  end
  error("no free port between 20000 and " .. low, 2)
end

-- --- raw HTTP exchanges (tests/http_adversary_test.lua, tests/http_shutdown_test.lua) ---------

-- helpers.exchange(port, parts[, options]) -> data, ending: connects with luaio's tcp module,
-- writes parts (a string, or an array of strings and numbers: a number sleeps that many ms
-- between two writes), then reads until the server closes. ending is "EOF" or the error
-- that ended the reading ("ECONNRESET", ...), "idle" when the server sent nothing for
-- options.idle ms (default 2000), "deadline" after options.deadline ms (default 15000).
-- options.shutdown: half-close (shutdown write) after the last part. options.wait: ms to wait
-- before reading anything (the server's output piles up meanwhile).
function helpers.exchange(port, parts, options)
  local tcp = require "tcp"
  options = options or {}
  if type(parts) == "string" then parts = { parts } end
  local s = assert(tcp.connect(port, "127.0.0.1"))
  local writer = task.spawn(function()
    for _, part in ipairs(parts) do
      if type(part) == "number" then
        task.sleep(part)
      elseif not s:write(part) then
        return
      end
    end
    if options.shutdown then s:shutdown() end
  end)
  local got, ending = {}, nil
  if options.wait then task.sleep(options.wait) end
  local deadline = task.now() + (options.deadline or 15000)
  s:setTimeout(options.idle or 2000)
  while true do
    local data, err, partial = s:read()
    if partial and partial ~= "" then got[#got + 1] = partial end
    if not data then
      ending = err and err.name == "ETIMEDOUT" and "idle" or (err and err.name or "EOF")
      break
    end
    got[#got + 1] = data
    if task.now() > deadline then ending = "deadline" break end
  end
  s:close()
  writer:join(1000)
  return table.concat(got), ending
end

-- True when an exchange ended because the server closed the connection.
function helpers.closed(ending)
  return ending == "EOF" or ending == "ECONNRESET" or ending == "EPIPE"
end

-- helpers.parse_responses(data[, methods]) -> responses, rest: splits the bytes a server sent
-- into HTTP/1.1 responses, strictly by their framing. Each response is {status, reason, head,
-- headers (lower-case names; count[name] = times seen), body, complete, framing = "length" |
-- "chunked" | "close" | "none"}. methods[i] == "HEAD" makes the i-th final response bodiless.
-- rest: the bytes after the last response that do not start a response head (a desync), or
-- the unfinished tail of an incomplete one.
function helpers.parse_responses(data, methods)
  local list, pos, final = {}, 1, 0
  while pos <= #data do
    local head_end = data:find("\r\n\r\n", pos, true)
    if not head_end then break end
    local head = data:sub(pos, head_end + 3)
    local status, reason = head:match("^HTTP/1%.[01] (%d%d%d) ?([^\r\n]*)\r\n")
    if not status then break end
    local r = { status = tonumber(status), reason = reason, head = head, headers = {}, count = {} }
    local first = true
    for line in head:gmatch("([^\r\n]*)\r\n") do
      if first then
        first = false
      elseif line ~= "" then
        local name, value = line:match("^([^:]+):[ \t]*(.-)[ \t]*$")
        if name then
          name = name:lower()
          r.headers[name] = value
          r.count[name] = (r.count[name] or 0) + 1
        end
      end
    end
    local p = head_end + 4
    local te, cl = r.headers["transfer-encoding"], r.headers["content-length"]
    if r.status >= 100 and r.status < 200 then
      r.framing, r.body, r.complete = "none", "", true
    else
      final = final + 1
      if (methods and methods[final] == "HEAD") or r.status == 204 or r.status == 304 then
        r.framing, r.body, r.complete = "none", "", true
      elseif te and te:lower():find("chunked") then
        r.framing, r.complete = "chunked", false
        local parts = {}
        while true do
          local eol = data:find("\r\n", p, true)
          local size = eol and tonumber(data:sub(p, eol - 1):match("^(%x+)"), 16)
          if not size then break end
          if size == 0 then
            local trailer_end = data:find("\r\n", eol + 2, true)
            if trailer_end == eol + 2 then r.complete, p = true, trailer_end + 2 end
            break
          end
          if #data < eol + 2 + size + 1 or data:sub(eol + 2 + size, eol + 3 + size) ~= "\r\n" then
            parts[#parts + 1] = data:sub(eol + 2, eol + 1 + size)
            p = #data + 1
            break
          end
          parts[#parts + 1] = data:sub(eol + 2, eol + 1 + size)
          p = eol + 4 + size
        end
        r.body = table.concat(parts)
        if not r.complete then p = #data + 1 end
      elseif cl then
        r.framing = "length"
        local n = tonumber(cl:match("^%d+$"))
        r.body = data:sub(p, p + (n or 0) - 1)
        r.complete = n ~= nil and #r.body == n
        p = p + #r.body
      else
        r.framing, r.body, r.complete = "close", data:sub(p), true
        p = #data + 1
      end
    end
    list[#list + 1] = r
    pos = p
    if not r.complete then break end
  end
  return list, data:sub(pos)
end

-- helpers.rss_kb(pid) -> the resident memory of a process in KiB, or nil once it is gone.
function helpers.rss_kb(pid)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  return tonumber(text:match("VmRSS:%s+(%d+)"))
end

return helpers
