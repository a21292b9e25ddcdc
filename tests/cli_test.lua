-- The command line: run, version, help and their errors.
local test = require "test"

local luaio = test.quote(test.luaio)
local q = test.quote

-- deps/deps.lock, next to this file's folder: package -> pinned Debian version.
local function pins()
  local lock = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") .. "/../deps/deps.lock"
  local found = {}
  for line in io.lines(lock) do
    local pkg, ver = line:match("^([%w%.%+%-]+)%s+(%S+)")
    if pkg then found[pkg] = ver end
  end
  return found
end

test.case("version names luaio, the build id, every library and its Debian version", function()
  local out, status = test.sh(luaio .. " version")
  test.eq(status, 0)
  test.match(out, "^luaio %d+%.%d+%.%d+ %(build %x+%)\n")
  for _, name in ipairs({ "LuaJIT 2%.1%.", "libuv 1%.", "zstd 1%.", "OpenSSL 3%.", "zlib 1%.", "yyjson %d",
    "Mozilla roots: %d+ certificates" }) do
    test.match(out, "\n" .. name .. "[%d%.]* %(debian ")
  end
  local n = 0
  for pkg, ver in pairs(pins()) do
    n = n + 1
    test.ok(out:find("(debian " .. pkg .. " " .. ver .. ")\n", 1, true), pkg .. " " .. ver .. " in:\n" .. out)
  end
  test.eq(n, 7, "packages in deps.lock")
end)

test.case("help lists the commands; no arguments prints help", function()
  local out, status = test.sh(luaio .. " help")
  test.eq(status, 0)
  for _, cmd in ipairs({ "run", "build", "test", "version" }) do test.match(out, "luaio " .. cmd) end
  test.match(out, "luaio test %[%-%-filter TEXT%] %[PATH%.%.%.%]")
  test.eq(test.sh(luaio), out)
end)

test.case("luaio test: a file that fails to load is reported with its real error", function()
  local dir = test.tmpdir()
  test.write(dir .. "/syntax_test.lua", "local test = require 'test'\nlocal x = = 1\n")
  test.write(dir .. "/raises_test.lua", "local test = require 'test'\n\nerror('boom at load')\n")
  test.write(dir .. "/good_test.lua", "local test = require 'test'\ntest.case('fine', function() end)\n")
  local out, status = test.sh(luaio .. " test " .. q(dir))
  test.eq(status, 1, out)
  test.match(out, "FAIL [^\n]*syntax_test%.lua: cannot load: [^\n]*syntax_test%.lua:2: unexpected symbol near '='\n")
  test.match(out, "FAIL [^\n]*raises_test%.lua: cannot load: [^\n]*raises_test%.lua:3: boom at load\n")
  test.match(out, "ok   [^\n]*good_test%.lua: fine")
  test.match(out, "\n1 passed, 2 failed\n$")
end)

test.case("luaio test --filter: a filter that matches nothing says so and fails", function()
  local dir = test.tmpdir()
  test.write(dir .. "/a_test.lua", "local test = require 'test'\ntest.case('alpha', function() end)\n")
  local out, status = test.sh(luaio .. " test --filter alpha " .. q(dir))
  test.eq({ status, out:match("\n(%d+ passed, %d+ failed)\n$") }, { 0, "1 passed, 0 failed" }, out)
  out, status = test.sh(luaio .. " test --filter nothing-like-it " .. q(dir))
  test.eq(status, 1, out)
  test.match(out, "no test case matches %-%-filter \"nothing%-like%-it\"")
  out, status = test.sh(luaio .. " test " .. q(dir) .. " --filter")
  test.eq(status, 2, out)
  test.match(out, "%-%-filter needs a TEXT")
end)

test.case("an unknown command exits 2 with a message", function()
  local out, status = test.sh(luaio .. " frobnicate")
  test.eq(status, 2)
  test.match(out, "unknown command 'frobnicate'")
end)

test.case("run takes a folder or a .lua file; `luaio x.lua` is the same as run", function()
  local dir = test.tmpdir()
  test.write(dir .. "/app/main.lua", "print('folder', ...)\n")
  test.write(dir .. "/one.lua", "print('file', ..., arg[0])\n")
  test.eq((test.sh(luaio .. " run " .. q(dir .. "/app") .. " x")), "folder\tx\n")
  test.eq((test.sh(luaio .. " run " .. q(dir .. "/one.lua") .. " y")), "file\ty\t" .. dir .. "/one.lua\n")
  test.eq((test.sh(luaio .. " " .. q(dir .. "/one.lua") .. " y")), "file\ty\t" .. dir .. "/one.lua\n")
end)

test.case("a .lua file requires modules beside it", function()
  local dir = test.tmpdir()
  test.write(dir .. "/tool.lua", "print(require('helper'))\n")
  test.write(dir .. "/helper.lua", "return 'helper loaded'\n")
  test.eq((test.sh("cd / && " .. luaio .. " " .. q(dir .. "/tool.lua"))), "helper loaded\n")
end)

test.case("run errors: missing path, folder without main.lua, syntax error", function()
  local dir = test.tmpdir()
  local out, status = test.sh(luaio .. " run " .. q(dir .. "/nothing"))
  test.eq(status, 1)
  test.match(out, "cannot run .*nothing.*no such file")
  out, status = test.sh(luaio .. " run " .. q(dir))
  test.eq(status, 1)
  test.match(out, "no main.lua in")
  test.write(dir .. "/bad.lua", "x = = 1\n")
  out, status = test.sh(luaio .. " run " .. q(dir .. "/bad.lua"))
  test.eq(status, 1)
  test.match(out, "bad.lua:1: unexpected symbol")
  out, status = test.sh(luaio .. " run")
  test.eq(status, 2)
  test.match(out, "missing PATH")
end)

test.case("the runtime is a static, stripped executable of at most 5.5 MB (with TLS, the root store, WebSocket, JSON, MySQL, Redis, crypto and the web modules)", function()
  test.static()
  test.match(test.sh("file -L " .. luaio), "statically linked, stripped")
  local size = tonumber((test.sh("stat -L -c %s " .. luaio)))
  test.ok(size <= 5.5e6, "size " .. size .. " <= 5.5 MB")
end)

test.case("README's first command builds into a git-ignored place and runs", function()
  local readme = assert(io.open("README.md")):read("*a")
  local app, exe = readme:match("\n    %./build%.sh && out/luaio build (%S+) %-o (%S+) && (%S+)\n")
  test.ok(app, "README's first command is ./build.sh && out/luaio build APP -o OUT && OUT")
  local ran = readme:match("\n    %./build%.sh && out/luaio build %S+ %-o %S+ && (%S+)\n")
  test.eq(ran == exe or ran == "./" .. exe, true, "it runs what it built: " .. ran)
  if select(2, test.sh("git rev-parse --is-inside-work-tree")) ~= 0 then test.skip("not a git checkout") end
  local existed = select(2, test.sh("test -e " .. q(exe))) == 0
  test.cleanup(function() if not existed then os.remove(exe) end end)
  local out, status = test.sh(luaio .. " build " .. q(app) .. " -o " .. q(exe))
  test.eq(status, 0, out)
  test.match((test.sh(q(exe:find("/") and exe or "./" .. exe))), "^hello")
  test.eq((test.sh("git status --porcelain --untracked-files=all -- " .. q(exe))), "", "nothing untracked")
end)
