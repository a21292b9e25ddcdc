-- test: a small test framework and its runner (`luaio test [--filter TEXT] [PATH...]`).
--
--   local test = require "test"
--   test.case("adds", function() test.eq(1 + 1, 2) end)
--
-- Each *_test.lua file registers cases; every case runs in its own task (so it may sleep and
-- do I/O) with a time limit. The run ends with the line "N passed, N failed" and exits
-- non-zero when anything failed.
local task = require "task"
local archive = require "luaio.archive"

local test = { timeout = 60000 }

local cases = {}
local cleanups = {}

-- test.cleanup(fn): runs fn after the current case ends, passed or failed (last in, first out).
function test.cleanup(fn)
  cleanups[#cleanups + 1] = fn
end

-- test.case(name, fn): registers a case of the file being loaded.
function test.case(name, fn)
  assert(type(name) == "string", "bad argument #1 to 'case' (string expected)")
  assert(type(fn) == "function", "bad argument #2 to 'case' (function expected)")
  cases[#cases + 1] = { name = name, fn = fn }
end

local function show(v, depth)
  if type(v) == "string" then
    if #v > 300 then -- a failure message must stay readable: the start, the end, the size
      return ("%q...(%d bytes)...%q"):format(v:sub(1, 150), #v, v:sub(-100))
    end
    return ("%q"):format(v)
  end
  if type(v) ~= "table" or (depth or 0) > 3 then return tostring(v) end
  local parts, n = {}, 0
  for k, item in pairs(v) do
    n = n + 1
    if n > 20 then parts[#parts + 1] = "..." break end
    parts[#parts + 1] = ("[%s] = %s"):format(show(k, 4), show(item, (depth or 0) + 1))
  end
  table.sort(parts)
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function deep_equal(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do
    if not deep_equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

-- test.eq(actual, expected[, what]): equal values, or tables with equal contents.
function test.eq(actual, expected, what)
  if not deep_equal(actual, expected) then
    error(("%sexpected %s, got %s"):format(what and what .. ": " or "", show(expected), show(actual)), 2)
  end
end

-- test.ok(value[, what]): value is neither nil nor false.
function test.ok(value, what)
  if not value then error((what or "expected a true value") .. ", got " .. show(value), 2) end
  return value
end

-- test.match(text, pattern[, what]): text is a string matching the Lua pattern.
function test.match(text, pattern, what)
  if type(text) ~= "string" or not text:find(pattern) then
    error(("%sexpected text matching %s, got %s"):format(what and what .. ": " or "", show(pattern), show(text)), 2)
  end
end

-- test.raises(fn, pattern): fn() raises an error whose message matches pattern.
function test.raises(fn, pattern)
  local ok, err = pcall(fn)
  if ok then error("expected an error matching " .. show(pattern) .. ", none was raised", 2) end
  if pattern and not tostring(err):find(pattern) then
    error(("expected an error matching %s, got %s"):format(show(pattern), show(tostring(err))), 2)
  end
end

-- test.skip(reason): ends the case as skipped (for what this build or machine cannot do).
local SKIP = {}
function test.skip(reason)
  error(setmetatable({ reason = reason }, SKIP), 0)
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
test.quote = shell_quote

-- test.sh(command) -> output (stdout and stderr), exit status. Blocks the loop: for tests only.
function test.sh(command)
  local p = assert(io.popen("{ " .. command .. "\n} 2>&1; echo \"__status=$?\""))
  local out = p:read("*a")
  p:close()
  local body, status = out:match("^(.-)__status=(%d+)\n?$")
  return body, tonumber(status)
end

-- test.luaio: the path of the luaio executable running the tests.
test.luaio = require("process").execpath

-- test.static(): skips the case unless the runtime is statically linked (the sanitizer
-- build links dynamically, so what needs a static binary cannot run there).
function test.static()
  if not test.sh("file -L " .. shell_quote(test.luaio)):find("statically linked") then
    test.skip("the runtime under test is dynamically linked (sanitizer build)")
  end
end

-- test.tmpdir() -> a new empty folder, removed when the run ends.
local tmpdirs = {}
function test.tmpdir()
  local out = test.sh("mktemp -d")
  local dir = out:match("^(%S+)")
  tmpdirs[#tmpdirs + 1] = dir
  return dir
end

-- test.write(path, text): writes a file, creating folders on the way.
function test.write(path, text)
  local dir = path:match("^(.*)/[^/]*$")
  if dir then test.sh("mkdir -p " .. shell_quote(dir)) end
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- --- the runner -------------------------------------------------------------------------

local function find_files(paths)
  local files = {}
  for _, path in ipairs(paths) do
    if path:match("%.lua$") then
      files[#files + 1] = path
    else
      local names, err = archive.walk(path)
      if not names then
        io.stderr:write("luaio test: cannot read '", path, "': ", tostring(err), "\n")
        os.exit(2)
      end
      for _, name in ipairs(names) do
        if name:match("_test%.lua$") then files[#files + 1] = path .. "/" .. name end
      end
    end
  end
  return files
end

local function run_case(case)
  local t = task.spawn(function()
    return xpcall(case.fn, function(err)
      if getmetatable(err) == SKIP then return err end
      return debug.traceback(tostring(err), 2)
    end)
  end)
  local joined, ok, err = t:join(test.timeout)
  for i = #cleanups, 1, -1 do
    local cleaned, cleanup_err = pcall(cleanups[i])
    if not cleaned and ok then ok, err = false, "cleanup failed: " .. tostring(cleanup_err) end
  end
  cleanups = {}
  if joined == nil then return false, ("timed out after %d ms"):format(test.timeout) end
  return ok, err
end

-- Loads and runs a test file's top level (which registers its cases); returns nil, or the
-- error that stopped it: a syntax error with file and line, or what the file raised, with
-- its traceback.
local function load_file(file)
  local chunk, err = loadfile(file)
  if not chunk then return err end
  local ok, load_err = xpcall(chunk, function(e)
    return (debug.traceback(tostring(e), 2):gsub("\n\t%[C%]: in function 'xpcall'.*", "")) -- not the runner's frames
  end)
  if not ok then return load_err end
end

local function usage_error(message)
  io.stderr:write("luaio test: ", message, "\nusage: luaio test [--filter TEXT] [PATH...]\n")
  os.exit(2)
end

function test.main(...)
  local args, filter = {}, nil
  local argv = { ... }
  local i = 1
  while i <= #argv do
    if argv[i] == "--filter" then
      filter = argv[i + 1] or usage_error("--filter needs a TEXT")
      i = i + 1
    else
      args[#args + 1] = argv[i]
    end
    i = i + 1
  end
  if #args == 0 then args = { "tests" } end

  local passed, failed, skipped, matched = 0, 0, 0, 0
  for _, file in ipairs(find_files(args)) do
    cases = {}
    local load_err = load_file(file)
    if load_err then
      failed = failed + 1
      print(("FAIL %s: cannot load: %s"):format(file, tostring(load_err):gsub("\n", "\n     ")))
    end
    for _, case in ipairs(cases) do
      if not filter or (file .. " " .. case.name):find(filter, 1, true) then
        matched = matched + 1
        local started = task.now()
        local ok, case_err = run_case(case)
        local ms = task.now() - started
        if ok then
          passed = passed + 1
          print(("ok   %s: %s (%d ms)"):format(file, case.name, ms))
        elseif getmetatable(case_err) == SKIP then
          skipped = skipped + 1
          print(("skip %s: %s: %s"):format(file, case.name, case_err.reason))
        else
          failed = failed + 1
          print(("FAIL %s: %s (%d ms)\n     %s"):format(file, case.name, ms,
            tostring(case_err):gsub("\n", "\n     ")))
        end
        io.stdout:flush()
      end
    end
  end
  for _, dir in ipairs(tmpdirs) do test.sh("rm -rf " .. shell_quote(dir)) end
  local unmatched = filter and matched == 0
  if unmatched then
    print(("no test case matches --filter %q (a plain substring of \"FILE CASE-NAME\")"):format(filter))
  end
  print(("%d passed, %d failed%s"):format(passed, failed, skipped > 0 and (", %d skipped"):format(skipped) or ""))
  io.stdout:flush()
  os.exit((failed == 0 and not unmatched) and 0 or 1)
end

return test
