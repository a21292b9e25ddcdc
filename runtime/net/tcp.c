/*
 * tcp.c: TCP (and Unix domain) servers, client connections and addresses: the C half of
 * stdlib/tcp.lua, which checks options and resolves host names; here every host is a
 * numeric address. The sockets themselves are socket.c, on the connection core (conn.c).
 *
 * A server accepts a connection, makes a socket and runs onconnect(socket, server) in a new
 * task straight from the libuv callback; a hook closes the socket when that task ends,
 * however it ends (gracefully: what the handler wrote is still sent). No Lua wrapper sits in
 * between: its frames would push the task's stack past LuaJIT's initial size (392 bytes),
 * and a grown stack costs that much again per connection. Over maxconnections, the
 * connection is accepted and closed at once, so the backlog never fills with clients that
 * will not be served.
 * TCP_NODELAY and SO_KEEPALIVE are set once on the listening socket: Linux copies them to
 * every accepted socket, which saves two system calls per connection.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "socket.h"
#include "tls.h"

#define SERVER_MT "luaio.server"

typedef struct {
  luaio_server base;
  int onconnect_ref;
  luaio_sockopts opts;
} tserver_t;

/* --- options and addresses ------------------------------------------------------------------ */

/* The socket settings in an options table (stdlib/tcp.lua checked the names and types; the
 * readers check the ranges again: the C half may be called directly). */
static void read_sockopts(lua_State *L, int opts, luaio_sockopts *o) {
  o->read_buffer = (uint32_t)luaio_opt_uint(L, opts, "read_buffer_size", 16, 1, 1048576) * 1024;
  o->write_buffer = (uint32_t)luaio_opt_uint(L, opts, "write_buffer_size", 256, 1, 1048576) * 1024;
  o->timeout = luaio_ms32(luaio_opt_ms(L, opts, "timeout", 0));
  o->send_timeout = luaio_ms32(luaio_opt_ms(L, opts, "send_timeout", 60000));
}

/* Fills addr from a numeric host and a port; returns 0 or a libuv error. */
static int make_addr(const char *host, int port, struct sockaddr_storage *addr) {
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)addr) == 0) return 0;
  return uv_ip6_addr(host, port, (struct sockaddr_in6 *)addr);
}

/* Pushes {family, port, address} for a socket address. */
void luaio_push_addr(lua_State *L, const struct sockaddr_storage *addr) {
  char ip[INET6_ADDRSTRLEN] = "";
  lua_createtable(L, 0, 3);
  if (addr->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)addr;
    uv_ip6_name(a, ip, sizeof ip);
    lua_pushinteger(L, 6);
    lua_setfield(L, -2, "family");
    lua_pushinteger(L, ntohs(a->sin6_port));
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
    uv_ip4_name(a, ip, sizeof ip);
    lua_pushinteger(L, 4);
    lua_setfield(L, -2, "family");
    lua_pushinteger(L, ntohs(a->sin_port));
  }
  lua_setfield(L, -2, "port");
  lua_pushstring(L, ip);
  lua_setfield(L, -2, "address");
}

int luaio_tcp_keepalive(uv_tcp_t *t, int enable, int idle) {
  if (idle > 0) return uv_tcp_keepalive(t, enable, (unsigned)idle);
  uv_os_fd_t fd;
  int err = uv_fileno((uv_handle_t *)t, &fd);
  if (err < 0) return err;
  return setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &enable, sizeof enable) < 0 ? UV_EINVAL : 0;
}

/* --- listening (shared with the HTTP server) --------------------------------------------------- */

/* A TCP listener; with reuseport the socket is made here, since libuv has no flag for
 * SO_REUSEPORT before 1.49 (several processes then share one port, the kernel spreads
 * connections among them). */
static int bind_tcp(lua_State *L, uv_tcp_t *handle, int port, int opts) {
  lua_getfield(L, opts, "host");
  const char *host = luaio_tocstring(L, -1); /* tcp.lua refused one with a zero byte */
  lua_pop(L, 1); /* the options table keeps it alive */
  struct sockaddr_storage addr;
  int err = make_addr(host ? host : "0.0.0.0", port, &addr);
  if (err < 0) return err;
  if ((err = uv_tcp_init_ex(luaio_loop(), handle, addr.ss_family)) < 0) return err;
  uv_os_fd_t fd;
  if ((err = uv_fileno((uv_handle_t *)handle, &fd)) < 0) return err;
  int on = 1;
  if (luaio_opt_bool(L, opts, "tcp_reuseport", 0) &&
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0)
    return UV_EINVAL;
  if ((err = uv_tcp_bind(handle, (struct sockaddr *)&addr, 0)) < 0) return err;
  if (luaio_opt_bool(L, opts, "tcp_nodelay", 1))
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  if (luaio_opt_bool(L, opts, "tcp_keepalive", 1))
    return luaio_tcp_keepalive(handle, 1,
                               (int)luaio_opt_uint(L, opts, "tcp_keepidle", 0, 0, 32767));
  return 0;
}

/* The server's memory goes once its listener and every connection are closed. */
static void server_release(luaio_server *s) {
  if (s->tls != NULL) luaio_tlsctx_unref(s->tls);
  s->tls = NULL;
  if (s->box != NULL) *s->box = NULL;
  s->free(s);
}

static void on_listener_close(uv_handle_t *h) {
  luaio_server *s = h->data;
  s->listener_closed = 1;
  if (s->connections == 0) server_release(s);
}

void luaio_server_gone(luaio_server *s) {
  if (s->listener_closed && s->connections == 0) server_release(s);
}

int luaio_server_listen(lua_State *L, luaio_server *s, int port, const char *path, int opts,
                        uv_connection_cb on_connection) {
  int err;
  s->h.handle.data = s;
  s->is_pipe = path != NULL;
  lua_getfield(L, opts, "tls"); /* a server context (tls.lua) */
  if (!lua_isnil(L, -1)) {
    s->tls = luaio_tlsctx_check(L, -1);
    luaio_tlsctx_ref(s->tls);
  }
  lua_pop(L, 1);
  s->max_connections = (int)luaio_opt_uint(L, opts, "maxconnections", 65535, 0, 2147483647);
  if (path != NULL) {
    if ((err = uv_pipe_init(luaio_loop(), &s->h.pipe, 0)) < 0) return err;
    err = uv_pipe_bind(&s->h.pipe, path);
  } else {
    err = bind_tcp(L, &s->h.tcp, port, opts);
  }
  if (err == 0)
    err = uv_listen(&s->h.stream, (int)luaio_opt_uint(L, opts, "tcp_backlog", 511, 0, 65535),
                    on_connection);
  if (err < 0 && s->h.handle.loop != NULL) { /* initialised: freed in its close callback */
    s->closing = 1;
    uv_close(&s->h.handle, on_listener_close);
  } else if (err < 0 && s->tls != NULL) { /* the caller frees s */
    luaio_tlsctx_unref(s->tls);
    s->tls = NULL;
  }
  return err;
}

void luaio_server_close(luaio_server *s) {
  if (s->closing) return;
  s->closing = 1;
  uv_close(&s->h.handle, on_listener_close);
}

int luaio_server_start(lua_State *L, luaio_server *s, int port, const char *path, int opts,
                       uv_connection_cb on_connection, const char *mt) {
  s->self_ref = LUA_NOREF;
  int err = luaio_server_listen(L, s, port, path, opts, on_connection);
  if (err < 0) {
    if (!s->closing) s->free(s); /* else freed when its handle has closed */
    return luaio_pusherror(L, err);
  }
  void **box = lua_newuserdata(L, sizeof *box);
  *box = s;
  s->box = box;
  luaL_getmetatable(L, mt);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* listening keeps the server alive */
  return 1;
}

luaio_server *luaio_server_check(lua_State *L, int idx, const char *mt) {
  void **box = luaL_checkudata(L, idx, mt);
  return *box;
}

void luaio_server_stop(lua_State *L, luaio_server *s) {
  luaL_unref(L, LUA_REGISTRYINDEX, s->self_ref);
  s->self_ref = LUA_NOREF;
  luaio_server_close(s);
}

/* --- tcp servers ---------------------------------------------------------------------------------- */

static void tserver_free(luaio_server *s) { free(s); }

/* When a connection's task ends, its socket closes (the handler may have closed it). */
static void serve_done(lua_State *co, void *data) {
  luaio_conn **box = data;
  if (*box != NULL) luaio_socket_close(co, *box);
}

static const luaio_hook serve_hook = {serve_done};

static void accept_one(lua_State *L, void *arg) {
  tserver_t *s = arg;
  luaio_conn *c = luaio_socket_accept(L, &s->base, &s->opts);
  if (c == NULL) return;
  if (s->base.tls != NULL && luaio_tls_attach(c, s->base.tls, NULL) < 0) {
    lua_pop(L, 1);
    luaio_conn_close(c, UV_ENOMEM);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->onconnect_ref);
  lua_pushvalue(L, -2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->base.self_ref);
  luaio_spawn_with(L, 2, &serve_hook); /* socket (for the hook), onconnect(socket, server) */
}

static void on_connection(uv_stream_t *listener, int status) {
  tserver_t *s = listener->data;
  if (status < 0 || s->base.closing) return;
  luaio_protect(accept_one, s, "accept");
}

/* C.listen(port | path, onconnect, options) -> server | nil, err */
static int tcp_listen(lua_State *L) {
  const char *path = lua_type(L, 1) == LUA_TSTRING ? luaio_checkcstring(L, 1) : NULL;
  int port = path ? 0 : (int)luaL_checkinteger(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TTABLE);
  tserver_t *s = calloc(1, sizeof *s);
  if (s == NULL) return luaio_pusherror(L, UV_ENOMEM);
  s->base.free = tserver_free;
  read_sockopts(L, 3, &s->opts);
  if (luaio_server_start(L, &s->base, port, path, 3, on_connection, SERVER_MT) == 2) return 2;
  lua_pushvalue(L, 2);
  s->onconnect_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static tserver_t *check_server(lua_State *L) {
  return (tserver_t *)luaio_server_check(L, 1, SERVER_MT);
}

/* --- what every server has (tcp and http) ------------------------------------------------------ */

/* The server at 1: a tcp or an http server (NULL once freed). */
static luaio_server *any_server(lua_State *L) {
  void **box = luaL_testudata(L, 1, SERVER_MT);
  if (box == NULL) box = luaL_testudata(L, 1, "luaio.http.server");
  if (box == NULL) luaL_typerror(L, 1, "server");
  return *box;
}

/* server:address() -> {family, port, address} (or {path}) */
static int server_address(lua_State *L) {
  luaio_server *s = any_server(L);
  if (s == NULL || s->closing) return luaio_pusherror(L, UV_EBADF);
  return luaio_push_handle_address(L, &s->h.handle, 0);
}

/* server:connections() -> the number of open connections */
static int server_connections(lua_State *L) {
  luaio_server *s = any_server(L);
  lua_pushinteger(L, s ? s->connections : 0);
  return 1;
}

/* server:setTLS(context) (the Lua half makes it from options): connections accepted from now
 * on use it; those open keep theirs. */
static int server_settls(lua_State *L) {
  luaio_server *s = any_server(L);
  luaio_tlsctx *ctx = luaio_tlsctx_check(L, 2);
  if (s == NULL || s->closing) return luaio_pusherror(L, UV_EBADF);
  luaio_tlsctx_ref(ctx);
  if (s->tls != NULL) luaio_tlsctx_unref(s->tls);
  s->tls = ctx;
  lua_pushboolean(L, 1);
  return 1;
}

static int server_gc(lua_State *L) {
  void **box = lua_touserdata(L, 1);
  if (*box != NULL) ((luaio_server *)*box)->box = NULL; /* only reached once closed */
  return 0;
}

static const luaL_Reg common_methods[] = {{"address", server_address},
                                          {"connections", server_connections},
                                          {"setTLS", server_settls},
                                          {NULL, NULL}};

void luaio_server_metatable(lua_State *L, const luaL_Reg *methods) {
  lua_newtable(L);
  luaL_setfuncs(L, common_methods, 0);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, server_gc);
  lua_setfield(L, -2, "__gc");
}

/* server:close(): stops accepting; connections already open go on until they close. */
static int server_close(lua_State *L) {
  tserver_t *s = check_server(L);
  if (s == NULL || s->base.closing) return 0;
  luaL_unref(L, LUA_REGISTRYINDEX, s->onconnect_ref);
  luaio_server_stop(L, &s->base);
  return 0;
}

static const luaL_Reg server_methods[] = {{"close", server_close}, {NULL, NULL}};

/* --- connecting ------------------------------------------------------------------------------ */

/* C.connect(port | path, host, options) -> socket | nil, err. host is numeric here;
 * options.tls is a client context (tls.lua) and options.servername the name it verifies. */
static int tcp_connect(lua_State *L) {
  const char *path = lua_type(L, 1) == LUA_TSTRING ? luaio_checkcstring(L, 1) : NULL;
  luaL_checktype(L, 3, LUA_TTABLE);
  struct sockaddr_storage addr;
  if (path == NULL) {
    int err = make_addr(luaio_checkcstring(L, 2), (int)luaL_checkinteger(L, 1), &addr);
    if (err < 0) return luaio_pusherror(L, err);
  }
  luaio_sockopts o;
  read_sockopts(L, 3, &o);
  int nodelay = luaio_opt_bool(L, 3, "tcp_nodelay", 1),
      keepalive = luaio_opt_bool(L, 3, "tcp_keepalive", 1);
  int keepidle = (int)luaio_opt_uint(L, 3, "tcp_keepidle", 0, 0, 32767);
  luaio_tlsctx *tls = NULL;
  lua_getfield(L, 3, "tls");
  if (!lua_isnil(L, -1)) tls = luaio_tlsctx_check(L, -1);
  lua_getfield(L, 3, "servername");
  const char *servername = luaio_tocstring(L, -1); /* tls.lua refused one with a zero byte */
  lua_pop(L, 2); /* the options table keeps them alive */
  return luaio_socket_connect(L, path, (struct sockaddr *)&addr, &o, nodelay, keepalive, keepidle,
                              tls, servername);
}

/* C.isIP(address) -> 4, 6 or 0 */
/* 4, 6 or 0. Apart from tcp_isip, which raises: a raising frame holds no array (internals.md). */
static __attribute__((noinline)) int ip_version(const char *s) {
  unsigned char buf[sizeof(struct in6_addr)];
  return uv_inet_pton(AF_INET, s, buf) == 0 ? 4 : uv_inet_pton(AF_INET6, s, buf) == 0 ? 6 : 0;
}

static int tcp_isip(lua_State *L) {
  lua_pushinteger(L, ip_version(luaio_checkcstring(L, 1)));
  return 1;
}

static const luaL_Reg tcp_funcs[] = {
    {"connect", tcp_connect}, {"isIP", tcp_isip}, {"listen", tcp_listen}, {NULL, NULL}};

int luaopen_luaio_tcp(lua_State *L) {
  luaio_socket_register(L);
  if (luaL_newmetatable(L, SERVER_MT)) luaio_server_metatable(L, server_methods);
  lua_pop(L, 1);
  luaio_newlib(L, tcp_funcs);
  return 1;
}
