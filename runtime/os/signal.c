/*
 * signal.c: signal handlers (uv_signal_t) and signal names, the C behind process.on and
 * process.off ("luaio.signal"; stdlib/process.lua puts them in `process`).
 *
 * A handler runs in a new task each time its signal arrives, so it may wait (finish
 * requests, sleep) before it exits. A handler alone does not keep the process alive: the
 * signal handle is unref'd, so an app that only waits for SIGTERM still ends when its
 * work is done. A signal may have several handlers (the app's, the log module's, the HTTP
 * server's graceful stop): process.on adds one, and each runs in its own task, in the order
 * they were added. One uv_signal_t per signal, opened with the first handler and closed
 * with the last.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "luaio.h"

#define MAX_SIGNAL 64

static const struct {
  const char *name;
  int num;
} signal_names[] = {{"SIGABRT", SIGABRT},
                    {"SIGALRM", SIGALRM},
                    {"SIGBUS", SIGBUS},
                    {"SIGCHLD", SIGCHLD},
                    {"SIGCONT", SIGCONT},
                    {"SIGFPE", SIGFPE},
                    {"SIGHUP", SIGHUP},
                    {"SIGILL", SIGILL},
                    {"SIGINT", SIGINT},
                    {"SIGIO", SIGIO},
                    {"SIGKILL", SIGKILL},
                    {"SIGPIPE", SIGPIPE},
                    {"SIGPROF", SIGPROF},
                    {"SIGPWR", SIGPWR},
                    {"SIGQUIT", SIGQUIT},
                    {"SIGSEGV", SIGSEGV},
                    {"SIGSTOP", SIGSTOP},
                    {"SIGSYS", SIGSYS},
                    {"SIGTERM", SIGTERM},
                    {"SIGTRAP", SIGTRAP},
                    {"SIGTSTP", SIGTSTP},
                    {"SIGTTIN", SIGTTIN},
                    {"SIGTTOU", SIGTTOU},
                    {"SIGURG", SIGURG},
                    {"SIGUSR1", SIGUSR1},
                    {"SIGUSR2", SIGUSR2},
                    {"SIGVTALRM", SIGVTALRM},
                    {"SIGWINCH", SIGWINCH},
                    {"SIGXCPU", SIGXCPU},
                    {"SIGXFSZ", SIGXFSZ},
                    {NULL, 0}};

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
  const char *name = luaio_checkcstring(L, arg);
  for (int i = 0; signal_names[i].name != NULL; i++)
    if (strcmp(signal_names[i].name, name) == 0) return signal_names[i].num;
  return luaL_argerror(L, arg, lua_pushfstring(L, "unknown signal '%s'", name));
}

/* A handled signal: the libuv handle and its handlers, a Lua array (registry reference). */
typedef struct {
  uv_signal_t handle;
  int fns;
} handler_t;

static handler_t *handlers[MAX_SIGNAL + 1];

static void handler_free(uv_handle_t *handle) { free(handle->data); }

typedef struct {
  handler_t *h;
  int signum;
} delivery_t;

/* Starts a task per handler, in order. The array is copied onto the stack first: a handler
 * runs until its first wait inside luaio_spawn and may call process.on/off meanwhile. */
static void deliver(lua_State *L, void *arg) {
  handler_t *h = ((delivery_t *)arg)->h;
  int signum = ((delivery_t *)arg)->signum;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->fns);
  int n = (int)lua_objlen(L, -1);
  luaL_checkstack(L, n + 2, "signal handlers");
  for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -(n + 1));
  int base = lua_gettop(L) - n;
  const char *name = luaio_signame(signum);
  for (int i = 1; i <= n; i++) {
    lua_pushvalue(L, base + i);
    if (name != NULL)
      lua_pushstring(L, name);
    else
      lua_pushinteger(L, signum);
    luaio_spawn(L, 1);
  }
  lua_pop(L, n);
}

static void on_signal(uv_signal_t *handle, int signum) {
  delivery_t d = {handle->data, signum};
  luaio_protect(deliver, &d, "signal");
}

/* Checks a signal argument for on/off: these cannot or must not be handled. */
static int check_catchable(lua_State *L, int arg) {
  int signum = luaio_checksignal(L, arg, -1);
  luaL_argcheck(L, signum != 0, arg, "signal 0 cannot be handled");
  luaL_argcheck(L, signum != SIGKILL && signum != SIGSTOP, arg,
                "SIGKILL and SIGSTOP cannot be handled");
  /* a fault handler that returns re-runs the faulting instruction: it would loop forever */
  luaL_argcheck(L, signum != SIGSEGV && signum != SIGBUS && signum != SIGFPE && signum != SIGILL,
                arg, "a fault signal cannot be handled");
  return signum;
}

/* Where fn (at stack index fn) is in h's array (pushed on the stack), 0 when it is not. */
static int find_fn(lua_State *L, handler_t *h, int fn) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->fns);
  int n = (int)lua_objlen(L, -1);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    int same = lua_rawequal(L, -1, fn);
    lua_pop(L, 1);
    if (same) return i;
  }
  return 0;
}

/* The last handler is gone: the signal gets its default action back. */
static void handler_close(lua_State *L, int signum) {
  handler_t *h = handlers[signum];
  handlers[signum] = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, h->fns);
  uv_close((uv_handle_t *)&h->handle, handler_free); /* stops it; memory goes in the callback */
}

/* process.off(signal[, fn]) -> true when a handler was removed, false when there was none.
 * Without fn every handler of the signal goes. */
static int signal_off(lua_State *L) {
  int signum = check_catchable(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
  handler_t *h = handlers[signum];
  if (h == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (lua_isnoneornil(L, 2)) {
    handler_close(L, signum);
    lua_pushboolean(L, 1);
    return 1;
  }
  int i = find_fn(L, h, 2); /* the array is at -1 */
  if (i == 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  int n = (int)lua_objlen(L, -1);
  for (; i < n; i++) { /* close the gap: the order of the others stays */
    lua_rawgeti(L, -1, i + 1);
    lua_rawseti(L, -2, i);
  }
  lua_pushnil(L);
  lua_rawseti(L, -2, n);
  if (n == 1) handler_close(L, signum);
  lua_pushboolean(L, 1);
  return 1;
}

/* Opens the signal's handle with an empty array of handlers; returns 0 or a libuv error. */
static int handler_open(lua_State *L, int signum) {
  handler_t *h = malloc(sizeof *h);
  if (h == NULL) return UV_ENOMEM;
  uv_signal_init(luaio_loop(), &h->handle);
  h->handle.data = h;
  int err = uv_signal_start(&h->handle, on_signal, signum);
  if (err < 0) {
    uv_close((uv_handle_t *)&h->handle, handler_free);
    return err;
  }
  uv_unref((uv_handle_t *)&h->handle); /* handlers alone do not keep the process alive */
  lua_newtable(L);
  h->fns = luaL_ref(L, LUA_REGISTRYINDEX);
  handlers[signum] = h;
  return 0;
}

/* process.on(signal, fn) -> true, or nil, err. Adds fn to the signal's handlers (a function
 * already there stays where it is); fn(signame) runs in a new task per signal. */
static int signal_on(lua_State *L) {
  int signum = check_catchable(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (handlers[signum] == NULL) {
    int err = handler_open(L, signum);
    if (err < 0) return luaio_pusherror(L, err);
  }
  if (find_fn(L, handlers[signum], 2) == 0) {
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* signal.count(signal) -> how many handlers it has (stdlib/http.lua: does the app handle
 * SIGTERM itself?) */
static int signal_count(lua_State *L) {
  handler_t *h = handlers[luaio_checksignal(L, 1, -1)];
  if (h == NULL) {
    lua_pushinteger(L, 0);
    return 1;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->fns);
  lua_pushinteger(L, (lua_Integer)lua_objlen(L, -1));
  return 1;
}

static const luaL_Reg signal_funcs[] = {
    {"count", signal_count}, {"off", signal_off}, {"on", signal_on}, {NULL, NULL}};

int luaopen_luaio_signal(lua_State *L) {
  luaio_newlib(L, signal_funcs);
  return 1;
}
