/*
 * redis.c: the Redis client, a protocol on the connection core (conn.c); module
 * "luaio.redis", the C half of stdlib/redis.lua.
 *
 * A client takes over a connected socket's connection (luaio_socket_release, so TLS and
 * Unix sockets come with tcp.connect). Then:
 *
 *   - A command method encodes its RESP array straight into the connection's output queue
 *     (large string arguments are referenced, not copied), puts the calling task at the
 *     tail of a FIFO of waiters and yields. What is written during one loop turn leaves in
 *     one writev at the turn's end (the core's rule), so many tasks sharing a client
 *     pipeline automatically, in order; but once a twelfth of the commands in flight (at
 *     least 4) are queued, they are written at once, so that the server works on those
 *     while the tasks resumed by one read queue the rest. Batching a whole turn made client
 *     and server take turns: 50 tasks on one client did 0.25x redis-benchmark -P 16, now
 *     about 0.5x (bench/redis.sh); 200 tasks 1.2-1.8M ops/s instead of 0.6M.
 *   - on_read parses the replies in place from the input buffer (redis_resp.c, one token at
 *     a time), builds the Lua value (strings are copied once, from the input buffer into
 *     the Lua string) and resumes the waiters in FIFO order. A pipeline is one waiter that
 *     collects n replies; a (p)subscribe call one that collects its confirmations.
 *   - Pushes (RESP3 `>`, or in RESP2 the arrays a subscribed connection receives) go to a
 *     queue that receive() reads. While nobody waits for a reply and the queue is full,
 *     parsing stops: the input buffer fills, reading pauses, the server holds the rest.
 *   - A bulk string larger than the input buffer's limit grows the buffer once, to its
 *     exact size (so it is copied once, into its Lua string); stream() instead hands it to
 *     the caller piece by piece, with the input buffer as the only memory.
 *
 * Values: bulk, simple and verbatim strings are strings; integers and doubles numbers;
 * booleans; nulls redis.null (a light userdata NULL, like cjson.null); arrays, pushes and
 * RESP3 maps tables (maps keyed by their keys); sets tables {member = true}; big numbers
 * their digits as a string. An error reply is `nil, message` for a command, `{err =
 * message}` inside an aggregate or a pipeline (the convention of Redis's own Lua).
 *
 * Waking: replies parsed in a loop callback resume their tasks directly; when parsing
 * runs inside a task's call (receive() or stream_next() restarting it), wakes go through
 * the ready queue. A suspended task's coroutine is anchored; the client's userdata is
 * pinned on its builder thread's stack while anything waits on it, so a client nobody
 * refers to still answers the tasks it owes, and is collected (and closed) once idle.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "redis_resp.h"
#include "socket.h"

#define CLIENT_MT "luaio.redis.client"
#define PIPE_MT "luaio.redis.pipeline"
#define IN_BASE (256 * 1024) /* the input buffer's usual limit */
#define BIG_ARG 16384        /* string arguments at least this long are referenced, not copied */
#define PUSHES_DEFAULT 10000
#define WRITE_MIN 4    /* written at once: a twelfth of the commands in flight, at least 4 */
#define WRITE_SHARE 12 /* (see above; 50 tasks did best with 4, 200 with 16 or so) */

enum { W_CMD, W_PIPE, W_SUB, W_STREAM };

/* Command flags: what a command does to the connection's state (a pool must not reuse a
 * connection left in a transaction, with keys watched, another database selected...). */
enum {
  F_MULTI = 1,
  F_EXEC = 2,
  F_WATCH = 4,
  F_UNWATCH = 8,
  F_UNSAFE = 16,
  F_RESET = 32,
  F_CLIENT = 64,
  F_REFUSE = 128,
  F_SUB = 256 /* + the subscribe kind << 9 */
};

/* The subscribe family: their confirmations are pushes of the same name. */
static const char *const sub_names[] = {"subscribe",   "psubscribe",   "ssubscribe",
                                        "unsubscribe", "punsubscribe", "sunsubscribe"};
#define NSUB 6

typedef struct {
  lua_State *co; /* the waiting task; NULL: drop the reply (an abandoned stream) */
  int ref;
  uint32_t left; /* replies (pipeline) or confirmations (subscribe) still to come */
  uint32_t got;  /* pipeline: replies so far */
  uint8_t kind, sub,
      waiting; /* waiting: suspended in our call (a stream's task may be elsewhere) */
} waiter_t;

typedef struct rclient rclient;
struct rclient {
  luaio_conn *c; /* NULL once closed */
  rclient **box; /* the Lua userdata's slot; NULL once collected */
  int close_err; /* why it closed */
  waiter_t *w;   /* ring of waiters, w[head] first; cap a power of two */
  uint32_t whead, wcount, wcap;
  uint32_t eligible; /* waiters that may take the replies being parsed: those there before */
  resp_parser rp;
  lua_State *B; /* builder thread: [the pinned client,] aggregates being built */
  int B_ref, pushq_ref;
  struct {
    uint8_t type, role;
    uint32_t n;
  } fr[RESP_MAX_DEPTH];                  /* the aggregates being built, as the parser opened them */
  uint32_t pq_head, pq_tail, max_pushes; /* the push queue: pushq[pq_head + 1 .. pq_tail] */
  lua_State *receiver;
  int receiver_ref;
  luaio_deadline recv_dl;
  uint32_t timeout; /* ms of silence while replies are due before closing; 0 = none */
  int64_t stream_left, stream_total;
  int64_t sub_total; /* the server's last count of channels + patterns */
  uint32_t nchan, npat, nshard;
  uint8_t resp3, parsing, busy, stalled, pinned, ref_on, stream_on, top_push, top_error;
  uint8_t multi, watch, unsafe;
  uint32_t unflushed; /* commands queued since the output was last written */
};

static luaio_udtype client_type = {LUA_NOREF, NULL}, pipe_type = {LUA_NOREF, NULL};
static const luaio_conn_proto redis_proto;

static void parse(lua_State *L, rclient *s);
static void detach(lua_State *L, rclient *s, int err);

/* --- small helpers -------------------------------------------------------------------------- */

static void maybe_free(rclient *s) {
  if (s->c != NULL || s->box != NULL || s->busy > 0) return;
  luaL_unref(luaio_mainstate(), LUA_REGISTRYINDEX, s->B_ref);
  luaL_unref(luaio_mainstate(), LUA_REGISTRYINDEX, s->pushq_ref);
  free(s->w);
  free(s);
}

/* The client at arg. */
static rclient *check_client(lua_State *L, int arg) {
  rclient **box = luaio_checkudata(L, arg, &client_type, "redis client");
  if (*box == NULL) luaL_argerror(L, arg, "redis client released to its pool");
  return *box;
}

static int push_closed(lua_State *L, rclient *s) {
  return luaio_pusherror(L, s->close_err ? s->close_err : UV_ENOTCONN);
}

/* --- busy and idle ------------------------------------------------------------------------ */

/* Something waits on the client (a reply, a push, a stream): the process stays alive, the
 * userdata (at arg of L) is pinned. */
static void busy_start(lua_State *L, rclient *s, int arg) {
  if (!s->pinned) {
    lua_pushvalue(L, arg);
    lua_xmove(L, s->B, 1);
    lua_insert(s->B, 1);
    s->pinned = 1;
  }
  if (!s->ref_on && s->c != NULL) {
    uv_ref(&s->c->h.handle);
    s->ref_on = 1;
  }
}

static void idle_check(rclient *s) {
  if (s->wcount > 0 || s->receiver != NULL) return;
  if (s->pinned) {
    lua_remove(s->B, 1);
    s->pinned = 0;
  }
  if (s->ref_on && s->c != NULL) {
    uv_unref(&s->c->h.handle);
    s->ref_on = 0;
  }
}

/* --- the waiters ---------------------------------------------------------------------------- */

/* Room for one more waiter; 0 or UV_ENOMEM (checked before anything is written). */
static int fifo_reserve(rclient *s) {
  if (s->wcount < s->wcap) return 0;
  uint32_t cap = s->wcap ? s->wcap * 2 : 8;
  waiter_t *w = malloc(cap * sizeof *w);
  if (w == NULL) return UV_ENOMEM;
  for (uint32_t i = 0; i < s->wcount; i++) w[i] = s->w[(s->whead + i) & (s->wcap - 1)];
  free(s->w);
  s->w = w;
  s->wcap = cap;
  s->whead = 0;
  return 0;
}

static waiter_t *fifo_head(rclient *s) { return s->wcount ? &s->w[s->whead] : NULL; }

/* Adds L (whose arg 1 is the client) as a waiter; the caller then yields. */
static void fifo_push(lua_State *L, rclient *s, int kind, uint32_t left, int sub) {
  waiter_t *w = &s->w[(s->whead + s->wcount) & (s->wcap - 1)];
  w->co = L;
  w->ref = luaio_anchor(L);
  w->left = left;
  w->got = 0;
  w->kind = (uint8_t)kind;
  w->sub = (uint8_t)sub;
  w->waiting = 1;
  if (s->wcount++ == 0) {
    busy_start(L, s, 1);
    if (s->timeout) luaio_conn_timeout(s->c, s->timeout);
  }
}

/* Takes the head waiter off; its anchor is the caller's to release (wake does). */
static waiter_t fifo_pop(rclient *s) {
  waiter_t w = s->w[s->whead];
  s->whead = (s->whead + 1) & (s->wcap - 1);
  s->wcount--;
  if (s->eligible > 0) s->eligible--;
  if (s->wcount == 0 && s->c != NULL && s->timeout) luaio_conn_timeout(s->c, 0);
  return w;
}

/* --- encoding commands --------------------------------------------------------------------- */

/* A number as Redis reads it: integers without a fraction, others in the fewest digits that
 * read back the same. out has room for 32 bytes. */
static size_t format_number(lua_Number d, char *out) {
  if (d == floor(d) && d >= -9.2e18 && d <= 9.2e18)
    return (size_t)sprintf(out, "%lld", (long long)d);
  if (isnan(d)) return (size_t)sprintf(out, "nan");
  if (isinf(d)) return (size_t)sprintf(out, d > 0 ? "inf" : "-inf");
  for (int prec = 15; prec <= 17; prec++) {
    int n = sprintf(out, "%.*g", prec, d);
    if (prec == 17 || strtod(out, NULL) == d) return (size_t)n;
  }
  return 0;
}

/* memcpy for the few bytes of a key or a small value: the C library's routine costs more
 * to start than these copies take (fixed-size copies compile to moves). */
static inline void copy_bytes(char *d, const char *s, size_t n) {
  if (n > 16) {
    memcpy(d, s, n);
  } else if (n >= 8) {
    uint64_t a, b;
    memcpy(&a, s, 8);
    memcpy(&b, s + n - 8, 8);
    memcpy(d, &a, 8);
    memcpy(d + n - 8, &b, 8);
  } else if (n >= 4) {
    uint32_t a, b;
    memcpy(&a, s, 4);
    memcpy(&b, s + n - 4, 4);
    memcpy(d, &a, 4);
    memcpy(d + n - 4, &b, 4);
  } else {
    for (size_t i = 0; i < n; i++) d[i] = s[i];
  }
}

/* `type` n CRLF, e.g. "$5\r\n". */
static char *put_header(char *p, char type, size_t n) {
  *p++ = type;
  if (n < 10) {
    *p++ = (char)('0' + n);
  } else if (n < 100) {
    *p++ = (char)('0' + n / 10);
    *p++ = (char)('0' + n % 10);
  } else {
    char digits[24];
    int k = 0;
    do digits[k++] = (char)('0' + n % 10);
    while ((n /= 10) > 0);
    while (k > 0) *p++ = digits[--k];
  }
  *p++ = '\r';
  *p++ = '\n';
  return p;
}

static int is_arg(lua_State *L, int i) {
  int t = lua_type(L, i);
  return t == LUA_TSTRING || t == LUA_TNUMBER;
}

/* The encoder's output: small parts copied into reserved room, large strings referenced. */
typedef struct {
  luaio_conn *c;
  char *p, *end; /* reserved room */
  char *start;
  int err;
} out_t;

static void out_commit(out_t *o) {
  if (o->start != NULL) luaio_conn_commit(o->c, (size_t)(o->p - o->start));
  o->start = o->p = o->end = NULL;
}

static int out_room(out_t *o, size_t n) {
  if (o->p != NULL && (size_t)(o->end - o->p) >= n) return 1;
  out_commit(o);
  size_t want = n < 4096 ? 4096 : n;
  char *r = luaio_conn_reserve(o->c, want);
  if (r == NULL && want > n) r = luaio_conn_reserve(o->c, want = n);
  if (r == NULL) {
    o->err = o->c->write_err ? o->c->write_err : UV_ENOMEM;
    return 0;
  }
  o->start = o->p = r;
  o->end = r + want;
  return 1;
}

/* One bulk string onto the output. */
static void out_bulk(out_t *o, const char *data, size_t len) {
  if (!out_room(o, 24 + len + 2)) return;
  o->p = put_header(o->p, '$', len);
  copy_bytes(o->p, data, len);
  o->p += len;
  *o->p++ = '\r';
  *o->p++ = '\n';
}

/* One argument (checked to be a string or a number) onto the output. */
static void out_arg(out_t *o, lua_State *L, int i) {
  char num[32];
  size_t len;
  if (lua_type(L, i) == LUA_TNUMBER) {
    len = format_number(lua_tonumber(L, i), num);
    out_bulk(o, num, len);
    return;
  }
  const char *data = lua_tolstring(L, i, &len);
  if (len < BIG_ARG) {
    out_bulk(o, data, len);
    return;
  }
  if (!out_room(o, 24)) return;
  o->p = put_header(o->p, '$', len);
  out_commit(o);
  int err = luaio_conn_write_lua(o->c, L, i);
  if (err == 0) err = luaio_conn_write(o->c, "\r\n", 2);
  if (err) o->err = err;
}

/* Writes the command name + the arguments at L[first..last]. Returns 0, the index of the
 * first argument that is neither a string nor a number (nothing written then), or a libuv
 * error. Never raises. */
static __attribute__((noinline)) int encode_command(lua_State *L, luaio_conn *c, const char *name,
                                                    size_t nlen, int first, int last) {
  for (int i = first; i <= last; i++)
    if (!is_arg(L, i)) return i;
  out_t o = {c, NULL, NULL, NULL, 0};
  if (!out_room(&o, 48 + nlen)) return o.err;
  o.p = put_header(o.p, '*', (size_t)(last - first + 2));
  out_bulk(&o, name, nlen);
  for (int i = first; i <= last && o.err == 0; i++) out_arg(&o, L, i);
  out_commit(&o);
  return o.err;
}

/* The flags of a command name (any case). */
static int command_flags(const char *name, size_t len) {
  static const struct {
    const char *name;
    int flags;
  } known[] = {{"multi", F_MULTI},      {"exec", F_EXEC},       {"discard", F_EXEC},
               {"watch", F_WATCH},      {"unwatch", F_UNWATCH}, {"select", F_UNSAFE},
               {"hello", F_UNSAFE},     {"auth", F_UNSAFE},     {"readonly", F_UNSAFE},
               {"readwrite", F_UNSAFE}, {"reset", F_RESET},     {"client", F_CLIENT},
               {"monitor", F_REFUSE},   {"sync", F_REFUSE},     {"psync", F_REFUSE}};
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (strlen(known[i].name) == len && strncasecmp(known[i].name, name, len) == 0)
      return known[i].flags;
  for (int k = 0; k < NSUB; k++)
    if (strlen(sub_names[k]) == len && strncasecmp(sub_names[k], name, len) == 0)
      return F_SUB | k << 9;
  return 0;
}

/* What sending the command does to the connection's state. */
static void track(rclient *s, int flags) {
  if (flags & F_MULTI) s->multi = 1;
  if (flags & F_EXEC) s->multi = s->watch = 0;
  if (flags & F_WATCH) s->watch = 1;
  if (flags & F_UNWATCH) s->watch = 0;
  if (flags & F_UNSAFE) s->unsafe = 1;
  if (flags & F_RESET) s->multi = s->watch = 0, s->unsafe = 1;
}

/* CLIENT's subcommand at arg: -1 for REPLY (OFF or SKIP would leave replies missing, which
 * the FIFO could not match), F_UNSAFE for those that change the connection, else 0. */
static __attribute__((noinline)) int client_sub(lua_State *L, int arg) {
  static const char *const changing[] = {"tracking", "setname",  "setinfo",
                                         "no-evict", "no-touch", "caching"};
  size_t len;
  const char *sub = lua_type(L, arg) == LUA_TSTRING ? lua_tolstring(L, arg, &len) : NULL;
  if (sub == NULL) return 0;
  if (len == 5 && strncasecmp(sub, "reply", 5) == 0) return -1;
  for (size_t i = 0; i < sizeof changing / sizeof changing[0]; i++)
    if (strlen(changing[i]) == len && strncasecmp(changing[i], sub, len) == 0) return F_UNSAFE;
  return 0;
}

/* --- values ---------------------------------------------------------------------------------- */

/* Pushes a scalar token's value onto T. An error inside an aggregate is {err = message}. */
static void push_scalar(lua_State *T, const resp_token *t, int nested_error) {
  switch (t->type) {
    case RESP_STRING:
    case RESP_BIGNUM: lua_pushlstring(T, t->str, t->len); break;
    case RESP_ERR:
      if (nested_error) {
        lua_createtable(T, 0, 1);
        lua_pushlstring(T, t->str, t->len);
        lua_setfield(T, -2, "err");
      } else {
        lua_pushlstring(T, t->str, t->len);
      }
      break;
    case RESP_INTEGER: lua_pushnumber(T, (lua_Number)t->i); break;
    case RESP_DOUBLE: lua_pushnumber(T, t->d); break;
    case RESP_BOOLEAN: lua_pushboolean(T, (int)t->i); break;
    default: /* null, and empty aggregates are handled by the caller */
      lua_pushlightuserdata(T, NULL);
      break;
  }
}

/* A key (of a map or set) that Lua refuses (NaN) becomes its name. */
static void fix_key(lua_State *B) {
  if (lua_type(B, -1) == LUA_TNUMBER && isnan(lua_tonumber(B, -1))) {
    lua_pop(B, 1);
    lua_pushliteral(B, "nan");
  }
}

/* The value on top of B completes at depth d > 0 with role: into its parent aggregate. */
static void attach(rclient *s, int d, int role) {
  lua_State *B = s->B;
  switch (s->fr[d - 1].type) {
    case RESP_MAP:
      if (role == RESP_KEY) { /* stays on the stack until its value comes */
        fix_key(B);
        return;
      }
      lua_rawset(B, -3);
      break;
    case RESP_SET:
      fix_key(B);
      lua_pushboolean(B, 1);
      lua_rawset(B, -3);
      break;
    default: lua_rawseti(B, -2, (int)++s->fr[d - 1].n);
  }
}

/* --- pushes ---------------------------------------------------------------------------------- */

static int sub_kind(lua_State *B, int idx) {
  size_t len;
  const char *k = lua_tolstring(B, idx, &len);
  if (k == NULL) return -1;
  for (int i = 0; i < NSUB; i++)
    if (strlen(sub_names[i]) == len && strncasecmp(sub_names[i], k, len) == 0) return i;
  return -1;
}

/* RESP2: is the array on top of B a message for a subscribed connection? */
static int resp2_push(rclient *s) {
  waiter_t *w = fifo_head(s);
  if (s->resp3 || !lua_istable(s->B, -1)) return 0;
  if (s->nchan + s->npat + s->nshard == 0 && (w == NULL || w->kind != W_SUB)) return 0;
  lua_rawgeti(s->B, -1, 1);
  size_t len;
  const char *k = lua_tolstring(s->B, -1, &len);
  int push = k != NULL &&
             ((len == 7 && memcmp(k, "message", 7) == 0) ||
              (len == 8 && (memcmp(k, "pmessage", 8) == 0 || memcmp(k, "smessage", 8) == 0)) ||
              sub_kind(s->B, -1) >= 0);
  lua_pop(s->B, 1);
  return push;
}

/* A subscribe-family confirmation: the counts follow the server's. */
static void count_subscriptions(rclient *s, int kind, int64_t count) {
  if (kind == 2 || kind == 5) {
    s->nshard = count < 0 ? 0 : (uint32_t)count;
    return;
  }
  int64_t delta = count - s->sub_total;
  s->sub_total = count;
  if (kind == 0 && delta > 0) s->nchan++;
  if (kind == 1 && delta > 0) s->npat++;
  if (kind == 3 && delta < 0 && s->nchan > 0) s->nchan--;
  if (kind == 4 && delta < 0 && s->npat > 0) s->npat--;
  if (count == 0) s->nchan = s->npat = 0;
}

/* The push on top of B: a confirmation for the subscribe call waiting at the head, or a
 * message for receive(). */
static void on_push(lua_State *L, rclient *s) {
  lua_State *B = s->B;
  lua_rawgeti(B, -1, 1);
  int kind = sub_kind(B, -1);
  lua_pop(B, 1);
  if (kind >= 0) {
    lua_rawgeti(B, -1, 3);
    count_subscriptions(s, kind, (int64_t)lua_tonumber(B, -1));
    lua_pop(B, 1);
    waiter_t *w = fifo_head(s);
    if (w != NULL && w->kind == W_SUB && w->sub == kind) {
      lua_pop(B, 1);
      if (--w->left > 0) return;
      waiter_t done = fifo_pop(s);
      lua_pushinteger(done.co, (lua_Integer)(s->sub_total + s->nshard));
      idle_check(s);
      luaio_wake(L, done.co, done.ref, 1);
      return;
    }
  }
  if (s->receiver != NULL) {
    lua_State *co = s->receiver;
    s->receiver = NULL;
    luaio_deadline_disarm(&s->recv_dl);
    lua_xmove(B, co, 1);
    idle_check(s);
    luaio_wake(L, co, s->receiver_ref, 1);
    return;
  }
  lua_rawgeti(B, LUA_REGISTRYINDEX, s->pushq_ref);
  lua_insert(B, -2);
  lua_rawseti(B, -2, (int)++s->pq_tail);
  lua_pop(B, 1);
}

/* --- replies ----------------------------------------------------------------------------------- */

/* Moves the whole reply on top of B to the waiter at the head (or the push queue). */
static void on_reply(lua_State *L, rclient *s) {
  lua_State *B = s->B;
  int err = s->top_error;
  if (s->top_push || resp2_push(s)) {
    on_push(L, s);
    return;
  }
  waiter_t *w = fifo_head(s);
  if (w == NULL || s->eligible == 0) {
    /* A reply nobody asked for: the stream is lost. (A waiter that came during this parse,
     * a task resumed here sending its next command, cannot own bytes received before.) */
    lua_pop(B, 1);
    luaio_conn_close(s->c, UV_EPROTO);
    return;
  }
  if (w->kind == W_PIPE) {
    lua_State *co = w->co;
    if (w->got == 0) lua_createtable(co, (int)(w->left < 1024 ? w->left : 1024), 0);
    if (err) { /* {err = message} in a list of replies */
      lua_createtable(B, 0, 1);
      lua_insert(B, -2);
      lua_setfield(B, -2, "err");
    }
    lua_xmove(B, co, 1);
    lua_rawseti(co, -2, (int)++w->got);
    if (--w->left > 0) return;
  }
  waiter_t done = fifo_pop(s);
  lua_State *co = done.co;
  int n = 1;
  if (co == NULL) {
    lua_pop(B, 1);
  } else if (done.kind == W_PIPE) {
    /* the table is on co already */
  } else if (done.kind == W_STREAM) {
    lua_pushstring(co, err ? "error" : "value");
    lua_xmove(B, co, 1);
    n = 2;
  } else {
    if (err) lua_pushnil(co), n = 2;
    lua_xmove(B, co, 1);
  }
  idle_check(s);
  if (co != NULL) luaio_wake(L, co, done.ref, n);
}

/* Where a reply starts: a push, an error at the top level. */
static void reply_start(rclient *s, const resp_token *t) {
  s->top_push = t->type == RESP_PUSH;
  s->top_error = t->type == RESP_ERR;
}

/* Makes room for a token of `need` bytes (a bulk string): the input buffer grows once to
 * hold it whole, past its usual limit if it must. Returns 0 or an error. */
static int make_room(rclient *s, size_t need, size_t have) {
  luaio_conn *c = s->c;
  if (need == 0) /* a line with no end yet: it may not fill the buffer */
    return have >= c->in_max ? UV_EPROTO : 0;
  if (need > UINT32_MAX - 64) return UV_ENOBUFS;
  luaio_conn_need(c, (uint32_t)need); /* past the usual limit; reading resumes if it paused */
  return luaio_conn_reserve_in(c, (uint32_t)(need - have));
}

/* --- streams ---------------------------------------------------------------------------------- */

/* The head waiter streams: hands it the next piece of its bulk string, or its end.
 * Returns 1 to go on, 0 when bytes are missing, -1 while its task is busy with a piece. */
static int stream_step(lua_State *L, rclient *s, waiter_t *w) {
  luaio_conn *c = s->c;
  luaio_inbuf *in = c->in;
  size_t have = in ? in->len - in->off : 0;
  if (w->co != NULL && !w->waiting) return -1;
  if (s->stream_left > 0) {
    if (have == 0) return 0;
    size_t take = have < (uint64_t)s->stream_left ? have : (size_t)s->stream_left;
    if (w->co == NULL) { /* abandoned: drop it */
      luaio_conn_consume(c, (uint32_t)take);
      s->stream_left -= (int64_t)take;
      return 1;
    }
    lua_State *co = w->co;
    lua_pushliteral(co, "piece");
    lua_pushlstring(co, in->data + in->off, take);
    luaio_conn_consume(c, (uint32_t)take);
    s->stream_left -= (int64_t)take;
    w->waiting = 0;
    if (s->timeout) luaio_conn_timeout(c, 0); /* the caller's sink may take its time */
    luaio_wake(L, co, LUA_NOREF, 2);          /* it stays the head waiter, anchored */
    return 1;
  }
  if (have < 2) return 0;
  if (in->data[in->off] != '\r' || in->data[in->off + 1] != '\n') {
    luaio_conn_close(c, UV_EPROTO);
    return 0;
  }
  luaio_conn_consume(c, 2);
  s->stream_on = 0;
  c->in_max = IN_BASE;
  waiter_t done = fifo_pop(s);
  idle_check(s);
  if (done.co != NULL) {
    lua_pushliteral(done.co, "done");
    lua_pushnumber(done.co, (lua_Number)s->stream_total);
    luaio_wake(L, done.co, done.ref, 2);
  }
  return 1;
}

/* At the start of a reply for a stream waiter: a bulk string header starts streaming.
 * Returns 1 when it did (or delivered the null string), 0 when the reply is something else
 * (parsed as usual), -1 when the header is not all here yet. */
static int stream_begin(lua_State *L, rclient *s, const char *buf, size_t len) {
  int64_t n;
  long h = resp_bulk_header(buf, len, &n);
  if (h == RESP_ERROR) return 0;
  if (h == RESP_INCOMPLETE) return -1;
  luaio_conn_consume(s->c, (uint32_t)h);
  if (n >= 0) {
    s->stream_on = 1;
    s->stream_left = s->stream_total = n;
    return 1;
  }
  waiter_t done = fifo_pop(s);
  idle_check(s);
  lua_pushliteral(done.co, "value");
  lua_pushlightuserdata(done.co, NULL);
  luaio_wake(L, done.co, done.ref, 2);
  return 1;
}

/* --- the parse loop --------------------------------------------------------------------------- */

/* Parses what is buffered and hands out the replies, until the bytes run out or parsing
 * must wait (a full push queue nobody reads, a stream whose task is busy). L is the main
 * state in a loop callback, or the task whose call restarted parsing. */
static void parse(lua_State *L, rclient *s) {
  if (s->parsing) return;
  s->parsing = 1;
  s->busy++;
  s->stalled = 0;
  s->eligible = s->wcount;
  int stopped = 0;
  for (;;) {
    luaio_conn *c = s->c;
    if (c == NULL) break;
    luaio_inbuf *in = c->in;
    size_t len = in ? in->len - in->off : 0;
    waiter_t *w = fifo_head(s);
    if (s->rp.depth == 0 && w != NULL && w->kind == W_STREAM) {
      if (s->stream_on) {
        int r = stream_step(L, s, w);
        if (r > 0) continue;
        stopped = r < 0; /* its task holds the rest back: no end of input yet */
        break;
      }
      if (len > 0) {
        int r = stream_begin(L, s, in->data + in->off, len);
        if (r > 0) continue;
        if (r < 0) break;
      }
    }
    if (len == 0) break;
    if (s->rp.depth == 0 && w == NULL && s->pq_tail - s->pq_head >= s->max_pushes) {
      s->stalled = 1; /* nobody reads the pushes: let the input buffer fill, reading pause */
      stopped = 1;
      break;
    }
    const char *buf = in->data + in->off;
    resp_token t;
    size_t need;
    long n = resp_next(&s->rp, buf, len, &t, &need);
    if (n == RESP_INCOMPLETE) {
      int err = make_room(s, need, len);
      if (err) luaio_conn_close(c, err);
      break;
    }
    if (n == RESP_ERROR) {
      luaio_conn_close(c, UV_EPROTO);
      break;
    }
    if (t.skip) {
      luaio_conn_consume(c, (uint32_t)n);
      continue;
    }
    lua_State *B = s->B;
    lua_checkstack(B, 4);
    if (t.depth == 0) reply_start(s, &t);
    int aggregate = t.type >= RESP_ARRAY && t.type <= RESP_PUSH;
    if (aggregate) {
      int count = (int)t.i;
      if (t.type == RESP_MAP || t.type == RESP_SET)
        lua_createtable(B, 0, count < 1024 ? count : 1024);
      else
        lua_createtable(B, count < 1024 ? count : 1024, 0);
      if (count > 0) {
        s->fr[t.depth].type = t.type;
        s->fr[t.depth].role = t.role;
        s->fr[t.depth].n = 0;
      }
    } else {
      push_scalar(B, &t, t.depth > 0);
    }
    luaio_conn_consume(c, (uint32_t)n);
    if (aggregate && t.i > 0) continue;
    if (c->in_max > IN_BASE && !s->stream_on) c->in_max = IN_BASE; /* a big string went */
    int d = t.depth, role = t.role, closes = t.closes;
    for (;;) {
      if (d == 0) {
        on_reply(L, s);
        break;
      }
      attach(s, d, role);
      if (closes == 0) break;
      closes--;
      d--;
      role = s->fr[d].role;
    }
  }
  luaio_conn *c = s->c;
  if (c != NULL) {
    if (c->read_err != 0 && !stopped) {
      luaio_conn_close(c, c->read_err);
    } else if (s->timeout && s->wcount > 0 && !(s->stream_on && !fifo_head(s)->waiting)) {
      luaio_conn_timeout(c, s->timeout); /* bytes came: the silence starts again */
    }
  }
  s->parsing = 0;
  s->busy--;
  maybe_free(s);
}

/* --- the protocol's callbacks ----------------------------------------------------------------- */

static void on_read(lua_State *L, luaio_conn *c) { parse(L, luaio_conn_ud(c)); }

static void on_drain(lua_State *L, luaio_conn *c) {
  (void)L;
  if (c->write_err) luaio_conn_close(c, c->write_err); /* replies will never come */
}

static void on_timeout(lua_State *L, luaio_conn *c) {
  (void)L;
  luaio_conn_close(c, UV_ETIMEDOUT);
}

static void on_close(lua_State *L, luaio_conn *c, int err) {
  rclient *s = luaio_conn_ud(c);
  if (s == NULL) return;
  detach(L, s, err < 0 ? err : UV_ECANCELED);
}

static const luaio_conn_proto redis_proto = {on_read, on_drain, on_timeout, on_close, NULL};

/* The client lets go of its connection: every waiter learns err (through the ready queue:
 * this may run inside a task's call). Pushes already queued can still be received. */
static void detach(lua_State *L, rclient *s, int err) {
  luaio_conn *c = s->c;
  if (c == NULL) return;
  s->busy++;
  if (s->ref_on) {
    uv_unref(&c->h.handle);
    s->ref_on = 0;
  }
  s->c = NULL;
  s->close_err = err;
  luaio_conn_ud(c) = NULL;
  luaio_deadline_disarm(&s->recv_dl);
  while (s->wcount > 0) {
    waiter_t w = fifo_pop(s);
    if (w.co == NULL) continue;
    if (w.waiting) {
      lua_settop(w.co, 0); /* a pipeline's partial list */
      luaio_pusherror(L, err);
      luaio_ready(L, w.co, 2);
    } /* else a stream's task, busy with a piece: stream_next tells it */
    luaio_unanchor(w.ref);
  }
  if (s->receiver != NULL) {
    lua_State *co = s->receiver;
    s->receiver = NULL;
    luaio_pusherror(L, err);
    luaio_ready(L, co, 2);
    luaio_unanchor(s->receiver_ref);
  }
  lua_settop(s->B, 0);
  s->pinned = 0;
  s->stream_on = 0;
  s->stalled = 0;
  resp_init(&s->rp);
  s->busy--;
}

/* --- the Lua API: the client ------------------------------------------------------------------ */

/* Sends name + L[first..top] and waits: for the reply (W_CMD, W_STREAM), or for `left`
 * confirmations of subscribe kind `sub` (W_SUB). */
static int send_and_wait(lua_State *L, rclient *s, const char *name, size_t nlen, int first,
                         int flags, int kind, uint32_t left, int sub) {
  luaio_checktask(L, name);
  if (flags & F_REFUSE) return luaL_error(L, "redis: '%s' is not supported by this client", name);
  if (flags & F_CLIENT) {
    int cs = client_sub(L, first);
    if (cs < 0)
      return luaL_error(L, "redis: 'client reply' is not supported (replies would go missing)");
    flags |= cs;
  }
  if (s->c == NULL) return push_closed(L, s);
  int err = fifo_reserve(s);
  if (err) return luaio_pusherror(L, err);
  if (luaio_conn_queued(s->c) == 0) s->unflushed = 0; /* the loop's end wrote the others */
  err = encode_command(L, s->c, name, nlen, first, lua_gettop(L));
  if (err > 0)
    return luaL_argerror(
        L, err, lua_pushfstring(L, "string or number expected, got %s", luaL_typename(L, err)));
  if (err < 0) return luaio_pusherror(L, err);
  if (s->c == NULL) return push_closed(L, s); /* a flush on the way failed */
  track(s, flags);
  fifo_push(L, s, kind, left, sub);
  uint32_t batch = s->wcount / WRITE_SHARE > WRITE_MIN ? s->wcount / WRITE_SHARE : WRITE_MIN;
  if (++s->unflushed >= batch) { /* the server starts on these while tasks queue more */
    luaio_conn_flush(s->c);
    s->unflushed = 0;
  }
  return luaio_yield(L);
}

/* A command method: upvalue 1 is the name, 2 its flags. client:name(args...) -> reply |
 * nil, message (an error reply) | nil, err (the connection failed). */
static int client_command(lua_State *L) {
  rclient *s = check_client(L, 1);
  const char *name = lua_tostring(L, lua_upvalueindex(1));
  int flags = (int)lua_tointeger(L, lua_upvalueindex(2));
  if (flags & F_SUB) return luaL_error(L, "redis: '%s' has a method of its own", name);
  return send_and_wait(L, s, name, lua_objlen(L, lua_upvalueindex(1)), 2, flags, W_CMD, 1, 0);
}

static int subscribe_call(lua_State *L, rclient *s, int kind, int first);

/* client:call(name, args...) */
static int client_call(lua_State *L) {
  rclient *s = check_client(L, 1);
  luaL_checktype(L, 2, LUA_TSTRING);
  const char *name = lua_tostring(L, 2);
  size_t nlen = lua_objlen(L, 2);
  int flags = command_flags(name, nlen);
  if (flags & F_SUB) return subscribe_call(L, s, flags >> 9, 3);
  return send_and_wait(L, s, name, nlen, 3, flags, W_CMD, 1, 0);
}

/* method(name) -> the command method for name (stdlib/redis.lua caches them). */
static int redis_method(lua_State *L) {
  luaL_checktype(L, 1, LUA_TSTRING);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, command_flags(lua_tostring(L, 1), lua_objlen(L, 1)));
  lua_pushcclosure(L, client_command, 2);
  return 1;
}

/* subscribe and friends: waits for one confirmation per name (unsubscribing from all: one
 * per subscription, at least one). Returns the subscriptions left. */
static int subscribe_call(lua_State *L, rclient *s, int kind, int first) {
  int top = lua_gettop(L);
  uint32_t n = (uint32_t)(top >= first ? top - first + 1 : 0);
  if (n == 0 && kind < 3)
    return luaL_error(L, "redis: %s needs at least one name", sub_names[kind]);
  if (n == 0) {
    uint32_t have = kind == 3 ? s->nchan : kind == 4 ? s->npat : s->nshard;
    n = have > 0 ? have : 1;
  }
  return send_and_wait(L, s, sub_names[kind], strlen(sub_names[kind]), first, 0, W_SUB, n, kind);
}

static int client_subscribe(lua_State *L) {
  rclient *s = check_client(L, 1);
  return subscribe_call(L, s, (int)lua_tointeger(L, lua_upvalueindex(1)), 2);
}

/* client:receive([timeout_ms]) -> push (an array: kind, ...) | nil, err. ETIMEDOUT leaves the
 * client usable. */
static void recv_expire_cb(lua_State *L, void *arg) {
  rclient *s = arg;
  lua_State *co = s->receiver;
  if (co == NULL) return;
  s->receiver = NULL;
  idle_check(s);
  luaio_pusherror(co, UV_ETIMEDOUT);
  luaio_wake(L, co, s->receiver_ref, 2);
}

static void recv_expire(luaio_deadline *d) {
  rclient *s = (rclient *)((char *)d - offsetof(rclient, recv_dl));
  luaio_protect(recv_expire_cb, s, "redis receive timeout");
}

/* Pops the oldest queued push onto L; 0 when there is none. */
static int pushq_pop(lua_State *L, rclient *s) {
  if (s->pq_head == s->pq_tail) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->pushq_ref);
  lua_rawgeti(L, -1, (int)++s->pq_head);
  lua_pushnil(L);
  lua_rawseti(L, -3, (int)s->pq_head);
  lua_remove(L, -2);
  if (s->pq_head == s->pq_tail) s->pq_head = s->pq_tail = 0;
  return 1;
}

static int client_receive(lua_State *L) {
  rclient *s = check_client(L, 1);
  uint64_t ms = lua_isnoneornil(L, 2) ? LUAIO_FOREVER : luaio_checkms(L, 2, NULL);
  luaio_checktask(L, "receive");
  if (pushq_pop(L, s)) {
    if (s->stalled && s->c != NULL) parse(L, s);
    return 1;
  }
  if (s->stalled && s->c != NULL) {
    parse(L, s);
    if (pushq_pop(L, s)) return 1;
  }
  if (s->c == NULL) return push_closed(L, s);
  if (s->receiver != NULL)
    return luaio_pushnamederror(L, "EBUSY", "another task is already receiving");
  if (ms == 0) return luaio_pusherror(L, UV_ETIMEDOUT); /* a poll: nothing is queued */
  s->receiver = L;
  s->receiver_ref = luaio_anchor(L);
  busy_start(L, s, 1);
  luaio_deadline_arm(&s->recv_dl, ms, recv_expire);
  return luaio_yield(L);
}

/* pipeline(client, p) -> {replies...} | nil, err. p is a pipeline (newpipeline) or its
 * table. */
typedef struct {
  int n, bad;
} pipe_scan;

static __attribute__((noinline)) pipe_scan pipe_check(lua_State *L, int t) {
  pipe_scan r = {0, 0};
  int len = (int)lua_objlen(L, t);
  for (int i = 1; i <= len;) {
    lua_rawgeti(L, t, i);
    int argc = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (argc < 1 || i + argc > len) {
      r.bad = i;
      return r;
    }
    for (int k = 1; k <= argc; k++) {
      lua_rawgeti(L, t, i + k);
      int ok = is_arg(L, -1);
      lua_pop(L, 1);
      if (!ok) {
        r.bad = i + k;
        return r;
      }
    }
    r.n++;
    i += argc + 1;
  }
  return r;
}

static __attribute__((noinline)) int pipe_encode(lua_State *L, luaio_conn *c, int t) {
  out_t o = {c, NULL, NULL, NULL, 0};
  int len = (int)lua_objlen(L, t);
  for (int i = 1; i <= len && o.err == 0;) {
    lua_rawgeti(L, t, i);
    int argc = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (out_room(&o, 24)) o.p = put_header(o.p, '*', (size_t)argc);
    for (int k = 1; k <= argc && o.err == 0; k++) {
      lua_rawgeti(L, t, i + k);
      out_arg(&o, L, lua_gettop(L));
      lua_pop(L, 1);
    }
    i += argc + 1;
  }
  out_commit(&o);
  return o.err;
}

static int client_pipeline(lua_State *L) {
  rclient *s = check_client(L, 1);
  int flags = 0;
  if (lua_type(L, 2) == LUA_TUSERDATA) {
    flags = *(int *)luaio_checkudata(L, 2, &pipe_type, "redis pipeline");
    lua_getfenv(L, 2);
    lua_replace(L, 2);
  }
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  pipe_scan r = pipe_check(L, 2);
  if (r.bad) return luaL_error(L, "redis pipeline: bad entry at index %d", r.bad);
  if (r.n == 0) {
    lua_newtable(L);
    return 1;
  }
  luaio_checktask(L, "pipeline");
  if (s->c == NULL) return push_closed(L, s);
  int err = fifo_reserve(s);
  if (err == 0) err = pipe_encode(L, s->c, 2);
  if (err) return luaio_pusherror(L, err);
  if (s->c == NULL) return push_closed(L, s);
  track(s, flags);
  fifo_push(L, s, W_PIPE, (uint32_t)r.n, 0);
  return luaio_yield(L);
}

/* Records the command name_idx, L[first..top] in pipeline 1. */
static int pipe_add(lua_State *L, int name_idx, int first, int flags) {
  int *acc = luaio_checkudata(L, 1, &pipe_type, "redis pipeline");
  if (flags & (F_SUB | F_REFUSE))
    return luaL_error(L, "redis: '%s' cannot be pipelined", lua_tostring(L, name_idx));
  if (flags & F_CLIENT) {
    int sub = client_sub(L, first);
    if (sub < 0)
      return luaL_error(L, "redis: 'client reply' is not supported (replies would go missing)");
    flags |= sub;
  }
  *acc |= flags;
  int top = lua_gettop(L);
  for (int i = first; i <= top; i++) {
    int t = lua_type(L, i);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      luaL_argerror(L, i,
                    lua_pushfstring(L, "string or number expected, got %s", luaL_typename(L, i)));
  }
  lua_getfenv(L, 1);
  int len = (int)lua_objlen(L, -1);
  lua_pushinteger(L, top - first + 2); /* the name and the arguments */
  lua_rawseti(L, -2, ++len);
  lua_pushvalue(L, name_idx);
  lua_rawseti(L, -2, ++len);
  for (int i = first; i <= top; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, ++len);
  }
  lua_settop(L, 1);
  return 1; /* the pipeline: p:set(...):get(...) chains */
}

/* A pipeline's method: upvalue 1 the name, 2 its flags. p:name(args...) records the command. */
static int pipe_command(lua_State *L) {
  return pipe_add(L, lua_upvalueindex(1), 2, (int)lua_tointeger(L, lua_upvalueindex(2)));
}

/* p:call(name, args...) */
static int pipe_call(lua_State *L) {
  luaL_checktype(L, 2, LUA_TSTRING);
  return pipe_add(L, 2, 3, command_flags(lua_tostring(L, 2), lua_objlen(L, 2)));
}

static int redis_pipe_method(lua_State *L) {
  luaL_checktype(L, 1, LUA_TSTRING);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, command_flags(lua_tostring(L, 1), lua_objlen(L, 1)));
  lua_pushcclosure(L, pipe_command, 2);
  return 1;
}

/* newpipeline() -> a pipeline: a userdata whose environment is its command table (for each
 * command its argument count, its name, its arguments); pipetable(p) -> that table. */
static int redis_newpipeline(lua_State *L) {
  *(int *)lua_newuserdata(L, sizeof(int)) = 0; /* the flags of its commands, or'ed */
  lua_rawgeti(L, LUA_REGISTRYINDEX, pipe_type.ref);
  lua_setmetatable(L, -2);
  lua_newtable(L);
  lua_setfenv(L, -2);
  return 1;
}

static int redis_pipetable(lua_State *L) {
  luaio_checkudata(L, 1, &pipe_type, "redis pipeline");
  lua_getfenv(L, 1);
  return 1;
}

/* stream(client, name, args...) and stream_next(client): see stdlib/redis.lua's stream. */
static int client_stream(lua_State *L) {
  rclient *s = check_client(L, 1);
  luaL_checktype(L, 2, LUA_TSTRING);
  const char *name = lua_tostring(L, 2);
  size_t nlen = lua_objlen(L, 2);
  int flags = command_flags(name, nlen);
  if (flags & F_SUB) return luaL_error(L, "redis: '%s' cannot be streamed", name);
  return send_and_wait(L, s, name, nlen, 3, flags, W_STREAM, 1, 0);
}

static waiter_t *own_stream(lua_State *L, rclient *s) {
  waiter_t *w = fifo_head(s);
  if (w == NULL || w->kind != W_STREAM || w->co != L || w->waiting) return NULL;
  return w;
}

static int client_stream_next(lua_State *L) {
  rclient *s = check_client(L, 1);
  luaio_checktask(L, "stream");
  waiter_t *w = own_stream(L, s);
  if (s->c == NULL || w == NULL) return push_closed(L, s);
  luaio_conn *c = s->c;
  luaio_inbuf *in = c->in;
  size_t have = in ? in->len - in->off : 0;
  if (s->stream_on && s->stream_left > 0 && have > 0) { /* the next piece is here already */
    size_t take = have < (uint64_t)s->stream_left ? have : (size_t)s->stream_left;
    lua_pushliteral(L, "piece");
    lua_pushlstring(L, in->data + in->off, take);
    luaio_conn_consume(c, (uint32_t)take);
    s->stream_left -= (int64_t)take;
    return 2;
  }
  w->waiting = 1;
  if (s->timeout) luaio_conn_timeout(c, s->timeout);
  parse(L, s); /* the end, or the connection's end: wakes us through the ready queue */
  return luaio_yield(L);
}

/* stream_abort(client): the caller's sink failed; the rest of the string is dropped. */
static int client_stream_abort(lua_State *L) {
  rclient *s = check_client(L, 1);
  waiter_t *w = own_stream(L, s);
  if (s->c == NULL || w == NULL) return 0;
  luaio_unanchor(w->ref);
  w->co = NULL;
  parse(L, s);
  return 0;
}

/* close(): waiters get ECANCELED; what was written is still sent. */
static int client_close(lua_State *L) {
  rclient **box = luaio_checkudata(L, 1, &client_type, "redis client");
  rclient *s = *box;
  if (s == NULL || s->c == NULL) return 0;
  luaio_conn *c = s->c;
  detach(L, s, UV_ECANCELED);
  luaio_conn_end(c, 0);
  return 0;
}

static int client_gc(lua_State *L) {
  rclient **box = lua_touserdata(L, 1);
  rclient *s = *box;
  if (s == NULL) return 0;
  *box = NULL;
  s->box = NULL;
  if (s->c != NULL) {
    luaio_conn *c = s->c;
    detach(L, s, UV_ECANCELED);
    luaio_conn_end(c, 0);
  }
  maybe_free(s);
  return 0;
}

static int client_tostring(lua_State *L) {
  rclient **box = luaio_checkudata(L, 1, &client_type, "redis client");
  if (*box == NULL)
    lua_pushliteral(L, "redis client (released)");
  else if ((*box)->c == NULL)
    lua_pushliteral(L, "redis client (closed)");
  else
    lua_pushfstring(L, "redis client (%p)", (void *)*box);
  return 1;
}

/* --- the Lua API: module functions ------------------------------------------------------------- */

/* attach(socket, options) -> client: the socket's connection becomes a Redis client.
 * options: timeout (ms of silence while replies are due, 0 = none), max_pushes. */
static int redis_attach(lua_State *L) {
  luaL_checktype(L, 2, LUA_TTABLE);
  uint32_t timeout = luaio_ms32(luaio_opt_ms(L, 2, "timeout", 0));
  uint32_t max_pushes = (uint32_t)luaio_opt_uint(L, 2, "max_pushes", PUSHES_DEFAULT, 1, 1u << 30);
  rclient *s = calloc(1, sizeof *s);
  if (s == NULL) return luaio_pusherror(L, UV_ENOMEM);
  luaio_conn *c = luaio_socket_release(L, 1);
  if (c == NULL) {
    free(s);
    return luaio_pusherror(L, UV_ENOTCONN);
  }
  s->timeout = timeout;
  s->max_pushes = max_pushes;
  s->B = lua_newthread(L);
  s->B_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  s->pushq_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  rclient **box = lua_newuserdata(L, sizeof *box);
  *box = s;
  s->box = box;
  lua_rawgeti(L, LUA_REGISTRYINDEX, client_type.ref);
  lua_setmetatable(L, -2);
  s->c = c;
  luaio_conn_set_proto(c, &redis_proto, s);
  c->in_max = IN_BASE;
  uv_unref(&c->h.handle); /* idle: an idle client does not keep the process alive */
  luaio_conn_read_start(c);
  if (c->in != NULL && c->in->len > c->in->off) parse(L, s);
  return 1;
}

/* configure(client, resp3): after the handshake, whose commands set the connection up
 * rather than change it. */
static int redis_configure(lua_State *L) {
  rclient *s = check_client(L, 1);
  s->resp3 = (uint8_t)lua_toboolean(L, 2);
  s->unsafe = 0;
  return 0;
}

/* state(client) -> open, reusable: whether a pool may hand it to someone else. */
static int redis_state(lua_State *L) {
  rclient **box = luaio_checkudata(L, 1, &client_type, "redis client");
  rclient *s = *box;
  luaio_conn *c = s ? s->c : NULL;
  int open = c != NULL && !c->closing && c->read_err == 0 && c->write_err == 0;
  lua_pushboolean(L, open);
  lua_pushboolean(L, open && s->wcount == 0 && s->receiver == NULL && s->pq_head == s->pq_tail &&
                         !s->multi && !s->watch && !s->unsafe &&
                         s->nchan + s->npat + s->nshard == 0 && s->rp.depth == 0 &&
                         (c->in == NULL || c->in->len == c->in->off));
  return 2;
}

/* rebox(client[, into]) -> a new userdata (or `into`) for the client; the old one reads as
 * released. A pool hands a fresh one to each borrower. */
static int redis_rebox(lua_State *L) {
  rclient **old = luaio_checkudata(L, 1, &client_type, "redis client");
  rclient *s = *old;
  if (s == NULL) return luaL_argerror(L, 1, "redis client released to its pool");
  rclient **box;
  if (lua_isnoneornil(L, 2)) {
    box = lua_newuserdata(L, sizeof *box);
    lua_rawgeti(L, LUA_REGISTRYINDEX, client_type.ref);
    lua_setmetatable(L, -2);
  } else {
    box = luaio_checkudata(L, 2, &client_type, "redis client");
    if (*box != NULL) return luaL_argerror(L, 2, "a released client expected");
    lua_settop(L, 2);
  }
  *old = NULL;
  *box = s;
  s->box = box;
  if (s->pinned) { /* the pin is the old box: pin this one */
    lua_pushvalue(L, -1);
    lua_xmove(L, s->B, 1);
    lua_replace(s->B, 1);
  }
  return 1;
}

/* slot(key) -> the cluster hash slot of key: CRC16 (XMODEM) of the key, or of its {hash tag}
 * when it has a non-empty one, modulo 16384. */
static uint16_t crc16(const unsigned char *p, size_t n) {
  uint16_t crc = 0;
  while (n--) {
    crc ^= (uint16_t)(*p++ << 8);
    for (int i = 0; i < 8; i++)
      crc = crc & 0x8000 ? (uint16_t)(crc << 1 ^ 0x1021) : (uint16_t)(crc << 1);
  }
  return crc;
}

static int redis_slot(lua_State *L) {
  luaL_checkany(L, 1);
  size_t n;
  const char *k = lua_tolstring(L, 1, &n);
  if (k == NULL) return luaL_argerror(L, 1, "string or number expected");
  const char *open = memchr(k, '{', n);
  if (open != NULL) {
    const char *close = memchr(open + 1, '}', n - (size_t)(open + 1 - k));
    if (close != NULL && close > open + 1) {
      k = open + 1;
      n = (size_t)(close - k);
    }
  }
  lua_pushinteger(L, crc16((const unsigned char *)k, n) & 16383);
  return 1;
}

static const luaL_Reg client_methods[] = {
    {"call", client_call}, {"close", client_close}, {NULL, NULL}};

static const luaL_Reg redis_funcs[] = {{"attach", redis_attach},
                                       {"configure", redis_configure},
                                       {"method", redis_method},
                                       {"newpipeline", redis_newpipeline},
                                       {"pipe_method", redis_pipe_method},
                                       {"pipeline", client_pipeline},
                                       {"pipetable", redis_pipetable},
                                       {"rebox", redis_rebox},
                                       {"receive", client_receive},
                                       {"slot", redis_slot},
                                       {"state", redis_state},
                                       {"stream", client_stream},
                                       {"stream_abort", client_stream_abort},
                                       {"stream_next", client_stream_next},
                                       {NULL, NULL}};

int luaopen_luaio_redis(lua_State *L) {
  luaio_socket_register(L);
  luaio_newlib(L, redis_funcs);
  /* the client's metatable; its __index table is `methods`, completed by redis.lua */
  luaio_newudtype(L, &client_type, CLIENT_MT);
  lua_newtable(L);
  luaL_setfuncs(L, client_methods, 0);
  for (int k = 0; k < NSUB; k++) {
    lua_pushinteger(L, k);
    lua_pushcclosure(L, client_subscribe, 1);
    lua_setfield(L, -2, sub_names[k]);
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "methods");
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, client_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, client_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  /* the pipeline's metatable: its __index table is `pipe_methods` */
  luaio_newudtype(L, &pipe_type, PIPE_MT);
  lua_newtable(L);
  lua_pushcfunction(L, pipe_call);
  lua_setfield(L, -2, "call");
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "pipe_methods");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  return 1;
}
