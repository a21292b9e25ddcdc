-- fs: files, through libuv's thread pool so the loop never waits for a disk.
--
--   local fs = require "fs"
--   local f = assert(fs.open("data.bin"))
--   while true do
--     local chunk, err = f:read(65536)
--     if not chunk then assert(err.name == "EOF", tostring(err)) break end
--     ...
--   end
--   f:close()
--
-- Every call waits in the calling task. The C half (runtime/os/fs.c) is one request per call;
-- this file adds readFile and writeFile, which are a few of those requests in a row.
local C = require "luaio.fs"
local options = require "luaio.options"

local concat, type = table.concat, type

local fs = {
  open = C.open, stat = C.stat, lstat = C.lstat, unlink = C.unlink, rename = C.rename,
  mkdir = C.mkdir,
}

-- A read asks for the whole file at once when its size is known (one trip to the thread
-- pool for the bytes, one for the end), capped so that a huge file is read in pieces.
local MIN_CHUNK, MAX_CHUNK = 65536, 64 * 1024 * 1024

local function check_path(path, fname) options.cstring(path, 1, fname, nil, 3) end

-- fs.readFile(path) -> contents | nil, err
function fs.readFile(path)
  check_path(path, "readFile")
  local f, err = C.open(path, "r")
  if not f then return nil, err end
  local st
  st, err = f:stat()
  if not st then
    f:close()
    return nil, err
  end
  local chunk = st.size + 1 -- one more byte: a file that grew since is read on, not cut
  if chunk < MIN_CHUNK then chunk = MIN_CHUNK elseif chunk > MAX_CHUNK then chunk = MAX_CHUNK end
  local parts, n = {}, 0
  while true do
    local data
    data, err = f:read(chunk)
    if not data then break end
    n = n + 1
    parts[n] = data
  end
  f:close()
  if err.name ~= "EOF" then return nil, err end
  if n == 1 then return parts[1] end
  return concat(parts)
end

-- fs.writeFile(path, data) -> true | nil, err. Creates or truncates the file (mode 644).
function fs.writeFile(path, data)
  check_path(path, "writeFile")
  if type(data) ~= "string" then
    error("bad argument #2 to 'writeFile' (string expected, got " .. type(data) .. ")", 2)
  end
  local f, err = C.open(path, "w")
  if not f then return nil, err end
  local ok
  ok, err = f:write(data)
  local closed, close_err = f:close()
  if not ok then return nil, err end
  if not closed then return nil, close_err end
  return true
end

return fs
