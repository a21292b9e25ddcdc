-- The luaio side of bench/redis.sh: GET/SET load on a redis-server, then one line of figures.
--   luaio run bench/redis_client.lua PORT MODE SECONDS [TASKS [CLIENTS]]
-- MODE: conns    TASKS tasks, a connection each, SET then GET in a loop (no pipelining)
--       shared   TASKS tasks sharing CLIENTS clients (default 1; task i uses client i mod
--                CLIENTS): automatic pipelining
--       pipeline one task, explicit pipelines of 100 commands (50 SET + 50 GET)
-- Prints: ops=N wall=S cpu=S (cpu: this process's user + system time)
local redis = require "redis"
local task = require "task"

local port, mode, seconds = tonumber(arg[1]), arg[2], tonumber(arg[3])
local ntasks, nshared = tonumber(arg[4] or 50), tonumber(arg[5] or 1)
local value = string.rep("v", 16)
local ops, stop = 0, false

local workers = {}
local function spawn(fn) workers[#workers + 1] = task.spawn(fn) end

if mode == "conns" or mode == "shared" then
  local shared = {}
  if mode == "shared" then
    for i = 1, nshared do shared[i] = assert(redis.connect({ port = port })) end
  end
  local clients = {}
  for i = 1, ntasks do clients[i] = shared[i % nshared + 1] or assert(redis.connect({ port = port })) end
  for i = 1, ntasks do
    spawn(function()
      local r, key = clients[i], "key:" .. i
      while not stop do
        r:set(key, value)
        r:get(key)
        ops = ops + 2
      end
    end)
  end
elseif mode == "pipeline" then
  local r = assert(redis.connect({ port = port }))
  local keys = {}
  for i = 1, 50 do keys[i] = "pkey:" .. i end
  local function fill(p)
    for i = 1, 50 do p:set(keys[i], value) p:get(keys[i]) end
  end
  spawn(function()
    while not stop do
      local replies = assert(r:pipeline(fill))
      ops = ops + #replies
    end
  end)
else
  error("unknown mode " .. tostring(mode))
end

task.sleep(500) -- warm up: connections made, traces compiled
ops = 0
local cpu0, wall0 = os.clock(), task.now()
task.sleep(seconds * 1000)
local done, wall, cpu = ops, (task.now() - wall0) / 1000, os.clock() - cpu0
stop = true
for _, w in ipairs(workers) do w:join() end
print(("ops=%d wall=%.3f cpu=%.3f"):format(done, wall, cpu))
os.exit(0)
