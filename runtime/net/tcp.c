/*
 * tcp.c: TCP (and Unix domain) servers, client connections, TCP options and addresses.
 * The Lua module "luaio.tcp" is the C half of stdlib/tcp.lua, which checks options and
 * resolves host names; here every host is a numeric address.
 *
 * A server accepts a connection, makes a socket and runs onconnect(socket, server) in a new
 * task straight from the libuv callback; a hook closes the socket when that task ends,
 * however it ends. No Lua wrapper sits in between: its frames would push the task's stack
 * past LuaJIT's initial size, and a grown stack costs 376 bytes per connection. Over maxconnections, the
 * connection is accepted and closed at once, so the backlog never fills with clients that
 * will not be served. TCP_NODELAY and SO_KEEPALIVE are set once on the listening socket:
 * Linux copies them to every accepted socket, which saves two system calls per connection.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "stream.h"

#define SERVER_MT "luaio.server"

struct server_s {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  server_t **box; /* the Lua userdata's slot, or NULL once it was collected */
  int onconnect_ref, self_ref;
  int connections, max_connections;
  size_t read_buffer;
  unsigned timeout;
  int is_pipe, closing, listener_closed;
};

typedef struct {
  uv_connect_t req;
  uv_timer_t *timer;
  lua_State *co;
  int co_ref, sock_ref;
  sock_t *k;
} connect_t;

/* --- options and addresses ---------------------------------------------------------------- */

static lua_Number opt_number(lua_State *L, int opts, const char *name, lua_Number def) {
  lua_getfield(L, opts, name);
  lua_Number v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : def;
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int opts, const char *name, int def) {
  lua_getfield(L, opts, name);
  int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Fills addr from a numeric host and a port; returns 0 or a libuv error. */
static int make_addr(const char *host, int port, struct sockaddr_storage *addr) {
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)addr) == 0) return 0;
  return uv_ip6_addr(host, port, (struct sockaddr_in6 *)addr);
}

/* Pushes {family, port, address} for a socket address (also used by the HTTP server). */
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

static int push_pipe_name(lua_State *L, uv_pipe_t *p, int peer) {
  char path[1024];
  size_t n = sizeof path;
  int err = peer ? uv_pipe_getpeername(p, path, &n) : uv_pipe_getsockname(p, path, &n);
  if (err < 0) return luaio_pusherror(L, err);
  lua_createtable(L, 0, 1);
  lua_pushlstring(L, path, n);
  lua_setfield(L, -2, "path");
  return 1;
}

/* Sets keep-alive; idle is seconds before the first probe, 0 for the system default. */
static int set_keepalive(uv_tcp_t *t, int enable, int idle) {
  if (idle > 0) return uv_tcp_keepalive(t, enable, (unsigned)idle);
  uv_os_fd_t fd;
  int err = uv_fileno((uv_handle_t *)t, &fd);
  if (err < 0) return err;
  return setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &enable, sizeof enable) < 0 ? UV_EINVAL : 0;
}

/* --- socket methods that only make sense for TCP -------------------------------------------- */

static sock_t *check_open(lua_State *L) {
  sock_t *k = luaio_sock_check(L, 1);
  if (k == NULL) luaio_pusherror(L, UV_ENOTCONN);
  return k;
}

static int sock_address(lua_State *L, int peer) {
  sock_t *k = check_open(L);
  if (k == NULL) return 2;
  if (k->is_pipe) return push_pipe_name(L, &k->h.pipe, peer);
  struct sockaddr_storage addr;
  int len = sizeof addr;
  int err = peer ? uv_tcp_getpeername(&k->h.tcp, (struct sockaddr *)&addr, &len)
                 : uv_tcp_getsockname(&k->h.tcp, (struct sockaddr *)&addr, &len);
  if (err < 0) return luaio_pusherror(L, err);
  luaio_push_addr(L, &addr);
  return 1;
}

static int sock_localaddress(lua_State *L) { return sock_address(L, 0); }
static int sock_remoteaddress(lua_State *L) { return sock_address(L, 1); }

static int push_result(lua_State *L, int err) {
  if (err < 0) return luaio_pusherror(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* socket:setNodelay([enable = true]) -> true | nil, err */
static int sock_setnodelay(lua_State *L) {
  sock_t *k = check_open(L);
  if (k == NULL) return 2;
  int enable = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
  return push_result(L, k->is_pipe ? UV_ENOTSUP : uv_tcp_nodelay(&k->h.tcp, enable));
}

/* socket:setKeepalive([enable = true][, idle_seconds = 0]) -> true | nil, err */
static int sock_setkeepalive(lua_State *L) {
  sock_t *k = check_open(L);
  if (k == NULL) return 2;
  int enable = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
  lua_Integer idle = luaL_optinteger(L, 3, 0);
  luaL_argcheck(L, idle >= 0 && idle < 1 << 20, 3, "seconds out of range");
  return push_result(L, k->is_pipe ? UV_ENOTSUP : set_keepalive(&k->h.tcp, enable, (int)idle));
}

static const luaL_Reg tcp_socket_methods[] = {
  {"localAddress", sock_localaddress}, {"remoteAddress", sock_remoteaddress},
  {"setKeepalive", sock_setkeepalive}, {"setNodelay", sock_setnodelay},
  {NULL, NULL}};

/* --- servers ---------------------------------------------------------------------------------- */

static void server_maybe_free(server_t *s) {
  if (!s->listener_closed || s->connections > 0) return;
  if (s->box != NULL) *s->box = NULL;
  free(s);
}

void luaio_server_release(server_t *s) {
  s->connections--;
  server_maybe_free(s);
}

static void on_listener_close(uv_handle_t *h) {
  server_t *s = h->data;
  s->listener_closed = 1;
  server_maybe_free(s);
}

static void server_shut(lua_State *L, server_t *s) {
  if (s->closing) return;
  s->closing = 1;
  luaL_unref(L, LUA_REGISTRYINDEX, s->onconnect_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, s->self_ref);
  uv_close(&s->h.handle, on_listener_close);
}

/* When a connection's task ends, its socket closes (the handler may have closed it). */
static void serve_done(lua_State *co, int value) {
  sock_t **box = lua_touserdata(co, value);
  if (*box != NULL) luaio_sock_close(luaio_mainstate(), *box);
}

static const luaio_hook serve_hook = {serve_done};

static void on_connection(uv_stream_t *listener, int status) {
  server_t *s = listener->data;
  lua_State *L = luaio_mainstate();
  if (status < 0 || s->closing) return;
  sock_t *k = luaio_sock_new(L, s->is_pipe, s->read_buffer, s->timeout);
  if (uv_accept(listener, &k->h.stream) != 0 || s->connections >= s->max_connections) {
    luaio_sock_close(L, k);
    lua_pop(L, 1);
    return;
  }
  s->connections++;
  k->server = s;
  luaio_sock_start(k);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->onconnect_ref);
  lua_pushvalue(L, -2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->self_ref);
  luaio_spawn_with(L, 2, &serve_hook); /* socket (for the hook), onconnect(socket, server) */
}

/* Binds a TCP listener (also used by the HTTP server); with reuseport the socket is made
 * here, since libuv 1.44 has no flag for SO_REUSEPORT (several processes then share one
 * port, the kernel spreads connections among them). opts: the checked options table. */
int luaio_tcp_bind(lua_State *L, uv_tcp_t *handle, int port, int opts) {
  lua_getfield(L, opts, "host");
  const char *host = lua_tostring(L, -1);
  lua_pop(L, 1); /* the options table keeps it alive */
  struct sockaddr_storage addr;
  int err = make_addr(host, port, &addr);
  if (err < 0) return err;
  uv_tcp_init_ex(luaio_loop(), handle, addr.ss_family);
  uv_os_fd_t fd;
  if ((err = uv_fileno((uv_handle_t *)handle, &fd)) < 0) return err;
  int on = 1;
  if (opt_bool(L, opts, "tcp_reuseport", 0) && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0)
    return UV_EINVAL;
  if ((err = uv_tcp_bind(handle, (struct sockaddr *)&addr, 0)) < 0) return err;
  if (opt_bool(L, opts, "tcp_nodelay", 1)) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  if (opt_bool(L, opts, "tcp_keepalive", 1))
    return set_keepalive(handle, 1, (int)opt_number(L, opts, "tcp_keepidle", 0));
  return 0;
}

/* C.listen(port | path, onconnect, options) -> server | nil, err */
static int tcp_listen(lua_State *L) {
  int is_pipe = lua_type(L, 1) == LUA_TSTRING;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TTABLE);
  server_t *s = calloc(1, sizeof *s);
  if (s == NULL) return luaio_pusherror(L, UV_ENOMEM);
  s->h.handle.data = s;
  s->is_pipe = is_pipe;
  s->timeout = (unsigned)opt_number(L, 3, "timeout", 0);
  s->read_buffer = (size_t)opt_number(L, 3, "read_buffer_size", 16) * 1024;
  s->max_connections = (int)opt_number(L, 3, "maxconnections", 65535);
  int err;
  if (is_pipe) {
    uv_pipe_init(luaio_loop(), &s->h.pipe, 0);
    err = uv_pipe_bind(&s->h.pipe, lua_tostring(L, 1));
  } else {
    err = luaio_tcp_bind(L, &s->h.tcp, (int)luaL_checkinteger(L, 1), 3);
  }
  if (err == 0) err = uv_listen(&s->h.stream, (int)opt_number(L, 3, "tcp_backlog", 511), on_connection);
  if (err < 0) {
    if (uv_is_closing(&s->h.handle) == 0 && s->h.handle.loop != NULL)
      uv_close(&s->h.handle, (uv_close_cb)free);
    else
      free(s);
    return luaio_pusherror(L, err);
  }
  server_t **box = lua_newuserdata(L, sizeof *box);
  *box = s;
  s->box = box;
  luaL_getmetatable(L, SERVER_MT);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* listening keeps the server alive */
  lua_pushvalue(L, 2);
  s->onconnect_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static server_t *check_server(lua_State *L) {
  server_t **box = luaL_checkudata(L, 1, SERVER_MT);
  return *box;
}

/* Pushes a TCP handle's own address (also http.c's server:address()). */
int luaio_push_sockname(lua_State *L, uv_tcp_t *handle) {
  struct sockaddr_storage addr;
  int len = sizeof addr;
  int err = uv_tcp_getsockname(handle, (struct sockaddr *)&addr, &len);
  if (err < 0) return luaio_pusherror(L, err);
  luaio_push_addr(L, &addr);
  return 1;
}

/* server:address() -> {family, port, address} (or {path}) */
static int server_address(lua_State *L) {
  server_t *s = check_server(L);
  if (s == NULL || s->closing) return luaio_pusherror(L, UV_EBADF);
  if (s->is_pipe) return push_pipe_name(L, &s->h.pipe, 0);
  return luaio_push_sockname(L, &s->h.tcp);
}

/* server:connections() -> the number of open connections */
static int server_connections(lua_State *L) {
  server_t *s = check_server(L);
  lua_pushinteger(L, s ? s->connections : 0);
  return 1;
}

/* server:close(): stops accepting; connections already open go on until they close. */
static int server_close(lua_State *L) {
  server_t *s = check_server(L);
  if (s != NULL) server_shut(L, s);
  return 0;
}

static int server_gc(lua_State *L) {
  server_t **box = lua_touserdata(L, 1);
  if (*box != NULL) (*box)->box = NULL; /* only reached once closed: listening holds a ref */
  return 0;
}

static const luaL_Reg server_methods[] = {
  {"address", server_address}, {"close", server_close}, {"connections", server_connections},
  {NULL, NULL}};

/* --- connecting ------------------------------------------------------------------------------ */

static void on_connect_timeout(uv_timer_t *t) {
  connect_t *c = t->data;
  c->k->timed_out = 1;
  luaio_sock_close(luaio_mainstate(), c->k); /* the connect callback follows, cancelled */
}

static void on_connect(uv_connect_t *req, int status) {
  connect_t *c = (connect_t *)req;
  lua_State *co = c->co;
  sock_t *k = c->k;
  if (c->timer != NULL) uv_close((uv_handle_t *)c->timer, (uv_close_cb)free);
  luaio_unanchor(c->co_ref);
  if (status == 0 && !k->closing) status = luaio_sock_start(k);
  if (status < 0) {
    if (k->timed_out) status = UV_ETIMEDOUT;
    luaio_sock_close(co, k);
    luaL_unref(co, LUA_REGISTRYINDEX, c->sock_ref);
    free(c);
    luaio_resume(co, luaio_pusherror(co, status));
    return;
  }
  k->timed_out = 0;
  lua_rawgeti(co, LUA_REGISTRYINDEX, c->sock_ref);
  luaL_unref(co, LUA_REGISTRYINDEX, c->sock_ref);
  free(c);
  luaio_resume(co, 1);
}

/* C.connect(port | path, host, options) -> socket | nil, err. host is numeric here. */
static int tcp_connect(lua_State *L) {
  int is_pipe = lua_type(L, 1) == LUA_TSTRING;
  luaL_checktype(L, 3, LUA_TTABLE);
  luaio_checktask(L, "connect");
  struct sockaddr_storage addr;
  if (!is_pipe) {
    int err = make_addr(luaL_checkstring(L, 2), (int)luaL_checkinteger(L, 1), &addr);
    if (err < 0) return luaio_pusherror(L, err);
  }
  connect_t *c = calloc(1, sizeof *c);
  if (c == NULL) return luaio_pusherror(L, UV_ENOMEM);
  sock_t *k = luaio_sock_new(L, is_pipe, (size_t)opt_number(L, 3, "read_buffer_size", 16) * 1024,
                             (unsigned)opt_number(L, 3, "timeout", 0));
  int err = 0;
  if (is_pipe) {
    uv_pipe_connect(&c->req, &k->h.pipe, lua_tostring(L, 1), on_connect);
  } else {
    if (opt_bool(L, 3, "tcp_nodelay", 1)) uv_tcp_nodelay(&k->h.tcp, 1);
    err = uv_tcp_connect(&c->req, &k->h.tcp, (struct sockaddr *)&addr, on_connect);
    if (err == 0 && opt_bool(L, 3, "tcp_keepalive", 1))
      set_keepalive(&k->h.tcp, 1, (int)opt_number(L, 3, "tcp_keepidle", 0));
  }
  if (err < 0) {
    free(c);
    luaio_sock_close(L, k);
    return luaio_pusherror(L, err);
  }
  c->k = k;
  c->sock_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the socket userdata */
  c->co = L;
  c->co_ref = luaio_anchor(L);
  if (k->timeout > 0 && (c->timer = malloc(sizeof *c->timer)) != NULL) {
    uv_timer_init(luaio_loop(), c->timer);
    c->timer->data = c;
    uv_update_time(luaio_loop());
    uv_timer_start(c->timer, on_connect_timeout, k->timeout, 0);
  }
  return luaio_yield(L);
}

/* C.isIP(address) -> 4, 6 or 0 */
static int tcp_isip(lua_State *L) {
  const char *s = luaL_checkstring(L, 1);
  unsigned char buf[sizeof(struct in6_addr)];
  lua_pushinteger(L, uv_inet_pton(AF_INET, s, buf) == 0 ? 4 : uv_inet_pton(AF_INET6, s, buf) == 0 ? 6 : 0);
  return 1;
}

static const luaL_Reg tcp_funcs[] = {
  {"connect", tcp_connect}, {"isIP", tcp_isip}, {"listen", tcp_listen}, {NULL, NULL}};

int luaopen_luaio_tcp(lua_State *L) {
  luaio_stream_register(L, tcp_socket_methods);
  if (luaL_newmetatable(L, SERVER_MT)) {
    lua_newtable(L);
    luaL_setfuncs(L, server_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, server_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaio_newlib(L, tcp_funcs);
  return 1;
}
