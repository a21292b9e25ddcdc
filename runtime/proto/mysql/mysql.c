/*
 * mysql.c: the MySQL/MariaDB client, a protocol on the connection core (conn.c); module
 * "luaio.mysql", the C half of stdlib/mysql.lua.
 *
 * stdlib/mysql.lua connects and authenticates over a Lua socket (the handshake is rare and
 * branchy: Lua), then hands the socket's connection to this protocol (luaio_socket_release),
 * so TLS and Unix sockets come with tcp.connect. Then:
 *
 *   - A command (query, prepare, execute, ping...) is encoded straight into the connection's
 *     output queue and the calling task waits at the tail of a FIFO. Commands of several
 *     tasks sharing a connection are pipelined: the server answers them in order.
 *   - on_read frames packets in place from the input buffer (mysql_wire.c parses them) and
 *     builds the head waiter's result on that task's own stack while it is suspended: the
 *     rows table, each row a table keyed by column name (or an array), the values typed
 *     in C (past its first rows, a result's rows are built by Lua code generated for
 *     its columns, from values parsed here: see batch_row). The task is resumed once its
 *     last result set is complete.
 *   - Packets of 16 MiB and more arrive split; their pieces are joined into one buffer as
 *     they come. Commands that long are split the same way on the way out.
 *   - A prepared statement keeps the columns of its last result: an execute whose column
 *     definitions are the same (a hash of each one) reuses that columns table and its names.
 *
 * Values: integers are numbers, or strings of their digits outside +-2^53 (exact either
 * way); FLOAT and DOUBLE numbers; DECIMAL, dates and times strings (dates and times in the
 * text protocol's format in both protocols); anything else the bytes as a string; NULL is
 * mysql.null (a light userdata NULL, like cjson.null).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mysql_wire.h"
#include "socket.h"

#define CONN_MT "luaio.mysql.conn"
#define STMT_MT "luaio.mysql.stmt"
#define IN_BASE (64 * 1024)        /* the input buffer's usual limit */
#define EXACT (9007199254740992.0) /* 2^53 */

enum {
  COM_QUIT = 0x01,
  COM_QUERY = 0x03,
  COM_PREPARE = 0x16,
  COM_EXECUTE = 0x17,
  COM_CLOSE_STMT = 0x19
};
enum { K_QUERY, K_EXECUTE, K_PREPARE, K_SIMPLE };
/* Where the head waiter's response is. */
enum { S_FIRST, S_COLS, S_COLS_EOF, S_ROWS, S_PARAMS, S_PARAMS_EOF, S_PCOLS, S_PCOLS_EOF };

typedef struct {
  uint8_t type, decimals;
  uint16_t flags;
} mcol;

typedef struct mconn mconn;

/* A value handed to the fill function (stdlib/mysql.lua declares the same
 * struct for the FFI): a number, NULL, or bytes at sbuf + off. */
typedef struct {
  double num;
  int32_t off, len; /* len: CELL_NULL, CELL_NUM or the string's length */
} mcell;
enum { CELL_NULL = -1, CELL_NUM = -2 };
enum { B_OFF, B_ON, B_NEVER };

/* A prepared statement: a Lua userdata whose environment holds its connection's userdata
 * (so the connection's memory lives as long as the statement) and its columns table. */
typedef struct {
  mconn *owner;
  uint32_t id;
  uint16_t nparams, ncols;
  uint16_t ncached; /* columns described by hashes and the columns table; 0: none */
  uint64_t *hashes; /* of each column definition's bytes */
  uint8_t closed;
} mstmt;

typedef struct {
  lua_State *co;
  int ref;
  uint8_t kind, arrays, seq; /* seq: the sequence number its response starts with */
  mstmt *stmt;               /* execute and prepare */
  int stmt_ref;              /* execute: the statement's userdata, kept while it waits */
} waiter_t;

struct mconn {
  luaio_conn *c; /* NULL once closed */
  mconn **box;   /* the Lua userdata's slot; NULL once collected */
  int close_err;
  waiter_t *w; /* ring of waiters; wcap a power of two */
  uint32_t whead, wcount, wcap;
  /* the head waiter's response */
  uint8_t st, seq, started, reuse, deprecate_eof, parsing, ref_on;
  uint32_t left, ncols, nrows;
  int base; /* co's stack: base+1 first result, +2 last result, +3 this one, +4 columns, +5.. names */
  mcol *cols;
  uint64_t *hashes;
  uint32_t cols_cap;
  /* a packet split in 16 MiB pieces, joined */
  uint8_t *big;
  size_t big_len, big_cap;
  uint32_t chunk_left;
  uint8_t joining, last_chunk;
  uint16_t status; /* the server's last status flags */
  uint32_t timeout, max_packet;
  int self_ref; /* the userdata, kept while anything waits: a waiting call's arguments are
                 * not on its stack once it yields */
  /* the rows batched for the result's fill function (batch_row): BATCH_ROWS rows of
   * cells, BATCH_BYTES of their strings; allocated while a result set is read */
  mcell *cells;
  char *sbuf;
  uint32_t bcount;
  size_t sbuf_len;
  uint8_t batching; /* B_OFF, B_ON, B_NEVER: for the result set being read */
};

static luaio_udtype conn_type = {LUA_NOREF, NULL}, stmt_type = {LUA_NOREF, NULL};
static const luaio_conn_proto mysql_proto;

void luaio_mysql_auth_register(lua_State *L);

/* --- small helpers ---------------------------------------------------------------------------- */

static void maybe_free(mconn *s) {
  if (s->c != NULL || s->box != NULL || s->parsing) return;
  free(s->w);
  free(s->cols);
  free(s->hashes);
  free(s->big);
  free(s->cells);
  free(s->sbuf);
  free(s);
}

static mconn *check_conn(lua_State *L, int arg) {
  mconn **box = luaio_checkudata(L, arg, &conn_type, "mysql connection");
  return *box;
}

static int push_closed(lua_State *L, mconn *s) {
  return luaio_pusherror(L, s && s->close_err ? s->close_err : UV_ENOTCONN);
}

static void busy(mconn *s, int on) {
  if (s->c == NULL || s->ref_on == on) return;
  s->ref_on = (uint8_t)on;
  if (on)
    uv_ref(&s->c->h.handle);
  else
    uv_unref(&s->c->h.handle); /* an idle connection does not keep the process alive */
}

/* --- the waiters -------------------------------------------------------------------------- */

static int fifo_reserve(mconn *s) {
  if (s->wcount < s->wcap) return 0;
  uint32_t cap = s->wcap ? s->wcap * 2 : 4;
  waiter_t *w = malloc(cap * sizeof *w);
  if (w == NULL) return UV_ENOMEM;
  for (uint32_t i = 0; i < s->wcount; i++) w[i] = s->w[(s->whead + i) & (s->wcap - 1)];
  free(s->w);
  s->w = w;
  s->wcap = cap;
  s->whead = 0;
  return 0;
}

/* L waits for a response; its arg 1 is the connection, stmt_arg (or 0) the statement. */
static void fifo_push(lua_State *L, mconn *s, int kind, int arrays, int packets, mstmt *stmt,
                      int stmt_arg) {
  waiter_t *w = &s->w[(s->whead + s->wcount) & (s->wcap - 1)];
  w->co = L;
  w->ref = luaio_anchor(L);
  w->kind = (uint8_t)kind;
  w->arrays = (uint8_t)arrays;
  w->seq = (uint8_t)packets;
  w->stmt = stmt;
  w->stmt_ref = LUA_NOREF;
  if (stmt_arg) {
    lua_pushvalue(L, stmt_arg);
    w->stmt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (s->wcount++ == 0) {
    lua_pushvalue(L, 1);
    s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    busy(s, 1);
    if (s->timeout) luaio_conn_timeout(s->c, s->timeout);
  }
}

static waiter_t fifo_pop(mconn *s) {
  waiter_t w = s->w[s->whead];
  s->whead = (s->whead + 1) & (s->wcap - 1);
  s->wcount--;
  s->started = 0;
  s->st = S_FIRST;
  luaL_unref(luaio_mainstate(), LUA_REGISTRYINDEX, w.stmt_ref);
  if (s->wcount == 0) {
    luaL_unref(luaio_mainstate(), LUA_REGISTRYINDEX, s->self_ref);
    s->self_ref = LUA_NOREF;
    busy(s, 0);
    if (s->c != NULL && s->timeout) luaio_conn_timeout(s->c, 0);
  }
  return w;
}

/* --- commands on the wire -------------------------------------------------------------------- */

/* A command's payload: reserved in the output queue (under 16 MiB), else built in a buffer
 * of its own and split into packets by cmd_end. */
typedef struct {
  uint8_t *base;
  size_t len;
  int big;
} cmdbuf;

static uint8_t *cmd_begin(luaio_conn *c, cmdbuf *cb, size_t len) {
  cb->len = len;
  cb->big = len >= MW_MAX_CHUNK;
  cb->base = cb->big ? malloc(len) : (uint8_t *)luaio_conn_reserve(c, 4 + len);
  if (cb->base == NULL) return NULL;
  return cb->big ? cb->base : cb->base + 4;
}

static void put_header(uint8_t *h, size_t len, uint8_t seq) {
  h[0] = (uint8_t)len;
  h[1] = (uint8_t)(len >> 8);
  h[2] = (uint8_t)(len >> 16);
  h[3] = seq;
}

/* Queues the command; returns the number of packets it took (> 0) or an error. */
static int cmd_end(luaio_conn *c, cmdbuf *cb) {
  if (!cb->big) {
    put_header(cb->base, cb->len, 0);
    luaio_conn_commit(c, 4 + cb->len);
    return c->write_err ? c->write_err : 1;
  }
  size_t off = 0;
  int seq = 0, err = 0;
  for (;;) {
    size_t n = cb->len - off < MW_MAX_CHUNK ? cb->len - off : MW_MAX_CHUNK;
    uint8_t h[4];
    put_header(h, n, (uint8_t)seq++);
    if (!err) err = luaio_conn_write(c, (const char *)h, 4);
    if (!err) err = luaio_conn_write(c, (const char *)cb->base + off, n);
    off += n;
    if (n < MW_MAX_CHUNK)
      break; /* a last piece of exactly 16 MiB - 1 is followed by an empty one */
  }
  free(cb->base);
  return err ? err : seq;
}

/* Sends command `code` with the string at idx (may be absent: idx 0) as its argument. */
static int send_simple(lua_State *L, luaio_conn *c, int code, int idx) {
  size_t len = 0;
  const char *arg = idx ? lua_tolstring(L, idx, &len) : NULL;
  cmdbuf cb;
  uint8_t *p = cmd_begin(c, &cb, 1 + len);
  if (p == NULL) return c->write_err ? c->write_err : UV_ENOMEM;
  p[0] = (uint8_t)code;
  if (len) memcpy(p + 1, arg, len);
  return cmd_end(c, &cb);
}

/* --- execute's parameters ------------------------------------------------------------------- */

static int is_null(lua_State *L, int i) {
  int t = lua_type(L, i);
  return t == LUA_TNIL || t == LUA_TNONE ||
         (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, i) == NULL);
}

static int is_int64(lua_Number d) {
  return d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0;
}

/* The payload size of parameters first..last, or 0 with *bad the index of one of a type
 * that cannot be bound. */
static size_t params_size(lua_State *L, int first, int last, int *bad) {
  int n = last - first + 1;
  size_t size = (size_t)(n + 7) / 8 + 1 + 2 * (size_t)n;
  for (int i = first; i <= last; i++) {
    switch (lua_type(L, i)) {
      case LUA_TBOOLEAN: size += 1; break;
      case LUA_TNUMBER: size += 8; break;
      case LUA_TSTRING: {
        size_t len = lua_objlen(L, i);
        size += mw_lenenc_size(len) + len;
        break;
      }
      default:
        if (!is_null(L, i)) {
          *bad = i;
          return 0;
        }
    }
  }
  return size;
}

static uint8_t *put_le(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) *p++ = (uint8_t)(v >> (8 * i));
  return p;
}

static void put_params(lua_State *L, uint8_t *p, int first, int last) {
  int n = last - first + 1;
  uint8_t *nulls = p, *types = p + (n + 7) / 8 + 1;
  memset(nulls, 0, (size_t)(n + 7) / 8);
  types[-1] = 1; /* new parameters bound: the types follow */
  uint8_t *v = types + 2 * n;
  for (int i = first, k = 0; i <= last; i++, k++) {
    uint8_t type = MW_NULL;
    switch (lua_type(L, i)) {
      case LUA_TBOOLEAN:
        type = MW_TINY;
        *v++ = (uint8_t)lua_toboolean(L, i);
        break;
      case LUA_TNUMBER: {
        lua_Number d = lua_tonumber(L, i);
        if (is_int64(d)) {
          type = MW_LONGLONG;
          v = put_le(v, (uint64_t)(int64_t)d, 8);
        } else {
          type = MW_DOUBLE;
          uint64_t bits;
          memcpy(&bits, &d, 8);
          v = put_le(v, bits, 8);
        }
        break;
      }
      case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, i, &len);
        type = MW_VAR_STRING;
        v = mw_put_lenenc(v, len);
        memcpy(v, s, len);
        v += len;
        break;
      }
      default: nulls[k / 8] |= (uint8_t)(1 << (k % 8));
    }
    types[2 * k] = type;
    types[2 * k + 1] = 0;
  }
}

/* --- values ------------------------------------------------------------------------------------ */

/* An integer value: 0 when a Lua number holds it exactly (|v| <= 2^53), else the length of
 * its decimal digits, written to digits (a string keeps it lossless). */
static size_t int_digits(const mw_value *v, char digits[24]) {
  if (v->kind == MW_V_INT && v->i >= -(int64_t)EXACT && v->i <= (int64_t)EXACT) return 0;
  if (v->kind == MW_V_UINT || v->i > 0)
    return (size_t)snprintf(digits, 24, "%llu", (unsigned long long)v->u);
  return (size_t)snprintf(digits, 24, "%lld", (long long)v->i);
}

static void push_int(lua_State *L, const mw_value *v) {
  char digits[24];
  size_t n = int_digits(v, digits);
  if (n == 0)
    lua_pushnumber(L, (lua_Number)v->i);
  else
    lua_pushlstring(L, digits, n);
}

static int is_int_type(uint8_t t) {
  return t == MW_TINY || t == MW_SHORT || t == MW_LONG || t == MW_INT24 || t == MW_LONGLONG ||
         t == MW_YEAR;
}

/* A text-protocol value of an integer or float column as a number: 1 with *d, or 0 when it
 * stays bytes (another type, not a number, or an integer past +-2^53: its digits are exact). */
static int text_number(const mcol *col, const char *s, size_t n, double *d) {
  mw_value v;
  if (is_int_type(col->type) && mw_text_int(s, n, &v) == 0) {
    if (v.kind != MW_V_INT || v.i < -(int64_t)EXACT || v.i > (int64_t)EXACT) return 0;
    *d = (double)v.i;
    return 1;
  }
  return (col->type == MW_DOUBLE || col->type == MW_FLOAT) && mw_text_double(s, n, d) == 0;
}

static void push_text(lua_State *L, const mcol *col, const char *s, size_t n) {
  double d;
  if (text_number(col, s, n, &d))
    lua_pushnumber(L, d);
  else
    lua_pushlstring(L, s, n);
}

static void push_binary(lua_State *L, const mw_value *v) {
  switch (v->kind) {
    case MW_V_INT:
    case MW_V_UINT: push_int(L, v); break;
    case MW_V_DOUBLE: lua_pushnumber(L, v->d); break;
    case MW_V_BYTES: lua_pushlstring(L, v->s, v->n); break;
    default: lua_pushlightuserdata(L, NULL);
  }
}

/* --- columns ----------------------------------------------------------------------------------- */

static const char *type_name(uint8_t t) {
  static const char *const low[] = {"DECIMAL", "TINY", "SHORT",     "LONG",     "FLOAT",
                                    "DOUBLE",  "NULL", "TIMESTAMP", "LONGLONG", "INT24",
                                    "DATE",    "TIME", "DATETIME",  "YEAR",     "NEWDATE",
                                    "VARCHAR", "BIT"};
  static const char *const high[] = {"JSON",       "NEWDECIMAL",  "ENUM",      "SET",
                                     "TINY_BLOB",  "MEDIUM_BLOB", "LONG_BLOB", "BLOB",
                                     "VAR_STRING", "STRING",      "GEOMETRY"};
  if (t <= MW_BIT) return low[t];
  if (t >= MW_JSON) return high[t - MW_JSON];
  return "UNKNOWN";
}

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
  uint64_t h = 1469598103934665603ull ^ n;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

static void set_str(lua_State *L, const char *k, const char *s, size_t n) {
  lua_pushlstring(L, s, n);
  lua_setfield(L, -2, k);
}

static void set_num(lua_State *L, const char *k, lua_Number v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

/* Pushes {name, table, schema, org_name, type, length, decimals, flags, charset}. */
static void push_column(lua_State *L, const mw_column *col) {
  lua_createtable(L, 0, 9);
  set_str(L, "name", col->name, col->name_len);
  set_str(L, "table", col->table, col->table_len);
  set_str(L, "schema", col->schema, col->schema_len);
  set_str(L, "org_name", col->org_name, col->org_name_len);
  lua_pushstring(L, type_name(col->type));
  lua_setfield(L, -2, "type");
  set_num(L, "length", col->length);
  set_num(L, "decimals", col->decimals);
  set_num(L, "flags", col->flags);
  set_num(L, "charset", col->charset);
}

static int grow_cols(mconn *s, uint32_t n) {
  if (n <= s->cols_cap) return 0;
  mcol *cols = realloc(s->cols, n * sizeof *cols);
  if (cols == NULL) return UV_ENOMEM;
  s->cols = cols;
  uint64_t *h = realloc(s->hashes, n * sizeof *h);
  if (h == NULL) return UV_ENOMEM;
  s->hashes = h;
  s->cols_cap = n;
  return 0;
}

/* The stack of the head waiter's task while its response is built, from s->base:
 *   +1 the first result (a prepare: the statement), +2 the last result, +3 the rows table
 *   being filled, +4 its columns table, +5 the statement (execute, prepare) or nil, +6 the
 *   result's fill function (batch_start) or nil, +7... the column names (the keys of each
 *   row). */
#define FIRST(s) ((s)->base + 1)
#define LAST(s) ((s)->base + 2)
#define ROWS(s) ((s)->base + 3)
#define COLUMNS(s) ((s)->base + 4)
#define STMT(s) ((s)->base + 5)
#define FILL(s) ((s)->base + 6)
#define NAMES(s) ((s)->base + 7)

/* A result's columns: at most MAX_COLS (a SELECT list may be longer than a table's 4096
 * columns; a prepared statement counts them in 16 bits), 12 bytes each in s->cols and
 * s->hashes. Up to STACK_NAMES names are on the stack from NAMES; lua_checkstack allows a C
 * call 8000 slots, so a wider result has them in a table there instead. */
#define MAX_COLS 65535
#define STACK_NAMES 4096

/* The statement's cached columns table (its environment's [2]). */
static void push_cached(lua_State *co, int stmt_idx) {
  lua_getfenv(co, stmt_idx);
  lua_rawgeti(co, -1, 2);
  lua_remove(co, -2);
}

/* A result set of n columns begins. With a statement whose cache has n columns, nothing is
 * built while the definitions match it. */
static int columns_begin(mconn *s, lua_State *co, uint32_t n, mstmt *stmt) {
  if (n > MAX_COLS) return UV_EPROTO;
  if (grow_cols(s, n) || !lua_checkstack(co, (n <= STACK_NAMES ? (int)n : 1) + 24)) return UV_ENOMEM;
  s->ncols = n;
  s->left = n;
  s->reuse = stmt != NULL && stmt->ncached == n;
  if (!s->reuse) {
    lua_createtable(co, (int)n, 0);
    lua_replace(co, COLUMNS(s));
  }
  return 0;
}

/* The next column definition. At the first that does not match the statement's cache, the
 * columns table is made from the cache's entries so far. */
static int column_add(mconn *s, lua_State *co, const uint8_t *p, size_t len, mstmt *stmt,
                      int stmt_idx) {
  mw_column col;
  if (s->left == 0 || mw_parse_column(p, len, &col)) return UV_EPROTO;
  uint32_t i = s->ncols - s->left--;
  s->cols[i].type = col.type;
  s->cols[i].flags = col.flags;
  s->cols[i].decimals = col.decimals;
  s->hashes[i] = hash_bytes(p, len);
  if (s->reuse) {
    if (s->hashes[i] == stmt->hashes[i]) return 0;
    s->reuse = 0;
    lua_createtable(co, (int)s->ncols, 0);
    push_cached(co, stmt_idx);
    for (uint32_t k = 1; k <= i; k++) {
      lua_rawgeti(co, -1, (int)k);
      lua_rawseti(co, -3, (int)k);
    }
    lua_pop(co, 1);
    lua_replace(co, COLUMNS(s));
  }
  push_column(co, &col);
  lua_rawseti(co, COLUMNS(s), (int)i + 1);
  return 0;
}

/* The columns are all there: the cache's table when it matched, else the new one becomes a
 * statement's cache; then the names are pushed. */
static int columns_end(mconn *s, lua_State *co, mstmt *stmt, int stmt_idx) {
  if (s->reuse) {
    push_cached(co, stmt_idx);
    lua_replace(co, COLUMNS(s));
  } else if (stmt != NULL) {
    uint64_t *h = realloc(stmt->hashes, (s->ncols ? s->ncols : 1) * sizeof *h);
    if (h == NULL) return UV_ENOMEM;
    memcpy(h, s->hashes, s->ncols * sizeof *h);
    stmt->hashes = h;
    stmt->ncached = (uint16_t)s->ncols;
    lua_getfenv(co, stmt_idx);
    lua_pushvalue(co, COLUMNS(s));
    lua_rawseti(co, -2, 2);
    lua_pop(co, 1);
  }
  lua_settop(co, STMT(s));
  lua_pushnil(co); /* FILL */
  int wide = s->ncols > STACK_NAMES;
  if (wide) lua_createtable(co, (int)s->ncols, 0);
  for (uint32_t i = 1; i <= s->ncols; i++) {
    lua_rawgeti(co, COLUMNS(s), (int)i);
    lua_getfield(co, -1, "name");
    lua_remove(co, -2);
    if (wide) lua_rawseti(co, NAMES(s), (int)i);
  }
  return 0;
}

/* --- results -------------------------------------------------------------------------------- */

/* The result on top of co is complete: it becomes the first, or the last one's `next`. */
static void result_done(mconn *s, lua_State *co) {
  if (lua_isnil(co, FIRST(s))) {
    lua_pushvalue(co, -1);
    lua_replace(co, FIRST(s));
  } else {
    lua_pushvalue(co, -1);
    lua_setfield(co, LAST(s), "next");
  }
  lua_replace(co, LAST(s));
  lua_settop(co, STMT(s));
  lua_pushnil(co);
  lua_replace(co, ROWS(s));
  lua_pushnil(co);
  lua_replace(co, COLUMNS(s));
}

/* A statement without rows: {affected_rows, insert_id, warnings, info, status}. */
static void push_ok(lua_State *co, const mw_ok *ok) {
  mw_value v;
  lua_createtable(co, 0, 5);
  v.kind = ok->affected_rows > INT64_MAX ? MW_V_UINT : MW_V_INT;
  v.u = ok->affected_rows;
  push_int(co, &v);
  lua_setfield(co, -2, "affected_rows");
  v.kind = ok->insert_id > INT64_MAX ? MW_V_UINT : MW_V_INT;
  v.u = ok->insert_id;
  push_int(co, &v);
  lua_setfield(co, -2, "insert_id");
  set_num(co, "warnings", ok->warnings);
  set_num(co, "status", ok->status);
  set_str(co, "info", ok->info ? ok->info : "", ok->info_len);
}

/* nil, {code = 0, name = "EMYSQL", message, errno, sqlstate[, results]}. */
static void push_server_error(lua_State *co, const mw_err *e, int results) {
  lua_pushnil(co);
  lua_pushlstring(co, e->message, e->message_len);
  luaio_newerror(co, 0, "EMYSQL", lua_tostring(co, -1));
  lua_remove(co, -2);
  set_num(co, "errno", e->code);
  lua_pushstring(co, e->sqlstate);
  lua_setfield(co, -2, "sqlstate");
  if (results) {
    lua_pushvalue(co, results);
    lua_setfield(co, -2, "results");
  }
}

/* --- the response state machine ------------------------------------------------------------- */

/* A waiter to wake once the packet's bytes are consumed (its values are on its stack). */
typedef struct {
  lua_State *co;
  int ref, n;
} pending_wake;

/* The head waiter is done: the top n values of its stack are its results. */
static void finish(mconn *s, lua_State *co, int first, int n, pending_wake *pw) {
  int base = s->base;
  waiter_t w = fifo_pop(s);
  for (int i = 0; i < n; i++) lua_pushvalue(co, first + i);
  for (int i = n - 1; i >= 0; i--) lua_replace(co, base + 1 + i);
  lua_settop(co, base + n);
  pw->co = w.co;
  pw->ref = w.ref;
  pw->n = n;
}

/* --- rows in batches ---------------------------------------------------------------------- */

/* The rows of a long result are built in Lua, by a function stdlib/mysql.lua generates
 * for its column names (C.rowgen): a table constructor with the names as constant keys,
 * which LuaJIT compiles to a copy of a template table and stores at known slots, where the
 * C API inserts each key into a new table (10 keyed numbers: 340 ns a row through the API,
 * 170 compiled; 5 strings more: 1090 against 580). C still parses each row, into cells, and
 * hands them over BATCH_ROWS at a time. The first BATCH_FROM rows are built in C: a short
 * result is not worth generating code for. */
#define BATCH_FROM 16
#define BATCH_ROWS 128
#define BATCH_BYTES (64 * 1024)   /* the copied strings of one batch */
#define BATCH_MAX_ROW (16 * 1024) /* a longer row is built in C (its strings copied once) */
#define BATCH_MAX_COLS 200

static int rowgen_ref = LUA_NOREF;

/* Gets the fill function for the result's columns from rowgen(arrays, names...); without
 * one (too many columns, an error) the result's rows are built in C. */
static void batch_start(mconn *s, lua_State *co, int arrays) {
  lua_State *L = luaio_mainstate();
  s->batching = B_NEVER;
  if (rowgen_ref == LUA_NOREF || s->ncols > BATCH_MAX_COLS || !lua_checkstack(L, 8 + (int)s->ncols))
    return;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rowgen_ref);
  lua_pushboolean(L, arrays);
  for (uint32_t i = 0; i < s->ncols; i++) {
    lua_pushvalue(co, NAMES(s) + (int)i);
    lua_xmove(co, L, 1);
  }
  if (lua_pcall(L, (int)s->ncols + 1, 1, 0) != 0 || !lua_isfunction(L, -1)) {
    lua_settop(L, top);
    return;
  }
  lua_xmove(L, co, 1);
  lua_replace(co, FILL(s));
  s->batching = B_ON;
}

/* fill(rows, n, cells, sbuf, count) appends the batched rows after rows[n]. */
static int batch_flush(mconn *s, lua_State *co) {
  uint32_t count = s->bcount;
  if (count == 0) return 0;
  s->bcount = 0;
  s->sbuf_len = 0;
  lua_State *L = luaio_mainstate();
  if (!lua_checkstack(L, 8)) return UV_ENOMEM;
  int top = lua_gettop(L);
  lua_pushvalue(co, FILL(s));
  lua_pushvalue(co, ROWS(s));
  lua_xmove(co, L, 2);
  lua_pushnumber(L, s->nrows);
  lua_pushlightuserdata(L, s->cells);
  lua_pushlightuserdata(L, s->sbuf);
  lua_pushnumber(L, count);
  int err = lua_pcall(L, 5, 0, 0);
  lua_settop(L, top);
  if (err) return UV_ENOMEM; /* the fill function only allocates */
  s->nrows += count;
  return 0;
}

/* The result set ends (or fails): batched rows are dropped, the buffers freed (a connection
 * keeps no memory for its next result). */
static void batch_end(mconn *s) {
  s->batching = B_OFF;
  s->bcount = 0;
  s->sbuf_len = 0;
  free(s->cells);
  free(s->sbuf);
  s->cells = NULL;
  s->sbuf = NULL;
}

/* Bytes of a string cell, copied into sbuf. */
static void cell_bytes(mconn *s, mcell *cell, const char *str, size_t n) {
  memcpy(s->sbuf + s->sbuf_len, str, n);
  cell->off = (int32_t)s->sbuf_len;
  cell->len = (int32_t)n;
  s->sbuf_len += n;
}

/* A text row's values as cells: numbers for integer and float columns (text_number). */
static int text_cells(mconn *s, mw_buf *b, mcell *cell) {
  for (uint32_t i = 0; i < s->ncols; i++) {
    const char *str;
    size_t slen;
    int r = mw_lenstr(b, &str, &slen);
    if (r < 0) return UV_EPROTO;
    if (r == 1)
      cell[i].len = CELL_NULL;
    else if (text_number(&s->cols[i], str, slen, &cell[i].num))
      cell[i].len = CELL_NUM;
    else
      cell_bytes(s, &cell[i], str, slen);
  }
  return 0;
}

/* A binary row's values as cells, as push_binary would push them. */
static int binary_cells(mconn *s, mw_buf *b, mcell *cell) {
  const uint8_t *nulls;
  char tmp[64];
  if (mw_binary_row(b, s->ncols, &nulls)) return UV_EPROTO;
  for (uint32_t i = 0; i < s->ncols; i++) {
    const mcol *col = &s->cols[i];
    mw_value v;
    if (mw_binary_null(nulls, i)) {
      cell[i].len = CELL_NULL;
      continue;
    }
    if (mw_binary_value(b, col->type, col->flags, col->decimals, &v, tmp)) return UV_EPROTO;
    if (v.kind == MW_V_INT || v.kind == MW_V_UINT) { /* as push_int: a number or digits */
      char digits[24];
      size_t n = int_digits(&v, digits);
      if (n == 0)
        cell[i].num = (double)v.i, cell[i].len = CELL_NUM;
      else
        cell_bytes(s, &cell[i], digits, n);
    } else if (v.kind == MW_V_DOUBLE) {
      cell[i].num = v.d, cell[i].len = CELL_NUM;
    } else if (v.kind == MW_V_BYTES) {
      cell_bytes(s, &cell[i], v.s, v.n);
    } else {
      cell[i].len = CELL_NULL;
    }
  }
  return 0;
}

/* One row into the batch: its values as cells, its strings copied into sbuf. A binary
 * row's strings may be longer than its bytes (dates and big integers become text): at most
 * BINARY_TEXT_MAX bytes a column more. */
#define BINARY_TEXT_MAX 64
static int batch_row(mconn *s, lua_State *co, int binary, const uint8_t *p, size_t len) {
  uint32_t n = s->ncols;
  size_t most = binary ? len + (size_t)n * BINARY_TEXT_MAX : len;
  int err;
  if ((s->bcount == BATCH_ROWS || s->sbuf_len + most > BATCH_BYTES) && (err = batch_flush(s, co)))
    return err;
  if (s->cells == NULL) {
    s->cells = malloc((size_t)BATCH_ROWS * n * sizeof *s->cells);
    s->sbuf = malloc(BATCH_BYTES);
    if (s->cells == NULL || s->sbuf == NULL) return UV_ENOMEM;
  }
  mw_buf b = {p, p + len};
  mcell *cell = s->cells + (size_t)s->bcount * n;
  if ((err = binary ? binary_cells(s, &b, cell) : text_cells(s, &b, cell))) return err;
  if (b.p != b.end) return UV_EPROTO; /* more values than columns */
  s->bcount++;
  return 0;
}

static int on_row(mconn *s, lua_State *co, int arrays, int binary, const uint8_t *p, size_t len) {
  if (len + (binary ? s->ncols * BINARY_TEXT_MAX : 0) <= BATCH_MAX_ROW) {
    if (s->batching == B_OFF && s->nrows >= BATCH_FROM) batch_start(s, co, arrays);
    if (s->batching == B_ON) return batch_row(s, co, binary, p, len);
  }
  int err = batch_flush(s, co); /* rows batched before this one come first */
  if (err) return err;
  int names = NAMES(s), n = (int)s->ncols, wide = s->ncols > STACK_NAMES;
  mw_buf b = {p, p + len};
  const uint8_t *nulls = NULL;
  char tmp[64];
  if (binary && mw_binary_row(&b, s->ncols, &nulls)) return UV_EPROTO;
  lua_createtable(co, arrays ? n : 0, arrays ? 0 : n);
  for (int i = 0; i < n; i++) {
    if (!arrays && wide)
      lua_rawgeti(co, names, i + 1);
    else if (!arrays)
      lua_pushvalue(co, names + i);
    const mcol *col = &s->cols[i];
    if (binary) {
      mw_value v;
      if (mw_binary_null(nulls, (unsigned)i))
        lua_pushlightuserdata(co, NULL);
      else if (mw_binary_value(&b, col->type, col->flags, col->decimals, &v, tmp))
        return UV_EPROTO;
      else
        push_binary(co, &v);
    } else {
      const char *str;
      size_t slen;
      int r = mw_lenstr(&b, &str, &slen);
      if (r < 0) return UV_EPROTO;
      if (r == 1)
        lua_pushlightuserdata(co, NULL);
      else
        push_text(co, col, str, slen);
    }
    if (arrays)
      lua_rawseti(co, -2, i + 1);
    else
      lua_rawset(co, -3);
  }
  if (b.p != b.end) return UV_EPROTO; /* more values than columns */
  lua_rawseti(co, ROWS(s), (int)++s->nrows);
  return 0;
}

/* The rows table, with rows.columns. */
static void rows_begin(mconn *s, lua_State *co) {
  lua_createtable(co, 0, 1);
  lua_pushvalue(co, COLUMNS(s));
  lua_setfield(co, -2, "columns");
  lua_replace(co, ROWS(s));
  s->nrows = 0;
  s->batching = B_OFF;
  s->st = s->deprecate_eof ? S_ROWS : S_COLS_EOF;
}

/* An OK or EOF ends a result (rows, or a statement's OK); the status says whether another
 * follows. */
static void result_end(mconn *s, lua_State *co, const mw_ok *ok, pending_wake *pw) {
  s->status = ok->status;
  if (s->st == S_ROWS)
    lua_pushvalue(co, ROWS(s));
  else
    push_ok(co, ok);
  result_done(s, co);
  if (ok->status & MW_MORE_RESULTS) {
    s->st = S_FIRST;
    return;
  }
  finish(s, co, FIRST(s), 1, pw);
}

static int stmt_new(lua_State *co, mconn *s, const mw_prepared *pr);

/* A prepare's column definitions begin (or, without columns, it is done). */
static int prepare_columns(mconn *s, lua_State *co, pending_wake *pw) {
  if (s->ncols == 0) {
    finish(s, co, FIRST(s), 1, pw);
    return 0;
  }
  int err = columns_begin(s, co, s->ncols, NULL);
  s->st = S_PCOLS;
  return err;
}

/* The first packet of a response (or of its next result). */
static int on_first(mconn *s, lua_State *co, waiter_t *w, const uint8_t *p, size_t len,
                    pending_wake *pw) {
  mw_ok ok;
  if (w->kind == K_PREPARE) {
    mw_prepared pr;
    if (mw_parse_prepared(p, len, &pr) || stmt_new(co, s, &pr)) return UV_EPROTO;
    lua_pushvalue(co, -1);
    lua_replace(co, STMT(s));
    lua_replace(co, FIRST(s));
    w->stmt = lua_touserdata(co, FIRST(s));
    s->left = pr.nparams;
    s->ncols = pr.ncols;
    s->st = S_PARAMS;
    return pr.nparams == 0 ? prepare_columns(s, co, pw) : 0;
  }
  if (p[0] == 0x00 || (w->kind == K_SIMPLE && p[0] == 0xfe)) {
    if (mw_parse_ok(p, len, &ok)) return UV_EPROTO;
    result_end(s, co, &ok, pw);
    return 0;
  }
  if (p[0] == 0xfb && w->kind == K_QUERY) { /* LOCAL INFILE: refused, with an empty file */
    uint8_t h[4];
    put_header(h, 0, s->seq++);
    luaio_conn_write(s->c, (const char *)h, 4);
    return 0;
  }
  mw_buf b = {p, p + len};
  uint64_t n;
  if (w->kind == K_SIMPLE || mw_lenenc(&b, &n) || b.p != b.end || n == 0 || n > MAX_COLS)
    return UV_EPROTO;
  s->st = S_COLS;
  return columns_begin(s, co, (uint32_t)n, w->kind == K_EXECUTE ? w->stmt : NULL);
}

/* One packet of the head waiter's response. */
static int on_packet(mconn *s, const uint8_t *p, size_t len, pending_wake *pw) {
  waiter_t *w = &s->w[s->whead];
  lua_State *co = w->co;
  mw_ok ok;
  int err;
  if (len == 0) return UV_EPROTO;
  if (!s->started) {
    if (!lua_checkstack(co, 32)) return UV_ENOMEM;
    s->started = 1;
    s->base = lua_gettop(co);
    lua_settop(co, COLUMNS(s));
    lua_rawgeti(co, LUA_REGISTRYINDEX, w->stmt_ref); /* nil for LUA_NOREF */
  }
  int stmt_idx = STMT(s);
  mstmt *stmt = w->kind == K_QUERY ? NULL : w->stmt;
  if (p[0] == 0xff && (s->st == S_FIRST || s->st == S_ROWS)) { /* the server's error */
    mw_err e;
    if (mw_parse_err(p, len, &e)) return UV_EPROTO;
    batch_end(s);                                      /* the rows so far are dropped */
    if (w->kind == K_PREPARE) lua_settop(co, s->base); /* no statement after all */
    push_server_error(co, &e, lua_isnoneornil(co, FIRST(s)) ? 0 : FIRST(s));
    finish(s, co, lua_gettop(co) - 1, 2, pw);
    return 0;
  }
  switch (s->st) {
    case S_FIRST: return on_first(s, co, w, p, len, pw);
    case S_COLS:
    case S_PCOLS:
      if ((err = column_add(s, co, p, len, w->kind == K_EXECUTE ? stmt : NULL, stmt_idx)))
        return err;
      if (s->left > 0) return 0;
      if ((err = columns_end(s, co, stmt, stmt_idx))) return err;
      if (s->st == S_COLS) {
        rows_begin(s, co);
      } else if (s->deprecate_eof) {
        finish(s, co, FIRST(s), 1, pw);
      } else {
        s->st = S_PCOLS_EOF;
      }
      return 0;
    case S_COLS_EOF:
      if (!mw_is_eof(p, len)) return UV_EPROTO;
      s->st = S_ROWS;
      return 0;
    case S_ROWS:
      if (mw_is_eof(p, len)) {
        if (mw_parse_ok(p, len, &ok)) return UV_EPROTO;
        if ((err = batch_flush(s, co))) return err;
        batch_end(s);
        result_end(s, co, &ok, pw);
        return 0;
      }
      return on_row(s, co, w->arrays, w->kind == K_EXECUTE, p, len);
    case S_PARAMS:
      if (s->left == 0) return UV_EPROTO;
      if (--s->left > 0) return 0;
      if (!s->deprecate_eof) {
        s->st = S_PARAMS_EOF;
        return 0;
      }
      return prepare_columns(s, co, pw);
    case S_PARAMS_EOF:
      if (!mw_is_eof(p, len)) return UV_EPROTO;
      return prepare_columns(s, co, pw);
    case S_PCOLS_EOF:
      if (!mw_is_eof(p, len)) return UV_EPROTO;
      finish(s, co, FIRST(s), 1, pw);
      return 0;
  }
  return UV_EPROTO;
}

/* --- framing ------------------------------------------------------------------------------------ */

static void detach(lua_State *L, mconn *s, int err);

/* A packet's pieces of 16 MiB are joined: copies what is buffered of the current piece;
 * returns 1 when the whole packet is in s->big, 0 when bytes are missing, or an error. */
static int join_step(mconn *s, luaio_conn *c) {
  for (;;) {
    luaio_inbuf *in = c->in;
    size_t have = in ? in->len - in->off : 0;
    if (s->chunk_left > 0) {
      if (have == 0) return 0;
      size_t n = have < s->chunk_left ? have : s->chunk_left;
      memcpy(s->big + s->big_len, in->data + in->off, n);
      s->big_len += n;
      s->chunk_left -= (uint32_t)n;
      luaio_conn_consume(c, (uint32_t)n);
      continue;
    }
    if (s->last_chunk) return 1;
    if (have < 4) return 0;
    uint8_t seq;
    uint32_t len = mw_header((const uint8_t *)in->data + in->off, &seq);
    if (seq != s->seq++) return UV_EPROTO;
    luaio_conn_consume(c, 4);
    if (s->big_len + len > s->max_packet) return UV_EMSGSIZE;
    if (s->big_len + len > s->big_cap) {
      size_t cap = s->big_cap ? s->big_cap * 2 : 2 * (size_t)MW_MAX_CHUNK;
      while (cap < s->big_len + len) cap *= 2;
      uint8_t *big = realloc(s->big, cap);
      if (big == NULL) return UV_ENOMEM;
      s->big = big;
      s->big_cap = cap;
    }
    s->chunk_left = len;
    s->last_chunk = len < MW_MAX_CHUNK;
  }
}

static void end_join(mconn *s) {
  s->joining = 0;
  s->big_len = 0;
  free(s->big); /* a big buffer is not kept for an idle connection */
  s->big = NULL;
  s->big_cap = 0;
}

/* A packet past the input's usual bound: the bound grows for it. Not luaio_conn_need, which
 * resumes reading from the socket but not the plaintext a TLS transport already holds back
 * (all of the packet may be there, with no socket event to come): consume(0) on a "full"
 * connection does both. (Fixes for both belong in conn.c.) */
static void grow_input(luaio_conn *c, uint32_t n) { luaio_conn_need(c, n); }

/* Parses what is buffered, packet by packet, waking each waiter whose response is done. */
static void parse(lua_State *L, mconn *s) {
  if (s->parsing) return;
  s->parsing = 1;
  for (;;) {
    luaio_conn *c = s->c;
    if (c == NULL) break;
    luaio_inbuf *in = c->in;
    size_t have = in ? in->len - in->off : 0;
    if (s->wcount == 0) {
      if (have > 0) luaio_conn_close(c, UV_EPROTO); /* nobody asked: the stream is lost */
      break;
    }
    if (!s->started && s->st == S_FIRST && !s->joining) s->seq = s->w[s->whead].seq;
    pending_wake pw = {NULL, LUA_NOREF, 0};
    int err = 0;
    if (s->joining) {
      err = join_step(s, c);
      if (err == 0) break;
      if (err == 1) {
        err = on_packet(s, s->big, s->big_len, &pw);
        end_join(s);
      }
    } else {
      if (have < 4) break;
      const uint8_t *p = (const uint8_t *)in->data + in->off;
      uint8_t seq;
      uint32_t len = mw_header(p, &seq);
      if (seq != s->seq) {
        err = UV_EPROTO;
      } else if (len == MW_MAX_CHUNK) { /* the first piece of a split packet */
        s->joining = 1;
        s->last_chunk = 0;
        s->chunk_left = 0;
        continue;
      } else if (have < 4 + (size_t)len) {
        if (len > s->max_packet) {
          err = UV_EMSGSIZE;
        } else {
          grow_input(c, 4 + len);
          break;
        }
      } else {
        s->seq++;
        err = on_packet(s, p + 4, len, &pw);
        if (s->c != NULL) luaio_conn_consume(c, 4 + len);
      }
    }
    if (err < 0) {
      if (s->c != NULL) luaio_conn_close(s->c, err);
      break;
    }
    if (s->c != NULL && c->in_max > IN_BASE && !s->joining) c->in_max = IN_BASE;
    if (pw.co != NULL) luaio_wake(L, pw.co, pw.ref, pw.n);
  }
  luaio_conn *c = s->c;
  if (c != NULL && c->read_err != 0) {
    luaio_conn_close(c, c->read_err);
  } else if (c != NULL && s->timeout && s->wcount > 0) {
    luaio_conn_timeout(c, s->timeout); /* bytes came: the silence starts again */
  }
  s->parsing = 0;
  maybe_free(s);
}

/* --- the protocol's callbacks ----------------------------------------------------------------- */

static void on_read(lua_State *L, luaio_conn *c) { parse(L, luaio_conn_ud(c)); }

static void on_drain(lua_State *L, luaio_conn *c) {
  (void)L;
  if (c->write_err) luaio_conn_close(c, c->write_err); /* the responses will never come */
}

static void on_timeout(lua_State *L, luaio_conn *c) {
  (void)L;
  luaio_conn_close(c, UV_ETIMEDOUT);
}

static void on_close(lua_State *L, luaio_conn *c, int err) {
  mconn *s = luaio_conn_ud(c);
  if (s != NULL) detach(L, s, err < 0 ? err : UV_ECANCELED);
}

static const luaio_conn_proto mysql_proto = {on_read, on_drain, on_timeout, on_close, NULL};

/* The client lets go of its connection: every waiter gets nil, err (through the ready queue:
 * this may run inside a task's call). */
static void detach(lua_State *L, mconn *s, int err) {
  luaio_conn *c = s->c;
  if (c == NULL) return;
  busy(s, 0);
  s->c = NULL;
  s->close_err = err;
  luaio_conn_ud(c) = NULL;
  int first = 1;
  while (s->wcount > 0) {
    int started = s->started, base = s->base;
    waiter_t w = fifo_pop(s);
    if (first && started) lua_settop(w.co, base); /* a partial result */
    first = 0;
    luaio_pusherror(L, err);
    luaio_ready(L, w.co, 2);
    luaio_unanchor(w.ref);
  }
  if (s->joining) end_join(s);
  batch_end(s);
}

/* --- statements ---------------------------------------------------------------------------- */

/* A statement's userdata on co, its environment {connection userdata, columns table}. */
static int stmt_new(lua_State *co, mconn *s, const mw_prepared *pr) {
  mstmt *st = lua_newuserdata(co, sizeof *st);
  memset(st, 0, sizeof *st);
  st->owner = s;
  st->id = pr->stmt_id;
  st->nparams = pr->nparams;
  st->ncols = pr->ncols;
  lua_rawgeti(co, LUA_REGISTRYINDEX, stmt_type.ref);
  lua_setmetatable(co, -2);
  lua_createtable(co, 2, 0);
  lua_rawgeti(co, LUA_REGISTRYINDEX, s->self_ref);
  lua_rawseti(co, -2, 1);
  lua_setfenv(co, -2);
  return 0;
}

static mstmt *check_stmt(lua_State *L, int arg) {
  return luaio_checkudata(L, arg, &stmt_type, "mysql statement");
}

/* Queues COM_STMT_CLOSE (no response comes); the statement is dead afterwards. */
static void stmt_release(lua_State *L, mstmt *st) {
  if (st->closed) return;
  st->closed = 1;
  mconn *s = st->owner;
  if (s != NULL && s->c != NULL) {
    uint8_t p[9];
    put_header(p, 5, 0);
    p[4] = COM_CLOSE_STMT;
    put_le(p + 5, st->id, 4);
    luaio_conn_write(s->c, (const char *)p, 9);
  }
  (void)L;
}

static int stmt_gc(lua_State *L) {
  mstmt *st = lua_touserdata(L, 1);
  stmt_release(L, st);
  free(st->hashes);
  st->hashes = NULL;
  return 0;
}

/* rowgen(fn): fn(arrays, names...) -> the fill function for a result's rows (batch_start). */
static int mysql_rowgen(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, rowgen_ref);
  rowgen_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* close_stmt(stmt) */
static int mysql_close_stmt(lua_State *L) {
  stmt_release(L, check_stmt(L, 1));
  return 0;
}

/* stmt_info(stmt) -> nparams, ncols, id, closed */
static int mysql_stmt_info(lua_State *L) {
  mstmt *st = check_stmt(L, 1);
  lua_pushinteger(L, st->nparams);
  lua_pushinteger(L, st->ncols);
  lua_pushnumber(L, st->id);
  lua_pushboolean(L, st->closed);
  return 4;
}

/* --- the Lua API ---------------------------------------------------------------------------- */

/* Queues the command built in cb and waits for its response. */
static int send_and_wait(lua_State *L, mconn *s, int packets, int kind, int arrays, mstmt *stmt) {
  if (packets < 0) return luaio_pusherror(L, packets);
  if (s->c == NULL) return push_closed(L, s); /* a flush on the way failed */
  fifo_push(L, s, kind, arrays, packets, stmt, stmt ? 2 : 0);
  return luaio_yield(L);
}

/* Checks the connection at 1, the task, and room for a waiter; NULL after pushing nil, err. */
static mconn *begin(lua_State *L, const char *what, int *nret) {
  mconn *s = check_conn(L, 1);
  luaio_checktask(L, what);
  *nret = 0;
  if (s == NULL || s->c == NULL) {
    *nret = push_closed(L, s);
    return NULL;
  }
  int err = fifo_reserve(s);
  if (err) {
    *nret = luaio_pusherror(L, err);
    return NULL;
  }
  return s;
}

/* query(conn, sql, arrays) -> result | nil, err */
static int mysql_query(lua_State *L) {
  luaL_checktype(L, 2, LUA_TSTRING);
  int n, arrays = lua_toboolean(L, 3);
  mconn *s = begin(L, "query", &n);
  if (s == NULL) return n;
  return send_and_wait(L, s, send_simple(L, s->c, COM_QUERY, 2), K_QUERY, arrays, NULL);
}

/* prepare(conn, sql) -> statement | nil, err */
static int mysql_prepare(lua_State *L) {
  luaL_checktype(L, 2, LUA_TSTRING);
  lua_settop(L, 2);
  int n;
  mconn *s = begin(L, "prepare", &n);
  if (s == NULL) return n;
  return send_and_wait(L, s, send_simple(L, s->c, COM_PREPARE, 2), K_PREPARE, 0, NULL);
}

/* A misuse of execute, for stdlib/mysql.lua to raise where its caller is (only it knows how
 * the caller numbers the parameters): false, the bad parameter's place (1 for the first; 0:
 * the call as a whole), the message. */
static int misuse(lua_State *L, int param, const char *message) {
  lua_pushboolean(L, 0);
  lua_pushinteger(L, param);
  lua_pushstring(L, message);
  return 3;
}

/* execute(conn, stmt, arrays, params...) -> result | nil, err | false, param, message */
static int mysql_execute(lua_State *L) {
  mconn *s0 = check_conn(L, 1);
  mstmt *st = check_stmt(L, 2);
  int arrays = lua_toboolean(L, 3), top = lua_gettop(L), nparams = top > 3 ? top - 3 : 0;
  if (st->closed) return misuse(L, 0, "statement closed");
  if (s0 != NULL && st->owner != s0) return misuse(L, 0, "statement of another connection");
  if (nparams != st->nparams)
    return misuse(L, 0,
                  lua_pushfstring(L, "mysql: the statement takes %d parameters, got %d",
                                  st->nparams, nparams));
  int bad = 0;
  size_t size = 10 + (nparams ? params_size(L, 4, top, &bad) : 0);
  if (bad)
    return misuse(L, bad - 3,
                  lua_pushfstring(L, "nil, boolean, number or string expected, got %s",
                                  luaL_typename(L, bad)));
  int n;
  mconn *s = begin(L, "execute", &n);
  if (s == NULL) return n;
  cmdbuf cb;
  uint8_t *p = cmd_begin(s->c, &cb, size);
  if (p == NULL) return luaio_pusherror(L, s->c->write_err ? s->c->write_err : UV_ENOMEM);
  p[0] = COM_EXECUTE;
  put_le(p + 1, st->id, 4);
  p[5] = 0;            /* no cursor */
  put_le(p + 6, 1, 4); /* iteration count */
  if (nparams) put_params(L, p + 10, 4, top);
  return send_and_wait(L, s, cmd_end(s->c, &cb), K_EXECUTE, arrays, st);
}

/* command(conn, code[, arg]) -> ok table | nil, err: ping, init_db, reset_connection... */
static int mysql_command(lua_State *L) {
  int code = (int)luaL_checkinteger(L, 2);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TSTRING);
  int n;
  mconn *s = begin(L, "command", &n);
  if (s == NULL) return n;
  return send_and_wait(L, s, send_simple(L, s->c, code, lua_isnoneornil(L, 3) ? 0 : 3), K_SIMPLE, 0,
                       NULL);
}

/* state(conn) -> open, reusable, in_transaction, autocommit: may a pool hand it to someone
 * else? Not with a transaction open, nor with autocommit off (the next user's statements
 * would be in a transaction nobody commits), by the server's last status. */
static int mysql_state(lua_State *L) {
  mconn *s = check_conn(L, 1);
  luaio_conn *c = s ? s->c : NULL;
  int open = c != NULL && !c->closing && c->read_err == 0 && c->write_err == 0;
  int in_trans = s != NULL && (s->status & MW_IN_TRANS) != 0;
  int autocommit = s != NULL && (s->status & MW_AUTOCOMMIT) != 0;
  lua_pushboolean(L, open);
  lua_pushboolean(L, open && s->wcount == 0 && !in_trans && autocommit && !s->joining &&
                         (c->in == NULL || c->in->len == c->in->off));
  lua_pushboolean(L, in_trans);
  lua_pushboolean(L, autocommit);
  return 4;
}

/* close(conn): COM_QUIT, then the connection ends once it is written; waiters get ECANCELED. */
static void conn_close(lua_State *L, mconn *s) {
  luaio_conn *c = s->c;
  if (c == NULL) return;
  uint8_t quit[5] = {1, 0, 0, 0, COM_QUIT};
  luaio_conn_write(c, (const char *)quit, 5);
  detach(L, s, UV_ECANCELED);
  luaio_conn_end(c, 0);
}

static int mysql_close(lua_State *L) {
  mconn *s = check_conn(L, 1);
  if (s != NULL) conn_close(L, s);
  return 0;
}

static int conn_gc(lua_State *L) {
  mconn **box = lua_touserdata(L, 1);
  mconn *s = *box;
  if (s == NULL) return 0;
  *box = NULL;
  s->box = NULL;
  conn_close(L, s);
  maybe_free(s);
  return 0;
}

static int conn_tostring(lua_State *L) {
  mconn *s = check_conn(L, 1);
  if (s == NULL || s->c == NULL)
    lua_pushliteral(L, "mysql connection (closed)");
  else
    lua_pushfstring(L, "mysql connection (%p)", (void *)s);
  return 1;
}

/* attach(socket, options) -> conn: the socket's connection (authenticated) becomes a MySQL
 * connection. options: timeout (ms of silence while a response is due, 0 = none),
 * max_packet (bytes), deprecate_eof (negotiated), status (the server's, from its OK). */
static int mysql_attach(lua_State *L) {
  luaL_checktype(L, 2, LUA_TTABLE);
  uint32_t timeout = luaio_ms32(luaio_opt_ms(L, 2, "timeout", 0));
  uint64_t max_packet = luaio_opt_uint(L, 2, "max_packet", 64u << 20, 1024, 0x7fffff00);
  int deprecate_eof = luaio_opt_bool(L, 2, "deprecate_eof", 0);
  uint64_t status = luaio_opt_uint(L, 2, "status", 0, 0, 0xffff);
  mconn *s = calloc(1, sizeof *s);
  if (s == NULL) return luaio_pusherror(L, UV_ENOMEM);
  luaio_conn *c = luaio_socket_release(L, 1);
  if (c == NULL) {
    free(s);
    return luaio_pusherror(L, UV_ENOTCONN);
  }
  s->timeout = timeout;
  s->max_packet = (uint32_t)max_packet;
  s->deprecate_eof = (uint8_t)deprecate_eof;
  s->status = (uint16_t)status;
  s->self_ref = LUA_NOREF;
  mconn **box = lua_newuserdata(L, sizeof *box);
  *box = s;
  s->box = box;
  lua_rawgeti(L, LUA_REGISTRYINDEX, conn_type.ref);
  lua_setmetatable(L, -2);
  s->c = c;
  luaio_conn_set_proto(c, &mysql_proto, s);
  c->in_max = IN_BASE;
  uv_unref(&c->h.handle);
  luaio_conn_read_start(c);
  return 1;
}

static const luaL_Reg mysql_funcs[] = {{"attach", mysql_attach},
                                       {"close", mysql_close},
                                       {"close_stmt", mysql_close_stmt},
                                       {"command", mysql_command},
                                       {"execute", mysql_execute},
                                       {"prepare", mysql_prepare},
                                       {"query", mysql_query},
                                       {"rowgen", mysql_rowgen},
                                       {"state", mysql_state},
                                       {"stmt_info", mysql_stmt_info},
                                       {NULL, NULL}};

int luaopen_luaio_mysql(lua_State *L) {
  luaio_socket_register(L);
  luaio_newlib(L, mysql_funcs);
  luaio_newudtype(L, &conn_type, CONN_MT);
  lua_pushcfunction(L, conn_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, conn_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaio_newudtype(L, &stmt_type, STMT_MT);
  lua_pushcfunction(L, stmt_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  luaio_mysql_auth_register(L);
  return 1;
}
