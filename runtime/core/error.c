/* error.c: the one shape every I/O failure takes in Lua: nil, {code, name, message}. */
#include "luaio.h"

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

int luaio_pusherror(lua_State *L, int uverr) {
  lua_pushnil(L);
  luaio_newerror(L, uverr, uv_err_name(uverr), uv_strerror(uverr));
  return 2;
}
