-- HTTPS: luaio's HTTP server over TLS against curl, openssl s_client, node and python; our
-- HTTP client against nginx and node over TLS; workers sharing session tickets; a
-- certificate swapped under load; the embedded roots in an empty root (chroot).
local test = require "test"
local task = require "task"
local tcp = require "tcp"
local http = require "http"
local https = require "https"
local process = require "process"
local helpers = require "tests.helpers"
local certs = require "tests.tls_certs"

local q = test.quote
local luaio = q(test.luaio)

local function https_server(handler, tls_opts, opts)
  opts = opts or {}
  opts.host = "127.0.0.1"
  opts.tls = tls_opts or certs.pair()
  local server = assert(http.createServer(0, handler, opts))
  test.cleanup(function() server:close() end)
  return server:address().port, server
end

local function hello(req, res) res:finish("hello " .. req.path) end

-- Runs a blocking command in the background (so that this process's servers can answer it)
-- and returns its output once the line "exit N" appears.
local function run(command, timeout_ms)
  local peer = helpers.start(command .. "; echo \"exit $?\"")
  local status = helpers.wait_output(peer, "exit (%d+)\n$", timeout_ms or 15000)
  return helpers.output(peer), tonumber(status)
end

-- --- curl and openssl s_client ------------------------------------------------------------------

test.case("curl over TLS 1.2 and 1.3, ALPN http/1.1, the certificate verified", function()
  local c = certs.make()
  local port = https_server(hello)
  local base = ("https://localhost:%d/x"):format(port)
  local resolve = ("--resolve localhost:%d:127.0.0.1"):format(port)
  local out, status = run(("curl -sS -v --cacert %s %s --tlsv1.2 --tls-max 1.2 %s"):format(q(c.ca), resolve, base))
  test.eq(status, 0, out)
  test.match(out, "SSL connection using TLSv1%.2 / ECDHE%-ECDSA%-AES")
  test.match(out, "ALPN: server accepted http/1%.1")
  test.match(out, "hello /x")
  out, status = run(("curl -sS -v --cacert %s %s --tlsv1.3 %s"):format(q(c.ca), resolve, base))
  test.eq(status, 0, out)
  test.match(out, "SSL connection using TLSv1%.3 / TLS_")
  test.match(out, "hello /x")
  -- curl by IP, with the CA; and without the CA: refused
  out, status = run(("curl -sS --cacert %s https://127.0.0.1:%d/ip"):format(q(c.ca), port))
  test.eq(status, 0, out)
  test.eq(out:match("^(.-)exit"), "hello /ip")
  out, status = run(("curl -sS --cacert %s https://127.0.0.1:%d/ip"):format(q(c.unknown_ca), port))
  test.eq(status, 60, out) -- CURLE_PEER_FAILED_VERIFICATION
end)

-- What the handler sees of TLS, one line.
local function tls_line(req, res)
  local info = req:tlsinfo()
  if not info then return res:finish("plain") end
  res:finish(("%s %s %s %s peer=%s"):format(info.records, info.version, info.cipher,
    info.group or "-", info.peer and info.peer.subject or "-"))
end

test.case("req:tlsinfo(): TLS 1.3 clients of three TLS stacks (curl, gnutls-cli, Chromium) on luaio's record layer; a client certificate on OpenSSL's", function()
  local c = certs.make()
  local port = https_server(tls_line)
  local resolve = ("--resolve localhost:%d:127.0.0.1"):format(port)
  local out = run(("curl -sS --cacert %s %s https://localhost:%d/"):format(q(c.ca), resolve, port))
  test.match(out, "^luaio TLSv1%.3 TLS_AES_128_GCM_SHA256 %S+ peer=%-", "curl (OpenSSL)")
  if test.sh("command -v gnutls-cli"):find("gnutls") then -- GnuTLS's own TLS 1.3
    out = run(("printf 'GET / HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' | " ..
      "gnutls-cli --x509cafile=%s -p %d localhost"):format(q(c.ca), port))
    test.match(out, "\nluaio TLSv1%.3 TLS_%S+ %S+ peer=%-", "gnutls-cli")
  end
  if test.sh("command -v chromium"):find("chromium") then -- BoringSSL, a post-quantum key share
    out = run(("chromium --headless --no-sandbox --disable-gpu --ignore-certificate-errors " ..
      "--user-data-dir=%s --dump-dom https://127.0.0.1:%d/ 2>/dev/null"):format(q(test.tmpdir() .. "/profile"), port), 30000)
    test.match(out, "luaio TLSv1%.3 TLS_%S+ X25519MLKEM768 peer=%-", "chromium")
  end
  -- a client certificate: OpenSSL keeps the connection, the handler reads the certificate
  local mtls = https_server(tls_line, { cert = c.server, key = c.server_key, client_ca = c.ca })
  out = run(("curl -sS --cacert %s --cert %s --key %s --resolve localhost:%d:127.0.0.1 https://localhost:%d/")
    :format(q(c.ca), q(c.client), q(c.client_key), mtls, mtls))
  test.match(out, "^openssl TLSv1%.3 %S+ %S+ peer=CN=luaio test client")
  -- plain HTTP: nil
  local plain = assert(http.createServer(0, tls_line, { host = "127.0.0.1" }))
  test.cleanup(function() plain:close() end)
  out = run(("curl -sS http://127.0.0.1:%d/"):format(plain:address().port))
  test.match(out, "^plain")
end)

test.case("openssl s_client: SNI picks the certificate, ALPN, resumption, TLS 1.1 refused", function()
  local c = certs.make()
  local port = https_server(hello, { certs = { certs.pair("server"), certs.pair("other") } })
  local base = ("openssl s_client -connect 127.0.0.1:%d -CAfile %s -verify_return_error "):format(port, q(c.ca))
  local out = run("echo | " .. base .. "-servername other.test")
  test.match(out, "subject=CN = other%.test")
  test.match(out, "Verify return code: 0 %(ok%)")
  out = run("echo | " .. base .. "-servername localhost -alpn h2,http/1.1")
  test.match(out, "subject=CN = localhost")
  test.match(out, "ALPN protocol: http/1%.1")
  out = run("echo | " .. base .. "-alpn h2") -- no protocol in common: refused
  test.match(out, "no application protocol")
  -- resumption with TLS 1.3 and TLS 1.2 tickets
  local dir = test.tmpdir()
  for _, v in ipairs({ "-tls1_3", "-tls1_2" }) do
    out = run(("printf 'GET / HTTP/1.1\\r\\nHost: a\\r\\nConnection: close\\r\\n\\r\\n' | %s %s -ign_eof -sess_out %s/sess")
      :format(base, v, dir))
    test.match(out, "hello /")
    out = run(("printf 'GET / HTTP/1.1\\r\\nHost: a\\r\\nConnection: close\\r\\n\\r\\n' | %s %s -ign_eof -sess_in %s/sess -sess_out %s/sess2")
      :format(base, v, dir, dir))
    test.match(out, "\nReused, TLSv1%.[23]", v)
    if v == "-tls1_3" then -- a resumed connection gets a new ticket (each is used once)
      out = run(("echo | %s %s -sess_in %s/sess2"):format(base, v, dir))
      test.match(out, "\nReused, TLSv1%.3", "with the ticket a resumed connection got")
    end
  end
  -- TLS 1.1 (allowed by the client at security level 0): the server refuses the version
  out = run("echo | " .. base .. "-tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'")
  test.match(out, "alert protocol version")
  test.ok(not out:find("Cipher is ECDHE"), "no session")
end)

test.case("a TLS 1.2 resumed handshake (ours finishes it last) still flushes what a server wrote first", function()
  local c = certs.make()
  local server = assert(tcp.createServer(0, function(s)
    s:write("220 greeting\r\n")
    s:read()
  end, { host = "127.0.0.1", tls = certs.pair() }))
  test.cleanup(function() server:close() end)
  local port = server:address().port
  local dir = test.tmpdir()
  local base = ("openssl s_client -connect 127.0.0.1:%d -CAfile %s -tls1_2 "):format(port, q(c.ca))
  local out = run(("sleep 0.5 | %s -sess_out %s/sess"):format(base, dir))
  test.match(out, "220 greeting")
  out = run(("sleep 0.5 | %s -sess_in %s/sess"):format(base, dir))
  test.match(out, "\nReused, TLSv1%.2")
  test.match(out, "220 greeting")
end)

-- --- node ---------------------------------------------------------------------------------------------

test.case("node's https and tls as clients of our HTTPS server; node's https server for our client", function()
  local c = certs.make()
  local port = https_server(function(req, res) res:finish(req.method .. " " .. req:body()) end)
  local script = helpers.node_script([[
const https = require("https"), tls = require("tls"), fs = require("fs");
const ca = fs.readFileSync(process.argv[3]), port = +process.argv[2];
const req = https.request({ host: "127.0.0.1", port, method: "POST", path: "/", ca, servername: "localhost",
  ALPNProtocols: ["http/1.1"] }, (res) => {
  let body = "";
  const proto = `${res.socket.getProtocol()} ${res.socket.alpnProtocol}`;
  res.on("data", (d) => (body += d));
  res.on("end", () => {
    console.log(`https ${res.statusCode} ${body} ${proto}`);
    const s = tls.connect({ port, host: "127.0.0.1", servername: "localhost", ca, ALPNProtocols: ["http/1.1"] }, () => {
      s.write("GET /t HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    });
    let raw = "";
    s.on("data", (d) => (raw += d));
    s.on("end", () => console.log("tls " + raw.split("\r\n")[0] + " " + raw.endsWith("GET ")));
  });
});
req.end("node body");
]])
  local peer = helpers.start("node " .. q(script) .. " " .. port .. " " .. q(c.ca))
  test.eq(helpers.wait_output(peer, "https (%d[^\n]+)"), "200 POST node body TLSv1.3 http/1.1", helpers.output(peer))
  test.eq(helpers.wait_output(peer, "tls ([^\n]+)"), "HTTP/1.1 200 OK true")
  -- node's HTTPS server, TLS 1.2 only: our client, its tlsinfo, a resumed second request
  local server_js = helpers.node_script([[
const https = require("https"), fs = require("fs");
const s = https.createServer({ cert: fs.readFileSync(process.argv[2]), key: fs.readFileSync(process.argv[3]),
  maxVersion: "TLSv1.2" }, (req, res) => res.end(`node saw ${req.method} ${req.url} ${req.socket.getProtocol()}`));
s.listen(0, "127.0.0.1", () => console.log("listening " + s.address().port));
]])
  local node = helpers.start(("node %s %s %s"):format(q(server_js), q(c.server), q(c.server_key)))
  local nport = tonumber(helpers.wait_output(node, "listening (%d+)"))
  local res = assert(https.get(("https://localhost:%d/a"):format(nport), { ca = c.ca, keepalive = false }))
  test.eq(res:body(), "node saw GET /a TLSv1.2")
  local s = assert(tcp.connect(nport, "127.0.0.1", { tls = { ca = c.ca, servername = "localhost" } }))
  test.eq(s:tlsinfo().version, "TLSv1.2")
  test.match(s:tlsinfo().cipher, "^ECDHE%-ECDSA%-")
  s:close()
  s = assert(tcp.connect(nport, "127.0.0.1", { tls = { ca = c.ca, servername = "localhost" } }))
  test.eq(s:tlsinfo().resumed, true, "a TLS 1.2 session ticket resumed")
  s:close()
end)

-- --- nginx as the server ---------------------------------------------------------------------------

local NGINX_CONF = [[
daemon off;
master_process off;
worker_processes 1;
pid DIR/nginx.pid;
error_log DIR/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path DIR/tmp;
  proxy_temp_path DIR/tmp;
  fastcgi_temp_path DIR/tmp;
  uwsgi_temp_path DIR/tmp;
  scgi_temp_path DIR/tmp;
SERVERS
}
]]

local NGINX_SERVER = [[
  server {
    listen 127.0.0.1:PORT ssl;
    ssl_certificate CERT;
    ssl_certificate_key KEY;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { return 200 "nginx NAME $ssl_protocol"; }
  }
]]

test.case("nginx over TLS: a good certificate, then wrong host, expired, self-signed, unknown CA", function()
  if not test.sh("command -v nginx"):find("nginx") and not test.sh("ls /usr/sbin/nginx"):find("nginx") then
    test.skip("nginx is not installed")
  end
  local c = certs.make()
  local dir = test.tmpdir()
  test.sh("mkdir -p " .. dir .. "/tmp")
  local names = { "server", "expired", "selfsigned", "unknown" }
  local ports, servers = {}, {}
  for i, name in ipairs(names) do
    ports[name] = helpers.free_port()
    while i > 1 and ports[name] == ports[names[i - 1]] do ports[name] = helpers.free_port() end
    servers[#servers + 1] = (NGINX_SERVER:gsub("PORT", ports[name]):gsub("CERT", c[name])
      :gsub("KEY", c[name .. "_key"]):gsub("NAME", name))
  end
  test.write(dir .. "/nginx.conf", (NGINX_CONF:gsub("DIR", dir):gsub("SERVERS", table.concat(servers))))
  local nginx = test.sh("command -v nginx"):match("%S+") or "/usr/sbin/nginx"
  helpers.start(nginx .. " -p " .. dir .. " -c " .. dir .. "/nginx.conf -e " .. dir .. "/error.log")
  for _, name in ipairs(names) do helpers.wait_port(ports[name]) end
  local function get(name, host)
    return https.get(("https://%s:%d/"):format(host or "localhost", ports[name]), { ca = c.ca, keepalive = false })
  end
  local res = assert(get("server"))
  test.eq(res.status, 200)
  test.eq(res:body(), "nginx server TLSv1.3")
  res = assert(get("server", "127.0.0.1"))
  test.eq(res:body(), "nginx server TLSv1.3")
  local expect = {
    { "server", "test.example", "hostname mismatch" },
    { "expired", nil, "certificate has expired" },
    { "selfsigned", nil, "self%-signed certificate" },
    { "unknown", nil, "unable to get local issuer certificate" },
  }
  for _, e in ipairs(expect) do
    local err
    if e[2] then -- a name the certificate does not carry: connect by IP, verify the name
      local s
      s, err = tcp.connect(ports[e[1]], "127.0.0.1", { tls = { ca = c.ca, servername = e[2] } })
      test.eq(s, nil)
    else
      res, err = get(e[1])
      test.eq(res, nil, e[1])
    end
    test.eq(err.name, "ECERT", e[1])
    test.match(err.message, e[3], e[1])
  end
  -- verify = false reaches them all
  res = assert(https.get(("https://localhost:%d/"):format(ports.expired), { verify = false, keepalive = false }))
  test.eq(res:body(), "nginx expired TLSv1.3")
end)

-- --- the HTTP/1.1 server's behaviour, unchanged over TLS ----------------------------------------------

local PY_CLIENT = [[
import socket, ssl, sys, time, hashlib
port, mode, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
if mode == "pipeline":
    # 2,000 requests in one go: more than the server's input buffer holds while a handler runs
    pad = b"X-Pad: " + b"p" * 100 + b"\r\n"
    s.sendall(b"".join(b"GET /p%d HTTP/1.1\r\nHost: a\r\n%s\r\n" % (i, pad) for i in range(2000)) +
              b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
elif mode == "slow":
    s.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
parts, got = [], 0
while True:
    d = s.recv(65536 if mode != "slow" else 16384)
    if not d:
        break
    parts.append(d)
    got += len(d)
    if mode == "slow" and got < 2000000:
        time.sleep(0.01)
data = b"".join(parts)
head, _, body = data.partition(b"\r\n\r\n")
if mode == "pipeline":
    print("responses", data.count(b"HTTP/1.1 200"), b"hello /p1999" in data, data.endswith(b"hello /last"), flush=True)
else:
    print("body", len(body), hashlib.sha256(body).hexdigest(), flush=True)
]]

local python = helpers.python

test.case("HTTPS: pipelined requests in one record, and a 16 MiB response to a slow reader", function()
  local c = certs.make()
  local big = {}
  for i = 1, 16 * 1024 do big[i] = ("%10d"):format(i) .. ("."):rep(1013) .. "\n" end
  big = table.concat(big)
  local port = https_server(function(req, res)
    if req.path == "/big" then return res:finish(big) end
    if req.path == "/p7" then task.sleep(200) end -- the pipelined rest piles up meanwhile
    res:finish("hello " .. req.path)
  end)
  local peer = python(PY_CLIENT, port, "pipeline", c.ca)
  test.eq(helpers.wait_output(peer, "responses ([^\n]+)", 20000), "2001 True True")
  peer = python(PY_CLIENT, port, "slow", c.ca)
  local file = test.tmpdir() .. "/big"
  test.write(file, big)
  local sha = test.sh("sha256sum " .. file):match("^(%x+)")
  test.eq(helpers.wait_output(peer, "body ([^\n]+)", 30000), #big .. " " .. sha)
end)

test.case("HTTPS: a client's half close (close_notify, FIN) still gets its response", function()
  local c = certs.make()
  local port = https_server(function(req, res) res:finish("body " .. req:body()) end)
  local s = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = c.ca } }))
  assert(s:write("POST /h HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd"))
  assert(s:shutdown())
  s:setTimeout(5000)
  local got = {}
  while true do
    local d, err = s:read()
    if not d then
      test.eq(err.name, "EOF")
      break
    end
    got[#got + 1] = d
  end
  s:close()
  local responses = helpers.parse_responses(table.concat(got))
  test.eq(#responses, 1)
  test.eq(responses[1].body, "body abcd")
end)

local SERVER_APP = [[
local http = require "http"
local task = require "task"
local process = require "process"
local port = tonumber(arg[1])
local server = assert(http.createServer(port, function(req, res)
  if req.path == "/slow" then task.sleep(600) end
  res:finish("pid " .. process.pid)
end, { host = "127.0.0.1", workers = tonumber(arg[2]) or 0, shutdown_timeout = 5000,
  tls = { cert = arg[3], key = arg[4] } }))
print("listening " .. port .. " pid " .. process.pid)
io.stdout:flush()
]]

local function app_server(port, workers)
  local c = certs.make()
  local dir = test.tmpdir()
  test.write(dir .. "/server.lua", SERVER_APP)
  local peer = helpers.start(("%s run %s/server.lua %d %d %s %s; echo \"exit status $?\"")
    :format(luaio, dir, port, workers, q(c.server), q(c.server_key)))
  helpers.wait_output(peer, "listening")
  return peer, tonumber(helpers.wait_output(peer, "pid (%d+)"))
end

test.case("HTTPS: SIGTERM drains: the request running is answered, then the process exits 0", function()
  local c = certs.make()
  local port = helpers.free_port()
  local peer, pid = app_server(port, 0)
  helpers.wait_port(port)
  local result
  local t = task.spawn(function()
    result = { https.get(("https://localhost:%d/slow"):format(port), { ca = c.ca }) }
    if result[1] then result.body = result[1]:body() end
  end)
  task.sleep(200)
  assert(process.kill(pid, "SIGTERM"))
  t:join(5000)
  test.ok(result and result[1], "answered: " .. tostring(result and result[2]))
  test.eq(result.body, "pid " .. pid)
  test.eq(helpers.wait_output(peer, "exit status (%d+)", 5000), "0")
end)

test.case("HTTPS workers = 2: a ticket from one worker resumes on the other (s_client)", function()
  local c = certs.make()
  local port = helpers.free_port()
  local master = app_server(port, 2)
  local deadline = task.now() + 5000
  while #(test.sh("pgrep -P " .. master.pid .. " -f server.lua")):gsub("%s", "") == 0 and task.now() < deadline do
    task.sleep(20)
  end
  helpers.wait_port(port)
  task.sleep(300) -- both workers listening
  local dir = test.tmpdir()
  local base = ("openssl s_client -connect 127.0.0.1:%d -CAfile %s -servername localhost -ign_eof")
    :format(port, q(c.ca))
  local request = "printf 'GET / HTTP/1.1\\r\\nHost: a\\r\\nConnection: close\\r\\n\\r\\n' | "
  local out = run(request .. base .. " -sess_out " .. dir .. "/sess")
  local first = out:match("pid (%d+)")
  test.ok(first, out)
  -- new connections until one lands on the other worker (SO_REUSEPORT spreads them)
  local other
  for _ = 1, 60 do
    out = run(request .. base .. " -sess_in " .. dir .. "/sess")
    local pid = out:match("pid (%d+)")
    test.match(out, "\nReused, TLSv1%.3", "resumed on worker " .. tostring(pid))
    if pid and pid ~= first then other = pid break end
  end
  test.ok(other, "a connection reached the second worker")
end)

test.case("certificate swap under load (server:setTLS): no failed request, both certificates seen", function()
  local c = certs.make()
  -- a renewed certificate for the same names
  local dir = test.tmpdir()
  test.sh(("cd %s && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out k.pem && " ..
    "openssl req -new -key k.pem -subj /CN=localhost -config /dev/null -out r.csr && " ..
    "openssl x509 -req -in r.csr -CA %s -CAkey %s -set_serial 4242 -days 30 -extfile %s -extensions v3 -out r.pem")
    :format(dir, q(c.ca), q(c.ca_key), q(c.dir .. "/server.ext")))
  local pairs_ = { certs.pair(), { cert = dir .. "/r.pem", key = dir .. "/k.pem" } }
  local port, server = https_server(hello, pairs_[1])
  local script = helpers.node_script([[
const https = require("https"), fs = require("fs");
const ca = fs.readFileSync(process.argv[3]);
const agent = new https.Agent({ keepAlive: false, maxCachedSessions: 0 });
let ok = 0, failed = 0, inflight = 0, stop = false;
const serials = new Set();
function one() {
  if (stop) return;
  inflight++;
  https.get({ host: "127.0.0.1", port: +process.argv[2], path: "/", ca, servername: "localhost", agent }, (res) => {
    serials.add(res.socket.getPeerCertificate().serialNumber);
    res.resume();
    res.on("end", () => { ok++; inflight--; one(); });
  }).on("error", (e) => { failed++; inflight--; console.log("error " + e.message); one(); });
}
for (let i = 0; i < 8; i++) one();
process.stdin.on("data", () => {
  stop = true;
  const t = setInterval(() => { if (inflight === 0) { clearInterval(t); console.log(`result ${ok} ${failed} ${serials.size}`); } }, 10);
});
console.log("running");
]])
  local fifo = dir .. "/stdin"
  test.sh("mkfifo " .. fifo)
  local peer = helpers.start(("node %s %d %s < %s"):format(q(script), port, q(c.ca), fifo))
  local writer = io.open(fifo, "w") -- opens once node has opened its end
  helpers.wait_output(peer, "running")
  for i = 1, 20 do
    task.sleep(40)
    assert(server:setTLS(pairs_[i % 2 + 1]))
  end
  task.sleep(100)
  writer:write("stop\n")
  writer:flush()
  local result = helpers.wait_output(peer, "result ([^\n]+)", 10000)
  writer:close()
  local ok, failed, serials = result:match("(%d+) (%d+) (%d+)")
  test.eq(failed, "0", helpers.output(peer))
  test.ok(tonumber(ok) > 20, "requests made: " .. ok)
  test.eq(serials, "2", "both certificates were served")
end)

-- --- our client -------------------------------------------------------------------------------------------

test.case("our client follows a redirect from http to https (the ca option goes along)", function()
  local c = certs.make()
  local sport = https_server(function(req, res) res:finish("secure " .. req.path) end)
  local plain = assert(http.createServer(0, function(req, res)
    res:status(301)
    res:setHeader("Location", ("https://localhost:%d/landed"):format(sport))
    res:finish()
  end, { host = "127.0.0.1" }))
  test.cleanup(function() plain:close() end)
  local res = assert(http.get(("http://127.0.0.1:%d/start"):format(plain:address().port),
    { ca = c.ca, follow_redirects = true }))
  test.eq(res.status, 200)
  test.eq(res:body(), "secure /landed")
  -- without the CA: the system's roots do not know the test CA
  local err
  res, err = http.get(("http://127.0.0.1:%d/start"):format(plain:address().port), { follow_redirects = true })
  test.eq(res, nil)
  test.eq(err.name, "ECERT")
end)

test.case("tls.roots(): SSL_CERT_FILE, SSL_CERT_DIR, the system's bundle, or the embedded store", function()
  local c = certs.make()
  local dir = test.tmpdir()
  test.write(dir .. "/roots.lua", [[
local r = require("tls").roots()
print(r.source, r.path, r.count)
]])
  local function roots(env)
    return (test.sh("env -u SSL_CERT_FILE -u SSL_CERT_DIR " .. env .. " " .. luaio .. " run " .. dir .. "/roots.lua"))
  end
  test.eq(roots("SSL_CERT_FILE=" .. q(c.ca)), "SSL_CERT_FILE\t" .. c.ca .. "\t1\n")
  test.match(roots("SSL_CERT_DIR=/etc/ssl/certs"), "^SSL_CERT_DIR\t/etc/ssl/certs\t")
  if test.sh("ls /etc/ssl/certs/ca-certificates.crt"):find("^/etc") then
    test.match(roots(""), "^system\t/etc/ssl/certs/ca%-certificates%.crt\t%d%d+\n")
  end
  -- the version names the library
  test.match(test.sh(luaio .. " version"), "OpenSSL 3%.5")
end)

test.case("an empty root (FROM scratch): embedded roots, or the test CA through SSL_CERT_FILE", function()
  test.static()
  local c = certs.make()
  local port = https_server(hello)
  local root = test.tmpdir()
  local app = test.tmpdir() .. "/app"
  test.write(app .. "/main.lua", ([[
local tls = require "tls"
local https = require "https"
local r = tls.roots()
print("roots", r.source, r.count > 100 or r.count)
local res, err = https.get("https://127.0.0.1:%d/scratch") -- no /etc/hosts in the root
print("get", res and res:body() or tostring(err))
]]):format(port))
  local out, status = test.sh(("%s build %s -o %s/app"):format(luaio, q(app), q(root)))
  test.eq(status, 0, out)
  test.sh("cp " .. q(c.ca) .. " " .. q(root .. "/ca.pem"))
  -- no /etc in the root: the Mozilla store compiled in, which does not know the test CA
  local function inroot(env)
    local chroot = test.sh("command -v chroot"):match("%S+")
    return run(("env -i %s %s %s /app"):format(env, chroot, q(root)))
  end
  out = inroot("")
  test.match(out, "roots\tembedded\ttrue")
  test.match(out, "get\tECERT: unable to get local issuer certificate")
  out = inroot("SSL_CERT_FILE=/ca.pem")
  test.match(out, "roots\tSSL_CERT_FILE\t1")
  test.match(out, "get\thello /scratch")
end)

test.case("HTTPS: a client that never says hello is closed at keepalive_timeout", function()
  local port = https_server(hello, nil, { keepalive_timeout = 400 })
  local started = task.now()
  local raw = assert(tcp.connect(port, "127.0.0.1"))
  raw:setTimeout(5000)
  local data, err = raw:read()
  local elapsed = task.now() - started
  raw:close()
  test.eq(data, nil)
  test.eq(err.name, "EOF")
  test.ok(elapsed >= 300 and elapsed < 4000, "closed after " .. elapsed .. " ms")
  -- and one that sends garbage instead of a ClientHello is closed at once
  raw = assert(tcp.connect(port, "127.0.0.1"))
  raw:setTimeout(5000)
  started = task.now()
  raw:write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
  data, err = raw:read()
  raw:close()
  test.eq(data, nil)
  test.eq(err.name, "EOF")
  test.ok(task.now() - started < 300, "at once")
end)

test.case("HTTPS: Connection: close ends with close_notify; the keep-alive timeout closes", function()
  local c = certs.make()
  local port = https_server(hello, nil, { keepalive_timeout = 300 })
  local peer = python(certs.PY_END_READER, port, c.ca, "GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
  test.match(helpers.wait_output(peer, "(%a+ end %d+ %d+)"), "^clean end %d+ 1$", "Connection: close")
  -- an idle keep-alive connection is closed at once (luaio_conn_close), without close_notify
  -- (nginx does the same with a timed-out connection); the response was whole anyway
  peer = python(certs.PY_END_READER, port, c.ca, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
  test.eq(helpers.wait_output(peer, "%a+ end %d+ (%d+)"), "1", "after the idle timeout")
end)

-- --- examples/https: a renewed certificate picked up on SIGHUP ---------------------------------

test.case("examples/https reloads its certificate on SIGHUP; a bad pair is refused and the old one stays", function()
  local c = certs.make()
  local dir = test.tmpdir()
  local function install(name, key_name)
    test.sh(("cp %s %s/cert.pem && cp %s %s/key.pem"):format(q(c[name]), dir, q(c[(key_name or name) .. "_key"]), dir))
  end
  install("server")
  local port = helpers.free_port()
  local peer = helpers.start(("%s run examples/https %s/cert.pem %s/key.pem %d"):format(luaio, dir, dir, port))
  local pid = tonumber(helpers.wait_output(peer, "listening.-pid=(%d+)"))
  local function subject(servername)
    local s, err = tcp.connect(port, "127.0.0.1", { tls = { ca = c.ca, servername = servername } })
    if not s then return nil, err end
    local peer_cert = s:tlsinfo().peer
    s:close()
    return peer_cert.subject
  end
  test.eq(subject("localhost"), "CN=localhost")
  local kept = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = c.ca, servername = "localhost" } }))
  install("other")
  test.sh("kill -HUP " .. pid)
  helpers.wait_output(peer, "certificate reloaded")
  test.eq(subject("other.test"), "CN=other.test")
  local _, err = subject("localhost")
  test.eq(err and err.message, "hostname mismatch")
  -- the connection opened before the reload still works
  kept:write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
  test.match(assert(kept:readline()), "^HTTP/1.1 200")
  kept:close()
  -- a key that does not belong to the certificate: refused, the current pair stays
  install("server", "other")
  test.sh("kill -HUP " .. pid)
  helpers.wait_output(peer, "certificate reload failed")
  test.eq(subject("other.test"), "CN=other.test")
end)

-- --- our client: a close-delimited body needs TLS's close_notify to be complete --------------------

-- A python HTTPS server: /ragged sends a close-delimited body and ends with a bare TCP FIN (no
-- close_notify: what a truncation attacker injects), /clean the same body ended with
-- close_notify, /length a Content-Length body ended with a bare FIN.
local PY_RAGGED = [[
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(16)
print("listening", srv.getsockname()[1], flush=True)
def serve(raw):
    raw.settimeout(5)
    try:
        c = ctx.wrap_socket(raw, server_side=True)
        data = b""
        while b"\r\n\r\n" not in data:
            data += c.recv(4096)
        path = data.split(b" ")[1]
        if path == b"/length":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nwhole body")
        else:
            c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nwhole body")
        if path == b"/clean":
            c.unwrap()
        raw.shutdown(socket.SHUT_RDWR)
        raw.close()
    except Exception as e:
        print("error", e, flush=True)
while True:
    threading.Thread(target=serve, args=(srv.accept()[0],)).start()
]]

test.case("our client: a close-delimited HTTPS body cut by a FIN without close_notify is EPROTO, not a complete body", function()
  local c = certs.make()
  local peer = python(PY_RAGGED, c.server, c.server_key)
  local port = tonumber(helpers.wait_output(peer, "listening (%d+)"))
  local function fetch(path, by_pieces)
    local res, err = https.get(("https://localhost:%d%s"):format(port, path), { ca = c.ca, timeout = 5000 })
    if not res then return "request: " .. err.name end
    if not by_pieces then
      local body, berr = res:body()
      return body or (berr.name .. " " .. berr.message)
    end
    local pieces = {}
    while true do
      local piece, perr = res:read()
      if not piece then
        pieces[#pieces + 1] = perr and perr.name or "end"
        return table.concat(pieces, "|")
      end
      pieces[#pieces + 1] = piece
    end
  end
  test.eq(fetch("/clean"), "whole body", "ended with close_notify: complete")
  test.match(fetch("/ragged"), "^EPROTO [^\n]*close_notify", "ended by a bare FIN: truncated")
  test.match(fetch("/ragged", true), "^whole body|EPROTO$", "read piece by piece: the pieces, then the error")
  test.match(fetch("/length"), "^EPROTO ", "a Content-Length body cut short, as before")
end)
