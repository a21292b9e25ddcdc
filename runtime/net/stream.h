/*
 * stream.h: a connected socket (TCP or Unix domain), shared by stream.c (reading, writing,
 * timeouts, closing) and tcp.c (servers, connect, TCP options, addresses).
 */
#ifndef LUAIO_STREAM_H
#define LUAIO_STREAM_H

#include <stdint.h>

#include "luaio.h"

#define SOCKET_MT "luaio.socket"

typedef struct server_s server_t;

typedef enum { READ_ANY, READ_EXACT, READ_LINE } read_mode;

/* Bytes received but not yet read by Lua. Allocated only while there are some: an idle
 * connection holds no buffer. */
typedef struct {
  uint32_t off, len, cap;
  char data[];
} rbuf_t;

/* Allocated apart from its Lua userdata (which holds a pointer) because libuv owns the
 * memory until the close callback runs, after the userdata may have been collected.
 * Kept small on purpose: an idle connection costs this plus its task. The handle comes
 * last and only its own type's size is allocated (a TCP socket does not pay for a pipe). */
typedef struct {
  void *box;         /* the Lua userdata's slot pointing here, cleared when either goes */
  server_t *server;  /* the server that accepted it, for its connection count; or NULL */
  uv_timer_t *timer; /* the idle timeout, allocated on the first wait that needs one */
  rbuf_t *in;        /* unread bytes, or NULL */
  lua_State *reader; /* the task waiting in read/readline, or NULL */
  int reader_ref;
  int read_status;     /* 0, or UV_EOF or a read error: sticky, reported once the buffer drains */
  uint32_t mark;       /* READ_EXACT: bytes wanted; READ_LINE: bytes already searched for \n */
  uint32_t max_buffer; /* read_buffer_size: stop reading from the kernel above this */
  uint32_t timeout;    /* ms of inactivity before a wait fails, 0 = never */
  uint16_t writers;    /* writes waiting for completion */
  uint8_t mode;        /* a read_mode */
  uint8_t reading : 1, closing : 1, timed_out : 1, is_pipe : 1;
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
} sock_t;

/* Makes a new socket userdata (pushed) around a fresh, initialised handle. */
sock_t *luaio_sock_new(lua_State *L, int is_pipe, size_t max_buffer, unsigned timeout);
/* Starts delivering bytes from the kernel into the socket. */
int luaio_sock_start(sock_t *k);
sock_t *luaio_sock_check(lua_State *L, int arg);
/* Closes the socket now (idempotent); a task waiting to read gets ECANCELED. */
void luaio_sock_close(lua_State *L, sock_t *k);
/* Called by tcp.c when a server's connection closes. */
void luaio_server_release(server_t *s);
void luaio_stream_register(lua_State *L, const luaL_Reg *extra);

#endif
