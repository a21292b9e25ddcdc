/*
 * http_conn.c: an HTTP/1.1 connection, a protocol on the connection core.
 *
 * The request loop lives in C; Lua runs only the app's handler. A connection between
 * requests holds no task and no buffer: a connection core and this state, until bytes
 * arrive. Then the parser (http_parser.c) finds the request in the core's input buffer, in
 * place, and a worker task from a small pool runs handler(req, res). When the handler
 * ends, the same worker takes the next request already buffered (pipelining) without a
 * resume, or goes back to the pool.
 *
 * One request at a time per connection, answered in order. Between requests:
 *   - a body the handler did not read is read and dropped (H_DISCARD), never parsed as
 *     the next request;
 *   - while the output is above the high-water mark (write_buffer_size), nothing more is
 *     read or run (H_DRAIN_WAIT): a client that pipelines and never reads costs a bounded
 *     amount of memory;
 *   - a connection that ends (Connection: close, an error, the server closing) ends only
 *     once its output is written: a read EOF or a timer never cuts a response short.
 *
 * Timeouts use the core's one deadline per connection: the header timeout from the first
 * byte of a head, the keep-alive timeout while idle, the body timeout while a handler
 * waits for body bytes; the core's send timeout while output waits for a client that
 * does not read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "socket.h"
#include "tls.h"

#define POOL_MAX 256   /* idle worker tasks kept */
#define LINGER_MS 2000 /* how long an ending connection reads what the client still sends */
#define GRACE_MS                                                                                   \
  500 /* while the server closes: how long an idle connection may
                               * still bring a request (answered with Connection: close) */

static int worker_ref = LUA_NOREF; /* the Lua worker loop (http.lua) */
static int pool_ref = LUA_NOREF;   /* registry table: array of idle worker coroutines */
static int pool_size;
static struct lhttp_header headers[HTTP_MAX_HEADERS];
static char *path_buf; /* the percent-decoded path of the request being parsed */
static size_t path_cap;

/* --- the connection's life ------------------------------------------------------------------ */

static void unlink_conn(hconn_t *h) {
  if (h->prev)
    h->prev->next = h->next;
  else if (h->server->conns == h)
    h->server->conns = h->next;
  if (h->next) h->next->prev = h->prev;
  h->prev = h->next = NULL;
}

void http_conn_end(luaio_conn *c) {
  hconn_t *h = HCONN(c);
  if (h->state == H_CLOSED) return;
  h->state = H_CLOSED;
  unlink_conn(h);
  /* Linger when the client may still be sending (a pipelined request, the body we did
   * not read): it then reads our answer instead of a reset. */
  luaio_conn_end(c, c->read_err == 0 ? LINGER_MS : 0);
}

/* Idle: the keep-alive timeout runs (or, while the server closes, a short grace). */
static void go_idle(luaio_conn *c) {
  hconn_t *h = HCONN(c);
  hserver_t *s = h->server;
  h->state = H_IDLE;
  if (c->read_err != 0) { /* the client has closed its side: nothing more will come */
    http_conn_end(c);
    return;
  }
  uint32_t ms = s->closing ? (s->keepalive_timeout < GRACE_MS ? s->keepalive_timeout : GRACE_MS)
                           : s->keepalive_timeout;
  luaio_conn_timeout(c, ms);
  luaio_conn_read_start(c);
}

void http_conn_closing(luaio_conn *c) {
  hconn_t *h = HCONN(c);
  if (h->state == H_IDLE) go_idle(c); /* the grace instead of the keep-alive timeout */
  if (h->res != NULL && !h->res->head_sent) h->res->keep_alive = 0;
}

/* --- requests ----------------------------------------------------------------------------------- */

/* The path of a target, percent-decoded into path_buf; NULL for a bad escape or a NUL. */
static const char *decode_path(const char *p, size_t n, size_t *out) {
  if (memchr(p, '%', n) == NULL) {
    *out = n;
    return p;
  }
  if (n > path_cap) {
    char *b = realloc(path_buf, n);
    if (b == NULL) return NULL;
    path_buf = b;
    path_cap = n;
  }
  ssize_t len = lhttp_decode_path(path_buf, p, n);
  if (len < 0) return NULL;
  *out = (size_t)len;
  return path_buf;
}

/* A header name longer than a response's may be (255 bytes): req.headers would cut it,
 * and two names that differ after it would merge. */
static int long_name(size_t nhdr) {
  for (size_t i = 0; i < nhdr; i++)
    if (headers[i].name_len > 255) return 1;
  return 0;
}

/* The length of the target in a request line that ends at eol (an estimate: the bytes
 * between its first and last space), for the answer to a head that fills the buffer. */
static size_t target_length(const char *line, const char *eol) {
  const char *first = memchr(line, ' ', (size_t)(eol - line)), *last = eol;
  if (first == NULL) return 0;
  while (last > first && *last != ' ') last--;
  return last > first ? (size_t)(last - first - 1) : 0;
}

int http_start_request(lua_State *L, luaio_conn *c) {
  hconn_t *h = HCONN(c);
  hserver_t *s = h->server;
  luaio_inbuf *in = c->in;
  if (h->state == H_CLOSED || c->closing || in == NULL || in->len == in->off) return 0;
  const char *buf = in->data + in->off;
  size_t len = in->len - in->off;
  const char *method, *target;
  size_t method_len, target_len, nhdr = s->max_headers;
  int minor;
  int n = lhttp_parse_request(buf, len, &method, &method_len, &target, &target_len, &minor, headers,
                              &nhdr, h->last_len);
  if (n == LHTTP_INCOMPLETE) {
    h->last_len = (uint32_t)len;
    if (len >= s->max_header_size) { /* 414 when the target is what is too long */
      const char *eol = memchr(buf, '\n', len);
      http_reply_error(L, c,
                       (eol == NULL ? len : target_length(buf, eol)) > s->max_url ? 414 : 431);
    } else if (h->state != H_HEAD) {
      h->state = H_HEAD; /* the header timeout runs from the first byte, not the last */
      luaio_conn_timeout(c, s->header_timeout);
    }
    return 0;
  }
  h->last_len = 0;
  int status = 0;
  struct lhttp_target t;
  struct lhttp_framing f;
  const char *path = NULL;
  size_t path_len = 0;
  if (n == LHTTP_TOO_MANY_HEADERS)
    status = 431;
  else if (n < 0)
    status = 400;
  else if (target_len > s->max_url) /* before the head's size: as when it comes in pieces */
    status = 414;
  else if ((size_t)n > s->max_header_size || long_name(nhdr))
    status = 431;
  else if (lhttp_parse_target(target, target_len, &t) != 0 ||
           (t.form == LHTTP_TARGET_ASTERISK &&
            !(method_len == 7 && memcmp(method, "OPTIONS", 7) == 0)))
    status = 400;
  else if ((status = lhttp_request_framing(headers, nhdr, minor, &f)) != 0)
    status = status == LHTTP_UNSUPPORTED ? 501 : 400;
  else if (f.flags & LHTTP_EXPECT_OTHER)
    status = 417;
  else if (f.body == LHTTP_BODY_LENGTH && f.content_length > s->max_body_size)
    status = 413;
  else if ((path = decode_path(t.path, t.path_len, &path_len)) == NULL)
    status = 400;
  if (status) {
    http_reply_error(L, c, status);
    return 0;
  }
  /* The body's framing state is the connection's, from here until the body is consumed. */
  h->body_kind = (uint8_t)f.body;
  h->body_left = f.body == LHTTP_BODY_LENGTH ? f.content_length : 0;
  h->body_end = f.body == LHTTP_BODY_NONE || (f.body == LHTTP_BODY_LENGTH && f.content_length == 0);
  h->body_taken = h->discarded = 0;
  h->body_status = 0;
  h->ready = 0;
  memset(&h->dec, 0, sizeof h->dec);
  h->expect_continue = (f.flags & LHTTP_EXPECT_CONTINUE) != 0;
  h->head_len = (uint32_t)n;
  luaio_conn_keep(c, (uint32_t)n); /* the head stays while the request is served (req.headers) */
  /* A chunked body already here is checked now: broken framing is answered with 400,
   * whatever the handler would do. */
  if (h->body_kind == LHTTP_BODY_CHUNKED && http_body_ready(c) < 0) {
    http_reply_error(L, c, 400);
    return 0;
  }
  h->state = H_REQUEST;
  luaio_conn_timeout(c, 0);
  int keep = f.keep_alive && ++h->requests < s->max_requests && !s->closing;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->handler_ref);
  h->res = http_res_new(L, c, minor, method_len == 4 && memcmp(method, "HEAD", 4) == 0, keep);
  http_push_request(L, method, method_len, target, target_len, &t, path, path_len, minor);
  /* res's environment is its request, for res:sendFile and the access log (a weak table
   * would not do: req refers to res, and Lua 5.1 weak tables are not ephemerons). */
  lua_pushvalue(L, -1);
  lua_setfenv(L, -3);
  lua_insert(L, -2); /* handler, req, res */
  return 1;
}

/* Runs handler, req, res (on top of L) in a worker: one from the pool, or a new one. */
static void dispatch(lua_State *L) {
  lua_State *co;
  if (pool_size > 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, pool_ref);
    lua_rawgeti(L, -1, pool_size);
    co = lua_tothread(L, -1);
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_rawseti(L, -2, pool_size--);
    lua_pop(L, 1);
    lua_xmove(L, co, 3);
    luaio_resume(co, 3);
    return;
  }
  co = lua_newthread(L); /* stays on L's stack while it runs: the GC sees it */
  lua_insert(L, -4);
  lua_rawgeti(co, LUA_REGISTRYINDEX, worker_ref);
  lua_xmove(L, co, 3);
  luaio_resume(co, 3);
  lua_pop(L, 1);
}

/* Starts the next request if a whole one is buffered; else waits in the state it is in. */
static void advance(lua_State *L, luaio_conn *c) {
  if (http_start_request(L, c)) {
    dispatch(L);
    return;
  }
  hconn_t *h = HCONN(c);
  if (h->state == H_IDLE && c->read_err != 0)
    http_conn_end(c); /* EOF between requests */
  else if (h->state == H_HEAD && c->read_err != 0)
    http_conn_end(c); /* EOF mid-head */
}

/* After a request: drop the rest of its body, wait for the output to drain, then take the
 * next request. Returns 1 with handler, req, res pushed when the next one can start now. */
static int next_request(lua_State *L, luaio_conn *c) {
  hconn_t *h = HCONN(c);
  if (h->state == H_CLOSED || c->closing) return 0;
  if (!BODY_CONSUMED(h)) {
    int done = http_body_discard(c);
    if (done < 0) {
      http_conn_end(c);
      return 0;
    }
    if (!done) {
      h->state = H_DISCARD;
      luaio_conn_timeout(c, h->server->body_timeout);
      luaio_conn_read_start(c);
      return 0;
    }
  }
  if (luaio_conn_above_high(c)) { /* far ahead of the client: read and run nothing more */
    h->state = H_DRAIN_WAIT;
    luaio_conn_read_stop(c);
    return 0;
  }
  h->state = H_IDLE;
  if (http_start_request(L, c)) return 1;
  if (h->state == H_IDLE) go_idle(c);
  return 0;
}

int http_body_keeps(luaio_conn *c) {
  hconn_t *h = HCONN(c);
  if (BODY_CONSUMED(h)) return 1;
  /* A body nobody read: worth reading and dropping only when it is small, and only when
   * the client was not left waiting for a 100 Continue it will never get (unless it sent
   * the whole body anyway: then it is here, and dropped as nginx does). */
  if (h->expect_continue) return http_body_arrived(c);
  if (h->body_kind == LHTTP_BODY_LENGTH) return h->body_left <= DISCARD_MAX;
  return h->body_taken <= h->server->max_body_size;
}

/* Whether the connection can carry another request after r's. */
static int reusable(luaio_conn *c, hres_t *r) {
  if (!r->keep_alive || r->aborted || c->write_err) return 0;
  return http_body_keeps(c);
}

/* C.done(res, ok, err) -> handler, req, res for the next request on this connection, or
 * waits in the pool until another connection needs a worker (or returns nothing when the
 * pool is full: the worker ends). */
int http_done(lua_State *L) {
  hres_t *r = http_check_res(L, 1);
  int ok = lua_toboolean(L, 2);
  luaio_conn *c = r->conn;
  if (!ok) {
    fprintf(stderr, "luaio: error in request handler: %s\n", luaL_optstring(L, 3, "?"));
    fflush(stderr);
  }
  if (r->takeover_end != NULL) { /* what took the connection over lives as long as the handler */
    lua_getfenv(L, 1);
    lua_rawgeti(L, -1, 2);
    if (!lua_isnil(L, -1)) r->takeover_end(L, lua_gettop(L));
  }
  if (c != NULL) {
    http_res_end(L, r, ok);
    lua_getfenv(L, 1);
    http_access_log(L, c, lua_gettop(L), r->status, r->bytes_sent);
    int keep = reusable(c, r);
    http_res_detach(L, r, UV_ECANCELED);
    luaio_conn_unkeep(c); /* the head is not needed any more */
    lua_settop(L, 0);
    if (!keep) {
      http_conn_end(c);
    } else if (next_request(L, c)) {
      return 3; /* pipelined: the next request was here already */
    } else {
      /* Nothing more to answer here now: the response leaves at once, not at the loop's
       * end after the handlers of every other connection read in this iteration (under
       * load that made the latency tail one batch longer than nginx's). Pipelined
       * responses still leave together: this runs after the last of them. */
      luaio_conn_flush(c);
    }
  }
  if (pool_size >= POOL_MAX) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, pool_ref);
  lua_pushthread(L);
  lua_rawseti(L, -2, ++pool_size);
  lua_settop(L, 0);
  return luaio_yield(L); /* parked in the pool; resumed with the next handler, req, res */
}

/* --- the core's callbacks -------------------------------------------------------------------- */

/* Resumes the task waiting in *co (anchored by *ref) with the n values pushed by push.
 * The anchor goes only once the task runs: pushing may allocate, and a garbage collection
 * then must not find the waiting coroutine unreferenced. */
static void resume_waiter(lua_State **co, int *ref, int (*push)(lua_State *co)) {
  lua_State *t = *co;
  int anchor = *ref;
  *co = NULL;
  *ref = LUA_NOREF;
  luaio_resume(t, push(t));
  luaio_unanchor(anchor);
}

static int
push_false(lua_State *co) { /* false: read again, there is something new (http.lua loops) */
  lua_pushboolean(co, 0);
  return 1;
}

static int push_true(lua_State *co) {
  lua_pushboolean(co, 1);
  return 1;
}

static int push_timeout(lua_State *co) { return luaio_pusherror(co, UV_ETIMEDOUT); }

static void wake_reader(hres_t *r) { resume_waiter(&r->reader, &r->reader_ref, push_false); }

static void on_read(lua_State *L, luaio_conn *c) {
  hconn_t *h = HCONN(c);
  switch (h->state) {
    case H_REQUEST:
      if (h->res != NULL && h->res->reader != NULL) {
        luaio_conn_timeout(c, 0);
        wake_reader(h->res);
      }
      return; /* else kept: reading pauses when the buffer is full */
    case H_DISCARD: {
      int done = http_body_discard(c);
      if (done < 0 || (done == 0 && c->read_err != 0)) {
        http_conn_end(c);
      } else if (done) {
        h->state = H_IDLE;
        luaio_conn_timeout(c, 0);
        if (luaio_conn_above_high(c)) {
          h->state = H_DRAIN_WAIT;
          luaio_conn_read_stop(c);
        } else {
          advance(L, c);
          if (h->state == H_IDLE && !c->closing) go_idle(c);
        }
      }
      return;
    }
    case H_IDLE:
    case H_HEAD: advance(L, c); return;
    default: return;
  }
}

static void on_drain(lua_State *L, luaio_conn *c) {
  hconn_t *h = HCONN(c);
  if (c->write_err) { /* the client is gone: so is this connection */
    h->state = H_CLOSED;
    unlink_conn(h);
    luaio_conn_close(c, c->write_err);
    return;
  }
  if (h->res != NULL && h->res->writer != NULL) {
    resume_waiter(&h->res->writer, &h->res->writer_ref, push_true);
    return;
  }
  if (h->state == H_DRAIN_WAIT && !luaio_conn_above_high(c)) {
    h->state = H_IDLE;
    advance(L, c);
    if (h->state == H_IDLE && !c->closing) go_idle(c);
  }
}

static void on_timeout(lua_State *L, luaio_conn *c) {
  hconn_t *h = HCONN(c);
  switch (h->state) {
    case H_HEAD: http_reply_error(L, c, 408); return;
    case H_REQUEST: { /* the handler waited too long for body bytes */
      hres_t *r = h->res;
      if (r == NULL || r->reader == NULL) return;
      h->body_status = 408;
      resume_waiter(&r->reader, &r->reader_ref, push_timeout);
      return;
    }
    default: /* idle keep-alive, a grace period, or a discarded body that stopped coming */
      h->state = H_CLOSED;
      unlink_conn(h);
      luaio_conn_end(c, 0); /* with TLS, close_notify first: a clean end, not a cut */
      return;
  }
}

static void on_close(lua_State *L, luaio_conn *c, int err) {
  hconn_t *h = HCONN(c);
  if (h->res != NULL) http_res_detach(L, h->res, err ? err : UV_ECANCELED);
  if (h->state != H_CLOSED) unlink_conn(h);
  h->state = H_CLOSED;
}

const luaio_conn_proto http_proto = {on_read, on_drain, on_timeout, on_close, NULL};

/* --- accepting ------------------------------------------------------------------------------------ */

/* A new connection: from the listener (fd < 0) or an fd accepted by hand (the backlog
 * drained by server:close()). */
void http_accept(hserver_t *s, uv_stream_t *listener, int fd) {
  luaio_conn *c;
  if (fd < 0) {
    c = luaio_conn_accept(&s->base, sizeof(hconn_t));
  } else {
    int err;
    c = luaio_conn_new(0, sizeof(hconn_t), &err);
    if (c != NULL && uv_tcp_open(&c->h.tcp, fd) != 0) {
      luaio_conn_close(c, UV_EBADF);
      c = NULL;
    }
    if (c == NULL) {
      close(fd);
      return;
    }
    s->base.connections++;
    c->server = &s->base;
  }
  (void)listener;
  if (c == NULL) return;
  hconn_t *h = HCONN(c);
  h->conn = c;
  h->server = s;
  h->next = s->conns;
  if (s->conns) s->conns->prev = h;
  s->conns = h;
  c->in_max = s->max_header_size + LUAIO_BLOCK;
  c->high_water = s->write_buffer;
  c->send_timeout = s->send_timeout;
  luaio_conn_set_proto(c, &http_proto, h);
  if (s->base.tls != NULL && luaio_tls_attach(c, s->base.tls, NULL) < 0) {
    h->state = H_CLOSED;
    unlink_conn(h);
    luaio_conn_close(c, UV_ENOMEM);
    return;
  }
  go_idle(c); /* a client that connects and says nothing gets the idle timeout (the
               * handshake included) */
}

/* --- the worker pool -------------------------------------------------------------------------------- */

void http_init_workers(lua_State *L) {
  lua_pushvalue(L, 1);
  worker_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  pool_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}
