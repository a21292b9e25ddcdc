/*
 * signal.c: signal handlers (uv_signal_t) and signal names, the C behind process.on and
 * process.off ("luaio.signal"; stdlib/process.lua puts them in `process`).
 *
 * A handler runs in a new task each time its signal arrives, so it may wait (finish
 * requests, sleep) before it exits. A handler alone does not keep the process alive: the
 * signal handle is unref'd, so an app that only waits for SIGTERM still ends when its
 * work is done. One handler per signal; process.on again replaces it.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "luaio.h"

#define MAX_SIGNAL 64

static const struct {
  const char *name;
  int num;
} signal_names[] = {
  {"SIGABRT", SIGABRT}, {"SIGALRM", SIGALRM},   {"SIGBUS", SIGBUS},       {"SIGCHLD", SIGCHLD},
  {"SIGCONT", SIGCONT}, {"SIGFPE", SIGFPE},     {"SIGHUP", SIGHUP},       {"SIGILL", SIGILL},
  {"SIGINT", SIGINT},   {"SIGIO", SIGIO},       {"SIGKILL", SIGKILL},     {"SIGPIPE", SIGPIPE},
  {"SIGPROF", SIGPROF}, {"SIGPWR", SIGPWR},     {"SIGQUIT", SIGQUIT},     {"SIGSEGV", SIGSEGV},
  {"SIGSTOP", SIGSTOP}, {"SIGSYS", SIGSYS},     {"SIGTERM", SIGTERM},     {"SIGTRAP", SIGTRAP},
  {"SIGTSTP", SIGTSTP}, {"SIGTTIN", SIGTTIN},   {"SIGTTOU", SIGTTOU},     {"SIGURG", SIGURG},
  {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2},   {"SIGVTALRM", SIGVTALRM}, {"SIGWINCH", SIGWINCH},
  {"SIGXCPU", SIGXCPU}, {"SIGXFSZ", SIGXFSZ},   {NULL, 0}};

const char *luaio_signame(int signum) {
  for (int i = 0; signal_names[i].name != NULL; i++)
    if (signal_names[i].num == signum) return signal_names[i].name;
  return NULL;
}

int luaio_checksignal(lua_State *L, int arg, int def) {
  if (def >= 0 && lua_isnoneornil(L, arg)) return def;
  if (lua_type(L, arg) == LUA_TNUMBER) {
    lua_Number n = lua_tonumber(L, arg);
    luaL_argcheck(L, n >= 0 && n <= MAX_SIGNAL && n == (int)n, arg, "signal number out of range");
    return (int)n;
  }
  if (lua_type(L, arg) != LUA_TSTRING) return luaL_typerror(L, arg, "signal name or number");
  const char *name = lua_tostring(L, arg);
  for (int i = 0; signal_names[i].name != NULL; i++)
    if (strcmp(signal_names[i].name, name) == 0) return signal_names[i].num;
  return luaL_argerror(L, arg, lua_pushfstring(L, "unknown signal '%s'", name));
}

/* One installed handler: the libuv handle and the Lua function (registry reference). */
typedef struct {
  uv_signal_t handle;
  int fn;
} handler_t;

static handler_t *handlers[MAX_SIGNAL + 1];

static void handler_free(uv_handle_t *handle) { free(handle->data); }

static void on_signal(uv_signal_t *handle, int signum) {
  handler_t *h = handle->data;
  lua_State *L = luaio_mainstate();
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->fn);
  const char *name = luaio_signame(signum);
  if (name != NULL)
    lua_pushstring(L, name);
  else
    lua_pushinteger(L, signum);
  luaio_spawn(L, 1); /* h may be gone after this (the handler may call process.off) */
}

/* Checks a signal argument for on/off: these cannot or must not be handled. */
static int check_catchable(lua_State *L, int arg) {
  int signum = luaio_checksignal(L, arg, -1);
  luaL_argcheck(L, signum != 0, arg, "signal 0 cannot be handled");
  luaL_argcheck(L, signum != SIGKILL && signum != SIGSTOP, arg, "SIGKILL and SIGSTOP cannot be handled");
  /* a fault handler that returns re-runs the faulting instruction: it would loop forever */
  luaL_argcheck(L, signum != SIGSEGV && signum != SIGBUS && signum != SIGFPE && signum != SIGILL, arg,
                "a fault signal cannot be handled");
  return signum;
}

/* process.off(signal) -> true if a handler was removed, false if there was none */
static int signal_off(lua_State *L) {
  int signum = check_catchable(L, 1);
  handler_t *h = handlers[signum];
  lua_pushboolean(L, h != NULL);
  if (h == NULL) return 1;
  handlers[signum] = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, h->fn);
  uv_close((uv_handle_t *)&h->handle, handler_free); /* stops it; memory goes in the callback */
  return 1;
}

/* process.on(signal, fn) -> true, or nil, err. fn(signame) runs in a new task per signal. */
static int signal_on(lua_State *L) {
  int signum = check_catchable(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  handler_t *h = handlers[signum];
  if (h != NULL) { /* replace the function, keep the handle */
    lua_pushvalue(L, 2);
    lua_rawseti(L, LUA_REGISTRYINDEX, h->fn);
    lua_pushboolean(L, 1);
    return 1;
  }
  h = malloc(sizeof *h);
  if (h == NULL) return luaL_error(L, "on: out of memory");
  uv_signal_init(luaio_loop(), &h->handle);
  h->handle.data = h;
  int err = uv_signal_start(&h->handle, on_signal, signum);
  if (err < 0) {
    uv_close((uv_handle_t *)&h->handle, handler_free);
    return luaio_pusherror(L, err);
  }
  uv_unref((uv_handle_t *)&h->handle); /* a handler alone does not keep the process alive */
  lua_pushvalue(L, 2);
  h->fn = luaL_ref(L, LUA_REGISTRYINDEX);
  handlers[signum] = h;
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg signal_funcs[] = {{"off", signal_off}, {"on", signal_on}, {NULL, NULL}};

int luaopen_luaio_signal(lua_State *L) {
  luaio_newlib(L, signal_funcs);
  return 1;
}
