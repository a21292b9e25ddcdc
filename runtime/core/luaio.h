/*
 * luaio.h: what every C file of the runtime shares.
 *
 * Conventions (see docs/internals.md):
 *   - misuse of an API raises a Lua error naming the argument (luaL_argerror and friends);
 *   - an operating-system or I/O failure returns nil, {code, name, message} (luaio_pusherror);
 *   - a call that waits must run inside a task: luaio_checktask() before, luaio_yield() to wait,
 *     and a libuv callback later calls luaio_resume().
 */
#ifndef LUAIO_H
#define LUAIO_H

#include <stddef.h>
#include <stdint.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"
#include "uv.h"

#define LUAIO_VERSION "0.1.0"

/* LuaJIT speaks Lua 5.1 plus luaL_setfuncs, but has no luaL_newlib. */
#define luaio_newlib(L, reg)                                                                       \
  (lua_createtable((L), 0, (int)(sizeof(reg) / sizeof((reg)[0]) - 1)), luaL_setfuncs((L), (reg), 0))

/* A userdata type's metatable: anchored in the registry (ref: new objects get it from there)
 * and known by its address (mt). luaio_checkudata compares addresses: luaL_checkudata looks
 * the name up (hashing it) on every call, and a registry lookup is not free either, for
 * methods called per message or per request. */
typedef struct {
  int ref;
  const void *mt;
} luaio_udtype;

/* luaL_newmetatable(L, name) kept in t (once); leaves the metatable on the stack. */
static inline void luaio_newudtype(lua_State *L, luaio_udtype *t, const char *name) {
  luaL_newmetatable(L, name);
  t->mt = lua_topointer(L, -1);
  lua_pushvalue(L, -1);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static inline void *luaio_checkudata(lua_State *L, int arg, const luaio_udtype *t,
                                     const char *tname) {
  void *p = lua_touserdata(L, arg);
  if (p != NULL && lua_getmetatable(L, arg)) {
    int same = lua_topointer(L, -1) == t->mt;
    lua_pop(L, 1);
    if (same) return p;
  }
  luaL_typerror(L, arg, tname);
  return NULL;
}

/* --- errors (error.c) ------------------------------------------------------------------ */

/* Every error table is {code, name, message} with tostring "NAME: message", made here only.
 * Lua code makes them with require("luaio.error").new(name[, message]). */

/* Pushes nil and the error for a libuv error code (UV_ETIMEDOUT...); returns 2. */
int luaio_pusherror(lua_State *L, int uverr);
/* Pushes nil and an error by name; returns 2. A libuv name ("ETIMEDOUT", "ECONNRESET",
 * "EPROTO", "EBUSY", "EOF"...) gets libuv's code, any other name ("ECHILD") code 0. message
 * NULL: libuv's text for the name (or the name itself). */
int luaio_pushnamederror(lua_State *L, const char *name, const char *message);
/* luaio_pushnamederror without the nil: pushes only the error table. */
void luaio_namederror(lua_State *L, const char *name, const char *message);
/* With an explicit code, for a name that is not the code's own (dns: ENOTFOUND keeps
 * getaddrinfo's EAI code). */
void luaio_newerror(lua_State *L, int code, const char *name, const char *message);
/* libuv's code for an error name ("ETIMEDOUT" -> UV_ETIMEDOUT), 0 when libuv has no such name. */
int luaio_errcode(const char *name);

/* --- durations and option tables (opt.c) ------------------------------------------------- */

/* A duration in ms is a number >= 0; fractions round up. math.huge, and anything from 2^64 ms
 * on (more than a libuv timer holds), means forever: LUAIO_FOREVER, "no timeout". NaN,
 * negative numbers and other types raise naming the argument. Where 0 also means "no
 * timeout" (socket timeouts), the caller says so; LUAIO_FOREVER always does. */
#define LUAIO_FOREVER UINT64_MAX
/* The duration at arg, or raises "bad argument #arg to 'f' (what: non-negative number of
 * milliseconds (or math.huge) expected, got -1)" (what may be NULL). For an optional
 * argument: lua_isnoneornil(L, arg) ? default : luaio_checkms(L, arg, what). */
uint64_t luaio_checkms(lua_State *L, int arg, const char *what);

/* Option readers: opts is the stack index of the options table; a missing table (nil or
 * none) or a nil option gives def, which is returned as is (it may lie outside the range,
 * e.g. UINT64_MAX for "not given"). A wrong value raises naming opts' argument and the
 * option: "bad argument #3 to 'f' (option 'name': integer from 1 to 128 expected, got 500)",
 * as stdlib/luaio/options.lua words it. Unknown option names are the Lua checker's job. */
/* A duration (see above): LUAIO_FOREVER for math.huge. */
uint64_t luaio_opt_ms(lua_State *L, int opts, const char *name, uint64_t def);
/* An integer from min to max (max is capped at 2^53). */
uint64_t luaio_opt_uint(lua_State *L, int opts, const char *name, uint64_t def, uint64_t min,
                        uint64_t max);
/* A byte count: luaio_opt_uint as a size_t. */
size_t luaio_opt_size(lua_State *L, int opts, const char *name, size_t def, size_t min, size_t max);
/* true or false (no other type: 0 and "no" are errors, not true). */
int luaio_opt_bool(lua_State *L, int opts, const char *name, int def);

/* --- strings that reach C as C strings (opt.c) ------------------------------------------- */

/* Paths, host names, variable and signal names go to the OS or a C library NUL-terminated: a
 * zero byte inside would silently cut them ("secret.key\0.txt" opening secret.key), so every
 * such argument is read with these. luaio_checkcstring: the string at arg (a number counts, as
 * for luaL_checkstring), or raises "bad argument #arg to 'f' (string without zero bytes
 * expected, got a string with a zero byte)" (or "got nil"...). luaio_optcstring: def for nil or none.
 * luaio_tocstring: the string at idx, or NULL when it is not one or holds a zero byte (for
 * callers that word their own error). */
const char *luaio_checkcstring(lua_State *L, int arg);
const char *luaio_optcstring(lua_State *L, int arg, const char *def);
const char *luaio_tocstring(lua_State *L, int idx);

/* --- scheduler (task.c) ---------------------------------------------------------------- */

uv_loop_t *luaio_loop(void);
lua_State *luaio_mainstate(void);
void luaio_sched_init(lua_State *L);
/* Raises unless L is the task the scheduler is running now; `what` names the caller. */
void luaio_checktask(lua_State *L, const char *what);
int luaio_canwait(lua_State *L);
/* Keeps the waiting coroutine L alive; returns a registry reference for luaio_unanchor. */
int luaio_anchor(lua_State *L);
void luaio_unanchor(int ref);
/* Suspends the running task; a libuv callback resumes it with luaio_resume. */
int luaio_yield(lua_State *L);
/* Resumes task co with the nargs values on its stack; reports errors. */
void luaio_resume(lua_State *co, int nargs);
/* Resumes the suspended task co on the next loop iteration with the nargs values on top of
 * L's stack (popped). For waking a task from inside another task without nesting resumes. */
void luaio_ready(lua_State *L, lua_State *co, int nargs);
/* Wakes the waiting task co (anchored by ref) with the n values on top of co's stack: at
 * once when L is the main state (a loop callback), through the ready queue when L is a
 * task (inside its call: no nested resume). The anchor goes once the queue holds co (the
 * queue allocates: an unanchored coroutine could be collected meanwhile); LUA_NOREF keeps
 * it. */
void luaio_wake(lua_State *L, lua_State *co, int ref, int n);
/* Runs fn(args) in a new task now: fn and its nargs arguments on top of L's stack (popped).
 * For libuv callbacks that start work (an accepted connection, a signal); L is the main
 * state. The task runs until its first wait; an uncaught error is reported, not raised. */
void luaio_spawn(lua_State *L, int nargs);
/* luaio_spawn, plus a hook called when the task ends (returns or raises: the error is
 * reported first): on L's stack a value for the hook (a userdata: the hook gets its address),
 * then fn and its nargs arguments. The value stays on the task's stack, alive, until the
 * hook has run. It costs no allocation, which matters per connection. */
typedef struct {
  void (*done)(lua_State *co, void *data);
} luaio_hook;
void luaio_spawn_with(lua_State *L, int nargs, const luaio_hook *hook);
/* Runs fn (at the top of L's stack, popped) as the main task; its failure exits with 1. */
void luaio_start_main(lua_State *L, int nargs);
/* Runs the loop until no work is left; returns the process exit status. */
int luaio_run(void);

/* Runs fn(L, arg) on the main state in protected mode, for libuv callbacks that call Lua: an
 * error (or out of memory) there must fail the one connection or request involved, not
 * abort the process. Returns 0, or non-zero after printing "luaio: <what>: <error>".
 * Called from inside a task's Lua call (a socket write that fails), fn runs directly:
 * an error then goes to that task. */
typedef void (*luaio_cfn)(lua_State *L, void *arg);
int luaio_protect(luaio_cfn fn, void *arg, const char *what);

/* --- deadlines (deadline.c) ------------------------------------------------------------- */

/* A duration that never ends: no timeout. */
#define LUAIO_FOREVER UINT64_MAX

/* One pending timeout, embedded in what it times (a connection): 24 bytes, since an idle
 * connection pays for it. Zero-initialised = not armed. Durations are capped at 2^31 ms
 * (24 days); longer ones never end. */
typedef struct luaio_deadline luaio_deadline;
typedef void (*luaio_expire_fn)(luaio_deadline *d);
struct luaio_deadline {
  luaio_deadline *prev, *next;
  uint32_t at;   /* loop time (ms), modulo 2^32 */
  uint16_t list; /* 1 + index of its list; 0 when not armed */
};
/* expire(d) runs once, ms milliseconds from now (0 or LUAIO_FOREVER: never); re-arming
 * replaces the earlier deadline. d is disarmed before expire runs. */
void luaio_deadline_arm(luaio_deadline *d, uint64_t ms, luaio_expire_fn expire);
void luaio_deadline_disarm(luaio_deadline *d);
#define luaio_deadline_armed(d) ((d)->list != 0)

/* luaio's heap (heap.c), for OpenSSL and connections: realloc with lua_Alloc's contract
 * ((NULL, n) allocates, (p, 0) frees and returns NULL); thread-safe. */
void *luaio_heap_realloc(void *p, size_t n);
void *luaio_heap_calloc(size_t n);
#define luaio_heap_free(p) ((void)luaio_heap_realloc((p), 0))

/* The first argument process.fork gives a child (our own executable): with LUAIO_FORK_FILE in
 * its environment, it makes main.c run that file of the app (see main.c, process.c). */
#define LUAIO_FORK_ARG "--luaio-fork"

/* A fresh state (main.c): standard libraries, luaio's modules, the app searcher, the
 * scheduler and `arg`. For the entry point, and for harnesses (the server fuzzer). */
lua_State *luaio_state_new(const char *script, int argc, char **argv);

/* --- the app store: the bundle inside the executable, or the app folder (bundle.c) ------ */

typedef enum { LUAIO_NO_PAYLOAD = 0, LUAIO_PAYLOAD = 1 } luaio_payload;

/* Looks for a payload at the end of our own executable. On a corrupt or foreign payload
 * writes a one-line message to stderr and exits with 1. */
luaio_payload luaio_bundle_mount_self(void);
/* Serves the app from a folder instead (luaio run). */
void luaio_bundle_use_folder(const char *dir);
/* The app folder under luaio run (as given, maybe relative), NULL in a bundled app. */
const char *luaio_bundle_folder(void);
/* Loads the app's entry chunk (path relative to the app, e.g. "main.lua") onto L's stack, or raises. */
void luaio_bundle_load_main(lua_State *L, const char *path);
/* Installs the app searcher in package.searchers (replacing the disk ones). */
void luaio_bundle_install(lua_State *L);

/* --- signals (signal.c) ---------------------------------------------------------------- */

/* The signal at arg, a name ("SIGTERM") or a number; def when absent (def < 0: required). */
int luaio_checksignal(lua_State *L, int arg, int def);
/* "SIGTERM" for SIGTERM; NULL for a number without a name. */
const char *luaio_signame(int signum);

/* --- addresses (net/tcp.c) --------------------------------------------------------------- */

struct sockaddr_storage;
/* Pushes {family, port, address}. */
void luaio_push_addr(lua_State *L, const struct sockaddr_storage *addr);

/* --- modules ---------------------------------------------------------------------------- */

int luaopen_bundle(lua_State *L);
int luaopen_cjson(lua_State *L);
int luaopen_cjson_safe(lua_State *L);
int luaopen_dns(lua_State *L);
int luaopen_luaio_process(lua_State *L);
int luaopen_luaio_signal(lua_State *L);
int luaopen_luaio_archive(lua_State *L);
int luaopen_luaio_crypto(lua_State *L);
int luaopen_luaio_error(lua_State *L);
int luaopen_luaio_opt(lua_State *L);
int luaopen_luaio_fs(lua_State *L);
int luaopen_luaio_log(lua_State *L);
int luaopen_luaio_mysql(lua_State *L);
int luaopen_luaio_http(lua_State *L);
int luaopen_luaio_http_client(lua_State *L);
int luaopen_luaio_redis(lua_State *L);
int luaopen_system(lua_State *L);
int luaopen_luaio_task(lua_State *L);
int luaopen_luaio_tcp(lua_State *L);
int luaopen_luaio_tls(lua_State *L);
int luaopen_luaio_websocket(lua_State *L);
int luaopen_struct(lua_State *L);

/* Bytecode of the Lua half of the standard library, generated at build time. */
typedef struct {
  const char *name; /* module name, e.g. "task" */
  const unsigned char *code;
  size_t size;
} luaio_embedded;
extern const luaio_embedded luaio_stdlib[];

#endif
