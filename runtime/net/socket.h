/*
 * socket.h: the Lua socket (socket.c) on the connection core, and what tcp.c shares with it.
 */
#ifndef LUAIO_SOCKET_H
#define LUAIO_SOCKET_H

#include "conn.h"

/* A socket's settings, from tcp.createServer's or tcp.connect's options. */
typedef struct {
  uint32_t read_buffer;  /* bytes: reading pauses while this many wait unread */
  uint32_t write_buffer; /* bytes: a write waits while more than this are queued */
  uint32_t timeout;      /* ms of inactivity while a task waits; 0 = never */
  uint32_t send_timeout; /* ms that written bytes may wait for a peer that reads nothing */
} luaio_sockopts;

/* A connection accepted from server, with a socket on it (pushed), reading; NULL (nothing
 * pushed) when it could not be taken or the server is full. */
luaio_conn *luaio_socket_accept(lua_State *L, luaio_server *server, const luaio_sockopts *o);
/* A new connection with a socket on it, pushed as a Lua userdata. */
luaio_conn *luaio_socket_new(lua_State *L, int is_pipe, const luaio_sockopts *o, int *err);
void luaio_socket_configure(luaio_conn *c, const luaio_sockopts *o);
/* Puts a socket (pushed) on a connection another protocol handed over; returns 0 or an
 * error. */
int luaio_socket_adopt(lua_State *L, luaio_conn *c);
/* Detaches the socket at idx from its connection and returns the connection (no protocol on
 * it: the caller sets its own; bytes already buffered stay in c->in); the socket is left
 * closed. NULL when it is closed already or a task waits on it. */
luaio_conn *luaio_socket_release(lua_State *L, int idx);
/* The connection of the socket at arg, or NULL once it was closed. */
luaio_conn *luaio_socket_check(lua_State *L, int arg);
/* A connect is under way (on = 1) or done: the socket's timeout covers it. */
void luaio_socket_connecting(luaio_conn *c, int on);
struct sockaddr;
typedef struct luaio_tlsctx luaio_tlsctx;
/* Connects a new socket (TCP to addr, or the Unix socket at path) in the calling task, then,
 * with tls, does the TLS handshake as a client verifying servername; returns the socket or
 * nil, err (yields). */
int luaio_socket_connect(lua_State *L, const char *path, const struct sockaddr *addr,
                         const luaio_sockopts *o, int nodelay, int keepalive, int keepidle,
                         luaio_tlsctx *tls, const char *servername);
/* Graceful close: queued output is still written. */
void luaio_socket_close(lua_State *L, luaio_conn *c);
void luaio_socket_register(lua_State *L);

/* tcp.c: keep-alive on a TCP handle; idle: seconds before the first probe, 0 = the
 * system's default. */
int luaio_tcp_keepalive(uv_tcp_t *t, int enable, int idle);

#endif
