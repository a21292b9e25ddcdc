-- luaio build and the app store: the bundle behaves exactly like the app folder on disk.
local test = require "test"

local luaio = test.quote(test.luaio)
local q = test.quote

-- A small app with nested modules, an init.lua package, assets and a hidden file.
local function make_app()
  local dir = test.tmpdir() .. "/app"
  test.write(dir .. "/main.lua", [[
local bundle = require "bundle"
local greet = require "lib.greet"
local pkg = require "pkg"
print(greet.hello("bundle"), pkg.name, pkg.helper())
print("args", select("#", ...), ...)
print("bundled", bundle.bundled)
print("asset", bundle.read("static/index.html"))
print("list", table.concat(bundle.list(), ","))
print("list static", table.concat(bundle.list("static"), ","))
print("missing", bundle.read("nope.txt"))
local ok, err = pcall(require, "no.such.module")
print("require missing", ok, (err:gsub("\n.*", "")))
]])
  test.write(dir .. "/lib/greet.lua", [[
local M = {}
function M.hello(who) return "hello " .. who end
function M.fail() error("failing on purpose") end
return M
]])
  test.write(dir .. "/pkg/init.lua", [[return { name = "pkg", helper = require("pkg.helper") }]])
  test.write(dir .. "/pkg/helper.lua", [[return function() return "helped" end]])
  test.write(dir .. "/static/index.html", "<h1>hi</h1>")
  test.write(dir .. "/.env", "SECRET=1")
  return dir
end

local function build(app, out, extra)
  return test.sh(luaio .. " build " .. q(app) .. " -o " .. q(out) .. " " .. (extra or ""))
end

test.case("a built app prints what the same app prints under luaio run", function()
  local app = make_app()
  local exe = app .. "/../hello"
  local out, status = build(app, exe)
  test.eq(status, 0, out)
  test.match(out, "^built .*hello: 5 files %(4 modules, 1 assets%), %d+ source bytes, %d+ archive bytes, %d+ compressed, executable %d+ bytes\n$")
  local from_disk, s1 = test.sh(luaio .. " run " .. q(app) .. " a b")
  local from_bundle, s2 = test.sh("cd / && " .. q(exe) .. " a b")
  test.eq(s1, 0, from_disk)
  test.eq(s2, 0, from_bundle)
  test.eq(from_bundle:gsub("bundled%s+true", "bundled\tfalse"), from_disk)
  test.match(from_bundle, "hello bundle\tpkg\thelped")
  test.match(from_bundle, "args\t2\ta\tb")
  test.match(from_bundle, "asset\t<h1>hi</h1>")
  test.match(from_bundle, "list\tlib/greet.lua,main.lua,pkg/helper.lua,pkg/init.lua,static/index.html\n")
  test.match(from_bundle, "list static\tstatic/index.html\n")
  test.match(from_bundle, "missing\tnil\tENOENT: no such file or directory")
  test.match(from_bundle, "require missing\tfalse\tmodule 'no.such.module' not found:")
end)

test.case("a bundled app gets every argument, even ones the CLI would take", function()
  local app = make_app()
  local exe = app .. "/../argsapp"
  build(app, exe)
  local out = test.sh(q(exe) .. " version --help build")
  test.match(out, "args\t3\tversion\t%-%-help\tbuild")
end)

test.case("tracebacks from a bundle name file.lua:line; --strip drops line info", function()
  local app = test.tmpdir() .. "/app"
  test.write(app .. "/main.lua", "local m = require 'mod'\nm.fail()\n")
  test.write(app .. "/mod.lua", "local M = {}\nfunction M.fail()\n  error('deep failure')\nend\nreturn M\n")
  local exe = app .. "/../tb"
  build(app, exe)
  local out, status = test.sh(q(exe))
  test.eq(status, 1)
  test.match(out, "mod.lua:3: deep failure")
  test.match(out, "main.lua:2:")
  build(app, exe, "--strip")
  out, status = test.sh(q(exe))
  test.eq(status, 1)
  test.ok(not out:find("mod.lua:3"), "no line info after --strip: " .. out)
end)

test.case("the built executable runs alone in an empty root (what FROM scratch gives)", function()
  test.static()
  local app = make_app()
  local root = test.tmpdir()
  local out, status = build(app, root .. "/app")
  test.eq(status, 0, out)
  test.eq(test.sh("ls -A " .. q(root)), "app\n", "nothing beside the executable")
  out, status = test.sh("chroot " .. q(root) .. " /app one")
  test.eq(status, 0, out)
  test.match(out, "hello bundle\tpkg\thelped")
  test.match(out, "args\t1\tone")
  test.match(out, "asset\t<h1>hi</h1>")
end)

test.case("a syntax error fails the build, names file:line and leaves no output", function()
  local app = test.tmpdir() .. "/app"
  test.write(app .. "/main.lua", "print('ok')\n")
  test.write(app .. "/broken.lua", "local x = 1\nlocal y = = 2\n")
  local exe = app .. "/../out"
  local out, status = build(app, exe)
  test.eq(status, 1)
  test.match(out, "broken.lua:2: unexpected symbol near '='")
  test.eq(select(2, test.sh("test -e " .. q(exe))), 1, "no output file")
  test.eq(test.sh("ls -A " .. q(app .. "/..")), "app\n", "no temporary file left behind")
end)

test.case("clear errors for a missing entry, a missing folder and an output that is a folder", function()
  local app = test.tmpdir() .. "/app"
  test.write(app .. "/lib.lua", "return 1\n")
  local out, status = build(app, app .. "/../x")
  test.eq(status, 1)
  test.match(out, "no main.lua in")
  out, status = build(app .. "/../does-not-exist", app .. "/../x")
  test.eq(status, 1)
  test.match(out, "cannot read app folder .*does%-not%-exist.*ENOENT")
  test.write(app .. "/main.lua", "print(1)\n")
  out, status = build(app, app)
  test.eq(status, 1)
  test.match(out, "is a folder")
  out, status = test.sh(luaio .. " build")
  test.eq(status, 2)
  test.match(out, "missing APPDIR")
  out, status = test.sh(luaio .. " build " .. q(app) .. " --bogus")
  test.eq(status, 2)
  test.match(out, "unknown option '%-%-bogus'")
end)

test.case("build options are checked: one clear line and status 2, never a traceback", function()
  local app = test.tmpdir() .. "/app"
  test.write(app .. "/main.lua", "print('built at level', ...)\n")
  local exe = app .. "/../exe"
  local misuses = {
    { "--level 99", "%-%-level must be a whole number from 1 to 22, got '99'" },
    { "--level 0", "got '0'" }, { "--level 1.5", "got '1.5'" }, { "--level fast", "got 'fast'" },
    { "--level", "%-%-level needs a level from 1 to 22" },
    { "--level 3 --level 4", "%-%-level given twice" },
    { "-o " .. q(exe) .. " -o " .. q(exe .. "2"), "%-o given twice" },
    { "-o", "%-o needs a path" }, { "-o --strip", "%-o needs a path" },
  }
  for _, m in ipairs(misuses) do
    local out, status = test.sh(luaio .. " build " .. q(app) .. " " .. m[1])
    test.eq(status, 2, m[1] .. ": " .. out)
    test.match(out, "^luaio build: [^\n]*" .. m[2] .. "\nusage: luaio build APPDIR", m[1])
    test.ok(not out:find("traceback"), m[1] .. ": no traceback")
  end
  test.eq(select(2, test.sh("test -e " .. q(exe))), 1, "nothing was built")
  -- an output that cannot be written: one line, status 1, nothing left behind
  local out, status = build(app, app .. "/../no/such/folder/exe")
  test.eq(status, 1, out)
  test.match(out, "^luaio build: cannot write '[^\n]*/no/such/folder/exe': ENOENT: [^\n]*\n$")
  -- the whole range works
  for _, level in ipairs({ "1", "22" }) do
    out, status = build(app, exe, "--level " .. level)
    test.eq(status, 0, out)
    test.eq((test.sh(q(exe) .. " " .. level)), "built at level\t" .. level .. "\n")
  end
end)

test.case("hidden files are not part of the app, on disk or in the bundle", function()
  local app = make_app()
  test.write(app .. "/main.lua", "print(require('bundle').read('.env'))\nprint(#require('bundle').list())\n")
  local exe = app .. "/../h"
  build(app, exe)
  local want = "nil\tENOENT: no such file or directory\n5\n"
  test.eq((test.sh(q(exe))), want, "bundle")
  test.eq((test.sh(luaio .. " run " .. q(app))), want, "disk")
end)

test.case("bundle.read refuses paths that leave the app", function()
  local app = test.tmpdir() .. "/app"
  test.write(app .. "/main.lua", [[
local bundle = require "bundle"
for _, p in ipairs({ "../secret", "/etc/passwd", "a/../../b" }) do
  print(p, pcall(function() local data = bundle.read(p); return data end))
end
]])
  local out, status = test.sh(luaio .. " run " .. q(app))
  test.eq(status, 0, out)
  test.match(out, "%.%./secret\tfalse\t[^\n]*bad argument #1 to 'read' %(must not contain '%.%.'%)")
  test.match(out, "/etc/passwd\tfalse\t[^\n]*must be relative to the app")
  test.match(out, "a/%.%./%.%./b\tfalse")
end)

-- App paths reach open() (luaio run) or the archive's index (a bundle) as C strings: a zero
-- byte would cut them ("data.txt\0.x" read data.txt, require "mod\0x" loaded mod.lua).
test.case("a zero byte in an app path or a module name raises, on disk and in a bundle", function()
  local app = test.tmpdir() .. "/app"
  test.write(app .. "/sub/data.txt", "DATA")
  test.write(app .. "/mod.lua", "return 'MOD'")
  test.write(app .. "/main.lua", [[
local bundle = require "bundle"
print("read", pcall(function() local d = bundle.read("sub/data.txt\0.x"); return d end))
print("list", pcall(function() local l = bundle.list("sub\0x"); return l and #l end))
print("require", pcall(function() local m = require "mod\0x"; return m end))
print("loaded", require "mod")
print("again", pcall(function() local m = require "mod\0x"; return m end))
]])
  local exe = app .. "/../zero"
  test.eq(select(2, build(app, exe)), 0)
  local zero = "string without zero bytes expected, got a string with a zero byte"
  for _, how in ipairs({ luaio .. " run " .. q(app), q(exe) }) do
    local out, status = test.sh(how)
    test.eq(status, 0, out)
    test.match(out, "read\tfalse\t[^\n]*main%.lua:2: bad argument #1 to 'read' %(" .. zero .. "%)\n")
    test.match(out, "list\tfalse\t[^\n]*main%.lua:3: bad argument #1 to 'list' %(" .. zero .. "%)\n")
    test.match(out, "require\tfalse\t[^\n]*main%.lua:4: bad argument #1 to 'require' %(" .. zero .. "%)\n")
    test.match(out, "loaded\tMOD\n")
    test.match(out, "again\tfalse\t[^\n]*main%.lua:6: bad argument #1 to 'require'")
  end
end)

test.case("a 5 MiB binary asset comes out of the bundle byte for byte", function()
  local app = test.tmpdir() .. "/app"
  test.sh("mkdir -p " .. q(app) .. " && head -c 5242880 /dev/urandom > " .. q(app .. "/blob.bin"))
  test.write(app .. "/main.lua", "io.write(require('bundle').read('blob.bin'))\n")
  local exe = app .. "/../blob"
  build(app, exe, "--level 3")
  local want = test.sh("sha256sum < " .. q(app .. "/blob.bin"))
  local got = test.sh(q(exe) .. " | sha256sum")
  test.eq(got, want)
end)

-- Corrupting a built app: each damage gets one line on stderr and exit status 1, never a crash.
local function damaged(how)
  local app = make_app()
  local exe = app .. "/../victim"
  build(app, exe)
  test.sh(how(q(exe)))
  local out, status = test.sh(q(exe))
  return out, status
end

test.case("a payload with a flipped byte is refused: checksum mismatch", function()
  -- the payload ends 64 bytes before the end of the file; flip a byte just before the trailer
  local out, status = damaged(function(exe)
    return "size=$(stat -c %s " .. exe .. "); printf '\\377' | dd of=" .. exe ..
      " bs=1 seek=$((size - 70)) conv=notrunc status=none"
  end)
  test.eq(status, 1)
  test.eq(out, "luaio: corrupt bundle: checksum mismatch\n")
end)

test.case("a truncated bundle is refused with one line", function()
  for _, cut in ipairs({ 1, 64, 300 }) do
    local out, status = damaged(function(exe)
      return "truncate -s -" .. cut .. " " .. exe
    end)
    test.eq(status, 1, "cut " .. cut)
    test.match(out, "^luaio: corrupt bundle: [^\n]+\n$")
  end
end)

test.case("a payload made by another luaio build is refused with a clear message", function()
  local out, status = damaged(function(exe)
    -- the build id sits at offset 32 of the 64-byte trailer
    return "size=$(stat -c %s " .. exe .. "); printf 'ffffffffffffffff' | dd of=" .. exe ..
      " bs=1 seek=$((size - 32)) conv=notrunc status=none"
  end)
  test.eq(status, 1)
  test.match(out, "^luaio: this bundle was made by another luaio build %(bundle ffffffffffffffff, runtime %x+%); rebuild")
end)

test.case("a damaged build id is called corruption, its bytes shown in hex, not raw", function()
  -- a build id is 16 lowercase hex digits: anything else in its place is damage, not
  -- another build; one flipped byte used to print as a raw byte in "another luaio build"
  local out, status = damaged(function(exe)
    return "size=$(stat -c %s " .. exe .. "); printf '\\377\\001zzzzzzzzzzzzzz' | dd of=" .. exe ..
      " bs=1 seek=$((size - 32)) conv=notrunc status=none"
  end)
  test.eq(status, 1)
  test.eq(out, "luaio: corrupt bundle: the build id in the trailer is not one (bytes ff017a7a7a7a7a7a7a7a7a7a7a7a7a7a)\n")
end)

test.case("luaio build of an app that is itself a built app's folder keeps the runtime small", function()
  -- building twice from the same runtime gives the same size: no payload is ever copied
  local app = make_app()
  local a, b = app .. "/../one", app .. "/../two"
  build(app, a)
  build(app, b)
  test.eq(test.sh("stat -c %s " .. q(a)), test.sh("stat -c %s " .. q(b)))
end)
