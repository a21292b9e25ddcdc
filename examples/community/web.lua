-- The HTML pages: boards, threads, posts, and the account forms. Every unsafe request
-- (a form's POST) carries the session's CSRF token in its _csrf field.
local app = require "app"

local TITLE_MAX, BODY_MAX = 200, 10000

-- A local path to go back to after logging in: "/..." but not "//host" (an open redirect).
local function local_path(p)
  if type(p) == "string" and p:match("^/[%w%-%._~/%?=&%%#]*$") and not p:match("^//") then return p end
  return "/"
end

return function(router, a)
  local forum, size = a.forum, a.config.page_size

  router:get("/", a:handler(function(req, res)
    local boards, err = forum:boards()
    if not boards then return a:unavailable(req, res, "boards", err) end
    return a:html(res, "index.html", a:context(req, { boards = boards }))
  end))

  -- The board page (and, with a message, the page again after a refused new thread).
  local function board_page(req, res, slug, status, problem, draft)
    local l = a:listing(req, res, "board", slug, status and 1)
    if not l then return end
    return a:html(res, "board.html", a:context(req, {
      title = l.parent.title, board = l.parent, threads = l.items, page = l.page, pages = l.pages,
      base = "/b/" .. l.parent.slug, problem = problem, draft = draft or {},
    }), status)
  end

  router:get("/b/:slug", a:handler(function(req, res) return board_page(req, res, req.params.slug) end))

  -- A new thread.
  router:post("/b/:slug", a:handler(function(req, res)
    if not req.user then return app.redirect(res, "/login?next=/b/" .. req.params.slug) end
    local form = req:form() or {}
    local title, problem = app.text(form.title, "the title", TITLE_MAX)
    local body, problem2 = app.text(form.body, "the post", BODY_MAX)
    if not (title and body) then
      return board_page(req, res, req.params.slug, 400, problem or problem2, form)
    end
    local board = a:find_board(req, res, req.params.slug)
    if not board then return end
    local id, err = forum:create_thread(board.id, req.user.id, title, body)
    if not id then return a:unavailable(req, res, "new thread", err) end
    return app.redirect(res, "/t/" .. id)
  end))

  local function thread_page(req, res, id, page, status, problem, draft)
    local l = a:listing(req, res, "thread", id, page)
    if not l then return end
    return a:html(res, "thread.html", a:context(req, {
      title = l.parent.title, thread = l.parent, posts = l.items, page = l.page, pages = l.pages,
      first = (l.page - 1) * size, base = "/t/" .. l.parent.id, problem = problem, draft = draft or {},
    }), status)
  end

  router:get("/t/:id", a:handler(function(req, res)
    local id = tonumber(req.params.id)
    if not id then return a:fail(req, res, 404, "no such thread") end
    return thread_page(req, res, id)
  end))

  -- A reply: back to the page where it landed.
  router:post("/t/:id", a:handler(function(req, res)
    local id = tonumber(req.params.id)
    if not id then return a:fail(req, res, 404, "no such thread") end
    if not req.user then return app.redirect(res, "/login?next=/t/" .. id) end
    local form = req:form() or {}
    local body, problem = app.text(form.body, "the post", BODY_MAX)
    if not body then return thread_page(req, res, id, "last", 400, problem, form) end
    local post, number = forum:reply(id, req.user.id, body)
    if post == nil then return a:unavailable(req, res, "reply", number) end
    if not post then return a:fail(req, res, 404, "no such thread") end
    return app.redirect(res, ("/t/%d?page=%d#p%d"):format(id, math.ceil(number / size), post))
  end))

  -- --- accounts ---

  local function form_page(view, title)
    return function(req, res, s, status, problem, name)
      return a:html(res, view, a:context(req, {
        title = title, problem = problem, name = name or "", next = local_path(req.query.next),
      }, true), status)
    end
  end
  local login_page, register_page = form_page("login.html", "Log in"), form_page("register.html", "Register")

  router:get("/login", a:handler(login_page))
  router:get("/register", a:handler(register_page))

  local function enter(account_fn, page)
    return a:handler(function(req, res, s)
      local form = req:form() or {}
      local user, problem, status = account_fn(a.accounts, form.name, form.password)
      if not user then
        if status >= 500 then return a:unavailable(req, res, "account", problem) end
        return page(req, res, s, status, problem, form.name)
      end
      local ok, err = app.log_in(req, user)
      if not ok then return a:unavailable(req, res, "session save", err) end
      return app.redirect(res, local_path(form.next))
    end)
  end
  router:post("/login", enter(a.accounts.login, login_page))
  router:post("/register", enter(a.accounts.register, register_page))

  router:post("/logout", a:handler(function(req, res, s)
    local ok, err = s:destroy()
    if not ok then return a:unavailable(req, res, "session destroy", err) end
    return app.redirect(res, "/")
  end))

  router:all("/*", a:handler(function(req, res) return a:fail(req, res, 404, "no such page") end))
end
