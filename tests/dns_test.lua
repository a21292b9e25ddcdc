-- The dns module: lookups through the thread pool, checked against /etc/hosts. Only
-- loopback exists here, so no test asks for a name on the internet.
local test = require "test"
local dns = require "dns"
local task = require "task"

-- The addresses /etc/hosts gives `name` for the family ("4" or "6"), as a set.
local function hosts_entries(name, family)
  local set = {}
  local f = io.open("/etc/hosts")
  if not f then return set end
  for line in f:lines() do
    line = line:gsub("#.*", "")
    local addr, names = line:match("^%s*(%S+)%s+(.+)$")
    if addr and (" " .. names .. " "):find("%s" .. name:gsub("%p", "%%%0") .. "%s") then
      if (family == "6") == (addr:find(":") ~= nil) then set[addr] = true end
    end
  end
  f:close()
  return set
end

local function as_set(list)
  local set = {}
  for _, v in ipairs(list) do set[v] = true end
  return set
end

test.case("resolve4('localhost') gives 127.0.0.1, once", function()
  local addrs, err = dns.resolve4("localhost")
  test.ok(addrs, tostring(err))
  test.ok(as_set(addrs)["127.0.0.1"], "127.0.0.1 in " .. table.concat(addrs, ","))
  local seen = {}
  for _, a in ipairs(addrs) do
    test.ok(not seen[a], "no duplicate " .. a)
    seen[a] = true
  end
  if next(hosts_entries("localhost", "4")) then
    test.eq(as_set(addrs), hosts_entries("localhost", "4"), "what /etc/hosts says")
  end
end)

test.case("resolve6('localhost') gives ::1 when /etc/hosts has it, ENOTFOUND when not", function()
  local addrs, err = dns.resolve6("localhost")
  local want = hosts_entries("localhost", "6")
  if next(want) then
    test.ok(addrs, tostring(err))
    test.eq(as_set(addrs), want)
  else
    -- this machine's /etc/hosts lists no IPv6 localhost: the resolver must say so cleanly
    test.eq(addrs, nil)
    test.eq(err.name, "ENOTFOUND")
  end
end)

test.case("numeric addresses resolve to themselves, in canonical form", function()
  test.eq(dns.resolve4("127.0.0.1"), { "127.0.0.1" })
  test.eq(dns.resolve4("10.1.2.3"), { "10.1.2.3" })
  test.eq(dns.resolve6("::1"), { "::1" })
  test.eq(dns.resolve6("2001:DB8:0:0:0:0:0:1"), { "2001:db8::1" })
  -- a numeric address of the other family is no answer
  local addrs, err = dns.resolve6("127.0.0.1")
  test.eq(addrs, nil)
  test.eq(err.name, "ENOTFOUND")
end)

test.case("a name under .invalid gives nil, ENOTFOUND with libuv's code kept", function()
  for _, resolve in ipairs({ dns.resolve4, dns.resolve6 }) do
    local addrs, err = resolve("no-such-host.invalid")
    test.eq(addrs, nil)
    test.eq(err.name, "ENOTFOUND")
    test.eq(type(err.code), "number")
    test.ok(err.code < 0, "a libuv error code")
    test.match(tostring(err), "^ENOTFOUND: ")
  end
end)

test.case("wrong argument types raise, naming the argument", function()
  test.raises(function() dns.resolve4(nil) end, "bad argument #1 to 'resolve4' %(string expected, got nil%)")
  test.raises(function() dns.resolve4(127) end, "bad argument #1 to 'resolve4' %(string expected, got number%)")
  test.raises(function() dns.resolve6({}) end, "bad argument #1 to 'resolve6' %(string expected, got table%)")
  test.raises(function() dns.resolve4("local\0host") end, "bad argument #1 to 'resolve4' %(string without zero bytes expected, got a string with a zero byte%)")
end)

test.case("a lookup outside a task raises", function()
  local co = coroutine.wrap(function() return dns.resolve4("localhost") end)
  test.raises(co, "resolve4: cannot wait here")
end)

-- localhost comes from /etc/hosts, so this tests luaio's concurrency, not a DNS server's.
test.case("300 lookups from 300 tasks all answer, each to its own task", function()
  local tasks = {}
  for i = 1, 300 do
    tasks[i] = task.spawn(function()
      if i % 3 == 0 then return dns.resolve4("127.0.0." .. (i % 250 + 1)) end
      return dns.resolve4("localhost")
    end)
  end
  for i = 1, 300 do
    local joined, addrs, err = tasks[i]:join(20000)
    test.eq(joined, true, "task " .. i)
    test.ok(addrs, tostring(err))
    if i % 3 == 0 then
      test.eq(addrs, { "127.0.0." .. (i % 250 + 1) })
    else
      test.ok(as_set(addrs)["127.0.0.1"], "localhost")
    end
  end
end)
