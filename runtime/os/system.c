/*
 * system.c: the `system` module, facts about the machine (seed-api.md, "system").
 *
 * The pattern every C module follows: static functions named <module>_<function>, one
 * alphabetised luaL_Reg array, one luaopen_<module>. Failures of the OS come back as
 * nil, {code, name, message} through luaio_pusherror.
 */
#include "luaio.h"

static void setint(lua_State *L, const char *key, double value) {
  lua_pushnumber(L, value);
  lua_setfield(L, -2, key);
}

/* system.cpuinfo() -> {{model, speed, times = {user, nice, sys, idle, irq}}, ...} */
static int system_cpuinfo(lua_State *L) {
  uv_cpu_info_t *cpus;
  int count;
  int err = uv_cpu_info(&cpus, &count);
  if (err < 0) return luaio_pusherror(L, err);
  lua_createtable(L, count, 0);
  for (int i = 0; i < count; i++) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, cpus[i].model);
    lua_setfield(L, -2, "model");
    setint(L, "speed", cpus[i].speed);
    lua_createtable(L, 0, 5);
    setint(L, "user", (double)cpus[i].cpu_times.user);
    setint(L, "nice", (double)cpus[i].cpu_times.nice);
    setint(L, "sys", (double)cpus[i].cpu_times.sys);
    setint(L, "idle", (double)cpus[i].cpu_times.idle);
    setint(L, "irq", (double)cpus[i].cpu_times.irq);
    lua_setfield(L, -2, "times");
    lua_rawseti(L, -2, i + 1);
  }
  uv_free_cpu_info(cpus, count);
  return 1;
}

/* system.hrtime() -> nanoseconds from an arbitrary point, monotonic. A double holds them
 * exactly for 104 days of uptime and to a few nanoseconds after that. */
static int system_hrtime(lua_State *L) {
  lua_pushnumber(L, (double)uv_hrtime());
  return 1;
}

/* system.loadavg() -> {1 min, 5 min, 15 min} */
static int system_loadavg(lua_State *L) {
  double avg[3];
  uv_loadavg(avg);
  lua_createtable(L, 3, 0);
  for (int i = 0; i < 3; i++) {
    lua_pushnumber(L, avg[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* system.meminfo() -> {total, free} in bytes */
static int system_meminfo(lua_State *L) {
  lua_createtable(L, 0, 2);
  setint(L, "total", (double)uv_get_total_memory());
  setint(L, "free", (double)uv_get_free_memory());
  return 1;
}

/* system.uptime() -> seconds since the machine booted */
static int system_uptime(lua_State *L) {
  double uptime;
  int err = uv_uptime(&uptime);
  if (err < 0) return luaio_pusherror(L, err);
  lua_pushnumber(L, uptime);
  return 1;
}

static const luaL_Reg system_funcs[] = {{"cpuinfo", system_cpuinfo}, {"hrtime", system_hrtime},
                                        {"loadavg", system_loadavg}, {"meminfo", system_meminfo},
                                        {"uptime", system_uptime},   {NULL, NULL}};

int luaopen_system(lua_State *L) {
  luaio_newlib(L, system_funcs);
  return 1;
}
