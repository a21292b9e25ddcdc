/*
 * stream.c: reading, writing, timeouts and closing for connected sockets (TCP and Unix).
 *
 * Reading. libuv reads into one static 64 KiB buffer shared by every socket; bytes go
 * straight from there into the Lua string the waiting reader gets. Only bytes nobody has
 * asked for yet are copied into the socket's own buffer, which is freed as soon as it
 * drains: an idle connection holds no read buffer. Reading from the kernel stays on while
 * the buffer is below read_buffer_size (no epoll_ctl churn between requests) and stops
 * above it, so a peer that sends faster than the app reads is held back by TCP itself.
 *
 * Writing. uv_try_write first; only what the kernel did not take is queued with uv_write,
 * and only then does the task wait.
 *
 * Timeouts. One timer per socket, allocated on the first wait that needs it and running
 * only while a task waits: it measures inactivity, so bytes arriving or a write completing
 * restart it. A read that times out leaves the socket open; a write that times out closes
 * it, since a peer that has not read for that long has stalled and the queued bytes cannot
 * be taken back.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"

#define SHARED_READ_SIZE 65536
#define MAX_WRITE_BUFS 64

typedef struct {
  uv_write_t req;
  lua_State *co;
  int co_ref;
  int data_ref; /* the string or table being written: libuv points into it */
} write_t;

typedef struct {
  uv_shutdown_t req;
  lua_State *co;
  int co_ref;
} shutdown_t;

static char shared_read[SHARED_READ_SIZE];
static int socket_mt_ref = LUA_NOREF; /* the socket metatable (luaio_checkudata) */

/* --- errors ----------------------------------------------------------------------------- */

static int push_closed(lua_State *L) { return luaio_pusherror(L, UV_ENOTCONN); }

static int push_busy(lua_State *L, const char *what) {
  lua_pushnil(L);
  luaio_newerror(L, UV_EBUSY, "EBUSY", what);
  return 2;
}

/* --- the socket object ------------------------------------------------------------------ */

static void free_handle(uv_handle_t *h) { free(h); }

static void on_close(uv_handle_t *h) {
  sock_t *k = h->data;
  free(k->in);
  free(k);
}

sock_t *luaio_sock_new(lua_State *L, int is_pipe, size_t max_buffer, unsigned timeout) {
  size_t size = offsetof(sock_t, h) + (is_pipe ? sizeof(uv_pipe_t) : sizeof(uv_tcp_t));
  sock_t *k = calloc(1, size);
  if (k == NULL) luaL_error(L, "out of memory");
  if (is_pipe)
    uv_pipe_init(luaio_loop(), &k->h.pipe, 0);
  else
    uv_tcp_init(luaio_loop(), &k->h.tcp);
  k->h.handle.data = k;
  k->is_pipe = (unsigned)is_pipe;
  k->max_buffer = max_buffer > UINT32_MAX ? UINT32_MAX : (uint32_t)max_buffer;
  k->timeout = timeout;
  k->reader_ref = LUA_NOREF;
  sock_t **box = lua_newuserdata(L, sizeof *box);
  *box = k;
  k->box = box;
  lua_rawgeti(L, LUA_REGISTRYINDEX, socket_mt_ref);
  lua_setmetatable(L, -2);
  return k;
}

/* The socket at arg, or NULL when it was closed. */
sock_t *luaio_sock_check(lua_State *L, int arg) {
  sock_t **box = luaio_checkudata(L, arg, socket_mt_ref, "socket");
  return *box;
}

/* Closes the handle (and its timer); the memory goes in the close callback. Idempotent. */
void luaio_sock_close(lua_State *L, sock_t *k) {
  if (k->closing) return;
  k->closing = 1;
  if (k->box != NULL) *(sock_t **)k->box = NULL;
  k->box = NULL;
  if (k->reader != NULL) { /* a task waiting to read learns that the socket went away */
    lua_State *co = k->reader;
    k->reader = NULL;
    luaio_unanchor(k->reader_ref);
    luaio_pusherror(L, k->timed_out ? UV_ETIMEDOUT : UV_ECANCELED);
    luaio_ready(L, co, 2);
  }
  if (k->timer != NULL) uv_close((uv_handle_t *)k->timer, free_handle);
  k->timer = NULL;
  if (k->server != NULL) luaio_server_release(k->server);
  k->server = NULL;
  uv_close(&k->h.handle, on_close);
}

/* --- the shared idle timer ----------------------------------------------------------------- */

static void on_timeout(uv_timer_t *t);

static void timer_arm(sock_t *k) {
  if (k->timeout == 0) return;
  if (k->timer == NULL) {
    k->timer = malloc(sizeof *k->timer);
    if (k->timer == NULL) return; /* no timeout rather than no socket */
    uv_timer_init(luaio_loop(), k->timer);
    k->timer->data = k;
  }
  uv_update_time(luaio_loop());
  uv_timer_start(k->timer, on_timeout, k->timeout, 0);
}

/* Called whenever a wait ends: the timer runs only while somebody still waits. */
static void timer_update(sock_t *k) {
  if (k->timer == NULL) return;
  if (k->reader == NULL && k->writers == 0)
    uv_timer_stop(k->timer);
  else
    timer_arm(k);
}

static void on_timeout(uv_timer_t *t) {
  sock_t *k = t->data;
  lua_State *L = luaio_mainstate();
  k->timed_out = 1;
  if (k->writers > 0) { /* the queued writes are cancelled with the handle */
    luaio_sock_close(L, k);
    return;
  }
  if (k->reader != NULL) {
    lua_State *co = k->reader;
    k->reader = NULL;
    luaio_unanchor(k->reader_ref);
    k->timed_out = 0; /* a read timeout leaves the socket usable */
    luaio_resume(co, luaio_pusherror(co, UV_ETIMEDOUT));
  }
}

/* --- the read buffer --------------------------------------------------------------------- */

static int buf_append(sock_t *k, const char *data, size_t n) {
  rbuf_t *in = k->in;
  size_t len = in ? in->len : 0;
  if (len + n > UINT32_MAX) return UV_ENOBUFS;
  if (in != NULL && in->off > 0 && in->off + len + n > in->cap) { /* slide unread bytes down */
    memmove(in->data, in->data + in->off, len);
    in->off = 0;
  }
  if (in == NULL || in->off + len + n > in->cap) {
    size_t cap = in ? in->cap : 4096 - sizeof(rbuf_t);
    while (cap < len + n) cap *= 2;
    if (cap > UINT32_MAX) cap = UINT32_MAX;
    in = realloc(in, sizeof(rbuf_t) + cap);
    if (in == NULL) return UV_ENOMEM;
    if (k->in == NULL) in->off = in->len = 0;
    in->cap = (uint32_t)cap;
    k->in = in;
  }
  memcpy(in->data + in->off + in->len, data, n);
  in->len += (uint32_t)n;
  return 0;
}

/* Pushes n buffered bytes as a string and drops them and `skip` more; frees the buffer once
 * empty. */
static void buf_take(lua_State *L, sock_t *k, size_t n, size_t skip) {
  rbuf_t *in = k->in;
  lua_pushlstring(L, in->data + in->off, n);
  in->off += (uint32_t)(n + skip);
  in->len -= (uint32_t)(n + skip);
  if (in->len == 0) {
    free(in);
    k->in = NULL;
  }
}

/* Pushes what a read in `mode` gets now and returns the number of values, or 0 when it
 * has to wait (k->mark is updated for the wait). At EOF or after an error, a read that
 * cannot be satisfied gets nil, err, partial (the bytes that did arrive: nothing is lost). */
static int buf_read(lua_State *L, sock_t *k, read_mode mode, uint32_t want) {
  size_t len = k->in ? k->in->len : 0;
  if (mode == READ_ANY && len > 0) {
    buf_take(L, k, len, 0);
    return 1;
  }
  if (mode == READ_EXACT && len >= want) {
    buf_take(L, k, want, 0);
    return 1;
  }
  if (mode == READ_LINE) {
    uint32_t scanned = k->reader == L ? k->mark : 0;
    if (len > scanned) {
      char *start = k->in->data + k->in->off;
      char *nl = memchr(start + scanned, '\n', len - scanned);
      if (nl != NULL) {
        size_t n = (size_t)(nl - start);
        size_t cr = n > 0 && start[n - 1] == '\r';
        buf_take(L, k, n - cr, 1 + cr);
        return 1;
      }
      if (len >= k->max_buffer) {
        lua_pushnil(L);
        luaio_newerror(L, UV_ENOBUFS, "ENOBUFS", "line longer than read_buffer_size");
        return 2;
      }
    }
    want = (uint32_t)len; /* searched so far: the next search starts there */
  }
  if (k->read_status == 0) {
    k->mark = want;
    return 0;
  }
  luaio_pusherror(L, k->read_status);
  if (len == 0) return 2;
  buf_take(L, k, len, 0);
  return 3;
}

/* --- reading from the kernel --------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  buf->base = shared_read;
  buf->len = sizeof shared_read;
}

static void wake_reader(sock_t *k) {
  lua_State *co = k->reader;
  int n = buf_read(co, k, (read_mode)k->mode, k->mark);
  if (n == 0) return;
  k->reader = NULL;
  luaio_unanchor(k->reader_ref);
  timer_update(k);
  luaio_resume(co, n);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  sock_t *k = s->data;
  if (nread == 0) return; /* EAGAIN */
  if (nread < 0) {
    k->read_status = (int)nread;
    uv_read_stop(s);
    k->reading = 0;
    if (k->reader != NULL) wake_reader(k);
    return;
  }
  if (k->reader != NULL && k->mode == READ_ANY && k->in == NULL) { /* the fast path: no copy */
    lua_State *co = k->reader;
    k->reader = NULL;
    luaio_unanchor(k->reader_ref);
    lua_pushlstring(co, buf->base, (size_t)nread);
    timer_update(k);
    luaio_resume(co, 1);
    return;
  }
  if (buf_append(k, buf->base, (size_t)nread) < 0) {
    k->read_status = UV_ENOMEM;
    uv_read_stop(s);
    k->reading = 0;
  }
  if (k->reader != NULL)
    wake_reader(k);
  else if (k->in != NULL && k->in->len >= k->max_buffer && k->reading) { /* nobody reads: TCP pushes back */
    uv_read_stop(s);
    k->reading = 0;
  }
}

int luaio_sock_start(sock_t *k) {
  if (k->reading || k->read_status != 0) return 0;
  int err = uv_read_start(&k->h.stream, on_alloc, on_read);
  if (err == 0) k->reading = 1;
  return err;
}

/* Shared by read and readline: answer now from the buffer, or wait. */
static int read_generic(lua_State *L, sock_t *k, read_mode mode, uint32_t want, const char *what) {
  if (k == NULL) return push_closed(L);
  if (k->reader != NULL) return push_busy(L, "another task is already reading this socket");
  int n = buf_read(L, k, mode, want);
  if (n > 0) return n;
  luaio_checktask(L, what);
  int err = luaio_sock_start(k);
  if (err < 0) return luaio_pusherror(L, err);
  k->reader = L;
  k->reader_ref = luaio_anchor(L);
  k->mode = (uint8_t)mode;
  timer_arm(k);
  return luaio_yield(L);
}

/* socket:read([n]) -> data | nil, err[, partial]. Without n: whatever has arrived. */
static int sock_read(lua_State *L) {
  sock_t *k = luaio_sock_check(L, 1);
  if (lua_isnoneornil(L, 2)) return read_generic(L, k, READ_ANY, 0, "read");
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0, 2, "must not be negative");
  luaL_argcheck(L, n <= UINT32_MAX, 2, "larger than 4 GiB");
  if (n == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  return read_generic(L, k, READ_EXACT, (uint32_t)n, "read");
}

/* socket:readline() -> line without "\n" or "\r\n" | nil, err[, partial] */
static int sock_readline(lua_State *L) {
  sock_t *k = luaio_sock_check(L, 1);
  return read_generic(L, k, READ_LINE, 0, "readline");
}

/* --- writing ------------------------------------------------------------------------------ */

static void on_write(uv_write_t *req, int status) {
  write_t *w = (write_t *)req;
  sock_t *k = req->handle->data;
  lua_State *co = w->co;
  luaio_unanchor(w->data_ref);
  luaio_unanchor(w->co_ref);
  free(w);
  k->writers--;
  if (!k->closing) timer_update(k);
  if (status == UV_ECANCELED && k->timed_out) status = UV_ETIMEDOUT;
  if (status < 0) {
    luaio_resume(co, luaio_pusherror(co, status));
    return;
  }
  lua_pushboolean(co, 1);
  luaio_resume(co, 1);
}

/* Fills bufs from a string or an array of strings at arg; returns the count. */
static int collect_bufs(lua_State *L, int arg, uv_buf_t *bufs, size_t *total) {
  *total = 0;
  if (lua_type(L, arg) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, arg, &n);
    bufs[0] = uv_buf_init((char *)s, (unsigned)n);
    *total = n;
    return 1;
  }
  luaL_argcheck(L, lua_type(L, arg) == LUA_TTABLE, arg, "string or array of strings expected");
  int count = (int)lua_objlen(L, arg);
  luaL_argcheck(L, count <= MAX_WRITE_BUFS, arg, "more than 64 pieces in one write");
  for (int i = 0; i < count; i++) {
    lua_rawgeti(L, arg, i + 1);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, arg, "array of strings expected");
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    lua_pop(L, 1); /* the table keeps it alive */
    bufs[i] = uv_buf_init((char *)s, (unsigned)n);
    *total += n;
  }
  return count;
}

/* socket:write(data) -> true | nil, err. data: a string or an array of strings (one writev). */
static int sock_write(lua_State *L) {
  sock_t *k = luaio_sock_check(L, 1);
  uv_buf_t bufs[MAX_WRITE_BUFS];
  size_t total;
  int nbufs = collect_bufs(L, 2, bufs, &total);
  if (k == NULL) return push_closed(L);
  uv_stream_t *s = &k->h.stream;
  if (total == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  /* Try first: the kernel usually takes everything and nobody waits. */
  if (uv_stream_get_write_queue_size(s) == 0 && k->writers == 0) {
    int n = uv_try_write(s, bufs, (unsigned)nbufs);
    if (n < 0 && n != UV_EAGAIN) return luaio_pusherror(L, n);
    size_t done = n > 0 ? (size_t)n : 0;
    if (done == total) {
      lua_pushboolean(L, 1);
      return 1;
    }
    int i = 0;
    while (done >= bufs[i].len) done -= bufs[i++].len;
    bufs[i].base += done;
    bufs[i].len -= done;
    memmove(bufs, bufs + i, (size_t)(nbufs - i) * sizeof *bufs);
    nbufs -= i;
  }
  luaio_checktask(L, "write");
  if (k->writers == UINT16_MAX) return push_busy(L, "too many writes waiting on this socket");
  write_t *w = malloc(sizeof *w);
  if (w == NULL) return luaio_pusherror(L, UV_ENOMEM);
  int err = uv_write(&w->req, s, bufs, (unsigned)nbufs, on_write);
  if (err < 0) {
    free(w);
    return luaio_pusherror(L, err);
  }
  lua_pushvalue(L, 2);
  w->data_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  w->co = L;
  w->co_ref = luaio_anchor(L);
  k->writers++;
  timer_arm(k);
  return luaio_yield(L);
}

/* --- shutdown, close, options ---------------------------------------------------------------- */

static void on_shutdown(uv_shutdown_t *req, int status) {
  shutdown_t *sd = (shutdown_t *)req;
  lua_State *co = sd->co;
  luaio_unanchor(sd->co_ref);
  free(sd);
  if (status < 0) {
    luaio_resume(co, luaio_pusherror(co, status));
    return;
  }
  lua_pushboolean(co, 1);
  luaio_resume(co, 1);
}

/* socket:shutdown() -> true | nil, err: half close, after the queued writes are sent. */
static int sock_shutdown(lua_State *L) {
  sock_t *k = luaio_sock_check(L, 1);
  if (k == NULL) return push_closed(L);
  luaio_checktask(L, "shutdown");
  shutdown_t *sd = malloc(sizeof *sd);
  if (sd == NULL) return luaio_pusherror(L, UV_ENOMEM);
  int err = uv_shutdown(&sd->req, &k->h.stream, on_shutdown);
  if (err < 0) {
    free(sd);
    return luaio_pusherror(L, err);
  }
  sd->co = L;
  sd->co_ref = luaio_anchor(L);
  return luaio_yield(L);
}

/* socket:close(): closes at once; queued writes are dropped. Closing twice is harmless. */
static int sock_close(lua_State *L) {
  sock_t *k = luaio_sock_check(L, 1);
  if (k != NULL) luaio_sock_close(L, k);
  return 0;
}

/* socket:setTimeout(ms): waits that see no activity for ms fail with ETIMEDOUT; 0 = never. */
static int sock_settimeout(lua_State *L) {
  sock_t *k = luaio_sock_check(L, 1);
  lua_Number ms = luaL_checknumber(L, 2);
  luaL_argcheck(L, ms >= 0 && ms < 4294967295.0, 2, "milliseconds out of range");
  if (k == NULL) return push_closed(L);
  k->timeout = (unsigned)ms;
  if (k->timer != NULL) timer_update(k);
  lua_pushboolean(L, 1);
  return 1;
}

static int sock_gc(lua_State *L) {
  sock_t **box = lua_touserdata(L, 1);
  if (*box != NULL) {
    (*box)->box = NULL;
    luaio_sock_close(L, *box);
  }
  return 0;
}

static int sock_tostring(lua_State *L) {
  sock_t *k = luaio_sock_check(L, 1);
  if (k == NULL)
    lua_pushliteral(L, "socket (closed)");
  else
    lua_pushfstring(L, "socket (%p)", (void *)k);
  return 1;
}

static const luaL_Reg sock_methods[] = {
  {"close", sock_close}, {"read", sock_read},       {"readline", sock_readline},
  {"setTimeout", sock_settimeout}, {"shutdown", sock_shutdown}, {"write", sock_write},
  {NULL, NULL}};

/* Creates the socket metatable: the methods above plus tcp.c's `extra`. */
void luaio_stream_register(lua_State *L, const luaL_Reg *extra) {
  if (!luaL_newmetatable(L, SOCKET_MT)) {
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, -1);
  socket_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  luaL_setfuncs(L, sock_methods, 0);
  luaL_setfuncs(L, extra, 0);
  lua_getfield(L, -1, "shutdown");
  lua_setfield(L, -2, "end"); /* the seed's name; `end` is a keyword, so socket["end"]() */
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, sock_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, sock_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}
