/*
 * opt.c: durations and option tables, checked the same way everywhere.
 *
 * A duration is milliseconds: a number >= 0. math.huge means "forever" (no timeout); so does
 * anything at or past 2^64 ms, which a libuv timer cannot hold. Fractions round up (a wait is
 * never shorter than asked). NaN, negative numbers and non-numbers are argument errors. C code
 * gets a uint64_t with LUAIO_FOREVER for forever; Lua code gets these same rules through
 * "luaio.opt" (ms), which stdlib/luaio/options.lua uses, so the rules live here only.
 *
 * The option readers take the stack index of an options table (or of nil/none: every option
 * then has its default) and raise naming the table's argument and the option:
 * "bad argument #3 to 'listen' (option 'timeout': non-negative number of milliseconds
 * (or math.huge) expected, got -1)". The Lua checker words its errors the same way.
 */
#include <math.h>
#include <string.h>

#include "luaio.h"

#define MAX_EXACT 9007199254740992ULL /* 2^53: every integer up to it is a double */
#define MS_WANTED "non-negative number of milliseconds (or math.huge)"
#define MS_EXPECTED MS_WANTED " expected"
#define CSTRING_EXPECTED "string without zero bytes expected"

/* What the value at idx is, for "got ...": a number as written, else its type. Only for
 * values where a number is expected (a wrong type reads as its type). */
static const char *got(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) return lua_pushfstring(L, "%f", lua_tonumber(L, idx));
  return luaL_typename(L, idx);
}

/* Never a duration's value: doubles below 2^64 are multiples of 2048 from 2^53 on, so ceil
 * never gives 2^64 - 2. */
#define NOT_MS (UINT64_MAX - 1)

/* The duration at idx in ms (LUAIO_FOREVER for forever), or NOT_MS when it is none. Returns
 * its result rather than through a pointer: its callers raise, and a raising frame must
 * hold no local whose address is taken (see docs/internals.md, ASan). */
static uint64_t to_ms(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TNUMBER) return NOT_MS;
  double v = lua_tonumber(L, idx);
  if (!(v >= 0)) return NOT_MS;                          /* negative or NaN */
  if (v >= 18446744073709551616.0) return LUAIO_FOREVER; /* 2^64 and more, math.huge */
  return (uint64_t)ceil(v);
}

uint64_t luaio_checkms(lua_State *L, int arg, const char *what) {
  uint64_t ms = to_ms(L, arg);
  if (ms == NOT_MS) {
    const char *g = got(L, arg);
    luaL_argerror(L, arg,
                  what ? lua_pushfstring(L, "%s: " MS_EXPECTED ", got %s", what, g)
                       : lua_pushfstring(L, MS_EXPECTED ", got %s", g));
  }
  return ms;
}

/* --- strings for C ------------------------------------------------------------------------ */

/* A path, host name or variable name reaches C as a NUL-terminated string: a zero byte inside
 * would cut it short without a word ("secret.key\0.txt" opens secret.key), so such strings
 * are refused. A number is taken as its string, as luaL_checkstring does. */

const char *luaio_tocstring(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TNUMBER) return NULL;
  const char *s = lua_tostring(L, idx); /* a number becomes its string, in place */
  return strlen(s) == lua_objlen(L, idx) ? s : NULL;
}

const char *luaio_checkcstring(lua_State *L, int arg) {
  const char *s = luaio_tocstring(L, arg);
  if (s == NULL)
    luaL_argerror(L, arg,
                  lua_pushfstring(L, CSTRING_EXPECTED ", got %s",
                                  lua_type(L, arg) == LUA_TSTRING ? "a string with a zero byte"
                                                                  : luaL_typename(L, arg)));
  return s;
}

const char *luaio_optcstring(lua_State *L, int arg, const char *def) {
  return lua_isnoneornil(L, arg) ? def : luaio_checkcstring(L, arg);
}

/* --- option tables ------------------------------------------------------------------------ */

/* Pushes options[name] (nil when there is no table); returns its type. */
static int get_option(lua_State *L, int opts, const char *name) {
  if (lua_type(L, opts) != LUA_TTABLE) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  lua_getfield(L, opts, name);
  return lua_type(L, -1);
}

static int absindex(lua_State *L, int idx) {
  return idx > 0 || idx <= LUA_REGISTRYINDEX ? idx : lua_gettop(L) + idx + 1;
}

/* The option's value is at the top of the stack. */
static int option_error(lua_State *L, int opts, const char *name, const char *expected,
                        int numeric) {
  const char *g = numeric ? got(L, -1) : luaL_typename(L, -1);
  return luaL_argerror(L, opts,
                       lua_pushfstring(L, "option '%s': %s expected, got %s", name, expected, g));
}

uint64_t luaio_opt_ms(lua_State *L, int opts, const char *name, uint64_t def) {
  opts = absindex(L, opts);
  uint64_t ms = def;
  if (get_option(L, opts, name) != LUA_TNIL && (ms = to_ms(L, -1)) == NOT_MS)
    option_error(L, opts, name, MS_WANTED, 1);
  lua_pop(L, 1);
  return ms;
}

uint64_t luaio_opt_uint(lua_State *L, int opts, const char *name, uint64_t def, uint64_t min,
                        uint64_t max) {
  opts = absindex(L, opts);
  if (max > MAX_EXACT) max = MAX_EXACT;
  uint64_t v = def;
  if (get_option(L, opts, name) != LUA_TNIL) {
    double x = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : NAN;
    if (!(x >= (double)min && x <= (double)max && x == floor(x))) {
      const char *expected = lua_pushfstring(L, "integer from %f to %f", (double)min, (double)max);
      lua_insert(L, -2); /* the option's value stays on top, for "got" */
      option_error(L, opts, name, expected, 1);
    }
    v = (uint64_t)x;
  }
  lua_pop(L, 1);
  return v;
}

size_t luaio_opt_size(lua_State *L, int opts, const char *name, size_t def, size_t min,
                      size_t max) {
  return (size_t)luaio_opt_uint(L, opts, name, def, min, max);
}

int luaio_opt_bool(lua_State *L, int opts, const char *name, int def) {
  opts = absindex(L, opts);
  int v = def;
  int t = get_option(L, opts, name);
  if (t == LUA_TBOOLEAN)
    v = lua_toboolean(L, -1);
  else if (t != LUA_TNIL)
    option_error(L, opts, name, "boolean", 0);
  lua_pop(L, 1);
  return v;
}

/* --- the Lua module "luaio.opt" (the C half of stdlib/luaio/options.lua) ----------------- */

/* opt.ms(value) -> value (math.huge for forever) | nil, what a duration is. Never raises:
 * the Lua side raises at its caller's level, naming the caller's argument. */
static int opt_ms(lua_State *L) {
  uint64_t ms = to_ms(L, 1);
  if (ms == NOT_MS) {
    lua_pushnil(L);
    lua_pushliteral(L, MS_WANTED);
    return 2;
  }
  if (ms == LUAIO_FOREVER)
    lua_pushnumber(L, HUGE_VAL);
  else
    lua_pushvalue(L, 1);
  return 1;
}

static const luaL_Reg opt_funcs[] = {{"ms", opt_ms}, {NULL, NULL}};

int luaopen_luaio_opt(lua_State *L) {
  luaio_newlib(L, opt_funcs);
  return 1;
}
