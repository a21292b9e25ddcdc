/*
 * http_request.c: the request object (req) and the request body.
 *
 * req is a table: method, url (the target as sent), path (percent-decoded, without the
 * query), httpVersion, and in [1] the response. The rest is made on first use (req_index)
 * and kept: headers (parsed again from the head, which stays in the connection's input
 * buffer while the request is served), query, rawPath, host, remoteAddress, remotePort.
 * Most handlers never look at most of them, and a request that costs two table entries
 * fewer is a request served faster.
 *
 * The body is read from the connection's input buffer as it arrives; a chunked body is
 * decoded in place. Its framing state is the connection's (hconn_t): whatever the handler
 * reads or leaves, the bytes of the body are always consumed as body, never parsed as the
 * next request.
 */
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "tls.h"

#define ROOM_MIN 4096 /* free input space a body read wants, so it is not read a byte at a time */

static luaio_udtype req_type = {LUA_NOREF, NULL};

/* --- the request table ----------------------------------------------------------------------- */

void http_push_request(lua_State *L, const char *method, size_t mlen, const char *target,
                       size_t tlen, const struct lhttp_target *t, const char *path, size_t plen,
                       int minor) {
  lua_createtable(L, 1, 4); /* res in [1], four fields; the lazy ones rehash once */
  lua_pushlstring(L, method, mlen);
  lua_setfield(L, -2, "method");
  lua_pushlstring(L, target, tlen);
  lua_setfield(L, -2, "url");
  lua_pushlstring(L, path, plen);
  lua_setfield(L, -2, "path");
  if (t != NULL && path != t->path) { /* decoded: the raw form is kept (the router uses it) */
    lua_pushlstring(L, t->path, t->path_len);
    lua_setfield(L, -2, "rawPath");
  }
  lua_pushstring(L, minor == 1 ? "1.1" : "1.0");
  lua_setfield(L, -2, "httpVersion");
  if (t != NULL && t->form == LHTTP_TARGET_ABSOLUTE) { /* its authority wins over Host */
    lua_pushlstring(L, t->authority, t->authority_len);
    lua_setfield(L, -2, "host");
  }
  lua_pushvalue(L, -2); /* the response userdata, below */
  lua_rawseti(L, -2, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, req_type.ref);
  lua_setmetatable(L, -2);
}

/* Lower-cases a header name into buf (at most 255 bytes). */
static size_t lower(char *buf, const char *s, size_t n) {
  if (n > 255) n = 255;
  for (size_t i = 0; i < n; i++) buf[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
  return n;
}

static struct lhttp_header headers_scratch[HTTP_MAX_HEADERS];

/* Builds req.headers from the head: lower-case names; repeated fields joined with ", "
 * (cookies with "; "), as RFC 9110 5.3 allows. Lookups ignore case (headers_index). */
static void push_headers(lua_State *L, const char *head, size_t len) {
  const char *method, *path;
  size_t mlen, plen, nhdr = HTTP_MAX_HEADERS;
  int minor;
  lua_newtable(L);
  if (lhttp_parse_request(head, len, &method, &mlen, &path, &plen, &minor, headers_scratch, &nhdr,
                          0) <= 0)
    nhdr = 0;
  for (size_t i = 0; i < nhdr; i++) {
    const struct lhttp_header *h = &headers_scratch[i];
    char name[256];
    size_t n = lower(name, h->name, h->name_len);
    lua_pushlstring(L, name, n);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, h->value, h->value_len);
    } else {
      lua_pushstring(L, n == 6 && memcmp(name, "cookie", 6) == 0 ? "; " : ", ");
      lua_pushlstring(L, h->value, h->value_len);
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
  return ch >= '0' && ch <= '9'   ? ch - '0'
         : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
         : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                  : -1;
}

/* Pushes s[0..n) with %XX and '+' decoded (a query's form encoding). */
static void push_form_decoded(lua_State *L, const char *s, size_t n) {
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

/* Pushes a table of the form-encoded pairs in p[0..end): a=1&b=x%20y -> {a = "1", b = "x y"};
 * a repeated name gets an array of its values. */
static void push_pairs(lua_State *L, const char *p, const char *end) {
  lua_newtable(L);
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *stop = amp ? amp : end;
    const char *eq = memchr(p, '=', (size_t)(stop - p));
    if (stop > p) {
      push_form_decoded(L, p, (size_t)((eq ? eq : stop) - p));
      if (eq)
        push_form_decoded(L, eq + 1, (size_t)(stop - eq - 1));
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

/* Builds req.query from the url. */
static void push_query(lua_State *L, const char *url, size_t len) {
  const char *q = memchr(url, '?', len);
  push_pairs(L, q ? q + 1 : url + len, url + len);
}

/* C.form(text) -> the table of an application/x-www-form-urlencoded text (as req.query) */
int http_form(lua_State *L) {
  luaL_checktype(L, 1, LUA_TSTRING);
  const char *s = lua_tostring(L, 1);
  push_pairs(L, s, s + lua_objlen(L, 1));
  return 1;
}

/* The response of the request table at 1, and its connection while it is served. */
static luaio_conn *served_conn(lua_State *L) {
  lua_rawgeti(L, 1, 1);
  hres_t *r = lua_touserdata(L, -1);
  lua_pop(L, 1);
  luaio_conn *c = r ? r->conn : NULL;
  return c != NULL && HCONN(c)->res == r ? c : NULL;
}

/* req.headers, req.query, ... are made on first use and then kept in the table. */
static int req_index(lua_State *L) {
  const char *key = lua_tostring(L, 2);
  if (key == NULL) return 0;
  if (strcmp(key, "headers") == 0) { /* while the request is served; afterwards, empty */
    luaio_conn *c = served_conn(L);
    if (c != NULL) {
      push_headers(L, c->in->data + c->in->kept, HCONN(c)->head_len);
    } else { /* over, or taken over: from the head kept then, if any */
      lua_rawgeti(L, 1, 3);
      int kept = lua_type(L, -1) == LUA_TSTRING;
      push_headers(L, kept ? lua_tostring(L, -1) : "", kept ? lua_objlen(L, -1) : 0);
    }
    lua_pushliteral(L, "host"); /* an absolute-form target's authority replaces Host */
    lua_rawget(L, 1);
    if (lua_isstring(L, -1))
      lua_setfield(L, -2, "host");
    else
      lua_pop(L, 1);
  } else if (strcmp(key, "query") == 0) {
    lua_getfield(L, 1, "url");
    size_t len;
    const char *url = lua_tolstring(L, -1, &len);
    push_query(L, url ? url : "", url ? len : 0);
  } else if (strcmp(key, "rawPath") == 0) {
    lua_getfield(L, 1, "url");
    size_t len;
    const char *url = lua_tolstring(L, -1, &len);
    struct lhttp_target t;
    if (url == NULL || lhttp_parse_target(url, len, &t) != 0) return 0;
    lua_pushlstring(L, t.path, t.path_len);
  } else if (strcmp(key, "host") == 0) {
    lua_getfield(L, 1, "headers");
    lua_getfield(L, -1, "host");
  } else if (strcmp(key, "remoteAddress") == 0 || strcmp(key, "remotePort") == 0) {
    luaio_conn *c = served_conn(L);
    struct sockaddr_storage addr;
    if (c == NULL || luaio_conn_peer(c, &addr) != 0) return 0;
    luaio_push_addr(L, &addr);
    lua_getfield(L, -1, "address");
    lua_setfield(L, 1, "remoteAddress");
    lua_getfield(L, -1, "port");
    lua_setfield(L, 1, "remotePort");
    lua_pushvalue(L, 2);
    lua_rawget(L, 1);
    return 1;
  } else {
    lua_getfield(L, lua_upvalueindex(1), key); /* the request methods (http.lua) */
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);
  return 1;
}

void http_request_keep_head(lua_State *L, int res, const char *head, size_t len) {
  lua_getfenv(L, res);
  lua_pushliteral(L, "headers");
  lua_rawget(L, -2); /* made already: nothing to keep */
  if (lua_isnil(L, -1)) {
    lua_pushlstring(L, head, len);
    lua_rawseti(L, -3, 3);
  }
  lua_pop(L, 2);
}

/* C.request(res) -> the request table of a response */
int http_request_table(lua_State *L) {
  http_check_res(L, 1);
  lua_getfenv(L, 1);
  return 1;
}

/* --- the body ------------------------------------------------------------------------------------ */

int64_t http_body_ready(luaio_conn *c) {
  hconn_t *h = HCONN(c);
  luaio_inbuf *in = c->in;
  size_t buffered = in ? in->len - in->off : 0;
  if (h->body_kind == LHTTP_BODY_LENGTH)
    return (int64_t)(buffered < h->body_left ? buffered : h->body_left);
  if (h->body_status) return -1; /* broken: the decoder's state means nothing any more */
  if (h->body_end || buffered == h->ready) return h->ready;
  /* The bytes after the decoded ones are decoded in place, right behind them. */
  size_t fresh = buffered - h->ready;
  ssize_t rest = lhttp_decode_chunked(&h->dec, in->data + in->off + h->ready, &fresh);
  if (rest == LHTTP_ERROR) {
    h->body_status = 400;
    return -1;
  }
  h->ready += (uint32_t)fresh;
  if (rest >= 0) { /* complete: the decoder moved what follows (the next request) right
                    * behind the data */
    h->body_end = 1;
    in->len = in->off + h->ready + (uint32_t)rest;
  } else {
    in->len = in->off + h->ready;
  }
  return h->ready;
}

int http_body_arrived(luaio_conn *c) {
  hconn_t *h = HCONN(c);
  if (h->body_kind == LHTTP_BODY_LENGTH)
    return c->in != NULL && c->in->len - c->in->off >= h->body_left;
  return http_body_ready(c) >= 0 && h->body_end;
}

/* n ready bytes are taken (pushed when L is not NULL) or dropped. */
static void body_take(lua_State *L, luaio_conn *c, size_t n) {
  hconn_t *h = HCONN(c);
  if (L != NULL) lua_pushlstring(L, c->in->data + c->in->off, n);
  h->body_taken += n;
  if (h->body_kind == LHTTP_BODY_LENGTH) {
    h->body_left -= n;
    if (h->body_left == 0) h->body_end = 1;
  } else {
    h->ready -= (uint32_t)n;
  }
  luaio_conn_consume(c, (uint32_t)n);
}

int http_body_discard(luaio_conn *c) {
  hconn_t *h = HCONN(c);
  for (;;) {
    if (BODY_CONSUMED(h)) return 1;
    int64_t ready = http_body_ready(c);
    if (ready < 0) return -1;
    if (ready == 0) return BODY_CONSUMED(h);
    if ((h->discarded += (uint64_t)ready) > DISCARD_MAX) return -1; /* not worth reading */
    body_take(NULL, c, (size_t)ready);
  }
}

static const char *status_name(int status) {
  return status == 408 ? "ETIMEDOUT" : status == 413 ? "EMSGSIZE" : "EBADMSG";
}

/* The body is broken: the response will say so with status (the handler's own is ignored)
 * and the connection closes. */
static int body_error(lua_State *L, hconn_t *h, int status, const char *msg) {
  h->body_status = (uint16_t)status;
  return luaio_pushnamederror(L, status_name(status), msg);
}

/* C.tlsinfo(res) -> the connection's tlsinfo (socket.c's), or nil: plain HTTP, or the
 * response is over. */
int http_tlsinfo(lua_State *L) {
  hres_t *r = http_check_res(L, 1);
  luaio_tls_push_info(L, r->conn);
  return 1;
}

/* C.read(res[, n]) -> bytes | nil (the body is over) | nil, err | false (bytes arrived:
 * call again; a C function cannot go on after a yield, so http.lua loops). */
int http_read(lua_State *L) {
  hres_t *r = http_check_res(L, 1);
  lua_Integer want = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, want >= 0, 2, "must not be negative");
  luaio_conn *c = r->conn;
  if (c == NULL) return luaio_pusherror(L, UV_ENOTCONN);
  hconn_t *h = HCONN(c);
  if (h->body_status) return body_error(L, h, h->body_status, "the request body is broken");
  int64_t ready = http_body_ready(c);
  if (ready < 0) return body_error(L, h, 400, "malformed chunked body");
  if (ready > 0) {
    size_t n = want > 0 && (int64_t)want < ready ? (size_t)want : (size_t)ready;
    if (h->body_taken + n > h->server->max_body_size)
      return body_error(L, h, 413, "request body larger than max_body_size");
    body_take(L, c, n);
    return 1;
  }
  if (h->body_end) return 0; /* nothing: the body is over */
  if (c->read_err) return body_error(L, h, 400, "the client closed the connection mid-body");
  if (h->expect_continue && !r->head_sent) { /* the client waits for our go-ahead */
    h->expect_continue = 0;
    luaio_conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
  }
  luaio_checktask(L, "read");
  if (r->reader != NULL) return luaL_error(L, "read: another task is reading this body");
  int err = luaio_conn_reserve_in(c, ROOM_MIN); /* room, so the body is not read a byte at a time */
  if (err < 0 && err != UV_ENOBUFS) return luaio_pusherror(L, err);
  luaio_conn_read_start(c);
  luaio_conn_timeout(c, h->server->body_timeout);
  r->reader = L;
  r->reader_ref = luaio_anchor(L);
  return luaio_yield(L);
}

void http_request_register(lua_State *L, int methods) {
  luaio_newudtype(L, &req_type, "luaio.http.request");
  lua_pushvalue(L, methods);
  lua_pushcclosure(L, req_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newmetatable(L, "luaio.http.headers");
  lua_pushcfunction(L, headers_index);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
