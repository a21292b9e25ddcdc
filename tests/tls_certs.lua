-- Test certificates for the TLS tests, made with the system's `openssl` command (no key is
-- committed). (Not a *_test.lua file, so the runner does not run it.)
--
--   local certs = require("tests.tls_certs").make()
--   certs.ca, certs.server, certs.server_key, ... : paths of PEM files
--   certs.pem("server") : the text of a file
--
-- Everything is made once per process, in one folder removed when the run ends:
--   ca           the test CA ("luaio test CA")
--   server       signed by it: DNS localhost, test.local, *.wild.test, IP 127.0.0.1
--   other        signed by it: DNS other.test (a second certificate for SNI)
--   expired      signed by it, valid in January 2020 only: DNS localhost, IP 127.0.0.1
--   selfsigned   its own issuer: DNS localhost, IP 127.0.0.1
--   unknown      signed by another CA ("luaio unknown CA", not trusted anywhere)
--   client       a client certificate signed by the test CA (CN luaio test client)
--   badclient    a client certificate signed by the unknown CA
--   inter        an intermediate CA signed by the test CA
--   chained      signed by inter, as server's names; chained_full is its PEM with inter's after it
-- Keys are ECDSA P-256 (fast to make), each NAME with NAME_key.
local test = require "test"

local certs = {}

local made

local CA_CNF = [[
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = DIR
database = DIR/index.txt
new_certs_dir = DIR/issued
serial = DIR/serial
default_md = sha256
policy = policy_any
copy_extensions = copy
unique_subject = no
[ policy_any ]
commonName = supplied
]]

local function run(cmd)
  local out, status = test.sh(cmd)
  if status ~= 0 then error("openssl failed: " .. cmd .. "\n" .. out, 3) end
  return out
end

local function ext_file(dir, name, text)
  local path = dir .. "/" .. name .. ".ext"
  test.write(path, "[ v3 ]\n" .. text .. "\n")
  return path
end

local LEAF = "basicConstraints = critical, CA:FALSE\n" ..
  "keyUsage = critical, digitalSignature\nsubjectKeyIdentifier = hash\n" ..
  "authorityKeyIdentifier = keyid\n"

local function key(dir, name)
  run(("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s/%s_key.pem"):format(dir, name))
end

local function ca(dir, name, cn)
  key(dir, name)
  local ext = ext_file(dir, name, "basicConstraints = critical, CA:TRUE\n" ..
    "keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n")
  run(("openssl req -new -x509 -days 3650 -key %s/%s_key.pem -subj '/CN=%s' -out %s/%s.pem " ..
    "-config %s -extensions v3"):format(dir, name, cn, dir, name, ext))
end

-- A leaf signed by the CA `by`, valid from now for 10 years.
local function leaf(dir, name, cn, by, extra)
  key(dir, name)
  run(("openssl req -new -key %s/%s_key.pem -subj '/CN=%s' -out %s/%s.csr -config /dev/null")
    :format(dir, name, cn, dir, name))
  local ext = ext_file(dir, name, LEAF .. extra)
  run(("openssl x509 -req -in %s/%s.csr -CA %s/%s.pem -CAkey %s/%s_key.pem -CAcreateserial " ..
    "-days 3650 -sha256 -extfile %s -extensions v3 -out %s/%s.pem")
    :format(dir, name, dir, by, dir, by, ext, dir, name))
end

local SERVER_SAN = "extendedKeyUsage = serverAuth\n" ..
  "subjectAltName = DNS:localhost, DNS:test.local, DNS:*.wild.test, IP:127.0.0.1\n"

function certs.make()
  if made then return made end
  local dir = test.tmpdir()
  local ext
  ca(dir, "ca", "luaio test CA")
  ca(dir, "unknown_ca", "luaio unknown CA")
  leaf(dir, "server", "localhost", "ca", SERVER_SAN)
  leaf(dir, "other", "other.test", "ca", "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:other.test\n")
  leaf(dir, "unknown", "localhost", "unknown_ca",
    "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1\n")
  leaf(dir, "client", "luaio test client", "ca", "extendedKeyUsage = clientAuth\n")
  leaf(dir, "badclient", "luaio bad client", "unknown_ca", "extendedKeyUsage = clientAuth\n")
  -- an intermediate CA and a leaf under it (clients trusting only the test CA need the chain)
  key(dir, "inter")
  run(("openssl req -new -key %s/inter_key.pem -subj '/CN=luaio intermediate CA' -out %s/inter.csr -config /dev/null")
    :format(dir, dir))
  ext = ext_file(dir, "inter", "basicConstraints = critical, CA:TRUE, pathlen:0\n" ..
    "keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n")
  run(("openssl x509 -req -in %s/inter.csr -CA %s/ca.pem -CAkey %s/ca_key.pem -CAcreateserial " ..
    "-days 3650 -sha256 -extfile %s -extensions v3 -out %s/inter.pem"):format(dir, dir, dir, ext, dir))
  leaf(dir, "chained", "chained.test", "inter", SERVER_SAN)
  run(("cat %s/chained.pem %s/inter.pem > %s/chained_full.pem && cp %s/chained_key.pem %s/chained_full_key.pem")
    :format(dir, dir, dir, dir, dir))
  -- self-signed: its own CA, a leaf's extensions
  key(dir, "selfsigned")
  ext = ext_file(dir, "selfsigned", "basicConstraints = critical, CA:FALSE\n" ..
    "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1\n")
  run(("openssl req -new -x509 -days 3650 -key %s/selfsigned_key.pem -subj '/CN=localhost' " ..
    "-out %s/selfsigned.pem -config %s -extensions v3"):format(dir, dir, ext))
  -- expired: `openssl ca` takes explicit dates (x509 -req cannot backdate in OpenSSL 3.0)
  key(dir, "expired")
  run(("openssl req -new -key %s/expired_key.pem -subj '/CN=localhost' -out %s/expired.csr -config /dev/null")
    :format(dir, dir))
  test.sh(("mkdir -p %s/issued && : > %s/index.txt && echo 1000 > %s/serial"):format(dir, dir, dir))
  test.write(dir .. "/ca.cnf", (CA_CNF:gsub("DIR", dir)))
  ext = ext_file(dir, "expired", LEAF .. SERVER_SAN)
  run(("openssl ca -batch -notext -config %s/ca.cnf -cert %s/ca.pem -keyfile %s/ca_key.pem " ..
    "-startdate 20200101000000Z -enddate 20200201000000Z -extfile %s -extensions v3 " ..
    "-in %s/expired.csr -out %s/expired.pem"):format(dir, dir, dir, ext, dir, dir))
  made = { dir = dir }
  for _, name in ipairs({ "ca", "unknown_ca", "server", "other", "unknown", "client", "badclient",
    "selfsigned", "expired", "inter", "chained", "chained_full" }) do
    made[name] = dir .. "/" .. name .. ".pem"
    made[name .. "_key"] = dir .. "/" .. name .. "_key.pem"
  end
  function made.pem(name)
    local f = assert(io.open(made[name], "rb"))
    local text = f:read("*a")
    f:close()
    return text
  end
  return made
end

-- A python TLS client for "does the peer end with close_notify": connects to 127.0.0.1:argv[1]
-- trusting argv[2], sends argv[3] (when not empty), reads to the end with ragged EOFs
-- reported, and prints "clean end BYTES RESPONSES" or "ragged end BYTES RESPONSES ..."
-- (RESPONSES: how many "HTTP/1.1 200" came).
certs.PY_END_READER = [[
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))),
                    server_hostname="localhost", suppress_ragged_eofs=False)
if sys.argv[3]:
    s.sendall(sys.argv[3].encode())
data, how = b"", "clean end"
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
except ssl.SSLEOFError as e:
    how = "ragged end"
print(how, len(data), data.count(b"HTTP/1.1 200"), flush=True)
]]

-- certs.pair([name]) -> {cert, key} for tls options (paths).
function certs.pair(name)
  local c = certs.make()
  return { cert = c[name or "server"], key = c[(name or "server") .. "_key"] }
end

return certs
