/*
 * json_fuzz.c: libFuzzer target for `require "cjson.safe"` (runtime/lib/cjson.c), on the
 * whole runtime built for fuzzing (./build.sh fuzz): LuaJIT and yyjson as luaio runs them.
 *
 * The first input byte picks options (comments, NaN and Infinity, '/' escapes, indentation,
 * %.17g numbers, array_mt); the rest is the JSON text. Checked besides memory safety:
 *   - cjson.safe.decode gives a value, or nil and a message in lua-cjson's words (the error
 *     path finds the bad token again in the text: any text must be safe for it);
 *   - a decoded value encodes, and that text decodes to an equal value: numbers exactly (NaN
 *     as NaN), strings byte for byte, tables key for key. So the number printer, the string
 *     escaper and the table walker agree with yyjson's reader.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "luaio.h"
#include "luajit.h"

#define ASSERT(c) ((c) ? (void)0 : abort())

static lua_State *L;
static int mod; /* index of the cjson.safe table on L's stack */

static void config(const char *name, int type, int i, const char *s);

/* The kept encode buffer and the indentation text are known only to a userdata on Lua's
 * heap, which LeakSanitizer does not scan (LuaJIT maps its own memory): let them go before
 * the exit-time leak check (a run that ended with an indentation set reported it). */
static void release_buffers(void) {
  config("encode_keep_buffer", LUA_TBOOLEAN, 0, NULL);
  config("encode_indent", LUA_TSTRING, 0, "");
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  L = luaio_state_new("json_fuzz", 0, NULL);
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF); /* the interpreter: same each run */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson.safe");
  lua_call(L, 1, 1);
  mod = lua_gettop(L);
  atexit(release_buffers);
  return 0;
}

/* cjson.safe.<name>(arg) where arg is a boolean, an integer or a string. */
static void config(const char *name, int type, int i, const char *s) {
  lua_getfield(L, mod, name);
  if (type == LUA_TBOOLEAN)
    lua_pushboolean(L, i);
  else if (type == LUA_TNUMBER)
    lua_pushinteger(L, i);
  else
    lua_pushstring(L, s);
  lua_call(L, 1, 0);
}

/* Are the values at a and b equal, as JSON would have them? */
static int same(int a, int b, int depth) {
  if (lua_type(L, a) != lua_type(L, b)) return 0;
  switch (lua_type(L, a)) {
    case LUA_TNUMBER: {
      double x = lua_tonumber(L, a), y = lua_tonumber(L, b);
      return x == y || (isnan(x) && isnan(y));
    }
    case LUA_TTABLE: break;
    default: return lua_rawequal(L, a, b);
  }
  ASSERT(depth < 1100 && lua_checkstack(L, 6));
  size_t na = 0, nb = 0;
  lua_pushnil(L);
  while (lua_next(L, a)) { /* a, ..., key, value */
    na++;
    lua_pushvalue(L, -2);
    lua_rawget(L, b);
    int ok = same(lua_gettop(L) - 1, lua_gettop(L), depth + 1);
    lua_pop(L, 2);
    if (!ok) {
      lua_pop(L, 1);
      return 0;
    }
  }
  lua_pushnil(L);
  while (lua_next(L, b)) {
    nb++;
    lua_pop(L, 1);
  }
  return na == nb;
}

/* safe.<name>(value at idx): pushes its one or two results; returns how many. */
static int call(const char *name, int idx) {
  int top = lua_gettop(L);
  lua_getfield(L, mod, name);
  lua_pushvalue(L, idx);
  ASSERT(lua_pcall(L, 1, LUA_MULTRET, 0) == 0); /* safe: only misuse would raise */
  return lua_gettop(L) - top;
}

static int starts(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  int opts = data[0];
  config("decode_allow_comment", LUA_TBOOLEAN, opts & 1, NULL);
  config("decode_invalid_numbers", LUA_TBOOLEAN, !(opts & 2), NULL);
  config("encode_escape_forward_slash", LUA_TBOOLEAN, !(opts & 4), NULL);
  config("encode_indent", LUA_TSTRING, 0, opts & 8 ? "  " : "");
  config("encode_number_precision", LUA_TNUMBER, opts & 16 ? 17 : 0, NULL);
  config("decode_array_with_array_mt", LUA_TBOOLEAN, opts & 32, NULL);
  config("encode_invalid_numbers", LUA_TBOOLEAN, 1, NULL); /* NaN and Infinity read back */

  int base = lua_gettop(L);
  lua_pushlstring(L, (const char *)data + 1, size - 1);
  int text = base + 1;
  if (call("decode", text) == 2) {
    ASSERT(lua_isnil(L, -2) && lua_type(L, -1) == LUA_TSTRING);
    const char *msg = lua_tostring(L, -1);
    ASSERT(starts(msg, "Expected ") || starts(msg, "Found too many nested data structures (") ||
           starts(msg, "JSON parser does not support") || starts(msg, "not enough memory"));
    ASSERT(strstr(msg, " at character ") || starts(msg, "JSON") || starts(msg, "not"));
    lua_settop(L, base);
    return 0;
  }
  int value = lua_gettop(L);
  ASSERT(call("encode", value) == 1 && lua_type(L, -1) == LUA_TSTRING);
  int encoded = lua_gettop(L);
  ASSERT(call("decode", encoded) == 1);
  ASSERT(same(value, lua_gettop(L), 0));
  lua_settop(L, base);
  return 0;
}
