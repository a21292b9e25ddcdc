/*
 * socket.c: the Lua socket, a protocol on the connection core (conn.c): read, readline,
 * write, shutdown, close, setTimeout, addresses and TCP options. tcp.c makes sockets (accept,
 * connect); an HTTP upgrade hands its connection over as a socket too (luaio_socket_adopt).
 *
 * Reads take bytes from the core's input buffer, or wait for them. Writes queue on the core
 * and return at once; a write waits only when the queued output is above the high-water
 * mark (write_buffer_size), until the peer has taken half of it: a slow reader holds back
 * the writer, not memory. A write error is reported by the write that finds it, or the next.
 *
 * Timeouts (setTimeout) measure inactivity while a task waits: bytes arriving or output
 * draining restart them. A read that times out leaves the socket usable; a write that
 * times out closes it, since a peer that has not read for that long has stalled and the
 * queued bytes cannot be taken back.
 *
 * close() is graceful: what was written is still sent (within the send timeout), then the
 * connection closes. Nothing written before close is lost.
 */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "socket.h"
#include "tls.h"

#define MAX_WRITE_PIECES 64

/* What the reading task waits for: bytes, or (READ_HANDSHAKE) the TLS handshake of a
 * connect or a starttls. */
typedef enum { READ_ANY, READ_EXACT, READ_LINE, READ_HANDSHAKE } read_mode;

/* A socket's state, after the connection and its handle (360 bytes in all for TCP: every
 * byte counts 10,000 times in bench/idle_tcp.sh). So the tasks waiting on it are known by
 * their registry references alone (which anchor them; LUA_NOREF: none), and its timeout
 * is the connection's wait_timeout. */
typedef struct {
  luaio_conn **box; /* the Lua userdata's slot pointing at the connection */
  int reader_ref;   /* the task waiting in read/readline or for a handshake */
  int writer_ref;   /* the task waiting for output to drain (a table of them when several
                     * do: add_writer), or for its shutdown */
  /* READ_EXACT: bytes wanted; READ_LINE: bytes already searched; READ_HANDSHAKE: the
   * registry ref of the socket a connect returns (LUA_NOREF: true) */
  int32_t mark;
  uint8_t mode : 2, timed_out : 1, connecting : 1, allocated : 1, shutting : 1;
} sock_t;

static luaio_udtype socket_type = {LUA_NOREF, NULL};
static const luaio_conn_proto socket_proto;

#define SOCK(c) ((sock_t *)luaio_conn_ud(c))

/* --- errors -------------------------------------------------------------------------------- */

static int push_closed(lua_State *L) { return luaio_pusherror(L, UV_ENOTCONN); }

static int push_busy(lua_State *L, const char *what) {
  return luaio_pushnamederror(L, "EBUSY", what);
}

/* --- the object ---------------------------------------------------------------------------- */

static void sock_init(lua_State *L, luaio_conn *c, sock_t *s) {
  memset(s, 0, sizeof *s);
  s->reader_ref = s->writer_ref = LUA_NOREF;
  luaio_conn **box = lua_newuserdata(L, sizeof *box);
  *box = c;
  s->box = box;
  lua_rawgeti(L, LUA_REGISTRYINDEX, socket_type.ref);
  lua_setmetatable(L, -2);
  luaio_conn_set_proto(c, &socket_proto, s);
}

luaio_conn *luaio_socket_accept(lua_State *L, luaio_server *server, const luaio_sockopts *o) {
  luaio_conn *c = luaio_conn_accept(server, sizeof(sock_t));
  if (c == NULL) return NULL;
  sock_init(L, c, luaio_conn_ud(c));
  luaio_socket_configure(c, o);
  luaio_conn_read_start(c);
  return c;
}

luaio_conn *luaio_socket_new(lua_State *L, int is_pipe, const luaio_sockopts *o, int *err) {
  luaio_conn *c = luaio_conn_new(is_pipe, sizeof(sock_t), err);
  if (c == NULL) return NULL;
  sock_init(L, c, luaio_conn_ud(c));
  luaio_socket_configure(c, o);
  return c;
}

void luaio_socket_configure(luaio_conn *c, const luaio_sockopts *o) {
  c->in_max = o->read_buffer;
  c->high_water = o->write_buffer;
  c->send_timeout = o->send_timeout;
  c->wait_timeout = o->timeout;
}

int luaio_socket_adopt(lua_State *L, luaio_conn *c) {
  sock_t *s = malloc(sizeof *s);
  if (s == NULL) return UV_ENOMEM;
  sock_init(L, c, s);
  s->allocated = 1;
  luaio_conn_read_start(c);
  return 0;
}

luaio_conn *luaio_socket_check(lua_State *L, int arg) {
  luaio_conn **box = luaio_checkudata(L, arg, &socket_type, "socket");
  return *box;
}

void luaio_socket_connecting(luaio_conn *c, int on) {
  SOCK(c)->connecting = (uint8_t)on;
  luaio_conn_timeout(c, on ? c->wait_timeout : 0);
}

/* The task that the registry reference ref anchors, or NULL for LUA_NOREF. */
static lua_State *waiter(lua_State *L, int ref) {
  if (ref == LUA_NOREF) return NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_State *co = lua_tothread(L, -1);
  lua_pop(L, 1);
  return co;
}

/* Queues task t to resume (by the ready queue: this may run inside another task's call)
 * with true, or nil and the error (TLS failures say why). */
static void ready(lua_State *L, luaio_conn *c, lua_State *t, int err) {
  if (err < 0)
    luaio_tls_pusherror(L, c, err);
  else
    lua_pushboolean(L, 1);
  luaio_ready(L, t, err < 0 ? 2 : 1);
}

/* Wakes the task waiting at *ref, if any. */
static void wake(lua_State *L, luaio_conn *c, int *ref, int err) {
  lua_State *t = waiter(L, *ref);
  if (t == NULL) return;
  int anchor = *ref;
  *ref = LUA_NOREF;
  ready(L, c, t, err);
  luaio_unanchor(anchor); /* once the ready queue holds it: the pushes above allocate */
}

/* Another task waits for the output to drain: writer_ref's thread becomes a table of the
 * waiting tasks, in the order they wrote (their bytes are queued in that order already). */
static void add_writer(lua_State *L, sock_t *s) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->writer_ref);
  if (!lua_istable(L, -1)) {
    lua_createtable(L, 2, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, LUA_REGISTRYINDEX, s->writer_ref); /* the same reference, now the table */
  }
  lua_pushthread(L);
  lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
  lua_pop(L, 1);
}

/* Wakes the task or tasks waiting to write, all with the same result. */
static void wake_writers(lua_State *L, luaio_conn *c, int err) {
  sock_t *s = SOCK(c);
  if (s->writer_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->writer_ref);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    wake(L, c, &s->writer_ref, err);
    return;
  }
  int anchor = s->writer_ref, n = (int)lua_objlen(L, -1);
  s->writer_ref = LUA_NOREF;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    lua_State *t = lua_tothread(L, -1);
    lua_pop(L, 1);
    ready(L, c, t, err);
  }
  lua_pop(L, 1);
  luaio_unanchor(anchor); /* once the ready queue holds them */
}

/* The socket lets go of its connection: waiting tasks learn why, the userdata is cleared. */
static void detach(lua_State *L, luaio_conn *c, int err) {
  sock_t *s = SOCK(c);
  wake(L, c, &s->reader_ref, s->timed_out ? UV_ETIMEDOUT : err);
  wake_writers(L, c, s->timed_out ? UV_ETIMEDOUT : err);
  s->shutting = 0;
  if (s->mode == READ_HANDSHAKE) luaL_unref(L, LUA_REGISTRYINDEX, s->mark);
  s->mode = READ_ANY;
  if (s->box != NULL) *s->box = NULL;
  s->box = NULL;
  if (s->allocated) free(s);
  luaio_conn_ud(c) = NULL;
}

static void on_close(lua_State *L, luaio_conn *c, int err) {
  detach(L, c, err == 0 ? UV_ECANCELED : err);
}

/* Closes gracefully: the queued output is still written, then the connection closes. */
void luaio_socket_close(lua_State *L, luaio_conn *c) {
  detach(L, c, UV_ECANCELED);
  luaio_conn_end(c, 0);
}

/* --- the deadline --------------------------------------------------------------------------- */

/* Runs while a task waits: restarted by every wait that begins or ends. */
static void timer_update(luaio_conn *c) {
  sock_t *s = SOCK(c);
  int waiting = s->reader_ref != LUA_NOREF || s->writer_ref != LUA_NOREF || s->connecting;
  luaio_conn_timeout(c, waiting ? c->wait_timeout : 0);
}

static void on_timeout(lua_State *L, luaio_conn *c) {
  sock_t *s = SOCK(c);
  if (s->connecting || s->writer_ref != LUA_NOREF) { /* a stalled write or connect: it goes */
    s->timed_out = 1;
    luaio_conn_close(c, UV_ETIMEDOUT);
    return;
  }
  lua_State *co = waiter(L, s->reader_ref);
  if (co != NULL) {
    int anchor = s->reader_ref;
    s->reader_ref = LUA_NOREF;
    int n = luaio_pusherror(co, UV_ETIMEDOUT); /* allocates: co stays anchored meanwhile */
    luaio_unanchor(anchor);
    luaio_resume(co, n); /* the socket stays usable */
  }
}

/* --- reading ----------------------------------------------------------------------------------- */

/* Pushes n buffered bytes as a string and consumes them and `skip` more. */
static void take(lua_State *L, luaio_conn *c, size_t n, size_t skip) {
  lua_pushlstring(L, c->in->data + c->in->off, n);
  luaio_conn_consume(c, (uint32_t)(n + skip));
}

/* Pushes what a read in `mode` gets now and returns the number of values, or 0 when it has
 * to wait (s->mark is updated for the wait). At EOF or after an error, a read that cannot
 * be satisfied gets nil, err, partial (the bytes that did arrive: nothing is lost). */
static int try_read(lua_State *L, luaio_conn *c, read_mode mode, uint32_t want) {
  sock_t *s = SOCK(c);
  size_t len = c->in ? c->in->len - c->in->off : 0;
  if (mode == READ_ANY && len > 0) {
    take(L, c, len, 0);
    return 1;
  }
  if (mode == READ_EXACT && len >= want) {
    take(L, c, want, 0);
    return 1;
  }
  if (mode == READ_LINE) {
    uint32_t scanned = s->reader_ref != LUA_NOREF ? s->mark : 0; /* a wait's earlier search */
    if (len > scanned) {
      char *start = c->in->data + c->in->off;
      char *nl = memchr(start + scanned, '\n', len - scanned);
      if (nl != NULL) {
        size_t n = (size_t)(nl - start);
        size_t cr = n > 0 && start[n - 1] == '\r';
        take(L, c, n - cr, 1 + cr);
        return 1;
      }
      if (len >= c->in_max) {
        return luaio_pushnamederror(L, "ENOBUFS", "line longer than read_buffer_size");
      }
    }
    want = (uint32_t)len; /* searched so far: the next search starts there */
  }
  if (c->read_err == 0) {
    s->mark = want;
    return 0;
  }
  luaio_pusherror(L, c->read_err);
  if (len == 0) return 2;
  take(L, c, len, 0);
  return 3;
}

static void on_read(lua_State *L, luaio_conn *c) {
  (void)L;
  sock_t *s = SOCK(c);
  if (s->reader_ref == LUA_NOREF || s->mode == READ_HANDSHAKE) return; /* kept for the next read */
  lua_State *co = waiter(L, s->reader_ref);
  int n = try_read(co, c, (read_mode)s->mode, s->mark);
  if (n == 0) {
    timer_update(c); /* bytes arrived: the inactivity timeout starts again */
    return;
  }
  luaio_unanchor(s->reader_ref);
  s->reader_ref = LUA_NOREF;
  timer_update(c);
  luaio_resume(co, n);
  /* The task waits again (or ended): what it wrote in answer leaves now, not at the loop's
   * end after every other connection's turn, and its output block is free again for the
   * next connection (an echo under load held one block per connection otherwise). */
  if (c->proto == &socket_proto && !c->closing) luaio_conn_flush(c);
}

static int read_generic(lua_State *L, read_mode mode, uint32_t want, const char *what) {
  luaio_conn *c = luaio_socket_check(L, 1);
  if (c == NULL) return push_closed(L);
  sock_t *s = SOCK(c);
  if (s->reader_ref != LUA_NOREF)
    return push_busy(L, "another task is already reading this socket");
  int n = try_read(L, c, mode, want);
  if (n > 0) return n;
  luaio_checktask(L, what);
  if (mode == READ_EXACT) luaio_conn_need(c, want); /* more than read_buffer_size at once */
  luaio_conn_read_start(c);
  s->reader_ref = luaio_anchor(L);
  s->mode = (uint8_t)mode;
  timer_update(c);
  return luaio_yield(L);
}

/* socket:read([n]) -> data | nil, err[, partial]. Without n: whatever has arrived. */
static int sock_read(lua_State *L) {
  if (lua_isnoneornil(L, 2)) return read_generic(L, READ_ANY, 0, "read");
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0, 2, "must not be negative");
  luaL_argcheck(L, n <= UINT32_MAX, 2, "larger than 4 GiB");
  if (n == 0) {
    luaio_socket_check(L, 1);
    lua_pushliteral(L, "");
    return 1;
  }
  return read_generic(L, READ_EXACT, (uint32_t)n, "read");
}

/* socket:readline() -> line without "\n" or "\r\n" | nil, err[, partial] */
static int sock_readline(lua_State *L) { return read_generic(L, READ_LINE, 0, "readline"); }

/* --- writing --------------------------------------------------------------------------------------- */

static void on_drain(lua_State *L, luaio_conn *c) {
  sock_t *s = SOCK(c);
  if (s->writer_ref == LUA_NOREF || (s->shutting && c->write_err == 0)) return; /* on_shutdown */
  wake_writers(L, c, c->write_err); /* true, or the write error */
  timer_update(c);
}

/* Checks data at arg (a string or an array of at most 64 strings) before anything is
 * queued, so that a bad piece does not leave half a message behind. */
static void check_data(lua_State *L, int arg) {
  if (lua_type(L, arg) == LUA_TSTRING) return;
  luaL_argcheck(L, lua_type(L, arg) == LUA_TTABLE, arg, "string or array of strings expected");
  int count = (int)lua_objlen(L, arg);
  luaL_argcheck(L, count <= MAX_WRITE_PIECES, arg, "more than 64 pieces in one write");
  for (int i = 1; i <= count; i++) {
    lua_rawgeti(L, arg, i);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, arg, "array of strings expected");
    lua_pop(L, 1);
  }
}

/* socket:write(data) -> true | nil, err. data: a string or an array of strings. */
static int sock_write(lua_State *L) {
  luaio_conn *c = luaio_socket_check(L, 1);
  check_data(L, 2);
  if (c == NULL) return push_closed(L);
  int err = 0;
  if (lua_type(L, 2) == LUA_TSTRING) {
    err = luaio_conn_write_lua(c, L, 2);
  } else {
    int count = (int)lua_objlen(L, 2);
    for (int i = 1; i <= count && err == 0; i++) {
      lua_rawgeti(L, 2, i);
      err = luaio_conn_write_lua(c, L, -1);
      lua_pop(L, 1);
    }
  }
  if (err < 0) return luaio_pusherror(L, err);
  if (!luaio_conn_above_high(c)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  /* Far ahead of the peer: wait until it has taken half. */
  luaio_conn_flush(c);
  if (c->write_err) return luaio_pusherror(L, c->write_err);
  if (!luaio_conn_above_high(c)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  /* Its bytes are queued already: where the caller cannot wait (outside a task, inside
   * string.gsub's function), the write succeeds without waiting rather than fail with
   * bytes that will still be sent. */
  if (!luaio_canwait(L)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  sock_t *s = SOCK(c);
  if (s->writer_ref == LUA_NOREF)
    s->writer_ref = luaio_anchor(L);
  else
    add_writer(L, s); /* behind the others: its bytes are queued behind theirs */
  timer_update(c);
  return luaio_yield(L);
}

/* --- TLS and connecting ---------------------------------------------------------------------- */

/* Waits in the calling task for the TLS handshake; result_ref: what it returns (the socket
 * of a connect), or LUA_NOREF for true. */
static int wait_handshake(lua_State *L, luaio_conn *c, int result_ref) {
  sock_t *s = SOCK(c);
  s->reader_ref = luaio_anchor(L);
  s->mode = READ_HANDSHAKE;
  s->mark = result_ref;
  timer_update(c);
  return luaio_yield(L);
}

static void on_tls(lua_State *L, luaio_conn *c, int err) {
  sock_t *s = SOCK(c);
  if (s->reader_ref == LUA_NOREF || s->mode != READ_HANDSHAKE)
    return; /* failures reach readers at close */
  lua_State *co = waiter(L, s->reader_ref);
  int anchor = s->reader_ref;
  s->reader_ref = LUA_NOREF;
  s->connecting = 0;
  timer_update(c);
  int result = s->mark;
  s->mode = READ_ANY;
  if (err < 0) {
    luaio_tls_pusherror(L, c, err);
  } else if (result != LUA_NOREF) {
    lua_pushnil(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, result);
  } else {
    lua_pushnil(L);
    lua_pushboolean(L, 1);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, result);
  if (err >= 0) lua_remove(L, -2); /* the result alone */
  luaio_ready(L, co, err < 0 ? 2 : 1);
  luaio_unanchor(anchor); /* once the ready queue holds it: the pushes above allocate */
}

typedef struct {
  uv_connect_t req;
  lua_State *co;
  int co_ref, sock_ref;
  luaio_tlsctx *tls; /* a reference, or NULL */
  char servername[];
} connect_t;

static void on_connect(uv_connect_t *req, int status) {
  connect_t *k = (connect_t *)req;
  lua_State *co = k->co;
  int anchor = k->co_ref; /* released once nothing allocates before co runs again */
  luaio_conn *c = luaio_conn_of(req->handle);
  if (status == 0 && c->closing) status = UV_ECANCELED;
  if (c->closing && c->write_err < 0) status = c->write_err; /* ETIMEDOUT */
  if (status == 0) {
    luaio_conn_read_start(c);
    if (k->tls != NULL)
      status = luaio_tls_attach(c, k->tls, k->servername[0] ? k->servername : NULL);
  }
  if (k->tls != NULL) luaio_tlsctx_unref(k->tls);
  if (status < 0) {
    int n = luaio_tls_pusherror(co, c, status);
    luaio_conn_close(c, status);
    luaL_unref(co, LUA_REGISTRYINDEX, k->sock_ref);
    free(k);
    luaio_unanchor(anchor);
    luaio_resume(co, n);
    return;
  }
  if (c->tls != NULL) { /* the task goes on waiting: for the handshake */
    sock_t *s = SOCK(c);
    s->reader_ref = anchor;
    s->mode = READ_HANDSHAKE;
    s->mark = k->sock_ref;
    free(k);
    timer_update(c);
    return;
  }
  luaio_socket_connecting(c, 0);
  lua_rawgeti(co, LUA_REGISTRYINDEX, k->sock_ref);
  luaL_unref(co, LUA_REGISTRYINDEX, k->sock_ref);
  free(k);
  luaio_unanchor(anchor);
  luaio_resume(co, 1);
}

int luaio_socket_connect(lua_State *L, const char *path, const struct sockaddr *addr,
                         const luaio_sockopts *o, int nodelay, int keepalive, int keepidle,
                         luaio_tlsctx *tls, const char *servername) {
  luaio_checktask(L, "connect");
  size_t slen = servername ? strlen(servername) : 0;
  connect_t *k = calloc(1, sizeof *k + slen + 1);
  if (k == NULL) return luaio_pusherror(L, UV_ENOMEM);
  int err;
  luaio_conn *c = luaio_socket_new(L, path != NULL, o, &err);
  if (c == NULL) {
    free(k);
    return luaio_pusherror(L, err);
  }
  if (slen) memcpy(k->servername, servername, slen + 1);
  err = 0;
  if (path != NULL) {
    uv_pipe_connect(&k->req, &c->h.pipe, path, on_connect);
  } else {
    if (nodelay) uv_tcp_nodelay(&c->h.tcp, 1);
    err = uv_tcp_connect(&k->req, &c->h.tcp, addr, on_connect);
    if (err == 0 && keepalive) luaio_tcp_keepalive(&c->h.tcp, 1, keepidle);
  }
  if (err < 0) {
    free(k);
    luaio_socket_close(L, c);
    return luaio_pusherror(L, err);
  }
  if (tls != NULL) {
    k->tls = tls;
    luaio_tlsctx_ref(tls);
  }
  k->sock_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the socket userdata */
  k->co = L;
  k->co_ref = luaio_anchor(L);
  luaio_socket_connecting(c, 1);
  return luaio_yield(L);
}

/* socket:starttls(context[, servername]) -> true | nil, err: TLS from now on, as the
 * context's side (a client verifying servername, or a server); waits for the handshake.
 * (tcp.lua makes the context from the options.) */
static int sock_starttls(lua_State *L) {
  luaio_conn *c = luaio_socket_check(L, 1);
  luaio_tlsctx *ctx = luaio_tlsctx_check(L, 2);
  const char *servername = luaio_optcstring(L, 3, NULL);
  if (c == NULL) return push_closed(L);
  if (c->tls != NULL) return luaio_pushnamederror(L, "EALREADY", "the socket already speaks TLS");
  if (SOCK(c)->reader_ref != LUA_NOREF) return push_busy(L, "another task is reading this socket");
  luaio_checktask(L, "starttls");
  luaio_conn_flush(c); /* what was written before goes out in the clear, first */
  int err = luaio_tls_attach(c, ctx, servername);
  if (err < 0) return luaio_tls_pusherror(L, c, err);
  return wait_handshake(L, c, LUA_NOREF);
}

/* socket:tlsinfo() -> {version, cipher, alpn, resumed, servername, peer} | nil */
static int sock_tlsinfo(lua_State *L) {
  luaio_conn *c = luaio_socket_check(L, 1);
  luaio_tls_push_info(L, c);
  return 1;
}

/* --- shutdown, close, options ------------------------------------------------------------------------ */

static void on_shutdown(uv_shutdown_t *req, int status) {
  luaio_conn *c = req->data;
  free(req);
  if (c == NULL || luaio_conn_ud(c) == NULL || c->proto != &socket_proto)
    return; /* gone meanwhile */
  sock_t *s = SOCK(c);
  if (s->writer_ref == LUA_NOREF || !s->shutting) return;
  lua_State *co = waiter(luaio_mainstate(), s->writer_ref);
  int anchor = s->writer_ref;
  s->shutting = 0;
  s->writer_ref = LUA_NOREF;
  if (status < 0) {
    int n = luaio_pusherror(co, status); /* allocates: co stays anchored meanwhile */
    luaio_unanchor(anchor);
    luaio_resume(co, n);
    return;
  }
  luaio_unanchor(anchor);
  lua_pushboolean(co, 1);
  luaio_resume(co, 1);
}

/* socket:shutdown() -> true | nil, err: half close, after the queued writes are sent. */
static int sock_shutdown(lua_State *L) {
  luaio_conn *c = luaio_socket_check(L, 1);
  if (c == NULL) return push_closed(L);
  sock_t *s = SOCK(c);
  if (s->writer_ref != LUA_NOREF) return push_busy(L, "a write or shutdown is already waiting");
  luaio_checktask(L, "shutdown");
  uv_shutdown_t *req = malloc(sizeof *req);
  if (req == NULL) return luaio_pusherror(L, UV_ENOMEM);
  req->data = c;
  int err = luaio_conn_shutdown(c, req, on_shutdown);
  if (err < 0) {
    free(req);
    return luaio_pusherror(L, err);
  }
  s->writer_ref = luaio_anchor(L); /* waits in the writer's place: a later write fails anyway */
  s->shutting = 1;
  return luaio_yield(L);
}

/* socket:close(): what was written is still sent, then the connection closes; unread input
 * is dropped. Closing twice is harmless. */
static int sock_close(lua_State *L) {
  luaio_conn *c = luaio_socket_check(L, 1);
  if (c != NULL) luaio_socket_close(L, c);
  return 0;
}

/* socket:setTimeout(ms): waits that see no activity for ms fail with ETIMEDOUT; 0 or
 * math.huge = never. */
static int sock_settimeout(lua_State *L) {
  luaio_conn *c = luaio_socket_check(L, 1);
  uint32_t ms = luaio_ms32(luaio_checkms(L, 2, NULL));
  if (c == NULL) return push_closed(L);
  c->wait_timeout = ms;
  if (SOCK(c)->reader_ref != LUA_NOREF || SOCK(c)->writer_ref != LUA_NOREF) timer_update(c);
  lua_pushboolean(L, 1);
  return 1;
}

static int sock_address(lua_State *L, int peer) {
  luaio_conn *c = luaio_socket_check(L, 1);
  if (c == NULL) return push_closed(L);
  return luaio_conn_push_address(L, c, peer);
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
  luaio_conn *c = luaio_socket_check(L, 1);
  if (c == NULL) return push_closed(L);
  int enable = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
  return push_result(L, c->is_pipe ? UV_ENOTSUP : uv_tcp_nodelay(&c->h.tcp, enable));
}

/* socket:setKeepalive([enable = true][, idle_seconds = 0]) -> true | nil, err */
static int sock_setkeepalive(lua_State *L) {
  luaio_conn *c = luaio_socket_check(L, 1);
  if (c == NULL) return push_closed(L);
  int enable = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
  lua_Integer idle = luaL_optinteger(L, 3, 0);
  luaL_argcheck(L, idle >= 0 && idle < 1 << 20, 3, "seconds out of range");
  return push_result(L,
                     c->is_pipe ? UV_ENOTSUP : luaio_tcp_keepalive(&c->h.tcp, enable, (int)idle));
}

static int sock_gc(lua_State *L) {
  luaio_conn **box = lua_touserdata(L, 1);
  if (*box != NULL) luaio_socket_close(L, *box);
  return 0;
}

static int sock_tostring(lua_State *L) {
  luaio_conn *c = luaio_socket_check(L, 1);
  if (c == NULL)
    lua_pushliteral(L, "socket (closed)");
  else
    lua_pushfstring(L, "socket (%p)", (void *)c);
  return 1;
}

static const luaio_conn_proto socket_proto = {on_read, on_drain, on_timeout, on_close, on_tls};

/* --- handing the connection to another protocol ---------------------------------------------- */

/* A protocol that starts over a plain socket (a WebSocket client after its handshake) takes
 * the socket's connection: the socket is left closed, bytes it buffered stay in c->in. NULL
 * when the socket is closed or a task waits on it. */
luaio_conn *luaio_socket_release(lua_State *L, int idx) {
  luaio_conn *c = luaio_socket_check(L, idx);
  if (c == NULL) return NULL;
  sock_t *s = SOCK(c);
  if (s->reader_ref != LUA_NOREF || s->writer_ref != LUA_NOREF) return NULL;
  s->connecting = 0;
  luaio_conn_timeout(c, 0);
  detach(L, c, UV_ECANCELED);
  luaio_conn_set_proto(c, NULL, NULL);
  return c;
}

static const luaL_Reg sock_methods[] = {{"close", sock_close},
                                        {"localAddress", sock_localaddress},
                                        {"read", sock_read},
                                        {"readline", sock_readline},
                                        {"remoteAddress", sock_remoteaddress},
                                        {"setKeepalive", sock_setkeepalive},
                                        {"setNodelay", sock_setnodelay},
                                        {"setTimeout", sock_settimeout},
                                        {"shutdown", sock_shutdown},
                                        {"starttls", sock_starttls},
                                        {"tlsinfo", sock_tlsinfo},
                                        {"write", sock_write},
                                        {NULL, NULL}};

void luaio_socket_register(lua_State *L) {
  if (socket_type.ref != LUA_NOREF) return;
  luaio_newudtype(L, &socket_type, "luaio.socket");
  lua_newtable(L);
  luaL_setfuncs(L, sock_methods, 0);
  lua_getfield(L, -1, "shutdown");
  lua_setfield(L, -2, "end"); /* the seed's name; `end` is a keyword, so socket["end"]() */
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, sock_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, sock_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}
