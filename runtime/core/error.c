/*
 * error.c: the one shape every I/O failure takes in Lua: nil, {code, name, message}.
 *
 * Every error table is made here, from C (luaio_pusherror for a libuv code,
 * luaio_pushnamederror for a name) or from Lua (require("luaio.error").new(name, message)).
 * A name libuv knows ("ETIMEDOUT", "ECONNRESET", "EPROTO", "EOF"...) gets libuv's code;
 * any other name ("ECHILD", "ENOTFOUND"...) gets code 0, unless the caller gives one.
 */
#include <string.h>

#include "luaio.h"

static const struct {
  const char *name;
  int code;
} uv_codes[] = {
#define XX(code, _) {#code, UV_##code},
    UV_ERRNO_MAP(XX)
#undef XX
};

int luaio_errcode(const char *name) {
  for (size_t i = 0; i < sizeof uv_codes / sizeof uv_codes[0]; i++)
    if (strcmp(uv_codes[i].name, name) == 0) return uv_codes[i].code;
  return 0;
}

/* print(err) and error(err) should read well: "ECONNREFUSED: connection refused". */
static int error_tostring(lua_State *L) {
  lua_getfield(L, 1, "name");
  lua_getfield(L, 1, "message");
  lua_pushfstring(L, "%s: %s", luaL_optstring(L, -2, "?"), luaL_optstring(L, -1, "?"));
  return 1;
}

void luaio_newerror(lua_State *L, int code, const char *name, const char *message) {
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, name);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, message);
  lua_setfield(L, -2, "message");
  if (luaL_newmetatable(L, "luaio.error")) {
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_setmetatable(L, -2);
}

void luaio_namederror(lua_State *L, const char *name, const char *message) {
  int code = luaio_errcode(name);
  if (message == NULL) message = code != 0 ? uv_strerror(code) : name;
  luaio_newerror(L, code, name, message);
}

int luaio_pusherror(lua_State *L, int uverr) {
  lua_pushnil(L);
  luaio_newerror(L, uverr, uv_err_name(uverr), uv_strerror(uverr));
  return 2;
}

int luaio_pushnamederror(lua_State *L, const char *name, const char *message) {
  lua_pushnil(L);
  luaio_namederror(L, name, message);
  return 2;
}

/* --- the Lua module "luaio.error" ------------------------------------------------------- */

/* error.new(name[, message]) -> {code, name, message}: the code is libuv's for a libuv
 * name, 0 otherwise; the message defaults to libuv's text for the name (or the name). */
static int error_new(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *message = luaL_optstring(L, 2, NULL);
  luaio_namederror(L, name, message);
  return 1;
}

/* error.code(name) -> libuv's code for the name, or 0 */
static int error_code(lua_State *L) {
  lua_pushinteger(L, luaio_errcode(luaL_checkstring(L, 1)));
  return 1;
}

/* error.is(value[, name]) -> true when value is an error table (named name, if given) */
static int error_is(lua_State *L) {
  int is = 0;
  if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, "luaio.error");
    is = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  if (is && !lua_isnoneornil(L, 2)) {
    lua_getfield(L, 1, "name");
    is = lua_rawequal(L, -1, 2);
  }
  lua_pushboolean(L, is);
  return 1;
}

static const luaL_Reg error_funcs[] = {
    {"code", error_code}, {"is", error_is}, {"new", error_new}, {NULL, NULL}};

int luaopen_luaio_error(lua_State *L) {
  luaio_newlib(L, error_funcs);
  return 1;
}
