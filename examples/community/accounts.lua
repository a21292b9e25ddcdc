-- Accounts: names and passwords checked, passwords hashed with Argon2id (crypto module).
local crypto = require "crypto"

local accounts = {}
accounts.__index = accounts

-- accounts.new(forum) -> the account rules over the data layer
function accounts.new(forum) return setmetatable({ forum = forum }, accounts) end

local function check(name, password)
  if type(name) ~= "string" or not name:match("^[%w_%-]+$") or #name < 3 or #name > 32 then
    return "a name is 3 to 32 letters, digits, '-' or '_'"
  end
  if type(password) ~= "string" or #password < 8 then return "a password has at least 8 characters" end
  if #password > 1024 then return "a password has at most 1024 characters" end
end

-- accounts:register(name, password) -> {id, name} | nil, message, HTTP status
function accounts:register(name, password)
  local problem = check(name, password)
  if problem then return nil, problem, 400 end
  local hash, err = crypto.password_hash(password)
  if not hash then return nil, "cannot hash the password: " .. tostring(err), 500 end
  local id
  id, err = self.forum:create_user(name, hash)
  if id == false then return nil, "the name '" .. name .. "' is taken", 409 end
  if not id then return nil, "cannot store the account: " .. tostring(err), 500 end
  return { id = id, name = name }
end

-- A hash to verify against when the name is unknown, so that a wrong name takes as long as
-- a wrong password (no probing for names by timing).
local decoy

-- accounts:login(name, password) -> {id, name} | nil, message, HTTP status
function accounts:login(name, password)
  if type(name) ~= "string" or type(password) ~= "string" or #password > 1024 then
    return nil, "wrong name or password", 401
  end
  local user, err = self.forum:user_by_name(name)
  if user == nil then return nil, "cannot read the account: " .. tostring(err), 500 end
  if not user then
    decoy = decoy or crypto.password_hash("no such user")
    crypto.password_verify(password, decoy)
    return nil, "wrong name or password", 401
  end
  local ok, verr = crypto.password_verify(password, user.password_hash)
  if ok == nil then return nil, "cannot check the password: " .. tostring(verr), 500 end
  if not ok then return nil, "wrong name or password", 401 end
  if crypto.password_needs_rehash(user.password_hash) then -- the cost settings changed
    local hash = crypto.password_hash(password)
    if hash then self.forum:set_password_hash(user.id, hash) end
  end
  return { id = user.id, name = user.name }
end

return accounts
