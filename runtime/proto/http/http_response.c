/*
 * http_response.c: the response object (res) and what goes on the wire for it.
 *
 * The wire cannot be desynchronised from Lua: the server writes the framing (Content-Length
 * or chunked, never both), a Content-Length set by the app must be digits and must match
 * the body (finish raises otherwise, before anything is sent; a write past it raises and
 * aborts), a HEAD response and a 1xx/204/205/304 carry no body bytes whatever the handler
 * writes, and a response the handler abandons (it raised after sending the head, or sent
 * less than it promised) aborts the connection instead of ending the body cleanly, so
 * the client sees the cut.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "http.h"
#include "socket.h"

#define HDR_SMALL 256 /* a response's header buffer; most need one, kept in a free list */
#define HDRS_MAX 64
#define MAX_LENGTH 9007199254740992.0 /* 2^53: a Content-Length a Lua number holds exactly */

luaio_udtype http_res_type = {LUA_NOREF, NULL};

/* --- reason phrases (the IANA registry) and the Date header -------------------------------- */

const char *http_reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 102: return "Processing";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 207: return "Multi-Status";
    case 208: return "Already Reported";
    case 226: return "IM Used";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 423: return "Locked";
    case 424: return "Failed Dependency";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 506: return "Variant Also Negotiates";
    case 507: return "Insufficient Storage";
    case 508: return "Loop Detected";
    case 511: return "Network Authentication Required";
    default: return ""; /* RFC 9112 4: the reason phrase may be empty */
  }
}

static char date_line[64];
static size_t date_len;
static time_t date_sec = -1;

/* "Date: ...\r\n", formatted once a second. */
static void date_update(void) {
  time_t now = time(NULL);
  if (now == date_sec) return;
  date_sec = now;
  struct tm tm;
  gmtime_r(&now, &tm);
  date_len = strftime(date_line, sizeof date_line, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
}

/* Writes v in decimal at p; returns the length. (snprintf is slow on the hot path.) */
static size_t put_decimal(char *p, uint64_t v) {
  char tmp[24];
  size_t n = 0;
  do tmp[n++] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  for (size_t i = 0; i < n; i++) p[i] = tmp[n - 1 - i];
  return n;
}

static size_t put(char *p, const char *s, size_t n) {
  memcpy(p, s, n);
  return n;
}

#define PUT(p, lit) put((p), lit, sizeof(lit) - 1)

/* --- header buffers --------------------------------------------------------------------------- */

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

/* --- the head ----------------------------------------------------------------------------------- */

static void hdr_remove(hres_t *r, const char *name, size_t nlen);

/* No content goes on the wire: HEAD, 1xx, 204, 205 (RFC 9110 15.3.6) and 304. An app's
 * Content-Length is then not checked against the body: on HEAD and 304 it tells the
 * representation's length (RFC 9110 8.6), on 1xx, 204 and 205 it is dropped. */
static int bodyless(hres_t *r) {
  return r->head_method || r->status < 200 || r->status == 204 || r->status == 205 ||
         r->status == 304;
}

/* Writes the status line and headers. body_len < 0: chunked (HTTP/1.1) or ended by the
 * close (HTTP/1.0); otherwise the Content-Length. complete: the whole response goes now
 * (finish), so whether the connection closes after it is known and said here (RFC 9112
 * 9.6): a client that pools it would otherwise send its next request into the close. */
static void send_head(hres_t *r, luaio_conn *c, int64_t body_len, int complete) {
  hserver_t *s = HCONN(c)->server;
  if (complete && r->keep_alive && r->status >= 200 && !http_body_keeps(c)) r->keep_alive = 0;
  const char *text = http_reason(r->status);
  char *start = luaio_conn_reserve(c, r->hdr_len + strlen(text) + 256);
  r->head_sent = 1;
  if (start == NULL) { /* out of memory, or the connection is gone */
    r->aborted = 1;
    hdr_release(r);
    return;
  }
  char *p = start;
  p += PUT(p, "HTTP/1.1 ");
  p += put_decimal(p, r->status);
  *p++ = ' ';
  p += put(p, text, strlen(text));
  p += PUT(p, "\r\n");
  if (!r->user_server) p += put(p, s->server_header, strlen(s->server_header));
  if (!r->user_date) {
    date_update();
    p += put(p, date_line, date_len);
  }
  /* Connection is the server's when it writes one: an app's line (a keep-alive on a
   * connection that closes) would contradict it. */
  if (r->status >= 200 && (!r->keep_alive || r->minor == 0) && r->hdr_len)
    hdr_remove(r, "connection", 10);
  /* RFC 9110 8.6: no Content-Length on a 1xx or a 204; a 205 is framed as empty (15.3.6) */
  int no_length = r->status < 200 || r->status == 204 || r->status == 205;
  if (no_length && r->has_length) hdr_remove(r, "content-length", 14);
  if (r->hdr_len) p += put(p, r->hdr, r->hdr_len);
  if (r->status == 205) {
    p += PUT(p, "Content-Length: 0\r\n");
  } else if (!no_length && r->status != 304 && !r->has_length) {
    if (body_len >= 0) {
      p += PUT(p, "Content-Length: ");
      p += put_decimal(p, (uint64_t)body_len);
      p += PUT(p, "\r\n");
    } else if (r->minor == 1) {
      p += PUT(p, "Transfer-Encoding: chunked\r\n");
      r->chunked = 1;
    } else {
      r->keep_alive = 0; /* HTTP/1.0 without a length: the body ends with the connection */
    }
  }
  if (r->status >= 200) {
    if (!r->keep_alive)
      p += PUT(p, "Connection: close\r\n");
    else if (r->minor == 0)
      p += PUT(p, "Connection: keep-alive\r\n");
  }
  p += PUT(p, "\r\n");
  luaio_conn_commit(c, (size_t)(p - start));
  hdr_release(r);
}

/* Queues body bytes (the Lua string at idx): framed as a chunk when chunked, dropped for
 * HEAD and bodyless statuses. Returns 0 or the connection's error. */
static int add_body(lua_State *L, hres_t *r, luaio_conn *c, int idx, size_t len) {
  if (bodyless(r) || len == 0) return 0;
  r->bytes_sent += len;
  if (!r->chunked) return luaio_conn_write_lua(c, L, idx);
  char size[24];
  int n = snprintf(size, sizeof size, "%zx\r\n", len);
  int err = luaio_conn_write(c, size, (size_t)n);
  if (err == 0) err = luaio_conn_write_lua(c, L, idx);
  if (err == 0) err = luaio_conn_write(c, "\r\n", 2);
  return err;
}

/* The last chunk; the response is complete on the wire. */
static void end_body(hres_t *r, luaio_conn *c) {
  if (r->chunked && !bodyless(r)) luaio_conn_write(c, "0\r\n\r\n", 5);
  r->finished = 1;
}

/* --- the response object -------------------------------------------------------------------- */

hres_t *http_check_res(lua_State *L, int arg) {
  return luaio_checkudata(L, arg, &http_res_type, "http response");
}

hres_t *http_res_new(lua_State *L, luaio_conn *c, int minor, int head_method, int keep_alive) {
  hres_t *r = lua_newuserdata(L, sizeof *r);
  memset(r, 0, sizeof *r);
  lua_rawgeti(L, LUA_REGISTRYINDEX, http_res_type.ref);
  lua_setmetatable(L, -2);
  r->conn = c;
  r->status = 200;
  r->minor = (uint8_t)minor;
  r->head_method = (unsigned)head_method;
  r->keep_alive = (unsigned)keep_alive;
  r->reader_ref = r->writer_ref = LUA_NOREF;
  return r;
}

void http_res_detach(lua_State *L, hres_t *r, int err) {
  luaio_conn *c = r->conn;
  if (c == NULL) return;
  r->conn = NULL;
  if (HCONN(c) != NULL && HCONN(c)->res == r) HCONN(c)->res = NULL;
  hdr_release(r); /* here, not in a __gc: finalizers cost every request */
  lua_State **waiters[2] = {&r->reader, &r->writer};
  int *refs[2] = {&r->reader_ref, &r->writer_ref};
  for (int i = 0; i < 2; i++) { /* a task waiting on this request learns it is over */
    lua_State *co = *waiters[i];
    if (co == NULL) continue;
    int anchor = *refs[i];
    *waiters[i] = NULL;
    *refs[i] = LUA_NOREF;
    luaio_pusherror(L, err);
    luaio_ready(L, co, 2);
    luaio_unanchor(anchor); /* once the ready queue holds it: the pushes allocate */
  }
}

/* The answer for a request whose body broke (400, 408, 413) or whose handler failed
 * (500), in place of whatever the handler had set. */
static void send_error(lua_State *L, hres_t *r, luaio_conn *c, int status) {
  const char *text = http_reason(status);
  r->status = (uint16_t)status;
  r->hdr_len = 0;
  r->has_length = 0;
  r->keep_alive = 0;
  r->user_server = r->user_date = 0;
  send_head(r, c, (int64_t)strlen(text) + 1, 1);
  lua_pushfstring(L, "%s\n", text);
  r->body_written = strlen(text) + 1;
  add_body(L, r, c, -1, strlen(text) + 1);
  lua_pop(L, 1);
  r->finished = 1;
}

void http_res_end(lua_State *L, hres_t *r, int ok) {
  luaio_conn *c = r->conn;
  hconn_t *h = HCONN(c);
  if (!ok || h->body_status) {
    if (!r->head_sent)
      send_error(L, r, c, ok ? h->body_status : 500);
    else if (!r->finished)
      r->aborted = 1;
    r->keep_alive = 0;
    return;
  }
  if (r->finished) return;
  /* The handler returned without finish(): finish it. */
  if (!r->head_sent) send_head(r, c, r->has_length ? (int64_t)r->content_length : 0, 1);
  if (r->has_length && r->body_written != r->content_length && !bodyless(r)) {
    r->aborted = 1; /* fewer bytes than promised: the client must see the cut */
    return;
  }
  end_body(r, c);
}

/* The common start of res:write and res:finish: the response and its connection (NULL,
 * with nil, err pushed, when the connection is gone or the request body broke). */
static luaio_conn *body_call(lua_State *L, hres_t **r, size_t *len, const char *what) {
  *r = http_check_res(L, 1);
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    lua_pushliteral(L, "");
  } else if (lua_type(L, 2) != LUA_TSTRING) {
    luaL_argerror(L, 2, "string expected");
  }
  lua_tolstring(L, 2, len);
  luaio_conn *c = (*r)->conn;
  if ((*r)->finished) luaL_error(L, "%s: the response is already finished", what);
  if (c == NULL) {
    luaio_pusherror(L, UV_ENOTCONN);
    return NULL;
  }
  hconn_t *h = HCONN(c);
  if (h->body_status) { /* the server answers for the broken body when the handler ends */
    luaio_pushnamederror(L,
                         h->body_status == 408   ? "ETIMEDOUT"
                         : h->body_status == 413 ? "EMSGSIZE"
                                                 : "EBADMSG",
                         "the request body is broken: the server answers it");
    return NULL;
  }
  if ((*r)->aborted) {
    luaio_pusherror(L, UV_ECONNABORTED);
    return NULL;
  }
  return c;
}

static int push_write_result(lua_State *L, luaio_conn *c, int err) {
  if (err == 0 && c->write_err) err = c->write_err;
  if (err < 0) return luaio_pusherror(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* res:finish([data]) -> true | nil, err. Ends the response; sets Content-Length when the
 * head was not sent yet. */
static int res_finish(lua_State *L) {
  hres_t *r;
  size_t len;
  luaio_conn *c = body_call(L, &r, &len, "finish");
  if (c == NULL) return 2;
  if (!r->head_sent) {
    if (r->has_length && r->content_length != len && !(bodyless(r) && len == 0))
      return luaL_error(L, "finish: the body has %d bytes but Content-Length says %f", (int)len,
                        (double)r->content_length);
    send_head(r, c, r->has_length ? (int64_t)r->content_length : (int64_t)len, 1);
  }
  r->body_written += len;
  int err = add_body(L, r, c, 2, len);
  if (r->has_length && r->body_written != r->content_length && !bodyless(r)) {
    r->aborted = 1;
    return luaL_error(L, "finish: %f body bytes in all but Content-Length says %f",
                      (double)r->body_written, (double)r->content_length);
  }
  end_body(r, c);
  return push_write_result(L, c, err);
}

/* res:write(data) -> true | nil, err. Sends a piece of the body (chunked when no
 * Content-Length was set). Waits only when the client is far behind. */
static int res_write(lua_State *L) {
  hres_t *r;
  size_t len;
  luaio_conn *c = body_call(L, &r, &len, "write");
  if (c == NULL) return 2;
  if (!r->head_sent) send_head(r, c, r->has_length ? (int64_t)r->content_length : -1, 0);
  if (r->has_length && r->body_written + len > r->content_length && !bodyless(r)) {
    r->aborted = 1;
    return luaL_error(L, "write: the body would exceed its Content-Length of %f bytes",
                      (double)r->content_length);
  }
  r->body_written += len;
  int err = add_body(L, r, c, 2, len);
  if (err < 0 || !luaio_conn_above_high(c)) return push_write_result(L, c, err);
  luaio_conn_flush(c); /* far ahead of the client: wait until it has taken half */
  if (c->closing || !luaio_conn_above_high(c)) return push_write_result(L, c, 0);
  luaio_checktask(L, "write");
  r->writer = L;
  r->writer_ref = luaio_anchor(L);
  return luaio_yield(L);
}

/* res:status(code) -> res. A final status only: a 1xx sent as the answer would leave the
 * client waiting for the final one, and a pipelining client would take the next request's
 * response for it. Interim responses are the server's (100 Continue when the body is read,
 * 101 through res:upgrade). */
static int res_status(lua_State *L) {
  hres_t *r = http_check_res(L, 1);
  lua_Number n = luaL_checknumber(L, 2);
  luaL_argcheck(L, n >= 200 && n <= 599 && n == (lua_Number)(int)n, 2,
                "status code: an integer from 200 to 599 expected (1xx are the server's)");
  int code = (int)n;
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

/* Removes an earlier "Name: ..." line from the app's headers (setHeader replaces). */
static void hdr_remove(hres_t *r, const char *name, size_t nlen) {
  uint32_t i = 0;
  while (i < r->hdr_len) {
    char *line = r->hdr + i;
    char *end = (char *)memchr(line, '\n', r->hdr_len - i) + 1;
    uint32_t llen = (uint32_t)(end - line);
    if (llen > nlen && line[nlen] == ':' && strncasecmp(line, name, nlen) == 0) {
      memmove(line, end, r->hdr_len - i - llen);
      r->hdr_len -= llen;
    } else {
      i += llen;
    }
  }
}

/* Content-Length as the app set it: 1*DIGIT, at most 2^53. */
static int parse_length(const char *s, size_t n, uint64_t *out) {
  if (n == 0 || n > 16) return 0;
  double v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    v = v * 10 + (s[i] - '0');
  }
  if (v > MAX_LENGTH) return 0;
  *out = (uint64_t)v;
  return 1;
}

static int hdr_append(hres_t *r, const char *name, size_t nlen, const char *value, size_t vlen) {
  size_t need = r->hdr_len + nlen + vlen + 4;
  if (r->hdr == NULL && (r->hdr = nhdrs > 0 ? hdrs[--nhdrs] : malloc(HDR_SMALL)) != NULL)
    r->hdr_cap = HDR_SMALL;
  if (r->hdr == NULL) return 0;
  if (need > r->hdr_cap) {
    size_t cap = r->hdr_cap * 2;
    while (cap < need) cap *= 2;
    char *p = malloc(cap);
    if (p == NULL) return 0;
    memcpy(p, r->hdr, r->hdr_len);
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
  return 1;
}

#define IS(name, n, lit) ((n) == sizeof(lit) - 1 && strncasecmp((name), lit, (n)) == 0)

const char *http_value_problem(const char *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)v[i];
    /* CR or LF here would let a value start a new header: response splitting */
    if ((ch < 32 && ch != '\t') || ch == 127) return "control character in header value";
  }
  return NULL;
}

/* C.value_problem(s) -> why s cannot be a header value, or nothing (http.lua checks
 * server_name with it) */
int http_value_check(lua_State *L) {
  size_t n;
  const char *v = luaL_checklstring(L, 1, &n);
  const char *problem = http_value_problem(v, n);
  if (problem == NULL) return 0;
  lua_pushstring(L, problem);
  return 1;
}

/* Whether a Connection value lists "close" (RFC 9110 7.6.1: a comma-separated list). */
static int lists_close(const char *v, size_t n) {
  size_t i = 0;
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
    size_t start = i;
    while (i < n && v[i] != ',') i++;
    size_t end = i;
    while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t')) end--;
    if (IS(v + start, end - start, "close")) return 1;
  }
  return 0;
}

/* res:setHeader(name, value) -> res: replaces an earlier value of the same name.
 * res:appendHeader(name, value) -> res: one more line of that name (Set-Cookie). */
static int set_header(lua_State *L, int replace) {
  hres_t *r = http_check_res(L, 1);
  size_t nlen, vlen;
  const char *name = luaL_checklstring(L, 2, &nlen);
  luaL_argcheck(L, lua_type(L, 3) == LUA_TSTRING || lua_type(L, 3) == LUA_TNUMBER, 3,
                "string expected");
  const char *value = lua_tolstring(L, 3, &vlen);
  luaL_argcheck(L, nlen > 0 && nlen < 256, 2, "header name length 1-255 expected");
  for (size_t i = 0; i < nlen; i++)
    luaL_argcheck(L, tchar[(unsigned char)name[i]], 2, "invalid character in header name");
  const char *problem = http_value_problem(value, vlen);
  if (problem != NULL) return luaL_argerror(L, 3, problem);
  if (r->head_sent)
    return luaL_error(L, "%s: headers already sent", replace ? "setHeader" : "appendHeader");
  uint64_t length = 0;
  if (IS(name, nlen, "content-length")) {
    luaL_argcheck(L, parse_length(value, vlen, &length), 3,
                  "Content-Length must be 1 to 16 digits, at most 2^53");
  } else if (IS(name, nlen, "transfer-encoding")) {
    return luaL_argerror(L, 2, "Transfer-Encoding is set by the server");
  }
  if (r->conn == NULL) { /* the request is over: nothing will be sent */
    lua_settop(L, 1);
    return 1;
  }
  if (IS(name, nlen, "content-length")) {
    r->has_length = 1;
    r->content_length = length;
  }
  /* RFC 9112 9.6: a server that sends close must close after this response; the server
   * writes its own line then (send_head). */
  if (IS(name, nlen, "connection") && lists_close(value, vlen)) r->keep_alive = 0;
  if (IS(name, nlen, "server")) r->user_server = 1;
  if (IS(name, nlen, "date")) r->user_date = 1;
  if (replace || IS(name, nlen, "content-length")) hdr_remove(r, name, nlen);
  if (!hdr_append(r, name, nlen, value, vlen)) return luaL_error(L, "setHeader: out of memory");
  lua_settop(L, 1);
  return 1;
}

static int res_setheader(lua_State *L) { return set_header(L, 1); }
static int res_appendheader(lua_State *L) { return set_header(L, 0); }

/* res:getHeader(name) -> the value set with setHeader, or nil */
static int res_getheader(lua_State *L) {
  hres_t *r = http_check_res(L, 1);
  size_t nlen;
  const char *name = luaL_checklstring(L, 2, &nlen);
  for (uint32_t i = 0; i < r->hdr_len;) {
    const char *line = r->hdr + i;
    const char *end = memchr(line, '\n', r->hdr_len - i);
    size_t llen = (size_t)(end - line) + 1;
    if (llen > nlen + 3 && line[nlen] == ':' && strncasecmp(line, name, nlen) == 0) {
      lua_pushlstring(L, line + nlen + 2, llen - nlen - 4);
      return 1;
    }
    i += (uint32_t)llen;
  }
  return 0;
}

luaio_conn *http_res_takeover(lua_State *L, int res) {
  hres_t *r = http_check_res(L, res);
  luaio_conn *c = r->conn;
  if (c == NULL) {
    luaio_pusherror(L, UV_ENOTCONN);
    return NULL;
  }
  if (r->head_sent) luaL_error(L, "upgrade: headers already sent");
  hconn_t *h = HCONN(c);
  if (!BODY_CONSUMED(h)) luaL_error(L, "upgrade: the request has a body still to read");
  r->status = 101;
  r->keep_alive = 1;
  send_head(r, c, 0, 0);
  r->finished = 1;
  /* req.headers outlives the head in the input buffer: the request keeps the head as a
   * string (req[3]) unless its headers were already made. */
  http_request_keep_head(L, res, c->in->data + c->in->kept, h->head_len);
  luaio_conn_unkeep(c);
  http_res_detach(L, r, UV_ECANCELED);
  h->state = H_CLOSED;
  if (h->prev)
    h->prev->next = h->next;
  else
    h->server->conns = h->next;
  if (h->next) h->next->prev = h->prev;
  h->prev = h->next = NULL;
  luaio_conn_timeout(c, 0);
  luaio_conn_set_proto(c, NULL, NULL);
  return c;
}

void http_res_bind(lua_State *L, int res, int obj, http_takeover_end end) {
  hres_t *r = http_check_res(L, res);
  r->takeover_end = end;
  lua_getfenv(L, res); /* the request keeps the object, for http_done to end it */
  lua_pushvalue(L, obj);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 1);
}

static void socket_end(lua_State *L, int idx) {
  luaio_conn *c = luaio_socket_check(L, idx);
  if (c != NULL) luaio_socket_close(L, c);
}

/* res:upgrade() -> socket | nil, err: sends "101 Switching Protocols" with the headers set
 * by setHeader (Upgrade, Connection, ...) and hands the connection over to the returned
 * socket; bytes the client already sent after its head are the socket's first. The socket
 * closes when the handler returns. */
static int res_upgrade(lua_State *L) {
  http_check_res(L, 1);
  lua_settop(L, 1);
  luaio_conn *c = http_res_takeover(L, 1);
  if (c == NULL) return 2;
  int err = luaio_socket_adopt(L, c);
  if (err < 0) {
    luaio_conn_close(c, err);
    return luaio_pusherror(L, err);
  }
  http_res_bind(L, 1, 2, socket_end);
  return 1;
}

/* res.statusCode, res.headersSent, res.finished, res.bytesSent; the methods otherwise. */
static int res_index(lua_State *L) {
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  if (!lua_isnil(L, -1)) return 1;
  hres_t *r = http_check_res(L, 1);
  const char *key = lua_tostring(L, 2);
  if (key == NULL) return 0;
  if (strcmp(key, "statusCode") == 0)
    lua_pushinteger(L, r->status);
  else if (strcmp(key, "headersSent") == 0)
    lua_pushboolean(L, r->head_sent);
  else if (strcmp(key, "finished") == 0)
    lua_pushboolean(L, r->finished);
  else if (strcmp(key, "bytesSent") == 0)
    lua_pushnumber(L, (double)r->bytes_sent);
  else
    return 0;
  return 1;
}

/* res.status = code and res.statusCode = code, the seed's and node's field forms */
static int res_newindex(lua_State *L) {
  const char *key = luaL_checkstring(L, 2);
  if (strcmp(key, "status") != 0 && strcmp(key, "statusCode") != 0)
    return luaL_error(L, "response has no field '%s' to set", key);
  lua_remove(L, 2);
  return res_status(L);
}

/* --- the access log ---------------------------------------------------------------------------- */

void http_access_log(lua_State *L, luaio_conn *c, int req, int status, uint64_t bytes) {
  hserver_t *s = HCONN(c)->server;
  if (s->access_ref == LUA_NOREF) return;
  char ip[64] = "-";
  struct sockaddr_storage addr;
  if (luaio_conn_peer(c, &addr) == 0) luaio_addr_name(&addr, ip, sizeof ip);
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->access_ref);
  if (req)
    lua_pushvalue(L, req);
  else
    lua_pushnil(L); /* no request table: the hook logs "-" */
  lua_pushinteger(L, status);
  lua_pushnumber(L, (double)bytes);
  lua_pushstring(L, ip);
  if (lua_pcall(L, 4, 0, 0) != 0) fprintf(stderr, "luaio: access log: %s\n", lua_tostring(L, -1));
  lua_settop(L, top);
}

/* --- errors before a handler ------------------------------------------------------------------- */

void http_reply_error(lua_State *L, luaio_conn *c, int status) {
  hconn_t *h = HCONN(c);
  const char *text = http_reason(status);
  char head[320];
  date_update();
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\n%s%.*sContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n%s\n",
                   status, text, h->server->server_header, (int)date_len, date_line,
                   strlen(text) + 1, text);
  luaio_conn_write(c, head, (size_t)n);
  http_access_log(L, c, 0, status, strlen(text) + 1);
  http_conn_end(c);
}

static const luaL_Reg res_methods[] = {{"appendHeader", res_appendheader},
                                       {"finish", res_finish},
                                       {"getHeader", res_getheader},
                                       {"setHeader", res_setheader},
                                       {"status", res_status},
                                       {"upgrade", res_upgrade},
                                       {"write", res_write},
                                       {NULL, NULL}};

void http_response_register(lua_State *L) {
  tchar_init();
  luaio_newudtype(L, &http_res_type, "luaio.http.response");
  lua_newtable(L);
  luaL_setfuncs(L, res_methods, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "methods"); /* for http.lua's res:sendFile */
  lua_pushcclosure(L, res_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, res_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pop(L, 1);
}
