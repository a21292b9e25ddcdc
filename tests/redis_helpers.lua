-- Real redis-server peers for the Redis tests: each on a free loopback port, in a folder of
-- its own, stopped when the case ends; never the system's service. (Not a *_test.lua file,
-- so the runner does not run it.)
local test = require "test"
local task = require "task"
local helpers = require "tests.helpers"
local redis = require "redis"

local rh = {}

-- Skips the case when redis-server is not installed (./build.sh test installs it).
function rh.need()
  if not test.sh("command -v redis-server"):find("redis%-server") then
    test.skip("redis-server is not installed (./build.sh test installs redis-server and redis-tools)")
  end
end

-- Waits until the server answers PING on its Unix socket (it loads nothing: this is quick).
local function wait_ready(srv)
  local deadline = task.now() + 10000
  while true do
    local r = redis.connect({ path = srv.sock, connect_timeout = 500, password = srv.password })
    if r then
      local pong = r:ping()
      r:close()
      if pong == "PONG" then return end
    end
    if task.now() > deadline then
      error("redis-server on port " .. srv.port .. " never answered; log:\n" .. helpers.output(srv.peer), 3)
    end
    task.sleep(20)
  end
end

-- rh.server([lines[, options]]) -> {port, dir, sock, url, pid, peer, password}: a redis-server
-- with `lines` added to its configuration (an array of config lines). options.password: set
-- as requirepass (and used to wait for it). options.port: that port. options.tls: TLS only
-- on the port ({cert, key, ca} files, auth_clients = "no" | "optional" | "yes").
function rh.server(lines, opts)
  rh.need()
  opts = opts or {}
  local dir = test.tmpdir()
  local port = opts.port or helpers.free_port()
  local conf = {
    opts.tls and "port 0" or "port " .. port, "bind 127.0.0.1", "dir " .. dir, 'save ""', "appendonly no",
    "unixsocket " .. dir .. "/redis.sock", "unixsocketperm 700", "daemonize no",
    "protected-mode no", "enable-debug-command yes", "loglevel warning",
  }
  if opts.password then conf[#conf + 1] = "requirepass " .. opts.password end
  if opts.tls then
    conf[#conf + 1] = "tls-port " .. port
    conf[#conf + 1] = "tls-cert-file " .. opts.tls.cert
    conf[#conf + 1] = "tls-key-file " .. opts.tls.key
    conf[#conf + 1] = "tls-ca-cert-file " .. opts.tls.ca
    conf[#conf + 1] = "tls-auth-clients " .. (opts.tls.auth_clients or "no")
  end
  for _, l in ipairs(lines or {}) do conf[#conf + 1] = l end
  test.write(dir .. "/redis.conf", table.concat(conf, "\n") .. "\n")
  local srv = { port = port, dir = dir, sock = dir .. "/redis.sock", password = opts.password,
    url = "redis://127.0.0.1:" .. port }
  srv.peer = helpers.start("exec redis-server " .. dir .. "/redis.conf")
  srv.pid = srv.peer.pid -- exec: the shell's pid is the server's
  wait_ready(srv)
  return srv
end

-- rh.certs() -> {ca, server_cert, server_key, client_cert, client_key} (file paths): a test CA
-- (openssl), a server certificate for localhost and 127.0.0.1, a client certificate.
function rh.certs()
  local dir = test.tmpdir()
  local function sh(cmd)
    local out, status = test.sh("cd " .. dir .. " && " .. cmd)
    if status ~= 0 then error("openssl: " .. out, 3) end
  end
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  sh("openssl req -x509 " .. ec .. " -keyout ca.key -out ca.pem -days 2 -subj '/CN=luaio test CA'")
  for _, who in ipairs({ "server", "client" }) do
    sh("openssl req " .. ec .. " -keyout " .. who .. ".key -out " .. who .. ".csr -subj '/CN=" ..
      (who == "server" and "localhost" or "redis client") .. "'")
    sh("printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=" ..
      (who == "server" and "serverAuth" or "clientAuth") .. "\\n' > " .. who .. ".ext")
    sh("openssl x509 -req -in " .. who .. ".csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out " ..
      who .. ".pem -extfile " .. who .. ".ext")
  end
  return { ca = dir .. "/ca.pem", server_cert = dir .. "/server.pem", server_key = dir .. "/server.key",
    client_cert = dir .. "/client.pem", client_key = dir .. "/client.key" }
end

-- Kills a server at once (SIGKILL): its clients see their connections reset.
function rh.kill(srv)
  test.sh("kill -KILL " .. srv.pid .. " 2>/dev/null")
  local deadline = task.now() + 5000
  while test.sh("kill -0 " .. srv.pid .. " 2>/dev/null && echo alive"):find("alive") do
    if task.now() > deadline then error("redis-server " .. srv.pid .. " did not die", 2) end
    task.sleep(10)
  end
end

-- A client to srv (raises when it cannot connect).
function rh.connect(srv, opts)
  local o = { port = srv.port, password = srv.password }
  for k, v in pairs(opts or {}) do o[k] = v end
  return assert(redis.connect(o))
end

-- Waits (polling every 50 ms, without blocking the loop) until fn() returns a true value,
-- at most timeout_ms; returns it, or raises with what.
function rh.wait_for(what, timeout_ms, fn)
  local deadline = task.now() + timeout_ms
  while true do
    local v = fn()
    if v then return v end
    if task.now() > deadline then error("timed out waiting for " .. what, 2) end
    task.sleep(50)
  end
end

local function info_field(r, section, field)
  local text = r:info(section)
  return type(text) == "string" and text:match(field .. ":([^\r\n]*)") or nil
end
rh.info_field = info_field

-- rh.cluster([opts]) -> {nodes = {srv...}, seeds = {"127.0.0.1:port"...}}: 6 servers made a
-- cluster of 3 masters and 3 replicas by `redis-cli --cluster create`, every node agreeing
-- that all slots are served and every replica in sync. cluster-node-timeout is 1000 ms, so
-- a failover takes a few seconds. opts.replicas_listed: also wait until every node lists
-- every replica in CLUSTER SLOTS (for reads from replicas).
function rh.cluster(opts)
  opts = opts or {}
  rh.need()
  local nodes, addrs, seeds = {}, {}, {}
  for i = 1, 6 do
    nodes[i] = rh.server({
      "cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 1000",
      "cluster-port " .. helpers.free_port(), "cluster-replica-validity-factor 0",
      "cluster-allow-replica-migration no", "repl-diskless-sync-delay 0",
    })
    addrs[i] = "127.0.0.1:" .. nodes[i].port
    seeds[i] = addrs[i]
  end
  local out, status = test.sh("redis-cli --cluster create " .. table.concat(addrs, " ") ..
    " --cluster-replicas 1 --cluster-yes")
  if status ~= 0 then error("redis-cli --cluster create failed:\n" .. out, 2) end
  for _, srv in ipairs(nodes) do
    local r = rh.connect(srv)
    rh.wait_for("cluster_state:ok on " .. srv.port, 20000, function()
      local ci = r:cluster("info")
      return type(ci) == "string" and ci:find("cluster_state:ok") and ci:find("cluster_slots_ok:16384")
        and ci:find("cluster_known_nodes:6")
    end)
    rh.wait_for("replication on " .. srv.port, 20000, function()
      local role = info_field(r, "replication", "role")
      return role == "master" or info_field(r, "replication", "master_link_status") == "up"
    end)
    if opts.replicas_listed then -- gossip may take seconds to tell every node
      rh.wait_for("every replica in the slot map of " .. srv.port, 30000, function()
        local slots = r:cluster("slots")
        if type(slots) ~= "table" or #slots ~= 3 then return false end
        for _, range in ipairs(slots) do if #range < 4 then return false end end
        return true
      end)
    end
    r:close()
  end
  return { nodes = nodes, seeds = seeds }
end

-- The server (from c.nodes) listening on addr "127.0.0.1:port".
function rh.node_at(c, addr)
  for _, srv in ipairs(c.nodes) do
    if "127.0.0.1:" .. srv.port == addr then return srv end
  end
end

return rh
