-- The C unit tests of runtime/core/mem.c (tests/c/mem_test.c: memcmp, memcpy, memmove against
-- byte loops), built next to the runtime under test by `./build.sh test` (out/tests/) and
-- `./build.sh asan` (out/asan/tests/, with the sanitizers).
local test = require "test"

local bin = test.luaio:match("^(.*)/[^/]*$") .. "/tests/mem_test"

test.case("mem C unit tests pass", function()
  local f = io.open(bin, "rb")
  if not f then error(bin .. " is missing: build it with ./build.sh test (make -C runtime tests)") end
  f:close()
  local out, status = test.sh(test.quote(bin))
  local passed, failed = out:match("mem_test: (%d+) passed, (%d+) failed\n$")
  test.ok(passed, "a summary line, got: " .. out:sub(-2000))
  test.eq(tonumber(failed), 0, "failed C checks:\n" .. out:sub(1, 4000))
  test.ok(tonumber(passed) > 100000, "the C tests ran")
  test.eq(status, 0, "exit status")
end)
