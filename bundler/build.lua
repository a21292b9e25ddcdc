-- luaio build APPDIR [-o OUT] [--strip] [--level N]
--
-- Makes one executable from an app folder: every .lua file is compiled to LuaJIT bytecode
-- (by this very runtime, so the bytecode matches it), every other file is packed as an
-- asset, and the archive is zstd-compressed and appended to a copy of this executable
-- (runtime/app/bundle.c writes it). Files and folders whose names start with "." are left out
-- (archive.walk skips them).
local archive = require "luaio.archive"

local build = {}

local USAGE = "usage: luaio build APPDIR [-o OUT] [--strip] [--level N]"
local MAX_LEVEL = 22 -- ZSTD_maxCLevel(); 20 and up ("ultra") take more memory to compress

local function fail(fmt, ...)
  io.stderr:write("luaio build: ", fmt:format(...), "\n")
  os.exit(1)
end

-- A misuse of the command line: one line saying what is wrong, then the usage; status 2.
local function usage_error(fmt, ...)
  io.stderr:write("luaio build: ", fmt:format(...), "\n", USAGE, "\n")
  os.exit(2)
end

-- The value after option a: present, not another option, not empty, and given only once.
local function value_of(args, i, a, what, seen)
  local v = args[i + 1]
  if v == nil or v == "" or (v:sub(1, 1) == "-" and v ~= "-") then usage_error("%s needs %s", a, what) end
  if seen[a] then usage_error("%s given twice", a) end
  seen[a] = true
  return v
end

local function parse_args(args)
  local opts = { level = 19 }
  local seen = {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "-o" or a == "--output" then
      opts.out = value_of(args, i, "-o", "a path", seen)
      i = i + 1
    elseif a == "--strip" then
      opts.strip = true
    elseif a == "--level" then
      local v = value_of(args, i, a, ("a level from 1 to %d"):format(MAX_LEVEL), seen)
      local n = tonumber(v)
      if not n or n ~= math.floor(n) or n < 1 or n > MAX_LEVEL then
        usage_error("--level must be a whole number from 1 to %d, got '%s'", MAX_LEVEL, v)
      end
      opts.level = n
      i = i + 1
    elseif a:sub(1, 1) == "-" then
      usage_error("unknown option '%s'", a)
    elseif opts.appdir then
      usage_error("one APPDIR only (got '%s' and '%s')", opts.appdir, a)
    elseif a == "" then
      usage_error("APPDIR must not be empty")
    else
      opts.appdir = a
    end
    i = i + 1
  end
  if not opts.appdir then usage_error("missing APPDIR") end
  opts.appdir = opts.appdir:gsub("(.)/+$", "%1")
  opts.out = opts.out or opts.appdir:match("([^/]+)$")
  return opts
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then fail("cannot read %s", err) end
  local data = f:read("*a")
  f:close()
  return data
end

local function is_folder(path)
  local f = io.open(path .. "/.", "rb")
  if f then f:close() end
  return f ~= nil
end

-- Returns the archive entries {{name, data}, ...}, sorted by name, and some counts.
local function collect(opts)
  local names, err = archive.walk(opts.appdir)
  if not names then fail("cannot read app folder '%s': %s", opts.appdir, tostring(err)) end
  local entries, stats = {}, { modules = 0, assets = 0, source = 0 }
  local has_main = false
  for _, name in ipairs(names) do
    local data = read_file(opts.appdir .. "/" .. name)
    stats.source = stats.source + #data
    if name:match("%.lua$") then
      local chunk, syntax_err = loadstring(data, "@" .. name)
      if not chunk then fail("%s", syntax_err) end
      data = string.dump(chunk, opts.strip)
      stats.modules = stats.modules + 1
      has_main = has_main or name == "main.lua"
    else
      stats.assets = stats.assets + 1
    end
    entries[#entries + 1] = { name, data }
  end
  if not has_main then fail("no main.lua in '%s': it is the app's entry point", opts.appdir) end
  return entries, stats
end

function build.main(...)
  local opts = parse_args({ ... })
  if is_folder(opts.out) then
    fail("output path '%s' is a folder; choose a file with -o", opts.out)
  end
  local entries, stats = collect(opts)
  local result, err = archive.write(opts.out, entries, opts.level)
  if not result then fail("cannot write '%s': %s", opts.out, tostring(err)) end
  print(("built %s: %d files (%d modules, %d assets), %d source bytes, %d archive bytes, "
      .. "%d compressed, executable %d bytes")
    :format(opts.out, result.files, stats.modules, stats.assets, stats.source,
      result.archive, result.payload, result.size))
end

return build
