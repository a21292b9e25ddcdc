/*
 * main.c: the entry point.
 *
 * An executable that carries a payload is an app: it runs the bundle's main.lua and hands it
 * every argument. Without a payload this is the luaio command line: run, build, test,
 * version, help.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buildinfo.h" /* generated: LUAIO_BUILD_ID, LUAIO_DEPS */
#include "luaio.h"

static const luaL_Reg c_modules[] = {
    {"bundle", luaopen_bundle},
    {"cjson", luaopen_cjson},
    {"cjson.safe", luaopen_cjson_safe},
    {"dns", luaopen_dns},
    {"luaio.archive", luaopen_luaio_archive},
    {"luaio.crypto", luaopen_luaio_crypto},
    {"luaio.error", luaopen_luaio_error},
    {"luaio.fs", luaopen_luaio_fs},
    {"luaio.http", luaopen_luaio_http},
    {"luaio.http_client", luaopen_luaio_http_client},
    {"luaio.log", luaopen_luaio_log},
    {"luaio.mysql", luaopen_luaio_mysql},
    {"luaio.opt", luaopen_luaio_opt},
    {"luaio.process", luaopen_luaio_process},
    {"luaio.redis", luaopen_luaio_redis},
    {"luaio.signal", luaopen_luaio_signal},
    {"luaio.task", luaopen_luaio_task},
    {"luaio.tcp", luaopen_luaio_tcp},
    {"luaio.tls", luaopen_luaio_tls},
    {"luaio.websocket", luaopen_luaio_websocket},
    {"struct", luaopen_struct},
    {"system", luaopen_system},
    {NULL, NULL},
};

/* package.preload loader for an embedded stdlib module; upvalue 1 is its index. */
static int load_embedded(lua_State *L) {
  const luaio_embedded *m = &luaio_stdlib[lua_tointeger(L, lua_upvalueindex(1))];
  if (luaL_loadbuffer(L, (const char *)m->code, m->size, m->name) != 0) return lua_error(L);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

static void register_modules(lua_State *L) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  for (const luaL_Reg *m = c_modules; m->name != NULL; m++) {
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  for (int i = 0; luaio_stdlib[i].name != NULL; i++) {
    lua_pushinteger(L, i);
    lua_pushcclosure(L, load_embedded, 1);
    lua_setfield(L, -2, luaio_stdlib[i].name);
  }
  lua_pop(L, 2);
}

/* A fresh state: standard libraries, luaio's modules, the app searcher and `arg`
 * (arg[0] is the script, arg[1..n] its arguments, as with the lua command). */
lua_State *luaio_state_new(const char *script, int argc, char **argv) {
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "luaio: cannot create a Lua state (out of memory)\n");
    exit(1);
  }
  luaL_openlibs(L);
  register_modules(L);
  luaio_bundle_install(L);
  luaio_sched_init(L);
  /* stdlib/luaio/prelude.lua: luaio's require (a module's top level may wait), and Lua's
   * own file and environment functions refuse names with a zero byte */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luaio.prelude");
  lua_call(L, 1, 0);
  lua_createtable(L, argc, 1);
  lua_pushstring(L, script);
  lua_rawseti(L, -2, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setglobal(L, "arg");
  return L;
}

/* Loads the entry chunk in protected mode: a syntax error is reported, not a crash. */
static int pload_main(lua_State *L) {
  luaio_bundle_load_main(L, lua_tostring(L, 1));
  return 1;
}

/* Runs the app's entry chunk as the main task with the arguments, then the loop. */
static int run_entry(const char *script, const char *entry, int argc, char **argv) {
  lua_State *L = luaio_state_new(script, argc, argv);
  lua_pushcfunction(L, pload_main);
  lua_pushstring(L, entry);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    fprintf(stderr, "luaio: %s\n", lua_tostring(L, -1));
    return 1;
  }
  for (int i = 0; i < argc; i++) lua_pushstring(L, argv[i]);
  luaio_start_main(L, argc);
  return luaio_run();
}

/* luaio run PATH: PATH is an app folder (entry main.lua) or a .lua file. */
static int run_path(const char *path, int argc, char **argv) {
  struct stat st;
  if (stat(path, &st) < 0) {
    fprintf(stderr, "luaio: cannot run '%s': no such file or folder\n", path);
    return 1;
  }
  if (S_ISDIR(st.st_mode)) {
    luaio_bundle_use_folder(path);
    return run_entry(path, "main.lua", argc, argv);
  }
  const char *slash = strrchr(path, '/');
  char *dir = slash ? strndup(path, (size_t)(slash - path + (slash == path))) : strdup(".");
  luaio_bundle_use_folder(dir);
  free(dir);
  return run_entry(path, slash ? slash + 1 : path, argc, argv);
}

/* A command implemented in Lua (module.main(args...)), with the current folder as its app. */
static int run_tool(const char *module, int argc, char **argv) {
  luaio_bundle_use_folder(".");
  lua_State *L = luaio_state_new(module, argc, argv);
  if (luaL_loadstring(L, "local name = ...; return require(name).main(select(2, ...))") != 0) {
    fprintf(stderr, "luaio: %s\n", lua_tostring(L, -1));
    return 1;
  }
  lua_pushstring(L, module);
  for (int i = 0; i < argc; i++) lua_pushstring(L, argv[i]);
  luaio_start_main(L, argc + 1);
  return luaio_run();
}

/* What process.fork (process.c) tells its children: the file to run (LUAIO_FORK_FILE), the app
 * folder under luaio run (LUAIO_FORK_APP), the parent's pid unless detached
 * (LUAIO_FORK_PARENT). Read once at start and removed from our environment whoever we are,
 * so that they travel no further than the child they were meant for (not to the programs it
 * execs); and honoured only with the argument LUAIO_FORK_ARG, which process.fork puts first
 * on the child's command line: left in a shell's environment, they must not turn `luaio run`
 * (or an app) into something else. */
typedef struct {
  char *file, *app;
  long parent;
} fork_env_t;

static fork_env_t take_fork_env(void) {
  fork_env_t f = {NULL, NULL, 0};
  const char *v;
  if ((v = getenv("LUAIO_FORK_FILE")) != NULL) f.file = strdup(v);
  if ((v = getenv("LUAIO_FORK_APP")) != NULL) f.app = strdup(v);
  if ((v = getenv("LUAIO_FORK_PARENT")) != NULL) f.parent = strtol(v, NULL, 10);
  unsetenv("LUAIO_FORK_FILE");
  unsetenv("LUAIO_FORK_APP");
  unsetenv("LUAIO_FORK_PARENT");
  return f;
}

/* A child started by process.fork: runs f.file from our own bundle, or, for the plain
 * runtime, from the folder f.app. A bundled app never reads a folder: the environment cannot
 * make it run code that is not its own. Unless detached (no parent), the child gets SIGTERM
 * when its parent dies, so a master that exits or is killed leaves no workers behind.
 * argv[0] is LUAIO_FORK_ARG; the child's arguments follow. */
static int run_fork_child(fork_env_t f, int payload, int argc, char **argv) {
  if (f.parent > 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != f.parent) raise(SIGTERM); /* the parent died before prctl */
  }
  if (!payload && f.app != NULL) {
    luaio_bundle_use_folder(f.app);
  } else if (!payload) {
    fprintf(stderr, "luaio: " LUAIO_FORK_ARG " without LUAIO_FORK_APP: no app to run %s from\n",
            f.file);
    return 1;
  }
  free(f.app);
  return run_entry(f.file, f.file, argc - 1, argv + 1);
}

/* One line per library with its Debian source package: read by deps/deps.sh from the headers
 * of exactly what was built, linked yet or not (OpenSSL, zlib, yyjson wait for their users). */
static void version(void) {
  printf("luaio %s (build %s)\n%s", LUAIO_VERSION, LUAIO_BUILD_ID, LUAIO_DEPS);
}

static void usage(FILE *out) {
  fprintf(out,
          "luaio %s: network servers in Lua, shipped as one file\n"
          "\n"
          "usage:\n"
          "  luaio run PATH [args...]           run an app folder (main.lua) or a .lua file\n"
          "  luaio PATH.lua [args...]           the same\n"
          "  luaio build APPDIR [-o OUT] [--strip] [--level N]\n"
          "                                     make one executable holding the app\n"
          "  luaio test [--filter TEXT] [PATH...]\n"
          "                                     run *_test.lua files (default: tests/); with\n"
          "                                     --filter, only the cases whose \"FILE CASE-NAME\"\n"
          "                                     contains TEXT\n"
          "  luaio version                      versions of luaio and its libraries\n"
          "  luaio help                         this text\n",
          LUAIO_VERSION);
}

static int is_lua_file(const char *s) {
  size_t n = strlen(s);
  return n > 4 && strcmp(s + n - 4, ".lua") == 0;
}

/* A server holds a descriptor per connection: use all the descriptors we are allowed, as
 * nginx's worker_rlimit_nofile would. */
static void raise_nofile_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN); /* a write to a closed socket is an error return, not death */
  raise_nofile_limit();
  int payload = luaio_bundle_mount_self() == LUAIO_PAYLOAD;
  fork_env_t fork_env = take_fork_env();
  if (argc > 1 && strcmp(argv[1], LUAIO_FORK_ARG) == 0 && fork_env.file != NULL)
    return run_fork_child(fork_env, payload, argc - 1, argv + 1);
  free(fork_env.file);
  free(fork_env.app);
  if (payload) return run_entry(argv[0], "main.lua", argc - 1, argv + 1);

  const char *cmd = argc > 1 ? argv[1] : "help";
  if (strcmp(cmd, "run") == 0) {
    if (argc < 3) {
      fprintf(stderr, "luaio run: missing PATH (an app folder or a .lua file)\n");
      return 2;
    }
    return run_path(argv[2], argc - 3, argv + 3);
  }
  if (strcmp(cmd, "build") == 0) return run_tool("luaio.build", argc - 2, argv + 2);
  if (strcmp(cmd, "test") == 0) return run_tool("test", argc - 2, argv + 2);
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0 || strcmp(cmd, "-v") == 0) {
    version();
    return 0;
  }
  if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    usage(stdout);
    return 0;
  }
  struct stat st;
  if (is_lua_file(cmd) || (stat(cmd, &st) == 0 && S_ISDIR(st.st_mode)))
    return run_path(cmd, argc - 2, argv + 2);
  fprintf(stderr, "luaio: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return 2;
}
