/*
 * http.c: the HTTP/1.1 server. The C half of stdlib/http.lua.
 *
 * The request loop lives in C; Lua runs only the app's handler. A connection between
 * requests holds no task and no buffer: it is a uv_tcp_t and a few counters, parked in C
 * until bytes arrive. Then libuv reads straight into the connection's input block, the
 * parser (http_parser.c) finds the request in place, and a worker task from a small pool
 * runs handler(req, res). When the handler ends, the same worker takes the next request
 * already in the buffer (pipelining) without a resume, or goes back to the pool.
 *
 * Responses are built in the connection's output block and written when the handler ends,
 * so a pipelined batch of requests is answered with one write. A finish() with nothing else
 * waiting in the input is written at once.
 *
 * Timeouts (header, body, keep-alive idle, lingering close) use one timer per server and a
 * list per kind: every connection on a list has the same timeout, so the lists are in
 * deadline order and a sweep only looks at their heads.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http_parser.h"
#include "luaio.h"

#define SERVER_MT "luaio.http.server"
#define RES_MT "luaio.http.response"
#define REQ_MT "luaio.http.request"
#define BLOCK_SIZE 16384
#define MAX_HEADERS 128
#define POOL_MAX 256  /* idle worker tasks kept */
#define BLOCKS_MAX 64 /* free 16 KiB blocks kept */
#define LINGER_MS 2000
#define FLUSH_AT 65536        /* output bytes that make a write() flush at once */
#define WAIT_DRAIN_AT 1048576 /* queued output that makes a write() wait */

typedef struct hconn_s hconn_t;
typedef struct hserver_s hserver_t;
typedef struct hres_s hres_t;

typedef struct {
  hconn_t *head, *tail;
  uint32_t timeout; /* ms; 0 = this kind of wait never times out */
} hlist_t;

enum { L_HEAD, L_IDLE, L_BODY, L_LINGER, L_COUNT };

struct hserver_s {
  uv_tcp_t tcp;
  uv_timer_t sweep;
  hlist_t lists[L_COUNT];
  hserver_t **box;
  int handler_ref, self_ref, access_ref; /* access_ref: the access-log hook, or LUA_NOREF */
  uint32_t max_header_size, max_headers, max_url, max_requests;
  uint64_t max_body_size;
  int connections, max_connections;
  char server_header[80]; /* "Server: luaio\r\n", or "" */
  int closing, closed_handles;
};

struct hconn_s {
  hconn_t *prev, *next;
  hlist_t *list; /* the timeout list it is on, or NULL */
  hserver_t *server;
  hres_t *res; /* the request being served, or NULL */
  char *in;    /* received bytes in_off..in_len; NULL while there are none */
  uint32_t in_off, in_len, in_cap;
  uint32_t last_len; /* bytes of the pending head already searched */
  char *out;         /* responses not yet written */
  uint32_t out_len, out_cap;
  uint32_t requests, writes;
  uint64_t deadline;
  uint8_t closing, done_after_write, reading, eof;
  uv_tcp_t tcp;
};

/* The response object (a Lua userdata) and the state of its request's body. */
#define HDR_SMALL 256 /* a response's header buffer; most need one, kept in a free list */
#define HDRS_MAX 64

struct hres_s {
  hconn_t *conn; /* NULL once the connection is gone or the request is over */
  char *hdr;     /* headers set by the app: "Name: value\r\n" lines (hdr_get), or NULL */
  uint32_t hdr_len, hdr_cap;
  lua_State *reader, *writer; /* a task waiting for body bytes / for output to drain */
  int reader_ref, writer_ref;
  struct lhttp_chunked_decoder dec;
  uint64_t body_left;  /* LENGTH: bytes not yet taken */
  uint64_t body_taken; /* bytes handed to Lua */
  uint64_t content_length;
  uint64_t bytes_sent; /* body bytes, for the access log */
  uint32_t head_off, head_len; /* the request head in conn->in, for req.headers */
  uint32_t ready; /* chunked: decoded bytes waiting at in + in_off */
  uint16_t status, error_status;
  uint8_t body_kind, minor;
  unsigned head_sent : 1, finished : 1, chunked : 1, head_method : 1, keep_alive : 1,
    has_length : 1, user_server : 1, user_date : 1, expect_continue : 1, body_done : 1;
};

static int worker_ref = LUA_NOREF; /* the Lua worker loop (http.lua) */
static int pool_ref = LUA_NOREF;   /* registry table: array of idle worker coroutines */
static int pool_size;
static char *blocks[BLOCKS_MAX];
static int nblocks;

static void conn_close(hconn_t *c);
static void conn_advance(hconn_t *c);
static void flush(hconn_t *c);

/* --- buffers -------------------------------------------------------------------------- */

static char *block_get(void) { return nblocks > 0 ? blocks[--nblocks] : malloc(BLOCK_SIZE); }

static void block_put(char *b, uint32_t cap) {
  if (cap == BLOCK_SIZE && nblocks < BLOCKS_MAX)
    blocks[nblocks++] = b;
  else
    free(b);
}

/* Makes room for n more output bytes; returns where to write them, or NULL. */
static char *out_reserve(hconn_t *c, size_t n) {
  if (c->out == NULL) {
    c->out_cap = n <= BLOCK_SIZE ? BLOCK_SIZE : (uint32_t)n;
    c->out = n <= BLOCK_SIZE ? block_get() : malloc(n);
    c->out_len = 0;
    if (c->out == NULL) return NULL;
  }
  if (c->out_len + n > c->out_cap) {
    size_t cap = (size_t)c->out_cap * 2;
    while (cap < c->out_len + n) cap *= 2;
    if (cap > UINT32_MAX) return NULL;
    char *p = c->out_cap == BLOCK_SIZE ? malloc(cap) : realloc(c->out, cap);
    if (p == NULL) return NULL;
    if (c->out_cap == BLOCK_SIZE) {
      memcpy(p, c->out, c->out_len);
      block_put(c->out, BLOCK_SIZE);
    }
    c->out = p;
    c->out_cap = (uint32_t)cap;
  }
  return c->out + c->out_len;
}

static void out_add(hconn_t *c, const char *s, size_t n) {
  char *p = out_reserve(c, n);
  if (p == NULL) {
    c->done_after_write = 1; /* out of memory: this connection gives up */
    return;
  }
  memcpy(p, s, n);
  c->out_len += (uint32_t)n;
}

static char *hdrs[HDRS_MAX]; /* free response header buffers */
static int nhdrs;

static void hdr_release(hres_t *r) {
  if (r->hdr == NULL) return;
  if (r->hdr_cap == HDR_SMALL && nhdrs < HDRS_MAX)
    hdrs[nhdrs++] = r->hdr;
  else
    free(r->hdr);
  r->hdr = NULL;
  r->hdr_len = r->hdr_cap = 0;
}

/* --- the Date header, formatted once a second --------------------------------------------- */

static char date_line[64];
static size_t date_len;
static time_t date_sec = -1;

static void date_update(void) {
  time_t now = time(NULL);
  if (now == date_sec) return;
  date_sec = now;
  struct tm tm;
  gmtime_r(&now, &tm);
  date_len = strftime(date_line, sizeof date_line, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
}

static const char *reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 411: return "Length Required";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 416: return "Range Not Satisfiable";
  case 417: return "Expectation Failed";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  default: return "Unknown";
  }
}

/* --- timeout lists ---------------------------------------------------------------------------- */

static void list_remove(hconn_t *c) {
  hlist_t *l = c->list;
  if (l == NULL) return;
  if (c->prev) c->prev->next = c->next; else l->head = c->next;
  if (c->next) c->next->prev = c->prev; else l->tail = c->prev;
  c->prev = c->next = NULL;
  c->list = NULL;
}

/* Puts c at the end of list kind (its deadline is now + the list's timeout). */
static void list_add(hconn_t *c, int kind) {
  list_remove(c);
  hlist_t *l = &c->server->lists[kind];
  if (l->timeout == 0) return;
  c->deadline = uv_now(luaio_loop()) + l->timeout;
  c->list = l;
  c->prev = l->tail;
  if (l->tail) l->tail->next = c; else l->head = c;
  l->tail = c;
}

/* --- writing ------------------------------------------------------------------------------------- */

typedef struct {
  uv_write_t req;
  char *buf;
  uint32_t cap;
} hwrite_t;

static void wake_writer(hres_t *r, int err) {
  lua_State *co = r->writer;
  if (co == NULL) return;
  r->writer = NULL;
  luaio_unanchor(r->writer_ref);
  if (err < 0)
    luaio_resume(co, luaio_pusherror(co, err));
  else {
    lua_pushboolean(co, 1);
    luaio_resume(co, 1);
  }
}

static void on_shutdown(uv_shutdown_t *req, int status) { free(req); }

/* Ends a connection whose last response is written: a lingering close when the client may
 * still be sending (so it reads our answer instead of a reset), else a plain close. */
static void finish_connection(hconn_t *c) {
  if (c->in_len > c->in_off || (c->res == NULL && !c->eof)) {
    uv_shutdown_t *sd = malloc(sizeof *sd);
    if (sd != NULL && uv_shutdown(sd, (uv_stream_t *)&c->tcp, on_shutdown) == 0) {
      c->in_off = c->in_len = 0;
      list_add(c, L_LINGER);
      if (c->list != NULL) return;
    } else {
      free(sd);
    }
  }
  conn_close(c);
}

static void on_write(uv_write_t *req, int status) {
  hwrite_t *w = (hwrite_t *)req;
  hconn_t *c = req->handle->data;
  block_put(w->buf, w->cap);
  free(w);
  c->writes--;
  if (c->closing) return;
  if (status < 0) {
    if (c->res) wake_writer(c->res, status);
    conn_close(c);
    return;
  }
  if (c->res && c->res->writer && uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < WAIT_DRAIN_AT)
    wake_writer(c->res, 0);
  if (c->writes == 0 && c->done_after_write && c->res == NULL) finish_connection(c);
}

/* Writes the output block: try first, queue what the kernel did not take. */
static void flush(hconn_t *c) {
  if (c->out_len == 0 || c->closing) return;
  uv_buf_t buf = uv_buf_init(c->out, c->out_len);
  if (c->writes == 0) {
    int n = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
    if (n == (int)c->out_len) {
      c->out_len = 0;
      return;
    }
    if (n < 0 && n != UV_EAGAIN) {
      conn_close(c);
      return;
    }
    if (n > 0) buf = uv_buf_init(c->out + n, c->out_len - (unsigned)n);
  }
  hwrite_t *w = malloc(sizeof *w);
  if (w == NULL || uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write) < 0) {
    free(w);
    conn_close(c);
    return;
  }
  w->buf = c->out; /* the block goes with the write; the next response gets another */
  w->cap = c->out_cap;
  c->out = NULL;
  c->out_len = c->out_cap = 0;
  c->writes++;
}

/* A canned error response, then the connection ends. For errors before a handler runs. */
static void reply_error(hconn_t *c, int status) {
  char head[256];
  const char *text = reason(status);
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\n%sContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n%s\n",
                   status, text, c->server->server_header, strlen(text) + 1, text);
  out_add(c, head, (size_t)n);
  c->done_after_write = 1;
  list_remove(c);
  flush(c);
  if (!c->closing && c->writes == 0) finish_connection(c);
}

/* --- connections ------------------------------------------------------------------------------ */

static void server_maybe_free(hserver_t *s) {
  if (s->closed_handles < 2 || s->connections > 0) return;
  if (s->box != NULL) *s->box = NULL;
  luaL_unref(luaio_mainstate(), LUA_REGISTRYINDEX, s->handler_ref); /* no request can start now */
  free(s);
}

static void on_conn_close(uv_handle_t *h) {
  hconn_t *c = h->data;
  hserver_t *s = c->server;
  if (c->in) block_put(c->in, c->in_cap);
  if (c->out) block_put(c->out, c->out_cap);
  free(c);
  s->connections--;
  server_maybe_free(s);
}

static void res_detach(hres_t *r, int err);

static void conn_close(hconn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  list_remove(c);
  if (c->res != NULL) res_detach(c->res, UV_ECANCELED);
  uv_close((uv_handle_t *)&c->tcp, on_conn_close);
}

/* --- reading ----------------------------------------------------------------------------------- */

/* Slides what is still needed to the front of the input block: the head of the request
 * being served (req.headers is parsed from it on first use) and the unread bytes. */
static void in_compact(hconn_t *c) {
  uint32_t unread = c->in_len - c->in_off, keep = 0;
  hres_t *r = c->res;
  if (r != NULL && r->head_off > 0) {
    memmove(c->in, c->in + r->head_off, r->head_len);
    r->head_off = 0;
  }
  if (r != NULL) keep = r->head_len;
  if (keep == c->in_off) return;
  memmove(c->in + keep, c->in + c->in_off, unread);
  c->in_off = keep;
  c->in_len = keep + unread;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  hconn_t *c = h->data;
  if (c->in == NULL) {
    c->in = block_get();
    c->in_cap = c->in ? BLOCK_SIZE : 0;
    c->in_off = c->in_len = 0;
  } else if (c->in_len == c->in_cap || (c->in_off == c->in_len && c->res == NULL)) {
    in_compact(c);
  }
  *buf = uv_buf_init(c->in ? c->in + c->in_len : NULL, c->in ? c->in_cap - c->in_len : 0);
}

static void read_stop(hconn_t *c) {
  if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

static void read_start(hconn_t *c);

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  hconn_t *c = stream->data;
  if (nread == 0) return;
  if (nread == UV_ENOBUFS) { /* the input block is full: wait until the app reads */
    read_stop(c);
    return;
  }
  if (nread < 0) {
    c->eof = 1;
    read_stop(c);
    if (c->list == &c->server->lists[L_LINGER] || c->res == NULL) {
      conn_close(c);
      return;
    }
    conn_advance(c); /* a handler waiting for body bytes learns of the end */
    return;
  }
  c->in_len += (uint32_t)nread;
  if (c->list == &c->server->lists[L_LINGER]) {
    c->in_off = c->in_len = 0; /* lingering: read and forget */
    return;
  }
  conn_advance(c);
}

static void read_start(hconn_t *c) {
  if (c->reading || c->eof || c->closing) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
}

/* Parks an idle connection: no buffers, no task, the keep-alive timeout running. */
static void conn_park(hconn_t *c) {
  if (c->in_off == c->in_len && c->in != NULL) {
    block_put(c->in, c->in_cap);
    c->in = NULL;
    c->in_off = c->in_len = c->in_cap = 0;
  }
  if (c->out_len == 0 && c->out != NULL) {
    block_put(c->out, c->out_cap);
    c->out = NULL;
    c->out_cap = 0;
  }
  list_add(c, c->in_len > c->in_off ? L_HEAD : L_IDLE);
  read_start(c);
}

/* --- requests ----------------------------------------------------------------------------------- */

static int req_mt_ref = LUA_NOREF; /* the request metatable */
static int res_mt_ref = LUA_NOREF; /* the response metatable, for a check without a name lookup */

static hres_t *check_res(lua_State *L, int arg) {
  return luaio_checkudata(L, arg, res_mt_ref, "http response");
}

/* Pushes the request table: method, url, path, httpVersion; headers and query are made on
 * first use (req_index): headers from the head, still in the connection's input block. */
static void push_request(lua_State *L, const char *method, size_t mlen, const char *path,
                         size_t plen, int minor) {
  lua_createtable(L, 1, 4); /* res in [1], four fields; headers, query, params rehash once */
  lua_pushlstring(L, method, mlen);
  lua_setfield(L, -2, "method");
  lua_pushlstring(L, path, plen);
  lua_setfield(L, -2, "url");
  const char *q = memchr(path, '?', plen);
  lua_pushlstring(L, path, q ? (size_t)(q - path) : plen);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, minor == 1 ? "1.1" : "1.0");
  lua_setfield(L, -2, "httpVersion");
  lua_pushvalue(L, -2); /* the response userdata, below */
  lua_rawseti(L, -2, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, req_mt_ref);
  lua_setmetatable(L, -2);
}

/* Looks for the next request in the input. When one is complete, pushes handler, req, res
 * and returns 1; otherwise answers errors itself and returns 0. */
static int start_request(lua_State *L, hconn_t *c) {
  hserver_t *s = c->server;
  if (c->closing || c->done_after_write || c->in == NULL || c->in_len == c->in_off) return 0;
  const char *buf = c->in + c->in_off;
  size_t len = c->in_len - c->in_off;
  const char *method, *path;
  size_t method_len, path_len, nhdr = s->max_headers;
  int minor;
  struct lhttp_header hdr[MAX_HEADERS];
  int n = lhttp_parse_request(buf, len, &method, &method_len, &path, &path_len, &minor, hdr, &nhdr,
                              c->last_len);
  if (n == LHTTP_INCOMPLETE) {
    c->last_len = (uint32_t)len;
    if (len >= s->max_header_size) {
      const char *eol = memchr(buf, '\n', len);
      reply_error(c, eol == NULL && len > s->max_url ? 414 : 431);
    } else if (c->list != &s->lists[L_HEAD]) {
      list_add(c, L_HEAD); /* the header timeout runs from the first byte, not the last */
    }
    return 0;
  }
  c->last_len = 0;
  if (n == LHTTP_TOO_MANY_HEADERS || (n > 0 && (size_t)n > s->max_header_size)) {
    reply_error(c, 431);
    return 0;
  }
  if (n < 0) {
    reply_error(c, 400);
    return 0;
  }
  if (path_len > s->max_url) {
    reply_error(c, 414);
    return 0;
  }
  struct lhttp_framing f;
  int fr = lhttp_request_framing(hdr, nhdr, minor, &f);
  if (fr != 0) {
    reply_error(c, fr == LHTTP_UNSUPPORTED ? 501 : 400);
    return 0;
  }
  if (f.flags & LHTTP_EXPECT_OTHER) {
    reply_error(c, 417);
    return 0;
  }
  if (f.body == LHTTP_BODY_LENGTH && f.content_length > s->max_body_size) {
    reply_error(c, 413);
    return 0;
  }
  list_remove(c);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->handler_ref);
  hres_t *r = lua_newuserdata(L, sizeof *r);
  memset(r, 0, sizeof *r);
  lua_rawgeti(L, LUA_REGISTRYINDEX, res_mt_ref);
  lua_setmetatable(L, -2);
  r->conn = c;
  r->status = 200;
  r->minor = (uint8_t)minor;
  r->head_method = method_len == 4 && memcmp(method, "HEAD", 4) == 0;
  r->keep_alive = f.keep_alive && ++c->requests < s->max_requests && !s->closing;
  r->body_kind = (uint8_t)f.body;
  r->body_left = f.body == LHTTP_BODY_LENGTH ? f.content_length : 0;
  r->body_done = f.body == LHTTP_BODY_NONE || (f.body == LHTTP_BODY_LENGTH && f.content_length == 0);
  r->expect_continue = (f.flags & LHTTP_EXPECT_CONTINUE) != 0;
  r->reader_ref = r->writer_ref = LUA_NOREF;
  c->res = r;
  r->head_off = c->in_off;
  r->head_len = (uint32_t)n;
  c->in_off += (uint32_t)n; /* the body, if any, starts here */
  push_request(L, method, method_len, path, path_len, minor);
  /* res's environment is its request, for res:sendFile and the access log (a weak table
   * would not do: req refers to res, and Lua 5.1 weak tables are not ephemerons). */
  lua_pushvalue(L, -1);
  lua_setfenv(L, -3);
  lua_insert(L, -2); /* handler, req, res */
  return 1;
}

/* A connection's state changed (bytes arrived, a request ended): move it on. */
static void conn_advance(hconn_t *c) {
  lua_State *L = luaio_mainstate();
  if (c->res != NULL) { /* a handler runs: it may be waiting for body bytes */
    hres_t *r = c->res;
    if (r->reader != NULL) {
      lua_State *co = r->reader;
      r->reader = NULL;
      luaio_unanchor(r->reader_ref);
      list_remove(c);
      lua_pushboolean(co, 0); /* false: read again, there is something new (http.lua loops) */
      luaio_resume(co, 1);
    } else if (c->in_len == c->in_cap) {
      read_stop(c); /* nobody reads: let TCP push back */
    }
    return;
  }
  if (!start_request(L, c)) {
    if (c->eof && !c->closing && c->writes == 0) conn_close(c);
    return;
  }
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

/* --- the response -------------------------------------------------------------------------------- */

/* The request is over for this response object: wake whoever waits, forget the connection. */
static void res_detach(hres_t *r, int err) {
  hconn_t *c = r->conn;
  if (c == NULL) return;
  r->conn = NULL;
  c->res = NULL;
  hdr_release(r); /* here, not in a __gc: finalizers cost every request */
  lua_State *L = luaio_mainstate();
  lua_State **waiters[2] = {&r->reader, &r->writer};
  int *refs[2] = {&r->reader_ref, &r->writer_ref};
  for (int i = 0; i < 2; i++) { /* a task waiting on this request learns it is over */
    lua_State *co = *waiters[i];
    if (co == NULL) continue;
    *waiters[i] = NULL;
    luaio_unanchor(*refs[i]);
    luaio_pusherror(L, err);
    luaio_ready(L, co, 2);
  }
}

static int bodyless_status(int status) { return status < 200 || status == 204 || status == 304; }

/* Writes the status line and headers into the output block. body_len < 0: chunked or
 * close-delimited (no Content-Length). */
/* Writes v in decimal at p; returns the length. (snprintf is slow on the hot path.) */
static size_t put_decimal(char *p, uint64_t v) {
  char tmp[24];
  size_t n = 0;
  do tmp[n++] = (char)('0' + v % 10); while ((v /= 10) != 0);
  for (size_t i = 0; i < n; i++) p[i] = tmp[n - 1 - i];
  return n;
}

static void send_head(hres_t *r, hconn_t *c, int64_t body_len) {
  hserver_t *s = c->server;
  char line[128];
  const char *text = reason(r->status);
  size_t tlen = strlen(text);
  memcpy(line, "HTTP/1.1 ", 9);
  size_t n = 9 + put_decimal(line + 9, r->status);
  line[n++] = ' ';
  memcpy(line + n, text, tlen);
  n += tlen;
  memcpy(line + n, "\r\n", 2);
  out_add(c, line, n + 2);
  if (!r->user_server) out_add(c, s->server_header, strlen(s->server_header));
  if (!r->user_date) {
    date_update();
    out_add(c, date_line, date_len);
  }
  if (r->hdr_len) out_add(c, r->hdr, r->hdr_len);
  if (!r->has_length && !bodyless_status(r->status)) {
    if (body_len >= 0) {
      memcpy(line, "Content-Length: ", 16);
      n = 16 + put_decimal(line + 16, (uint64_t)body_len);
      memcpy(line + n, "\r\n", 2);
      out_add(c, line, n + 2);
    } else if (r->minor == 1) {
      out_add(c, "Transfer-Encoding: chunked\r\n", 28);
      r->chunked = 1;
    } else {
      r->keep_alive = 0; /* HTTP/1.0 without a length: the body ends with the connection */
    }
  }
  if (!r->keep_alive)
    out_add(c, "Connection: close\r\n", 19);
  else if (r->minor == 0)
    out_add(c, "Connection: keep-alive\r\n", 24);
  out_add(c, "\r\n", 2);
  r->head_sent = 1;
  hdr_release(r);
}

static void add_body(hres_t *r, hconn_t *c, const char *data, size_t len) {
  if (r->head_method || bodyless_status(r->status) || len == 0) return;
  r->bytes_sent += len;
  if (r->chunked) {
    char size[24];
    int n = snprintf(size, sizeof size, "%zx\r\n", len);
    out_add(c, size, (size_t)n);
    out_add(c, data, len);
    out_add(c, "\r\n", 2);
  } else {
    out_add(c, data, len);
  }
}

/* Takes the (numeric or string) body argument at idx. */
static const char *opt_body(lua_State *L, int idx, size_t *len) {
  if (lua_isnoneornil(L, idx)) {
    *len = 0;
    return "";
  }
  if (lua_type(L, idx) != LUA_TSTRING) luaL_argerror(L, idx, "string expected");
  return lua_tolstring(L, idx, len);
}

/* The common start of res:write and res:finish: the response, its data, its connection
 * (NULL, with nil, err pushed, when the connection is gone). */
static hconn_t *body_call(lua_State *L, hres_t **r, const char **data, size_t *len, const char *what) {
  *r = check_res(L, 1);
  *data = opt_body(L, 2, len);
  hconn_t *c = (*r)->conn;
  if (c == NULL) {
    luaio_pusherror(L, UV_ENOTCONN);
    return NULL;
  }
  if ((*r)->finished) luaL_error(L, "%s: the response is already finished", what);
  return c;
}

/* res:finish([data]) -> true | nil, err. Ends the response; sets Content-Length when the
 * head was not sent yet. */
static int res_finish(lua_State *L) {
  hres_t *r;
  const char *data;
  size_t len;
  hconn_t *c = body_call(L, &r, &data, &len, "finish");
  if (c == NULL) return 2;
  if (!r->head_sent) send_head(r, c, r->has_length ? (int64_t)r->content_length : (int64_t)len);
  add_body(r, c, data, len);
  if (r->chunked) out_add(c, "0\r\n\r\n", 5);
  r->finished = 1;
  /* Written now unless more requests wait in the input: then the batch goes in one write. */
  if (c->in_len == c->in_off || !r->body_done) flush(c);
  lua_pushboolean(L, 1);
  return 1;
}

/* res:write(data) -> true | nil, err. Sends a piece of the body (chunked when no
 * Content-Length was set). Waits only when the client is far behind. */
static int res_write(lua_State *L) {
  hres_t *r;
  const char *data;
  size_t len;
  hconn_t *c = body_call(L, &r, &data, &len, "write");
  if (c == NULL) return 2;
  if (!r->head_sent) send_head(r, c, r->has_length ? (int64_t)r->content_length : -1);
  add_body(r, c, data, len);
  if (c->out_len >= FLUSH_AT) flush(c);
  if (c->closing) return luaio_pusherror(L, UV_ECONNRESET);
  if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < WAIT_DRAIN_AT) {
    lua_pushboolean(L, 1);
    return 1;
  }
  luaio_checktask(L, "write");
  r->writer = L;
  r->writer_ref = luaio_anchor(L);
  return luaio_yield(L);
}

/* res:status(code) -> res */
static int res_status(lua_State *L) {
  hres_t *r = check_res(L, 1);
  lua_Integer code = luaL_checkinteger(L, 2);
  luaL_argcheck(L, code >= 100 && code <= 999, 2, "status code 100-999 expected");
  if (r->head_sent) return luaL_error(L, "status: headers already sent");
  r->status = (uint16_t)code;
  lua_settop(L, 1);
  return 1;
}

/* RFC 9110 tchar: visible ASCII except the delimiters. A table: this runs per character. */
static unsigned char tchar[256];

static void tchar_init(void) {
  for (int ch = 33; ch < 127; ch++) tchar[ch] = strchr("\"(),/:;<=>?@[\\]{}", ch) == NULL;
}

static int token_char(unsigned char ch) { return tchar[ch]; }

/* Removes an earlier "Name: ..." line from the app's headers (setHeader replaces). */
static void hdr_remove(hres_t *r, const char *name, size_t nlen) {
  uint32_t i = 0;
  while (i < r->hdr_len) {
    char *line = r->hdr + i;
    char *end = memchr(line, '\n', r->hdr_len - i) + 1;
    uint32_t llen = (uint32_t)(end - line);
    if (llen > nlen && line[nlen] == ':' && strncasecmp(line, name, nlen) == 0) {
      memmove(line, end, r->hdr_len - i - llen);
      r->hdr_len -= llen;
    } else {
      i += llen;
    }
  }
}

/* res:setHeader(name, value) -> res. Replaces an earlier value of the same name. */
static int res_setheader(lua_State *L) {
  hres_t *r = check_res(L, 1);
  size_t nlen, vlen;
  const char *name = luaL_checklstring(L, 2, &nlen);
  luaL_argcheck(L, lua_type(L, 3) == LUA_TSTRING || lua_type(L, 3) == LUA_TNUMBER, 3, "string expected");
  const char *value = lua_tolstring(L, 3, &vlen);
  luaL_argcheck(L, nlen > 0 && nlen < 256, 2, "header name length 1-255 expected");
  for (size_t i = 0; i < nlen; i++) luaL_argcheck(L, token_char((unsigned char)name[i]), 2, "invalid character in header name");
  for (size_t i = 0; i < vlen; i++) {
    unsigned char ch = (unsigned char)value[i];
    /* CR or LF here would let a value start a new header: response splitting */
    luaL_argcheck(L, ch >= 32 || ch == '\t', 3, "control character in header value");
  }
  if (r->head_sent) return luaL_error(L, "setHeader: headers already sent");
  if (nlen == 14 && strncasecmp(name, "content-length", 14) == 0) {
    char *end;
    unsigned long long v = strtoull(value, &end, 10);
    luaL_argcheck(L, vlen > 0 && *end == '\0' && value[0] != '-', 3, "Content-Length must be digits");
    r->has_length = 1;
    r->content_length = v;
  } else if (nlen == 17 && strncasecmp(name, "transfer-encoding", 17) == 0) {
    return luaL_argerror(L, 2, "Transfer-Encoding is set by the server");
  }
  if (nlen == 6 && strncasecmp(name, "server", 6) == 0) r->user_server = 1;
  if (nlen == 4 && strncasecmp(name, "date", 4) == 0) r->user_date = 1;
  hdr_remove(r, name, nlen);
  size_t need = r->hdr_len + nlen + vlen + 4;
  if (r->hdr == NULL && (r->hdr = nhdrs > 0 ? hdrs[--nhdrs] : malloc(HDR_SMALL)) != NULL)
    r->hdr_cap = HDR_SMALL;
  if (r->hdr == NULL || need > r->hdr_cap) {
    size_t cap = r->hdr_cap ? r->hdr_cap * 2 : HDR_SMALL;
    while (cap < need) cap *= 2;
    char *p = malloc(cap);
    if (p == NULL) return luaL_error(L, "setHeader: out of memory");
    if (r->hdr_len) memcpy(p, r->hdr, r->hdr_len);
    uint32_t len = r->hdr_len;
    hdr_release(r);
    r->hdr = p;
    r->hdr_len = len;
    r->hdr_cap = (uint32_t)cap;
  }
  char *p = r->hdr + r->hdr_len;
  memcpy(p, name, nlen);
  p[nlen] = ':';
  p[nlen + 1] = ' ';
  memcpy(p + nlen + 2, value, vlen);
  memcpy(p + nlen + 2 + vlen, "\r\n", 2);
  r->hdr_len += (uint32_t)(nlen + vlen + 4);
  lua_settop(L, 1);
  return 1;
}

/* res.status = code, the seed's field form */
static int res_newindex(lua_State *L) {
  const char *key = luaL_checkstring(L, 2);
  if (strcmp(key, "status") != 0) return luaL_error(L, "response has no field '%s' to set", key);
  lua_remove(L, 2);
  return res_status(L);
}

/* C.request(res) -> the request table of a response */
static int http_request(lua_State *L) {
  check_res(L, 1);
  lua_getfenv(L, 1);
  return 1;
}

/* --- the request body --------------------------------------------------------------------------- */

/* Body bytes ready at in + in_off now (decoding chunked input in place). Returns -1 on a
 * malformed chunked body. */
static int64_t body_ready(hres_t *r, hconn_t *c) {
  size_t buffered = c->in_len - c->in_off;
  if (r->body_kind == LHTTP_BODY_LENGTH) return (int64_t)(buffered < r->body_left ? buffered : r->body_left);
  if (r->ready > 0 || r->body_done) return r->ready;
  size_t fresh = buffered;
  if (fresh == 0) return 0;
  ssize_t rest = lhttp_decode_chunked(&r->dec, c->in + c->in_off, &fresh);
  if (rest == LHTTP_ERROR) return -1;
  r->ready = (uint32_t)fresh;
  if (rest >= 0) { /* the body is complete: the decoder moved what follows (the next
                     * request) right behind the data */
    r->body_done = 1;
    c->in_len = c->in_off + (uint32_t)fresh + (uint32_t)rest;
  } else {
    c->in_len = c->in_off + (uint32_t)fresh;
  }
  return r->ready;
}

/* Hands n ready body bytes to Lua. */
static void body_take(lua_State *L, hres_t *r, hconn_t *c, size_t n) {
  lua_pushlstring(L, c->in + c->in_off, n);
  c->in_off += (uint32_t)n;
  r->body_taken += n;
  if (r->body_kind == LHTTP_BODY_LENGTH) {
    r->body_left -= n;
    if (r->body_left == 0) r->body_done = 1;
  } else {
    r->ready -= (uint32_t)n;
  }
}

static int body_error(lua_State *L, hres_t *r, int status, const char *name, const char *msg) {
  r->error_status = (uint16_t)status;
  r->keep_alive = 0;
  lua_pushnil(L);
  luaio_newerror(L, 0, name, msg);
  return 2;
}

/* C.read(res[, n]) -> bytes | nil (the body is over) | nil, err | false (bytes arrived:
 * call again; a C function cannot go on after a yield, so http.lua loops). */
static int http_read(lua_State *L) {
  hres_t *r = check_res(L, 1);
  lua_Integer want = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, want >= 0, 2, "must not be negative");
  {
    hconn_t *c = r->conn;
    if (c == NULL) return luaio_pusherror(L, UV_ENOTCONN);
    int64_t ready = body_ready(r, c);
    if (ready < 0) return body_error(L, r, 400, "EBADMSG", "malformed chunked body");
    if (ready > 0) {
      size_t n = want > 0 && (int64_t)want < ready ? (size_t)want : (size_t)ready;
      if (r->body_taken + n > c->server->max_body_size)
        return body_error(L, r, 413, "EMSGSIZE", "request body larger than max_body_size");
      body_take(L, r, c, n);
      return 1;
    }
    if (r->body_done) return 0; /* nothing: the body is over */
    if (c->eof) return luaio_pusherror(L, UV_EOF);
    if (r->expect_continue && !r->head_sent) { /* the client waits for our go-ahead */
      r->expect_continue = 0;
      out_add(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
      flush(c);
    }
    luaio_checktask(L, "read");
    if (r->reader != NULL) return luaL_error(L, "read: another task is reading this body");
    if (c->in_off == c->in_len) in_compact(c); /* room at the front, the head kept */
    list_add(c, L_BODY);
    read_start(c);
    r->reader = L;
    r->reader_ref = luaio_anchor(L);
    return luaio_yield(L);
  }
}

/* After the handler: drop the rest of a body nobody read, when it is already here. Returns
 * 0 when the connection cannot carry another request. */
static int body_discard(hres_t *r, hconn_t *c) {
  for (;;) {
    if (r->body_done) return 1;
    int64_t ready = body_ready(r, c);
    if (ready <= 0) return r->body_done;
    if (r->body_kind == LHTTP_BODY_LENGTH) {
      r->body_left -= (uint64_t)ready;
      if (r->body_left == 0) r->body_done = 1;
    } else {
      r->ready = 0;
    }
    c->in_off += (uint32_t)ready;
  }
}

/* Calls the server's access-log hook (http.lua) with req, status, body bytes and the
 * client's address. Logging never waits, so a plain call is safe here. */
static void access_log(lua_State *L, hres_t *r, hconn_t *c) {
  struct sockaddr_storage addr;
  int len = sizeof addr;
  char ip[INET6_ADDRSTRLEN] = "-";
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&addr, &len) == 0) {
    if (addr.ss_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)&addr, ip, sizeof ip);
    else
      uv_ip4_name((struct sockaddr_in *)&addr, ip, sizeof ip);
  }
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->server->access_ref);
  lua_getfenv(L, 1); /* the request */
  lua_pushinteger(L, r->status);
  lua_pushnumber(L, (double)r->bytes_sent);
  lua_pushstring(L, ip);
  if (lua_pcall(L, 4, 0, 0) != 0) fprintf(stderr, "luaio: access log: %s\n", lua_tostring(L, -1));
  lua_settop(L, top);
}

/* --- the worker loop's end of a request ----------------------------------------------------------- */

/* C.done(res, ok, err) -> handler, req, res for the next request on this connection, or
 * waits in the pool until another connection needs a worker (or returns nothing when the
 * pool is full: the worker ends). */
static int http_done(lua_State *L) {
  hres_t *r = check_res(L, 1);
  int ok = lua_toboolean(L, 2);
  hconn_t *c = r->conn;
  if (!ok) {
    fprintf(stderr, "luaio: error in request handler: %s\n", luaL_optstring(L, 3, "?"));
    fflush(stderr);
  }
  if (c != NULL) {
    if (!ok || r->error_status) {
      if (!r->head_sent) {
        r->status = ok ? r->error_status : 500;
        r->hdr_len = 0;
        r->has_length = 0;
        r->keep_alive = 0;
        const char *text = reason(r->status);
        send_head(r, c, (int64_t)strlen(text) + 1);
        add_body(r, c, text, strlen(text));
        add_body(r, c, "\n", 1);
        r->finished = 1;
      }
      r->keep_alive = 0;
    }
    if (!r->finished) { /* the handler returned without finish(): finish it */
      if (!r->head_sent) send_head(r, c, r->has_length ? (int64_t)r->content_length : 0);
      if (r->chunked) out_add(c, "0\r\n\r\n", 5);
      r->finished = 1;
      if (r->has_length) r->keep_alive = 0; /* a promised length we cannot vouch for */
    }
    if (c->server->access_ref != LUA_NOREF) access_log(L, r, c);
    int keep = r->keep_alive && body_discard(r, c) && !c->server->closing;
    res_detach(r, UV_ECANCELED);
    if (keep) {
      lua_settop(L, 0);
      /* pipelined: the next request may be here already (even after the client's FIN) */
      if (start_request(L, c)) return 3;
      flush(c);
      if (c->eof && !c->closing) {
        c->done_after_write = 1;
        if (c->writes == 0) finish_connection(c);
      } else if (!c->closing && !c->done_after_write) {
        conn_park(c);
      }
    } else {
      c->done_after_write = 1;
      flush(c);
      if (!c->closing && c->writes == 0) finish_connection(c);
    }
  }
  if (pool_size >= POOL_MAX) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, pool_ref);
  lua_pushthread(L);
  lua_rawseti(L, -2, ++pool_size);
  lua_settop(L, 0);
  return luaio_yield(L); /* parked in the pool; resumed with the next handler, req, res */
}

/* --- the request object's lazy fields --------------------------------------------------------- */

/* Lower-cases a header name into buf (at most 255 bytes). */
static size_t lower(char *buf, const char *s, size_t n) {
  if (n > 255) n = 255;
  for (size_t i = 0; i < n; i++) buf[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
  return n;
}

/* Builds req.headers from the head: lower-case names; repeated fields joined with ", "
 * (cookies with "; "), as RFC 9110 5.3 allows. Lookups ignore case (headers_index). */
static void push_headers(lua_State *L, const char *head, size_t len) {
  const char *method, *path;
  size_t mlen, plen, nhdr = MAX_HEADERS;
  int minor;
  struct lhttp_header hdr[MAX_HEADERS];
  lua_newtable(L);
  if (lhttp_parse_request(head, len, &method, &mlen, &path, &plen, &minor, hdr, &nhdr, 0) <= 0) nhdr = 0;
  for (size_t i = 0; i < nhdr; i++) {
    char name[256];
    size_t n = lower(name, hdr[i].name, hdr[i].name_len);
    lua_pushlstring(L, name, n);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, hdr[i].value, hdr[i].value_len);
    } else {
      lua_pushstring(L, n == 6 && memcmp(name, "cookie", 6) == 0 ? "; " : ", ");
      lua_pushlstring(L, hdr[i].value, hdr[i].value_len);
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
  }
  luaL_getmetatable(L, "luaio.http.headers");
  lua_setmetatable(L, -2);
}

static int headers_index(lua_State *L) {
  size_t n;
  const char *key = lua_tolstring(L, 2, &n);
  if (key == NULL) return 0;
  char name[256];
  lua_pushlstring(L, name, lower(name, key, n));
  lua_rawget(L, 1);
  return 1;
}

static int hexval(int ch) {
  return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* Pushes s[0..n) with %XX and '+' decoded. */
static void push_decoded(lua_State *L, const char *s, size_t n) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '+') {
      luaL_addchar(&b, ' ');
    } else if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      luaL_addchar(&b, (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2])));
      i += 2;
    } else {
      luaL_addchar(&b, s[i]);
    }
  }
  luaL_pushresult(&b);
}

/* Builds req.query from the url: a=1&b=x%20y -> {a = "1", b = "x y"}; a repeated name gets
 * an array of its values. */
static void push_query(lua_State *L, const char *url, size_t len) {
  lua_newtable(L);
  const char *q = memchr(url, '?', len);
  if (q == NULL) return;
  const char *p = q + 1, *end = url + len;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *stop = amp ? amp : end;
    const char *eq = memchr(p, '=', (size_t)(stop - p));
    if (stop > p) {
      push_decoded(L, p, (size_t)((eq ? eq : stop) - p));
      if (eq)
        push_decoded(L, eq + 1, (size_t)(stop - eq - 1));
      else
        lua_pushliteral(L, "");
      lua_pushvalue(L, -2);
      lua_rawget(L, -4);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_rawset(L, -3);
      } else {
        if (!lua_istable(L, -1)) { /* a second value: make an array */
          lua_createtable(L, 2, 0);
          lua_insert(L, -2);
          lua_rawseti(L, -2, 1);
        }
        lua_insert(L, -2);
        lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
        lua_rawset(L, -3);
      }
    }
    p = stop + 1;
  }
}

/* req.headers and req.query are made on first use and then kept in the table. */
static int req_index(lua_State *L) {
  const char *key = lua_tostring(L, 2);
  if (key == NULL) return 0;
  if (strcmp(key, "headers") == 0) { /* while the request is served; afterwards, empty */
    lua_rawgeti(L, 1, 1);
    hres_t *r = lua_touserdata(L, -1);
    hconn_t *c = r ? r->conn : NULL;
    if (c != NULL && c->res == r)
      push_headers(L, c->in + r->head_off, r->head_len);
    else
      push_headers(L, "", 0);
  } else if (strcmp(key, "query") == 0) {
    lua_getfield(L, 1, "url");
    size_t len;
    const char *url = lua_tolstring(L, -1, &len);
    push_query(L, url ? url : "", url ? len : 0);
  } else {
    lua_getfield(L, lua_upvalueindex(1), key); /* the request methods (http.lua) */
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);
  return 1;
}

/* --- servers -------------------------------------------------------------------------------------- */

static void on_sweep(uv_timer_t *t) {
  hserver_t *s = t->data;
  uint64_t now = uv_now(luaio_loop());
  for (int kind = 0; kind < L_COUNT; kind++) {
    hlist_t *l = &s->lists[kind];
    while (l->head != NULL && l->head->deadline <= now) {
      hconn_t *c = l->head;
      list_remove(c);
      if (kind == L_HEAD) {
        reply_error(c, 408);
      } else if (kind == L_BODY && c->res != NULL && c->res->reader != NULL) {
        hres_t *r = c->res;
        lua_State *co = r->reader;
        r->reader = NULL;
        luaio_unanchor(r->reader_ref);
        r->error_status = 408;
        r->keep_alive = 0;
        luaio_resume(co, luaio_pusherror(co, UV_ETIMEDOUT));
      } else {
        conn_close(c); /* idle keep-alive, or lingering done */
      }
    }
  }
}

/* A new connection: from the listener (fd < 0) or an fd accepted by hand. */
static void conn_start(hserver_t *s, uv_stream_t *listener, int fd) {
  hconn_t *c = calloc(1, sizeof *c);
  if (c == NULL) {
    if (fd >= 0) close(fd);
    return;
  }
  uv_tcp_init(luaio_loop(), &c->tcp);
  c->tcp.data = c;
  c->server = s;
  s->connections++;
  int err = fd >= 0 ? uv_tcp_open(&c->tcp, fd) : uv_accept(listener, (uv_stream_t *)&c->tcp);
  if (err != 0 || s->connections > s->max_connections) {
    if (err != 0 && fd >= 0) close(fd);
    conn_close(c);
    return;
  }
  list_add(c, L_IDLE); /* a client that connects and says nothing gets the idle timeout */
  read_start(c);
}

static void on_connection(uv_stream_t *listener, int status) {
  hserver_t *s = listener->data;
  if (status < 0) return;
  conn_start(s, listener, -1);
}

/* Takes the connections still waiting in the kernel's accept queue: closing the listener
 * would reset them, and their clients did nothing wrong. They are served and then closed. */
static void drain_backlog(hserver_t *s) {
  uv_os_fd_t lfd;
  if (uv_fileno((uv_handle_t *)&s->tcp, &lfd) < 0) return;
  int fd;
  while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) conn_start(s, NULL, fd);
}

static lua_Number opt_number(lua_State *L, int opts, const char *name, lua_Number def) {
  lua_getfield(L, opts, name);
  lua_Number v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : def;
  lua_pop(L, 1);
  return v;
}

static void on_server_close(uv_handle_t *h) {
  hserver_t *s = h->data;
  s->closed_handles++;
  server_maybe_free(s);
}

/* C.listen(port, handler, options) -> server | nil, err. options are checked by http.lua. */
static int http_listen(lua_State *L) {
  int port = (int)luaL_checkinteger(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TTABLE);
  hserver_t *s = calloc(1, sizeof *s);
  if (s == NULL) return luaio_pusherror(L, UV_ENOMEM);
  s->tcp.data = s;
  s->max_header_size = (uint32_t)opt_number(L, 3, "max_header_size", 16384);
  if (s->max_header_size > BLOCK_SIZE) s->max_header_size = BLOCK_SIZE;
  s->max_headers = (uint32_t)opt_number(L, 3, "max_headers", 100);
  if (s->max_headers > MAX_HEADERS) s->max_headers = MAX_HEADERS;
  s->max_url = (uint32_t)opt_number(L, 3, "max_url_length", 8192);
  s->max_body_size = (uint64_t)opt_number(L, 3, "max_body_size", 1048576);
  s->max_requests = (uint32_t)opt_number(L, 3, "max_requests", 10000);
  s->max_connections = (int)opt_number(L, 3, "maxconnections", 65535);
  s->lists[L_HEAD].timeout = (uint32_t)opt_number(L, 3, "header_timeout", 10000);
  s->lists[L_IDLE].timeout = (uint32_t)opt_number(L, 3, "keepalive_timeout", 5000);
  s->lists[L_BODY].timeout = (uint32_t)opt_number(L, 3, "body_timeout", 10000);
  s->lists[L_LINGER].timeout = LINGER_MS;
  lua_getfield(L, 3, "server_name");
  const char *name = lua_isstring(L, -1) ? lua_tostring(L, -1) : lua_isnil(L, -1) ? "luaio" : NULL;
  if (name != NULL) snprintf(s->server_header, sizeof s->server_header, "Server: %.60s\r\n", name);
  lua_pop(L, 1);
  int err = luaio_tcp_bind(L, &s->tcp, port, 3);
  if (err == 0) err = uv_listen((uv_stream_t *)&s->tcp, (int)opt_number(L, 3, "tcp_backlog", 511), on_connection);
  if (err < 0) {
    if (s->tcp.loop != NULL)
      uv_close((uv_handle_t *)&s->tcp, (uv_close_cb)free);
    else
      free(s);
    return luaio_pusherror(L, err);
  }
  uv_timer_init(luaio_loop(), &s->sweep);
  s->sweep.data = s;
  uv_timer_start(&s->sweep, on_sweep, 250, 250);
  uv_unref((uv_handle_t *)&s->sweep); /* the listener keeps the process alive, not the sweep */
  hserver_t **box = lua_newuserdata(L, sizeof *box);
  *box = s;
  s->box = box;
  luaL_getmetatable(L, SERVER_MT);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 2);
  s->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, 3, "access_hook");
  s->access_ref = lua_isfunction(L, -1) ? luaL_ref(L, LUA_REGISTRYINDEX) : (lua_pop(L, 1), LUA_NOREF);
  return 1;
}

static hserver_t *check_server(lua_State *L) {
  hserver_t **box = luaL_checkudata(L, 1, SERVER_MT);
  return *box;
}

static int server_address(lua_State *L) {
  hserver_t *s = check_server(L);
  if (s == NULL || s->closing) return luaio_pusherror(L, UV_EBADF);
  return luaio_push_sockname(L, &s->tcp);
}

static int server_connections(lua_State *L) {
  hserver_t *s = check_server(L);
  lua_pushinteger(L, s ? s->connections : 0);
  return 1;
}

/* server:close(): stops accepting and closes idle connections; requests in progress finish
 * (their connections close after the response). server:connections() tells when all are done. */
static int server_close(lua_State *L) {
  hserver_t *s = check_server(L);
  if (s == NULL || s->closing) return 0;
  s->closing = 1;
  luaL_unref(L, LUA_REGISTRYINDEX, s->self_ref);
  /* Connections between requests go now; one mid-request finishes it, then closes. */
  while (s->lists[L_IDLE].head != NULL) conn_close(s->lists[L_IDLE].head);
  while (s->lists[L_HEAD].head != NULL) conn_close(s->lists[L_HEAD].head);
  drain_backlog(s); /* after the sweep above: these clients are about to send a request */
  uv_close((uv_handle_t *)&s->tcp, on_server_close);
  uv_close((uv_handle_t *)&s->sweep, on_server_close);
  return 0;
}

static int server_gc(lua_State *L) {
  hserver_t **box = lua_touserdata(L, 1);
  if (*box != NULL) (*box)->box = NULL;
  return 0;
}

/* C.init(worker, request_methods): the Lua worker loop and req's methods. */
static int http_init(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_pushvalue(L, 1);
  worker_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  luaL_getmetatable(L, REQ_MT);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, req_index, 1);
  lua_setfield(L, -2, "__index");
  return 0;
}

static const luaL_Reg res_methods[] = {
  {"finish", res_finish}, {"setHeader", res_setheader}, {"status", res_status},
  {"write", res_write}, {NULL, NULL}};
static const luaL_Reg server_methods[] = {
  {"address", server_address}, {"close", server_close}, {"connections", server_connections},
  {NULL, NULL}};
static const luaL_Reg http_funcs[] = {
  {"done", http_done}, {"init", http_init}, {"listen", http_listen}, {"read", http_read},
  {"request", http_request}, {NULL, NULL}};

int luaopen_luaio_http(lua_State *L) {
  tchar_init();
  luaL_newmetatable(L, RES_MT);
  lua_pushvalue(L, -1);
  res_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  luaL_setfuncs(L, res_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, res_newindex);
  lua_setfield(L, -2, "__newindex");
  luaL_newmetatable(L, SERVER_MT);
  lua_newtable(L);
  luaL_setfuncs(L, server_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, server_gc);
  lua_setfield(L, -2, "__gc");
  luaL_newmetatable(L, REQ_MT);
  lua_pushvalue(L, -1);
  req_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  luaL_newmetatable(L, "luaio.http.headers");
  lua_pushcfunction(L, headers_index);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 4);
  lua_newtable(L);
  pool_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  luaio_newlib(L, http_funcs);
  return 1;
}
