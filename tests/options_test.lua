-- luaio.options and luaio.error: the one option checker and the one error maker that the
-- modules share (and apps may use).
local test = require "test"
local options = require "luaio.options"
local E = require "luaio.error"

local SPEC = {
  timeout = { "ms", default = 5000 },
  backlog = { "integer", min = 1, max = 100, default = 10 },
  family = { "integer", values = { 4, 6 } },
  format = { "string", values = { "text", "json" }, default = "text" },
  name = { { "string", "boolean" } },
  file = { "string", check = function(v) if v:find("%.%.") then return "a path without '..'" end end },
  on = { "boolean", default = true },
  ratio = { "number", min = 0, max = 1 },
}

-- A function like a module's: its options are argument #2. (Not `return options.check(...)`:
-- a tail call would drop the frame the error level counts.)
local function listen(_, opts)
  local checked = options.check(opts, SPEC, 2, "listen")
  return checked
end

test.case("check returns a checked copy with the defaults applied", function()
  local given = { backlog = 50, name = false }
  local opts = listen(0, given)
  test.eq(opts, { timeout = 5000, backlog = 50, format = "text", name = false, on = true })
  test.ok(opts ~= given, "a copy")
  test.eq(given, { backlog = 50, name = false }, "the caller's table is left alone")
  test.eq(listen(0, nil), { timeout = 5000, backlog = 10, format = "text", on = true })
  test.eq(listen(0, { on = false }).on, false, "false is a value, not a missing option")
end)

test.case("durations: math.huge and 2^64 ms or more are forever; fractions stay", function()
  test.eq(listen(0, { timeout = math.huge }).timeout, math.huge)
  test.eq(listen(0, { timeout = 2 ^ 64 }).timeout, math.huge)
  test.eq(listen(0, { timeout = 2 ^ 63 }).timeout, 2 ^ 63)
  test.eq(listen(0, { timeout = 0.5 }).timeout, 0.5)
  test.eq(options.ms(0, 1, "f"), 0)
  test.eq(options.ms(math.huge, 1, "f"), math.huge)
end)

test.case("errors name the argument, the function and the option, at the caller's line", function()
  local cases = {
    { "x", "table expected, got string" },
    { { timout = 1 }, "unknown option 'timout'" },
    { { [1] = true }, "unknown option '1'" },
    { { timeout = -1 }, "option 'timeout': non%-negative number of milliseconds %(or math.huge%) expected, got %-1" },
    { { timeout = 0 / 0 }, "option 'timeout': non%-negative number of milliseconds %(or math.huge%) expected, got nan" },
    { { timeout = "5" }, "option 'timeout': non%-negative number of milliseconds %(or math.huge%) expected, got string" },
    { { backlog = 0 }, "option 'backlog': integer from 1 to 100 expected, got 0" },
    { { backlog = 2.5 }, "option 'backlog': integer from 1 to 100 expected, got 2.5" },
    { { backlog = math.huge }, "option 'backlog': integer from 1 to 100 expected, got inf" },
    { { family = 5 }, "option 'family': 4 or 6 expected, got 5" },
    { { format = "xml" }, "option 'format': 'text' or 'json' expected, got 'xml'" },
    { { format = 1 }, "option 'format': string expected, got number" },
    { { name = 1 }, "option 'name': string or boolean expected, got number" },
    { { file = "../x" }, "option 'file': a path without '..' expected, got '../x'" },
    { { on = "yes" }, "option 'on': boolean expected, got string" },
    { { ratio = 2 }, "option 'ratio': number from 0 to 1 expected, got 2" },
  }
  for _, c in ipairs(cases) do
    test.raises(function() listen(0, c[1]) end, "^tests/options_test%.lua:%d+: bad argument #2 to 'listen' %(" .. c[2] .. "%)$")
  end
  test.raises(function() options.check({}, { file = { "string", required = true } }, 1, "fork", 1) end,
    "options_test%.lua:%d+: bad argument #1 to 'fork' %(option 'file': string expected, got nil%)")
  -- "cstring": a string without zero bytes (a path, a host name)
  local CS = { path = { "cstring", required = true } }
  test.eq(options.check({ path = "/tmp/x" }, CS, 1, "open", 1).path, "/tmp/x")
  test.raises(function() options.check({ path = "/tmp/x\0.txt" }, CS, 1, "open", 1) end,
    "options_test%.lua:%d+: bad argument #1 to 'open' %(option 'path': string without zero bytes expected, got a string with a zero byte%)")
  test.raises(function() options.check({ path = 5 }, CS, 1, "open", 1) end, "%(option 'path': string expected, got number%)")
  test.raises(function() options.check({}, CS, 1, "open", 1) end, "%(option 'path': string expected, got nil%)")
  test.raises(function() options.ms(-1, 2, "wait", 1) end,
    "options_test%.lua:%d+: bad argument #2 to 'wait' %(non%-negative number of milliseconds %(or math.huge%) expected, got %-1%)")
  test.raises(function() options.ms(nil, 1, "sleep") end, "expected, got nil%)")
end)

test.case("durations are checked the same way by the modules", function()
  local http = require "http"
  test.raises(function() http.shutdown(-1) end, "options_test%.lua:%d+: bad argument #1 to 'shutdown' %(non%-negative number")
  local task = require "task"
  test.raises(function() task.sleep(-1) end, "bad argument #1 to 'sleep' %(non%-negative number of milliseconds %(or math.huge%)")
end)

test.case("luaio.error: a libuv name gets libuv's code and text, another name code 0", function()
  local err = E.new("ETIMEDOUT")
  test.eq({ err.name, err.code }, { "ETIMEDOUT", -110 })
  test.eq(tostring(err), "ETIMEDOUT: connection timed out")
  test.eq(tostring(E.new("EPROTO", "bad response")), "EPROTO: bad response")
  test.eq(E.new("ECONNRESET").code, E.code("ECONNRESET"))
  test.ok(E.code("ECONNRESET") < 0)
  test.eq(E.new("EOF").code, E.code("EOF"))
  local child = E.new("ECHILD", "no child process")
  test.eq({ child.name, child.code, child.message }, { "ECHILD", 0, "no child process" })
  test.eq(E.new("NOPE").message, "NOPE", "no text: the name")
  test.eq(E.code("NOPE"), 0)
  test.eq({ E.is(err), E.is(err, "ETIMEDOUT"), E.is(err, "EOF"), E.is({ name = "ETIMEDOUT" }), E.is("x") },
    { true, true, false, false, false })
  -- the same metatable as the errors C returns
  local fs = require "fs"
  local _, enoent = fs.open("/no/such/file")
  test.ok(E.is(enoent, "ENOENT"), "an error from C is one too")
  test.eq(getmetatable(enoent), getmetatable(err))
  test.raises(function() E.new() end, "bad argument #1 to 'new'")
end)
