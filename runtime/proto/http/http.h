/*
 * http.h: the HTTP/1.1 server's parts, a protocol on the connection core (net/conn.h):
 *
 *   http_server.c    servers: options, accepting, server:close() and the graceful drain
 *   http_conn.c      a connection: parsing heads, running handlers, keep-alive, timeouts
 *   http_request.c   the request object (req) and the request body (req:read)
 *   http_response.c  the response object (res): status, headers, body, framing on the wire
 *
 * docs/internals.md walks one request through them.
 */
#ifndef LUAIO_HTTP_H
#define LUAIO_HTTP_H

#include "conn.h"
#include "http_parser.h"

#define HTTP_MAX_HEADERS 1024 /* max_headers may not be set above this */
#define DISCARD_MAX 1048576   /* body bytes the server reads and drops to keep a connection */

typedef struct hserver_s hserver_t;
typedef struct hconn_s hconn_t;
typedef struct hres_s hres_t;

struct hserver_s {
  luaio_server base;           /* first: a connection's c->server points here */
  hconn_t *conns;              /* every open connection, for server:close() */
  int handler_ref, access_ref; /* access_ref: the access-log hook, or LUA_NOREF */
  uint32_t max_header_size, max_headers, max_url, max_requests;
  uint64_t max_body_size;
  uint32_t header_timeout, keepalive_timeout, body_timeout, send_timeout, write_buffer;
  char server_header[80]; /* "Server: luaio\r\n", or "" */
  uint8_t closing;
};

/* Where a connection is between its requests. */
enum {
  H_IDLE,       /* waiting for a request: the keep-alive timeout runs */
  H_HEAD,       /* part of a head has arrived: the header timeout runs */
  H_REQUEST,    /* a handler runs (hconn.res) */
  H_DISCARD,    /* the handler is done; the rest of its body is read and dropped */
  H_DRAIN_WAIT, /* output is above the high-water mark: nothing is read or run */
  H_CLOSED
};

/* The HTTP state of a connection (its luaio_conn_ud). The request body's framing state lives here,
 * not in the response: it outlives the handler when the body has to be discarded. */
struct hconn_s {
  luaio_conn *conn;
  hserver_t *server;
  hconn_t *prev, *next; /* in server->conns */
  hres_t *res;          /* the request being served, or NULL */
  uint32_t last_len;    /* bytes of a pending head already searched */
  uint32_t requests;
  uint32_t head_len; /* the head of the request being served, at in->data + in->mark */
  uint32_t ready;    /* chunked: decoded body bytes waiting at in->data + in->off */
  struct lhttp_chunked_decoder dec;
  uint64_t body_left;   /* length-framed: bytes of the body not yet taken */
  uint64_t body_taken;  /* bytes given to the handler, or discarded */
  uint64_t discarded;   /* bytes discarded (at most DISCARD_MAX, whatever the framing) */
  uint16_t body_status; /* 400, 408 or 413 once the body is broken: the answer says so */
  uint8_t state, body_kind, body_end, expect_continue;
};

/* The response (a Lua userdata; its environment is the request table). */
struct hres_s {
  luaio_conn *conn; /* NULL once the request is over or the connection is gone */
  char *hdr;        /* headers set by the app: "Name: value\r\n" lines, or NULL */
  uint32_t hdr_len, hdr_cap;
  lua_State *reader, *writer; /* a task waiting for body bytes / for output to drain */
  int reader_ref, writer_ref;
  uint64_t content_length; /* set by the app (has_length) */
  uint64_t body_written;   /* body bytes the app gave (HEAD responses too) */
  uint64_t bytes_sent;     /* body bytes that went on the wire */
  uint16_t status;
  uint8_t minor;
  void (*takeover_end)(lua_State *L, int idx); /* set by http_res_bind, or NULL */
  unsigned head_sent : 1, finished : 1, chunked : 1, head_method : 1, keep_alive : 1,
      has_length : 1, user_server : 1, user_date : 1, aborted : 1;
};

#define HCONN(c) ((hconn_t *)luaio_conn_ud(c))
/* body_end: no more body bytes will arrive; consumed: and none wait to be taken either. */
#define BODY_CONSUMED(h) ((h)->body_end && (h)->ready == 0)

/* http_conn.c */
extern const luaio_conn_proto http_proto;
void http_accept(hserver_t *s, uv_stream_t *listener, int fd);
/* Parses the next request in c's input; when one is complete pushes handler, req, res and
 * returns 1, else answers errors itself, sets the state and returns 0. */
int http_start_request(lua_State *L, luaio_conn *c);
/* Ends the connection after its output (lingering when the client may still send). */
void http_conn_end(luaio_conn *c);
/* Whether what is left of the request body lets the connection carry another request if
 * the response ended now (a response that will close says so in its head). */
int http_body_keeps(luaio_conn *c);
/* The server is closing: the response not yet started says Connection: close, an idle
 * connection gets a short grace. */
void http_conn_closing(luaio_conn *c);
int http_done(lua_State *L);
void http_init_workers(lua_State *L);

/* http_request.c */
void http_push_request(lua_State *L, const char *method, size_t mlen, const char *target,
                       size_t tlen, const struct lhttp_target *t, const char *path, size_t plen,
                       int minor);
/* Body bytes ready at in->data + in->off now (chunked input is decoded in place); -1 for a
 * malformed chunked body. */
int64_t http_body_ready(luaio_conn *c);
/* The rest of the body is all in the input buffer (0 also when it is malformed). */
int http_body_arrived(luaio_conn *c);
/* Drops what is buffered of a body nobody reads; returns 1 when the body is complete, 0
 * when more is to come, -1 when it is malformed or more than DISCARD_MAX bytes were
 * dropped (a chunked body's length is not known before: it is counted here). */
int http_body_discard(luaio_conn *c);
int http_read(lua_State *L);
int http_tlsinfo(lua_State *L);
/* The connection is being taken over: req.headers will be made from this copy of the head. */
void http_request_keep_head(lua_State *L, int res, const char *head, size_t len);
int http_request_table(lua_State *L);
/* C.form(text): a form-encoded text as a table (http_request.c) */
int http_form(lua_State *L);
void http_request_register(lua_State *L, int methods);

/* http_response.c */
extern luaio_udtype http_res_type;
hres_t *http_check_res(lua_State *L, int arg);
/* Pushes a new response userdata for the request just parsed. */
hres_t *http_res_new(lua_State *L, luaio_conn *c, int minor, int head_method, int keep_alive);
/* The handler returned (ok) or raised: complete, replace or abort the response. */
void http_res_end(lua_State *L, hres_t *r, int ok);
/* The request is over for this response: wake whoever waits on it with err. */
void http_res_detach(lua_State *L, hres_t *r, int err);
/* Taking a connection over (res:upgrade(), websocket.upgrade): sends "101 Switching
 * Protocols" with the headers set so far and detaches the connection from HTTP (no protocol
 * on it: the caller sets its own). Bytes the client sent after the head stay in c->in.
 * res: the response's stack index. Returns NULL with nil, err pushed when the connection is
 * gone; raises when the head was sent or a request body is still unread. */
luaio_conn *http_res_takeover(lua_State *L, int res);
/* The object at stack index obj now owns the connection taken over for the response at
 * index res: end(L, idx) ends it when the handler returns (idx: where the object is). */
typedef void (*http_takeover_end)(lua_State *L, int idx);
void http_res_bind(lua_State *L, int res, int obj, http_takeover_end end);
/* Why v[0..n) cannot be a header value (a control character: response splitting), or
 * NULL; http_value_check is the same for Lua (C.value_problem). */
const char *http_value_problem(const char *v, size_t n);
int http_value_check(lua_State *L);
/* A canned response (Date, Server, Connection: close) for errors found before a handler. */
void http_reply_error(lua_State *L, luaio_conn *c, int status);
void http_response_register(lua_State *L);
/* Calls the server's access-log hook with the request table at stack index req (0: none,
 * for the server's own error answers), the status, body bytes and the client's address. */
void http_access_log(lua_State *L, luaio_conn *c, int req, int status, uint64_t bytes);
const char *http_reason(int status);

#endif
