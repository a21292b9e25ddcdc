-- template: the syntax (escaping, raw values, code, comments, blocks, partials, layouts), line
-- trimming, errors that name the template and line, caching, and templates read from an
-- app's files under `luaio run` and inside a built executable.
local test = require "test"
local template = require "template"
local cjson = require "cjson"

local function render(src, ctx) return template.render_string(src, ctx) end

test.case("{{ }} escapes, {* *} does not; nil and NULL are empty", function()
  test.eq(render([[<p title="{{ t }}">{{ t }}</p>{* t *}]], { t = [[<a href="x">'&'</a>]] }),
    [[<p title="&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;">&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;</p>]] ..
    [[<a href="x">'&'</a>]])
  test.eq(render("[{{ missing }}|{* missing *}|{{ n }}|{{ b }}|{{ null }}]", { n = 1.5, b = false, null = cjson.null }),
    "[||1.5|false|]")
  test.eq(render("{{ a.b .. '!' }} {{ #list }} {{ f(2) }}", { a = { b = "x" }, list = { 1, 2, 3 }, f = function(x) return x * 2 end }),
    "x! 3 4")
  test.eq(template.escape("plain text"), "plain text")
  test.eq(template.escape(nil), "")
end)

test.case("{% code %}: loops and conditions; a tag alone on its line leaves no line behind", function()
  local src = table.concat({
    "<ul>",
    "{% for i, item in ipairs(items) do %}",
    "  {% if i > 1 then %}",
    "  <li>{{ i }}: {{ item }}</li>",
    "  {% end %}",
    "{% end %}",
    "</ul>",
    "{# a comment",
    "   over two lines #}",
    "inline {% if true then %}yes{% end %} stays",
    "",
  }, "\n")
  test.eq(render(src, { items = { "a", "b", "c" } }), "<ul>\n  <li>2: b</li>\n  <li>3: c</li>\n</ul>\ninline yes stays\n")
  test.eq(render("{% local x = 2 %}{{ x * 21 }}"), "42")
  test.eq(render("a\r\n{% if true then %}\r\nb\r\n{% end %}\r\n"), "a\r\nb\r\n", "CRLF lines too")
end)

test.case("escaped openers, raw blocks, blocks; names from the context, then helpers, then globals", function()
  test.eq(render([[\{{ x }} \{% y %} \{* z *}]]), "{{ x }} {% y %} {* z *}")
  test.eq(render("{-raw-}{{ not }} {% touched %}{-raw-}!"), "{{ not }} {% touched %}!")
  test.eq(render("{-side-}in {{ v }}{-side-}main {* blocks.side *}", { v = 1 }), "main in 1")
  test.eq(render("{-b-}\n  in\n  {-b-}\nout {* blocks.b *}"), "out   in\n", "a block on lines of its own")
  test.eq(render("{-b-}x{-b-}\ny"), "y", "a block on one line of its own")
  test.eq(render("a {-b-}x{-b-}\ny"), "a \ny", "a block inside a line")
  test.eq(render("{ {- x -} {-", {}), "{ {- x -} {-", "lone braces are text")
  local engine = template.new({ helpers = { shout = function(s) return s:upper() end, name = "helper" } })
  test.eq(engine:render_string("{{ shout(name) }} {{ string.rep('a', 2) }}"), "HELPER aa")
  test.eq(engine:render_string("{{ shout(name) }}", { name = "ctx" }), "CTX", "the context wins")
  engine:render_string("{% leaked = 1 %}")
  test.eq(rawget(_G, "leaked"), nil, "assignments stay in the render")
end)

test.case("errors name the template and line: syntax, runtime, unclosed tags, comments in code", function()
  test.raises(function() render("one\ntwo\n{% if then %}") end, "^template:3: unexpected symbol near 'then'")
  test.raises(function() render("one\n\n{{ x.y.z }}", { x = {} }) end, "^template:3: attempt to index field 'y'")
  test.raises(function() template.compile_string("a\nb {{ x", "page.html") end, "^page.html:2: '{{' is not closed by '}}'")
  test.raises(function() render("{-b-} never closed") end, "block '{%-b%-}' is not closed")
  test.raises(function() render("\n{% x = 1 -- note %}") end, "template:2: a Lua comment in {%% %%}")
  test.raises(function() render("{{ }}") end, "empty '{{}}'")
  test.raises(function() render("x", "not a table") end, "bad argument #2 to 'render_string' %(table expected, got string%)")
  test.raises(function() template.render(42) end, "bad argument #1 to 'render' %(template name")
  test.raises(function() template.render("no/such/template.html") end, "template 'no/such/template.html' not found")
end)

test.case("wrong arguments raise naming the argument, at the caller's line", function()
  local here = "^tests/template_test%.lua:%d+: "
  local views = template.new({ root = "views" })
  for _, c in ipairs({
    { function() template.compile("a\0b.html") end, "bad argument #1 to 'compile' %(template name without zero bytes expected, got a string with a zero byte%)" },
    { function() template.render("a\0b.html") end, "bad argument #1 to 'render' %(template name without zero bytes expected" },
    { function() views:compile("a\0b.html") end, "bad argument #1 to 'compile' %(template name without zero bytes expected" },
    { function() views:render("a\0b.html") end, "bad argument #1 to 'render' %(template name without zero bytes expected" },
    { function() template.render("x.html", 5) end, "bad argument #2 to 'render' %(table expected, got number%)" },
    { function() template.compile(nil) end, "bad argument #1 to 'compile' %(template name expected, got nil%)" },
    { function() template.compile_string(5) end, "bad argument #1 to 'compile_string' %(string expected, got number%)" },
    { function() template.compile_string("x", {}) end, "bad argument #2 to 'compile_string' %(string expected, got table%)" },
    { function() template.compile_string("x", "a\0b") end, "bad argument #2 to 'compile_string' %(string without zero bytes expected" },
    { function() template.compile_string("x", "page.html")(5) end, "bad argument #1 to 'page.html' %(table expected, got number%)" },
    { function() template.render_string(42) end, "bad argument #1 to 'render_string' %(string expected, got number%)" },
    { function() template.render_string("x", true) end, "bad argument #2 to 'render_string' %(table expected, got boolean%)" },
    { function() template.new(5) end, "bad argument #1 to 'new' %(table expected, got number%)" },
  }) do
    local ok, err = pcall(c[1])
    test.eq(ok, false, c[2])
    test.match(tostring(err), here .. c[2])
  end
  -- the same source under two names keeps each name in its errors
  test.raises(function() template.compile_string("{{ x.y }}", "one.html")({}) end, "^one%.html:1:")
  test.raises(function() template.compile_string("{{ x.y }}", "two.html")({}) end, "^two%.html:1:")
end)

test.case("compile_string: one compilation per source, the function reused with any context", function()
  local f = template.compile_string("<b>{{ who }}</b>")
  test.eq(f({ who = "a" }), "<b>a</b>")
  test.eq(f({ who = "<b>" }), "<b>&lt;b&gt;</b>")
  local function compiled(g) -- the render function a compiled template wraps
    for i = 1, 10 do
      local name, value = debug.getupvalue(g, i)
      if name == "fn" then return value end
    end
  end
  local g = template.compile_string("<b>{{ who }}</b>")
  test.ok(compiled(f) and compiled(f) == compiled(g), "the same source is compiled once")
  test.ok(compiled(template.compile_string("<i>{{ who }}</i>")) ~= compiled(f))
  local nocache = template.new({ cache = false })
  test.ok(compiled(nocache:compile_string("x")) ~= compiled(nocache:compile_string("x")), "cache = false")
end)

-- An app with views: layout, partials (with and without a context), blocks, nested
-- partials; run under `luaio run` and as a built executable.
local APP = {
  ["views/layout.html"] = "<title>{* blocks.title or 'untitled' *}</title>\n<main>\n{* content *}</main>\n",
  ["views/page.html"] = table.concat({
    "{% layout 'layout.html' %}",
    "{-title-}Posts of {{ owner }}{-title-}",
    "{% for _, p in ipairs(posts) do %}",
    "{(partials/post.html, { post = p })}",
    "{% end %}",
    "{(partials/footer.html)}",
    "",
  }, "\n"),
  ["views/partials/post.html"] = "<p>{{ post }} by {{ owner }}</p>\n",
  ["views/partials/footer.html"] = "<footer>{{ #posts }} posts{(\"partials/sign.html\")}</footer>\n",
  ["views/partials/sign.html"] = " - {{ owner }}",
  ["views/loop.html"] = "{(loop.html)}",
  ["views/bad.html"] = "ok\n{{ nothing.here }}\n",
  ["views/cached.html"] = "version 1",
  ["main.lua"] = [[
local template = require "template"
local bundle = require "bundle"
local views = template.new({ root = "views" })
io.write(views:render("page.html", { owner = "<ann>", posts = { "first", "second & last" } }))
print(pcall(views.render, views, "loop.html"))
print(pcall(views.render, views, "bad.html"))
print(views:render("cached.html"))
if not bundle.bundled then
  local f = assert(io.open(bundle.folder .. "/views/cached.html", "w"))
  f:write("version 2")
  f:close()
  print(views:render("cached.html"), template.new({ root = "views", cache = false }):render("cached.html"))
  views:clear()
  print(views:render("cached.html"))
end
]],
}

local EXPECTED = table.concat({
  "<title>Posts of &lt;ann&gt;</title>",
  "<main>",
  "<p>first by &lt;ann&gt;</p>",
  "<p>second &amp; last by &lt;ann&gt;</p>",
  "<footer>2 posts - &lt;ann&gt;</footer>",
  "</main>",
  "false\ttemplates nested more than 64 deep (a partial or layout that includes itself?)",
  "false\tviews/bad.html:2: attempt to index global 'nothing' (a nil value)",
  "version 1",
  "",
}, "\n")

test.case("files of the app: layouts, partials and blocks, under luaio run and in a built executable", function()
  local dir = test.tmpdir() .. "/app"
  for path, text in pairs(APP) do test.write(dir .. "/" .. path, text) end
  local luaio = test.quote(test.luaio)
  local out, status = test.sh(luaio .. " run " .. test.quote(dir))
  test.eq(status, 0, out)
  test.eq(out, EXPECTED .. "version 1\tversion 2\nversion 2\n", "cached until clear(); cache = false reads again")
  test.write(dir .. "/views/cached.html", "version 1")
  out, status = test.sh(luaio .. " build " .. test.quote(dir) .. " -o " .. test.quote(dir .. "/../app.exe"))
  test.eq(status, 0, out)
  out, status = test.sh("cd / && " .. test.quote(dir .. "/../app.exe"))
  test.eq(status, 0, out)
  test.eq(out, EXPECTED, "the same from the bundle")
end)
