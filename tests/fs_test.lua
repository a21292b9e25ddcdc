-- fs: round trips, big files checked with sha256sum, errors, concurrency with the loop
-- kept free, and argument checks.
local test = require "test"
local task = require "task"
local fs = require "fs"
local helpers = require "tests.helpers"

local q = test.quote

local function sha256(path)
  return (test.sh("sha256sum " .. q(path)):match("^(%x+)"))
end

local ticker = helpers.ticker

test.case("open, write, read back, stat, close", function()
  local path = test.tmpdir() .. "/a.txt"
  local f = assert(fs.open(path, "w"))
  test.match(tostring(f), "^file %(fd %d+%)$")
  test.eq(f:write("hello "), true)
  test.eq(f:write("world\n"), true)
  test.eq(f:write(""), true)
  test.eq(f:close(), true)
  test.eq(tostring(f), "file (closed)")
  test.eq(f:close(), true, "closing twice is harmless")

  f = assert(fs.open(path))
  test.eq(f:read(5), "hello")
  test.eq(f:read(), " world\n")
  local data, err = f:read()
  test.eq(data, nil)
  test.eq(err.name, "EOF")
  test.eq(f:read(5, 6), "world", "positional read")
  test.eq(f:read(0), "")
  local st = assert(f:stat())
  test.eq(st.size, 12)
  test.eq(st.type, "file")
  assert(f:close())

  st = assert(fs.stat(path))
  test.eq(st.size, 12)
  test.eq(st.type, "file")
  test.eq(st.mode, tonumber("644", 8))
  test.ok(math.abs(st.mtime - os.time()) < 5, "mtime is now, in seconds")
  test.ok(st.ino > 0, "inode number")
  test.eq(fs.stat(test.tmpdir()).type, "directory")
end)

test.case("flags: append, read-write, exclusive create; mode", function()
  local dir = test.tmpdir()
  local path = dir .. "/b.txt"
  assert(fs.writeFile(path, "one\n"))
  local f = assert(fs.open(path, "a"))
  assert(f:write("two\n"))
  assert(f:write("three\n", 0)) -- O_APPEND: the offset does not matter
  f:close()
  test.eq(fs.readFile(path), "one\ntwo\nthree\n")

  f = assert(fs.open(path, "r+"))
  assert(f:write("ONE", 0))
  test.eq(f:read(3, 4), "two")
  f:close()
  test.eq(fs.readFile(path), "ONE\ntwo\nthree\n")

  local g, err = fs.open(path, "wx")
  test.eq(g, nil)
  test.eq(err.name, "EEXIST")
  g = assert(fs.open(dir .. "/c.txt", "wx", "600"))
  g:close()
  test.eq(fs.stat(dir .. "/c.txt").mode, tonumber("600", 8))
  g = assert(fs.open(dir .. "/d.txt", "w+", 416)) -- 0640 as a number
  assert(g:write("abc"))
  test.eq(g:read(10, 0), "abc")
  g:close()
  test.eq(fs.stat(dir .. "/d.txt").mode, 416)
end)

test.case("readFile and writeFile, empty files, a file from /proc (size 0 but not empty)", function()
  local path = test.tmpdir() .. "/e.txt"
  assert(fs.writeFile(path, ""))
  test.eq(fs.readFile(path), "")
  assert(fs.writeFile(path, "x\0y"))
  test.eq(fs.readFile(path), "x\0y")
  local status = fs.readFile("/proc/self/status")
  test.match(status, "^Name:")
end)

test.case("a 20 MiB file: readFile, writeFile and a chunked copy agree with sha256sum", function()
  local dir = test.tmpdir()
  local src = dir .. "/src.bin"
  test.sh("head -c 20971520 /dev/urandom > " .. q(src))
  local want = sha256(src)

  local data = assert(fs.readFile(src))
  test.eq(#data, 20971520)
  assert(fs.writeFile(dir .. "/whole.bin", data))
  test.eq(sha256(dir .. "/whole.bin"), want)

  local from = assert(fs.open(src))
  local to = assert(fs.open(dir .. "/chunks.bin", "w"))
  local chunks = 0
  while true do
    local chunk, err = from:read(65536)
    if not chunk then
      test.eq(err.name, "EOF")
      break
    end
    chunks = chunks + 1
    assert(to:write(chunk))
  end
  from:close()
  to:close()
  test.eq(chunks, 320)
  test.eq(sha256(dir .. "/chunks.bin"), want)
end)

test.case("unlink, rename, mkdir", function()
  local dir = test.tmpdir()
  test.eq(fs.mkdir(dir .. "/sub"), true)
  test.eq(fs.stat(dir .. "/sub").type, "directory")
  test.eq(fs.stat(dir .. "/sub").mode, tonumber("755", 8))
  local ok, err = fs.mkdir(dir .. "/sub")
  test.eq(ok, nil)
  test.eq(err.name, "EEXIST")
  assert(fs.mkdir(dir .. "/private", "700"))
  test.eq(fs.stat(dir .. "/private").mode, tonumber("700", 8))

  assert(fs.writeFile(dir .. "/sub/f", "data"))
  test.eq(fs.rename(dir .. "/sub/f", dir .. "/g"), true)
  test.eq(fs.readFile(dir .. "/g"), "data")
  test.eq(select(2, fs.stat(dir .. "/sub/f")).name, "ENOENT")
  test.eq(select(2, fs.rename(dir .. "/nothing", dir .. "/h")).name, "ENOENT")

  test.eq(fs.unlink(dir .. "/g"), true)
  test.eq(select(2, fs.unlink(dir .. "/g")).name, "ENOENT")
  test.eq(select(2, fs.unlink(dir .. "/sub")).name, "EISDIR")

  test.sh("ln -s g " .. q(dir .. "/link"))
  test.eq(fs.lstat(dir .. "/link").type, "link")
  test.eq(select(2, fs.stat(dir .. "/link")).name, "ENOENT", "stat follows the dangling link")
end)

test.case("errors come back as nil, err: ENOENT, EISDIR, EBADF, ENOTDIR", function()
  local dir = test.tmpdir()
  local f, err = fs.open(dir .. "/missing")
  test.eq(f, nil)
  test.eq(err.name, "ENOENT")
  test.eq(tostring(err), "ENOENT: no such file or directory")
  test.ok(err.code < 0)
  test.eq(select(2, fs.readFile(dir .. "/missing")).name, "ENOENT")
  test.eq(select(2, fs.open(dir, "w")).name, "EISDIR")
  test.eq(select(2, fs.writeFile(dir, "x")).name, "EISDIR")
  test.eq(select(2, fs.readFile(dir)).name, "EISDIR")
  local d = assert(fs.open(dir))
  test.eq(select(2, d:read()).name, "EISDIR")
  d:close()
  assert(fs.writeFile(dir .. "/plain", "x"))
  test.eq(select(2, fs.open(dir .. "/plain/below")).name, "ENOTDIR")

  local r = assert(fs.open(dir .. "/plain"))
  test.eq(select(2, r:write("no")).name, "EBADF", "writing a file opened for reading")
  r:close()
  test.eq(select(2, r:read()).name, "EBADF")
  test.eq(select(2, r:write("x")).name, "EBADF")
  test.eq(select(2, r:stat()).name, "EBADF")
  -- EACCES cannot be shown: the tests run as root, which may open anything.
end)

test.case("closing a file another task is reading is refused with EBUSY", function()
  local dir = test.tmpdir()
  local fifo = dir .. "/fifo"
  test.sh("mkfifo " .. q(fifo))
  local holder = helpers.start("exec 3<>" .. q(fifo) .. "; sleep 30") -- a writer that never writes
  local f = assert(fs.open(fifo, "r"))
  local reader = task.spawn(function() return f:read(10) end)
  task.sleep(50)
  local ok, err = f:close()
  test.eq(ok, nil)
  test.eq(err.name, "EBUSY")
  test.sh("echo hi > " .. q(fifo))
  test.eq(select(2, reader:join(2000)), "hi\n")
  test.eq(f:close(), true)
  helpers.stop(holder)
end)

test.case("a read that waits on a FIFO does not stop the loop", function()
  local dir = test.tmpdir()
  local fifo = dir .. "/fifo"
  test.sh("mkfifo " .. q(fifo))
  local tick = ticker()
  -- open(2) of a FIFO blocks until a writer comes; then read(2) until it writes.
  helpers.start("sleep 0.3; echo late > " .. q(fifo))
  local started = task.now()
  local f = assert(fs.open(fifo))
  test.eq(f:read(), "late\n")
  f:close()
  local waited = task.now() - started
  local state = tick.stop()
  test.ok(waited >= 200, "the open waited for the writer, " .. waited .. " ms")
  test.ok(state.ticks >= 40, "the timer kept ticking: " .. state.ticks .. " ticks")
  test.ok(state.max_gap < 100, "no long stall: " .. state.max_gap .. " ms")
end)

test.case("50 tasks read files at once while a timer ticks", function()
  local dir = test.tmpdir()
  test.sh("head -c 1048576 /dev/urandom > " .. q(dir .. "/r.bin"))
  local want = assert(fs.readFile(dir .. "/r.bin"))
  local tick = ticker()
  local tasks = {}
  for i = 1, 50 do
    tasks[i] = task.spawn(function()
      if i % 2 == 0 then return fs.readFile(dir .. "/r.bin") end
      local f = assert(fs.open(dir .. "/r.bin"))
      local parts = {}
      while true do
        local chunk = f:read(16384)
        if not chunk then break end
        parts[#parts + 1] = chunk
      end
      f:close()
      return table.concat(parts)
    end)
  end
  for i = 1, 50 do
    local ok, data = tasks[i]:join(20000)
    test.eq(ok, true)
    test.ok(data == want, "task " .. i .. " read the whole file")
  end
  local state = tick.stop()
  test.ok(state.ticks > 0, "the timer ticked")
  test.ok(state.max_gap < 250, "no long stall: " .. state.max_gap .. " ms")
end)

test.case("wrong argument types raise, naming the argument", function()
  test.raises(function() fs.open({}) end, "bad argument #1 to 'open'")
  test.raises(function() fs.open("/tmp", "rw") end, "bad argument #2 to 'open' %(invalid option 'rw'%)")
  test.raises(function() fs.open("/tmp", "r", "999") end, "bad argument #3 to 'open'")
  test.raises(function() fs.open("/tmp", "r", {}) end, "bad argument #3 to 'open'")
  test.raises(function() fs.stat() end, "bad argument #1 to 'stat'")
  test.raises(function() fs.rename("a") end, "bad argument #2 to 'rename'")
  test.raises(function() fs.unlink(false) end, "bad argument #1 to 'unlink'")
  test.raises(function() fs.mkdir("/tmp/x", -1) end, "bad argument #2 to 'mkdir'")
  test.raises(function() fs.readFile(42) end, "bad argument #1 to 'readFile' %(string expected, got number%)")
  test.raises(function() fs.writeFile("/tmp/x", {}) end, "bad argument #2 to 'writeFile'")
  local path = test.tmpdir() .. "/w"
  local f = assert(fs.open(path, "w+"))
  test.raises(function() f:read("x") end, "bad argument #1 to 'read'")
  test.raises(function() f:read(-1) end, "bad argument #1 to 'read' %(must not be negative%)")
  test.raises(function() f:read(10, -5) end, "bad argument #2 to 'read'")
  test.raises(function() f:write(12) end, "bad argument #1 to 'write'")
  test.raises(function() f:write("x", 1.5) end, "bad argument #2 to 'write'")
  test.raises(function() f.read({}) end, "bad argument #1 to 'read'")
  f:close()
end)

test.case("waiting calls refuse to run outside a task", function()
  local co = coroutine.create(function() return fs.stat("/") end)
  local ok, err = coroutine.resume(co)
  test.eq(ok, false)
  test.match(err, "stat: cannot wait here")
end)

-- The files are held in a table until the check that they are open: otherwise a collection
-- during the 200 opens (how soon one comes depends on what ran before: other tests, a
-- loaded machine) closes some of them early. The GC runs with a short pause here to prove
-- that the outcome does not depend on its pace. Only descriptors of this case's own file
-- are counted, so other work of the process cannot disturb the counts.
test.case("a file left open is closed when collected", function()
  local path = test.tmpdir() .. "/gc"
  assert(fs.writeFile(path, "x"))
  local pid = assert(fs.readFile("/proc/self/stat")):match("^%d+")
  local function open_fds()
    return tonumber((test.sh("ls -l /proc/" .. pid .. "/fd | grep -c -F -- " .. q(path))))
  end
  local pause = collectgarbage("setpause", 10)
  test.cleanup(function() collectgarbage("setpause", pause) end)
  local held = {}
  local function open_all() -- in a function of its own: no stray reference in our frame
    for i = 1, 200 do held[i] = assert(fs.open(path)) end
  end
  open_all()
  test.eq(open_fds(), 200, "200 descriptors open")
  held = nil
  collectgarbage()
  collectgarbage()
  test.eq(open_fds(), 0, "closed by the collector")
end)

test.case("a short write goes on with the rest, and reports the error that stops it", function()
  -- A file size limit of 1 KiB (ulimit -f 2, in 512-byte blocks) makes write(2) stop short
  -- at the limit and then fail with EFBIG; SIGXFSZ is ignored so the failure is a return.
  local dir = test.tmpdir()
  test.write(dir .. "/main.lua", [[
local fs = require "fs"
local path = ...
local f = assert(fs.open(path, "w"))
local ok, err = f:write(string.rep("x", 1500))
print(ok, err and err.name)
f:close()
]])
  local out = test.sh("trap '' XFSZ; ulimit -f 2; " .. q(test.luaio) .. " run " .. q(dir) .. " " .. q(dir .. "/big"))
  test.eq(out, "nil\tEFBIG\n")
  test.eq(#test.sh("cat " .. q(dir .. "/big")), 1024)
end)

-- A path reaches the OS as a C string: a zero byte would cut it ("secret.key\0.txt" read
-- secret.key, "out\0.txt" created out), so every path argument refuses one, naming it.
test.case("a path with a zero byte raises, naming the argument, and touches no file", function()
  local dir = test.tmpdir()
  assert(fs.writeFile(dir .. "/secret.key", "TOP SECRET"))
  local zero = "string without zero bytes expected, got a string with a zero byte"
  local function refused(fn, argn, name)
    test.raises(fn, "fs_test%.lua:%d+: bad argument #" .. argn .. " to '" .. name .. "' %(" .. zero .. "%)")
  end
  refused(function() local _ = fs.readFile(dir .. "/secret.key\0.txt") end, 1, "readFile")
  refused(function() local _ = fs.writeFile(dir .. "/out\0.txt", "x") end, 1, "writeFile")
  refused(function() local _ = fs.open(dir .. "/secret.key\0.txt") end, 1, "open")
  refused(function() local _ = fs.open(dir .. "/new\0.txt", "w") end, 1, "open")
  refused(function() local _ = fs.stat(dir .. "/secret.key\0") end, 1, "stat")
  refused(function() local _ = fs.lstat(dir .. "/secret.key\0") end, 1, "lstat")
  refused(function() local _ = fs.unlink(dir .. "/secret.key\0.bak") end, 1, "unlink")
  refused(function() local _ = fs.rename(dir .. "/secret.key\0x", dir .. "/b") end, 1, "rename")
  refused(function() local _ = fs.rename(dir .. "/secret.key", dir .. "/moved\0.txt") end, 2, "rename")
  refused(function() local _ = fs.mkdir(dir .. "/d\0e") end, 1, "mkdir")
  test.eq(test.sh("ls " .. q(dir)), "secret.key\n", "nothing created, moved or removed")
end)

test.case("Lua's own io.open, io.lines, os.remove, os.rename, os.getenv, loadfile, dofile refuse a zero byte too", function()
  local dir = test.tmpdir()
  test.write(dir .. "/secret.key", "secret")
  local zero = "string without zero bytes expected, got a string with a zero byte"
  local cut = dir .. "/secret.key\0.txt" -- C would read secret.key
  test.raises(function() return io.open(cut) end, "bad argument #1 to 'open' %(" .. zero)
  test.raises(function() return io.lines(cut) end, "bad argument #1 to 'lines' %(" .. zero)
  test.raises(function() return os.remove(cut) end, "bad argument #1 to 'remove' %(" .. zero)
  test.raises(function() return os.rename(dir .. "/secret.key", dir .. "/moved\0.txt") end,
    "bad argument #2 to 'rename' %(" .. zero)
  test.raises(function() return os.getenv("PATH\0.x") end, "bad argument #1 to 'getenv' %(" .. zero)
  test.raises(function() return loadfile(cut) end, "bad argument #1 to 'loadfile' %(" .. zero)
  test.raises(function() return dofile(cut) end, "bad argument #1 to 'dofile' %(" .. zero)
  test.eq(io.open(dir .. "/secret.key"):read("*a"), "secret", "the file is still there")
  test.ok(os.getenv("PATH"), "and names without one still work")
end)
