-- Encode and decode throughput of `require "cjson"` on the documents in DIR (bench/json.sh).
-- The same file runs under luaio and under Debian's luajit with Debian's lua-cjson.
-- Prints "NAME decode|encode MB/s" per document, MB being the document's size as written by
-- bench/json_docs.js (so encode figures compare time for the same value, whatever the digits
-- each engine prints). Usage: RUNTIME bench/json_bench.lua DIR [SECONDS]
local cjson = require "cjson"
local dir, seconds = arg[1], tonumber(arg[2]) or 1

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- Runs fn until `seconds` of CPU time have passed (after a warm-up); returns runs per second.
local function rate(fn)
  for _ = 1, 3 do fn() end
  collectgarbage()
  local n, start = 0, os.clock()
  local elapsed
  repeat
    fn()
    n = n + 1
    elapsed = os.clock() - start
  until elapsed >= seconds
  return n / elapsed
end

for _, name in ipairs({ "api", "numbers", "strings" }) do
  local text = read(dir .. "/" .. name .. ".json")
  local mb = #text / 1e6
  local value = cjson.decode(text)
  print(("%s decode %.1f"):format(name, rate(function() cjson.decode(text) end) * mb))
  print(("%s encode %.1f"):format(name, rate(function() cjson.encode(value) end) * mb))
end
