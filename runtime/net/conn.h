/*
 * conn.h: the connection core. One object per connected stream (TCP or Unix socket) owns
 * what every protocol needs and must get right once:
 *
 *   - the input: bytes received and not yet consumed, in one buffer that protocols parse in
 *     place (an idle connection holds none);
 *   - the output: a queue of pieces (small ones copied into blocks, large Lua strings
 *     referenced), flushed once per loop iteration so that what one turn produces goes out
 *     in one write, with a high-water mark the protocol uses for back-pressure;
 *   - timeouts: one deadline the protocol arms for its reads, and a send timeout the core
 *     runs itself while written bytes wait for a peer that does not read;
 *   - closing: at once (abort), or after the output is written (end), optionally with a
 *     lingering read so that the peer reads our last answer instead of a reset.
 *
 * A protocol (the Lua socket in socket.c, the HTTP server, later WebSocket) sits on a
 * connection through the callbacks below and its state in `ud`; handing a connection to
 * another protocol (after an HTTP upgrade) is luaio_conn_set_proto. The transport under it
 * is the uv stream; TLS will sit between the stream and c->in/c->out, so protocols only
 * ever see plaintext.
 *
 * Memory: a connection is freed in its handle's close callback, never before, whatever
 * the protocol or Lua does meanwhile.
 */
#ifndef LUAIO_CONN_H
#define LUAIO_CONN_H

#include "luaio.h"

#define LUAIO_BLOCK 16384 /* input and output blocks, kept in free lists */

typedef struct luaio_conn luaio_conn;
typedef struct luaio_server luaio_server;

typedef struct {
  /* New bytes are in c->in, or the read side ended (c->read_err is UV_EOF or an error). */
  void (*on_read)(lua_State *L, luaio_conn *c);
  /* The output fell to the low-water mark (high_water / 2) after being above the
   * high-water mark, or was all written (no c->out any more), or writing failed
   * (c->write_err; then this may run inside a task's call: wake others with luaio_ready). */
  void (*on_drain)(lua_State *L, luaio_conn *c);
  /* The deadline armed with luaio_conn_timeout passed. */
  void (*on_timeout)(lua_State *L, luaio_conn *c);
  /* The connection is going away (err: why): wake whatever waits on it (with luaio_ready:
   * this may run inside another task's call) and release the protocol's state. Called
   * once; nothing is called afterwards. Not called after luaio_conn_end. */
  void (*on_close)(lua_State *L, luaio_conn *c, int err);
  /* The TLS handshake is done (err 0) or failed (err < 0; luaio_tls_pusherror tells why;
   * the connection closes right after). May be NULL. */
  void (*on_tls)(lua_State *L, luaio_conn *c, int err);
} luaio_conn_proto;

/* Received bytes: data[off..len) are unread; data[kept..kept + kept_len), before off, are
 * kept for the protocol (an HTTP request's head while its handler runs). Allocated only
 * while there are some. */
typedef struct {
  uint32_t off, len, cap, kept, kept_len;
  char data[];
} luaio_inbuf;

/* A piece of output: bytes base[off..len) of an owned block, or of a Lua string kept by a
 * registry ref. */
typedef struct {
  char *base;
  uint32_t off, len, cap; /* cap: the owned block's size; 0 for a referenced string */
  int ref;
} luaio_piece;

/* Output not yet written. Allocated only while there is some. */
typedef struct luaio_outq luaio_outq;
struct luaio_outq {
  luaio_piece *pieces;
  uint32_t n, cap, flying; /* the first `flying` pieces are in the write in flight */
  uint32_t progress;       /* bytes (mod 2^32) when the send deadline was armed */
  uint64_t bytes;          /* queued and not yet written */
  uv_write_t *wreq;        /* the write in flight, or NULL */
  luaio_conn *conn;
  luaio_outq *dirty_next; /* in the list of queues to flush this loop iteration */
  uv_shutdown_t *shut;    /* a half close waiting for the pieces queued before it */
  uv_shutdown_cb shut_cb;
  uint8_t dirty;
};

typedef struct luaio_tls luaio_tls;

struct luaio_conn {
  const luaio_conn_proto *proto; /* its state: luaio_conn_ud(c) */
  luaio_tls *tls;                /* the TLS transport (net/tls.c), or NULL: plain */
  luaio_server *server;          /* the server that accepted it (its connection count), or NULL */
  luaio_inbuf *in;
  luaio_outq *out;
  luaio_deadline dl;     /* the protocol's deadline, or the send timeout (dl_send) */
  uint32_t in_max;       /* the input buffer never grows past this; reading pauses then */
  uint32_t high_water;   /* output bytes above which protocols pause */
  uint32_t send_timeout; /* ms that written output may wait without progress; 0 = forever */
  uint32_t wait_timeout; /* ms of inactivity a waiting task allows (a socket's setTimeout);
                          * the protocol's setting, kept here where it costs no padding */
  int16_t read_err;      /* 0, or UV_EOF or a read error: reading has ended */
  int16_t write_err;     /* the first write error (or why it closed): later writes fail with it */
  uint16_t linger_ms;
  uint16_t want_read : 1, reading : 1, full : 1, over_high : 1, dl_send : 1, dl_hs : 1, closing : 1,
      ending : 1, shut_after : 1, shut_sent : 1, lingering : 1, is_pipe : 1, redrive : 1;
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h; /* last: only its own type's size is allocated, then the protocol's `extra` */
};

/* The protocol's state is kept in the handle's data field, which libuv leaves to its user:
 * that saves a pointer on every connection (10,000 idle ones are what bench/idle_tcp.sh
 * weighs). libuv's callbacks find their connection from the handle's address. */
#define luaio_conn_ud(c) ((c)->h.handle.data)
#define luaio_conn_of(handle) ((luaio_conn *)((char *)(handle)-offsetof(luaio_conn, h)))

/* A listening server: the listener handle and the count of its open connections. The
 * memory is freed (s->free) when the listener is closed and the last connection is gone. */
struct luaio_server {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  void (*free)(luaio_server *s);
  struct luaio_tlsctx *tls; /* TLS for every connection accepted (server:setTLS swaps it) */
  void **box;               /* the Lua userdata's slot, or NULL once it was collected */
  int self_ref;             /* the userdata, kept while listening */
  int connections, max_connections;
  uint8_t closing, listener_closed, is_pipe;
};

/* A new connection with a fresh, initialised handle (TCP or pipe), with `extra` bytes after
 * it for the protocol's state (luaio_conn_ud(c) points there). Returns NULL when out of memory or
 * when the handle cannot be made (err set). */
luaio_conn *luaio_conn_new(int is_pipe, size_t extra, int *err);
/* Accepts a connection from a server's listener into a new connection; counts it. Over the
 * server's max_connections, the connection is accepted and closed at once. Returns NULL
 * then, or on failure. */
luaio_conn *luaio_conn_accept(luaio_server *s, size_t extra);
void luaio_conn_set_proto(luaio_conn *c, const luaio_conn_proto *proto, void *ud);

/* Reading: on while the protocol wants it and the buffer has room. */
void luaio_conn_read_start(luaio_conn *c);
void luaio_conn_read_stop(luaio_conn *c);
/* The protocol consumed n bytes at c->in->data + c->in->off. The buffer goes once nothing in
 * it is unread or kept. */
void luaio_conn_consume(luaio_conn *c, uint32_t n);
/* A read needs n unread bytes at once (socket:read(n), a large frame): in_max grows to n. */
void luaio_conn_need(luaio_conn *c, uint32_t n);
/* Consumes the next n unread bytes but keeps them in the buffer (a request's head while its
 * handler runs), until luaio_conn_unkeep. The buffer may move: find them at
 * c->in->data + c->in->kept. */
void luaio_conn_keep(luaio_conn *c, uint32_t n);
void luaio_conn_unkeep(luaio_conn *c);
/* Makes the input buffer an owned one with room for at least `room` more bytes; returns 0
 * or UV_ENOMEM / UV_ENOBUFS (past in_max). */
int luaio_conn_reserve_in(luaio_conn *c, uint32_t room);

/* Writing: queues bytes (copied), or the Lua string at idx of L (referenced when large). The
 * queue is flushed at the end of this loop iteration, or now when it grows large. Return 0
 * or the connection's write error. */
int luaio_conn_write(luaio_conn *c, const char *data, size_t len);
int luaio_conn_write_lua(luaio_conn *c, lua_State *L, int idx);
/* The Lua string at idx, always referenced (never copied): for one string queued on many
 * connections (WebSocket publish). */
int luaio_conn_write_shared(luaio_conn *c, lua_State *L, int idx);
/* Room for n bytes at the end of the queue (for formatting in place), committed by
 * luaio_conn_commit(c, n) with the bytes actually written; NULL when out of memory. */
char *luaio_conn_reserve(luaio_conn *c, size_t n);
void luaio_conn_commit(luaio_conn *c, size_t n);
/* Writes what is queued now (try first; the rest goes to libuv). on_drain is not called
 * from here (the caller may be inside Lua): it comes from the loop. */
void luaio_conn_flush(luaio_conn *c);
/* Output bytes queued and not yet written (plaintext and records, with TLS). */
uint64_t luaio_conn_queued(luaio_conn *c);
int luaio_conn_above_high(luaio_conn *c);

/* A duration (luaio_opt_ms, luaio_checkms) as the 32-bit ms a connection keeps, 0 meaning
 * none: deadlines past 2^31 ms (24 days) never come (core/deadline.c). */
static inline uint32_t luaio_ms32(uint64_t ms) { return ms > 0x7fffffffu ? 0 : (uint32_t)ms; }

/* The protocol's deadline: on_timeout in ms (0 or LUAIO_FOREVER: none). */
void luaio_conn_timeout(luaio_conn *c, uint64_t ms);

/* Closes now: queued output is dropped, on_close(c, err) runs. Idempotent. */
void luaio_conn_close(luaio_conn *c, int err);
/* Closes once the queued output is written (or the send timeout passes). With linger_ms,
 * first shuts down the write side and reads and drops what the peer still sends for up
 * to linger_ms, so that it reads our last bytes rather than a reset. The protocol is
 * detached at once and on_close is not called: the protocol releases its state itself. */
void luaio_conn_end(luaio_conn *c, unsigned linger_ms);
/* Half close: shuts down the write side once the queued output is written; cb(req, status)
 * then (req->data is the caller's). Later writes fail with EPIPE. */
int luaio_conn_shutdown(luaio_conn *c, uv_shutdown_t *req, uv_shutdown_cb cb);

/* For the TLS transport (tls.c): room for plaintext in c->in (the shared buffer when it has
 * none; room 0 when in_max bytes wait unread) and the bytes put there; ciphertext onto the
 * wire; the handshake begun (its deadline); the front of a queue released. */
char *luaio_conn_in_space(luaio_conn *c, uint32_t *room);
void luaio_conn_in_added(luaio_conn *c, uint32_t n);
int luaio_conn_wire_write(luaio_conn *c, const char *data, size_t len);
/* Room for n bytes at the end of the wire queue, for a record sealed in place (NULL: no
 * memory); luaio_conn_wire_commit queues the n bytes written there. */
char *luaio_conn_wire_reserve(luaio_conn *c, size_t n);
void luaio_conn_wire_commit(luaio_conn *c, size_t n);
void luaio_conn_tls_started(luaio_conn *c);
void luaio_outq_advance(luaio_outq *q, size_t n);

/* Addresses. */
struct sockaddr_storage;
int luaio_conn_peer(luaio_conn *c, struct sockaddr_storage *addr);
/* The numeric address of addr ("127.0.0.1", "::1") into buf. */
void luaio_addr_name(const struct sockaddr_storage *addr, char *buf, size_t size);

/* Pushes a TCP or pipe handle's peer or own address ({family, port, address} or {path});
 * returns 1, or 2 (nil, err). */
int luaio_push_handle_address(lua_State *L, uv_handle_t *h, int peer);
#define luaio_conn_push_address(L, c, peer) luaio_push_handle_address((L), &(c)->h.handle, (peer))

/* Servers (tcp.c): binds and listens with the checked options table at opts (host,
 * tcp_backlog, tcp_reuseport, tcp_nodelay, tcp_keepalive, tcp_keepidle, maxconnections, and
 * tls: a server context); port is a number, or the path of a Unix socket when path != NULL.
 * Returns 0 or a libuv error; on error the caller frees s itself, unless s->closing (then
 * s->free runs when the handle has closed). */
int luaio_server_listen(lua_State *L, luaio_server *s, int port, const char *path, int opts,
                        uv_connection_cb on_connection);
/* luaio_server_listen, then pushes the server's userdata (with metatable mt, kept alive
 * while listening) or nil, err (s is freed then). Returns 1 or 2. */
int luaio_server_start(lua_State *L, luaio_server *s, int port, const char *path, int opts,
                       uv_connection_cb on_connection, const char *mt);
/* The server userdata at idx with metatable mt (NULL once freed). */
luaio_server *luaio_server_check(lua_State *L, int idx, const char *mt);
/* Stops accepting and lets the userdata go (connections go on). */
void luaio_server_stop(lua_State *L, luaio_server *s);
/* Stops accepting: closes the listener; s->free runs once the last connection is gone. */
void luaio_server_close(luaio_server *s);
/* A connection of s went: frees s when it was the last and the listener is closed. */
void luaio_server_gone(luaio_server *s);
/* Fills the server metatable mt on the stack: the methods every server has (address,
 * connections, setTLS), then `methods`, and __gc. */
void luaio_server_metatable(lua_State *L, const luaL_Reg *methods);

#endif
