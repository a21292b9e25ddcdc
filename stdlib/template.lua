-- template: HTML templates compiled to Lua functions, with escaping by default, layouts and
-- partials; the syntax of lua-resty-template.
--
--   local template = require "template"
--   local views = template.new{ root = "views" }            -- files come from the app (bundle)
--   res:finish(views:render("board.html", { board = b, threads = list }))
--
--   {{ expr }}          the value, HTML-escaped (nil and NULL give "")
--   {* expr *}          the value as it is (trusted HTML)
--   {% lua code %}      a statement: {% for _, t in ipairs(threads) do %} ... {% end %}
--   {# comment #}       nothing
--   {(file.html)}       a partial, rendered with the variables of this template;
--   {(file.html, ctx)}  ... and with those of the table ctx over them
--   {-name-}...{-name-} a block: rendered into blocks.name instead of the output
--   {-raw-}...{-raw-}   the text between, as it is
--   {% layout "l.html" %} render l.html around this template's output, which it gets as
--                       `content` ({* content *}), with the same variables and `blocks`
--   \{{                 a literal {{ (likewise for the other openers)
--
-- A line that holds only a {% %}, {# #}, {( )} or block tag (and blanks) leaves nothing of
-- its own in the output, not even its line break (a partial's own text stays); so does a
-- block that starts a line and ends one: {-title-}...{-title-}. Names in a template are looked up in the context table,
-- then in the engine's helpers, then in Lua's globals; assignments stay inside the render.
-- A template is compiled once and its function kept: rendering runs no `load`. Errors
-- name the template file and its line: "views/board.html:12: attempt to index ...".
local bundle = require "bundle"
local cjson = require "cjson"
local options = require "luaio.options"

local type, tostring, setmetatable, setfenv, load, select, rawget = type, tostring, setmetatable, setfenv, load, select, rawget
local concat = table.concat
local find, sub, gsub, format, match = string.find, string.sub, string.gsub, string.format, string.match
local null = cjson.null

local template = {}

-- --- escaping ----------------------------------------------------------------------------------

local ESCAPES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

-- template.escape(value) -> text safe inside HTML text and quoted attribute values
local function escape(v)
  if type(v) ~= "string" then
    if v == nil or v == null then return "" end
    v = tostring(v)
  end
  if not find(v, "[&<>\"']") then return v end
  return (gsub(v, "[&<>\"']", ESCAPES))
end
template.escape = escape

local function raw(v)
  if type(v) == "string" then return v end
  if v == nil or v == null then return "" end
  return tostring(v)
end

-- --- the compiler --------------------------------------------------------------------------------

-- The generated function keeps the template's line numbers: text goes in as %q strings
-- (which keep their line breaks), code as written, and the prelude shares line 1.
local PRELUDE = "local _esc, _raw, _inc, _cat, _setfenv = ... " ..
  "return function(_env, _blocks) return _setfenv(function() local _b, _n, _s = {}, 0, {} "
local EPILOGUE = " return _cat(_b, '', 1, _n) end, _env)() end"

local CLOSERS = { ["{"] = "}}", ["*"] = "*}", ["%"] = "%}", ["#"] = "#}", ["("] = ")}" }

local function fail(chunk, src, pos, msg)
  local line = select(2, gsub(sub(src, 1, pos), "\n", "")) + 1
  error(format("%s:%d: %s", chunk, line, msg), 0)
end

-- Compiles template text into the source of a Lua chunk.
local function translate(src, chunk)
  local code, n = { PRELUDE }, 1
  local function emit(s) n = n + 1; code[n] = s end
  local function text(s)
    if s ~= "" then emit(format("_n=_n+1;_b[_n]=%q;", s)) end
  end
  -- A statement, block or partial tag alone on its line takes the line with it: the text
  -- before it loses its trailing blanks, and the blanks and line break after it are skipped
  -- (the break stays in the code, so that line numbers still match).
  -- line_start: where the blanks before the tag begin in `before` (the text from `start`),
  -- when only blanks precede the tag on its line. line_end: the position after the blanks
  -- and the line break that follow the tag, when nothing else does; and whether there was
  -- a break.
  local function line_start(before, start)
    local head = match(before, "()[ \t]*$")
    local prev = head > 1 and sub(before, head - 1, head - 1) or (start > 1 and sub(src, start - 1, start - 1) or "\n")
    return prev == "\n" and head or nil
  end
  local function line_end(after)
    local tail = match(src, "^[ \t]*\r?\n()", after)
    if tail then return tail, true end
    if match(src, "^[ \t]*$", after) then return #src + 1, false end
  end
  -- Returns the text to emit, the position after the tag, whether a line break was skipped.
  local function standalone(before, start, after)
    local head, tail, nl = line_start(before, start), line_end(after)
    if head and tail then return sub(before, 1, head - 1), tail, nl end
    return before, after, false
  end
  local pos, blocks = 1, {}
  while true do
    local s, _, kind = find(src, "{([{*%%#%(%-])", pos)
    if not s then break end
    local before = sub(src, pos, s - 1)
    if sub(src, s - 1, s - 1) == "\\" then -- an escaped opener: the two characters as text
      text(sub(src, pos, s - 2) .. "{" .. kind)
      pos = s + 2
    elseif kind == "-" then
      local name, after = match(src, "^{%-([%a_][%w_]*)%-}()", s)
      if not name then
        text(before .. "{-")
        pos = s + 2
      else
        local opens_line, nl = line_start(before, pos) ~= nil, false
        if name == "raw" then
          before, after, nl = standalone(before, pos, after)
          text(before)
          local e, raw_end = find(src, "{-raw-}", after, true)
          if not e then fail(chunk, src, s, "'{-raw-}' is not closed") end
          text(sub(src, after, e - 1))
          pos = raw_end + 1
        elseif blocks[#blocks] and blocks[#blocks].name == name then -- the end of the block
          local tail, tail_nl = line_end(after)
          if blocks[#blocks].opens_line and tail then -- a block on lines of its own
            if opens_line then before = sub(before, 1, line_start(before, pos) - 1) end
            after, nl = tail, tail_nl
          end
          text(before)
          blocks[#blocks] = nil
          emit(format("_blocks[%q]=_cat(_b,'',1,_n);_n=_s[#_s];_s[#_s]=nil;_b=_s[#_s];_s[#_s]=nil;", name))
          pos = after
        else
          before, after, nl = standalone(before, pos, after)
          text(before)
          blocks[#blocks + 1] = { name = name, opens_line = opens_line }
          emit("_s[#_s+1]=_b;_s[#_s+1]=_n;_b,_n={},0;")
          pos = after
        end
        if nl then emit("\n") end
      end
    else
      local close = CLOSERS[kind]
      local e = find(src, close, s + 2, true)
      if not e then fail(chunk, src, s, "'{" .. kind .. "' is not closed by '" .. close .. "'") end
      local body = sub(src, s + 2, e - 1)
      local after = e + 2
      local nl = false
      if kind == "%" or kind == "#" or kind == "(" then before, after, nl = standalone(before, pos, after) end
      if kind == "%" or kind == "#" then
        text(before)
        if kind == "%" then
          if find(match(body, "[^\n]*$"), "--", 1, true) then
            fail(chunk, src, e, "a Lua comment in {% %} would hide what follows: use {# #}")
          end
          emit(body .. " ")
        else
          emit((gsub(body, "[^\n]", "")))
        end
      else
        text(before)
        if match(body, "^%s*$") then fail(chunk, src, s, "empty '{" .. kind .. close .. "'") end
        if kind == "{" then
          emit("_n=_n+1;_b[_n]=_esc(" .. body .. ");")
        elseif kind == "*" then
          emit("_n=_n+1;_b[_n]=_raw(" .. body .. ");")
        else -- a partial: a bare or quoted name, then maybe a context expression
          local name, rest = match(body, "^%s*([^,]-)%s*,(.*)$")
          name = name or match(body, "^%s*(.-)%s*$")
          name = match(name, "^'(.*)'$") or match(name, '^"(.*)"$') or name
          emit(format("_n=_n+1;_b[_n]=_inc(%q,%s,_env,_blocks);", name, rest or "nil"))
        end
      end
      if nl then emit("\n") end
      pos = after
    end
  end
  if #blocks > 0 then fail(chunk, src, #src, "block '{-" .. blocks[#blocks].name .. "-}' is not closed") end
  text(sub(src, pos))
  emit(EPILOGUE)
  return concat(code)
end

-- --- engines ----------------------------------------------------------------------------------------

local Engine = {}
Engine.__index = Engine

local MAX_DEPTH = 64 -- partials inside partials, layouts around layouts

-- Makes the render function of a source; chunk names it in errors.
local function build(engine, src, chunk)
  local fn, err = load(translate(src, chunk), "@" .. chunk)
  if not fn then error(err, 0) end
  return fn(escape, raw, function(...) return engine:_include(...) end, concat, setfenv)
end

function Engine:_path(name)
  return self.root == "" and name or self.root .. "/" .. name
end

-- The render function of a file of the app, compiled at its first use.
function Engine:_get(name)
  local fn = self.cache and self.files[name]
  if fn then return fn end
  local path = self:_path(name)
  local src, err = bundle.read(path)
  if not src then error(format("template '%s' not found (%s: %s)", name, path, tostring(err)), 0) end
  fn = build(self, src, path)
  if self.cache then self.files[name] = fn end
  return fn
end

local DEPTH = {} -- the key of an env's nesting depth (no name reaches it)

-- Renders fn with ctx over parent (the including template's variables, or the engine's
-- helpers and the globals). Returns the text and the layout the template asked for.
function Engine:_run(fn, ctx, parent, blocks, content, depth)
  if ctx ~= nil and type(ctx) ~= "table" then error("template context must be a table, got " .. type(ctx), 0) end
  if depth > MAX_DEPTH then
    error("templates nested more than " .. MAX_DEPTH .. " deep (a partial or layout that includes itself?)", 0)
  end
  local helpers, state = self.helpers, {}
  local env = setmetatable({
    blocks = blocks,
    content = content,
    layout = function(name) state.layout = name end,
    [DEPTH] = depth,
  }, {
    __index = function(_, k)
      local v = ctx and ctx[k]
      if v ~= nil then return v end
      if parent then return parent[k] end
      v = helpers[k]
      if v ~= nil then return v end
      return _G[k]
    end,
  })
  return fn(env, blocks), state.layout
end

function Engine:_include(name, ctx, parent, blocks)
  return (self:_run(self:_get(name), ctx, parent, blocks, nil, rawget(parent, DEPTH) + 1))
end

-- Renders fn and the layouts it asks for.
function Engine:_render(fn, ctx)
  local blocks = {}
  local out, layout = self:_run(fn, ctx, nil, blocks, nil, 1)
  local depth = 1
  while layout do
    depth = depth + 1
    out, layout = self:_run(self:_get(layout), ctx, nil, blocks, out, depth)
  end
  return out
end

-- Argument errors, raised at the caller of the public function that checks (level 3 from
-- here: that function calls these directly).
local function argerror(argn, fname, message)
  error(format("bad argument #%d to '%s' (%s)", argn, fname, message), 3)
end

-- A template name reaches bundle.read, a chunk name load: both C strings, cut at a zero byte.
local function check_name(name, argn, fname, what) options.cstring(name, argn, fname, what, 3) end

local function check_ctx(ctx, argn, fname)
  if ctx ~= nil and type(ctx) ~= "table" then
    error(format("bad argument #%d to '%s' (table expected, got %s)", argn, fname, type(ctx)), 3)
  end
end

-- The function compile and compile_string return; chunk names it in argument errors.
local function compiled(engine, fn, chunk)
  return function(ctx)
    check_ctx(ctx, 1, chunk)
    return engine:_render(fn, ctx)
  end
end

-- engine:render(name[, ctx]) -> the text of the file `name` (under root) rendered with ctx
function Engine:render(name, ctx)
  check_name(name, 1, "render", "template name")
  check_ctx(ctx, 2, "render")
  return self:_render(self:_get(name), ctx)
end

-- engine:compile(name) -> function(ctx) -> text (the file compiled now: errors show early)
function Engine:compile(name)
  check_name(name, 1, "compile", "template name")
  return compiled(self, self:_get(name), name)
end

-- The render function of a source, compiled once per source and name.
local function from_string(engine, src, name)
  local key = name and name .. "\0" .. src or src -- a name holds no zero byte: no clash
  local fn = engine.strings[key]
  if not fn then
    fn = build(engine, src, name or "template")
    if engine.cache then engine.strings[key] = fn end
  end
  return fn
end

-- engine:compile_string(source[, name]) -> function(ctx) -> text, cached by source; name
-- (default "template") names it in errors
function Engine:compile_string(src, name)
  if type(src) ~= "string" then argerror(1, "compile_string", "string expected, got " .. type(src)) end
  if name ~= nil then check_name(name, 2, "compile_string", "string") end
  return compiled(self, from_string(self, src, name), name or "template")
end

-- engine:render_string(source[, ctx]) -> text
function Engine:render_string(src, ctx)
  if type(src) ~= "string" then argerror(1, "render_string", "string expected, got " .. type(src)) end
  check_ctx(ctx, 2, "render_string")
  return self:_render(from_string(self, src), ctx)
end

-- engine:clear(): forgets every compiled template (files are read again at next use)
function Engine:clear()
  self.files, self.strings = {}, {}
end

local OPTIONS = {
  root = { "string", default = "" },
  helpers = { "table" },
  cache = { "boolean", default = true },
}

-- template.new([options]) -> an engine. Options: root (the folder of the templates, in the
-- app: "views"), helpers (a table of values and functions every template sees), cache
-- (true: compile each file once; false: read and compile at every render, for development)
function template.new(opts)
  local o = options.check(opts, OPTIONS, 1, "new")
  local root = (gsub(o.root, "/+$", ""))
  local helpers = { escape = escape }
  for k, v in pairs(o.helpers or {}) do helpers[k] = v end
  return setmetatable({ root = root, helpers = helpers, cache = o.cache, files = {}, strings = {} }, Engine)
end

-- The module's own engine, on the app's root: template.render("views/x.html", ctx), ...
local default = template.new()
for _, f in ipairs({ "render", "compile", "compile_string", "render_string", "clear" }) do
  template[f] = function(...) return default[f](default, ...) end
end

return template
