-- The struct module: Lua 5.3's string.pack formats, checked, in C.
local test = require "test"
local struct = require "struct"

local function bytes(s) return { s:byte(1, -1) } end

test.case("integers of every size in both byte orders", function()
  test.eq(bytes(struct.pack("<I2", 0x0102)), { 2, 1 })
  test.eq(bytes(struct.pack(">I2", 0x0102)), { 1, 2 })
  test.eq(bytes(struct.pack(">I3", 0x010203)), { 1, 2, 3 })
  test.eq(bytes(struct.pack("<i4", -2)), { 0xfe, 0xff, 0xff, 0xff })
  test.eq(bytes(struct.pack("bBhH", -1, 255, -1, 65535)), { 255, 255, 255, 255, 255, 255 })
  test.eq({ struct.unpack("<i4", "\254\255\255\255") }, { -2, 5 })
  test.eq({ struct.unpack(">i3 <I3", "\255\255\254\1\0\0") }, { -2, 1, 7 })
  for _, v in ipairs({ 0, 1, -1, 2 ^ 31 - 1, -2 ^ 31, 2 ^ 53, -2 ^ 53 }) do
    test.eq((struct.unpack("<j", struct.pack("<j", v))), v, "j " .. v)
    test.eq((struct.unpack(">i8", struct.pack(">i8", v))), v, "i8 " .. v)
  end
  test.eq((struct.unpack("J", struct.pack("J", 2 ^ 63))), 2 ^ 63)
  test.eq((struct.unpack("I5", struct.pack("I5", 2 ^ 40 - 1))), 2 ^ 40 - 1)
end)

test.case("floats, doubles and strings", function()
  local s = struct.pack("<f d n s1 s2 z c5", 0.25, 1 / 3, -0.0, "hi", "", "zero", "ab")
  test.eq(#s, 4 + 8 + 8 + 3 + 2 + 5 + 5)
  local a, b, c, d, e, f, g, nextpos = struct.unpack("<f d n s1 s2 z c5", s)
  test.eq({ a, b, d, e, f, g, nextpos }, { 0.25, 1 / 3, "hi", "", "zero", "ab\0\0\0", #s + 1 })
  test.eq(1 / c, -math.huge, "negative zero")
  test.eq(struct.pack(">d", 1.5), "\63\248\0\0\0\0\0\0")
end)

test.case("positions: from the start, from the end, and the next position returned", function()
  local data = struct.pack("<I2 I2 I2", 10, 20, 30)
  local a, pos = struct.unpack("<I2", data)
  test.eq({ a, pos }, { 10, 3 })
  test.eq({ struct.unpack("<I2", data, pos) }, { 20, 5 })
  test.eq({ struct.unpack("<I2", data, -2) }, { 30, 7 })
  test.eq({ struct.unpack("", data, 7) }, { 7 }, "an empty format at the end")
  test.raises(function() struct.unpack("<I2", data, 8) end, "initial position out of string")
  test.raises(function() struct.unpack("<I2", data, 1.5) end, "integer expected")
end)

test.case("alignment with ! and X, padding with x, size", function()
  test.eq(struct.size("<I2 i4 d"), 14)
  test.eq(struct.size("!<b i4"), 8)
  test.eq(struct.size("!4 b d"), 12, "alignment limited to 4")
  test.eq(struct.size("!8 b Xd"), 8)
  test.eq(struct.size("b x x"), 3)
  test.eq(bytes(struct.pack("!<b i2", 1, 2)), { 1, 0, 2, 0 })
  local s = struct.pack("!<b Xi4 B", 1, 2)
  test.eq(bytes(s), { 1, 0, 0, 0, 2 })
  test.eq({ struct.unpack("!<b Xi4 B", s) }, { 1, 2, 6 })
  test.raises(function() struct.size("s") end, "variable%-length format")
  test.raises(function() struct.size("!3 i4") end, "not power of 2")
  test.raises(function() struct.size("Xc1") end, "invalid next option for option 'X'")
end)

test.case("values that do not fit raise, naming the argument", function()
  test.raises(function() struct.pack("B", 256) end, "bad argument #2 to 'pack' %(unsigned overflow%)")
  test.raises(function() struct.pack("B", -1) end, "unsigned overflow")
  test.raises(function() struct.pack("b", 128) end, "integer overflow")
  test.raises(function() struct.pack("i2", -32769) end, "integer overflow")
  test.raises(function() struct.pack("I4 I4", 1, 1.5) end, "bad argument #3 to 'pack' %(number has no integer representation%)")
  test.raises(function() struct.pack("i4", "x") end, "number expected, got string")
  test.raises(function() struct.pack("i4") end, "bad argument #2 to 'pack' %(no value%)")
  test.raises(function() struct.pack("c2", "abc") end, "string longer than given size")
  test.raises(function() struct.pack("s1", ("x"):rep(256)) end, "does not fit")
  test.raises(function() struct.pack("z", "a\0b") end, "string contains zeros")
  test.raises(function() struct.pack("q", 1) end, "bad argument #1 to 'pack' %(invalid format option 'q'%)")
  test.raises(function() struct.pack("i9", 1) end, "integral size %(9%) out of limits")
  test.raises(function() struct.pack("c", "") end, "missing size")
  test.eq(struct.pack("B", "7"), "\7", "a numeric string is a number, as in 5.3")
end)

test.case("short or malformed data raises, nothing is read past the end", function()
  test.raises(function() struct.unpack("I4", "abc") end, "bad argument #2 to 'unpack' %(data string too short%)")
  test.raises(function() struct.unpack("s1", "\5abc") end, "data string too short")
  test.raises(function() struct.unpack("z", "abc") end, "unfinished string")
  test.raises(function() struct.unpack("d", "") end, "data string too short")
  -- every truncation of a valid record fails cleanly
  local full = struct.pack("<I2 s2 z d", 1, "hello", "world", 2.5)
  for i = 0, #full - 1 do
    test.ok(not pcall(struct.unpack, "<I2 s2 z d", full:sub(1, i)), "cut at " .. i)
  end
end)

test.case("many values in one call, and a large string", function()
  local fmt = "<" .. ("H"):rep(500)
  local values = {}
  for i = 1, 500 do values[i] = i end
  local s = struct.pack(fmt, unpack(values))
  test.eq(#s, 1000)
  local back = { struct.unpack(fmt, s) }
  test.eq(#back, 501)
  test.eq(back[500], 500)
  local big = ("x"):rep(200000)
  test.eq(select(1, struct.unpack("s4", struct.pack("s4", big))), big)
end)
