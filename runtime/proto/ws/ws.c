/*
 * ws.c: WebSocket (RFC 6455, permessage-deflate RFC 7692), a protocol on the connection core,
 * and the C half of stdlib/websocket.lua (module luaio.websocket).
 *
 * Receiving. Frames are parsed straight from the core's input buffer (c->in) as they
 * arrive: the payload is unmasked in place as its bytes arrive, a text message's UTF-8 is
 * checked as they arrive too (a bad byte closes with 1007 before the rest of the frame is
 * there), and a message that is one frame (nearly all of them), when a task waits in
 * ws:receive(), becomes its Lua string straight from the buffer. Fragments are gathered in
 * a buffer of the connection's, freed when the message is delivered. Pings are answered and
 * the peer's close echoed as they come, whether a task receives or not (a handler that only
 * sends must still answer them): a message complete while nobody receives is kept as a
 * string for receive; past in_base bytes kept, parsing stops and the input's bound holds
 * back the peer (TCP does the rest). A frame larger than that bound raises it for itself;
 * the buffer grows as the frame's bytes come, not to the length its header claims.
 *
 * Sending. A frame is its header and payload queued on the core: a large payload string is
 * referenced, not copied (server side: clients mask, so they copy). send waits only while
 * more than max_backlog bytes are queued: a slow reader holds back the writer, not memory.
 * Several tasks may wait so, in order; each message is queued when send is called. Pongs
 * are not queued while the backlog is over max_backlog: the latest ping's answer is owed,
 * and written once it drains (RFC 6455 5.5.3: only the latest ping need be answered), so a
 * peer flooding pings without reading costs nothing but the send timeout's wait.
 *
 * Publish. websocket.publish frames a message once into one Lua string (and compresses it
 * once per window size) and queues the same string on every subscriber. A subscriber whose
 * backlog is past max_backlog is dropped: it gets close 1008 after what it was sent.
 *
 * Closing. A peer's close is answered with the same code; a protocol error is answered
 * with 1002, 1007 or 1009. The server then ends the TCP connection once the close frame is
 * written (lingering so the peer reads it rather than a reset). ws:close() waits for the
 * peer's close for close_timeout. A connection taken from an HTTP request closes when the
 * handler returns (http_res_bind).
 *
 * Timeouts: one deadline on the core. While open: ping_interval after the last bytes
 * received, a ping; idle_timeout after them, the connection is dropped (ETIMEDOUT). While a
 * send waits for the backlog to drain (or a pong is owed), the core's send timeout holds the
 * deadline instead: a peer that keeps sending but reads nothing is not idle, yet must not
 * hold us forever.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "http.h"
#include "socket.h"
#include "ws.h"

#define LINGER_MS 2000 /* how long an ending connection reads what the peer still sends */
#define REF_MIN 4096   /* payload strings at least this long are referenced (conn.c's) */

enum { S_OPEN, S_CLOSING, S_CLOSED }; /* S_CLOSING: our close frame went, the peer's has not come */
enum { T_NONE, T_ACTIVE, T_PINGED, T_CLOSING };
enum { P_WAIT, P_MESSAGE, P_END };

typedef struct {
  luaio_conn *conn;                    /* NULL once the connection is gone */
  lua_State *reader, *closer; /* tasks waiting in receive, close */
  int reader_ref, closer_ref;
  int writers_ref; /* a table: the tasks waiting in send (or ping), in order */
  int held_ref;    /* a table: messages parsed while nobody received (data, kind, ...) */
  uint32_t nwriters, held_first, held_last; /* held: slots [held_first, held_last) */
  size_t held_bytes;
  int pong_ref, protocol_ref, ext_ref, reason_ref;
  uint8_t *msg; /* a fragmented message's payload so far (compressed, when it is) */
  size_t msg_len, msg_cap;
  uint64_t max_message;
  uint64_t seen;        /* payload bytes of the current frame unmasked (and checked) in place */
  ws_header h;          /* the current frame's header, while hlen > 0 */
  void *inflater;       /* the peer keeps its compression context: our inflate stream */
  const char *err_name; /* why the connection ended ("CLOSED", "EPROTO", ...), or NULL */
  uint32_t utf8;        /* the text message's UTF-8 state */
  uint32_t idle_ms, ping_ms, close_ms, send_ms, in_base;
  uint32_t rx_at; /* loop time (ms) of the last bytes received, while the timer is T_ACTIVE */
  uint16_t close_code; /* CLOSED: the peer's code (1005: none given, 1006: no close frame) */
  uint8_t hlen, op, frag, deflated, state, timer, client, pmd, pmd_bits, peer_takeover, big, clean;
  uint8_t pong_owed, pong_len; /* the latest ping's answer, owed while the output is full */
  uint8_t pong[125];
} ws_t;

typedef struct {
  const uint8_t *p;
  size_t len;
  uint32_t consume; /* input bytes to consume once delivered (in place), else 0 */
  uint8_t op, from_msg;
} ws_msg;

static luaio_udtype ws_type = {LUA_NOREF, NULL};
/* The last text message receive returned, when of a size worth it: sending the same string
 * as text again (an echo, a chat relay) skips checking its UTF-8 a second time. */
static int last_text_ref = LUA_NOREF;
#define RECHECK_MIN 1024
#define RECHECK_MAX (1u << 20)
static int topics_ref = LUA_NOREF; /* registry: topic -> {[lightuserdata ws_t] = ws} */
static int mine_ref = LUA_NOREF;   /* registry: [lightuserdata ws_t] -> {[topic] = true} */
static const luaio_conn_proto ws_proto;

static void detach(lua_State *L, ws_t *w);
static void finish(lua_State *L, ws_t *w, unsigned linger);
static int pump(lua_State *L, ws_t *w, ws_msg *m);

/* --- randomness for masks and keys ------------------------------------------------------------ */

static uint8_t rnd_pool[4096];
static size_t rnd_left;

/* n <= 16 random bytes from the kernel's generator, fetched 4 KiB at a time. */
static void random_bytes(uint8_t *out, size_t n) {
  if (rnd_left < n) {
    size_t got = 0;
    while (got < sizeof rnd_pool) {
      ssize_t r = getrandom(rnd_pool + got, sizeof rnd_pool - got, 0);
      if (r < 0 && errno != EINTR) abort(); /* no entropy at all: nothing safe to do */
      if (r > 0) got += (size_t)r;
    }
    rnd_left = sizeof rnd_pool;
  }
  memcpy(out, rnd_pool + sizeof rnd_pool - rnd_left, n);
  rnd_left -= n;
}

/* --- output -------------------------------------------------------------------------------------- */

static int write_state(luaio_conn *c) {
  if (c->write_err) return c->write_err;
  return c->closing || c->ending ? UV_ENOTCONN : UV_ENOMEM;
}

/* Queues one frame. idx: the Lua string holding the payload, to be referenced when large
 * (a server's uncompressed payload), or 0. A client masks with a fresh key per frame. */
__attribute__((noinline)) static int write_frame(ws_t *w, lua_State *L, int op, int rsv,
                                                 const uint8_t *p, size_t n, int idx) {
  luaio_conn *c = w->conn;
  uint8_t key[4];
  if (w->client) random_bytes(key, 4);
  if (!w->client && idx != 0 && n >= REF_MIN) {
    uint8_t head[WS_MAX_HEADER];
    size_t hl = ws_write_header(head, 1, rsv, op, n, NULL);
    int err = luaio_conn_write(c, (const char *)head, hl);
    return err ? err : luaio_conn_write_lua(c, L, idx);
  }
  uint8_t *out = (uint8_t *)luaio_conn_reserve(c, n + WS_MAX_HEADER);
  if (out == NULL) return write_state(c);
  size_t hl = ws_write_header(out, 1, rsv, op, n, w->client ? key : NULL);
  if (w->client)
    ws_mask_copy(out + hl, p, n, key);
  else if (n > 0)
    memcpy(out + hl, p, n);
  luaio_conn_commit(c, hl + n);
  return c->write_err;
}

/* A close frame: code (0: none) and reason (rlen bytes: it may hold NULs), cut to the 123
 * bytes a control frame allows. */
__attribute__((noinline)) static void write_close(ws_t *w, lua_State *L, unsigned code,
                                                  const char *reason, size_t rlen) {
  uint8_t body[125];
  size_t n = 0;
  if (code != 0) {
    if (reason == NULL) rlen = 0;
    if (rlen > 123) rlen = 123;
    body[0] = (uint8_t)(code >> 8);
    body[1] = (uint8_t)code;
    if (rlen > 0) memcpy(body + 2, reason, rlen);
    n = 2 + rlen;
  }
  write_frame(w, L, WS_CLOSE, 0, body, n, 0);
}

/* A data message: compressed when permessage-deflate was agreed. (noinline: send yields,
 * and a yielding frame must hold no address-taken locals; see docs/internals.md.) */
__attribute__((noinline)) static int write_message(ws_t *w, lua_State *L, int op, const uint8_t *p,
                                                   size_t n, int idx) {
  if (!w->pmd) return write_frame(w, L, op, 0, p, n, idx);
  const uint8_t *z;
  size_t zlen;
  if (ws_deflate(w->pmd_bits, p, n, &z, &zlen) < 0) return UV_ENOMEM;
  int err = write_frame(w, L, op, 4, z, zlen, 0);
  ws_scratch_trim();
  return err;
}

/* --- waiters and the end ----------------------------------------------------------------------- */

static ws_t *check_ws(lua_State *L, int arg) {
  return luaio_checkudata(L, arg, &ws_type, "websocket");
}

/* Pushes the error that ended the connection (nil, err); returns 2. */
static int push_end(lua_State *L, ws_t *w) {
  lua_pushnil(L);
  const char *name = w->err_name ? w->err_name : "CLOSED";
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->reason_ref);
  size_t rlen = 0;
  const char *reason = lua_isstring(L, -1) ? lua_tolstring(L, -1, &rlen) : "";
  if (strcmp(name, "CLOSED") == 0) {
    unsigned code = w->close_code ? w->close_code : 1006;
    lua_pushfstring(L, "closed: %d%s%s", (int)code, *reason ? " " : "", reason);
    luaio_newerror(L, (int)code, "CLOSED", lua_tostring(L, -1));
    lua_pushlstring(L, reason, rlen); /* whole: a reason may hold NULs */
    lua_setfield(L, -2, "reason");
    lua_replace(L, -3);
    lua_pop(L, 1);
  } else {
    luaio_namederror(L, name, *reason ? reason : NULL);
    lua_replace(L, -2);
  }
  return 2;
}

/* Records why the connection ends, unless it is already known. */
static void set_end(lua_State *L, ws_t *w, const char *name, unsigned code, const char *reason,
                    size_t rlen) {
  if (w->err_name != NULL) return;
  w->err_name = name;
  w->close_code = (uint16_t)code;
  lua_pushlstring(L, reason ? reason : "", reason ? rlen : 0);
  w->reason_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Wakes a waiting task (through the ready queue: this may run inside another task's call):
 * with true when ok, else with the connection's end. */
static void ready(lua_State *L, ws_t *w, lua_State *t, int ok) {
  if (ok) {
    lua_pushboolean(L, 1);
    luaio_ready(L, t, 1);
  } else {
    push_end(L, w);
    luaio_ready(L, t, 2);
  }
}

static void wake(lua_State *L, ws_t *w, lua_State **co, int *ref, int ok) {
  lua_State *t = *co;
  if (t == NULL) return;
  int anchor = *ref;
  *co = NULL;
  *ref = LUA_NOREF;
  ready(L, w, t, ok);
  luaio_unanchor(anchor); /* once the ready queue holds it: the pushes allocate */
}

/* Wakes every task waiting in send, in the order they came: with true when ok, else with
 * the connection's end. The table keeps each one alive until the ready queue holds it. */
static void wake_writers(lua_State *L, ws_t *w, int ok) {
  uint32_t n = w->nwriters;
  if (n == 0) return;
  w->nwriters = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->writers_ref);
  for (uint32_t i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, (int)i);
    lua_State *t = lua_tothread(L, -1);
    lua_pop(L, 1);
    ready(L, w, t, ok);
    lua_pushnil(L);
    lua_rawseti(L, -2, (int)i);
  }
  lua_pop(L, 1);
}

static void light_key(lua_State *L, ws_t *w) { lua_pushlightuserdata(L, w); }

/* Removes w from every topic it subscribed to. */
static void unsubscribe_all(lua_State *L, ws_t *w) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, mine_ref);
  light_key(L, w);
  lua_rawget(L, -2);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 2);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, topics_ref); /* mine_all, mine, topics */
  lua_pushnil(L);
  while (lua_next(L, -3) != 0) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3); /* topics[topic] */
    if (lua_istable(L, -1)) {
      light_key(L, w);
      lua_pushnil(L);
      lua_rawset(L, -3);
      lua_pushnil(L);
      if (lua_next(L, -2) == 0) { /* empty: the topic goes */
        lua_pushvalue(L, -2);
        lua_pushnil(L);
        lua_rawset(L, -5);
      } else {
        lua_pop(L, 2);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  light_key(L, w);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

static void release_message(ws_t *w) {
  free(w->msg);
  w->msg = NULL;
  w->msg_len = w->msg_cap = 0;
}

/* The connection is gone (or ours no more): state released, every waiter told. */
static void detach(lua_State *L, ws_t *w) {
  luaio_conn *c = w->conn;
  if (c != NULL) {
    luaio_conn_ud(c) = NULL;
    w->conn = NULL;
  }
  w->state = S_CLOSED;
  w->hlen = 0;
  release_message(w);
  ws_inflate_free(&w->inflater);
  unsubscribe_all(L, w);
  wake(L, w, &w->reader, &w->reader_ref, 0);
  wake_writers(L, w, 0);
  wake(L, w, &w->closer, &w->closer_ref, w->clean);
}

/* Ends the connection once what is queued (our close frame) is written. */
static void finish(lua_State *L, ws_t *w, unsigned linger) {
  luaio_conn *c = w->conn;
  if (c == NULL) return;
  if (c->read_err) linger = 0;
  detach(L, w);
  luaio_conn_end(c, linger);
}

/* The peer broke the protocol: close with code, and the connection ends. */
static int fail(lua_State *L, ws_t *w, unsigned code, const char *why) {
  if (w->state == S_OPEN) write_close(w, L, code, why, strlen(why));
  const char *name = code == 1007   ? "EILSEQ"
                     : code == 1009 ? "EMSGSIZE"
                     : code == 1011 ? "ENOMEM"
                                    : "EPROTO";
  set_end(L, w, name, code, why, strlen(why));
  finish(L, w, LINGER_MS);
  return P_END;
}

/* --- timers ------------------------------------------------------------------------------------- */

static uint32_t loop_now(void) { return (uint32_t)uv_now(luaio_loop()); }

/* While open: the first of ping_interval and idle_timeout. */
static uint32_t first_timeout(ws_t *w) {
  return w->ping_ms && (!w->idle_ms || w->ping_ms < w->idle_ms) ? w->ping_ms : w->idle_ms;
}

/* Output waits for a peer that does not read: tasks wait in send, or a pong is owed. */
static int blocked(ws_t *w) { return w->nwriters > 0 || w->pong_owed; }

/* While blocked, the core's send timeout holds the deadline instead of the idle timer: a
 * peer that keeps sending but reads nothing is not idle, yet must not hold us forever. */
static void hold_for_send(ws_t *w) {
  if (w->timer == T_ACTIVE || w->timer == T_PINGED) {
    w->timer = T_NONE;
    luaio_conn_timeout(w->conn, 0);
  }
}

/* The deadline runs from the last bytes received. */
static void arm_active(ws_t *w) {
  if (w->state != S_OPEN || w->conn == NULL || blocked(w)) return;
  uint32_t first = first_timeout(w);
  w->timer = first ? T_ACTIVE : T_NONE;
  w->rx_at = loop_now();
  luaio_conn_timeout(w->conn, first);
}

/* Bytes arrived. While the deadline runs (T_ACTIVE), it is not moved for every message
 * (a clock read and a list move each): on_timeout moves it then, by what arrived since. */
static void received(ws_t *w) {
  if (w->timer == T_ACTIVE)
    w->rx_at = loop_now();
  else
    arm_active(w);
}

static void on_timeout(lua_State *L, luaio_conn *c) {
  ws_t *w = luaio_conn_ud(c);
  if (w->timer == T_ACTIVE) {
    uint32_t quiet = loop_now() - w->rx_at, first = first_timeout(w);
    if (quiet < first) { /* bytes came meanwhile: the deadline moves on from them */
      luaio_conn_timeout(c, first - quiet);
      return;
    }
  }
  if (w->timer == T_ACTIVE && w->ping_ms && (!w->idle_ms || w->ping_ms < w->idle_ms)) {
    write_frame(w, L, WS_PING, 0, NULL, 0, 0);
    w->timer = w->idle_ms ? T_PINGED : T_ACTIVE;
    luaio_conn_timeout(c, w->idle_ms ? w->idle_ms - w->ping_ms : w->ping_ms);
    return;
  }
  const char *why = w->timer == T_CLOSING ? "the peer did not answer the close in close_timeout"
                                          : "nothing received for idle_timeout";
  set_end(L, w, "ETIMEDOUT", 0, why, strlen(why));
  luaio_conn_close(c, UV_ETIMEDOUT);
}

/* --- receiving ------------------------------------------------------------------------------------ */

/* Checks a new frame's header against the connection's state: NULL, or why it is refused. */
static const char *refused(ws_t *w, unsigned *code) {
  ws_header *h = &w->h;
  *code = 1002;
  if (h->opcode > WS_PONG || (h->opcode > WS_BINARY && h->opcode < WS_CLOSE))
    return "reserved opcode";
  int allowed = w->pmd && (h->opcode == WS_TEXT || h->opcode == WS_BINARY) ? 4 : 0;
  if (h->rsv & ~allowed) return "reserved bits set";
  if (h->masked == w->client)
    return w->client ? "masked frame from the server" : "unmasked frame from the client";
  if (h->opcode == WS_CONT && !w->frag) return "continuation frame without a message";
  if ((h->opcode == WS_TEXT || h->opcode == WS_BINARY) && w->frag)
    return "new message inside a fragmented one";
  if (h->opcode < WS_CLOSE && w->msg_len + h->len > w->max_message) {
    *code = 1009;
    return "message larger than max_message_size";
  }
  return NULL;
}

/* A new frame header of n bytes was parsed: check it, and let the input hold the whole
 * frame. The buffer is not grown to the length claimed here: it grows (doubling) as the
 * bytes come, so a peer that only claims large frames costs nothing. */
static int frame_start(lua_State *L, ws_t *w, int n) {
  luaio_conn *c = w->conn;
  unsigned code;
  const char *why = refused(w, &code);
  if (why != NULL) return fail(L, w, code, why);
  w->hlen = (uint8_t)n;
  w->seen = 0;
  if (w->h.opcode == WS_TEXT || w->h.opcode == WS_BINARY) {
    w->op = w->h.opcode;
    w->deflated = (w->h.rsv & 4) != 0;
    w->utf8 = WS_UTF8_OK;
  }
  uint64_t total = (uint64_t)n + w->h.len;
  if (total > c->in_max) { /* this frame only: the bound goes back once it is consumed */
    c->in_max = (uint32_t)total;
    w->big = 1;
    luaio_conn_consume(c, 0); /* reading, paused at the old bound, goes on */
  }
  return P_WAIT;
}

/* Consumes the frame just handled. */
static void frame_done(ws_t *w, uint64_t total) {
  luaio_conn *c = w->conn;
  w->hlen = 0;
  luaio_conn_consume(c, (uint32_t)total);
  if (w->big) {
    w->big = 0;
    c->in_max = w->in_base;
  }
}

/* No complete frame: wait, unless the input has ended (a peer gone without a close). */
static int no_frame(lua_State *L, ws_t *w) {
  luaio_conn *c = w->conn;
  if (c->read_err == 0) return P_WAIT;
  set_end(L, w, "CLOSED", 1006, NULL, 0);
  finish(L, w, 0);
  return P_END;
}

static void call_on_pong(lua_State *L, ws_t *w, const uint8_t *p, size_t n) {
  if (w->pong_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->pong_ref);
  lua_pushlstring(L, (const char *)p, n);
  if (lua_pcall(L, 1, 0, 0) != 0) {
    fprintf(stderr, "luaio: websocket on_pong: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

static int on_close_frame(lua_State *L, ws_t *w, const uint8_t *p, size_t n) {
  unsigned code = 1005;
  if (n == 1) return fail(L, w, 1002, "close frame with a one-byte payload");
  if (n >= 2) {
    code = (unsigned)p[0] << 8 | p[1];
    if (!ws_close_code_valid(code)) return fail(L, w, 1002, "invalid close code");
    uint32_t st = WS_UTF8_OK;
    if (ws_utf8(&st, p + 2, n - 2) < 0 || st != WS_UTF8_OK)
      return fail(L, w, 1007, "invalid UTF-8 in the close reason");
  }
  if (w->state == S_OPEN) write_close(w, L, code == 1005 ? 0 : code, NULL, 0); /* echo the code */
  set_end(L, w, "CLOSED", code, n > 2 ? (const char *)p + 2 : NULL, n > 2 ? n - 2 : 0);
  w->clean = 1;
  finish(L, w, LINGER_MS);
  return P_END;
}

/* A complete control frame (its payload copied out of the input, which is consumed). */
__attribute__((noinline)) static int control(lua_State *L, ws_t *w, const uint8_t *payload,
                                             size_t n, uint64_t total) {
  uint8_t p[125];
  int op = w->h.opcode;
  if (n > 0) memcpy(p, payload, n);
  frame_done(w, total);
  if (op == WS_PING) {
    if (w->state != S_OPEN) return P_WAIT;
    if (luaio_conn_above_high(w->conn)) { /* 5.5.3: only the latest ping need be answered */
      memcpy(w->pong, p, n);
      w->pong_len = (uint8_t)n;
      w->pong_owed = 1;
      hold_for_send(w);
    } else {
      write_frame(w, L, WS_PONG, 0, p, n, 0);
    }
    return P_WAIT;
  }
  if (op == WS_PONG) {
    call_on_pong(L, w, p, n);
    return w->conn ? P_WAIT : P_END;
  }
  return on_close_frame(L, w, p, n);
}

static int append(ws_t *w, const uint8_t *p, size_t n) {
  if (n == 0) return 0;
  if (w->msg_len + n > w->msg_cap) {
    size_t cap = w->msg_cap ? w->msg_cap : 4096;
    while (cap < w->msg_len + n) cap *= 2;
    uint8_t *m = realloc(w->msg, cap);
    if (m == NULL) return -1;
    w->msg = m;
    w->msg_cap = cap;
  }
  memcpy(w->msg + w->msg_len, p, n);
  w->msg_len += n;
  return 0;
}

/* The message (p, n as received) is complete: inflate and check it into m. */
static int complete(lua_State *L, ws_t *w, const uint8_t *p, size_t n, ws_msg *m) {
  m->op = w->op;
  m->p = p;
  m->len = n;
  if (w->deflated) {
    int r =
        ws_inflate(w->peer_takeover ? &w->inflater : NULL, p, n, w->max_message, &m->p, &m->len);
    if (r == WS_INFLATE_TOO_BIG) return fail(L, w, 1009, "message larger than max_message_size");
    if (r == WS_INFLATE_NOMEM) return fail(L, w, 1011, "out of memory");
    if (r < 0) return fail(L, w, 1007, "invalid compressed data");
    if (w->op == WS_TEXT && (ws_utf8(&w->utf8, m->p, m->len) < 0 || w->utf8 != WS_UTF8_OK))
      return fail(L, w, 1007, "invalid UTF-8 in a text message");
  } else if (w->op == WS_TEXT && w->utf8 != WS_UTF8_OK) {
    return fail(L, w, 1007, "invalid UTF-8 in a text message");
  }
  w->op = 0;
  return P_MESSAGE;
}

/* Parses what is buffered until a data message is complete (P_MESSAGE: m says where; the
 * caller pushes it, then message_done), more bytes are needed (P_WAIT), or the connection
 * ended (P_END; every waiter was told). */
__attribute__((noinline)) static int pump(lua_State *L, ws_t *w, ws_msg *m) {
  for (;;) {
    luaio_conn *c = w->conn;
    if (c == NULL) return P_END;
    luaio_inbuf *in = c->in;
    size_t avail = in ? in->len - in->off : 0;
    if (w->hlen == 0) {
      int n = ws_parse_header(in ? (uint8_t *)in->data + in->off : NULL, avail, &w->h);
      if (n == WS_INCOMPLETE) return no_frame(L, w);
      if (n == WS_ERROR) return fail(L, w, 1002, "malformed frame header");
      if (frame_start(L, w, n) != P_WAIT) return P_END;
      in = c->in; /* reserving may have moved it */
    }
    uint8_t *p = (uint8_t *)in->data + in->off + w->hlen;
    uint64_t have = avail - w->hlen < w->h.len ? avail - w->hlen : w->h.len;
    if (have > w->seen) { /* new payload bytes: unmask in place; text is checked as it comes */
      size_t k = (size_t)(have - w->seen);
      if (w->h.masked) ws_unmask(p + w->seen, k, w->h.mask, w->seen);
      if (w->h.opcode < WS_CLOSE && w->op == WS_TEXT && !w->deflated &&
          ws_utf8(&w->utf8, p + w->seen, k) < 0)
        return fail(L, w, 1007, "invalid UTF-8 in a text message");
      w->seen = have;
    }
    if (have < w->h.len) return no_frame(L, w);
    size_t len = (size_t)w->h.len;
    uint64_t total = w->hlen + w->h.len;
    if (w->h.opcode >= WS_CLOSE) {
      int r = control(L, w, p, len, total);
      if (r != P_WAIT) return r;
      continue;
    }
    if (w->state != S_OPEN) { /* closing: data is dropped until the peer's close */
      frame_done(w, total);
      if (w->h.fin)
        w->op = w->frag = 0;
      else
        w->frag = 1;
      w->msg_len = 0;
      continue;
    }
    if (w->h.fin && !w->frag) { /* a whole message in one frame: delivered from the buffer */
      int r = complete(L, w, p, len, m);
      if (r != P_MESSAGE) return r;
      m->from_msg = 0;
      m->consume = (uint32_t)total;
      if (w->deflated) { /* inflated into the shared buffer: the input can go now */
        frame_done(w, total);
        m->consume = 0;
      }
      return P_MESSAGE;
    }
    if (append(w, p, len) < 0) return fail(L, w, 1011, "out of memory");
    frame_done(w, total);
    if (!w->h.fin) {
      w->frag = 1;
      continue;
    }
    w->frag = 0;
    int r = complete(L, w, w->msg, w->msg_len, m);
    if (r != P_MESSAGE) return r;
    m->from_msg = 1;
    m->consume = 0;
    return P_MESSAGE;
  }
}

/* The delivered message's bytes are released. */
static void message_done(ws_t *w, ws_msg *m) {
  if (m->consume && w->conn != NULL) frame_done(w, m->consume);
  if (m->from_msg) release_message(w);
  if (w->deflated) ws_scratch_trim();
}

/* Pushes data, "text" | "binary" on co; returns 2. */
static int push_message(lua_State *co, ws_t *w, ws_msg *m) {
  lua_pushlstring(co, (const char *)m->p, m->len);
  if (m->op == WS_TEXT && m->len >= RECHECK_MIN && m->len <= RECHECK_MAX) {
    lua_pushvalue(co, -1);
    lua_rawseti(co, LUA_REGISTRYINDEX, last_text_ref);
  }
  if (m->op == WS_TEXT)
    lua_pushliteral(co, "text");
  else
    lua_pushliteral(co, "binary");
  message_done(w, m);
  return 2;
}

/* --- messages kept for receive ----------------------------------------------------------- */

static int held_empty(ws_t *w) { return w->held_first == w->held_last; }

/* A message parsed while nobody receives: kept as a string (and its kind) for receive. */
__attribute__((noinline)) static void hold_message(lua_State *L, ws_t *w, ws_msg *m) {
  if (w->held_ref == LUA_NOREF) {
    lua_newtable(L);
    w->held_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (held_empty(w)) w->held_first = w->held_last = 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->held_ref);
  lua_pushlstring(L, (const char *)m->p, m->len);
  lua_rawseti(L, -2, (int)w->held_last);
  lua_pushboolean(L, m->op == WS_BINARY);
  lua_rawseti(L, -2, (int)w->held_last + 1);
  lua_pop(L, 1);
  w->held_last += 2;
  w->held_bytes += m->len;
  message_done(w, m);
}

/* Pushes the oldest kept message: data, "text" | "binary"; returns 2. */
static int push_held(lua_State *L, ws_t *w) {
  int i = (int)w->held_first;
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->held_ref);
  lua_rawgeti(L, -1, i);
  lua_rawgeti(L, -2, i + 1);
  int binary = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_rawseti(L, -3, i);
  lua_pushnil(L);
  lua_rawseti(L, -3, i + 1);
  lua_remove(L, -2);
  w->held_bytes -= lua_objlen(L, -1);
  w->held_first += 2;
  if (binary)
    lua_pushliteral(L, "binary");
  else
    lua_pushliteral(L, "text");
  return 2;
}

/* Nobody receives: what has arrived is parsed anyway, so that pings and the peer's close
 * are answered as they come (RFC 6455 5.5.1, 5.5.2), and each complete message is kept for
 * receive. Past in_base bytes kept, parsing stops until receive takes some: the input then
 * fills to its bound and reading pauses, holding the peer back. While closing, messages
 * are dropped until the peer's close. */
__attribute__((noinline)) static void parse_ahead(lua_State *L, ws_t *w) {
  ws_msg m;
  while (w->conn != NULL && (w->state != S_OPEN || w->held_bytes < w->in_base)) {
    if (pump(L, w, &m) != P_MESSAGE) return;
    if (w->state == S_OPEN)
      hold_message(L, w, &m);
    else
      message_done(w, &m);
  }
}

static void on_read(lua_State *L, luaio_conn *c) {
  ws_t *w = luaio_conn_ud(c);
  if (c->read_err == 0 && w->timer != T_CLOSING) received(w); /* bytes: the peer lives */
  if (w->reader != NULL) {
    ws_msg m;
    int r = pump(L, w, &m);
    if (r != P_MESSAGE) return; /* P_END: detach told the reader */
    lua_State *co = w->reader;
    int anchor = w->reader_ref;
    w->reader = NULL;
    w->reader_ref = LUA_NOREF;
    push_message(co, w, &m); /* allocates: the task stays anchored meanwhile */
    luaio_resume(co, 2);
    luaio_unanchor(anchor);
    /* The answer leaves now (as in socket.c). w is not read: the task may have ended and
     * the collector finalized it; a detached connection's state pointer is cleared. */
    if (luaio_conn_ud(c) == w && c->proto == &ws_proto && !c->closing) {
      luaio_conn_flush(c);
      if (w->reader == NULL) parse_ahead(L, w); /* the task went on to something else */
    }
  } else {
    parse_ahead(L, w);
  }
}

static void on_drain(lua_State *L, luaio_conn *c) {
  ws_t *w = luaio_conn_ud(c);
  if (c->write_err) { /* the peer is gone */
    luaio_conn_close(c, c->write_err);
    return;
  }
  if (w->pong_owed && !luaio_conn_above_high(c)) {
    w->pong_owed = 0;
    if (w->state == S_OPEN) write_frame(w, L, WS_PONG, 0, w->pong, w->pong_len, 0);
  }
  wake_writers(L, w, 1);
  if (w->timer == T_NONE) arm_active(w);
}

static void on_close(lua_State *L, luaio_conn *c, int err) {
  ws_t *w = luaio_conn_ud(c);
  if (w == NULL) return;
  if (err == UV_ETIMEDOUT)
    set_end(L, w, "ETIMEDOUT", 0, NULL, 0);
  else
    set_end(L, w, "CLOSED", 1006, NULL, 0);
  detach(L, w);
}

static const luaio_conn_proto ws_proto = {on_read, on_drain, on_timeout, on_close, NULL};

/* --- the object -------------------------------------------------------------------------------- */

/* A registry reference to options[name], or LUA_NOREF. */
static int opt_ref(lua_State *L, int opts, const char *name) {
  lua_getfield(L, opts, name);
  if (!lua_isnil(L, -1)) return luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  return LUA_NOREF;
}

/* Pushes a new websocket, not yet on a connection, with the options at opts (checked by
 * websocket.lua; the readers check ranges again). Options are read before any connection is
 * taken over, into the object itself: an option error leaves nothing half done. */
static ws_t *ws_new(lua_State *L, int opts, int client) {
  ws_t *w = lua_newuserdata(L, sizeof *w);
  memset(w, 0, sizeof *w);
  w->reader_ref = w->closer_ref = w->writers_ref = w->held_ref = LUA_NOREF;
  w->pong_ref = w->protocol_ref = w->ext_ref = w->reason_ref = LUA_NOREF;
  w->state = S_CLOSED;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ws_type.ref);
  lua_setmetatable(L, -2);
  w->client = (uint8_t)client;
  w->max_message = luaio_opt_uint(L, opts, "max_message_size", 16u << 20, 1, 1u << 30);
  w->ping_ms = luaio_ms32(luaio_opt_ms(L, opts, "ping_interval", 30000));
  w->idle_ms = luaio_ms32(luaio_opt_ms(L, opts, "idle_timeout", 60000));
  w->close_ms = luaio_ms32(luaio_opt_ms(L, opts, "close_timeout", 5000));
  w->send_ms = luaio_ms32(luaio_opt_ms(L, opts, "send_timeout", 60000));
  w->pmd_bits = (uint8_t)luaio_opt_uint(L, opts, "deflate_bits", 0, 0, 15); /* 0: none */
  w->pmd = w->pmd_bits != 0;
  w->peer_takeover = (uint8_t)luaio_opt_bool(L, opts, "peer_takeover", 0);
  /* max_backlog is kept in in_base until attach puts it on the connection */
  w->in_base = (uint32_t)luaio_opt_uint(L, opts, "max_backlog", 1u << 20, 1, 1u << 30);
  w->pong_ref = opt_ref(L, opts, "on_pong");
  w->protocol_ref = opt_ref(L, opts, "protocol");
  w->ext_ref = opt_ref(L, opts, "extensions");
  return w;
}

/* The websocket takes connection c over. */
static void ws_attach(ws_t *w, luaio_conn *c) {
  w->conn = c;
  w->state = S_OPEN;
  c->high_water = w->in_base;
  c->send_timeout = w->send_ms;
  /* The input's usual bound: a frame of up to 64 KiB fits without raising it. */
  uint64_t base = w->max_message + WS_MAX_HEADER;
  w->in_base = (uint32_t)(base < 16384                   ? 16384
                          : base > 65536 + WS_MAX_HEADER ? 65536 + WS_MAX_HEADER
                                                         : base);
  c->in_max = w->in_base;
  luaio_conn_set_proto(c, &ws_proto, w);
  luaio_conn_read_start(c);
  arm_active(w);
}

/* The handler that took the connection over returned: the websocket closes (1000). */
static void ws_end(lua_State *L, int idx) {
  ws_t *w = lua_touserdata(L, idx);
  if (w == NULL || w->conn == NULL) return;
  if (w->state == S_OPEN) {
    write_close(w, L, 1000, NULL, 0);
    set_end(L, w, "CLOSED", 1000, NULL, 0);
  }
  finish(L, w, LINGER_MS);
}

/* --- Lua methods ----------------------------------------------------------------------------------- */

/* ws:receive() -> data, "text" | "binary" | nil, err */
__attribute__((noinline)) static int try_receive(lua_State *L, ws_t *w) {
  if (!held_empty(w)) {
    int n = push_held(L, w);
    parse_ahead(L, w); /* parsing may have stopped at the bound */
    return n;
  }
  ws_msg m;
  int r = pump(L, w, &m);
  if (r == P_MESSAGE) return push_message(L, w, &m);
  if (r == P_END) return push_end(L, w);
  return 0;
}

static int ws_receive(lua_State *L) {
  ws_t *w = check_ws(L, 1);
  if (w->reader != NULL)
    return luaio_pushnamederror(L, "EBUSY", "another task is already receiving");
  int n = try_receive(L, w);
  if (n > 0) return n;
  luaio_checktask(L, "receive");
  w->reader = L;
  w->reader_ref = luaio_anchor(L);
  return luaio_yield(L);
}

/* After queuing: wait while the backlog is above max_backlog. */
static int sent(lua_State *L, ws_t *w, int err) {
  luaio_conn *c = w->conn;
  if (c == NULL) return push_end(L, w); /* the write found the connection broken */
  if (err < 0) return luaio_pusherror(L, err);
  if (luaio_conn_above_high(c)) luaio_conn_flush(c);
  if (c->write_err) return luaio_pusherror(L, c->write_err);
  if (!luaio_conn_above_high(c)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  /* The message is queued: this task waits, after any that already wait (never EBUSY: a
   * failure must not be reported for a message that will be sent). */
  luaio_checktask(L, "send");
  if (w->writers_ref == LUA_NOREF) {
    lua_newtable(L);
    w->writers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->writers_ref);
  lua_pushthread(L);
  lua_rawseti(L, -2, (int)++w->nwriters);
  lua_pop(L, 1);
  hold_for_send(w);
  return luaio_yield(L);
}

static int closed_for_sending(lua_State *L, ws_t *w) {
  if (w->state == S_CLOSED) return push_end(L, w);
  return luaio_pushnamederror(L, "EPIPE", "the closing handshake has begun");
}

/* "text" (default) or "binary" at arg. */
static int check_kind(lua_State *L, int arg) {
  static const char *const kinds[] = {"text", "binary", NULL};
  return luaL_checkoption(L, arg, "text", kinds) == 0 ? WS_TEXT : WS_BINARY;
}

__attribute__((noinline)) static int utf8_valid(const char *p, size_t n) {
  uint32_t st = WS_UTF8_OK;
  return ws_utf8(&st, (const uint8_t *)p, n) == 0 && st == WS_UTF8_OK;
}

/* Whether the string at arg (p, n) is valid text: known when it is the last text received. */
static int text_ok(lua_State *L, int arg, const char *p, size_t n) {
  if (n >= RECHECK_MIN && n <= RECHECK_MAX) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, last_text_ref);
    int same = lua_rawequal(L, -1, arg);
    lua_pop(L, 1);
    if (same) return 1;
  }
  return utf8_valid(p, n);
}

static int bad_text(lua_State *L, int arg) {
  return luaL_argerror(L, arg, "invalid UTF-8 in a text message (send it as \"binary\")");
}

/* ws:send(data[, "text" | "binary"]) -> true | nil, err */
static int ws_send(lua_State *L) {
  ws_t *w = check_ws(L, 1);
  luaL_checkstring(L, 2);
  const char *p = lua_tostring(L, 2);
  size_t n = lua_objlen(L, 2);
  int op = check_kind(L, 3);
  if (op == WS_TEXT && !text_ok(L, 2, p, n)) return bad_text(L, 2);
  if (w->state != S_OPEN) return closed_for_sending(L, w);
  return sent(L, w, write_message(w, L, op, (const uint8_t *)p, n, 2));
}

/* ws:ping([data]) -> true | nil, err */
static int ws_ping(lua_State *L) {
  ws_t *w = check_ws(L, 1);
  const char *p = luaL_optstring(L, 2, "");
  size_t n = lua_isnoneornil(L, 2) ? 0 : lua_objlen(L, 2);
  luaL_argcheck(L, n <= 125, 2, "at most 125 bytes");
  if (w->state != S_OPEN) return closed_for_sending(L, w);
  return sent(L, w, write_frame(w, L, WS_PING, 0, (const uint8_t *)p, n, 0));
}

/* ws:close([code = 1000[, reason]]) -> true | nil, err: the closing handshake. Waits for the
 * peer's close (close_timeout); closing again is harmless. */
static int ws_close(lua_State *L) {
  ws_t *w = check_ws(L, 1);
  lua_Integer code = luaL_optinteger(L, 2, 1000);
  const char *reason = luaL_optstring(L, 3, "");
  size_t rlen = lua_isnoneornil(L, 3) ? 0 : lua_objlen(L, 3);
  luaL_argcheck(L, code >= 0 && code < 65536 && ws_close_code_valid((unsigned)code), 2,
                "close code 1000-1003, 1007-1014 or 3000-4999 expected");
  luaL_argcheck(L, rlen <= 123, 3, "at most 123 bytes");
  if (!utf8_valid(reason, rlen)) return bad_text(L, 3);
  if (w->state == S_CLOSED) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (w->closer != NULL) return luaio_pushnamederror(L, "EBUSY", "another task is already closing");
  if (w->state == S_OPEN) {
    write_close(w, L, (unsigned)code, reason, rlen);
    w->state = S_CLOSING;
    w->timer = T_CLOSING;
    luaio_conn_timeout(w->conn, w->close_ms);
  }
  if (w->reader == NULL) parse_ahead(L, w); /* the peer's close may be here already */
  if (w->state == S_CLOSED) {
    if (w->clean) {
      lua_pushboolean(L, 1);
      return 1;
    }
    return push_end(L, w);
  }
  luaio_checktask(L, "close");
  w->closer = L;
  w->closer_ref = luaio_anchor(L);
  return luaio_yield(L);
}

static int ws_address(lua_State *L, int peer) {
  ws_t *w = check_ws(L, 1);
  if (w->conn == NULL) return luaio_pusherror(L, UV_ENOTCONN);
  return luaio_conn_push_address(L, w->conn, peer);
}

static int ws_localaddress(lua_State *L) { return ws_address(L, 0); }
static int ws_remoteaddress(lua_State *L) { return ws_address(L, 1); }

/* ws:subscribe(topic) -> true | nil, err */
static int ws_subscribe(lua_State *L) {
  ws_t *w = check_ws(L, 1);
  luaL_checkstring(L, 2);
  if (w->state != S_OPEN) return closed_for_sending(L, w);
  lua_rawgeti(L, LUA_REGISTRYINDEX, topics_ref);
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  light_key(L, w);
  lua_pushvalue(L, 1);
  lua_rawset(L, -3);
  lua_rawgeti(L, LUA_REGISTRYINDEX, mine_ref);
  light_key(L, w);
  lua_rawget(L, -2);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    light_key(L, w);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  lua_pushvalue(L, 2);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pushboolean(L, 1);
  return 1;
}

/* ws:unsubscribe(topic) -> true */
static int ws_unsubscribe(lua_State *L) {
  ws_t *w = check_ws(L, 1);
  luaL_checkstring(L, 2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, topics_ref);
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  if (lua_istable(L, -1)) {
    light_key(L, w);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pushnil(L);
    if (lua_next(L, -2) == 0) {
      lua_pushvalue(L, 2);
      lua_pushnil(L);
      lua_rawset(L, -4);
    } else {
      lua_pop(L, 2);
    }
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, mine_ref);
  light_key(L, w);
  lua_rawget(L, -2);
  if (lua_istable(L, -1)) {
    lua_pushvalue(L, 2);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pushnil(L);
    if (lua_next(L, -2) == 0) {
      light_key(L, w);
      lua_pushnil(L);
      lua_rawset(L, -4);
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ws.protocol, ws.extensions; the methods otherwise. */
static int ws_index(lua_State *L) {
  ws_t *w = check_ws(L, 1);
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  if (!lua_isnil(L, -1)) return 1;
  const char *key = lua_tostring(L, 2);
  if (key == NULL) return 0;
  if (strcmp(key, "protocol") == 0)
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->protocol_ref);
  else if (strcmp(key, "extensions") == 0)
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->ext_ref);
  else
    return 0;
  return 1;
}

static int ws_gc(lua_State *L) {
  ws_t *w = lua_touserdata(L, 1);
  if (w->conn != NULL) {
    if (w->state == S_OPEN) write_close(w, L, 1001, NULL, 0); /* going away */
    set_end(L, w, "CLOSED", 1001, NULL, 0);
    finish(L, w, LINGER_MS);
  }
  release_message(w);
  ws_inflate_free(&w->inflater);
  luaL_unref(L, LUA_REGISTRYINDEX, w->pong_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, w->protocol_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, w->ext_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, w->reason_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, w->writers_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, w->held_ref);
  w->pong_ref = w->protocol_ref = w->ext_ref = w->reason_ref = LUA_NOREF;
  w->writers_ref = w->held_ref = LUA_NOREF;
  return 0;
}

static int ws_tostring(lua_State *L) {
  ws_t *w = check_ws(L, 1);
  lua_pushfstring(L, w->conn ? "websocket (%p)" : "websocket (closed)", (void *)w);
  return 1;
}

/* --- publish ---------------------------------------------------------------------------------- */

/* Pushes a frame header for a payload of n bytes as a string. */
__attribute__((noinline)) static void push_header(lua_State *L, int op, int rsv, size_t n) {
  uint8_t head[WS_MAX_HEADER];
  size_t hl = ws_write_header(head, 1, rsv, op, n, NULL);
  lua_pushlstring(L, (const char *)head, hl);
}

/* Pushes the compressed frame for a window of bits; returns 0 (nothing pushed) when out of
 * memory. */
__attribute__((noinline)) static int push_compressed(lua_State *L, int op, int bits, const char *p,
                                                     size_t n) {
  const uint8_t *z;
  size_t zlen;
  if (ws_deflate(bits, (const uint8_t *)p, n, &z, &zlen) < 0) return 0;
  push_header(L, op, 4, zlen);
  lua_pushlstring(L, (const char *)z, zlen);
  lua_concat(L, 2);
  ws_scratch_trim();
  return 1;
}

/* The slow subscriber is dropped: close 1008 after its backlog, or at the send timeout. */
static void drop_slow(lua_State *L, ws_t *w) {
  luaio_conn *c = w->conn;
  static const char reason[] = "backlog over max_backlog";
  write_close(w, L, 1008, reason, sizeof reason - 1);
  const char *why = "dropped: the backlog passed max_backlog";
  set_end(L, w, "ENOBUFS", 1008, why, strlen(why));
  c->send_timeout = w->close_ms ? w->close_ms : 5000;
  finish(L, w, 0);
}

/* The frame to queue for subscriber w: the plain one (at 6), or the compressed one for its
 * window size, made once and kept in the table at 7. Pushes it; nil when out of memory. */
static void push_frame_for(lua_State *L, ws_t *w, int op, const char *p, size_t n) {
  if (!w->pmd) {
    lua_pushvalue(L, 6);
    return;
  }
  if (lua_isnil(L, 7)) {
    lua_newtable(L);
    lua_replace(L, 7);
  }
  lua_rawgeti(L, 7, w->pmd_bits);
  if (!lua_isnil(L, -1)) return;
  lua_pop(L, 1);
  if (!push_compressed(L, op, w->pmd_bits, p, n)) {
    lua_pushnil(L);
    return;
  }
  lua_pushvalue(L, -1);
  lua_rawseti(L, 7, w->pmd_bits);
}

/* C.publish(topic, data[, kind]) -> number of subscribers it was queued for */
static int ws_publish(lua_State *L) {
  luaL_checkstring(L, 1);
  luaL_checkstring(L, 2);
  int op = check_kind(L, 3);
  const char *p = lua_tostring(L, 2);
  size_t n = lua_objlen(L, 2);
  if (op == WS_TEXT && !text_ok(L, 2, p, n)) return bad_text(L, 2);
  lua_settop(L, 3);
  lua_rawgeti(L, LUA_REGISTRYINDEX, topics_ref);
  lua_pushvalue(L, 1);
  lua_rawget(L, -2); /* 5: the subscribers */
  if (!lua_istable(L, 5)) {
    lua_pushinteger(L, 0);
    return 1;
  }
  push_header(L, op, 0, n); /* 6: the frame, made once */
  lua_pushvalue(L, 2);
  lua_concat(L, 2);
  lua_pushnil(L); /* 7: compressed frames by window size, made when needed */
  lua_Integer count = 0;
  lua_pushnil(L);
  while (lua_next(L, 5) != 0) {
    ws_t *w = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (w == NULL || w->conn == NULL || w->state != S_OPEN) continue;
    if (luaio_conn_above_high(w->conn)) {
      drop_slow(L, w); /* removes it from this table too: clearing a field is allowed here */
      continue;
    }
    int err;
    if (w->client) { /* a client masks each frame with its own key: nothing to share */
      err = write_message(w, L, op, (const uint8_t *)p, n, 2);
    } else {
      push_frame_for(L, w, op, p, n);
      err = lua_isnil(L, -1) ? UV_ENOMEM : luaio_conn_write_shared(w->conn, L, -1);
      lua_pop(L, 1);
    }
    if (err == 0) count++;
  }
  lua_pushinteger(L, count);
  return 1;
}

/* C.subscribers(topic) -> count */
static int ws_subscribers(lua_State *L) {
  luaL_checkstring(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, topics_ref);
  lua_pushvalue(L, 1);
  lua_rawget(L, -2);
  lua_Integer count = 0;
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      ws_t *w = lua_touserdata(L, -1);
      count += w != NULL && w->state == S_OPEN;
      lua_pop(L, 1);
    }
  }
  lua_pushinteger(L, count);
  return 1;
}

/* --- making websockets ------------------------------------------------------------------------- */

/* C.accept(res, options) -> ws | nil, err: sends the 101 (with the headers websocket.lua set
 * on res) and takes the connection over; the websocket closes when the handler returns. */
static int ws_accept(lua_State *L) {
  http_check_res(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  ws_t *w = ws_new(L, 2, 0);
  luaio_conn *c = http_res_takeover(L, 1);
  if (c == NULL) return 2; /* nil, err */
  ws_attach(w, c);
  http_res_bind(L, 1, 3, ws_end);
  lua_settop(L, 3);
  parse_ahead(L, w); /* frames that came right behind the handshake */
  return 1;
}

/* Puts n bytes back in front of the unread input: what the handshake read past the 101. */
static int unread(luaio_conn *c, const char *p, size_t n) {
  uint32_t had = c->in ? c->in->len - c->in->off : 0;
  if ((uint64_t)had + n > c->in_max) c->in_max = (uint32_t)(had + n); /* ws_attach resets it */
  int err = luaio_conn_reserve_in(c, (uint32_t)n);
  if (err) return err;
  luaio_inbuf *in = c->in;
  memmove(in->data + in->off + n, in->data + in->off, had);
  memcpy(in->data + in->off, p, n);
  in->len += (uint32_t)n;
  return 0;
}

/* C.adopt(socket, options[, rest]) -> ws | nil, err: a client connection whose handshake is
 * done; rest: the bytes the handshake read past the 101 (frames), the websocket's first. */
static int ws_adopt(lua_State *L) {
  luaL_checktype(L, 2, LUA_TTABLE);
  size_t n = 0;
  const char *rest = luaL_optlstring(L, 3, "", &n);
  if (n > 1u << 30) return luaL_argerror(L, 3, "too long");
  lua_settop(L, 3);
  ws_t *w = ws_new(L, 2, 1);
  luaio_conn *c = luaio_socket_release(L, 1);
  if (c == NULL) return luaio_pusherror(L, UV_ENOTCONN);
  if (n > 0) {
    int err = unread(c, rest, n);
    if (err) {
      luaio_conn_close(c, err);
      return luaio_pusherror(L, err);
    }
  }
  ws_attach(w, c);
  lua_settop(L, 4);
  parse_ahead(L, w); /* frames that came right behind the 101 */
  return 1;
}

static struct lhttp_header head_fields[HTTP_MAX_HEADERS];

/* Pushes the value of each header named at 2..nargs, or nil. */
__attribute__((noinline)) static void push_fields(lua_State *L, luaio_conn *c, int nargs) {
  const char *method, *path;
  size_t mlen, plen, nhdr = HTTP_MAX_HEADERS;
  int minor;
  const char *head = c->in->data + c->in->kept;
  if (lhttp_parse_request(head, HCONN(c)->head_len, &method, &mlen, &path, &plen, &minor,
                          head_fields, &nhdr, 0) <= 0)
    nhdr = 0;
  for (int a = 2; a <= nargs; a++) {
    size_t nlen = lua_objlen(L, a);
    const char *name = lua_tostring(L, a);
    int found = 0;
    for (size_t i = 0; i < nhdr; i++) {
      const struct lhttp_header *h = &head_fields[i];
      if (h->name_len != nlen || strncasecmp(h->name, name, nlen) != 0) continue;
      if (found) lua_pushliteral(L, ", ");
      lua_pushlstring(L, h->value, h->value_len);
      if (found) lua_concat(L, 3);
      found = 1;
    }
    if (!found) lua_pushnil(L);
  }
}

/* C.headers(res, name...) -> the request's value of each header (any case; repeated fields
 * joined with ", "), or nil; read from the head in place, without building req.headers. */
static int ws_headers(lua_State *L) {
  hres_t *r = http_check_res(L, 1);
  int nargs = lua_gettop(L);
  for (int a = 2; a <= nargs; a++) luaL_checktype(L, a, LUA_TSTRING);
  luaio_conn *c = r->conn;
  if (c == NULL || HCONN(c)->res != r) return 0;
  push_fields(L, c, nargs);
  return nargs - 1;
}

/* C.accept_key(key) -> Sec-WebSocket-Accept for the key */
__attribute__((noinline)) static void push_accept(lua_State *L, const char *key, size_t n) {
  char out[29];
  ws_accept_key(key, n, out);
  lua_pushstring(L, out);
}

static int ws_accept_key_lua(lua_State *L) {
  const char *key = luaL_checkstring(L, 1);
  push_accept(L, key, lua_objlen(L, 1));
  return 1;
}

/* C.key_ok(key) -> true when key is the base64 of 16 bytes (RFC 6455 4.2.1) */
__attribute__((noinline)) static int key_ok(const char *key, size_t n) {
  uint8_t raw[16];
  return n == 24 && ws_unbase64(key, n, raw, sizeof raw) == 16;
}

static int ws_key_ok(lua_State *L) {
  const char *key = luaL_checkstring(L, 1);
  lua_pushboolean(L, key_ok(key, lua_objlen(L, 1)));
  return 1;
}

/* C.new_key() -> a fresh Sec-WebSocket-Key: 16 random bytes in base64 */
__attribute__((noinline)) static void push_new_key(lua_State *L) {
  uint8_t raw[16];
  char out[25];
  random_bytes(raw, 16);
  ws_base64(raw, 16, out);
  lua_pushstring(L, out);
}

static int ws_new_key(lua_State *L) {
  push_new_key(L);
  return 1;
}

/* C.utf8(s) -> true when s is valid UTF-8 */
static int ws_utf8_lua(lua_State *L) {
  const char *s = luaL_checkstring(L, 1);
  lua_pushboolean(L, utf8_valid(s, lua_objlen(L, 1)));
  return 1;
}

static const luaL_Reg ws_methods[] = {
    {"close", ws_close},         {"localAddress", ws_localaddress},   {"ping", ws_ping},
    {"receive", ws_receive},     {"remoteAddress", ws_remoteaddress}, {"send", ws_send},
    {"subscribe", ws_subscribe}, {"unsubscribe", ws_unsubscribe},     {NULL, NULL}};

static const luaL_Reg ws_funcs[] = {{"accept", ws_accept},   {"accept_key", ws_accept_key_lua},
                                    {"adopt", ws_adopt},     {"headers", ws_headers},
                                    {"key_ok", ws_key_ok},   {"new_key", ws_new_key},
                                    {"publish", ws_publish}, {"subscribers", ws_subscribers},
                                    {"utf8", ws_utf8_lua},   {NULL, NULL}};

int luaopen_luaio_websocket(lua_State *L) {
  if (ws_type.ref == LUA_NOREF) {
    luaio_newudtype(L, &ws_type, "luaio.websocket");
    lua_newtable(L);
    luaL_setfuncs(L, ws_methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "methods");
    lua_pushcclosure(L, ws_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ws_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, ws_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    lua_newtable(L);
    topics_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    mine_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushboolean(L, 0);
    last_text_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  luaio_newlib(L, ws_funcs);
  return 1;
}
