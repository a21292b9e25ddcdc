-- The community example in a real browser: headless Chromium (Debian's chromium), driven by
-- puppeteer-core (npm, in out/peers), opens two pages with separate cookies, registers a
-- user in each through the forms, starts a thread in one, replies in the other, and sees the
-- reply in the first after a reload. ./build.sh test installs chromium and puppeteer-core.
--
-- The screenshot of the first page goes to a temporary file; with UPDATE_SCREENSHOTS=1 it
-- replaces docs/community.png (the README's picture).
local test = require "test"
local process = require "process"
local helpers = require "tests.helpers"
local ch = require "tests.community_helpers"

local NODE_PATH = "out/peers/node_modules"

local SCRIPT = [==[
const puppeteer = require("puppeteer-core");
const [base, shot, profile, chromium] = process.argv.slice(2);

function check(ok, what) { if (!ok) throw new Error("check failed: " + what); }

(async () => {
  const browser = await puppeteer.launch({
    executablePath: chromium, headless: true, userDataDir: profile, timeout: 30000,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    // two contexts: two cookie jars, two users
    const pages = [], errors = [];
    for (const name of ["alice", "bob"]) {
      const context = await browser.createBrowserContext();
      const page = await context.newPage();
      await page.setViewport({ width: 880, height: 620 });
      page.on("pageerror", (e) => errors.push(name + ": " + e.message));
      await page.goto(base + "/register");
      await page.type("input[name=name]", name);
      await page.type("input[name=password]", "password-" + name);
      await Promise.all([page.waitForNavigation(), page.click("#account button")]);
      check(await page.$eval(".me", (e) => e.textContent) === name, name + " is logged in");
      pages.push(page);
    }
    const [a, b] = pages;

    // alice starts a thread
    await a.goto(base + "/b/luaio");
    await a.type("#new-thread input[name=title]", "One binary, no dependencies");
    await a.type("#new-thread textarea", "luaio build gives one static executable: this forum runs from it.");
    await Promise.all([a.waitForNavigation(), a.click("#new-thread button")]);
    const thread = a.url();
    check(/\/t\/\d+$/.test(thread), "alice is on her thread: " + thread);

    // bob reads it and replies with Ctrl+Enter (static/app.js submits the form)
    await b.goto(thread);
    check((await b.$eval(".posts", (e) => e.innerText)).includes("one static executable"), "bob sees the thread");
    await b.type("#reply textarea", "Built it, copied it into an empty container, it just ran.");
    await Promise.all([b.waitForNavigation(), b.keyboard.down("Control").then(() => b.keyboard.press("Enter"))]);
    await b.keyboard.up("Control");
    check((await b.$eval(".posts", (e) => e.innerText)).includes("it just ran"), "bob sees his reply");

    // alice reloads and sees bob's reply; the script turned times into "just now"
    await a.reload();
    const posts = await a.$$eval(".post", (list) => list.map((p) => p.innerText));
    check(posts.length === 2, "two posts on alice's page: " + posts.length);
    check(posts[1].includes("bob") && posts[1].includes("it just ran"), "alice sees bob's reply");
    check(await a.$eval("time", (t) => t.textContent) === "just now", "relative times");
    const cookie = (await a.browserContext().cookies()).find((c) => c.name === "sid");
    check(cookie && cookie.httpOnly && cookie.sameSite === "Lax", "the session cookie is HttpOnly, SameSite=Lax");
    check(await a.evaluate(() => document.cookie) === "", "scripts cannot read the session cookie");
    check(errors.length === 0, "no script errors: " + errors.join("; "));
    await a.screenshot({ path: shot });
    console.log("browser test passed");
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
]==]

test.case("two browsers: alice starts a thread, bob replies, alice sees the reply", function()
  local chromium = test.sh("command -v chromium"):match("%S+")
  if not chromium then test.skip("chromium is not installed (./build.sh test installs it)") end
  if not io.open(NODE_PATH .. "/puppeteer-core/package.json") then
    error("puppeteer-core is missing: ./build.sh test installs it into " .. NODE_PATH)
  end
  local app = ch.start(ch.backends())
  local dir = test.tmpdir()
  local script = dir .. "/browser.js"
  test.write(script, SCRIPT)
  local shot = dir .. "/community.png"
  local out, status = test.sh(("NODE_PATH=%s timeout 50 node %s %s %s %s %s"):format(NODE_PATH, test.quote(script),
    app.url, test.quote(shot), test.quote(dir .. "/profile"), test.quote(chromium)))
  test.eq(status, 0, "the browser script: " .. out .. "\nthe app's output:\n" .. helpers.output(app.peer))
  test.match(out, "browser test passed")
  local png = assert(io.open(shot, "rb")):read("*a")
  test.eq(png:sub(1, 8), "\137PNG\r\n\26\n", "a PNG screenshot")
  if process.getenv("UPDATE_SCREENSHOTS") == "1" then test.write("docs/community.png", png) end
end)
