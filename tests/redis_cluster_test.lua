-- redis.cluster against a real 6-node cluster (3 masters, 3 replicas, made by `redis-cli
-- --cluster create`, tests/redis_helpers.lua): routing, hash tags, pipelines split by node,
-- transactions, scripts, reads from replicas, a slot migrated during traffic (ASK, then
-- MOVED) and a master killed during traffic (failover).
local test = require "test"
local task = require "task"
local redis = require "redis"
local rh = require "tests.redis_helpers"


-- The master (a server of c) serving key's slot, as that node itself says.
local function master_of(c, key)
  local slot = redis.slot(key)
  for _, srv in ipairs(c.nodes) do
    local r = rh.connect(srv)
    local role = rh.info_field(r, "replication", "role")
    local slots = role == "master" and r:cluster("slots") or {}
    r:close()
    for _, range in ipairs(slots) do
      if slot >= range[1] and slot <= range[2] and range[3][2] == srv.port then return srv end
    end
  end
end

test.case("cluster: slots and hash tags, pipelines across nodes, transactions, scripts, replicas", function()
  test.eq(redis.slot("foo"), 12182, "CRC16 mod 16384")
  test.eq(redis.slot("{user1000}.following"), redis.slot("user1000"), "a hash tag")
  test.eq(redis.slot("foo{}{bar}"), redis.slot("foo{}{bar}"), "an empty tag: the whole key")
  test.ok(redis.slot("foo{}{bar}") ~= redis.slot("bar"))
  test.eq(redis.slot("foo{{bar}}zap"), redis.slot("{bar"), "the first { to the first }")
  test.eq(redis.slot(""), 0)
  local c = rh.cluster({ replicas_listed = true })
  local cl = assert(redis.cluster({ seeds = { c.seeds[1], c.seeds[2] } }))
  local masters = {}
  for i = 1, 300 do
    test.eq(cl:set("key:" .. i, i), "OK")
    masters[cl:slot_node("key:" .. i)] = true
  end
  local n = 0
  for _ in pairs(masters) do n = n + 1 end
  test.eq(n, 3, "the keys spread over the three masters")
  for i = 1, 300, 7 do test.eq(cl:get("key:" .. i), tostring(i)) end
  local replies = assert(cl:pipeline(function(p)
    for i = 1, 300 do p:get("key:" .. i) end
    p:incr("key:1")
    p:mget("{t}a", "{t}b")
    p:lpush("key:2", "x") -- an error in place
  end))
  for i = 1, 300 do if replies[i] ~= tostring(i) then error("reply " .. i .. ": " .. tostring(replies[i])) end end
  test.eq(replies[301], 2)
  test.eq(replies[302], { redis.null, redis.null })
  test.match(replies[303].err, "^WRONGTYPE")
  test.eq(cl:transaction(function(t) t:set("{acct}from", 10) t:decrby("{acct}from", 3) t:incrby("{acct}to", 3) end),
    { "OK", 7, 3 })
  test.eq(cl:eval("return redis.call('incrby', KEYS[1], ARGV[1])", 1, "{acct}to", 5), 8, "EVAL by its key")
  test.eq(cl:object("encoding", "key:5"), "int", "a subcommand's key")
  local v, err = cl:mget("key:1", "key:2")
  test.eq(v, nil)
  test.match(err, "^CROSSSLOT")
  test.eq(cl:ping(), "PONG", "a command without keys")
  -- replicas: WAIT on each master's connection, then reads go to replicas
  for _, node in ipairs(cl:nodes()) do
    if node.role == "master" then test.eq(cl:node(node.addr):wait(1, 5000), 1, "replicated") end
  end
  local ro = assert(redis.cluster({ seeds = { c.seeds[3] }, read_from_replicas = true }))
  local replica_reads = {}
  for _, srv in ipairs(c.nodes) do
    local r = rh.connect(srv)
    replica_reads[srv.port] = tonumber(r:info("commandstats"):match("cmdstat_get:calls=(%d+)") or 0)
    r:close()
  end
  for i = 1, 300 do test.eq(ro:get("key:" .. i), i == 1 and "2" or tostring(i)) end
  local on_replicas = 0
  for _, srv in ipairs(c.nodes) do
    local r = rh.connect(srv)
    local calls = tonumber(r:info("commandstats"):match("cmdstat_get:calls=(%d+)") or 0)
    if rh.info_field(r, "replication", "role") == "slave" then
      on_replicas = on_replicas + calls - replica_reads[srv.port]
    end
    r:close()
  end
  test.eq(on_replicas, 300, "every GET was answered by a replica")
  test.eq(ro:set("key:new", "w"), "OK", "writes still go to masters")
  cl:close()
  ro:close()
  local gone, gerr = cl:get("key:1")
  test.eq(gone, nil)
  test.ok(gerr ~= nil)
  local none, nerr = redis.cluster({ seeds = { "127.0.0.1:1" }, connect_timeout = 500 })
  test.eq(none, nil)
  test.eq(nerr.name, "ECONNREFUSED", "no seed answers")
end)

test.case("cluster: a slot migrates during traffic (ASK, then MOVED)", function()
  local c = rh.cluster()
  local cl = assert(redis.cluster({ seeds = c.seeds }))
  local slot = redis.slot("{mig}")
  local from = master_of(c, "{mig}")
  local to
  for _, srv in ipairs(c.nodes) do
    local r = rh.connect(srv)
    if srv ~= from and rh.info_field(r, "replication", "role") == "master" then to = to or srv end
    r:close()
  end
  local nkeys = 400
  for i = 1, nkeys do assert(cl:set("{mig}:" .. i, i)) end
  local stop, failures, done, txs = false, {}, {}, {}
  local workers = {}
  for w = 1, 8 do
    workers[w] = task.spawn(function()
      local count = 0
      while not stop do
        local i = (count * 8 + w) % nkeys + 1
        local v, err = cl:get("{mig}:" .. i)
        if v ~= tostring(i) then failures[#failures + 1] = ("get %d: %s %s"):format(i, tostring(v), tostring(err)) end
        local n, ierr = cl:incr("{mig}:count:" .. w)
        if n ~= count + 1 then failures[#failures + 1] = ("incr %d: %s %s"):format(w, tostring(n), tostring(ierr)) end
        if count % 10 == 0 then -- a transaction now and then: ASK waits, MOVED sends it again
          local res, terr = cl:transaction(function(t) t:incr("{mig}:tx:" .. w) t:get("{mig}:1") end)
          if type(res) ~= "table" or res[2] ~= "1" then
            failures[#failures + 1] = ("transaction %d: %s %s"):format(w, tostring(res), tostring(terr))
          else
            txs[w] = res[1]
          end
        end
        count = count + 1
      end
      done[w] = count
    end)
  end
  local a, b = rh.connect(from), rh.connect(to)
  local from_id, to_id = a:cluster("myid"), b:cluster("myid")
  test.eq(b:cluster("setslot", slot, "importing", from_id), "OK")
  test.eq(a:cluster("setslot", slot, "migrating", to_id), "OK")
  local moved = {}
  local first = a:cluster("getkeysinslot", slot, 20)
  test.eq(a:migrate("127.0.0.1", to.port, "", 0, 5000, "KEYS", unpack(first)), "OK")
  for _, k in ipairs(first) do moved[#moved + 1] = k end
  -- the slot is still the old node's: only ASK can find a migrated key now
  for _, k in ipairs(moved) do
    test.ok(cl:get(k) ~= redis.null, "a migrated key read through ASK: " .. k)
  end
  test.eq(cl:set("{mig}:fresh", "new"), "OK", "a new key while migrating")
  while true do
    local keys = a:cluster("getkeysinslot", slot, 20)
    if #keys == 0 then break end
    test.eq(a:migrate("127.0.0.1", to.port, "", 0, 5000, "KEYS", unpack(keys)), "OK")
    task.sleep(5) -- traffic in between
  end
  test.eq(b:cluster("setslot", slot, "node", to_id), "OK")
  test.eq(a:cluster("setslot", slot, "node", to_id), "OK")
  task.sleep(300) -- traffic now meets MOVED
  stop = true
  for w = 1, 8 do test.ok(workers[w]:join()) end
  test.eq(failures, {}, "every command of the traffic succeeded")
  for w = 1, 8 do test.eq(cl:get("{mig}:count:" .. w), tostring(done[w]), "the counter of worker " .. w) end
  for w = 1, 8 do
    test.eq(tonumber(cl:get("{mig}:tx:" .. w)), math.ceil(done[w] / 10), "transactions of worker " .. w)
    test.eq(txs[w], math.ceil(done[w] / 10))
  end
  test.ok(done[1] > 0)
  for i = 1, nkeys do test.eq(cl:get("{mig}:" .. i), tostring(i)) end
  test.eq(cl:get("{mig}:fresh"), "new")
  test.eq(b:dbsize() >= nkeys + 9, true, "the keys are on the new node")
  test.eq(cl:slot_node("{mig}"), "127.0.0.1:" .. to.port, "the map knows")
end)

test.case("cluster: a master killed during traffic fails over", function()
  local c = rh.cluster()
  local cl = assert(redis.cluster({ seeds = c.seeds, retry_timeout = 30000 }))
  local nkeys = 300
  for i = 1, nkeys do assert(cl:set("fo:" .. i, i)) end
  for _, node in ipairs(cl:nodes()) do
    if node.role == "master" then test.eq(cl:node(node.addr):wait(1, 5000), 1, "replicated before the kill") end
  end
  local victim = master_of(c, "fo:1")
  local stop, errors, writes = false, {}, {}
  local workers = {}
  for w = 1, 8 do
    errors[w], writes[w] = {}, 0
    workers[w] = task.spawn(function()
      local i = 0
      while not stop do
        i = i + 1
        local key = "fo:w" .. w .. ":" .. i % 50
        local ok, err = cl:set(key, i)
        if ok then writes[w] = writes[w] + 1 else errors[w][#errors[w] + 1] = tostring(err) end
        local k = i % (nkeys - 1) + 2 -- not fo:1, which the test rewrites
        local v = cl:get("fo:" .. k)
        if v ~= tostring(k) then errors[w][#errors[w] + 1] = "read " .. tostring(v) end
      end
    end)
  end
  task.sleep(200)
  local before = {}
  for w = 1, 8 do before[w] = writes[w] end
  rh.kill(victim)
  -- the same slot answers again once a replica took over (retried meanwhile, not failed)
  local started = task.now()
  test.eq(cl:set("fo:1", "after"), "OK")
  local took = task.now() - started
  rh.wait_for("every worker to write again", 30000, function() -- some may be backing off
    for w = 1, 8 do if writes[w] <= before[w] then return false end end
    return true
  end)
  stop = true
  for w = 1, 8 do test.ok(workers[w]:join()) end
  for w = 1, 8 do
    test.ok(writes[w] > before[w], "worker " .. w .. " wrote after the failover")
    -- Only writes fail, and only as a broken connection: the one in flight when the master
    -- died (it may or may not have run), and one sent on a connection made while the dying
    -- process still had its listening socket (the kernel accepts it, then resets it; seen
    -- under the sanitizers). A read is retried and never fails or answers wrong.
    test.ok(#errors[w] <= 2, "worker " .. w .. ": " .. table.concat(errors[w], "; "))
    for _, e in ipairs(errors[w]) do
      test.match(e, "^E[A-Z]+", "worker " .. w .. " failed only by a broken connection")
      test.ok(not e:find("^read "), "worker " .. w .. ": " .. e)
    end
  end
  for i = 2, nkeys do test.eq(cl:get("fo:" .. i), tostring(i), "written before the kill") end
  test.eq(cl:get("fo:1"), "after")
  local promoted = 0
  for _, node in ipairs(cl:nodes()) do
    if node.role == "master" and node.addr ~= "127.0.0.1:" .. victim.port then promoted = promoted + 1 end
  end
  test.eq(promoted, 3, "three live masters again (failover took " .. math.floor(took) .. " ms)")
end)
