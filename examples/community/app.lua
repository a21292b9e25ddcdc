-- What the HTML pages and the JSON API share: the session and CSRF check around every
-- handler, rendering, errors, paging, and the shapes of the data.
local cjson = require "cjson.safe"
local csrf = require "csrf"
local log = require "log"
local template = require "template"

local app = {}
app.__index = app

local floor, ceil, max = math.floor, math.ceil, math.max

-- Helpers every template sees.
local helpers = {}

-- helpers.when(datetime) -> <time> of a MySQL UTC DATETIME ("2026-01-02 03:04:05.678");
-- static/app.js turns it into "5 minutes ago".
function helpers.when(ts)
  ts = tostring(ts)
  return ('<time datetime="%sZ">%s UTC</time>'):format(template.escape((ts:gsub(" ", "T"))),
    template.escape(ts:sub(1, 16)))
end

-- helpers.paragraphs(text) -> the text as escaped HTML paragraphs (blank lines between them,
-- line breaks kept)
function helpers.paragraphs(text)
  local out = {}
  for para in (tostring(text):gsub("\r\n", "\n") .. "\n\n"):gmatch("(.-)\n\n+") do
    if para:find("%S") then out[#out + 1] = "<p>" .. template.escape(para):gsub("\n", "<br>\n") .. "</p>" end
  end
  return table.concat(out, "\n")
end

-- helpers.plural(n, word) -> "1 post", "3 posts"
function helpers.plural(n, word) return n .. " " .. word .. (n == 1 and "" or "s") end

-- app.new(parts) -> the app: parts = {config, forum, accounts, sessions}
function app.new(parts)
  local self = setmetatable(parts, app)
  self.views = template.new({ root = "views", helpers = helpers })
  return self
end

-- --- answers ----------------------------------------------------------------------------------

function app:html(res, view, ctx, status)
  res:status(status or 200)
  res:setHeader("Content-Type", "text/html; charset=utf-8")
  res:setHeader("Cache-Control", "no-store")
  return res:finish(self.views:render(view, ctx))
end

function app:json(res, value, status)
  res:status(status or 200)
  res:setHeader("Content-Type", "application/json")
  res:setHeader("Cache-Control", "no-store")
  return res:finish(assert(cjson.encode(value)))
end

function app.redirect(res, location)
  res:status(303)
  res:setHeader("Location", location)
  return res:finish()
end

-- An error answer in the form the route speaks: an HTML page or {"error": message}.
function app:fail(req, res, status, message)
  if req.api then return self:json(res, { error = message }, status) end
  return self:html(res, "error.html", self:context(req, { status = status, message = message, title = "Error" }), status)
end

-- A failure of MySQL or Redis: logged; the client gets 503 without the details.
function app:unavailable(req, res, what, err)
  log.error(what .. " failed", { err = tostring(err), path = req.path })
  return self:fail(req, res, 503, "the service is unavailable, try again shortly")
end

-- --- the request's session, user and CSRF check -----------------------------------------------

-- app:handler(fn[, api]) -> a route handler: loads the session (req.session, req.user) and
-- refuses an unsafe method without the session's CSRF token (403) before fn(req, res) runs.
function app:handler(fn, api)
  return function(req, res)
    req.api = api
    local s, err = self.sessions:load(req, res)
    if not s then return self:unavailable(req, res, "session load", err) end
    if s.data.uid then req.user = { id = s.data.uid, name = s.data.name } end
    if not csrf.verify(req, s) then return self:fail(req, res, 403, "missing or wrong CSRF token") end
    return fn(req, res, s)
  end
end

-- app:context(req, t) -> t with what every page shows: the user and, for the forms, the CSRF
-- token (made only when the page has a form, so that browsing makes no session)
function app:context(req, t, forms)
  t = t or {}
  t.user = req.user
  if req.user or forms then
    t.csrf = csrf.token(req.session)
  end
  return t
end

-- app.log_in(req, user) -> true | nil, err: the session now belongs to user, under a new id
-- and with a new CSRF token
function app.log_in(req, user)
  local s = req.session
  s.data.uid, s.data.name = user.id, user.name
  csrf.reset(s)
  req.user = user
  return s:rotate()
end

-- --- paging ---------------------------------------------------------------------------------

-- The ?page= of the request: an integer >= 1, or nil when it is not one.
function app.page(req)
  local p = req.query.page
  if p == nil then return 1 end
  p = tonumber(p)
  if not p or p < 1 or p ~= floor(p) or p > 1e9 then return nil end
  return p
end

function app:pages(total)
  return max(1, ceil(total / self.config.page_size))
end

-- --- lookups that answer for themselves when they fail ------------------------------------------

-- app:find_board(req, res, slug) -> the board, or nil once the answer (404, 503) is sent
function app:find_board(req, res, slug)
  local board, err = self.forum:board(slug)
  if board == nil then self:unavailable(req, res, "board", err) return nil end
  if not board then self:fail(req, res, 404, "no such board") return nil end
  return board
end

-- app:listing(req, res, kind, key[, page]) -> a page of a board's threads (kind "board", key
-- its slug) or of a thread's posts ("thread", its id): {parent, items, page, pages}; or nil
-- once the answer (404, 503) is sent. page: a number, "last", or by default the ?page= of req.
function app:listing(req, res, kind, key, page)
  local forum, board = self.forum, kind == "board"
  local parent, err
  if board then parent, err = forum:board(key) else parent, err = forum:thread(key) end
  if parent == nil then self:unavailable(req, res, kind, err) return nil end
  if not parent then self:fail(req, res, 404, "no such " .. kind) return nil end
  local pages = self:pages(board and parent.thread_count or parent.post_count)
  if page == "last" then page = pages elseif page == nil then page = app.page(req) end
  if not page or page > pages then self:fail(req, res, 404, "no such page") return nil end
  local size, items = self.config.page_size
  if board then items, err = forum:threads(parent.id, page, size) else items, err = forum:posts(parent.id, page, size) end
  if not items then self:unavailable(req, res, board and "threads" or "posts", err) return nil end
  return { parent = parent, items = items, page = page, pages = pages }
end

-- --- the data as the API gives it -------------------------------------------------------------

local function iso(ts) return ts and (tostring(ts):gsub(" ", "T") .. "Z") end
app.iso = iso

-- An array that encodes as a JSON array even when empty, with the fields of each row that
-- shape(row) returns (rows from mysql also hold `columns`, which JSON has no use for).
function app.list(rows, shape)
  local out = setmetatable({}, cjson.array_mt)
  for i, row in ipairs(rows) do out[i] = shape(row) end
  return out
end

function app.board_json(b)
  return { slug = b.slug, title = b.title, description = b.description, threads = b.thread_count,
    posts = b.post_count }
end

function app.thread_json(t)
  return { id = t.id, title = t.title, author = t.author, posts = t.post_count, created_at = iso(t.created_at),
    last_post_at = iso(t.last_post_at), board = t.board_slug }
end

function app.post_json(p)
  return { id = p.id, author = p.author, body = p.body, created_at = iso(p.created_at) }
end

-- Title and body of a new thread or post: trimmed; nil and a message when out of bounds.
function app.text(value, what, max_len)
  if type(value) ~= "string" then return nil, what .. " is missing" end
  value = value:gsub("^%s+", ""):gsub("%s+$", "")
  if value == "" then return nil, what .. " is empty" end
  if #value > max_len then return nil, what .. " is longer than " .. max_len .. " bytes" end
  return value
end

return app
