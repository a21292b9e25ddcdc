-- The C test of the libraries built but not linked into luaio yet (tests/c/deps_test.c:
-- OpenSSL TLS 1.3/1.2 handshakes over a socketpair, zlib, yyjson, the Mozilla roots), built
-- next to the runtime under test by `./build.sh test` (out/tests/) and `./build.sh asan`
-- (out/asan/tests/, with the sanitizers).
local test = require "test"

local bin = test.luaio:match("^(.*)/[^/]*$") .. "/tests/deps_test"

test.case("OpenSSL, zlib, yyjson and the roots link statically and work", function()
  local f = io.open(bin, "rb")
  if not f then error(bin .. " is missing: build it with ./build.sh test (make -C runtime tests)") end
  f:close()
  local out, status = test.sh(test.quote(bin))
  local passed, failed = out:match("deps_test: (%d+) passed, (%d+) failed\n$")
  test.ok(passed, "a summary line, got: " .. out:sub(-2000))
  test.eq(tonumber(failed), 0, "failed C checks:\n" .. out:sub(1, 4000))
  test.ok(tonumber(passed) >= 39, "the C checks ran")
  test.eq(status, 0, "exit status")
end)
