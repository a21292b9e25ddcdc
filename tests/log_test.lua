-- log: levels, text and JSON lines (checked by node's JSON.parse), files and rotation, a
-- writer that never blocks the loop, nothing lost at exit, dropped-line accounting, access
-- lines and argument checks.
local test = require "test"
local task = require "task"
local log = require "log"
local helpers = require "tests.helpers"

local q = test.quote

local TIME = "%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function lines(text)
  local t = {}
  for line in (text or ""):gmatch("([^\n]*)\n") do t[#t + 1] = line end
  return t
end

-- A logger writing to a fresh file; closed when the case ends.
local function file_logger(options)
  options = options or {}
  local path = options.output or (test.tmpdir() .. "/app.log")
  options.output = path
  local logger = assert(log.new(options))
  test.cleanup(function() logger:close() end)
  return logger, path
end

local function our_pid()
  return (read("/proc/self/stat"):match("^%d+"))
end

test.case("levels: below the threshold nothing is written or even looked at", function()
  local logger, path = file_logger({ level = "warn" })
  test.eq(logger:getLevel(), "warn")
  local looked = 0
  local spy = setmetatable({}, { __tostring = function() looked = looked + 1; return "spy" end })
  test.eq(logger:debug("d", { x = spy }), false)
  test.eq(logger:info("i", { x = spy }), false)
  test.eq(logger:info({ "not even checked below the threshold" }), false)
  test.eq(looked, 0)
  test.eq(logger:warn("w", { x = spy }), true)
  test.eq(looked, 1)
  test.eq(logger:error("e"), true)
  logger:setLevel("debug")
  test.eq(logger:debug("d2"), true)
  logger:setLevel("error")
  test.eq(logger:warn("w2"), false)
  assert(logger:flush(5000))
  local got = lines(read(path))
  test.eq(#got, 3)
  test.match(got[1], "^" .. TIME .. " WARN w x=spy$")
  test.match(got[2], "^" .. TIME .. " ERROR e$")
  test.match(got[3], "^" .. TIME .. " DEBUG d2$")

  -- a million filtered calls cost next to nothing
  local started = task.now()
  for i = 1, 1000000 do logger:debug("filtered", { i = i }) end
  local ms = task.now() - started
  test.ok(ms < 1000, "a million filtered calls took " .. ms .. " ms")
end)

test.case("text lines: fields sorted, quoted only when needed, control characters escaped", function()
  local logger, path = file_logger()
  local err = select(2, io.open("/nonexistent"))
  logger:info("hello world", {
    port = 8080, ratio = 0.25, ok = true, no = false, name = "bob", empty = "",
    spaced = "two words", quote = 'say "hi"', eq = "a=b", back = "c:\\dir",
  })
  logger:warn("line one\nline two\tand\r\0 nul", { multi = "x\ny" })
  logger:error("bad utf8 \255 and good é✓", { nan = 0 / 0, inf = 1 / 0, big = 2 ^ 53, neg = -3 })
  logger:info("errors and tables", { e = setmetatable({}, { __tostring = function() return "E: oops" end }),
    t = {}, msg = err })
  assert(logger:flush(5000))
  local got = lines(read(path))
  test.eq(#got, 4)
  local body = function(i) return (got[i]:gsub("^" .. TIME .. " ", "")) end
  test.eq(body(1), 'INFO hello world back="c:\\\\dir" empty="" eq="a=b" name=bob no=false ok=true ' ..
    'port=8080 quote="say \\"hi\\"" ratio=0.25 spaced="two words"')
  test.eq(body(2), 'WARN line one\\nline two\\tand\\r\\x00 nul multi="x\\ny"')
  test.eq(body(3), "ERROR bad utf8 \239\191\189 and good é✓ big=9.007199254741e+15 inf=inf nan=nan neg=-3")
  test.match(body(4), '^INFO errors and tables e="E: oops" msg="/nonexistent: No such file or directory" t="table: 0x%x+"$')
end)

-- Parses every line of path with node's JSON.parse; returns node's report (one line each:
-- level, msg and field s as hex of their UTF-8 bytes) and its exit status.
local function node_parse(path)
  local script = [[
const lines = require('fs').readFileSync(process.argv[2], 'utf8').split('\n');
if (lines.pop() !== '') throw new Error('no final newline');
for (const line of lines) {
  const o = JSON.parse(line);
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(o.time)) throw new Error('time ' + o.time);
  const hex = (v) => Buffer.from(String(v), 'utf8').toString('hex');
  console.log([o.level, hex(o.msg), hex(o.s), typeof o.n, JSON.stringify(o.n)].join(' '));
}
]]
  return test.sh("node " .. q(helpers.node_script(script)) .. " " .. q(path))
end

local function tohex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

test.case("JSON lines: valid JSON for node, nasty strings included", function()
  local logger, path = file_logger({ format = "json", level = "debug" })
  local all_controls = {}
  for i = 0, 31 do all_controls[#all_controls + 1] = string.char(i) end
  all_controls = table.concat(all_controls) .. "\127"
  local cases = {
    { 'quotes " and \\ backslashes \\" \\\\', 'q"\\' },
    { all_controls, "\n\r\t\b\f" },
    { "utf-8: héllo ✓ 😀 \226\128\168", "ok" }, -- U+2028 is valid JSON
    -- invalid: a lone byte, an overlong '/', a surrogate, a truncated sequence, past U+10FFFF
    { "bad \255 \192\175 \237\160\128 \226\130", "\244\144\128\128!" },
  }
  local want_hex = {
    tohex(cases[1][1]) .. " " .. tohex(cases[1][2]),
    tohex(cases[2][1]) .. " " .. tohex(cases[2][2]),
    tohex(cases[3][1]) .. " " .. tohex(cases[3][2]),
    -- each invalid byte becomes U+FFFD (ef bf bd); a truncated sequence is one per byte
    tohex("bad \239\191\189 \239\191\189\239\191\189 \239\191\189\239\191\189\239\191\189 " ..
      "\239\191\189\239\191\189") .. " " .. tohex("\239\191\189\239\191\189\239\191\189\239\191\189!"),
  }
  for i, c in ipairs(cases) do logger:info(c[1], { s = c[2], n = i }) end
  logger:debug("numbers", { s = "x", n = 0 / 0 })
  logger:warn("numbers", { s = "x", n = 1.5 })
  logger:error("numbers", { s = "x", n = true })
  assert(logger:flush(5000))
  local out, status = node_parse(path)
  test.eq(status, 0, "node parsed every line: " .. out)
  local got = lines(out)
  test.eq(#got, 7)
  for i = 1, 4 do test.eq(got[i], "info " .. want_hex[i] .. " number " .. i, "line " .. i) end
  test.eq(got[5], "debug " .. tohex("numbers") .. " 78 object null")
  test.eq(got[6], "warn " .. tohex("numbers") .. " 78 number 1.5")
  test.eq(got[7], "error " .. tohex("numbers") .. " 78 boolean true")
  local first = lines(read(path))[1]
  test.match(first, '^{"time":"' .. TIME .. '","level":"info","msg":"quotes \\" and \\\\ backslashes')
end)

test.case("output to stdout and stderr, text and JSON", function()
  local dir = test.tmpdir()
  test.write(dir .. "/main.lua", [[
local log = require "log"
log.info("to stderr", { n = 1 })
local out = assert(log.new { output = "stdout", format = "json" })
out:warn("to stdout", { n = 2 })
]])
  local out = test.sh(q(test.luaio) .. " run " .. q(dir) .. " 2>" .. q(dir .. "/err"))
  test.match(out, '^{"time":"' .. TIME .. '","level":"warn","msg":"to stdout","n":2}\n$')
  test.match(read(dir .. "/err"), "^" .. TIME .. " INFO to stderr n=1\n$")
end)

test.case("configure: level, format and output of the module-level logger", function()
  local dir = test.tmpdir()
  test.write(dir .. "/main.lua", [[
local log = require "log"
local dir = ...
log.debug("hidden")
assert(log.configure { output = dir .. "/a.log", level = "debug" })
log.debug("first", { k = "v" })
log.setLevel("error")
assert(log.getLevel() == "error")
log.warn("hidden too")
assert(log.configure { format = "json", level = "info" })
log.info("second")
local ok, err = log.configure { output = dir .. "/missing/b.log" }
assert(ok == nil and err.name == "ENOENT", tostring(err))
log.info("third: still to a.log")
]])
  local out, status = test.sh(q(test.luaio) .. " run " .. q(dir .. "/main.lua") .. " " .. q(dir))
  test.eq(status, 0, out)
  test.eq(out, "")
  local got = lines(read(dir .. "/a.log"))
  test.eq(#got, 3)
  test.match(got[1], "^" .. TIME .. " DEBUG first k=v$")
  test.match(got[2], '^{"time":"' .. TIME .. '","level":"info","msg":"second"}$')
  test.match(got[3], '"msg":"third: still to a.log"}$')
end)

test.case("reopen after a rename: new lines go to a new file", function()
  local logger, path = file_logger()
  logger:info("one")
  assert(logger:flush(5000))
  assert(os.rename(path, path .. ".1"))
  logger:info("two") -- still the old file: it has not been reopened yet
  logger:reopen()
  logger:info("three")
  assert(logger:flush(5000))
  test.eq(#lines(read(path .. ".1")), 2)
  test.match(read(path .. ".1"), "INFO one\n.*INFO two\n$")
  test.match(read(path), "^" .. TIME .. " INFO three\n$")

  -- log.reopen() reopens every file logger
  local other, other_path = file_logger({ format = "json" })
  other:info("a")
  logger:info("four")
  assert(other:flush(5000) and logger:flush(5000))
  assert(os.rename(path, path .. ".2"))
  assert(os.rename(other_path, other_path .. ".1"))
  log.reopen()
  other:info("b")
  logger:info("five")
  assert(other:flush(5000) and logger:flush(5000))
  test.match(read(path), "^" .. TIME .. " INFO five\n$")
  test.match(read(other_path), '"msg":"b"}\n$')
  test.eq(#lines(read(other_path)), 1)
  test.eq(#lines(read(path .. ".2")), 2)
end)

test.case("SIGUSR1 reopens file loggers; an app's own SIGUSR1 handler runs too", function()
  local process = require "process"
  local logger, path = file_logger() -- the first file logger adds the SIGUSR1 handler
  local got = 0
  local function mine() got = got + 1 end
  test.eq(process.on("SIGUSR1", mine), true)
  test.cleanup(function() process.off("SIGUSR1", mine) end)
  logger:info("before")
  assert(logger:flush(5000))
  assert(os.rename(path, path .. ".1"))
  test.sh("kill -USR1 " .. our_pid())
  -- the handlers run in tasks of their own, some time after the signal: log until a line
  -- lands in the new file
  local deadline = task.now() + 5000
  repeat
    logger:info("after")
    assert(logger:flush(5000))
    task.sleep(20)
  until ((read(path) or ""):find("after") and got > 0) or task.now() > deadline
  test.match(read(path .. ".1"), "INFO before\n")
  test.match(read(path) or "", "INFO after\n", "the log reopened its file")
  test.eq(got, 1, "the app's handler ran")
end)

test.case("flush gives ETIMEDOUT; its timeout is a duration", function()
  local logger = file_logger()
  logger:info("x")
  test.eq(logger:flush(math.huge), true, "math.huge: no timeout")
  test.raises(function() logger:flush(-1) end, "bad argument #1 to 'flush' %(non%-negative number of milliseconds")
  test.raises(function() logger:flush(0 / 0) end, "bad argument #1 to 'flush'")
  -- stdout is a pipe nobody reads: the write blocks in the pool, the lines stay pending
  local dir = test.tmpdir()
  test.write(dir .. "/s.lua", [[
local log = require "log"
local logger = log.new { output = "stdout" }
for _ = 1, 200 do logger:info(("x"):rep(1000)) end
local ok, err = logger:flush(100)
io.stderr:write(tostring(ok), " ", err.name, " ", err.code, "\n")
]])
  local out = test.sh("timeout -s KILL 20 " .. q(test.luaio) .. " run " .. dir .. "/s.lua 2>" .. dir ..
    "/err | sleep 1")
  test.eq(read(dir .. "/err"), "nil ETIMEDOUT " .. require("luaio.error").code("ETIMEDOUT") .. "\n", out)
end)

local ticker = helpers.ticker

test.case("100,000 lines while a timer ticks: logging never waits for the disk", function()
  local logger, path = file_logger()
  local tick = ticker()
  local started = task.now()
  for i = 1, 100000 do
    logger:info("line", { i = i, path = "/some/request/path", status = 200 })
    -- task.yield, not task.sleep(0): with libuv 1.44 a 0 ms timer started from a timer
    -- callback runs in the same timer pass, before the loop polls for completions
    if i % 1000 == 0 then task.yield() end
  end
  local logging = task.now() - started
  assert(logger:flush(20000))
  local state = tick.stop()
  local text = read(path)
  local count = select(2, text:gsub("\n", "\n"))
  test.eq(count, 100000)
  test.match(text, "INFO line i=100000 path=/some/request/path status=200\n$")
  test.eq(logger:stats().dropped, 0)
  test.ok(state.ticks > 10, "the timer ticked " .. state.ticks .. " times")
  test.ok(state.max_gap < 200, "longest gap between ticks " .. state.max_gap .. " ms")
  test.ok(logging < 10000, "100,000 lines took " .. logging .. " ms")
end)

test.case("an output that stalls costs lines, never the loop: they are dropped and counted", function()
  local dir = test.tmpdir()
  local fifo = dir .. "/fifo"
  test.sh("mkfifo " .. q(fifo))
  -- holds the FIFO open and never reads: after 64 KiB every write(2) blocks
  local reader = helpers.start("exec 3<>" .. q(fifo) .. "; sleep 30")
  task.sleep(100)
  local logger = assert(log.new({ output = fifo, buffer_size = 65536 }))
  local tick = ticker()
  for i = 1, 20000 do
    logger:info("filler line to fill the pipe and then the buffer", { i = i })
    if i % 500 == 0 then task.sleep(1) end
  end
  local state = tick.stop()
  local stats = logger:stats()
  test.ok(stats.dropped > 10000, "lines dropped: " .. stats.dropped)
  test.ok(stats.pending > 0 and stats.pending <= 65536 + 200000, "pending bytes bounded: " .. stats.pending)
  test.ok(state.max_gap < 200, "longest gap between ticks " .. state.max_gap .. " ms")
  helpers.stop(reader) -- the blocked write now fails (EPIPE) and the thread is free again
  logger:close()
end)

test.case("dropped lines: counted, then one line says how many", function()
  for _, format in ipairs({ "text", "json" }) do
    local logger, path = file_logger({ buffer_size = 1000, format = format })
    local kept = 0
    for i = 1, 500 do
      if logger:info("a line of about fifty bytes", { i = i }) then kept = kept + 1 end
    end
    local dropped = logger:stats().dropped
    test.ok(kept > 5 and kept < 40, format .. ": kept " .. kept)
    test.eq(kept + dropped, 500)
    assert(logger:flush(5000))
    logger:info("after the drops")
    assert(logger:flush(5000))
    local got = lines(read(path))
    test.eq(#got, kept + 2)
    if format == "text" then
      test.match(got[kept + 1], "^" .. TIME .. " WARN log lines dropped dropped=" .. dropped .. "$")
      test.match(got[kept + 2], "INFO after the drops$")
    else
      test.match(got[kept + 1], '^{"time":"' .. TIME .. '","level":"warn","msg":"log lines dropped","dropped":' ..
        dropped .. "}$")
      local out, status = node_parse(path)
      test.eq(status, 0, out)
    end
  end
end)

-- A script that logs n lines to a file and then ends as `ending` says.
local function exit_script(dir, ending, output)
  test.write(dir .. "/main.lua", ([[
local log = require "log"
local logger = assert(log.new { output = %q })
for i = 1, 50000 do logger:info("line", { i = i }) end
%s
]]):format(output, ending))
  return test.sh(q(test.luaio) .. " run " .. q(dir))
end

test.case("nothing is lost at exit: normal end, os.exit, process.exit, a failing main task", function()
  local endings = {
    "",
    "os.exit(0)",
    "os.exit(3)",
    'local ok, process = pcall(require, "process"); if ok and process.exit then process.exit(0) end os.exit(0)',
    'error("boom")',
    'require("task").spawn(function() require("task").sleep(10); os.exit(0) end)',
  }
  for _, ending in ipairs(endings) do
    local dir = test.tmpdir()
    local path = dir .. "/app.log"
    local out, status = exit_script(dir, ending, path)
    local text = read(path) or ""
    local count = select(2, text:gsub("\n", "\n"))
    test.eq(count, 50000, ("%q (status %d, %s)"):format(ending, status, out))
    test.match(text, "i=50000\n$")
  end
  -- to stdout, through a pipe, with os.exit straight after
  local dir = test.tmpdir()
  local out = exit_script(dir, "os.exit(0)", "stdout")
  test.eq(select(2, out:gsub("\n", "\n")), 50000)
end)

test.case("logging works outside tasks: a module's top level, a plain coroutine", function()
  local dir = test.tmpdir()
  test.write(dir .. "/mod.lua", [[
local log = require "log"
log.info("from a module's top level")
return {}
]])
  test.write(dir .. "/main.lua", [[
local log = require "log"
assert(log.configure { output = ... })
require "mod"
coroutine.wrap(function() log.info("from a plain coroutine") end)()
]])
  local out, status = test.sh(q(test.luaio) .. " run " .. q(dir) .. " " .. q(dir .. "/app.log"))
  test.eq(status, 0, out)
  local got = lines(read(dir .. "/app.log"))
  test.eq(#got, 2)
  test.match(got[1], "INFO from a module's top level$")
  test.match(got[2], "INFO from a plain coroutine$")
end)

test.case("a logger nobody holds any more still writes what it logged, then goes", function()
  local path = test.tmpdir() .. "/gc.log"
  do
    local logger = assert(log.new({ output = path }))
    for i = 1, 1000 do logger:info("collected", { i = i }) end
  end
  collectgarbage()
  collectgarbage()
  local deadline = task.now() + 5000
  while select(2, (read(path) or ""):gsub("\n", "")) < 1000 and task.now() < deadline do task.sleep(5) end
  test.eq(select(2, read(path):gsub("\n", "")), 1000)
  test.match(read(path), "i=1000\n$")
end)

test.case("access lines: Combined and Common Log Format", function()
  local fields = {
    remote_addr = "192.0.2.7", user = "alice", time = 1795671000, method = "GET",
    path = "/index.html?q=a b", protocol = "HTTP/1.1", status = 200, bytes = 5120,
    referer = "https://example.com/", user_agent = 'curl/8.0 "quoted" \1',
  }
  test.eq(log.formatAccess(fields),
    '192.0.2.7 - alice [26/Nov/2026:05:30:00 +0000] "GET /index.html?q=a b HTTP/1.1" 200 5120 ' ..
    '"https://example.com/" "curl/8.0 \\x22quoted\\x22 \\x01"')
  test.eq(log.formatAccess(fields, "common"),
    '192.0.2.7 - alice [26/Nov/2026:05:30:00 +0000] "GET /index.html?q=a b HTTP/1.1" 200 5120')
  test.eq(log.formatAccess({ remote_addr = "::1", time = 0, method = "POST", path = "/x\n",
    protocol = "HTTP/1.0", status = 404, bytes = 0 }),
    '::1 - - [01/Jan/1970:00:00:00 +0000] "POST /x\\x0A HTTP/1.0" 404 - "-" "-"')
  test.match(log.formatAccess({}), '^%- %- %- %[%d%d/%a%a%a/%d%d%d%d:%d%d:%d%d:%d%d %+0000%] "%- %- %-" %- %- "%-" "%-"$')

  local access, path = file_logger()
  test.eq(log.access(access, fields), true)
  test.eq(access:access({ remote_addr = "10.0.0.1", time = 1795671000, method = "HEAD", path = "/",
    protocol = "HTTP/1.1", status = 304 }), true)
  local common, common_path = file_logger({ format = "common" })
  log.access(common, fields)
  local json, json_path = file_logger({ format = "json" })
  log.access(json, { remote_addr = "10.0.0.1", status = 200, path = '/"q"' })
  assert(access:flush(5000) and common:flush(5000) and json:flush(5000))
  local got = lines(read(path))
  test.eq(got[1], log.formatAccess(fields))
  test.eq(got[2], '10.0.0.1 - - [26/Nov/2026:05:30:00 +0000] "HEAD / HTTP/1.1" 304 - "-" "-"')
  test.eq(read(common_path), log.formatAccess(fields, "common") .. "\n")
  test.match(read(json_path), '"level":"info","msg":"access","path":"/\\"q\\"","remote_addr":"10.0.0.1","status":200}\n$')
end)

test.case("wrong arguments raise, naming them; a bad output path is nil, err", function()
  local logger = file_logger()
  test.raises(function() log.info({}) end, "bad argument #1 to 'info' %(string expected, got table%)")
  test.raises(function() logger:warn(nil) end, "bad argument #1 to 'warn'")
  test.raises(function() logger:error("x", "y") end, "bad argument #2 to 'error' %(table of fields expected, got string%)")
  test.raises(function() logger:info("x", { 1, 2 }) end, "bad argument #2 to 'info' %(field names must be strings")
  test.raises(function() log.new(5) end, "bad argument #1 to 'new' %(table expected, got number%)")
  test.raises(function() log.new({ levle = "info" }) end, "unknown option 'levle'")
  test.raises(function() log.new({ level = "loud" }) end, "option 'level': 'debug', 'info', 'warn' or 'error' expected, got 'loud'")
  test.raises(function() log.new({ format = "xml" }) end, "option 'format'")
  test.raises(function() log.new({ buffer_size = 0 }) end, "option 'buffer_size'")
  test.raises(function() log.new({ output = 1 }) end, "option 'output': string expected, got number")
  -- a path reaches open() as a C string: "app\0.txt" would create app
  local dir = test.tmpdir()
  test.raises(function() log.new({ output = dir .. "/app\0.txt" }) end,
    "log_test%.lua:%d+: bad argument #1 to 'new' %(option 'output': string without zero bytes expected, got a string with a zero byte%)")
  test.raises(function() log.configure({ output = dir .. "/app\0.txt" }) end, "bad argument #1 to 'configure' %(option 'output'")
  test.eq(test.sh("ls -A " .. test.quote(dir)), "", "no file made")
  test.raises(function() log.configure("json") end, "bad argument #1 to 'configure'")
  test.raises(function() log.setLevel(3) end, "^[^\n]*log_test%.lua:%d+: bad argument #1 to 'setLevel'")
  test.raises(function() logger:setLevel("verbose") end, "^[^\n]*log_test%.lua:%d+: bad argument #1 to 'setLevel'")
  test.raises(function() log.access({}, {}) end, "bad argument #1 to 'access' %(logger expected")
  test.raises(function() log.access(logger, "GET /") end, "bad argument #2 to 'access'")
  test.raises(function() log.formatAccess(nil) end, "bad argument #1 to 'formatAccess'")
  test.raises(function() log.formatAccess({}, "short") end, "bad argument #2 to 'formatAccess'")
  test.raises(function() log.formatAccess({ time = "now" }) end, "field 'time'")
  test.raises(function() logger:write(5) end, "bad argument")
  local bad, err = log.new({ output = test.tmpdir() .. "/no/such/dir/app.log" })
  test.eq(bad, nil)
  test.eq(err.name, "ENOENT")
  bad, err = log.new({ output = test.tmpdir() })
  test.eq(bad, nil)
  test.eq(err.name, "EISDIR")
  logger:close()
  test.eq(logger:info("after close"), false)
end)
