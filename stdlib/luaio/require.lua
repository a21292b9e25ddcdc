-- luaio.require: the global require, written in Lua so that a module's top level may wait
-- (read a file, connect to a database): LuaJIT's require runs the module from C, where a
-- task cannot be suspended. It does what LuaJIT's does otherwise: package.loaded first, then
-- each of package.loaders (preload, then the app's files), the loader called with the
-- name, its result (or true) kept in package.loaded.
--
-- A module a task is still loading (its top level waits) is not run twice: another task
-- that requires it waits until it is loaded, then gets it; if loading it failed, that
-- task tries again itself. The same task requiring it again is a loop, an error as in Lua.
local sched = require "luaio.task"

local concat, error, tostring, type = table.concat, error, tostring, type
local package = package

local loading = {} -- name -> { by = the loading task, waiters = { tasks } }

local function find_loader(name)
  local loaders = package.loaders
  if type(loaders) ~= "table" then error("'package.loaders' must be a table", 3) end
  local missing = {}
  for i = 1, #loaders do
    local loader = loaders[i](name)
    if type(loader) == "function" then return loader end
    if type(loader) == "string" then missing[#missing + 1] = loader end
  end
  error(("module '%s' not found:%s"):format(name, concat(missing)), 3)
end

local function finish(name, entry)
  loading[name] = nil
  for i = 1, #entry.waiters do sched.wake(entry.waiters[i]) end
end

local function load_module(name, me)
  local loader = find_loader(name)
  local entry = { by = me, waiters = {} }
  loading[name] = entry
  local ok, result = pcall(loader, name)
  finish(name, entry) -- a failed load is not kept: the next require tries again
  if not ok then error(result, 0) end
  local loaded = package.loaded
  if result ~= nil then loaded[name] = result end
  if loaded[name] == nil then loaded[name] = true end
  return loaded[name]
end

local function require(name)
  local kind = type(name)
  if kind == "number" then
    name = tostring(name)
  elseif kind ~= "string" then
    error(("bad argument #1 to 'require' (string expected, got %s)"):format(kind), 2)
  end -- a name with a zero byte (the searchers take C strings) is refused by luaio.prelude
  while true do
    local loaded = package.loaded
    local value = loaded[name]
    if value then return value end -- false is not loaded, as for LuaJIT's require
    local entry = loading[name]
    if entry == nil then return load_module(name, sched.current()) end
    local me = sched.current()
    if entry.by == me or me == nil then
      error(("loop or previous error loading module '%s'"):format(name), 2)
    end
    entry.waiters[#entry.waiters + 1] = sched.waiter("require")
    sched.suspend()
  end
end

return require
