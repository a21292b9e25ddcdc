-- redis.cluster: a Redis Cluster client over stdlib/redis.lua's clients (one shared,
-- automatically pipelined connection per node).
--
--   local redis = require "redis"
--   local c = assert(redis.cluster{ seeds = { "127.0.0.1:7000", "127.0.0.1:7001" } })
--   c:set("user:{42}:name", "ada")
--   local replies = c:pipeline(function(p) p:get("a") p:get("b") end)  -- split by slot
--
-- The slot map comes from CLUSTER SLOTS (asked of the known nodes, then the seeds). A key's
-- slot is CRC16 of the key or its {hash tag}, modulo 16384 (redis.slot, in C); which
-- argument is the key comes from COMMAND INFO, asked once per command name (EVAL-like
-- commands: numkeys; other commands with movable keys: COMMAND GETKEYS).
--
-- Redirections: MOVED updates that slot at once and refreshes the whole map in the
-- background (one refresh at a time, at most one a second; the map is also refreshed
-- every refresh_interval ms while commands are sent); ASK sends ASKING and the command to the
-- importing node, once. TRYAGAIN, CLUSTERDOWN, LOADING and connections that cannot be made
-- are retried after retry_delay ms (doubling, at most 1 s) until retry_timeout ms have
-- passed, with the map refreshed. A connection that breaks while a command is under way
-- (the command may have run) fails that command with the error, unless it only reads.
local redis = require "redis"
local C = require "luaio.redis"
local sched = require "luaio.task"
local task = require "task"
local E = require "luaio.error"
local options = require "luaio.options"

local type, tostring, tonumber, select, error, pairs, ipairs, setmetatable, unpack =
  type, tostring, tonumber, select, error, pairs, ipairs, setmetatable, unpack
local now, slot_of, min = sched.now, C.slot, math.min

local cluster = {}

local Cluster = {}

local SPEC = {
  seeds = { "table", required = true },
  read_from_replicas = { "boolean" },
  max_redirections = { "integer", min = 1, max = 1000 },
  retry_timeout = { "ms" },
  retry_delay = { "ms" },
  refresh_interval = { "ms" },
}
for k, rule in pairs(redis.CONNECT_OPTIONS) do
  if k ~= "url" and k ~= "host" and k ~= "port" and k ~= "path" and k ~= "db" then SPEC[k] = rule end
end

-- --- nodes and their clients -------------------------------------------------------------

local function addr_of(host, port) return host .. ":" .. port end

-- "host:port", "[v6]:port", "redis://host:port" or {host =, port =} -> host, port
local function parse_seed(seed)
  if type(seed) == "table" then return seed.host or "127.0.0.1", seed.port or 6379 end
  if type(seed) ~= "string" then return nil end
  seed = seed:gsub("^rediss?://", ""):gsub("/.*$", ""):gsub("^.*@", "")
  local host, port = seed:match("^%[(.*)%]:(%d+)$")
  if not host then host, port = seed:match("^(.*):(%d+)$") end
  if not host then return seed, 6379 end
  return host, tonumber(port)
end

function Cluster:_node(host, port)
  local addr = addr_of(host, port)
  local node = self.node_map[addr]
  if not node then
    node = { addr = addr, host = host, port = port, waiters = {} }
    self.node_map[addr] = node
  end
  return node
end

-- The node's client, connected (READONLY on a replica) -> client | nil, err. Tasks that
-- ask while a connection is being made wait for it.
function Cluster:_client(addr)
  local node = self.node_map[addr]
  if not node then return nil, E.new("ENOTCONN", "unknown node " .. addr) end
  while true do
    local r = node.client
    if r and C.state(r) then return r end
    if not node.connecting then break end
    local waiters = node.waiters
    waiters[#waiters + 1] = sched.waiter("redis cluster")
    sched.suspend()
  end
  if node.client then
    node.client:close()
    node.client = nil
  end
  node.connecting = true
  local o = {}
  for k, v in pairs(self.conf) do o[k] = v end
  o.host, o.port = node.host, node.port
  local r, err = redis._open(o)
  if r and node.replica then
    local ok, rerr = r:readonly()
    if not ok then
      r:close()
      r, err = nil, type(rerr) == "string" and redis.server_error(rerr) or rerr
    end
  end
  node.connecting = false
  node.client = r
  local waiters = node.waiters
  node.waiters = {}
  for i = 1, #waiters do sched.wake(waiters[i]) end
  if self.closed and r then
    r:close()
    node.client = nil
    return nil, E.new("ECANCELED", "the cluster client is closed")
  end
  return r, err
end

-- --- the slot map ---------------------------------------------------------------------------

-- Replaces the map with a CLUSTER SLOTS reply (asked of the node at host).
function Cluster:_apply(reply, asked_host)
  local slots, masters, seen = {}, {}, {}
  for _, range in ipairs(reply) do
    local first, last = tonumber(range[1]), tonumber(range[2])
    local shard = { replicas = {} }
    for i = 3, #range do
      local ep = range[i]
      local host = ep[1]
      if type(host) ~= "string" or host == "" or host == "?" then host = asked_host end
      local node = self:_node(host, tonumber(ep[2]))
      node.replica = i > 3
      seen[node.addr] = true
      if i == 3 then
        shard.master = node.addr
        if not masters[node.addr] then
          masters[node.addr] = true
          masters[#masters + 1] = node.addr
        end
      else
        shard.replicas[#shard.replicas + 1] = node.addr
      end
    end
    for s = first, last do slots[s] = shard end
  end
  self.slots, self.masters = slots, masters
  for addr, node in pairs(self.node_map) do -- nodes gone from the cluster
    if not seen[addr] and not node.connecting then
      if node.client then node.client:close() end
      self.node_map[addr] = nil
    end
  end
end

-- Asks the known masters, then the seeds, for the slot map. One refresh at a time: a task
-- that asks while one runs waits for it. -> true | nil, err
function Cluster:refresh()
  if self.refreshing then
    local waiters = self.refresh_waiters
    waiters[#waiters + 1] = sched.waiter("redis cluster")
    sched.suspend()
    return self.last_refresh_ok or nil, self.last_refresh_err or nil
  end
  self.refreshing = true
  local tried, ok, err = {}, nil, nil
  local candidates = {}
  for _, addr in ipairs(self.masters) do candidates[#candidates + 1] = addr end
  for _, seed in ipairs(self.seeds) do candidates[#candidates + 1] = addr_of(seed[1], seed[2]) end
  for _, addr in ipairs(candidates) do
    if not tried[addr] and not self.closed then
      tried[addr] = true
      local host, port = parse_seed(addr)
      self:_node(host, port)
      local r, cerr = self:_client(addr)
      if r then
        local reply, rerr = r:cluster("slots")
        if type(reply) == "table" and #reply > 0 then
          self:_apply(reply, host)
          ok, err = true, nil
          break
        end
        err = type(rerr) == "string" and redis.server_error(rerr) or rerr or E.new("CLUSTERDOWN", "no slots served")
      else
        err = cerr
      end
    end
  end
  self.refreshing = false
  self.refreshed_at = now()
  self.last_refresh_ok, self.last_refresh_err = ok or false, err or false
  local waiters = self.refresh_waiters
  self.refresh_waiters = {}
  for i = 1, #waiters do sched.wake(waiters[i]) end
  return ok, err
end

-- A refresh in the background, unless one runs or ran less than `gap` ms ago (default 1 s).
function Cluster:_refresh_soon(gap)
  if self.refreshing or self.closed or (self.refreshed_at and now() - self.refreshed_at < (gap or 1000)) then return end
  self.refreshing = true -- until the task starts: no second one meanwhile
  task.spawn(function()
    self.refreshing = false
    self:refresh()
  end)
end

-- The node for a slot (nil: any master) -> addr | nil, err
function Cluster:_addr(slot, read)
  if slot == nil then
    local masters = self.masters
    if #masters == 0 then return nil, E.new("CLUSTERDOWN", "no known master") end
    self.rr = self.rr + 1
    return masters[self.rr % #masters + 1]
  end
  local shard = self.slots[slot]
  if not shard then return nil, E.new("CLUSTERDOWN", ("hash slot %d is not served"):format(slot)) end
  if read and self.read_from_replicas and #shard.replicas > 0 then
    self.rr = self.rr + 1
    return shard.replicas[self.rr % #shard.replicas + 1]
  end
  return shard.master
end

-- --- which argument is the key --------------------------------------------------------------

local function has_flag(flags, name)
  if type(flags) ~= "table" then return false end
  if flags[name] == true then return true end -- RESP3: a set
  for _, f in ipairs(flags) do if f == name then return true end end
  return false
end

-- COMMAND INFO's entry -> {first, step, movable, readonly, eval, subs}
local function make_info(e)
  if type(e) ~= "table" then return { first = 0, unknown = true } end
  local name = tostring(e[1]):lower()
  local i = {
    first = tonumber(e[4]) or 0,
    readonly = has_flag(e[3], "readonly"),
    movable = has_flag(e[3], "movablekeys"),
  }
  local base = name:match("^[^|]*")
  i.eval = base == "eval" or base == "evalsha" or base == "eval_ro" or base == "evalsha_ro" or
    base == "fcall" or base == "fcall_ro"
  if type(e[10]) == "table" and #e[10] > 0 then
    i.subs = {}
    for _, sub in ipairs(e[10]) do
      local sname = tostring(sub[1]):lower():match("|(.*)$")
      if sname then i.subs[sname] = make_info(sub) end
    end
  end
  return i
end

-- The command's info, asked once per name (of any node).
function Cluster:_info(name)
  local info = self.infos[name]
  if info then return info end
  local lname = name:lower()
  info = self.infos[lname]
  if not info then
    local reply, err
    for _ = 1, 3 do
      local addr = self:_addr(nil)
      local r = addr and self:_client(addr)
      if r then
        reply, err = r:command("info", lname)
        if reply then break end
      end
      if not self:refresh() then break end
    end
    if not reply then return nil, err end
    info = make_info(reply[1])
    self.infos[lname] = info
  end
  self.infos[name] = info
  return info
end

-- The first key of the command name + args (an array) -> key | nil, and its info
function Cluster:_key(info, name, args, n)
  if info.subs and type(args[1]) == "string" then
    local sub = info.subs[args[1]:lower()]
    if sub then info = sub end
  end
  if info.eval then
    local numkeys = tonumber(args[2])
    if numkeys and numkeys > 0 then return args[3], info end
    return nil, info
  end
  if info.first > 0 and info.first <= n then return args[info.first], info end
  if info.movable then
    local addr = self:_addr(nil)
    local r = addr and self:_client(addr)
    if r then
      local keys = r:command("getkeys", name, unpack(args, 1, n))
      if type(keys) == "table" and keys[1] then return keys[1], info end
    end
  end
  return nil, info
end

-- --- running commands -------------------------------------------------------------------------

-- What an error reply asks for: "MOVED", "ASK", "RETRY" (TRYAGAIN, CLUSTERDOWN, LOADING,
-- MASTERDOWN) or nil (the answer), with the slot and the address for redirections.
local function redirection(message, current_host)
  local kind, slot, addr = message:match("^(%u+) (%d+) (%S+)")
  if kind == "MOVED" or kind == "ASK" then
    local host, port = addr:match("^(.*):(%d+)$")
    if host == "" or host == "?" then host = current_host end
    return kind, tonumber(slot), host, tonumber(port)
  end
  local word = message:match("^(%u+)")
  if word == "TRYAGAIN" or word == "CLUSTERDOWN" or word == "LOADING" or word == "MASTERDOWN" then
    return "RETRY"
  end
  return nil
end

-- Runs send(client, asking) for a slot with redirections and retries; read: the command
-- only reads (replicas may answer; retried after a broken connection).
function Cluster:_run(slot, read, send)
  if self.refresh_interval > 0 then self:_refresh_soon(self.refresh_interval) end
  local redirects, deadline, delay = 0, nil, self.retry_delay
  local ask_addr
  while true do
    local addr, err = ask_addr, nil
    if not addr then addr, err = self:_addr(slot, read) end
    local r
    if addr then r, err = self:_client(addr) end
    local retry = false
    if r then
      local v, e = send(r, ask_addr ~= nil)
      ask_addr = nil
      if v ~= nil then return v end
      if type(e) ~= "string" then -- the connection broke with the command under way
        self:_refresh_soon()
        if not read then return nil, e end
        retry = true
      else
        local kind, mslot, host, port = redirection(e, self.node_map[addr] and self.node_map[addr].host)
        if kind == nil then return nil, e end
        if kind == "RETRY" then
          retry = true
        else
          redirects = redirects + 1
          if redirects > self.max_redirections then return nil, e end
          local node = self:_node(host, port)
          if kind == "MOVED" then
            local shard = self.slots[mslot]
            if not shard or shard.master ~= node.addr then
              self.slots[mslot] = { master = node.addr, replicas = {} }
            end
            self:_refresh_soon()
          else
            ask_addr = node.addr
          end
        end
      end
    else
      retry = true -- no connection: nothing was sent
      self.refreshed_at = false
    end
    if retry then
      deadline = deadline or now() + self.retry_timeout
      if self.closed or now() + delay > deadline then
        return nil, err or E.new("ETIMEDOUT", "cluster retries exhausted")
      end
      task.sleep(delay)
      delay = min(delay * 2, 1000)
      self:refresh()
    end
  end
end

-- cluster:call(name, args...) -> reply | nil, message | nil, err
function Cluster:call(name, ...)
  local info, err = self:_info(name)
  if not info then return nil, err end
  local n = select("#", ...)
  local key
  local first = info.first
  if not info.subs and not info.eval and not info.movable then
    if first > 0 and first <= n then key = (select(first, ...)) end
  else
    key, info = self:_key(info, name, { ... }, n)
  end
  local slot = key ~= nil and slot_of(key) or nil
  local args = { n = n, ... }
  return self:_run(slot, info.readonly, function(r, asking)
    if not asking then return r:call(name, unpack(args, 1, args.n)) end
    local replies, perr = r:pipeline(function(p) p:asking() p:call(name, unpack(args, 1, args.n)) end)
    if not replies then return nil, perr end
    local v = replies[2]
    if type(v) == "table" and v.err then return nil, v.err end
    return v
  end)
end

-- The commands of a pipeline table, one {name, args, n} each.
local function records(t)
  local list, i = {}, 1
  while t[i] do
    local argc = t[i]
    list[#list + 1] = { name = t[i + 1], args = { unpack(t, i + 2, i + argc) }, n = argc - 1 }
    i = i + argc + 1
  end
  return list
end

-- cluster:pipeline(fn) -> {replies...} | nil, err. The commands go to their nodes in one
-- pipeline per node, all at once; the replies come back in the order of the commands.
-- Commands redirected meanwhile (a slot that moved) are sent again one by one, in order.
function Cluster:pipeline(fn)
  local cmds = records(C.pipetable(redis._record(fn, "pipeline")))
  local groups, order = {}, {}
  for i, cmd in ipairs(cmds) do
    local info, err = self:_info(cmd.name)
    if not info then return nil, err end
    local key
    key, info = self:_key(info, cmd.name, cmd.args, cmd.n)
    cmd.slot = key ~= nil and slot_of(key) or nil
    cmd.read = info.readonly
    local addr = self:_addr(cmd.slot, cmd.read) or ""
    local g = groups[addr]
    if not g then
      g = { addr = addr, t = {}, idx = {} }
      groups[addr] = g
      order[#order + 1] = g
    end
    local t = g.t
    t[#t + 1] = cmd.n + 1
    t[#t + 1] = cmd.name
    for k = 1, cmd.n do t[#t + 1] = cmd.args[k] end
    g.idx[#g.idx + 1] = i
  end
  local results, again, failed = {}, {}, nil
  local function run_group(g)
    local r = g.addr ~= "" and self:_client(g.addr)
    if not r then -- nothing sent: each command goes its own way
      for _, i in ipairs(g.idx) do again[#again + 1] = i end
      return
    end
    local replies, err = C.pipeline(r, g.t)
    if not replies then
      failed = failed or err
      self:_refresh_soon()
      return
    end
    for k, i in ipairs(g.idx) do
      local v = replies[k]
      if type(v) == "table" and type(v.err) == "string" and redirection(v.err) then
        again[#again + 1] = i
      else
        results[i] = v
      end
    end
  end
  local tasks = {}
  for k = 2, #order do tasks[#tasks + 1] = task.spawn(run_group, order[k]) end
  if order[1] then run_group(order[1]) end
  for _, t in ipairs(tasks) do
    local ok, err = t:join()
    if not ok then error(err, 0) end
  end
  if failed then return nil, failed end
  table.sort(again)
  for _, i in ipairs(again) do
    local cmd = cmds[i]
    local v, err = self:call(cmd.name, unpack(cmd.args, 1, cmd.n))
    if v == nil then
      if type(err) ~= "string" then return nil, err end
      v = { err = err }
    end
    results[i] = v
  end
  return results
end

-- cluster:transaction(fn) -> {results...} | redis.null | nil, err: MULTI, fn's commands,
-- EXEC on the node of the first key (every key must be in slots of that node; keep them in
-- one slot with a {hash tag}). Sent again, whole, when a slot moved meanwhile.
function Cluster:transaction(fn)
  local t = C.pipetable(redis._record(fn, "transaction"))
  local slot
  for _, cmd in ipairs(records(t)) do
    local info, err = self:_info(cmd.name)
    if not info then return nil, err end
    local key = self:_key(info, cmd.name, cmd.args, cmd.n)
    if key ~= nil then
      slot = slot_of(key)
      break
    end
  end
  return self:_run(slot, false, function(r)
    local exec, err = redis._exec_result(C.pipeline(r, t))
    if exec == nil and type(err) == "string" and err:match("^ASK ") then
      -- a slot being migrated: ASKING covers one command, not a transaction; wait it out
      return nil, "TRYAGAIN " .. err
    end
    return exec, err -- MOVED while queueing: the whole transaction goes to the new node
  end)
end

-- cluster:nodes() -> {{addr, role = "master" | "replica"}...} from the slot map
function Cluster:nodes()
  local list = {}
  for addr, node in pairs(self.node_map) do
    list[#list + 1] = { addr = addr, host = node.host, port = node.port, role = node.replica and "replica" or "master" }
  end
  table.sort(list, function(a, b) return a.addr < b.addr end)
  return list
end

-- cluster:node(addr) -> that node's client (shared: do not close it) | nil, err
function Cluster:node(addr)
  local host, port = parse_seed(addr)
  self:_node(host, port)
  return self:_client(addr_of(host, port))
end

-- cluster:slot_node(key) -> the address of the master serving key's slot
function Cluster:slot_node(key)
  return self:_addr(slot_of(key), false)
end

-- cluster:close(): every node's connection closes; later commands fail.
function Cluster:close()
  self.closed = true
  for _, node in pairs(self.node_map) do
    if node.client then node.client:close() end
    node.client = nil
  end
end

-- Any other name is a command: cluster:get(k) is cluster:call("get", k).
local command_methods = {}
Cluster.__index = function(_, name)
  local m = Cluster[name]
  if m ~= nil or type(name) ~= "string" or name:sub(1, 1) == "_" then return m end
  m = command_methods[name]
  if not m then
    m = function(self, ...) return self:call(name, ...) end
    command_methods[name] = m
  end
  return m
end

-- redis.cluster(options) -> cluster client | nil, err (no seed answered)
function cluster.new(given)
  local o = options.check(given, SPEC, 1, "cluster", 3)
  local seeds = {}
  for i, seed in ipairs(o.seeds) do
    local host, port = parse_seed(seed)
    if not host then error(("bad argument #1 to 'cluster' (seeds[%d]: \"host:port\" expected)"):format(i), 3) end
    seeds[#seeds + 1] = { host, port }
  end
  if #seeds == 0 then error("bad argument #1 to 'cluster' (seeds: at least one address expected)", 3) end
  local conf = {}
  for k, v in pairs(o) do
    if redis.CONNECT_OPTIONS[k] then conf[k] = v end
  end
  conf.connect_timeout = conf.connect_timeout or 2000
  conf = redis._config(conf, nil, "cluster", redis.CONNECT_OPTIONS, 2)
  local self = setmetatable({
    conf = conf,
    seeds = seeds,
    node_map = {},
    masters = {},
    slots = {},
    infos = {},
    rr = 0,
    -- every field is set (false when empty): a missing one would read as a command method
    refreshing = false,
    refreshed_at = false,
    refresh_waiters = {},
    last_refresh_ok = false,
    last_refresh_err = false,
    closed = false,
    read_from_replicas = o.read_from_replicas or false,
    max_redirections = o.max_redirections or 16,
    retry_timeout = o.retry_timeout or 10000,
    retry_delay = o.retry_delay or 50,
    refresh_interval = o.refresh_interval == math.huge and 0 or o.refresh_interval or 5000,
  }, Cluster)
  local ok, err = self:refresh()
  if not ok then
    self:close()
    return nil, err
  end
  return self
end

return cluster
