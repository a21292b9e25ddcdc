-- luaio.options: one checker for the option tables of every module, and for durations.
--
--   local options = require "luaio.options"
--   local SPEC = {
--     timeout = { "ms", default = 0 },                     -- milliseconds, math.huge = forever
--     backlog = { "integer", min = 1, max = 65535, default = 511 },
--     family  = { "integer", values = { 4, 6 } },          -- an enumeration
--     format  = { "string", values = { "text", "json" }, default = "text" },
--     name    = { { "string", "boolean" } },               -- one of several types
--     file    = { "string", required = true, check = function(v) ... return "what is wrong" end },
--   }
--   function M.listen(port, opts)
--     opts = options.check(opts, SPEC, 2, "listen")  -- a checked copy, defaults applied
--   end
--
-- Kinds: "boolean", "string", "cstring", "number", "integer", "ms", "table", "function", or an
-- array of type names. "cstring" is a string without zero bytes: a path, a host name, what
-- reaches the OS or a C library as a C string, where a zero byte would cut it short. "ms" is
-- a duration: a number >= 0, fractions allowed, math.huge (or anything a libuv timer cannot
-- hold, 2^64 ms and more) meaning forever; the value comes back as given, math.huge for
-- forever. Its rules are runtime/core/opt.c's (luaio_checkms), the same for C.
--
-- Every error is raised at the level of the caller of the function that called check (level
-- 3 from here; pass another when check is called from a helper; and do not tail-call it:
-- `return options.check(...)` drops the frame the level counts), worded as the C readers
-- word theirs: "bad argument #2 to 'listen' (unknown option 'timout')", "(option 'backlog':
-- integer from 1 to 65535 expected, got 0)", "(option 'timeout': non-negative number of
-- milliseconds (or math.huge) expected, got -1)".
local C = require "luaio.opt"

local concat, floor, ipairs, pairs, tostring, type = table.concat, math.floor, ipairs, pairs, tostring, type

local options = {}

local NONE = {}

-- options.argerror(argn, fname, message[, level = 2]): raises "bad argument #argn to
-- 'fname' (message)" at the level of level's caller (2: the caller of the function that
-- calls argerror).
function options.argerror(argn, fname, message, level)
  error(("bad argument #%d to '%s' (%s)"):format(argn, fname, message), (level or 2) + 1)
end
local argerror = options.argerror

-- options.cstring(value, argn, fname[, what[, level]]) -> value: a string without zero bytes,
-- for what reaches the OS or a C library as a C string (a path, a host name), which a zero
-- byte would cut short; else raises "bad argument #argn to 'fname' (what expected, got ...)".
-- what defaults to "string"; level as for options.ms.
function options.cstring(value, argn, fname, what, level)
  what, level = what or "string", (level or 2) + 1
  if type(value) ~= "string" then argerror(argn, fname, what .. " expected, got " .. type(value), level) end
  if value:find("\0", 1, true) then
    argerror(argn, fname, what .. " without zero bytes expected, got a string with a zero byte", level)
  end
  return value
end

-- How a value reads in "got ...": its type when the type is wrong; when only the value is,
-- a number as written or a string 'quoted' (as the C readers do).
local NUMERIC = { number = true, integer = true, ms = true }
local function show(v, kind)
  local t = type(v)
  if kind == "cstring" and t == "string" then return "a string with a zero byte" end
  local right = kind == t or (t == "number" and NUMERIC[kind])
  if type(kind) == "table" then
    for _, k in ipairs(kind) do right = right or k == t end
  end
  if right and t == "number" then return tostring(v) end
  if right and t == "string" then return "'" .. v .. "'" end
  return t
end

-- options.ms(value, argn, fname[, level = 2]) -> value (math.huge for forever), or raises
-- "bad argument #argn to 'fname' (non-negative number of milliseconds (or math.huge)
-- expected, got -1)".
function options.ms(value, argn, fname, level)
  local ms, wanted = C.ms(value)
  if not ms then argerror(argn, fname, wanted .. " expected, got " .. show(value, "ms"), (level or 2) + 1) end
  return ms
end

local function expected_values(values)
  local words = {}
  for i, v in ipairs(values) do words[i] = type(v) == "string" and "'" .. v .. "'" or tostring(v) end
  if #words == 1 then return words[1] end
  return concat(words, ", ", 1, #words - 1) .. " or " .. words[#words]
end

-- The problem with value for rule, or nil. value is not nil.
local function problem(rule, value)
  local kind = rule[1]
  local t = type(value)
  if kind == "ms" then
    local ms, wanted = C.ms(value)
    return wanted, ms
  elseif kind == "cstring" then
    if t ~= "string" then return "string" end
    if value:find("\0", 1, true) then return "string without zero bytes" end
  elseif kind == "integer" then
    if t ~= "number" or value ~= floor(value) or value ~= value or value == math.huge or value == -math.huge
      or (rule.min and value < rule.min) or (rule.max and value > rule.max) then
      if rule.values then return expected_values(rule.values) end
      if rule.min and rule.max then return ("integer from %s to %s"):format(rule.min, rule.max) end
      if rule.min == 0 then return "non-negative integer" end
      if rule.min then return ("integer of at least %s"):format(rule.min) end
      if rule.max then return ("integer of at most %s"):format(rule.max) end
      return "integer"
    end
  elseif type(kind) == "table" then
    local ok = false
    for _, k in ipairs(kind) do ok = ok or t == k end
    if not ok then return concat(kind, " or ") end
  elseif t ~= kind then
    return kind
  elseif kind == "number" and ((rule.min and value < rule.min) or (rule.max and value > rule.max) or value ~= value) then
    return ("number from %s to %s"):format(rule.min or "-inf", rule.max or "inf")
  end
  if rule.values then
    local found = false
    for _, v in ipairs(rule.values) do found = found or v == value end
    if not found then return expected_values(rule.values) end
  end
  return nil, value
end

-- options.check(opts, spec, argn, fname[, level = 2]) -> a copy of opts (nil: an empty
-- table) with every option checked and the defaults of those not given applied. Unknown
-- names, wrong types and values out of range raise, naming argument argn of fname and the
-- option. A rule's check(value) may return a message for what else is wrong.
function options.check(opts, spec, argn, fname, level)
  level = (level or 2) + 1
  if opts ~= nil and type(opts) ~= "table" then
    argerror(argn, fname, "table expected, got " .. type(opts), level)
  end
  local copy = {}
  for name, value in pairs(opts or NONE) do
    local rule = spec[name]
    if rule == nil then argerror(argn, fname, "unknown option '" .. tostring(name) .. "'", level) end
    local wrong, checked = problem(rule, value)
    if not wrong and rule.check then wrong = rule.check(value) end
    if wrong then
      argerror(argn, fname, ("option '%s': %s expected, got %s"):format(name, wrong, show(value, rule[1])), level)
    end
    copy[name] = checked
  end
  for name, rule in pairs(spec) do
    if copy[name] == nil then
      if rule.required then
        argerror(argn, fname, ("option '%s': %s expected, got nil"):format(name,
          type(rule[1]) == "table" and concat(rule[1], " or ") or rule[1] == "ms" and "duration"
          or rule[1] == "cstring" and "string" or rule[1]), level)
      end
      copy[name] = rule.default
    end
  end
  return copy
end

return options
