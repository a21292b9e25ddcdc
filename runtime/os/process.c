/*
 * process.c: child processes (uv_process_t) and facts about this process: the C half of
 * the `process` module ("luaio.process"; stdlib/process.lua is the public face).
 *
 * Children come from two calls:
 *   - fork: this same executable, running another file of the same app. The child learns
 *     which file from LUAIO_FORK_* environment variables, which main.c reads and removes at
 *     start and honours only with LUAIO_FORK_ARG first on the command line (see
 *     take_fork_env there);
 *   - exec: any program, found through PATH, with an argument vector and never a shell.
 *
 * Every child is a child_t in one list until it ends for good. Lua names a child by the
 * pid fork/exec returned (its id); a `forever` child keeps that id across restarts while
 * its pid changes. When a child ends for good, the Lua function given to onexit gets
 * (id, exit_status, term_signal): stdlib/process.lua wakes process.wait callers with it.
 *
 * forever: a child that exits is started again after a delay that doubles from 100 ms to
 * 30 s, and starts again at 100 ms once an incarnation lived 10 s, so a child that crashes
 * at start costs a few starts a minute, not a spinning core. process.kill with a signal that
 * asks a process to end (SIGTERM, SIGINT, SIGQUIT, SIGKILL) stops the restarts: the user
 * asked for the end. Any other cause of death (a crash, kill -9 from outside, the OOM killer)
 * is what forever is for.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "luaio.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 30000
#define HEALTHY_MS 10000 /* an incarnation that lived this long resets the backoff */
#define NO_ID UINT64_MAX /* uid, gid, cpu: not given */

extern char **environ;

typedef struct child {
  struct child *next;
  uv_timer_t timer;          /* forever: the restart delay. Its close callback frees the child */
  uv_process_t *proc;        /* the running incarnation; NULL between restarts */
  uv_process_options_t opts; /* kept for restarts */
  uv_stdio_container_t stdio[3];
  char **args, **env; /* owned, NULL-terminated (env NULL: inherit ours) */
  int id;             /* the first pid: what Lua calls this child */
  int pid;            /* the running incarnation's pid, 0 when none runs */
  int cpu;            /* affinity, -1 for none */
  int forever, detached, stopping;
  int held;         /* a task waits for this detached child: keep the loop alive */
  uint64_t started; /* loop time the incarnation started, ms */
  uint64_t backoff; /* the next restart delay, ms */
  int64_t last_status;
  int last_signal;
} child_t;

static child_t *children;
static int onexit_ref = LUA_NOREF;
static uint64_t start_time; /* uv_hrtime() when the process started */

/* uptime() counts from the start of the process, not from the first require "process". */
__attribute__((constructor)) static void record_start(void) { start_time = uv_hrtime(); }

/* --- children ------------------------------------------------------------------------------ */

static void free_strings(char **v) {
  if (v == NULL) return;
  for (char **p = v; *p != NULL; p++) free(*p);
  free(v);
}

static void child_free(uv_handle_t *timer) {
  child_t *c = timer->data;
  free_strings(c->args);
  free_strings(c->env);
  free(c);
}

static void handle_free(uv_handle_t *handle) { free(handle); }

static child_t *child_find(int pid) {
  for (child_t *c = children; c != NULL; c = c->next)
    if (c->id == pid || (c->pid != 0 && c->pid == pid)) return c;
  return NULL;
}

/* The child ended for good: tell Lua (waiters of process.wait), forget it. */
static void child_end(lua_State *L, child_t *c) {
  for (child_t **p = &children; *p != NULL; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      break;
    }
  if (onexit_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, onexit_ref);
    lua_pushinteger(L, c->id);
    lua_pushnumber(L, (lua_Number)c->last_status);
    lua_pushinteger(L, c->last_signal);
    if (lua_pcall(L, 3, 0, 0) != 0) {
      fprintf(stderr, "luaio: process exit handler: %s\n", lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  uv_close((uv_handle_t *)&c->timer, child_free);
}

/* Pins pid to one cpu. Done by the parent right after the spawn (libuv has no hook that
 * runs in the child before exec), so the child's first instructions may run elsewhere. */
__attribute__((noinline)) static int set_affinity(int pid, int cpu) { /* not inlined: see dns.c */
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(pid, sizeof set, &set) < 0 ? -errno : 0;
}

static void child_exited(uv_process_t *proc, int64_t status, int term_signal);

/* A child keeps the loop (the process) alive, unless it is detached and nobody waits for it:
 * a detached child may outlive us. */
static void update_ref(child_t *c) {
  int keep = !c->detached || c->held;
  if (c->proc != NULL) (keep ? uv_ref : uv_unref)((uv_handle_t *)c->proc);
  (keep ? uv_ref : uv_unref)((uv_handle_t *)&c->timer);
}

/* Starts an incarnation of c. */
static int child_start(child_t *c) {
  uv_process_t *proc = malloc(sizeof *proc);
  if (proc == NULL) return UV_ENOMEM;
  int err = uv_spawn(luaio_loop(), proc, &c->opts);
  if (err < 0) {
    uv_close((uv_handle_t *)proc, handle_free); /* uv_spawn initialised the handle */
    return err;
  }
  proc->data = c;
  c->proc = proc;
  c->pid = proc->pid;
  c->started = uv_now(luaio_loop());
  update_ref(c);
  if (c->cpu >= 0) err = set_affinity(c->pid, c->cpu);
  return err;
}

static void restart_later(child_t *c);

static void restart_now(uv_timer_t *timer) {
  child_t *c = timer->data;
  if (child_start(c) < 0 && c->proc == NULL) restart_later(c); /* e.g. EAGAIN: try again later */
}

static void restart_later(child_t *c) {
  uint64_t delay = c->backoff;
  c->backoff = c->backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff * 2;
  uv_timer_start(&c->timer, restart_now, delay, 0);
  update_ref(c);
}

static void child_exited(uv_process_t *proc, int64_t status, int term_signal) {
  child_t *c = proc->data;
  uv_close((uv_handle_t *)proc, handle_free);
  c->proc = NULL;
  c->pid = 0;
  c->last_status = status;
  c->last_signal = term_signal;
  if (c->forever && !c->stopping) {
    if (uv_now(luaio_loop()) - c->started >= HEALTHY_MS) c->backoff = BACKOFF_MIN_MS;
    restart_later(c);
    return;
  }
  child_end(luaio_mainstate(), c);
}

/* A new child record: stdio inherited, args owned. Returns NULL when out of memory. */
static child_t *child_new(char **args) {
  child_t *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->args = args;
  c->cpu = -1;
  c->backoff = BACKOFF_MIN_MS;
  for (int fd = 0; fd < 3; fd++) {
    c->stdio[fd].flags = UV_INHERIT_FD;
    c->stdio[fd].data.fd = fd;
  }
  c->opts.exit_cb = child_exited;
  c->opts.file = args[0];
  c->opts.args = args;
  c->opts.stdio = c->stdio;
  c->opts.stdio_count = 3;
  uv_timer_init(luaio_loop(), &c->timer);
  c->timer.data = c;
  return c;
}

/* Starts c's first incarnation; pushes its pid (c joins the list) or nil, err (c is freed). */
static int child_launch(lua_State *L, child_t *c) {
  int err = child_start(c);
  if (err < 0) {
    if (c->proc != NULL) { /* started, but the affinity failed: do not leave it running */
      c->stopping = 1;
      uv_process_kill(c->proc, SIGKILL);
      c->next = children;
      children = c;
      c->id = c->pid;
    } else {
      uv_close((uv_handle_t *)&c->timer, child_free);
    }
    return luaio_pusherror(L, err);
  }
  c->id = c->pid;
  c->next = children;
  children = c;
  lua_pushinteger(L, c->id);
  return 1;
}

/* A NULL-terminated copy of the n strings; NULL when out of memory. */
static char **strings_new(size_t n) { return calloc(n + 1, sizeof(char *)); }

/* The strings at t[first..] (t an array of strings at stack index arg) appended to v at i. */
static int copy_array(lua_State *L, int arg, int t, int first, char **v, size_t i,
                      const char *what) {
  size_t n = lua_objlen(L, t);
  for (size_t k = (size_t)first; k <= n; k++, i++) {
    lua_rawgeti(L, t, (int)k);
    const char *s = lua_type(L, -1) == LUA_TSTRING ? luaio_tocstring(L, -1) : NULL;
    if (s == NULL) {
      free_strings(v);
      return luaL_argerror(L, arg,
                           lua_pushfstring(L, "%s[%d]: string without zero bytes expected, got %s",
                                           what, (int)k, luaL_typename(L, -1)));
    }
    v[i] = strdup(s);
    lua_pop(L, 1);
    if (v[i] == NULL) {
      free_strings(v);
      return luaL_error(L, "out of memory");
    }
  }
  return 0;
}

/* c.exec(argv) -> pid, or nil, err. argv = {program, args...}; the program is looked up in
 * PATH (execvp), nothing is interpreted by a shell. */
static int process_exec(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t n = lua_objlen(L, 1);
  luaL_argcheck(L, n >= 1, 1, "empty command");
  char **args = strings_new(n);
  if (args == NULL) return luaL_error(L, "exec: out of memory");
  copy_array(L, 1, 1, 1, args, 0, "command"); /* frees args when it raises */
  if (args[0][0] == '\0') {
    free_strings(args);
    return luaL_argerror(L, 1, "empty program name");
  }
  child_t *c = child_new(args);
  if (c == NULL) {
    free_strings(args);
    return luaL_error(L, "exec: out of memory");
  }
  return child_launch(L, c);
}

/* The environment a forked child gets: ours without LUAIO_FORK_*, plus what tells it which
 * file to run. NULL when out of memory. */
static char **fork_env(const char *file, const char *app, int parent) {
  size_t n = 0;
  for (char **e = environ; *e != NULL; e++) n++;
  char **env = strings_new(n + 3);
  if (env == NULL) return NULL;
  size_t i = 0;
  for (char **e = environ; *e != NULL; e++)
    if (strncmp(*e, "LUAIO_FORK_", 11) != 0 && (env[i] = strdup(*e)) != NULL) i++;
  size_t len = strlen(file) + sizeof "LUAIO_FORK_FILE=";
  if ((env[i] = malloc(len)) != NULL) snprintf(env[i++], len, "LUAIO_FORK_FILE=%s", file);
  if (app != NULL) {
    len = strlen(app) + sizeof "LUAIO_FORK_APP=";
    if ((env[i] = malloc(len)) != NULL) snprintf(env[i++], len, "LUAIO_FORK_APP=%s", app);
  }
  if (parent != 0 && (env[i] = malloc(32)) != NULL)
    snprintf(env[i++], 32, "LUAIO_FORK_PARENT=%d", parent);
  env[i] = NULL;
  return env;
}

/* Sets *exe to a malloc'd copy of our executable's path; returns 0 or a libuv error. Not
 * inlined: process_fork raises, so it must hold no array (see push_numeric in dns.c). */
__attribute__((noinline)) static int exe_path(char **exe) {
  char buf[4096];
  size_t n = sizeof buf;
  int err = uv_exepath(buf, &n);
  if (err < 0) return err;
  *exe = strdup(buf);
  return *exe == NULL ? UV_ENOMEM : 0;
}

/* c.fork(options, path) -> pid, or nil, err. path is options.file resolved to a file of the
 * app by stdlib/process.lua, nil when the app has no such file (ENOENT, after the other
 * options are checked here). */
static int process_fork(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  const char *path = luaio_optcstring(L, 2, NULL);
  uint64_t uid = luaio_opt_uint(L, 1, "uid", NO_ID, 0, INT32_MAX);
  uint64_t gid = luaio_opt_uint(L, 1, "gid", NO_ID, 0, INT32_MAX);
  int ncpu = (int)uv_available_parallelism();
  long conf = sysconf(_SC_NPROCESSORS_CONF);
  if (conf > ncpu) ncpu = (int)conf;
  if (ncpu > CPU_SETSIZE) ncpu = CPU_SETSIZE;
  uint64_t cpu_opt = luaio_opt_uint(L, 1, "cpu", NO_ID, 0, (uint64_t)ncpu - 1);
  int cpu = cpu_opt == NO_ID ? -1 : (int)cpu_opt;
  int forever = luaio_opt_bool(L, 1, "forever", 0);
  int detached = luaio_opt_bool(L, 1, "detached", 0);
  lua_getfield(L, 1, "args");
  int t = lua_gettop(L);
  size_t nargs = 0;
  if (!lua_isnil(L, t)) {
    if (!lua_istable(L, t))
      luaL_argerror(
          L, 1, lua_pushfstring(L, "option 'args': table expected, got %s", luaL_typename(L, t)));
    nargs = lua_objlen(L, t);
  }

  /* args[0]: our executable; args[1]: the mark main.c honours LUAIO_FORK_* with */
  char **args = strings_new(nargs + 2);
  if (args == NULL) return luaL_error(L, "fork: out of memory");
  int err = exe_path(args);
  if (err < 0) {
    free(args);
    return luaio_pusherror(L, err);
  }
  if ((args[1] = strdup(LUAIO_FORK_ARG)) == NULL) {
    free_strings(args);
    return luaL_error(L, "fork: out of memory");
  }
  copy_array(L, 1, t, 1, args, 2, "option 'args'"); /* frees args when it raises */
  if (path == NULL) { /* options checked first: misuse raises even when the file is missing */
    free_strings(args);
    return luaio_pusherror(L, UV_ENOENT);
  }
  /* under luaio run the child serves the same folder, from wherever it starts */
  const char *folder = luaio_bundle_folder();
  char *app = NULL;
  if (folder != NULL && (app = realpath(folder, NULL)) == NULL) {
    err = -errno;
    free_strings(args);
    return luaio_pusherror(L, err);
  }
  char **env = fork_env(path, app, detached ? 0 : uv_os_getpid());
  free(app);
  child_t *c = env ? child_new(args) : NULL;
  if (c == NULL) {
    free_strings(args);
    free_strings(env);
    return luaL_error(L, "fork: out of memory");
  }
  c->env = env;
  c->opts.env = env;
  c->cpu = cpu;
  c->forever = forever;
  c->detached = detached;
  if (uid != NO_ID) {
    c->opts.flags |= UV_PROCESS_SETUID;
    c->opts.uid = (uv_uid_t)uid;
  }
  if (gid != NO_ID) {
    c->opts.flags |= UV_PROCESS_SETGID;
    c->opts.gid = (uv_gid_t)gid;
  }
  if (detached) c->opts.flags |= UV_PROCESS_DETACHED;
  return child_launch(L, c);
}

/* Signals that ask a process to end: sent by process.kill to a forever child, they stop
 * its restarts. */
static int asks_to_end(int signum) {
  return signum == SIGTERM || signum == SIGINT || signum == SIGQUIT || signum == SIGKILL;
}

/* process.kill(pid[, signal]) -> true, or nil, err. signal: a name or a number, SIGTERM by
 * default; pid > 0 (process groups are not signalled). pid may name a forever child by the
 * pid fork returned: the signal goes to the running incarnation. */
static int process_kill(lua_State *L) {
  lua_Number n = luaL_checknumber(L, 1);
  luaL_argcheck(L, n == (int)n, 1, "integer pid expected");
  /* kill(2) reads 0 as our process group and -1 as every process we may signal: a pid that
   * fell back to 0 must not reach them */
  if (n <= 0) luaL_argerror(L, 1, lua_pushfstring(L, "pid above 0 expected, got %d", (int)n));
  int pid = (int)n;
  int signum = luaio_checksignal(L, 2, SIGTERM);
  child_t *c = child_find(pid);
  if (c != NULL) {
    if (c->forever && asks_to_end(signum)) c->stopping = 1;
    if (c->proc == NULL) { /* a forever child waiting to be restarted */
      if (!c->stopping) return luaio_pusherror(L, UV_ESRCH);
      uv_timer_stop(&c->timer);
      child_end(L, c);
      lua_pushboolean(L, 1);
      return 1;
    }
    pid = c->pid;
  }
  int err = uv_kill(pid, signum);
  if (err < 0) return luaio_pusherror(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* c.running(pid) -> true when pid names a child that has not ended for good */
static int process_running(lua_State *L) {
  lua_pushboolean(L, child_find((int)luaL_checkinteger(L, 1)) != NULL);
  return 1;
}

/* c.hold(pid, on): process.wait on a detached child keeps the process alive while it waits. */
static int process_hold(lua_State *L) {
  child_t *c = child_find((int)luaL_checkinteger(L, 1));
  if (c != NULL) {
    c->held = lua_toboolean(L, 2);
    update_ref(c);
  }
  return 0;
}

/* c.onexit(fn): fn(id, exit_status, term_signal) runs when a child ends for good. */
static int process_onexit(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  if (onexit_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, onexit_ref);
  onexit_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* --- this process ----------------------------------------------------------------------- */

/* process.abort(): ends the process with SIGABRT (a core file where they are enabled). */
static int process_abort(lua_State *L) {
  fflush(NULL);
  abort();
  return 0;
}

/* process.cwd() -> the current working directory, or nil, err */
static int process_cwd(lua_State *L) {
  char buf[4096];
  size_t n = sizeof buf;
  int err = uv_cwd(buf, &n);
  if (err < 0) return luaio_pusherror(L, err);
  lua_pushlstring(L, buf, n);
  return 1;
}

/* c.environ() -> {NAME = value, ...}: a snapshot of the environment */
static int process_environ(lua_State *L) {
  lua_newtable(L);
  for (char **e = environ; *e != NULL; e++) {
    const char *eq = strchr(*e, '=');
    if (eq == NULL) continue;
    lua_pushlstring(L, *e, (size_t)(eq - *e));
    lua_pushstring(L, eq + 1);
    lua_rawset(L, -3);
  }
  return 1;
}

/* c.execpath() -> the path of the running executable, or nil, err */
static int process_execpath(lua_State *L) {
  char buf[4096];
  size_t n = sizeof buf;
  int err = uv_exepath(buf, &n);
  if (err < 0) return luaio_pusherror(L, err);
  lua_pushlstring(L, buf, n);
  return 1;
}

/* process.exit([status]): ends the process now with that exit status (default 0), after
 * flushing stdout and stderr. Forked children that are not detached get SIGTERM (main.c). */
static int process_exit(lua_State *L) {
  int status = (int)luaL_optinteger(L, 1, 0);
  fflush(NULL);
  exit(status);
  return 0;
}

/* process.getenv(name) -> the value, or nil when it is not set */
static int process_getenv(lua_State *L) {
  const char *v = getenv(luaio_checkcstring(L, 1));
  if (v == NULL)
    lua_pushnil(L);
  else
    lua_pushstring(L, v);
  return 1;
}

/* c.setenv(name[, value]) -> true | nil, err: sets (or, without value, removes) a variable
 * of this process's environment, which the children it starts afterwards inherit. */
static int process_setenv(lua_State *L) {
  const char *name = luaio_checkcstring(L, 1);
  const char *value = luaio_optcstring(L, 2, NULL);
  luaL_argcheck(L, name[0] != '\0' && strchr(name, '=') == NULL, 1,
                "name must be non-empty, without '='");
  int err = value ? uv_os_setenv(name, value) : uv_os_unsetenv(name);
  if (err < 0) return luaio_pusherror(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* c.pids() -> pid, ppid */
static int process_pids(lua_State *L) {
  lua_pushinteger(L, uv_os_getpid());
  lua_pushinteger(L, uv_os_getppid());
  return 2;
}

/* process.uptime() -> seconds since this process started (a float) */
static int process_uptime(lua_State *L) {
  lua_pushnumber(L, (double)(uv_hrtime() - start_time) / 1e9);
  return 1;
}

static const luaL_Reg process_funcs[] = {{"abort", process_abort},       {"cwd", process_cwd},
                                         {"environ", process_environ},   {"exec", process_exec},
                                         {"execpath", process_execpath}, {"exit", process_exit},
                                         {"fork", process_fork},         {"getenv", process_getenv},
                                         {"hold", process_hold},         {"kill", process_kill},
                                         {"onexit", process_onexit},     {"pids", process_pids},
                                         {"running", process_running},   {"setenv", process_setenv},
                                         {"uptime", process_uptime},     {NULL, NULL}};

int luaopen_luaio_process(lua_State *L) {
  luaio_newlib(L, process_funcs);
  return 1;
}
