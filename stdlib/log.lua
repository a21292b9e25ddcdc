-- log: levelled, structured logging that never waits and never blocks the loop.
--
--   local log = require "log"
--   log.configure { level = "info", output = "/var/log/app.log", format = "json" }
--   log.info("listening", { port = 8080 })
--   log.debug("not formatted at all below the threshold", { big = expensive })
--
--   local access = assert(log.new { output = "access.log" })
--   log.access(access, { remote_addr = ip, method = "GET", path = "/", status = 200, bytes = 12 })
--
-- A call formats its line in C straight into the logger's buffer; the thread pool writes
-- the buffer in batches (runtime/log/log.c). It works anywhere: in a task, at a module's top
-- level, on the main thread. What is buffered is written at exit, however the process
-- exits normally (end of work, os.exit, process.exit, an error in the main task).
local C = require "luaio.log"
local E = require "luaio.error"
local options = require "luaio.options"

local pairs, setmetatable, type = pairs, setmetatable, type

local log = {}

local LEVELS = { debug = 0, info = 1, warn = 2, error = 3 }
local LEVEL_NAMES = { "debug", "info", "warn", "error" }
-- No defaults here: configure changes only what it is given; make() fills in the rest.
local OPTIONS = {
  level = { "string", values = LEVEL_NAMES },
  output = { "cstring", check = function(v) if v == "" then return "non-empty string" end end },
  format = { "string", values = { "text", "json", "combined", "common" } },
  buffer_size = { "integer", min = 1 },
}
local DEFAULT_BUFFER = 4 * 1024 * 1024

local Logger = {}
Logger.__index = Logger

-- Loggers writing to a file, for log.reopen() and SIGUSR1. Weak: a logger nobody holds goes.
local file_loggers = setmetatable({}, { __mode = "k" })
local signal_wired = false

local function argerror(argn, fname, message)
  options.argerror(argn, fname, message, 3)
end

local function check_level(level, fname, argn)
  if type(level) ~= "string" or LEVELS[level] == nil then
    options.argerror(argn, fname, "level 'debug', 'info', 'warn' or 'error' expected, got " ..
      (type(level) == "string" and ("'" .. level .. "'") or type(level)), 3)
  end
  return LEVELS[level]
end

-- Rotation: every file logger closes its file and opens the path again.
local function reopen_all()
  for logger in pairs(file_loggers) do logger.sink:reopen() end
end

-- SIGUSR1 reopens, once process.on exists (the process module may not be in this build).
local function wire_signal()
  if signal_wired then return end
  signal_wired = true
  local ok, process = pcall(require, "process")
  if ok and type(process) == "table" and process.on then process.on("SIGUSR1", reopen_all) end
end

local function make(opts)
  local o = {
    level = opts.level or "info", output = opts.output or "stderr", format = opts.format or "text",
    buffer_size = opts.buffer_size or DEFAULT_BUFFER,
  }
  local sink, err = C.open(o.output, o.buffer_size, o.format == "json")
  if not sink then return nil, err end
  local logger = setmetatable({ sink = sink, threshold = LEVELS[o.level], options = o }, Logger)
  if o.output ~= "stdout" and o.output ~= "stderr" then
    file_loggers[logger] = true
    wire_signal()
  end
  return logger
end

-- log.new(options) -> logger | nil, err. Options: level ("info"), output ("stderr",
-- "stdout" or a file path, appended to), format ("text", "json"; "combined" and "common"
-- are text too and pick the access-line format), buffer_size (bytes buffered before lines
-- are dropped, 4 MiB).
function log.new(opts)
  return make(options.check(opts, OPTIONS, 1, "new"))
end

-- logger:debug/info/warn/error(msg[, fields]) -> true, or false when below the level or
-- dropped. Below the level nothing is looked at, let alone formatted.
function Logger:debug(msg, fields)
  if self.threshold > 0 then return false end
  return self.sink:log(0, msg, fields)
end

function Logger:info(msg, fields)
  if self.threshold > 1 then return false end
  return self.sink:log(1, msg, fields)
end

function Logger:warn(msg, fields)
  if self.threshold > 2 then return false end
  return self.sink:log(2, msg, fields)
end

function Logger:error(msg, fields)
  return self.sink:log(3, msg, fields)
end

function Logger:setLevel(level)
  self.threshold = check_level(level, "setLevel", 1)
  self.options.level = level
end

function Logger:getLevel() return self.options.level end

-- logger:write(text, ...) -> true | false: raw text, no time or level (include the "\n").
function Logger:write(...)
  return self.sink:write(...)
end

-- logger:reopen(): the file is closed and opened again by path (after a rename, a new file).
function Logger:reopen()
  return self.sink:reopen()
end

-- logger:close(): lines already logged are still written; later ones are ignored.
function Logger:close()
  file_loggers[self] = nil
  self.sink:close()
end

-- logger:stats() -> {pending = bytes not yet written, dropped = lines dropped, errors}
function Logger:stats()
  return self.sink:stats()
end

-- logger:flush([timeout_ms]) -> true | nil, err (ETIMEDOUT): waits (in a task) until every
-- line logged so far is written. Logging never needs it; tests and shutdown code may.
function Logger:flush(timeout)
  local task = require "task"
  local deadline = timeout and task.now() + options.ms(timeout, 1, "flush")
  while self.sink:pending() > 0 do
    if deadline and task.now() > deadline then
      return nil, E.new("ETIMEDOUT", "timed out")
    end
    task.sleep(1)
  end
  return true
end

-- --- the default logger, behind the module functions -------------------------------------

local default

local function get_default()
  if not default then default = assert(make({})) end
  return default
end

function log.debug(msg, fields)
  local d = default or get_default()
  if d.threshold > 0 then return false end
  return d.sink:log(0, msg, fields)
end

function log.info(msg, fields)
  local d = default or get_default()
  if d.threshold > 1 then return false end
  return d.sink:log(1, msg, fields)
end

function log.warn(msg, fields)
  local d = default or get_default()
  if d.threshold > 2 then return false end
  return d.sink:log(2, msg, fields)
end

function log.error(msg, fields)
  return (default or get_default()).sink:log(3, msg, fields)
end

-- log.setLevel(level): the default logger's threshold.
function log.setLevel(level)
  get_default().threshold = check_level(level, "setLevel", 1)
  default.options.level = level
end

function log.getLevel() return get_default().options.level end

-- log.configure(options) -> true | nil, err: changes the default logger (same options as
-- log.new; those not given stay). A new output is opened before the old one is let go, so
-- a bad path leaves logging as it was.
function log.configure(given)
  local opts = options.check(given, OPTIONS, 1, "configure")
  local d = get_default()
  local merged = {}
  for k, v in pairs(d.options) do merged[k] = v end
  for k, v in pairs(opts) do merged[k] = v end
  local o = d.options
  if merged.output ~= o.output or merged.format ~= o.format or merged.buffer_size ~= o.buffer_size then
    local new, err = make(merged)
    if not new then return nil, err end
    d:close()
    default = new
  else
    d.threshold = LEVELS[merged.level]
    o.level = merged.level
  end
  return true
end

-- log.reopen(): every file logger reopens its file (what SIGUSR1 does).
log.reopen = reopen_all

-- log.default() -> the logger behind log.info and friends.
log.default = get_default

-- --- access lines (Common and Combined Log Format) --------------------------------------

-- log.formatAccess(fields[, format]) -> one line without "\n". fields: remote_addr, user,
-- time (seconds since the epoch, default now), method, path, protocol, status, bytes,
-- referer, user_agent; format "combined" (default) or "common".
function log.formatAccess(fields, format)
  if type(fields) ~= "table" then argerror(1, "formatAccess", "table expected, got " .. type(fields)) end
  if format ~= nil and format ~= "combined" and format ~= "common" then
    argerror(2, "formatAccess", "'combined' or 'common' expected, got " .. tostring(format))
  end
  local t = fields.time
  if t ~= nil and type(t) ~= "number" then
    argerror(1, "formatAccess", "field 'time': seconds since the epoch expected, got " .. type(t))
  end
  return C.formatAccess(fields, format == "common")
end

-- log.access(logger, fields) -> true | false: one access line. A "json" logger writes the
-- fields as a JSON line (msg "access") instead; a "common" logger the Common Log Format.
function log.access(logger, fields)
  if getmetatable(logger) ~= Logger then
    argerror(1, "access", "logger expected, got " .. type(logger))
  end
  if type(fields) ~= "table" then argerror(2, "access", "table expected, got " .. type(fields)) end
  local t = fields.time
  if t ~= nil and type(t) ~= "number" then
    argerror(2, "access", "field 'time': seconds since the epoch expected, got " .. type(t))
  end
  local format = logger.options.format
  if format == "json" then return logger.sink:log(1, "access", fields) end
  return logger.sink:access(fields, format == "common")
end

function Logger:access(fields)
  return log.access(self, fields)
end

return log
