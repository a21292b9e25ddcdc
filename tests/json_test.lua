-- cjson and cjson.safe: OpenResty's lua-cjson API on yyjson (runtime/lib/cjson.c).
-- Where lua-cjson's behaviour is the contract, the last cases run the same code under
-- Debian's luajit with Debian's lua-cjson and compare (skipped when they are not installed).
local test = require "test"
local cjson = require "cjson"

-- A fresh instance per case: configuration changes stay inside the case.
local function fresh() return require("cjson").new() end

local function errof(fn, ...)
  local ok, err = pcall(fn, ...)
  test.eq(ok, false, "raised")
  return err
end

-- --- the API ----------------------------------------------------------------------------

test.case("cjson and cjson.safe have lua-cjson's and OpenResty's functions and values", function()
  local safe = require "cjson.safe"
  for _, m in ipairs({ cjson, safe }) do
    for _, name in ipairs({ "encode", "decode", "new", "encode_sparse_array", "encode_max_depth",
      "decode_max_depth", "encode_number_precision", "encode_keep_buffer", "encode_invalid_numbers",
      "decode_invalid_numbers", "encode_empty_table_as_object", "decode_array_with_array_mt",
      "encode_escape_forward_slash", "encode_skip_unsupported_value_types", "encode_indent",
      "decode_allow_comment" }) do
      test.eq(type(m[name]), "function", name)
    end
    test.eq(type(m.null), "userdata", "null is a light userdata")
    test.eq(type(m.empty_array), "userdata")
    test.eq(type(m.array_mt), "table")
    test.eq(type(m.empty_array_mt), "table")
    test.eq(m._NAME, "cjson")
    test.match(m._VERSION, "^2%.1%.0")
  end
  -- shared by every instance, as in OpenResty: values made with one work with all
  test.ok(safe.null == cjson.null and safe.empty_array == cjson.empty_array, "same null, empty_array")
  test.ok(safe.array_mt == cjson.array_mt and cjson.new().empty_array_mt == cjson.empty_array_mt,
    "same metatables")
  test.ok(cjson.null ~= cjson.empty_array, "null is not empty_array")
  test.ok(package.loaded["cjson.safe"] ~= cjson, "cjson.safe is a module of its own")
end)

test.case("each instance has its own configuration: cjson, cjson.safe, new()", function()
  local a, b = fresh(), fresh()
  a.encode_empty_table_as_object(false)
  test.eq(a.encode({}), "[]")
  test.eq(b.encode({}), "{}")
  test.eq(require("cjson.safe").encode({}), "{}")
  local s = require("cjson.safe").new()
  test.eq(select("#", s.decode("[")), 2, "safe.new() is safe too")
end)

test.case("configuration functions read, set, and check their arguments like lua-cjson", function()
  local c = fresh()
  test.eq({ c.encode_sparse_array() }, { false, 2, 10 })
  test.eq({ c.encode_sparse_array(true, 3, 20) }, { true, 3, 20 })
  test.eq({ c.encode_sparse_array("off") }, { false, 3, 20 })
  test.eq(c.encode_max_depth(), 1000)
  test.eq(c.decode_max_depth(), 1000)
  test.eq(c.encode_max_depth(5), 5)
  test.eq(c.encode_number_precision(), 0, "0: shortest round trip")
  test.eq(c.encode_number_precision(14), 14)
  test.eq(c.encode_keep_buffer(), true)
  test.eq(c.encode_invalid_numbers(), false)
  test.eq(c.encode_invalid_numbers("null"), "null")
  test.eq(c.encode_invalid_numbers("on"), true)
  test.eq(c.decode_invalid_numbers(), true)
  test.eq(c.encode_empty_table_as_object(), true)
  test.eq(c.encode_empty_table_as_object("off"), false)
  test.eq(c.decode_array_with_array_mt(), false)
  test.eq(c.encode_escape_forward_slash(), true)
  test.eq(c.encode_skip_unsupported_value_types(), false)
  test.eq(c.decode_allow_comment(), false)
  test.eq(c.encode_indent(), "")
  test.raises(function() c.encode_max_depth(0) end, "expected integer between 1 and 2147483647")
  test.raises(function() c.encode_number_precision(18) end, "expected integer between 0 and 17")
  test.raises(function() c.encode_max_depth(1, 2) end, "bad argument #2 .*found too many arguments")
  test.raises(function() c.encode_invalid_numbers("maybe") end, "invalid option 'maybe'")
  test.raises(function() c.encode_indent("  x") end, "indent must contain only spaces")
  test.raises(function() c.encode() end, "bad argument #1 to 'encode' %(expected 1 argument%)")
  test.raises(function() c.decode("1", 2) end, "expected 1 argument")
  test.raises(function() c.decode({}) end, "bad argument #1 to 'decode' %(string expected, got table%)")
  test.eq(c.decode(12), 12, "a number argument is its text, as in lua-cjson")
end)

-- --- encoding ---------------------------------------------------------------------------

test.case("encode: scalars, nested tables, null and empty_array", function()
  test.eq(cjson.encode(true), "true")
  test.eq(cjson.encode(false), "false")
  test.eq(cjson.encode(nil), "null")
  test.eq(cjson.encode(cjson.null), "null")
  test.eq(cjson.encode(cjson.empty_array), "[]")
  test.eq(cjson.encode("hi"), '"hi"')
  test.eq(cjson.encode({ 1, "two", { three = 3 }, { 4, { 5 } }, true, cjson.null }),
    '[1,"two",{"three":3},[4,[5]],true,null]')
  test.eq(cjson.encode({ a = { b = { c = {} } } }), '{"a":{"b":{"c":{}}}}')
  test.eq(cjson.encode({ list = cjson.empty_array, n = cjson.null }):len(), #'{"list":[],"n":null}')
end)

test.case("encode escapes what lua-cjson escapes, byte for byte", function()
  local c = fresh()
  for b = 0, 255 do
    local want
    if b == 8 then want = "\\b"
    elseif b == 9 then want = "\\t"
    elseif b == 10 then want = "\\n"
    elseif b == 12 then want = "\\f"
    elseif b == 13 then want = "\\r"
    elseif b < 32 or b == 127 then want = ("\\u%04x"):format(b)
    elseif b == 34 then want = '\\"'
    elseif b == 92 then want = "\\\\"
    elseif b == 47 then want = "\\/"
    else want = string.char(b) end
    test.eq(c.encode(string.char(b)), '"' .. want .. '"', "byte " .. b)
    -- the same byte amid runs long enough for the 8-byte scan
    test.eq(c.encode(("abcdefghij"):rep(2) .. string.char(b) .. ("x"):rep(13)),
      '"' .. ("abcdefghij"):rep(2) .. want .. ("x"):rep(13) .. '"', "byte " .. b .. " in a run")
  end
  c.encode_escape_forward_slash(false)
  test.eq(c.encode("http://a/b"), '"http://a/b"')
  test.eq(c.encode({ ["a/b"] = "c/d" }), '{"a/b":"c/d"}', "keys too")
end)

test.case("encode passes UTF-8 and invalid UTF-8 through unchanged", function()
  test.eq(cjson.encode("é中😀"), '"é中😀"')
  test.eq(cjson.encode("\255\254\192\128"), '"\255\254\192\128"', "bytes as they are, as lua-cjson")
  test.eq(cjson.decode(cjson.encode("\255x\237\160\128")), "\255x\237\160\128", "round trip")
end)

test.case("tables: arrays, objects, mixed keys and key types as lua-cjson decides", function()
  test.eq(cjson.encode({ 1, 2, 3 }), "[1,2,3]")
  local rev = {}
  rev[3], rev[2], rev[1] = "c", "b", "a" -- keys in the hash part, out of order
  test.eq(cjson.encode(rev), '["a","b","c"]')
  test.eq(cjson.encode({ [1] = 1, [2] = 2, [4] = 4 }), "[1,2,null,4]", "holes are null")
  local mixed = cjson.decode(cjson.encode({ 1, 2, x = 3 }))
  test.eq(mixed, { ["1"] = 1, ["2"] = 2, x = 3 }, "integer keys of an object become strings")
  test.eq(cjson.encode({ [0] = "z" }), '{"0":"z"}')
  test.eq(cjson.encode({ [-1] = "m" }), '{"-1":"m"}')
  test.eq(cjson.encode({ [1.5] = "h" }), '{"1.5":"h"}')
  test.eq(errof(cjson.encode, { [true] = 1 }), "Cannot serialise boolean: table key must be a number or string")
  test.eq(errof(cjson.encode, { [{}] = 1 }), "Cannot serialise table: table key must be a number or string")
end)

test.case("encode_sparse_array: ratio, safe and convert", function()
  local c = fresh()
  test.eq(c.encode({ [1] = 1, [10] = 10 }), "[1,null,null,null,null,null,null,null,null,10]", "<= safe (10)")
  test.eq(errof(c.encode, { [1] = 1, [11] = 11 }), "Cannot serialise table: excessively sparse array")
  test.eq(#c.decode(c.encode({ 1, 2, 3, 4, 5, [12] = 12 })), 12, "12 <= 6 items * ratio 2")
  test.eq(errof(c.encode, { 1, 2, 3, 4, 5, [13] = 13 }), "Cannot serialise table: excessively sparse array")
  c.encode_sparse_array(true)
  test.eq(c.decode(c.encode({ [1] = 1, [11] = 11 })), { ["1"] = 1, ["11"] = 11 }, "converted to an object")
  c.encode_sparse_array(false, 0)
  test.eq(#c.decode(c.encode({ [1] = 1, [100] = 100 })), 100, "ratio 0: never sparse")
  test.eq(errof(c.encode, { [1] = 1, [2 ^ 40] = 1 }), "Cannot serialise table: excessively sparse array",
    "past 2^31 it is sparse whatever the ratio")
  c.encode_sparse_array(false, 1)
  test.eq(errof(c.encode, { [1] = 1, [12] = 1 }), "Cannot serialise table: excessively sparse array")
  c.encode_sparse_array(false, 2, 100)
  test.eq(#c.decode(c.encode({ [1] = 1, [100] = 1 })), 100, "safe 100")
end)

test.case("empty tables: object by default, empty_array, array_mt, empty_array_mt, __len", function()
  local c = fresh()
  test.eq(c.encode({}), "{}")
  test.eq(c.encode({ dogs = {} }), '{"dogs":{}}')
  test.eq(c.encode(setmetatable({}, c.empty_array_mt)), "[]")
  test.eq(c.encode(setmetatable({ "a", "b" }, c.empty_array_mt)), '["a","b"]')
  test.eq(c.encode(setmetatable({ x = 1 }, c.empty_array_mt)), '{"x":1}', "not empty: as usual")
  test.eq(c.encode(setmetatable({}, c.array_mt)), "[]")
  local t = setmetatable({}, c.array_mt)
  t[1], t[2], t[4], t[9] = "foo", "bar", "last", "none"
  test.eq(c.encode(t), '["foo","bar",null,"last"]', "array_mt: 1..#t, holes null (OpenResty's test 11)")
  test.eq(c.encode(setmetatable({ "a", "b", foo = "bar" }, c.array_mt)), '["a","b"]', "other keys dropped")
  test.eq(c.encode(setmetatable({ "a", x = 1 }, { __len = function() return 5 end })), '["a"]',
    "a metatable with __len: an array of the raw length (OpenResty)")
  c.encode_empty_table_as_object(false)
  test.eq(c.encode({ a = {} }), '{"a":[]}')
  test.eq(c.encode({}), "[]")
end)

test.case("decode_array_with_array_mt keeps [] an array through a round trip", function()
  local c = fresh()
  local t = c.decode('{"list":[],"obj":{}}')
  test.eq(getmetatable(t.list), nil)
  test.eq(c.encode(t.list), "{}", "by default [] comes back as {}")
  c.decode_array_with_array_mt(true)
  t = c.decode('{"list":[],"obj":{},"full":["hello","world"]}')
  test.ok(getmetatable(t.list) == c.array_mt and getmetatable(t.full) == c.array_mt, "arrays get array_mt")
  test.eq(getmetatable(t.obj), nil, "objects do not")
  t.full[1], t.full[2], t.full.extra = nil, nil, "x"
  test.eq(c.encode(t.list), "[]")
  test.eq(c.encode(t.full), "[]", "still an array once emptied (OpenResty's test 13)")
end)

test.case("encode_skip_unsupported_value_types drops functions, threads, userdata", function()
  local c = fresh()
  test.eq(errof(c.encode, { f = print }), "Cannot serialise function: type not supported")
  test.eq(errof(c.encode, coroutine.create(print)), "Cannot serialise thread: type not supported")
  test.eq(errof(c.encode, newproxy()), "Cannot serialise userdata: type not supported")
  c.encode_skip_unsupported_value_types(true)
  test.eq(c.encode({ print, 1, print, 2, print }), "[1,2]")
  test.eq(c.encode({ print }), "[]")
  test.eq(c.decode(c.encode({ ok = "yes", skip = print, seq = { "a", print, "b" } })),
    { ok = "yes", seq = { "a", "b" } })
  test.eq(c.encode(print), "", "a skipped value at the top: nothing")
end)

test.case("encode_indent", function()
  local c = fresh()
  c.encode_indent("  ")
  test.eq(c.encode({ a = { 1, 2, {}, cjson.empty_array } }), '{\n  "a": [\n    1,\n    2,\n    {},\n    []\n  ]\n}')
  test.eq(c.encode({ { x = 1 }, {} }), '[\n  {\n    "x": 1\n  },\n  {}\n]')
  test.eq(c.encode({}), "{}")
  test.eq(c.encode(1), "1")
  c.encode_indent("\t")
  test.eq(c.encode({ 1 }), "[\n\t1\n]")
  c.encode_indent("")
  test.eq(c.encode({ 1, { 2 } }), "[1,[2]]", "off again")
end)

test.case("encode depth: encode_max_depth, cycles, and Lua's stack limit", function()
  local c = fresh()
  local t = {}
  t.self = t
  test.eq(errof(c.encode, t), "Cannot serialise, excessive nesting (1001)")
  c.encode_max_depth(3)
  test.eq(c.encode({ { { 1 } } }), "[[[1]]]")
  test.eq(errof(c.encode, { { { { 1 } } } }), "Cannot serialise, excessive nesting (4)")
  c.encode_max_depth(2 ^ 31 - 1)
  local deep = {}
  for _ = 1, 100000 do deep = { deep } end
  test.match(errof(c.encode, deep), "^Cannot serialise, excessive nesting %(%d+%)$", "a clean error, no crash")
end)

test.case("encode_keep_buffer(false) encodes the same", function()
  local c = fresh()
  local v = { s = ("x"):rep(100000), n = { 1, 2, 3 } }
  local a = c.encode(v)
  c.encode_keep_buffer(false)
  test.eq(c.encode(v), a)
  test.eq(errof(c.encode, { print }), "Cannot serialise function: type not supported")
  test.eq(c.encode(v), a, "after an error")
end)

-- --- numbers ----------------------------------------------------------------------------

test.case("numbers: integers to 2^53 without exponent, shortest round trip for the rest", function()
  local c = fresh()
  local cases = {
    { 0, "0" }, { -0.0, "-0" }, { 1, "1" }, { -1, "-1" }, { 2 ^ 31, "2147483648" },
    { 2 ^ 53, "9007199254740992" }, { -(2 ^ 53), "-9007199254740992" }, { 2 ^ 53 - 1, "9007199254740991" },
    { 123456789012345, "123456789012345" }, { 1e15, "1000000000000000" }, { 1e20, "100000000000000000000" },
    { 1e21, "1e21" }, { 0.1, "0.1" }, { 0.5, "0.5" }, { -2.5, "-2.5" }, { 1 / 3, "0.3333333333333333" },
    { 2 / 3, "0.6666666666666666" }, { 1e308, "1e308" }, { 1.7976931348623157e308, "1.7976931348623157e308" },
    { 5e-324, "5e-324" }, { 2.2250738585072014e-308, "2.2250738585072014e-308" }, { 1e-7, "1e-7" },
    { 0.000001, "0.000001" }, { 3.14159, "3.14159" }, { 12345.678, "12345.678" },
  }
  for _, case in ipairs(cases) do
    test.eq(c.encode(case[1]), case[2], ("%.17g"):format(case[1]))
    local back = c.decode(case[2])
    test.ok(back == case[1] and 1 / back == 1 / case[1], case[2] .. " reads back exactly (sign of 0 too)")
  end
  test.eq(c.decode(c.encode({ [2 ^ 53] = 1, x = 1 }))["9007199254740992"], 1, "keys print the same way")
end)

test.case("numbers: every double survives encode and decode", function()
  local c = fresh()
  local seed = 12345
  local function word() -- 32 random bits
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed
  end
  local checked = 0
  for i = 1, 20000 do
    -- random mantissas over the whole exponent range, and plain decimals people write
    local x
    if i % 2 == 0 then
      x = (word() / 2 ^ 31 + word() / 2 ^ 62) * 2 ^ (word() % 2046 - 1023)
    else
      x = (word() % 2000000 - 1000000) / 10 ^ (word() % 8)
    end
    if x == x and x ~= math.huge and x ~= -math.huge then
      local s = c.encode(x)
      test.ok(c.decode(s) == x, ("%.17g printed as %s"):format(x, s))
      test.ok(not s:find("e") or math.abs(x) >= 1e21 or math.abs(x) < 1e-6, s .. ": no exponent needed")
      checked = checked + 1
    end
  end
  test.ok(checked > 19000, "checked " .. checked)
end)

test.case("encode_number_precision prints %.<n>g like lua-cjson", function()
  local c = fresh()
  c.encode_number_precision(14)
  test.eq(c.encode(2 ^ 53), "9.007199254741e+15", "OpenResty's test 20")
  test.eq(c.encode(0.1), "0.1")
  test.eq(c.encode(1 / 3), "0.33333333333333")
  c.encode_number_precision(16)
  test.eq(c.encode(2 ^ 53), "9007199254740992")
  c.encode_number_precision(17)
  test.eq(c.encode(0.1), "0.10000000000000001")
  c.encode_number_precision(1)
  test.eq(c.encode(123), "1e+02")
  c.encode_number_precision(0)
  test.eq(c.encode(0.1), "0.1", "0: back to the shortest")
end)

test.case("NaN and infinity: encode_invalid_numbers and decode_invalid_numbers", function()
  local c = fresh()
  local nan, inf = 0 / 0, math.huge
  test.eq(errof(c.encode, nan), "Cannot serialise number: must not be NaN or Infinity")
  test.eq(errof(c.encode, { x = -inf }), "Cannot serialise number: must not be NaN or Infinity")
  c.encode_invalid_numbers("null")
  test.eq(c.encode({ nan, inf, -inf }), "[null,null,null]")
  c.encode_invalid_numbers(true)
  test.eq(c.encode({ nan, inf, -inf }), "[NaN,Infinity,-Infinity]")
  local back = c.decode("[NaN,Infinity,-Infinity,nan,inf,-inf]")
  test.ok(back[1] ~= back[1] and back[2] == inf and back[3] == -inf, "read back")
  test.ok(back[4] ~= back[4] and back[5] == inf and back[6] == -inf, "any case, Inf too")
  test.eq(c.decode("1e400"), inf, "too large: infinity, like strtod")
  c.decode_invalid_numbers(false)
  test.eq(errof(c.decode, "NaN"), "Expected value but found invalid token at character 1")
  test.eq(errof(c.decode, "[1,-Infinity]"), "Expected value but found invalid number at character 4")
end)

-- --- decoding ---------------------------------------------------------------------------

test.case("decode: every JSON type, at the top too", function()
  local v = cjson.decode(' {"a":[1,2.5,-3e2,"x",true,false,null,{},[]],"b":{"c":{"d":"e"}}} ')
  test.eq(v.a[1], 1)
  test.eq(v.a[3], -300)
  test.ok(v.a[7] == cjson.null, "null is cjson.null")
  test.eq(#v.a, 9)
  test.eq(v.b.c.d, "e")
  test.eq(cjson.decode("123"), 123)
  test.eq(cjson.decode('"s"'), "s")
  test.eq(cjson.decode("true"), true)
  test.ok(cjson.decode("null") == cjson.null)
  test.eq(cjson.decode('{"a":1,"a":2}').a, 2, "the last duplicate key wins")
  test.eq(cjson.decode("18446744073709551616"), 2 ^ 64, "past 64 bits: the double")
  test.eq(cjson.decode("9007199254740993"), 2 ^ 53, "rounded as strtod rounds")
  test.eq(cjson.decode("-9223372036854775808"), -2 ^ 63)
end)

test.case("decode: escapes, surrogate pairs, lone surrogates, invalid UTF-8", function()
  test.eq(cjson.decode([["\"\\\/\b\f\n\r\t"]]), "\"\\/\b\f\n\r\t")
  test.eq(cjson.decode([["\u0041\u00e9\u4e2d\uD83D\uDE00\u0000"]]), "Aé中😀\0")
  test.eq(cjson.decode('"é中😀"'), "é中😀")
  test.eq(cjson.decode('"\255\254 \192\128 \237\160\128"'), "\255\254 \192\128 \237\160\128",
    "invalid UTF-8 passes through, as in lua-cjson")
  test.eq(cjson.decode('"tab\tand\1"'), "tab\tand\1", "raw control characters too")
  local safe = require "cjson.safe"
  test.eq({ safe.decode([["\ud800"]]) }, { nil, "Expected value but found invalid unicode escape code at character 2" })
  test.eq({ safe.decode([["ab\udc00"]]) }, { nil, "Expected value but found invalid unicode escape code at character 4" })
  test.eq({ safe.decode([=[["\ud800\u0041"]]=]) }, { nil, "Expected value but found invalid unicode escape code at character 3" })
  test.eq({ safe.decode([["\u12"]]) }, { nil, "Expected value but found invalid unicode escape code at character 2" })
  test.eq({ safe.decode([["\q"]]) }, { nil, "Expected value but found invalid escape code at character 2" })
end)

test.case("decode errors name the byte offset as lua-cjson words them", function()
  local safe = require "cjson.safe"
  local cases = {
    { "", "Expected value but found T_END at character 1" },
    { "   ", "Expected value but found T_END at character 4" },
    { "[1 2]", "Expected comma or array end but found T_NUMBER at character 4" },
    { "{1:2}", "Expected object key string but found T_NUMBER at character 2" },
    { "[1,]", "Expected value but found T_ARR_END at character 4" },
    { '{"a":1,}', "Expected object key string but found T_OBJ_END at character 8" },
    { "tru", "Expected value but found invalid token at character 1" },
    { "[1", "Expected comma or array end but found T_END at character 3" },
    { '"abc', "Expected value but found unexpected end of string at character 5" },
    { "[1]x", "Expected the end but found invalid token at character 4" },
    { "[1] [2]", "Expected the end but found T_ARR_BEGIN at character 5" },
    { '{"a" 1}', "Expected colon but found T_NUMBER at character 6" },
    { '{"a":}', "Expected value but found T_OBJ_END at character 6" },
    { '{"a":1 "b":2}', "Expected comma or object end but found T_STRING at character 8" },
    { '{"a":1,', "Expected object key string but found T_END at character 8" },
    { "[truex]", "Expected comma or array end but found invalid token at character 6" },
    { "[-]", "Expected value but found invalid number at character 2" },
    { "01", "Expected value but found invalid number at character 1" },
    { "0x10", "Expected value but found invalid number at character 1" },
    { "+1", "Expected value but found invalid token at character 1" },
    { "\239\187\191{}", "Expected value but found invalid token at character 1" },
    { "[1] // no", "Expected the end but found invalid token at character 5" },
  }
  for _, case in ipairs(cases) do
    test.eq({ safe.decode(case[1]) }, { nil, case[2] }, ("%q"):format(case[1]))
    test.eq(errof(cjson.decode, case[1]), case[2], "cjson raises the same")
  end
  test.eq(errof(cjson.decode, "[\0]"), "JSON parser does not support UTF-16 or UTF-32")
end)

test.case("decode_allow_comment", function()
  local c = fresh()
  c.decode_allow_comment(true)
  test.eq(c.decode('/* a */ {"a": // b\n 1 /* c */} // d'), { a = 1 })
  test.eq(errof(c.decode, "[1] /* open"), "Expected the end but found unclosed comment at character 5")
  test.eq(errof(c.decode, "[1, /* open"), "Expected value but found unclosed comment at character 5")
end)

test.case("decode depth: decode_max_depth and Lua's stack limit", function()
  local c = fresh()
  local deep = ("["):rep(1001) .. ("]"):rep(1001)
  test.eq(errof(c.decode, deep), "Found too many nested data structures (1001) at character 1001")
  test.eq(#c.decode(("["):rep(1000) .. ("]"):rep(1000)), 1, "1000 levels by default")
  c.decode_max_depth(2)
  test.eq(errof(c.decode, '{"a":[{"b":1}]}'), "Found too many nested data structures (3) at character 7")
  test.eq(errof(c.decode, '["[[[", [[1]]]'), "Found too many nested data structures (3) at character 10",
    "brackets inside strings do not count")
  c.decode_max_depth(2 ^ 31 - 1)
  local n = 200000
  test.match(errof(c.decode, ("["):rep(n) .. ("]"):rep(n)), "^Found too many nested data structures %(%d+%)",
    "past Lua's stack: a clean error")
end)

test.case("cjson.safe returns nil and the message; misuse still raises", function()
  local safe = require "cjson.safe"
  test.eq({ safe.decode("[") }, { nil, "Expected value but found T_END at character 2" })
  test.eq({ safe.encode({ f = print }) }, { nil, "Cannot serialise function: type not supported" })
  test.eq(safe.encode({ 1 }), "[1]")
  test.eq(safe.decode("[1]"), { 1 })
  test.raises(function() safe.decode() end, "expected 1 argument")
  test.raises(function() safe.encode(1, 2) end, "expected 1 argument")
end)

test.case("large documents round trip", function()
  local c = fresh()
  local n = 300000
  local big = {}
  for i = 1, n do
    big[i] = { id = i, name = "item " .. i, price = i / 7, tags = { "a", "b" }, ok = i % 2 == 0 }
  end
  local text = c.encode(big)
  test.ok(#text > 20e6, "over 20 MB: " .. #text)
  local back = c.decode(text)
  test.eq(#back, n)
  for _, i in ipairs({ 1, 2, 777, n }) do test.eq(back[i], big[i], "item " .. i) end
  test.eq(c.encode(back):len(), #text, "encodes to the same length again")
  local s = ("0123456789\n\"/é"):rep(400000)
  test.eq(c.decode(c.encode(s)), s, "a 6 MB string")
end)

test.case("a __gc that uses cjson while cjson works gets right answers, and so do we", function()
  local c = fresh()
  local inner = {}
  local function churn()
    local p = newproxy(true)
    getmetatable(p).__gc = function()
      inner[#inner + 1] = c.encode({ "gc", c.decode('{"x":[1,2,3]}') }) == '["gc",{"x":[1,2,3]}]'
    end
  end
  local value = {}
  for i = 1, 2000 do value[i] = { s = "v" .. i, n = i } end
  local want = c.encode(value)
  for _ = 1, 50 do
    for _ = 1, 200 do churn() end
    test.eq(c.encode(value), want)
    test.eq(#c.decode(want), 2000)
  end
  collectgarbage()
  test.ok(#inner > 0, "finalizers ran")
  for i, ok in ipairs(inner) do test.ok(ok, "finalizer " .. i) end
end)

-- --- compatibility with Debian's lua-cjson (lua-cjson 2.1.0 on luajit) ------------------

-- Cases whose answers must be the same; each line of output is compared. Runs as a chunk
-- given the cjson module (ours in-process, Debian's under luajit) and returns its lines.
local COMPAT = [=[
local cjson = ...
local out = {}
local function canon(v)
  if type(v) == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = type(k):sub(1, 1) .. tostring(k) .. "=" .. canon(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif type(v) == "string" then return ("%q"):format(v)
  elseif type(v) == "number" then return ("%.17g"):format(v)
  elseif v == cjson.null then return "null"
  end
  return tostring(v)
end
local function try(label, fn, ...)
  local ok, v = pcall(fn, ...)
  out[#out + 1] = label .. " " .. (ok and canon(v) or "ERR " .. tostring(v))
end
local texts = {
  '{"a":[1,2,3],"b":{"c":null,"d":true,"e":false},"f":"x"}', "[]", "{}", "[[],[{}]]",
  '"\\u00e9\\u4e2d\\ud83d\\ude00"', '"\\b\\f\\n\\r\\t\\/\\\\\\""', "123", "-45.5e2", "1E+2", "0", "-0",
  "-0.0", "0.5", "9007199254740993", "1e400", '"\255\254"', " [ 1 , 2 ] ", '"\\u0000"', "[1,2", "[1 2]",
  "{1:2}", "[1,]", "tru", '"abc', '"\\q"', '"\\ud800"', "[1]x", '{"a" 1}', '{"a":}', "", "  ",
  '{"a":1,', "nul", "[", "NaN", "Infinity", "-Infinity", '{"a":1 "b":2}', '["a" "b"]', '"\\udc00"',
  '"\\u12"', "[1],", "[-]", '{"a":1}}', "[\0]", "[1, 2, [3, [4, {\"k\": [5]}]]]",
}
for i, s in ipairs(texts) do try("decode " .. i, cjson.decode, s) end
local values = {
  { 1, 2, 3 }, { a = 1 }, {}, { {}, { {} } }, "a/b", "\0\1\31\127\128\255", { [1] = 1, [2] = 2, [4] = 4 },
  { [1] = 1, [20] = 2 }, { [3] = 3, [2] = 2, [1] = 1 }, { [0] = 1 }, { [-1] = 1 }, { [1.5] = 1 }, true,
  false, 0, -1, 123456789, 0.5, -0.25, 3.14159, 100, 12345678901234, { [true] = 1 }, print, cjson.null,
  { cjson.null, cjson.null }, ("x"):rep(10), "é中😀",
}
for i, v in ipairs(values) do try("encode " .. i, cjson.encode, v) end
cjson.encode_sparse_array(true)
try("sparse convert", cjson.encode, { [1] = 1, [20] = 2 })
cjson.encode_sparse_array(false, 0)
try("sparse ratio 0", cjson.encode, { [1] = 1, [20] = 2 })
cjson.encode_sparse_array(false, 2, 30)
try("sparse safe 30", cjson.encode, { [1] = 1, [20] = 2 })
out[#out + 1] = "config " .. canon({ cjson.encode_sparse_array() }) .. canon({ cjson.encode_max_depth(),
  cjson.decode_max_depth(), cjson.encode_invalid_numbers(), cjson.decode_invalid_numbers(), cjson.encode_keep_buffer() })
cjson.encode_invalid_numbers("null")
try("invalid null", cjson.encode, { 0 / 0, 1 / 0 })
cjson.decode_invalid_numbers(false)
try("no invalid numbers", cjson.decode, "NaN")
cjson.decode_max_depth(2)
try("depth 2", cjson.decode, "[[1]]")
try("depth 3", cjson.decode, "[[[1]]]")
try("depth 3 in an object", cjson.decode, '{"a":{"b":[1]}}')
cjson.encode_max_depth(2)
try("encode depth 2", cjson.encode, { { 1 } })
try("encode depth 3", cjson.encode, { { { 1 } } })
try("no argument", cjson.encode)
try("two arguments", cjson.decode, "1", 2)
try("table argument", cjson.decode, {})
try("depth 0", cjson.encode_max_depth, 0)
try("bad option", cjson.encode_invalid_numbers, "x")
return out
]=]

test.case("the same answers as Debian's lua-cjson under luajit", function()
  local _, status = test.sh("luajit -e 'require \"cjson\"'")
  if status ~= 0 then test.skip("luajit with Debian's lua-cjson is not installed (apt-get install luajit2 lua-cjson)") end
  local dir = test.tmpdir()
  test.write(dir .. "/compat.lua", COMPAT)
  test.write(dir .. "/run.lua",
    "local f = assert(loadfile(arg[1]))\nfor _, line in ipairs(f(require('cjson').new())) do print(line) end\n")
  local theirs, st = test.sh("luajit " .. dir .. "/run.lua " .. dir .. "/compat.lua")
  test.eq(st, 0, theirs)
  local ours = table.concat(assert(load(COMPAT))(cjson.new()), "\n") .. "\n"
  local a, b = {}, {}
  for line in theirs:gmatch("[^\n]*\n") do a[#a + 1] = line end
  for line in ours:gmatch("[^\n]*\n") do b[#b + 1] = line end
  test.ok(#a > 90, "lua-cjson answered " .. #a .. " cases")
  for i = 1, math.max(#a, #b) do test.eq(b[i], a[i], "line " .. i) end
end)
