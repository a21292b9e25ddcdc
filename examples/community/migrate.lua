-- Schema migrations: migrations/NNN_name.sql, applied in order at start, each once, and
-- recorded in the table schema_migrations. Several instances may start together: a
-- MySQL named lock lets one migrate while the others wait.
local bundle = require "bundle"
local mysql = require "mysql"

local migrate = {}

local function must(what, res, err)
  if res == nil then error(what .. ": " .. tostring(err and err.message or err), 0) end
  return res
end

local function apply(db)
  must("schema_migrations", db:query([[CREATE TABLE IF NOT EXISTS schema_migrations (
    version VARCHAR(255) NOT NULL PRIMARY KEY, applied_at DATETIME(3) NOT NULL)]]))
  local lock = must("GET_LOCK", db:query("SELECT GET_LOCK('community.migrate', 60) AS got"))
  if tonumber(lock[1].got) ~= 1 then error("another instance held the migration lock for 60 s", 0) end
  local applied = {}
  for _, row in ipairs(must("schema_migrations", db:query("SELECT version FROM schema_migrations"))) do
    applied[row.version] = true
  end
  local done = {}
  for _, path in ipairs(bundle.list("migrations")) do
    local version = path:match("^migrations/([^/]+)%.sql$")
    if version and not applied[version] then
      must("migration " .. version, db:query(must("read " .. path, bundle.read(path))))
      must("migration " .. version, db:execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (?, UTC_TIMESTAMP(3))", version))
      done[#done + 1] = version
    end
  end
  db:query("SELECT RELEASE_LOCK('community.migrate')")
  return done
end

-- migrate.run(options) -> the versions applied now (an array, empty when the schema was up to
-- date), or nil, message. options: mysql.connect's.
function migrate.run(options)
  local o = { multi_statements = true } -- a migration file is one query of many statements
  for k, v in pairs(options) do o[k] = v end
  local db, err = mysql.connect(o)
  if not db then return nil, "cannot connect to MySQL: " .. tostring(err) end
  local ok, result = pcall(apply, db)
  db:close()
  if not ok then return nil, tostring(result) end
  return result
end

return migrate
