/*
 * task.c: the coroutine scheduler (the C half of stdlib/task.lua).
 *
 * Every piece of Lua code that may wait runs in a task: a coroutine that only this file
 * resumes. A waiting call checks that it runs in the current task, starts its libuv work,
 * anchors the coroutine (so the GC keeps it while libuv holds a pointer to it) and yields.
 * The libuv callback pushes the results and calls luaio_resume. Lua code reads as if it
 * blocks; the loop never does.
 *
 * The ready queue holds tasks to resume on the next loop iteration (new tasks, tasks woken
 * by another task). I/O callbacks resume their task directly, without the queue.
 *
 * The Lua module "luaio.task" gives stdlib/task.lua its primitives: spawn, suspend (with an
 * optional timeout), wake, yield, current and now.
 */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>

#include "luaio.h"

static uv_loop_t *loop;
static lua_State *mainL;     /* the main state, used by callbacks */
static lua_State *current;   /* the task being resumed now, or NULL */
static lua_State *main_task; /* the app's main chunk: its failure ends the process */
static int wait_yield;       /* set by luaio_yield: tells a wait from a stray coroutine.yield */
static int exit_status;

uv_loop_t *luaio_loop(void) { return loop; }
lua_State *luaio_mainstate(void) { return mainL; }

/* --- running tasks ---------------------------------------------------------------------- */

/* Every waiting call checks this before it sends, queues or registers anything: a wait
 * that could not yield would otherwise leave its request behind, and the answer would
 * later resume the task inside some other call. A task cannot yield from inside a call
 * made by C (string.gsub's or table.sort's function, load's reader, a __gc called by the
 * collector; require is Lua for this reason): lua_isyieldable says so. */
void luaio_checktask(lua_State *L, const char *what) {
  if (L != current)
    luaL_error(L,
               "%s: cannot wait here: waiting calls must run in a luaio task (the main chunk, "
               "a handler or task.spawn), not the main thread or a plain coroutine",
               what);
  if (!lua_isyieldable(L))
    luaL_error(L,
               "%s: cannot wait here: this code runs inside a call made by C (a function "
               "given to string.gsub or table.sort, load's reader, a __gc metamethod), which "
               "cannot be suspended",
               what);
}

/* Whether L may wait: the task being resumed, and not inside a call made by C. */
int luaio_canwait(lua_State *L) { return L == current && lua_isyieldable(L); }

int luaio_anchor(lua_State *L) {
  lua_pushthread(L);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

void luaio_unanchor(int ref) { luaL_unref(mainL, LUA_REGISTRYINDEX, ref); }

int luaio_yield(lua_State *L) {
  wait_yield = 1;
  return lua_yield(L, 0);
}

static int call_tostring(lua_State *L) {
  if (!luaL_callmeta(L, 1, "__tostring") || !lua_isstring(L, -1)) lua_pushnil(L);
  return 1;
}

/* Pushes onto L the text of the error object at idx of from: a string or number as it is,
 * else what its __tostring gives, called protected (an error object whose __tostring
 * raises must not take the process down), else its type. */
static const char *error_text(lua_State *L, lua_State *from, int idx) {
  lua_pushvalue(from, idx);
  lua_xmove(from, L, 1);
  if (lua_isstring(L, -1)) return lua_tostring(L, -1);
  lua_pushcfunction(L, call_tostring);
  lua_pushvalue(L, -2);
  if (lua_pcall(L, 1, 1, 0) == 0 && lua_isstring(L, -1)) {
    lua_remove(L, -2);
    return lua_tostring(L, -1);
  }
  lua_pop(L, 1);
  const char *text = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, -1));
  lua_remove(L, -2);
  return text;
}

/* Prints "luaio: <what>: <message>" and a traceback of the failed coroutine. */
static void report(lua_State *co, const char *what) {
  const char *msg = error_text(mainL, co, -1); /* on mainL: co is dead */
  luaL_traceback(mainL, co, msg, 0);
  lua_remove(mainL, -2);
  fprintf(stderr, "luaio: %s: %s\n", what, lua_tostring(mainL, -1));
  fflush(stderr);
  lua_pop(mainL, 1);
}

/* A task started by luaio_spawn_with runs xpcall(fn, traceback, args...) with, below it on
 * its stack, the hook key, a pointer to its luaio_hook and the value given to the hook. The
 * xpcall keeps an error from unwinding the task's stack (after an error, a coroutine's index
 * 1 would be the raising frame's base, not the task's), so the hook finds its value where it
 * was put, however the task ended; the error is reported here. Nothing a Lua function
 * returns can be the key, so a finished task is recognised by its first stack slot. No table
 * entry, no Lua wrapper: both would cost memory per idle connection. */
static char hook_key;
static int traceback_ref = LUA_NOREF; /* the message handler: the error and a traceback */

static int traceback_handler(lua_State *L) {
  luaL_traceback(L, L, error_text(L, L, 1), 1);
  return 1;
}

static void run_hook(lua_State *co) {
  if (lua_gettop(co) < 3 || lua_type(co, 1) != LUA_TLIGHTUSERDATA ||
      lua_touserdata(co, 1) != &hook_key)
    return;
  const luaio_hook *hook = lua_touserdata(co, 2);
  if (lua_gettop(co) >= 4 && !lua_toboolean(co, 4)) { /* xpcall caught an error */
    fprintf(stderr, "luaio: uncaught error in task: %s\n", luaL_optstring(co, 5, "?"));
    fflush(stderr);
  }
  hook->done(co, lua_touserdata(co, 3));
}

void luaio_resume(lua_State *co, int nargs) {
  lua_State *prev = current;
  current = co;
  wait_yield = 0;
  int status = lua_resume(co, nargs);
  current = prev;
  if (status == LUA_YIELD) {
    if (!wait_yield) {
      /* coroutine.yield() straight out of a task: nothing would ever resume it. */
      lua_pushstring(co, "coroutine.yield() called directly in a task; use task.yield() or a "
                         "plain coroutine");
      report(co, "task abandoned");
      if (co == main_task) exit(1);
    }
    return;
  }
  if (status != 0) {
    report(co, co == main_task ? "error" : "uncaught error in task");
    if (co == main_task) exit(1);
  }
  run_hook(co);
  lua_settop(co, 0);
}

void luaio_spawn(lua_State *L, int nargs) {
  lua_State *co = lua_newthread(L); /* stays on L's stack while it runs: the GC sees it */
  lua_insert(L, -(nargs + 2));
  lua_xmove(L, co, nargs + 1);
  luaio_resume(co, nargs);
  lua_pop(L, 1);
}

void luaio_spawn_with(lua_State *L, int nargs, const luaio_hook *hook) {
  /* value, fn, args -> key, hook, value, xpcall, fn, traceback, args */
  lua_pushlightuserdata(L, &hook_key);
  lua_insert(L, -(nargs + 3));
  lua_pushlightuserdata(L, (void *)hook);
  lua_insert(L, -(nargs + 3));
  lua_getglobal(L, "xpcall");
  lua_insert(L, -(nargs + 2));
  lua_rawgeti(L, LUA_REGISTRYINDEX, traceback_ref);
  lua_insert(L, -(nargs + 1));
  lua_State *co = lua_newthread(L);
  lua_insert(L, -(nargs + 7));
  lua_xmove(L, co, nargs + 6);
  luaio_resume(co, nargs + 2);
  lua_pop(L, 1);
}

void luaio_start_main(lua_State *L, int nargs) {
  lua_State *co = lua_newthread(L);
  luaL_ref(L, LUA_REGISTRYINDEX); /* the main task lives as long as the process */
  lua_xmove(L, co, nargs + 1);
  main_task = co;
  luaio_resume(co, nargs);
}

int luaio_run(void) {
  uv_run(loop, UV_RUN_DEFAULT);
  return exit_status;
}

/* --- protected calls from libuv callbacks ------------------------------------------------ */

typedef struct {
  luaio_cfn fn;
  void *arg;
} protected_t;

static int protect_ref = LUA_NOREF; /* the C function below, made once: pushing a C
                                     * function allocates a closure in LuaJIT */

static int run_protected(lua_State *L) {
  protected_t *p = lua_touserdata(L, 1);
  lua_settop(L, 0);
  p->fn(L, p->arg);
  return 0;
}

int luaio_protect(luaio_cfn fn, void *arg, const char *what) {
  if (current != NULL) { /* inside a task's Lua call: its resume is the protection */
    fn(current, arg);
    return 0;
  }
  lua_State *L = mainL;
  int top = lua_gettop(L);
  protected_t p = {fn, arg};
  lua_rawgeti(L, LUA_REGISTRYINDEX, protect_ref);
  lua_pushlightuserdata(L, &p);
  int rc = lua_pcall(L, 1, 0, 0);
  if (rc != 0) {
    fprintf(stderr, "luaio: %s: %s\n", what, lua_isstring(L, -1) ? lua_tostring(L, -1) : "error");
    fflush(stderr);
  }
  lua_settop(L, top);
  return rc;
}

/* --- the ready queue -------------------------------------------------------------------- */

/* A registry table used as a FIFO of {co, n, values...} records. */
static int queue_ref = LUA_NOREF;
static int queue_head = 1, queue_tail = 1;
static uv_idle_t queue_idle;

static void queue_run(uv_idle_t *handle);

/* Queues co with the n values on top of L's stack (popped). */
static void queue_push(lua_State *L, lua_State *co, int n) {
  lua_createtable(L, n + 1, 1);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  lua_rawseti(L, -2, 1);
  for (int i = n; i >= 1; i--) {
    lua_pushvalue(L, -1 - (n - i) - 1); /* value i */
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "n");
  lua_rawgeti(L, LUA_REGISTRYINDEX, queue_ref);
  lua_insert(L, -2);
  lua_rawseti(L, -2, queue_tail++);
  lua_pop(L, 1 + n);
  if (!uv_is_active((uv_handle_t *)&queue_idle)) uv_idle_start(&queue_idle, queue_run);
}

/* Resumes what was queued before this round began; what those tasks queue runs next round,
 * so two tasks that keep yielding to each other cannot starve the I/O callbacks. */
static void queue_run(uv_idle_t *handle) {
  (void)handle;
  lua_State *L = mainL;
  int end = queue_tail;
  while (queue_head < end) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, queue_ref);
    lua_rawgeti(L, -1, queue_head);
    lua_pushnil(L);
    lua_rawseti(L, -3, queue_head++);
    lua_rawgeti(L, -1, 1);
    lua_State *co = lua_tothread(L, -1);
    lua_getfield(L, -2, "n");
    int n = (int)lua_tointeger(L, -1);
    lua_pop(L, 2);
    for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i + 1);
    lua_xmove(L, co, n);
    lua_pop(L, 2);
    luaio_resume(co, n); /* a new task has its function below the values */
  }
  if (queue_head == queue_tail) {
    queue_head = queue_tail = 1;
    uv_idle_stop(&queue_idle);
  }
}

void luaio_ready(lua_State *L, lua_State *co, int nargs) { queue_push(L, co, nargs); }

void luaio_wake(lua_State *L, lua_State *co, int ref, int n) {
  if (L == luaio_mainstate()) {
    luaio_unanchor(ref); /* a running coroutine is marked by the collector itself */
    luaio_resume(co, n);
  } else {
    lua_xmove(co, L, n);
    luaio_ready(L, co, n);
    luaio_unanchor(ref);
  }
}

/* --- suspend and wake ------------------------------------------------------------------- */

/* One waiting task: the optional timeout timer and the anchor. Freed in the close callback. */
typedef struct {
  uv_timer_t timer;
  lua_State *co;
  int ref;
} wait_t;

static int waiting_ref = LUA_NOREF; /* registry table: coroutine -> wait_t (light userdata) */

static void wait_free(uv_handle_t *handle) { free(handle->data); }

/* Removes co's wait record; returns it, or NULL when co is not suspended. */
static wait_t *wait_take(lua_State *L, lua_State *co) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, waiting_ref);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  lua_pushvalue(L, -1);
  lua_rawget(L, -3);
  wait_t *w = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (w != NULL) {
    lua_pushnil(L);
    lua_rawset(L, -3);
  } else {
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (w != NULL) {
    luaio_unanchor(w->ref);
    uv_close((uv_handle_t *)&w->timer, wait_free);
  }
  return w;
}

static void wait_timeout(uv_timer_t *timer) {
  wait_t *w = timer->data;
  lua_State *co = w->co;
  wait_take(mainL, co);
  luaio_resume(co, 0); /* suspend() returns nothing: the caller reads that as a timeout */
}

/* Suspends L until sched.wake or ms have passed. A timer runs unless ms is LUAIO_FOREVER
 * and !keep_alive: a task waiting for another with no timeout should not keep the process
 * alive by itself, a sleeping task should (even sleep(math.huge), whose timer never fires). */
static int suspend(lua_State *L, uint64_t ms, int keep_alive) {
  wait_t *w = malloc(sizeof *w);
  if (w == NULL) return luaL_error(L, "suspend: out of memory");
  uv_timer_init(loop, &w->timer);
  w->timer.data = w;
  w->co = L;
  w->ref = luaio_anchor(L);
  if (ms != LUAIO_FOREVER || keep_alive) {
    uv_update_time(loop); /* the cached loop time may be stale after long Lua work */
    uv_timer_start(&w->timer, wait_timeout, ms, 0); /* libuv clamps now + ms to UINT64_MAX */
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, waiting_ref);
  lua_pushthread(L);
  lua_pushlightuserdata(L, w);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return luaio_yield(L);
}

/* sched.suspend([timeout_ms]): waits until sched.wake(co, ...) or the timeout (none when
 * absent or math.huge). */
static int sched_suspend(lua_State *L) {
  uint64_t ms = lua_isnoneornil(L, 1) ? LUAIO_FOREVER : luaio_checkms(L, 1, NULL);
  luaio_checktask(L, "suspend");
  return suspend(L, ms, 0);
}

/* sched.wake(co, ...): resumes a suspended task on the next iteration with the values.
 * Returns false when co is not suspended (already woken, or timed out). */
static int sched_wake(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argcheck(L, co != NULL, 1, "coroutine expected");
  if (wait_take(L, co) == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  queue_push(L, co, lua_gettop(L) - 1);
  lua_pushboolean(L, 1);
  return 1;
}

/* sched.sleep(ms) (task.sleep itself). sleep(0) goes through the ready queue, not a timer:
 * libuv 1.44 runs a 0 ms timer started inside a timer callback in the same pass, so a loop
 * of sleep(0) would never let the loop poll for I/O. */
static int sched_sleep(lua_State *L) {
  uint64_t ms = luaio_checkms(L, 1, NULL);
  luaio_checktask(L, "sleep");
  if (ms == 0) {
    queue_push(L, L, 0);
    return luaio_yield(L);
  }
  return suspend(L, ms, 1);
}

/* sched.spawn(fn): a new task, started on the next iteration. Returns its coroutine. */
static int sched_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  queue_push(L, co, 0);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  return 1;
}

/* sched.yield(): lets every other ready task and pending callback run first. */
static int sched_yield_task(lua_State *L) {
  luaio_checktask(L, "yield");
  queue_push(L, L, 0);
  return luaio_yield(L);
}

/* sched.waiter(what): the running task, for Lua code that lists itself somewhere before it
 * suspends: it raises first, as every waiting call does where it cannot wait. */
static int sched_waiter(lua_State *L) {
  luaio_checktask(L, luaL_checkstring(L, 1));
  lua_pushthread(L);
  return 1;
}

static int sched_current(lua_State *L) {
  if (current == NULL || current != L) return 0;
  lua_pushthread(L);
  return 1;
}

/* sched.now(): monotonic milliseconds, with sub-millisecond precision. */
static int sched_now(lua_State *L) {
  lua_pushnumber(L, (double)uv_hrtime() / 1e6);
  return 1;
}

static const luaL_Reg sched_funcs[] = {
    {"current", sched_current}, {"now", sched_now},          {"sleep", sched_sleep},
    {"spawn", sched_spawn},     {"suspend", sched_suspend},  {"wake", sched_wake},
    {"waiter", sched_waiter},   {"yield", sched_yield_task}, {NULL, NULL}};

int luaopen_luaio_task(lua_State *L) {
  luaio_newlib(L, sched_funcs);
  return 1;
}

void luaio_sched_init(lua_State *L) {
  mainL = L;
  loop = uv_default_loop();
  uv_idle_init(loop, &queue_idle);
  lua_newtable(L);
  queue_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  waiting_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, run_protected);
  protect_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, traceback_handler);
  traceback_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}
