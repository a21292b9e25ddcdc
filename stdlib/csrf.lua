-- csrf: cross-site request forgery protection with a per-session token (the synchronizer
-- token pattern). Pages put the token in their forms (a hidden `_csrf` field) or scripts
-- send it in an `X-CSRF-Token` header; every request with an unsafe method must carry it.
--
--   local csrf = require "csrf"
--   local token = assert(csrf.token(s))                 -- s: a session (session module)
--   ... <input type="hidden" name="_csrf" value="{{ token }}"> ...
--   if not csrf.verify(req, s) then res:status(403) return res:finish("bad CSRF token") end
--
-- The token is 256 random bits kept in the session's data (as `_csrf`), compared in constant
-- time. A cross-site page can make the browser send the cookie but cannot read the token.
local crypto = require "crypto"

local csrf = { field = "_csrf", header = "x-csrf-token" }

local SAFE = { GET = true, HEAD = true, OPTIONS = true, TRACE = true }

-- Misuse raises at the caller of the csrf function: a session is anything with a data
-- table (the session module's), a request a table (the server's, or a test's).
local function check(value, argn, fname, what)
  if type(value) ~= "table" or (what == "session" and type(value.data) ~= "table") then
    error(("bad argument #%d to '%s' (%s expected, got %s)"):format(argn, fname, what, type(value)), 3)
  end
end

-- csrf.token(s) -> the session's token, or nil, err (a new token is saved in the session,
-- which then exists in the store)
function csrf.token(s)
  check(s, 1, "token", "session")
  local token = s.data._csrf
  if type(token) == "string" then return token end
  s.data._csrf = crypto.base64url(crypto.random(32))
  local ok, err = s:save()
  if not ok then
    s.data._csrf = nil
    return nil, err
  end
  return s.data._csrf
end

-- csrf.reset(s) -> a new token in the session's data (not saved: do it where the session is
-- saved anyway, such as before s:rotate() at login, so that a token known before the login
-- is worth nothing after it)
function csrf.reset(s)
  check(s, 1, "reset", "session")
  s.data._csrf = crypto.base64url(crypto.random(32))
  return s.data._csrf
end

-- csrf.verify(req, s[, token]) -> true when the request may proceed: a safe method (GET,
-- HEAD, OPTIONS, TRACE), or a token equal to the session's. The token is `token` when
-- given, else the X-CSRF-Token header, else the `_csrf` field of a form body (req:form()).
-- A token that is not a string (a form with two _csrf fields gives an array) is the client's
-- doing: false, not an error.
function csrf.verify(req, s, token)
  check(req, 1, "verify", "request")
  check(s, 2, "verify", "session")
  if SAFE[req.method] then return true end
  local expected = s.data._csrf
  if type(expected) ~= "string" then return false end
  token = token or req.headers[csrf.header]
  if token == nil then
    local form = req:form()
    token = form and form[csrf.field]
  end
  return type(token) == "string" and crypto.equal(token, expected)
end

return csrf
