-- TLS on tcp sockets: luaio against itself and against python's ssl module (for what a
-- well-behaved peer does not do: a cut record, no ClientHello, a check for close_notify),
-- node for volume. The test certificates come from tests/tls_certs.lua.
local test = require "test"
local task = require "task"
local tcp = require "tcp"
local tls = require "tls"
local helpers = require "tests.helpers"
local certs = require "tests.tls_certs"

local q = test.quote

-- A TLS server in this process; closed when the case ends. Returns its port.
local function serve(onconnect, tls_opts, opts)
  opts = opts or {}
  opts.host = "127.0.0.1"
  if tls_opts ~= false then opts.tls = tls_opts or certs.pair() end -- false: plain (STARTTLS)
  local server = assert(tcp.createServer(0, onconnect, opts))
  test.cleanup(function() server:close() end)
  return server:address().port, server
end

local function ca() return certs.make().ca end

-- Serves one line: "name <what the client sent>" and the server's view of TLS.
local function line_server(seen)
  return function(s)
    local line, err = s:readline()
    seen[#seen + 1] = { line = line, err = err, info = s:tlsinfo() }
    if line then s:write("echo " .. line .. "\n") end
  end
end

-- Answers every line, "echo <line>", until the stream ends; seen.err says how it ended
-- when it was not a clean end.
local function line_server_loop(seen)
  return function(s)
    while true do
      local line, err = s:readline()
      if not line then
        if err and err.name ~= "EOF" then seen.err = err end
        return
      end
      s:write("echo " .. line .. "\n")
    end
  end
end

local python = helpers.python

-- --- basics ----------------------------------------------------------------------------------

test.case("a client verifies the server by name and IP; tlsinfo on both sides", function()
  local seen = {}
  local port = serve(line_server(seen))
  for _, host in ipairs({ "localhost", "127.0.0.1" }) do
    local s = assert(tcp.connect(port, host == "localhost" and "127.0.0.1" or host,
      { tls = { ca = ca(), servername = host ~= "127.0.0.1" and host or nil } }))
    assert(s:write("hi " .. host .. "\n"))
    test.eq(s:readline(), "echo hi " .. host)
    local info = s:tlsinfo()
    test.eq(info.version, "TLSv1.3")
    test.match(info.cipher, "^TLS_")
    test.eq(type(info.group), "string")
    test.eq(info.peer.subject, "CN=localhost")
    test.eq(info.peer.issuer, "CN=luaio test CA")
    test.eq(info.peer.names, { "localhost", "test.local", "*.wild.test" })
    test.ok(info.peer.not_before <= os.time() and info.peer.not_after > os.time(), "valid now")
    test.match(info.peer.serial, "^%x+$")
    test.eq(info.servername, host ~= "127.0.0.1" and host or nil, "SNI only for a name")
    s:close()
  end
  test.eq(seen[1].info.servername, "localhost", "the server saw the SNI")
  test.eq(seen[2].info.servername, nil)
  test.eq(seen[1].info.peer, nil, "no client certificate")
  -- a plain socket has no TLS info
  local plain = assert(tcp.createServer(0, function() end, { host = "127.0.0.1" }))
  local s = assert(tcp.connect(plain:address().port))
  test.eq(s:tlsinfo(), nil)
  s:close()
  plain:close()
end)

test.case("verification failures are ECERT with the reason; verify = false connects", function()
  local c = certs.make()
  local cases = {
    { "server", { servername = "wrong.test" }, "hostname mismatch" },
    { "expired", {}, "certificate has expired" },
    { "selfsigned", {}, "self%-signed certificate" },
    { "unknown", {}, "unable to get local issuer certificate" },
  }
  for _, k in ipairs(cases) do
    local port = serve(function(s) s:read() end, certs.pair(k[1]))
    local opts = { ca = c.ca }
    for key, v in pairs(k[2]) do opts[key] = v end
    local s, err = tcp.connect(port, "127.0.0.1", { tls = opts })
    test.eq(s, nil, k[1])
    test.eq(err.name, "ECERT", k[1])
    test.match(err.message, k[3], k[1])
    s = assert(tcp.connect(port, "127.0.0.1", { tls = { verify = false, servername = "wrong.test" } }))
    test.ok(s:tlsinfo().peer, k[1] .. ": connected without verification")
    s:close()
  end
  -- the server's own certificate as the client's ca: a self-signed one is then trusted
  local port = serve(function(s) s:read() end, certs.pair("selfsigned"))
  local s = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = c.selfsigned, servername = "localhost" } }))
  s:close()
end)

test.case("options are checked; PEM text or a file path; bad PEM raises", function()
  local c = certs.make()
  test.raises(function() tcp.connect(1, "127.0.0.1", { tls = { nope = 1 } }) end, "nope")
  test.raises(function() tcp.connect(1, "127.0.0.1", { tls = { min_version = "1.1" } }) end, "min_version")
  test.raises(function() tcp.connect(1, "127.0.0.1", { tls = { cert = c.client } }) end, "'cert' and 'key' go together")
  test.raises(function() tcp.connect(1, "127.0.0.1", { tls = { ca = "/nonexistent.pem" } }) end,
    "neither PEM text nor a readable file")
  test.raises(function() tcp.connect(1, "127.0.0.1", { tls = { alpn = { "" } } }) end, "alpn")
  test.raises(function() tcp.createServer(0, function() end, { tls = {} }) end, "a server needs")
  test.raises(function() tls.server({ cert = c.server, key = c.server_key, verify_client = true }) end,
    "'verify_client' needs 'client_ca'")
  test.raises(function() tcp.createServer(0, function() end, { tls = { cert = c.server, key = c.other_key } }) end,
    "cert/key")
  test.raises(function() tls.server({ cert = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    key = c.server_key }) end, "cert/key")
  -- PEM text works as well as a path
  local port = serve(function(s) s:write("x") end, { cert = c.pem("server"), key = c.pem("server_key") })
  local s = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = c.pem("ca") } }))
  test.eq(s:read(), "x")
  s:close()
  test.match(tostring(tls.server(certs.pair())), "^tls context %(server")
end)

test.case("our client resumes its own sessions (tlsinfo().resumed), per host and port", function()
  local port = serve(line_server({}))
  local first = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = ca() } }))
  first:write("a\n")
  first:readline() -- TLS 1.3 tickets come after the handshake: read once
  test.eq(first:tlsinfo().resumed, false)
  first:close()
  local second = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = ca() } }))
  second:write("b\n")
  test.eq(second:readline(), "echo b")
  test.eq(second:tlsinfo().resumed, true, "the second connection resumed")
  second:close()
  -- a TLS 1.3 ticket is used once: a resumed connection gets a new one, so every
  -- reconnection resumes (without it only every other one did)
  for i = 3, 5 do
    local again = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = ca() } }))
    again:write("c\n")
    test.eq(again:readline(), "echo c")
    test.eq(again:tlsinfo().version, "TLSv1.3")
    test.eq(again:tlsinfo().resumed, true, "connection " .. i .. " resumed")
    again:close()
  end
  -- another server (port): no session for it yet
  local port2 = serve(line_server({}))
  local third = assert(tcp.connect(port2, "127.0.0.1", { tls = { ca = ca() } }))
  test.eq(third:tlsinfo().resumed, false)
  third:close()
end)

-- --- SNI and ALPN ---------------------------------------------------------------------------

test.case("SNI picks among several certificates, wildcards included; no SNI gets the first", function()
  local c = certs.make()
  local port = serve(line_server({}), { certs = { certs.pair("server"), certs.pair("other") } })
  local expect = {
    { "localhost", "CN=localhost" }, { "other.test", "CN=other.test" },
    { "a.wild.test", "CN=localhost" }, { "OTHER.TEST", "CN=other.test" },
  }
  for _, e in ipairs(expect) do
    local s = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = c.ca, servername = e[1] } }))
    test.eq(s:tlsinfo().peer.subject, e[2], e[1])
    s:close()
  end
  -- a wildcard covers one label only
  local s, err = tcp.connect(port, "127.0.0.1", { tls = { ca = c.ca, servername = "b.a.wild.test" } })
  test.eq(s, nil)
  test.eq(err.message, "hostname mismatch")
  s = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = c.ca } })) -- an IP: no SNI
  test.eq(s:tlsinfo().peer.subject, "CN=localhost")
  s:close()
end)

test.case("certs without cert: the first entry is the default with its whole chain", function()
  local c = certs.make()
  local port = serve(line_server({}), { certs = { certs.pair("chained_full"), certs.pair("other") } })
  for _, name in ipairs({ "localhost", false }) do -- by SNI, and with none (an IP)
    local s = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = c.ca, servername = name or nil } }))
    test.eq(s:tlsinfo().peer.subject, "CN=chained.test", tostring(name))
    s:close()
  end
end)

test.case("server:setTLS: a bad file or a mismatched key is nil, err and the old certificate stays; misuse raises", function()
  local c = certs.make()
  local port, server = serve(line_server({}))
  local ok, err = server:setTLS({ cert = c.dir .. "/missing.pem", key = c.server_key })
  test.eq(ok, nil)
  test.eq(err.name, "ETLS")
  test.match(err.message, "missing.pem")
  ok, err = server:setTLS({ cert = c.server, key = c.other_key })
  test.eq(ok, nil)
  test.match(err.message, "key values mismatch")
  test.raises(function() server:setTLS({ cert = c.server }) end, "'cert' and 'key' go together")
  test.raises(function() server:setTLS({ cert = 5, key = c.server_key }) end, "option 'cert'")
  local s = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = c.ca, servername = "localhost" } }))
  test.eq(s:tlsinfo().peer.subject, "CN=localhost")
  s:close()
  test.eq(server:setTLS(certs.pair("other")), true)
  s = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = c.ca, servername = "other.test" } }))
  test.eq(s:tlsinfo().peer.subject, "CN=other.test")
  s:close()
end)

test.case("the sni callback chooses a context; nil keeps the default; an error fails the handshake", function()
  local c = certs.make()
  local other = tls.server(certs.pair("other"))
  local calls = {}
  local port = serve(line_server({}), {
    cert = c.server, key = c.server_key,
    sni = function(name)
      calls[#calls + 1] = name
      if name == "boom.test" then error("boom") end
      if name == "other.test" then return other end
    end,
  })
  local function subject(name)
    local s, err = tcp.connect(port, "127.0.0.1", { tls = { ca = c.ca, servername = name, verify = false } })
    if not s then return nil, err end
    local subj = s:tlsinfo().peer.subject
    s:close()
    return subj
  end
  test.eq(subject("other.test"), "CN=other.test")
  test.eq(subject("plain.test"), "CN=localhost")
  local subj, err = subject("boom.test")
  test.eq(subj, nil)
  test.eq(err.name, "ETLS")
  test.eq(calls, { "other.test", "plain.test", "boom.test" })
end)

test.case("ALPN: the server's preference wins; no common protocol fails both sides", function()
  local seen = {}
  local port = serve(line_server(seen), { cert = certs.make().server, key = certs.make().server_key,
    alpn = { "h2", "http/1.1" } })
  local s = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = ca(), alpn = { "http/1.1", "h2" } } }))
  test.eq(s:tlsinfo().alpn, "h2")
  s:close()
  s = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = ca(), alpn = { "x", "http/1.1" } } }))
  test.eq(s:tlsinfo().alpn, "http/1.1")
  s:close()
  s = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = ca() } })) -- no ALPN offered: fine
  test.eq(s:tlsinfo().alpn, nil)
  s:close()
  local err
  s, err = tcp.connect(port, "127.0.0.1", { tls = { ca = ca(), alpn = { "spdy/1" } } })
  test.eq(s, nil)
  test.eq(err.name, "ETLS")
  test.match(err.message, "no application protocol")
end)

-- --- client certificates ---------------------------------------------------------------------

test.case("mutual TLS: required and missing, unknown CA, and resumed; under SNI too", function()
  local c = certs.make()
  for _, shape in ipairs({ "cert", "certs" }) do
    local seen = {}
    local opts = { client_ca = c.ca, verify_client = true }
    if shape == "cert" then
      opts.cert, opts.key = c.server, c.server_key
    else
      opts.certs = { certs.pair("other"), certs.pair("server") }
    end
    local port = serve(line_server(seen), opts)
    local function try(extra)
      local o = { ca = c.ca, servername = "localhost" }
      for k, v in pairs(extra) do o[k] = v end
      local s, err = tcp.connect(port, "127.0.0.1", { tls = o })
      if not s then return nil, err end
      s:write("hello\n")
      local resumed = s:tlsinfo().resumed
      local line, rerr = s:readline()
      s:close()
      return line, rerr, resumed
    end
    -- TLS 1.3: the client's handshake ends before the server judges its certificate, so the
    -- refusal comes as an alert on the first read
    local line, err = try({})
    test.eq(line, nil, shape)
    test.eq(err.name, "ETLS", shape)
    test.match(err.message, "certificate required")
    line, err = try({ cert = c.badclient, key = c.badclient_key })
    test.eq(line, nil, shape)
    test.match(err.message, "unknown ca")
    local resumed
    line, err, resumed = try({ cert = c.client, key = c.client_key })
    test.eq(line, "echo hello", shape .. ": " .. tostring(err))
    test.eq(resumed, false)
    line, err, resumed = try({ cert = c.client, key = c.client_key })
    test.eq(line, "echo hello", shape .. " (resumed): " .. tostring(err))
    test.eq(resumed, true)
    local ok = seen[#seen]
    test.eq(ok.info.peer.subject, "CN=luaio test client")
    test.eq(ok.info.peer.issuer, "CN=luaio test CA")
    test.eq(seen[1].err.name, "ETLS")
    test.match(seen[1].err.message, "did not return a certificate")
    test.eq(seen[2].err.name, "ECERT")
  end
end)

test.case("client_ca without verify_client asks for a certificate and lets a client without one in", function()
  local c = certs.make()
  local seen = {}
  local port = serve(line_server(seen), { cert = c.server, key = c.server_key, client_ca = c.ca })
  for _, with in ipairs({ true, false }) do
    local o = { ca = c.ca }
    if with then o.cert, o.key = c.client, c.client_key end
    local s = assert(tcp.connect(port, "127.0.0.1", { tls = o }))
    s:write("x\n")
    test.eq(s:readline(), "echo x")
    s:close()
  end
  test.eq(seen[1].info.peer.subject, "CN=luaio test client")
  test.eq(seen[2].info.peer, nil)
end)

-- --- the handshake -------------------------------------------------------------------------------

test.case("a client that says nothing is closed at the handshake timeout", function()
  local results = {}
  local port = serve(function(s)
    local data, err = s:read()
    results[#results + 1] = { data = data, err = err }
  end, { cert = certs.make().server, key = certs.make().server_key, handshake_timeout = 300 })
  local started = task.now()
  local raw = assert(tcp.connect(port, "127.0.0.1"))
  raw:setTimeout(5000)
  local data, err = raw:read()
  local elapsed = task.now() - started
  test.eq(data, nil)
  test.eq(err.name, "EOF")
  test.ok(elapsed >= 250 and elapsed < 4000, "closed after the timeout: " .. elapsed .. " ms")
  raw:close()
  task.sleep(20)
  test.eq(results[1].err.name, "ETIMEDOUT", "the server's read fails")
  -- and a client's handshake_timeout against a server that never answers
  local silent = assert(tcp.createServer(0, function(s) s:read() task.sleep(2000) end, { host = "127.0.0.1" }))
  test.cleanup(function() silent:close() end)
  started = task.now()
  local s
  s, err = tcp.connect(silent:address().port, "127.0.0.1", { tls = { ca = ca(), handshake_timeout = 200 } })
  test.eq(s, nil)
  test.eq(err.name, "ETIMEDOUT")
  test.ok(task.now() - started < 1900, "the client gave up at its handshake timeout")
end)

test.case("garbage instead of a ClientHello: ETLS on the server, the connection closed", function()
  local results = {}
  local port = serve(function(s)
    local data, err = s:read()
    results[#results + 1] = { data = data, err = err }
  end)
  local raw = assert(tcp.connect(port, "127.0.0.1"))
  raw:setTimeout(3000)
  raw:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
  local data, err = raw:read()
  test.eq(data, nil)
  test.eq(err.name, "EOF")
  raw:close()
  raw = assert(tcp.connect(port, "127.0.0.1")) -- a record header with a wrong version, then junk
  raw:setTimeout(3000)
  raw:write("\22\3\9\0\5hello" .. ("\0"):rep(100))
  local got = {}
  while true do
    local d = raw:read()
    if not d then break end
    got[#got + 1] = d
  end
  raw:close()
  task.sleep(20)
  test.eq(results[1].err.name, "ETLS")
  test.match(results[1].err.message, "http request")
  test.eq(results[2].err.name, "ETLS")
  -- our client against a server that closes at once, or answers in plain text
  local closer = assert(tcp.createServer(0, function(s) s:read() end, { host = "127.0.0.1" }))
  local plain = assert(tcp.createServer(0, function(s) s:read() s:write("HTTP/1.1 400 Bad\r\n\r\n") end,
    { host = "127.0.0.1" }))
  test.cleanup(function() closer:close() plain:close() end)
  local started = task.now()
  local s
  s, err = tcp.connect(closer:address().port, "127.0.0.1", { tls = { ca = ca() } })
  test.eq(s, nil)
  test.eq(tostring(err), "ETLS: unexpected eof while reading")
  test.ok(task.now() - started < 5000, "at once, not at the handshake timeout")
  s, err = tcp.connect(plain:address().port, "127.0.0.1", { tls = { ca = ca() } })
  test.eq(s, nil)
  test.eq(tostring(err), "ETLS: wrong version number")
end)

-- --- the end of a stream -------------------------------------------------------------------------

local PY_READER = certs.PY_END_READER

test.case("close_notify on close: the peer sees a clean end (server return, close, shutdown)", function()
  -- "early": the server writes and ends before the handshake is over (the client's Finished
  -- has not arrived): the close_notify waits for it
  for _, how in ipairs({ "return", "close", "shutdown", "early return", "early close" }) do
    local port = serve(function(s)
      if not how:find("early") then s:tlsinfo() s:read(1) end
      s:write(("z"):rep(100000))
      if how:find("close") then s:close() end
      if how == "shutdown" then s:shutdown() task.sleep(100) end
    end)
    local peer = python(PY_READER, port, ca(), how:find("early") and "" or "x")
    test.eq(helpers.wait_output(peer, "(%a+ end %d+)"), "clean end 100000", how)
  end
end)

test.case("shutdown() before the server's handshake is over waits for it: data, close_notify, then FIN", function()
  -- the server writes and half-closes at once, while the client's Finished is still to come
  local port = serve(function(s)
    s:write("early")
    s:shutdown()
    task.sleep(100)
  end)
  local peer = python(PY_READER, port, ca(), "")
  test.eq(helpers.wait_output(peer, "(%a+ end %d+)"), "clean end 5")
end)

-- python: handshaken(ctx, port) -> sock, obj, inc, out: a TLS client over memory BIOs, so that
-- what follows writes records (obj.write, then out.read() for the ciphertext) and sends
-- them, whole, cut or altered, on the socket.
local PY_CONNECT = [[
import socket, ssl, sys, time

def handshaken(ctx, port):
    sock = socket.create_connection(("127.0.0.1", port))
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(out.read())
            inc.write(sock.recv(65536))
    sock.sendall(out.read())
    return sock, obj, inc, out
]]

-- One such client: python3 script.py port mode ca.
local PY_HANDSHAKE = PY_CONNECT .. [[
port, mode = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=sys.argv[3])
sock, obj, inc, out = handshaken(ctx, port)
]]

-- Sends one 1000-byte record whole or cut in half, then ends the TCP stream without
-- close_notify.
local PY_CUT = PY_HANDSHAKE .. [[
obj.write(b"x" * 1000)
rec = out.read()
sock.sendall(rec[: len(rec) // 2] if mode == "half" else rec)
sock.shutdown(socket.SHUT_WR)
print("sent", flush=True)
sock.recv(10)
]]

test.case("EOF in the middle of a record fails the read; at a record boundary it is the end", function()
  for _, mode in ipairs({ "half", "whole" }) do
    local result
    local port = serve(function(s)
      local got = {}
      while true do
        local d, err = s:read()
        if not d then result = { bytes = #table.concat(got), err = err } break end
        got[#got + 1] = d
      end
    end)
    python(PY_CUT, port, mode, ca())
    local deadline = task.now() + 5000
    while not result and task.now() < deadline do task.sleep(10) end
    test.ok(result, mode .. ": the server's reads ended")
    if mode == "half" then
      test.eq(result.bytes, 0)
      test.eq(tostring(result.err), "ETLS: unexpected eof while reading")
    else
      test.eq(result.bytes, 1000)
      test.eq(result.err.name, "EOF")
    end
  end
end)

-- --- after the handshake: luaio's TLS 1.3 record layer ----------------------------------------------
-- A TLS 1.3 server connection leaves OpenSSL once its handshake is over (net/tls.c says
-- why); openssl_records = true keeps it there. Each case runs against both, and both must
-- behave the same.

local LAYERS = { luaio = {}, openssl = { openssl_records = true } }

local function layer_pair(layer)
  local opts = certs.pair()
  for k, v in pairs(LAYERS[layer]) do opts[k] = v end
  return opts
end

test.case("the layer after the handshake: luaio's for TLS 1.3 (each suite), OpenSSL's for 1.2, a client certificate, openssl_records", function()
  local c = certs.make()
  local SUITES = { "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256" }
  for layer in pairs(LAYERS) do
    local seen = {}
    local port = serve(line_server(seen), layer_pair(layer))
    for i, suite in ipairs(SUITES) do -- a line of 10,000 bytes each way
      local line = suite .. (" %d "):format(i) .. ("z"):rep(10000)
      local s = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = c.ca, servername = "localhost",
        ciphersuites = suite } }))
      assert(s:write(line .. "\n"))
      test.eq(s:readline(), "echo " .. line, layer .. " " .. suite)
      s:close()
      local info = seen[i].info
      test.eq(info.records, layer == "luaio" and "luaio" or "openssl", layer)
      test.eq(info.version, "TLSv1.3")
      test.eq(info.cipher, suite, "the suite the client asked for")
      test.eq(info.servername, "localhost")
      test.eq(type(info.group), "string")
      test.eq(info.resumed, false)
    end
  end
  -- TLS 1.2 stays on OpenSSL
  local seen = {}
  local port = serve(line_server(seen))
  local s12 = python([[
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost")
s.sendall(b"one two\n")
print(s.recv(100).decode().strip(), s.version(), flush=True)
]], port, c.ca)
  test.eq(helpers.wait_output(s12, "(echo one two TLSv1.2)"), "echo one two TLSv1.2")
  test.eq(seen[#seen].info.records, "openssl")
  test.eq(seen[#seen].info.version, "TLSv1.2")
  -- a client certificate stays on OpenSSL (tlsinfo reads it)
  seen = {}
  port = serve(line_server(seen), { cert = c.server, key = c.server_key, client_ca = c.ca,
    verify_client = true })
  local s = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = c.ca, cert = c.client, key = c.client_key } }))
  assert(s:write("mtls\n"))
  test.eq(s:readline(), "echo mtls")
  s:close()
  test.eq(seen[1].info.records, "openssl")
  test.eq(seen[1].info.peer.subject, "CN=luaio test client")
end)

-- openssl s_client sends a KeyUpdate for "k" (none asked back) and "K" (one asked back), and
-- pads its records to 256 bytes: the padding goes.
-- openssl s_client on a TLS server's port, driven line by line through a FIFO on its stdin.
-- client.say(line[, wait]) writes a line, then waits for the output pattern `wait`; for "k"
-- and "K" it first waits until s_client has sent that KeyUpdate (s_client drops what
-- follows a command letter in the same read). client.output() is all it printed.
local function s_client(port, label)
  local fifo = test.tmpdir() .. "/stdin"
  test.sh("mkfifo " .. q(fifo))
  local peer = helpers.start("openssl s_client -connect 127.0.0.1:" .. port ..
    " -servername localhost -tls1_3 -msg -record_padding 256 < " .. q(fifo)) -- padded records
  local input = assert(io.open(fifo, "w"))
  local client, sent = { peer = peer }, 0
  function client.output() return helpers.output(peer) end
  function client.count(pattern) return select(2, helpers.output(peer):gsub(pattern, "")) end
  function client.say(line, wait)
    input:write(line .. "\n")
    input:flush()
    if line:lower() == "k" then
      sent = sent + 1
      local deadline = task.now() + 5000
      while client.count(client.SENT) < sent do
        test.ok(task.now() < deadline, label .. ": s_client sent KeyUpdate " .. sent)
        task.sleep(10)
      end
    end
    if wait then helpers.wait_output(peer, wait) end
  end
  function client.close() input:close() end
  client.SENT = ">>> TLS 1.3, Handshake %[length 0005%], KeyUpdate"
  client.RECEIVED = "<<< TLS 1.3, Handshake %[length 0005%], KeyUpdate"
  return client
end

-- The answer to a K goes at once from luaio's layer, with the next data from OpenSSL's.
test.case("KeyUpdate with openssl s_client: asked for, it is answered once; not asked, not; data flows after each", function()
  for layer in pairs(LAYERS) do
    local seen = {}
    local port = serve(line_server_loop(seen), layer_pair(layer))
    local client = s_client(port, layer)
    client.say("hello", "echo hello")
    client.say("K")
    client.say("after-K", "echo after%-K")
    test.ok(client.count(client.RECEIVED) >= 1, layer .. ": answered")
    client.say("k")
    client.say("after-k", "echo after%-k")
    client.say("K")
    client.say("K")
    client.say("last", "echo last")
    client.close()
    helpers.wait_output(client.peer, "close_notify")
    local ours = client.count(client.RECEIVED)
    test.eq(client.count(client.SENT), 4, layer .. ": the client's")
    test.ok(ours == 2 or ours == 3, layer .. ": one answer for the first K, one or two for the two K in a row: " .. ours)
    test.eq(seen.err, nil, layer .. ": no failure on the server")
  end
end)

test.case("KeyUpdates in a row without data: the 33rd ends the connection (luaio's layer); data resets the count", function()
  local seen = {}
  local port = serve(line_server_loop(seen))
  local client = s_client(port, "luaio")
  for _ = 1, 32 do client.say("k") end
  client.say("still", "echo still") -- 32 are fine, and data starts the count again
  for _ = 1, 32 do client.say("k") end
  client.say("again", "echo again")
  for _ = 1, 33 do client.say("k") end
  helpers.wait_output(client.peer, "unexpected_message")
  client.close()
  local deadline = task.now() + 5000
  while not seen.err and task.now() < deadline do task.sleep(10) end
  test.eq(seen.err and seen.err.name, "ETLS")
  test.eq(seen.err and seen.err.message, "too many key updates")
end)

-- A client that seals its own records after the handshake (AES-128-GCM, secrets from the
-- key log), so it can send what no TLS library sends: a KeyUpdate cut across two records
-- (RFC 8446 5.1 lets a handshake message span records), then a line under the new key; or
-- the first part of a KeyUpdate, then data (interleaving, which must fail). It prints the
-- lines it reads back, or the alert.
local PY_OWN_RECORDS = PY_CONNECT .. [[
import hashlib, hmac, os, struct, tempfile
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

def expand(secret, label, n):
    full = b"tls13 " + label
    info = struct.pack(">H", n) + bytes([len(full)]) + full + b"\x00"
    return hmac.new(secret, info + b"\x01", hashlib.sha256).digest()[:n]

class Keys:
    def __init__(self, secret):
        self.secret, self.seq = secret, 0
        self.aead, self.iv = AESGCM(expand(secret, b"key", 16)), expand(secret, b"iv", 12)
    def nonce(self):
        self.seq += 1
        return bytes(a ^ b for a, b in zip(self.iv, (self.seq - 1).to_bytes(12, "big")))
    def next(self):
        return Keys(expand(self.secret, b"traffic upd", 32))

port, mode, cafile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
log = tempfile.mktemp()
ctx = ssl.create_default_context(cafile=cafile)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3  # the server allows AES-128-GCM alone
ctx.keylog_filename = log
sock, obj, inc, out = handshaken(ctx, port)
secrets = dict(l.split()[0::2] for l in open(log) if l.count(" ") == 2)
os.unlink(log)
wr = Keys(bytes.fromhex(secrets["CLIENT_TRAFFIC_SECRET_0"]))
rd = Keys(bytes.fromhex(secrets["SERVER_TRAFFIC_SECRET_0"]))

def seal(ctype, content):
    hdr = b"\x17\x03\x03" + struct.pack(">H", len(content) + 17)
    return hdr + wr.aead.encrypt(wr.nonce(), content + bytes([ctype]), hdr)

key_update = bytes([24, 0, 0, 1, 0])
if mode == "split":
    sock.sendall(seal(22, key_update[:3]) + seal(22, key_update[3:]))
    wr = wr.next()
    sock.sendall(seal(23, b"after\n"))
else:  # interleaved: data between the parts
    sock.sendall(seal(22, key_update[:3]) + seal(23, b"between\n"))
sock.settimeout(5)
buf = inc.read() if inc.pending else b""
while True:
    while len(buf) >= 5 and len(buf) >= 5 + struct.unpack(">H", buf[3:5])[0]:
        n = 5 + struct.unpack(">H", buf[3:5])[0]
        hdr, body, buf = buf[:5], buf[5:n], buf[n:]
        inner = rd.aead.decrypt(rd.nonce(), body, hdr).rstrip(b"\x00")
        if inner[-1] == 23:
            print("client got:", inner[:-1].decode().strip(), flush=True)
        elif inner[-1] == 21:
            print("client alert:", inner[0], inner[1], flush=True)
    d = sock.recv(65536)
    if not d:
        print("client end", flush=True)
        break
    buf += d
]]

test.case("a KeyUpdate cut across two records is taken; data between its parts fails it (both layers)", function()
  for layer in pairs(LAYERS) do
    local opts = layer_pair(layer)
    opts.ciphersuites = "TLS_AES_128_GCM_SHA256"
    local seen = {}
    local port = serve(line_server_loop(seen), opts)
    local peer = python(PY_OWN_RECORDS, port, "split", ca())
    test.eq(helpers.wait_output(peer, "client got: (%S+ %S+)"), "echo after", layer)
    helpers.stop(peer)
    seen = {}
    port = serve(line_server_loop(seen), opts)
    peer = python(PY_OWN_RECORDS, port, "interleaved", ca())
    test.eq(helpers.wait_output(peer, "client alert: (%d+ %d+)"), "2 10", layer .. ": unexpected_message")
    local deadline = task.now() + 5000
    while not seen.err and task.now() < deadline do task.sleep(10) end
    test.eq(seen.err and seen.err.name, "ETLS", layer)
  end
end)

local PY_TAMPER = PY_HANDSHAKE .. [[
obj.write(b"first\n")
good = out.read()
obj.write(b"x" * 100)
rec = bytearray(out.read())
if mode == "flipped":     # one bit of the sealed content
    rec[10] ^= 1
elif mode == "overflow":  # a header announcing more than a record may hold
    rec = bytearray(b"\x17\x03\x03\x41\x01") + bytes(16641)
elif mode == "plain":     # a handshake record in the clear after the handshake
    rec = bytearray(b"\x16\x03\x03\x00\x04\x18\x00\x00\x00")
sock.sendall(good + bytes(rec))
data = b""
sock.settimeout(5)
while True:
    d = sock.recv(65536)
    if not d:
        break
    data += d
inc.write(data)
try:
    while True:
        obj.read(65536)
except ssl.SSLError as e:
    print("client:", e.reason, flush=True)
]]

test.case("a flipped bit, an oversized or a clear record after the handshake: ETLS, an alert to the peer, the connection closed", function()
  local expect = { -- luaio's message (OpenSSL's says "record layer failure" for some), the alert
    flipped = { "bad record mac", "BAD_RECORD_MAC" },
    overflow = { "record overflow", "RECORD_OVERFLOW" },
    plain = { "unexpected message", "UNEXPECTED_MESSAGE" },
  }
  for layer in pairs(LAYERS) do
    for how, want in pairs(expect) do
      local result
      local port = serve(function(s)
        local line = s:readline()
        local d, err = s:read()
        result = { line = line, data = d, err = err }
      end, layer_pair(layer))
      local peer = python(PY_TAMPER, port, how, ca())
      local said = helpers.wait_output(peer, "client: (%S+)")
      local deadline = task.now() + 5000
      while not result and task.now() < deadline do task.sleep(10) end
      test.ok(result, layer .. " " .. how .. ": the server's read ended")
      test.eq(result.line, "first", layer .. " " .. how .. ": the record before")
      test.eq(result.data, nil)
      test.eq(result.err.name, "ETLS", layer .. " " .. how)
      if layer == "luaio" then test.match(result.err.message, want[1], how) end
      test.match(said, want[2], layer .. " " .. how .. ": the alert the client got")
    end
  end
end)

test.case("records larger than the room a reader leaves: what does not fit waits, nothing lost or reordered", function()
  for layer in pairs(LAYERS) do
    local lines, bytes, sum = 0, 0, 0
    local done = false
    local port = serve(function(s)
      while true do
        local line = s:readline()
        if not line then break end
        lines, bytes = lines + 1, bytes + #line + 1
        sum = (sum + tonumber(line:match("^(%d+)"))) % 1000000007
      end
      done = true
    end, layer_pair(layer))
    -- lines of 1 to 3,000 bytes written 64 KiB at a time: 16 KiB records cut lines anywhere
    local s = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = ca() } }))
    local want_sum, want_bytes, buf, n = 0, 0, {}, 0
    for i = 1, 3000 do
      local line = i .. " " .. ("y"):rep((i * 7919) % 3000) .. "\n"
      want_sum = (want_sum + i) % 1000000007
      want_bytes = want_bytes + #line
      buf[#buf + 1] = line
      n = n + #line
      if n > 65536 or i == 3000 then
        assert(s:write(table.concat(buf)))
        buf, n = {}, 0
      end
    end
    s:close()
    local deadline = task.now() + 10000
    while not done and task.now() < deadline do task.sleep(10) end
    test.ok(done, layer .. ": the reader saw the end")
    test.eq(lines, 3000, layer)
    test.eq(bytes, want_bytes, layer)
    test.eq(sum, want_sum, layer)
  end
end)

-- python: N connections, each handshaken, then one 16 KB record sent in two halves 300 ms
-- apart (the server reads the first half alone), then silence.
local PY_HALVES = PY_CONNECT .. [[
port, n, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
conns = []
for i in range(n):
    sock, obj, _, out = handshaken(ctx, port)
    obj.write(b"u" * 16000)
    conns.append((sock, out.read()))
print("handshaken", flush=True)
time.sleep(0.3)
for sock, rec in conns:
    sock.sendall(rec[: len(rec) // 2])
time.sleep(0.3)
for sock, rec in conns:
    sock.sendall(rec[len(rec) // 2 :])
time.sleep(0.3)
print("idle", flush=True)
time.sleep(30)
]]

test.case("memory: a connection that got a record in pieces holds no buffer once idle (300 connections)", function()
  test.static() -- RSS says nothing under the sanitizers (their allocator keeps what is freed)
  local c = certs.make()
  local port, peer = helpers.serve(([[
local tcp = require "tcp"
local server = assert(tcp.createServer(0, function(s) while s:read() do end end,
  { host = "127.0.0.1", tls = { cert = %q, key = %q } }))
print("listening " .. server:address().port .. " pid " .. require("process").pid)
io.stdout:flush() -- the log is a file
]]):format(c.server, c.server_key))
  local pid = tonumber(helpers.wait_output(peer, "pid (%d+)"))
  local client = python(PY_HALVES, port, 300, c.ca)
  helpers.wait_output(client, "handshaken", 30000)
  task.sleep(100)
  local before = helpers.rss_kb(pid)
  helpers.wait_output(client, "idle", 30000)
  task.sleep(100)
  local after = helpers.rss_kb(pid)
  -- each half record waits in a buffer of its own, 16 KiB; kept, that is 8 KiB or more a
  -- connection of RSS (what was written of it)
  test.ok((after - before) / 300 < 3, ("%.1f KiB a connection more once idle (%d -> %d KiB)")
    :format((after - before) / 300, before, after))
end)

-- --- STARTTLS ------------------------------------------------------------------------------------------

test.case("starttls: plain text, then TLS both ways; bytes sent before the server's starttls", function()
  local c = certs.make()
  local seen = {}
  local port = serve(function(s)
    local line = s:readline()
    if line == "STARTTLS" then
      s:write("GO\n")
    elseif line ~= "STARTTLS-NOW" then -- the client goes on without waiting for an answer
      return
    end
    local ok, err = s:starttls({ server = true, cert = c.server, key = c.server_key })
    seen[#seen + 1] = { ok = ok, err = err, info = s:tlsinfo() }
    if not ok then return end
    local l2 = s:readline()
    s:write("secret " .. tostring(l2) .. "\n")
  end, false)
  -- luaio on both sides
  local s = assert(tcp.connect(port, "127.0.0.1"))
  s:write("STARTTLS\n")
  test.eq(s:readline(), "GO")
  test.eq(s:tlsinfo(), nil)
  assert(s:starttls({ ca = c.ca, servername = "localhost" }))
  test.eq(s:tlsinfo().peer.subject, "CN=localhost")
  s:write("one\n")
  test.eq(s:readline(), "secret one")
  local again, err = s:starttls({ ca = c.ca })
  test.eq(again, nil)
  test.eq(err.name, "EALREADY")
  s:close()
  -- python sends its ClientHello right behind the line: it waits in the input buffer
  local peer = python([[
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
raw.sendall(b"STARTTLS-NOW\n")
s = ctx.wrap_socket(raw, server_hostname="localhost")
s.sendall(b"two\n")
print("got", s.recv(100).decode().strip(), flush=True)
]], port, c.ca)
  test.eq(helpers.wait_output(peer, "got ([^\n]+)"), "secret two")
  test.eq(seen[1].info.version, "TLSv1.3")
  -- a failed handshake in starttls: the client does not trust the server
  s = assert(tcp.connect(port, "127.0.0.1"))
  s:write("STARTTLS\n")
  s:readline()
  local ok
  ok, err = s:starttls({ ca = c.unknown_ca, servername = "localhost" })
  test.eq(ok, nil)
  test.eq(err.name, "ECERT")
  s:close()
end)

test.case("starttls with openssl s_client -starttls smtp", function()
  local c = certs.make()
  local port = serve(function(s)
    s:write("220 luaio ESMTP\r\n")
    while true do
      local line = s:readline()
      if not line then return end
      if line:match("^EHLO") then
        s:write("250-luaio\r\n250 STARTTLS\r\n")
      elseif line == "STARTTLS" then
        s:write("220 go ahead\r\n")
        assert(s:starttls({ server = true, cert = c.server, key = c.server_key }))
        s:write("250 secured " .. s:tlsinfo().version .. "\r\n")
        return s:readline()
      end
    end
  end, false)
  local peer = helpers.start("sleep 1 | openssl s_client -starttls smtp -connect 127.0.0.1:" .. port ..
    " -CAfile " .. q(c.ca) .. " -verify_return_error -servername localhost -ign_eof")
  helpers.wait_output(peer, "250 secured TLSv1.3")
  test.match(helpers.output(peer), "Verify return code: 0 %(ok%)")
end)

-- --- volume ----------------------------------------------------------------------------------------------

local ECHO = function(s)
  while true do
    local d = s:read()
    if not d then return end
    if not s:write(d) then return end
  end
end

test.case("64 MiB each way through a TLS echo: our client, then node's, sha256 checked", function()
  local c = certs.make()
  local port = serve(ECHO)
  local chunk = {}
  for i = 1, 4096 do chunk[i] = string.char(i % 251) .. string.char((i * 7) % 256) end
  chunk = table.concat(chunk):rep(8) -- 64 KiB of a pattern
  local total = 64 * 1048576
  local s = assert(tcp.connect(port, "127.0.0.1", { tls = { ca = c.ca } }))
  local writer = task.spawn(function()
    for _ = 1, total / #chunk do assert(s:write(chunk)) end
  end)
  local got, n, bad = 0, 0, nil
  local pending = ""
  while got < total do
    local d = assert(s:read())
    got = got + #d
    pending = pending .. d
    while #pending >= #chunk do
      if not bad and pending:sub(1, #chunk) ~= chunk then bad = n end
      pending = pending:sub(#chunk + 1)
      n = n + 1
    end
  end
  test.ok(writer:join(10000), "the writer finished")
  test.eq(got, total)
  test.eq(bad, nil, "every 64 KiB came back intact")
  s:close()
  -- node: sends 64 MiB of random bytes, hashes what it sent and what came back
  local script = helpers.node_script([[
const tls = require("tls"), crypto = require("crypto"), fs = require("fs");
const sent = crypto.createHash("sha256"), back = crypto.createHash("sha256");
const total = 64 * 1048576;
let got = 0;
const s = tls.connect({ port: +process.argv[2], host: "127.0.0.1", servername: "localhost",
  ca: fs.readFileSync(process.argv[3]) }, () => {
  let left = total;
  const pump = () => {
    while (left > 0) {
      const b = crypto.randomBytes(65536);
      sent.update(b);
      left -= b.length;
      if (!s.write(b)) return s.once("drain", pump);
    }
  };
  pump();
});
s.on("data", (d) => {
  back.update(d);
  got += d.length;
  if (got >= total) {
    console.log(`done ${got} ${sent.digest("hex") === back.digest("hex") ? "same" : "DIFFERENT"}`);
    s.end();
  }
});
s.on("error", (e) => console.log("error " + e.message));
]])
  local peer = helpers.start("node " .. q(script) .. " " .. port .. " " .. q(c.ca))
  test.eq(helpers.wait_output(peer, "(done %d+ %a+)", 60000), "done " .. total .. " same")
end)

test.case("1,000 concurrent TLS connections from node, each answered", function()
  local c = certs.make()
  local port, server = serve(function(s)
    local line = s:readline()
    if line then s:write("pong " .. line .. "\n") end
    s:readline()
  end, nil, { maxconnections = 2000 })
  local script = helpers.node_script([[
const tls = require("tls"), fs = require("fs");
const ca = fs.readFileSync(process.argv[3]);
const n = 1000;
let open = 0, ok = 0, failed = 0;
const socks = [];
for (let i = 0; i < n; i++) {
  const s = tls.connect({ port: +process.argv[2], host: "127.0.0.1", servername: "localhost", ca });
  socks.push(s);
  let buf = "";
  s.on("secureConnect", () => { open++; if (open === n) console.log("all open"); s.write(`p${i}\n`); });
  s.on("data", (d) => {
    buf += d;
    if (buf === `pong p${i}\n`) { ok++; if (ok + failed === n) finish(); }
  });
  s.on("error", (e) => { failed++; console.log("error " + e.message); if (ok + failed === n) finish(); });
}
function finish() { console.log(`result ${ok} ${failed}`); socks.forEach((s) => s.end()); }
]])
  local peer = helpers.start("node " .. q(script) .. " " .. port .. " " .. q(c.ca))
  test.eq(helpers.wait_output(peer, "result (%d+ %d+)", 40000), "1000 0")
  test.match(helpers.output(peer), "all open")
  local deadline = task.now() + 10000
  while server:connections() > 0 and task.now() < deadline do task.sleep(20) end
  test.eq(server:connections(), 0, "all closed")
end)
