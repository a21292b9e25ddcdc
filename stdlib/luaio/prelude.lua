-- luaio.prelude: what a fresh state gets before the app runs (runtime/core/main.c).
--   * require is luaio's own (luaio.require): a module's top level may wait.
--   * Lua's own functions that hand a name to the C library (io.open, io.lines, os.remove,
--     os.rename, os.getenv, loadfile, dofile), and require, whose searchers take C strings,
--     refuse a name with a zero byte, as luaio's modules do: C would cut it there
--     ("secret.key\0.txt" opened secret.key).
local find, select, type, error = string.find, select, type, error

local function guard(fname, fn, ...)
  local checked = { ... } -- the argument numbers that are names
  return function(...)
    for i = 1, #checked do
      local v = select(checked[i], ...)
      if type(v) == "string" and find(v, "\0", 1, true) then
        error(("bad argument #%d to '%s' (string without zero bytes expected, got a string with a zero byte)")
          :format(checked[i], fname), 2)
      end
    end
    return fn(...)
  end
end

io.open = guard("open", io.open, 1)
io.lines = guard("lines", io.lines, 1)
os.remove = guard("remove", os.remove, 1)
os.rename = guard("rename", os.rename, 1, 2)
os.getenv = guard("getenv", os.getenv, 1)
loadfile = guard("loadfile", loadfile, 1)
dofile = guard("dofile", dofile, 1)
require = guard("require", require "luaio.require", 1) -- luacheck: ignore (the global, on purpose)

return true
