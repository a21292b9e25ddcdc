/*
 * http_server.c: HTTP servers, the C half of stdlib/http.lua ("luaio.http"): options,
 * accepting connections, server:close() and what it means for the connections open.
 *
 * server:close() stops accepting and drains gracefully: connections still in the kernel's
 * accept queue are taken and served (their clients did nothing wrong); a response whose
 * head is not sent yet says Connection: close; an idle connection gets a short grace in
 * which a request it sends is still answered (with Connection: close), so that a client
 * whose request crossed our close does not lose it; every connection ends once its
 * output is written. server:connections() tells when all are done.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "http.h"
#include "tls.h"

#define SERVER_MT "luaio.http.server"

/* A duration option as the 32-bit ms the server keeps (0: none). */
static uint32_t opt_ms(lua_State *L, int opts, const char *name, uint64_t def) {
  return luaio_ms32(luaio_opt_ms(L, opts, name, def));
}

static void server_free(luaio_server *base) {
  hserver_t *s = (hserver_t *)base;
  luaL_unref(luaio_mainstate(), LUA_REGISTRYINDEX, s->handler_ref);
  if (s->access_ref != LUA_NOREF) luaL_unref(luaio_mainstate(), LUA_REGISTRYINDEX, s->access_ref);
  free(s);
}

typedef struct {
  hserver_t *s;
  int fd;
} accept_t;

static void accept_one(lua_State *L, void *arg) {
  (void)L;
  accept_t *a = arg;
  http_accept(a->s, &a->s->base.h.stream, a->fd);
}

static void on_connection(uv_stream_t *listener, int status) {
  hserver_t *s = listener->data;
  if (status < 0 || s->base.closing) return;
  accept_t a = {s, -1};
  luaio_protect(accept_one, &a, "accept");
}

/* Takes the connections still waiting in the kernel's accept queue: closing the listener
 * would reset them. */
static void drain_backlog(hserver_t *s) {
  uv_os_fd_t lfd;
  if (uv_fileno(&s->base.h.handle, &lfd) < 0) return;
  int fd;
  while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
    accept_t a = {s, fd};
    luaio_protect(accept_one, &a, "accept");
  }
}

/* C.listen(port, handler, options) -> server | nil, err. options are checked by http.lua. */
static int http_listen(lua_State *L) {
  int port = (int)luaL_checkinteger(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TTABLE);
  hserver_t *s = calloc(1, sizeof *s);
  if (s == NULL) return luaio_pusherror(L, UV_ENOMEM);
  s->base.free = server_free;
  s->handler_ref = s->access_ref = LUA_NOREF;
  s->max_header_size = (uint32_t)luaio_opt_uint(L, 3, "max_header_size", 16384, 256, 1048576);
  s->max_headers = (uint32_t)luaio_opt_uint(L, 3, "max_headers", 100, 1, HTTP_MAX_HEADERS);
  s->max_url = (uint32_t)luaio_opt_uint(L, 3, "max_url_length", 8192, 1, 1048576);
  s->max_body_size = luaio_opt_uint(L, 3, "max_body_size", 1048576, 0, UINT64_MAX);
  s->max_requests = (uint32_t)luaio_opt_uint(L, 3, "max_requests", 10000, 1, UINT32_MAX);
  s->header_timeout = opt_ms(L, 3, "header_timeout", 10000);
  s->keepalive_timeout = opt_ms(L, 3, "keepalive_timeout", 5000);
  s->body_timeout = opt_ms(L, 3, "body_timeout", 10000);
  s->send_timeout = opt_ms(L, 3, "send_timeout", 60000);
  s->write_buffer = (uint32_t)luaio_opt_uint(L, 3, "write_buffer_size", 256, 1, 1048576) * 1024;
  lua_getfield(L, 3, "server_name");
  const char *name = lua_isstring(L, -1) ? lua_tostring(L, -1) : lua_isnil(L, -1) ? "luaio" : NULL;
  if (name != NULL) snprintf(s->server_header, sizeof s->server_header, "Server: %.60s\r\n", name);
  lua_pop(L, 1);
  if (luaio_server_start(L, &s->base, port, NULL, 3, on_connection, SERVER_MT) == 2) return 2;
  lua_pushvalue(L, 2);
  s->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, 3, "access_hook");
  s->access_ref =
      lua_isfunction(L, -1) ? luaL_ref(L, LUA_REGISTRYINDEX) : (lua_pop(L, 1), LUA_NOREF);
  return 1;
}

static hserver_t *check_server(lua_State *L) {
  return (hserver_t *)luaio_server_check(L, 1, SERVER_MT);
}

/* server:close(): stops accepting; see the top of this file for the connections open. */
static int server_close(lua_State *L) {
  hserver_t *s = check_server(L);
  if (s == NULL || s->closing) return 0;
  s->closing = 1;
  drain_backlog(s); /* these clients are about to send a request */
  for (hconn_t *h = s->conns, *next; h != NULL; h = next) {
    next = h->next; /* h may end, and leave the list, right here */
    http_conn_closing(h->conn);
  }
  luaio_server_stop(L, &s->base);
  return 0;
}

/* C.init(worker, request_methods): the Lua worker loop and req's methods. */
static int http_init(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TTABLE);
  http_init_workers(L);
  http_request_register(L, 2);
  return 0;
}

static const luaL_Reg server_methods[] = {{"close", server_close}, {NULL, NULL}};
static const luaL_Reg http_funcs[] = {{"done", http_done},
                                      {"form", http_form},
                                      {"init", http_init},
                                      {"listen", http_listen},
                                      {"read", http_read},
                                      {"request", http_request_table},
                                      {"tlsinfo", http_tlsinfo},
                                      {"value_problem", http_value_check},
                                      {NULL, NULL}};

int luaopen_luaio_http(lua_State *L) {
  http_response_register(L);
  luaL_newmetatable(L, SERVER_MT);
  luaio_server_metatable(L, server_methods);
  lua_pop(L, 1);
  luaio_newlib(L, http_funcs);
  return 1;
}
