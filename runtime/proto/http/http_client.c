/*
 * http_client.c: the C half of the HTTP/1.1 client, module "luaio.http_client".
 *
 * Small on purpose: the parser (http_parser.c) for response heads and chunked bodies, plus
 * the two things about a pooled socket that Lua cannot see or do. The requests and the
 * socket I/O are Lua (stdlib/http_client.lua) on top of the tcp module, the pool is
 * stdlib/pool.lua, which also uses sweep and error from here.
 *
 *   parse_response(s[, last_len[, head_request]]) -> head | nil, "incomplete" | nil, err
 *   decoder() -> a chunked decoder; decoder:decode(piece) -> data, done, leftover | nil, err
 *   park(socket), unpark(socket) -> alive: a socket waits in the pool
 *   clean_end(socket) -> whether an EOF read was the server's end, not a cut
 *   sweep(fn, ms) / sweep(nil): fn runs in a task every ms, without keeping the process alive
 *   error(name, message) -> an error table {code, name, message}
 *
 * park and unpark reach into the socket core (stream.h's sock_t); they go once sockets have
 * an idle operation of their own.
 *
 * The ASan rule of docs/internals.md (a function that raises or yields holds no arrays and
 * takes no addresses of its locals): the parser and the decoder run in noinline helpers that
 * never raise, and leave their results in static or heap storage that the Lua functions
 * read afterwards. Lua runs on one thread and nothing waits in between, so static is safe.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_parser.h"
#include "socket.h"
#include "tls.h"

#define MAX_HEADERS 128 /* more header lines than this: an error */
#define DECODER_MT "luaio.http_client.decoder"
#define NOMEM (-100)

/* The last parsed head. Names point into `lower` (lower-cased copies), values into the
 * caller's string. */
static struct {
  struct lhttp_header headers[MAX_HEADERS];
  size_t num_headers;
  struct lhttp_framing framing;
  const char *reason;
  size_t reason_len;
  int minor, status, framing_rc;
  const char *coding; /* a Transfer-Encoding value we do not decode, or NULL */
  size_t coding_len;
  char *lower;
  size_t lower_cap;
} head;

typedef struct {
  struct lhttp_chunked_decoder d;
  char *buf; /* scratch: lhttp_decode_chunked decodes in place, Lua strings are immutable */
  size_t cap;
  size_t out; /* data bytes decoded by the last call, at buf[0..out) */
  ssize_t rc; /* the last call's result */
  int done;
} decoder_t;

static uv_timer_t sweep_timer;
static int sweep_ref = LUA_NOREF, sweep_started;

static int push_error(lua_State *L, const char *name, const char *message) {
  return luaio_pushnamederror(L, name, message);
}

/* --- response heads ----------------------------------------------------------------------- */

static int is_name(const struct lhttp_header *h, const char *lower, size_t len) {
  return h->name_len == len && memcmp(h->name, lower, len) == 0;
}

/* Whether a Transfer-Encoding value lists nothing but chunked (any case, OWS and empty
 * elements ignored); *chunked counts the chunked elements. */
static int only_chunked(const char *p, size_t len, int *chunked) {
  const char *end = p + len;
  while (p < end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) p++;
    const char *e = p;
    while (e < end && *e != ',') e++;
    const char *last = e;
    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) last--;
    if (last > p) {
      if (last - p != 7 || strncasecmp(p, "chunked", 7) != 0) return 0;
      (*chunked)++;
    }
    p = e;
  }
  return 1;
}

/* Finds a transfer coding other than chunked in a head whose body it frames: we decode
 * chunked only (no zlib yet), and any other coding would hand its bytes (gzip...) to the
 * caller as if they were the body. Sets head.coding to the offending value. */
static void check_codings(void) {
  int te = 0, chunked = 0;
  head.coding = NULL;
  for (size_t i = 0; i < head.num_headers && head.coding == NULL; i++) {
    const struct lhttp_header *h = &head.headers[i];
    if (!is_name(h, "transfer-encoding", 17)) continue;
    te = 1;
    if (!only_chunked(h->value, h->value_len, &chunked)) {
      head.coding = h->value;
      head.coding_len = h->value_len;
    }
  }
  if (te && chunked == 0 && head.coding == NULL) { /* only empty values */
    head.coding = "";
    head.coding_len = 0;
  }
}

/* Parses buf into `head`; returns lhttp_parse_response's result, or NOMEM. Never raises. */
__attribute__((noinline)) static int parse_head(const char *buf, size_t len, size_t last_len,
                                                int head_request) {
  size_t n = MAX_HEADERS;
  int rc = lhttp_parse_response(buf, len, &head.minor, &head.status, &head.reason, &head.reason_len,
                                head.headers, &n, last_len);
  if (rc <= 0) return rc;
  head.num_headers = n;
  head.framing_rc =
      lhttp_response_framing(head.headers, n, head.minor, head.status, head_request, &head.framing);
  if ((size_t)rc > head.lower_cap) { /* names take less room than the head they come from */
    char *p = realloc(head.lower, (size_t)rc);
    if (p == NULL) return NOMEM;
    head.lower = p;
    head.lower_cap = (size_t)rc;
  }
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    char *name = head.lower + off;
    for (size_t j = 0; j < head.headers[i].name_len; j++) {
      char c = head.headers[i].name[j];
      name[j] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    head.headers[i].name = name;
    off += head.headers[i].name_len;
  }
  head.coding = NULL;
  if (head.framing_rc == 0 && head.framing.body != LHTTP_BODY_NONE) check_codings();
  return rc;
}

static const char *body_kind(int body) {
  switch (body) {
    case LHTTP_BODY_LENGTH: return "length";
    case LHTTP_BODY_CHUNKED: return "chunked";
    case LHTTP_BODY_UNTIL_CLOSE: return "close";
    default: return "none";
  }
}

/* Appends the value to the array on top of the stack (made when absent). Set-Cookie is the
 * one field that cannot be joined with commas (RFC 9110 5.3): its dates hold commas. */
static void push_cookie(lua_State *L, const struct lhttp_header *h) {
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_createtable(L, 1, 0);
  }
  lua_pushlstring(L, h->value, h->value_len);
  lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
}

/* headers[name] = value, or "old, value" for a repeated name (RFC 9110 5.3);
 * headers["set-cookie"] = {value, ...} always. */
static void push_headers(lua_State *L) {
  lua_createtable(L, 0, (int)head.num_headers);
  for (size_t i = 0; i < head.num_headers; i++) {
    const struct lhttp_header *h = &head.headers[i];
    lua_pushlstring(L, h->name, h->name_len);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (is_name(h, "set-cookie", 10)) {
      push_cookie(L, h);
    } else if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, h->value, h->value_len);
    } else {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, h->value, h->value_len);
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
  }
}

static void set_number(lua_State *L, const char *key, lua_Number n) {
  lua_pushnumber(L, n);
  lua_setfield(L, -2, key);
}

/* parse_response(s[, last_len[, head_request]]) -> head | nil, "incomplete" | nil, err.
 * head = {status, minor, reason, headers, length (bytes of the head), body ("none",
 * "length", "chunked" or "close"), content_length, keep_alive}. last_len is the length of
 * s at the previous call for the same head (see lhttp_parse_response); head_request is
 * true when the request was HEAD. A content_length above 2^53 loses precision. A body
 * framed by a transfer coding other than chunked is an error (EPROTO). */
static int httpclient_parse_response(lua_State *L) {
  const char *buf = luaL_checkstring(L, 1);
  size_t len = lua_objlen(L, 1);
  lua_Integer last_len = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, last_len >= 0 && (size_t)last_len <= len, 2, "out of range");
  int rc = parse_head(buf, len, (size_t)last_len, lua_toboolean(L, 3));
  if (rc == NOMEM) return luaL_error(L, "out of memory");
  if (rc == LHTTP_INCOMPLETE) {
    lua_pushnil(L);
    lua_pushliteral(L, "incomplete");
    return 2;
  }
  if (rc == LHTTP_TOO_MANY_HEADERS)
    return push_error(L, "EPROTO", "too many header lines in the response");
  if (rc < 0) return push_error(L, "EPROTO", "malformed HTTP response head");
  if (head.framing_rc != 0)
    return push_error(L, "EPROTO", "invalid response framing (Content-Length, Transfer-Encoding)");
  if (head.coding != NULL) {
    lua_pushlstring(L, head.coding, head.coding_len);
    const char *msg = lua_pushfstring(
        L, "unsupported transfer coding '%s' (only chunked is decoded)", lua_tostring(L, -1));
    return push_error(L, "EPROTO", msg);
  }
  lua_createtable(L, 0, 8);
  set_number(L, "status", head.status);
  set_number(L, "minor", head.minor);
  lua_pushlstring(L, head.reason, head.reason_len);
  lua_setfield(L, -2, "reason");
  push_headers(L);
  lua_setfield(L, -2, "headers");
  set_number(L, "length", rc);
  lua_pushstring(L, body_kind(head.framing.body));
  lua_setfield(L, -2, "body");
  set_number(L, "content_length", (lua_Number)head.framing.content_length);
  lua_pushboolean(L, head.framing.keep_alive);
  lua_setfield(L, -2, "keep_alive");
  return 1;
}

/* --- chunked bodies ----------------------------------------------------------------------- */

/* Decodes len bytes of s through c->buf (which holds at least len). Never raises. */
__attribute__((noinline)) static void decode_piece(decoder_t *c, const char *s, size_t len) {
  size_t n = len;
  memcpy(c->buf, s, len);
  c->rc = lhttp_decode_chunked(&c->d, c->buf, &n);
  c->out = n;
}

/* decoder() -> a decoder for one chunked body */
static int httpclient_decoder(lua_State *L) {
  decoder_t *c = lua_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  luaL_getmetatable(L, DECODER_MT);
  lua_setmetatable(L, -2);
  return 1;
}

/* decoder:decode(piece) -> data, done, leftover | nil, err. data is what piece held of the
 * body (maybe ""), done is true once the last chunk and the trailers went by, leftover the
 * bytes after the body ("" unless done). After done, every piece is leftover. */
static int decoder_decode(lua_State *L) {
  decoder_t *c = luaL_checkudata(L, 1, DECODER_MT);
  const char *s = luaL_checkstring(L, 2);
  size_t len = lua_objlen(L, 2);
  if (c->done) {
    lua_pushliteral(L, "");
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 2);
    return 3;
  }
  if (c->rc == LHTTP_ERROR) return push_error(L, "EPROTO", "malformed chunked body");
  if (len > c->cap) {
    char *p = realloc(c->buf, len);
    if (p == NULL) return luaL_error(L, "out of memory");
    c->buf = p;
    c->cap = len;
  }
  if (len > 0)
    decode_piece(c, s, len);
  else
    c->out = 0;
  if (c->rc == LHTTP_ERROR) return push_error(L, "EPROTO", "malformed chunked body");
  lua_pushlstring(L, c->buf, c->out);
  if (len == 0 || c->rc == LHTTP_INCOMPLETE) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "");
    return 3;
  }
  c->done = 1;
  lua_pushboolean(L, 1);
  lua_pushlstring(L, c->buf + c->out, (size_t)c->rc);
  free(c->buf);
  c->buf = NULL;
  c->cap = 0;
  return 3;
}

static int decoder_gc(lua_State *L) {
  decoder_t *c = luaL_checkudata(L, 1, DECODER_MT);
  free(c->buf);
  c->buf = NULL;
  c->cap = 0;
  return 0;
}

/* --- the pool ------------------------------------------------------------------------------ */

/* Whether a pooled socket is still fit for a request: open, the server has not closed it
 * (EOF) and has sent nothing since the last response. */
static int sock_alive(luaio_conn *c) {
  return c != NULL && !c->closing && !c->ending && c->read_err == 0 &&
         (c->in == NULL || c->in->len == c->in->off);
}

/* park(socket) -> alive: the socket goes idle in the pool. It keeps reading, so that a
 * close by the server is noticed (unpark then says so), and no longer keeps the process
 * alive. */
static int httpclient_park(lua_State *L) {
  luaio_conn *c = luaio_socket_check(L, 1);
  if (c != NULL) {
    luaio_conn_read_start(c);
    uv_unref(&c->h.handle);
  }
  lua_pushboolean(L, sock_alive(c));
  return 1;
}

/* unpark(socket) -> alive: the socket leaves the pool (it keeps the process alive again). */
static int httpclient_unpark(lua_State *L) {
  luaio_conn *c = luaio_socket_check(L, 1);
  if (c != NULL) uv_ref(&c->h.handle);
  lua_pushboolean(L, sock_alive(c));
  return 1;
}

/* clean_end(socket) -> true when the EOF just read is the server's own end: always over TCP;
 * over TLS only after its close_notify. A bare FIN can be injected by anyone on the path, so
 * a body that ends with the connection is complete only with it (RFC 9112 9.8). */
static int httpclient_clean_end(lua_State *L) {
  luaio_conn *c = luaio_socket_check(L, 1);
  lua_pushboolean(L, c != NULL && (c->tls == NULL || luaio_tls_peer_closed(c)));
  return 1;
}

static void on_sweep(uv_timer_t *t) {
  lua_State *L = luaio_mainstate();
  lua_rawgeti(L, LUA_REGISTRYINDEX, sweep_ref);
  luaio_spawn(L, 0);
}

/* sweep(fn, ms): runs fn in a new task every ms milliseconds; the timer does not keep the
 * process alive. sweep(nil) stops it. */
static int httpclient_sweep(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    if (sweep_started) uv_timer_stop(&sweep_timer);
    return 0;
  }
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_Number ms = luaL_checknumber(L, 2);
  luaL_argcheck(L, ms >= 1 && ms < 4294967295.0, 2, "milliseconds out of range");
  if (!sweep_started) {
    uv_timer_init(luaio_loop(), &sweep_timer);
    uv_unref((uv_handle_t *)&sweep_timer);
    sweep_started = 1;
  }
  luaL_unref(L, LUA_REGISTRYINDEX, sweep_ref);
  lua_pushvalue(L, 1);
  sweep_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_timer_start(&sweep_timer, on_sweep, (uint64_t)ms, (uint64_t)ms);
  return 0;
}

/* error(name, message) -> {code, name, message}, code from libuv when it knows the name.
 * (require("luaio.error").new does the same: http_client.lua may use that instead.) */
static int httpclient_error(lua_State *L) {
  luaio_namederror(L, luaL_checkstring(L, 1), luaL_checkstring(L, 2));
  return 1;
}

static const luaL_Reg decoder_methods[] = {{"decode", decoder_decode}, {NULL, NULL}};

static const luaL_Reg httpclient_funcs[] = {{"clean_end", httpclient_clean_end},
                                            {"decoder", httpclient_decoder},
                                            {"error", httpclient_error},
                                            {"park", httpclient_park},
                                            {"parse_response", httpclient_parse_response},
                                            {"sweep", httpclient_sweep},
                                            {"unpark", httpclient_unpark},
                                            {NULL, NULL}};

int luaopen_luaio_http_client(lua_State *L) {
  if (luaL_newmetatable(L, DECODER_MT)) {
    luaio_newlib(L, decoder_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, decoder_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaio_newlib(L, httpclient_funcs);
  return 1;
}
