-- http_static: files over HTTP, from a folder on disk or from the app's bundle.
--
--   router:get("/assets/*", http.static("public"))                -- the app's "public" folder
--   router:get("/data/*", http.static("/var/lib/app/files"))      -- an absolute path: disk
--   res:sendFile("reports/today.pdf")                             -- one file, from a handler
--
-- A relative path is the app's own: under `luaio run app/` it is app/public (whatever the
-- current directory), in a built executable the bundle's public/ (bundle = true forces the
-- bundle).
--
-- ETag and Last-Modified, If-None-Match and If-Modified-Since (304), single byte ranges
-- (206, 416), a Content-Type from the extension, HEAD without reading the file. Disk files
-- are streamed in 64 KiB pieces through the fs module, so the loop never waits on the disk
-- and a slow client holds back the reading (res:write waits when the client is far behind).
local fs = require "fs"
local bundle = require "bundle"
local checker = require "luaio.options"

local byte, format, tonumber = string.byte, string.format, tonumber

local static = {}

local TYPES = {
  html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8",
  css = "text/css; charset=utf-8", js = "text/javascript; charset=utf-8",
  mjs = "text/javascript; charset=utf-8", json = "application/json",
  txt = "text/plain; charset=utf-8", md = "text/markdown; charset=utf-8",
  csv = "text/csv; charset=utf-8", xml = "application/xml", svg = "image/svg+xml",
  png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif",
  webp = "image/webp", ico = "image/x-icon", avif = "image/avif",
  woff = "font/woff", woff2 = "font/woff2", ttf = "font/ttf", otf = "font/otf",
  pdf = "application/pdf", zip = "application/zip", gz = "application/gzip",
  wasm = "application/wasm", mp4 = "video/mp4", webm = "video/webm", mp3 = "audio/mpeg",
  ogg = "audio/ogg", wav = "audio/wav", lua = "text/plain; charset=utf-8",
}

function static.content_type(path)
  local ext = path:match("%.([%w]+)$")
  return ext and TYPES[ext:lower()] or "application/octet-stream"
end

local function http_date(t)
  return os.date("!%a, %d %b %Y %H:%M:%S GMT", math.floor(t))
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

-- Seconds since the epoch of an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), or nil.
-- Computed by hand: os.time would read the fields as local time.
local function parse_http_date(s)
  local d, mon, y, h, mi, sec = (s or ""):match("^%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  local m = MONTHS[mon or ""]
  if not m then return nil end
  y, m, d = tonumber(y), m, tonumber(d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * (m + (m > 2 and -3 or 9)) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
end
static.parse_http_date = parse_http_date

-- "bytes=a-b" for a file of size bytes -> first, last (inclusive), or false when it cannot be
-- satisfied, or nil when there is no single range to honour (then the whole file is sent).
local function parse_range(header, size)
  if not header then return nil end
  local a, b = header:match("^bytes=(%d*)%-(%d*)$")
  if not a or (a == "" and b == "") then return nil end
  local first, last
  if a == "" then -- the last b bytes
    local n = tonumber(b)
    if n == 0 then return false end
    first, last = math.max(size - n, 0), size - 1
  else
    first = tonumber(a)
    last = b == "" and size - 1 or math.min(tonumber(b), size - 1)
  end
  if first > last or first >= size then return false end
  return first, last
end

-- A decoded URL path (req.path and route parameters are decoded by the server: decoding
-- again would let "%252e%252e" become ".." here) -> a relative path inside the root, or nil
-- for one that would leave it.
local function safe_path(path)
  if path:find("%z") or path:find("\\", 1, true) then return nil end
  local parts = {}
  for part in path:gmatch("[^/]+") do
    if part == ".." then return nil end
    if part ~= "." then parts[#parts + 1] = part end
  end
  return table.concat(parts, "/")
end

-- A short hash of bundled content, for its ETag (computed once per file: bundles do not
-- change while the process runs).
local bundle_etags = {}
local function bundle_etag(path, data)
  local etag = bundle_etags[path]
  if etag then return etag end
  local h = 0
  local step = math.max(1, math.floor(#data / 4096)) -- sample big files: the size is in the tag too
  for i = 1, #data, step do h = (h * 31 + byte(data, i)) % 4294967296 end
  etag = format('"%x-%x"', #data, h)
  bundle_etags[path] = etag
  return etag
end

local function not_modified(req, etag, mtime)
  local inm = req.headers["if-none-match"]
  if inm then
    for tag in inm:gmatch("[^,%s]+") do
      if tag == etag or tag == "W/" .. etag or tag == "*" then return true end
    end
    return false
  end
  local ims = mtime and parse_http_date(req.headers["if-modified-since"])
  return ims ~= nil and math.floor(mtime) <= ims
end

-- Sends body (a string) or the file bytes first..last through `source(first, last)`.
local function send(req, res, info, options)
  res:setHeader("Content-Type", static.content_type(info.name))
  res:setHeader("ETag", info.etag)
  res:setHeader("Accept-Ranges", "bytes")
  if info.mtime then res:setHeader("Last-Modified", http_date(info.mtime)) end
  if options.max_age then res:setHeader("Cache-Control", "max-age=" .. options.max_age) end
  if not_modified(req, info.etag, info.mtime) then
    res:status(304)
    return res:finish()
  end
  local first, last = 0, info.size - 1
  local range = parse_range(req.headers["range"], info.size)
  if range == false then
    res:status(416)
    res:setHeader("Content-Range", "bytes */" .. info.size)
    return res:finish()
  elseif range then
    first, last = range, select(2, parse_range(req.headers["range"], info.size))
    res:status(206)
    res:setHeader("Content-Range", format("bytes %d-%d/%d", first, last, info.size))
  end
  res:setHeader("Content-Length", last - first + 1)
  if req.method == "HEAD" or last < first then return res:finish() end
  return info.send(res, first, last)
end

local function from_bundle(root, rel)
  local path = root == "" and rel or (rel == "" and root or root .. "/" .. rel)
  local data = bundle.read(path)
  if not data then
    data = bundle.read((path == "" and "" or path .. "/") .. "index.html")
    if not data then return nil end
    path = (path == "" and "" or path .. "/") .. "index.html"
  end
  return {
    name = path, size = #data, etag = bundle_etag(path, data),
    send = function(res, first, last) return res:finish(data:sub(first + 1, last + 1)) end,
  }
end

local function from_disk(root, rel, index)
  local path = rel == "" and root or root .. "/" .. rel
  local st = fs.stat(path)
  if st and st.type == "directory" then
    path = path .. "/" .. index
    st = fs.stat(path)
  end
  if not st or st.type ~= "file" then return nil end
  return {
    name = path, size = st.size, mtime = st.mtime,
    etag = format('W/"%x-%x"', st.size, math.floor(st.mtime * 1000)),
    send = function(res, first, last)
      local f, err = fs.open(path)
      if not f then return nil, err end
      local offset = first
      while offset <= last do
        local chunk, rerr = f:read(math.min(65536, last - offset + 1), offset)
        if not chunk then f:close() return nil, rerr end
        offset = offset + #chunk
        local ok, werr = res:write(chunk)
        if not ok then f:close() return nil, werr end
      end
      f:close()
      return res:finish()
    end,
  }
end

-- http.static(root[, options]) -> handler(req, res). options: bundle (serve the app's
-- files under root), index ("index.html"), max_age (seconds, Cache-Control).
-- Where a relative path lives: the app's own files, whether it runs from its folder (luaio
-- run: that folder, not the current directory) or as a built executable (the bundle). An
-- absolute path is a file on disk. options.bundle = true always means the bundle.
local function locate(path, options)
  if options.bundle or (path:sub(1, 1) ~= "/" and bundle.bundled) then
    return path:gsub("^%./", ""):gsub("^%.$", ""), true
  end
  if path:sub(1, 1) ~= "/" and bundle.folder and bundle.folder ~= "." then
    return bundle.folder .. "/" .. path, false
  end
  return path, false
end

local STATIC = {
  bundle = { "boolean" },
  index = { "cstring", default = "index.html" }, -- a file name on disk: no zero byte
  max_age = { "integer", min = 0 }, -- seconds
}
local SEND_FILE = { bundle = STATIC.bundle, max_age = STATIC.max_age }

-- Both are reached by a tail call from http.lua (http.static, res:sendFile), so level 2 is
-- the user's code, as when this module is called directly.
function static.handler(root, options)
  checker.cstring(root, 1, "static", "folder path")
  options = checker.check(options, STATIC, 2, "static")
  local in_bundle
  root, in_bundle = locate((root:gsub("/+$", "")), options)
  options.bundle = in_bundle
  local index = options.index
  return function(req, res)
    local rel = safe_path((req.params and req.params["*"]) or req.path)
    local info = rel and (options.bundle and from_bundle(root, rel) or (not options.bundle and from_disk(root, rel, index)))
    if not info then
      res:status(rel and 404 or 400)
      return res:finish(rel and "not found\n" or "bad path\n")
    end
    return send(req, res, info, options)
  end
end

-- res:sendFile(path[, options]): one file: relative paths are the app's (see above).
function static.send_file(req, res, path, options)
  options = checker.check(options, SEND_FILE, 2, "sendFile")
  local in_bundle
  path, in_bundle = locate(path, options)
  local info = in_bundle and from_bundle("", safe_path(path) or "") or (not in_bundle and from_disk(path, "", ""))
  if not info then
    res:status(404)
    return res:finish("not found\n")
  end
  return send(req, res, info, options)
end

return static
