-- The JSON API: the same data as the pages. Clients keep the session cookie and send the
-- CSRF token from GET /api/me in an X-CSRF-Token header with every POST.
local cjson = require "cjson.safe"
local csrf = require "csrf"
local app = require "app"

local TITLE_MAX, BODY_MAX = 200, 10000

return function(router, a)
  local forum, size = a.forum, a.config.page_size

  local function api(fn) return a:handler(fn, true) end

  -- The request's JSON object, or nil after answering 400.
  local function body(req, res)
    local text, err = req:body()
    local value = text and cjson.decode(text)
    if type(value) ~= "table" then
      a:fail(req, res, 400, text and "a JSON object expected" or "cannot read the body: " .. tostring(err))
      return nil
    end
    return value
  end

  local function user_json(u) return u and { id = u.id, name = u.name } or cjson.null end

  router:get("/api/me", api(function(req, res)
    local token, err = csrf.token(req.session)
    if not token then return a:unavailable(req, res, "session save", err) end
    return a:json(res, { user = user_json(req.user), csrf = token })
  end))

  local function enter(account_fn, status_ok)
    return api(function(req, res)
      local b = body(req, res)
      if not b then return end
      local user, problem, status = account_fn(a.accounts, b.name, b.password)
      if not user then
        if status >= 500 then return a:unavailable(req, res, "account", problem) end
        return a:fail(req, res, status, problem)
      end
      local ok, err = app.log_in(req, user)
      if not ok then return a:unavailable(req, res, "session save", err) end
      -- the session is new: so is its CSRF token
      local token = csrf.token(req.session)
      return a:json(res, { user = user_json(user), csrf = token }, status_ok)
    end)
  end
  router:post("/api/register", enter(a.accounts.register, 201))
  router:post("/api/login", enter(a.accounts.login, 200))

  router:post("/api/logout", api(function(req, res, s)
    local ok, err = s:destroy()
    if not ok then return a:unavailable(req, res, "session destroy", err) end
    return a:json(res, { user = cjson.null })
  end))

  router:get("/api/boards", api(function(req, res)
    local boards, err = forum:boards()
    if not boards then return a:unavailable(req, res, "boards", err) end
    return a:json(res, { boards = app.list(boards, app.board_json) })
  end))

  router:get("/api/boards/:slug", api(function(req, res)
    local l = a:listing(req, res, "board", req.params.slug)
    if not l then return end
    return a:json(res, { board = app.board_json(l.parent), threads = app.list(l.items, app.thread_json),
      page = l.page, pages = l.pages })
  end))

  router:post("/api/boards/:slug/threads", api(function(req, res)
    if not req.user then return a:fail(req, res, 401, "log in first") end
    local b = body(req, res)
    if not b then return end
    local title, problem = app.text(b.title, "the title", TITLE_MAX)
    local text, problem2 = app.text(b.body, "the post", BODY_MAX)
    if not (title and text) then return a:fail(req, res, 400, problem or problem2) end
    local board = a:find_board(req, res, req.params.slug)
    if not board then return end
    local id, post = forum:create_thread(board.id, req.user.id, title, text)
    if not id then return a:unavailable(req, res, "new thread", post) end
    return a:json(res, { thread = { id = id, title = title }, post = { id = post } }, 201)
  end))

  router:get("/api/threads/:id", api(function(req, res)
    local l = a:listing(req, res, "thread", tonumber(req.params.id) or 0)
    if not l then return end
    return a:json(res, { thread = app.thread_json(l.parent), posts = app.list(l.items, app.post_json),
      page = l.page, pages = l.pages })
  end))

  router:post("/api/threads/:id/posts", api(function(req, res)
    if not req.user then return a:fail(req, res, 401, "log in first") end
    local b = body(req, res)
    if not b then return end
    local text, problem = app.text(b.body, "the post", BODY_MAX)
    if not text then return a:fail(req, res, 400, problem) end
    local post, number = forum:reply(tonumber(req.params.id) or 0, req.user.id, text)
    if post == nil then return a:unavailable(req, res, "reply", number) end
    if not post then return a:fail(req, res, 404, "no such thread") end
    return a:json(res, { post = { id = post, number = number }, page = math.ceil(number / size) }, 201)
  end))

  router:all("/api/*", api(function(req, res) return a:fail(req, res, 404, "no such endpoint") end))
end
