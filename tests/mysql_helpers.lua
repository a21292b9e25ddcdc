-- Real MariaDB servers for the mysql tests: a data directory made by mariadb-install-db in a
-- temporary folder (once per run; later servers copy it), a loopback port and a Unix socket
-- there, TLS certificates from a test CA, and users for each authentication plugin. Never
-- the system's service. (Not a *_test.lua file, so the runner does not run it.)
local test = require "test"
local task = require "task"
local process = require "process"
local helpers = require "tests.helpers"
local mysql = require "mysql"

local mh = {}

local function have(cmd) return test.sh("command -v " .. cmd):find(cmd, 1, true) ~= nil end

-- Skips the case when MariaDB is not installed (./build.sh test installs mariadb-server).
function mh.need()
  if not have("mariadbd") or not have("mariadb-install-db") then
    test.skip("mariadb-server is not installed (./build.sh test installs it)")
  end
end

local function sh(cmd, what)
  local out, status = test.sh(cmd)
  if status ~= 0 then error((what or cmd) .. " failed:\n" .. out, 3) end
  return out
end

-- The certificates: a CA, a server certificate for localhost and 127.0.0.1.
local certs
function mh.certs()
  if certs then return certs end
  local dir = test.tmpdir()
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  sh("cd " .. dir .. " && openssl req -x509 " .. ec .. " -keyout ca.key -out ca.pem -days 2 -subj '/CN=luaio test CA' 2>&1 &&" ..
    " openssl req " .. ec .. " -keyout server.key -out server.csr -subj '/CN=localhost' 2>&1 &&" ..
    " printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > server.ext &&" ..
    " openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out server.pem -extfile server.ext 2>&1",
    "openssl")
  certs = { ca = dir .. "/ca.pem", cert = dir .. "/server.pem", key = dir .. "/server.key" }
  return certs
end

-- A data directory, bootstrapped once per run and copied for every server.
local template
local function datadir(dir)
  if not template then
    template = test.tmpdir() .. "/data"
    sh("mariadb-install-db --no-defaults --datadir=" .. template ..
      " --auth-root-authentication-method=socket --skip-test-db --user=root >" .. template .. ".log 2>&1",
      "mariadb-install-db")
  end
  sh("cp -a " .. template .. " " .. dir .. "/data")
  return dir .. "/data"
end

-- Kills a server and waits until it is gone.
function mh.kill(srv, signal)
  test.sh("kill -" .. (signal or "KILL") .. " " .. srv.pid .. " 2>/dev/null")
  local deadline = task.now() + 10000
  while test.sh("kill -0 " .. srv.pid .. " 2>/dev/null && echo alive"):find("alive") do
    if task.now() > deadline then error("mariadbd " .. srv.pid .. " did not die", 2) end
    task.sleep(20)
  end
end

-- Starts a server; it dies with the test run (a watcher kills it when our process is gone).
local function start(opts)
  mh.need()
  local dir = test.tmpdir()
  local data = datadir(dir)
  local port = helpers.free_port()
  local c = mh.certs()
  local args = {
    "mariadbd", "--no-defaults", "--datadir=" .. data, "--socket=" .. dir .. "/sock", "--port=" .. port,
    "--bind-address=127.0.0.1", "--user=root", "--pid-file=" .. dir .. "/pid", "--skip-log-bin",
    "--skip-name-resolve", "--innodb-buffer-pool-size=32M", "--innodb-flush-log-at-trx-commit=0",
    "--plugin-load-add=auth_ed25519", "--log-error=" .. dir .. "/error.log", "--max-allowed-packet=64M",
    "--local-infile=1", "--ssl-cert=" .. c.cert, "--ssl-key=" .. c.key, "--ssl-ca=" .. c.ca,
  }
  for _, a in ipairs(opts and opts.args or {}) do args[#args + 1] = a end
  -- the pid is the watcher's own variable: the run removes its temporary folders first
  local out = sh("(" .. table.concat(args, " ") .. " >/dev/null 2>&1 & m=$!; echo $m > " .. dir .. "/mpid;" ..
    " while kill -0 " .. process.pid .. " 2>/dev/null; do sleep 1; done; kill -9 $m) " ..
    ">/dev/null 2>&1 & for i in $(seq 100); do [ -s " .. dir .. "/mpid ] && break; sleep 0.05; done; cat " .. dir .. "/mpid")
  local srv = { dir = dir, port = port, sock = dir .. "/sock", pid = tonumber(out:match("(%d+)")) }
  local deadline = task.now() + 30000
  while true do
    local db = mysql.connect({ path = srv.sock, user = "root", connect_timeout = 1000 })
    if db then
      srv.root = db
      break
    end
    if task.now() > deadline then
      local f = io.open(dir .. "/error.log")
      error("mariadbd never answered; its log:\n" .. (f and f:read("*a") or ""), 3)
    end
    task.sleep(50)
  end
  local setup = {
    "CREATE DATABASE test CHARACTER SET utf8mb4",
    "CREATE USER 'native'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('native-pw')",
    "CREATE USER 'native'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('native-pw')",
    "CREATE USER 'ed'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('ed-pw with spaces and a long tail 0123456789')",
    "CREATE USER 'nopw'@'%'",
    "CREATE USER 'tlsonly'@'%' IDENTIFIED BY 'tls-pw' REQUIRE SSL",
    "GRANT ALL ON *.* TO 'native'@'%', 'native'@'localhost', 'ed'@'%', 'nopw'@'%', 'tlsonly'@'%'",
  }
  for _, q in ipairs(setup) do assert(srv.root:query(q)) end
  return srv
end

-- The run's shared server (started by the first case that asks).
local shared
function mh.server()
  if not shared then shared = start() end
  return shared
end

-- A server of this case's own (for killing it): stopped when the case ends.
function mh.own_server(opts)
  local srv = start(opts)
  test.cleanup(function() mh.kill(srv) end)
  return srv
end

-- Waits until connection `id` runs a statement starting with `prefix` (a kill must find it).
function mh.wait_running(srv, id, prefix)
  local deadline = task.now() + 10000
  while true do
    local r = assert(srv.root:query("SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = " .. id ..
      " AND INFO LIKE " .. mysql.quote(prefix .. "%")))
    if tonumber(r[1].n) > 0 then return end
    if task.now() > deadline then error("connection " .. id .. " never ran " .. prefix, 2) end
    task.sleep(10)
  end
end

-- A connection as `native` to srv over TCP (extra options merged), or raises.
function mh.connect(srv, extra)
  local o = { port = srv.port, user = "native", password = "native-pw", database = "test" }
  for k, v in pairs(extra or {}) do o[k] = v end
  local db, err = mysql.connect(o)
  if not db then error("connect: " .. tostring(err), 2) end
  return db
end

return mh
