/*
 * cjson.c: `require "cjson"` and `require "cjson.safe"`, OpenResty's lua-cjson API on yyjson.
 *
 * Code written for OpenResty's cjson runs unchanged: encode, decode, null, new, the
 * configuration functions, and OpenResty's additions (empty_array, array_mt, empty_array_mt,
 * encode_empty_table_as_object, decode_array_with_array_mt, encode_escape_forward_slash,
 * encode_skip_unsupported_value_types, encode_indent, decode_allow_comment). docs/api.md
 * lists where luaio differs from lua-cjson, all on purpose:
 *   - numbers print as the shortest text that reads back as the same double (integers up to
 *     2^53 without exponent) unless encode_number_precision(1..17) asks for "%.<n>g";
 *   - decode is strict JSON numbers (no hex, leading zeros or '+'; NaN and Infinity only
 *     with decode_invalid_numbers, the default) and any number too large for an integer
 *     keeps its double value instead of being clamped;
 *   - "at character N" in a decode error is the 1-based byte offset of the bad token.
 *
 * Decoding: yyjson reads the text into a document, then the document becomes Lua values with
 * tables sized from yyjson's counts. yyjson's memory is kept between calls (decode memory).
 * Encoding: Lua values are walked straight into one output buffer; yyjson formats doubles.
 *
 * Invalid UTF-8 passes through both ways unchanged (as in lua-cjson); a \u escape that is a
 * lone surrogate is a decode error (as in lua-cjson).
 *
 * Re-entrancy: a __gc metamethod may run Lua code, including cjson, whenever Lua allocates.
 * A configuration's encode buffer and the decode memory are therefore marked busy in use;
 * a call that finds them busy uses memory of its own. A Lua error cjson does not raise itself
 * (out of memory) leaves the mark set: that memory is then never used again, and every call
 * allocates its own, which is slower but right.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yyjson.h>

#include "luaio.h"

#define NOINLINE __attribute__((noinline))

#define CJSON_VERSION "2.1.0.14"
#define LJ_MAX_STR 0x7fffff00           /* LuaJIT's longest string */
#define KEEP_MAX (8u << 20)             /* decode memory kept between calls, per block */
#define MAX_SAFE_INT 9007199254740992.0 /* 2^53 */

/* Upvalues of every function of a module table. */
#define UV_CFG lua_upvalueindex(1)
#define UV_ARRAY_MT lua_upvalueindex(2)
#define UV_EMPTY_ARRAY_MT lua_upvalueindex(3)

/* Their addresses are the registry keys of array_mt and empty_array_mt, shared by every
 * instance (cjson, cjson.safe, new()); &array_key is also cjson.empty_array. */
static char array_key, empty_array_key;

/* --- configuration ------------------------------------------------------------------- */

typedef struct cfg cfg_t;

/* An encode in progress: the output buffer. */
typedef struct {
  cfg_t *cfg;
  char *buf, *cur, *end;
  int nested; /* allocated for a call that found the configuration busy */
} enc_t;

/* A block yyjson reads into, kept for the next decode. */
typedef struct {
  void *p;
  size_t cap;
  int used;
} block_t;

struct cfg {
  /* encode */
  int sparse_convert, sparse_ratio, sparse_safe;
  int encode_max_depth;
  int invalid_numbers; /* 0 raise, 1 NaN/Infinity, 2 null */
  int precision;       /* 0: shortest round trip; 1-17: "%.<n>g" */
  int keep_buffer;
  int empty_table_as_object;
  int escape_slash;
  int skip_unsupported;
  char *indent; /* NULL: compact output */
  size_t indent_len;
  /* decode */
  int decode_invalid_numbers;
  int decode_max_depth;
  int array_with_array_mt;
  int allow_comment;
  /* memory */
  int enc_busy;
  enc_t enc;
  yyjson_read_err rerr;
};

static cfg_t *getcfg(lua_State *L) { return (cfg_t *)lua_touserdata(L, UV_CFG); }

/* --- decode memory ------------------------------------------------------------------- */

/* yyjson reads into two blocks: its copy of the text and its values (about 2.7 times the
 * text). They are kept for the next decode, up to KEEP_MAX each: musl returns big blocks to
 * the kernel at once, and faulting them in again costs a fifth of a decode. One pair per
 * process, as Lua runs on one thread; dec_busy marks them in use (see the top). */
static block_t blocks[2];
static int dec_busy;

static block_t *find_block(void *p) {
  for (int i = 0; i < 2; i++)
    if (blocks[i].p == p && p != NULL) return &blocks[i];
  return NULL;
}

static void *mem_malloc(void *ctx, size_t size) {
  block_t *fit = NULL, *spare = NULL;
  for (int i = 0; i < 2; i++) {
    block_t *b = &blocks[i];
    if (b->used) continue;
    if (b->cap >= size && (fit == NULL || b->cap < fit->cap)) fit = b;
    if (spare == NULL || b->cap < spare->cap) spare = b;
  }
  if (fit == NULL) {
    if (spare == NULL) return malloc(size);
    free(spare->p);
    spare->p = malloc(size);
    spare->cap = spare->p != NULL ? size : 0;
    if (spare->p == NULL) return NULL;
    fit = spare;
  }
  fit->used = 1;
  return fit->p;
}

static void *mem_realloc(void *ctx, void *p, size_t old, size_t size) {
  block_t *b = find_block(p);
  if (b == NULL) return realloc(p, size);
  if (b->cap >= size) return p;
  void *np = realloc(p, size);
  if (np == NULL) return NULL;
  b->p = np;
  b->cap = size;
  return np;
}

static void mem_free(void *ctx, void *p) {
  block_t *b = find_block(p);
  if (b != NULL)
    b->used = 0;
  else
    free(p);
}

static const yyjson_alc keep_alc = {mem_malloc, mem_realloc, mem_free, NULL};

/* After a decode: blocks past KEEP_MAX go back. */
static void mem_trim(void) {
  for (int i = 0; i < 2; i++) {
    block_t *b = &blocks[i];
    if (!b->used && b->cap > KEEP_MAX) {
      free(b->p);
      b->p = NULL;
      b->cap = 0;
    }
  }
}

static int cfg_gc(lua_State *L) {
  cfg_t *c = lua_touserdata(L, 1);
  free(c->enc.buf);
  c->enc.buf = NULL;
  free(c->indent);
  c->indent = NULL;
  return 0;
}

static void new_cfg(lua_State *L) {
  cfg_t *c = lua_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  c->sparse_ratio = 2;
  c->sparse_safe = 10;
  c->encode_max_depth = 1000;
  c->keep_buffer = 1;
  c->empty_table_as_object = 1;
  c->escape_slash = 1;
  c->decode_invalid_numbers = 1;
  c->decode_max_depth = 1000;
  c->enc.cfg = c;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, cfg_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
}

/* --- configuration functions (lua-cjson's rules: nil or no argument reads the setting) -- */

static cfg_t *cfg_args(lua_State *L, int n) {
  luaL_argcheck(L, lua_gettop(L) <= n, n + 1, "found too many arguments");
  lua_settop(L, n);
  return getcfg(L);
}

static int int_option(lua_State *L, int arg, int *setting, int min, int max) {
  if (!lua_isnil(L, arg)) {
    lua_Number v = luaL_checknumber(L, arg);
    if (!(v >= min && v <= max) || v != floor(v))
      luaL_argerror(L, arg, lua_pushfstring(L, "expected integer between %d and %d", min, max));
    *setting = (int)v;
  }
  lua_pushinteger(L, *setting);
  return 1;
}

/* true/false or one of names ("off", "on", ...); pushes the setting back: a boolean for 0
 * and 1, else its name. */
static int enum_option(lua_State *L, int arg, int *setting, const char *const *names) {
  static const char *const onoff[] = {"off", "on", NULL};
  if (names == NULL) names = onoff;
  if (lua_isboolean(L, arg))
    *setting = lua_toboolean(L, arg);
  else if (!lua_isnil(L, arg))
    *setting = luaL_checkoption(L, arg, NULL, names);
  if (*setting <= 1)
    lua_pushboolean(L, *setting);
  else
    lua_pushstring(L, names[*setting]);
  return 1;
}

static int cfg_decode_allow_comment(lua_State *L) {
  return enum_option(L, 1, &cfg_args(L, 1)->allow_comment, NULL);
}

static int cfg_decode_array_with_array_mt(lua_State *L) {
  return enum_option(L, 1, &cfg_args(L, 1)->array_with_array_mt, NULL);
}

static int cfg_decode_invalid_numbers(lua_State *L) {
  return enum_option(L, 1, &cfg_args(L, 1)->decode_invalid_numbers, NULL);
}

static int cfg_decode_max_depth(lua_State *L) {
  return int_option(L, 1, &cfg_args(L, 1)->decode_max_depth, 1, INT32_MAX);
}

static int cfg_encode_empty_table_as_object(lua_State *L) {
  return enum_option(L, 1, &cfg_args(L, 1)->empty_table_as_object, NULL);
}

static int cfg_encode_escape_forward_slash(lua_State *L) {
  return enum_option(L, 1, &cfg_args(L, 1)->escape_slash, NULL);
}

/* encode_indent([text]): "" for compact output (the default); else the indentation of one
 * level, made of spaces, tabs, CR and LF. */
static int cfg_encode_indent(lua_State *L) {
  cfg_t *c = cfg_args(L, 1);
  if (!lua_isnil(L, 1)) {
    const char *s = luaL_checkstring(L, 1);
    size_t n = lua_objlen(L, 1);
    luaL_argcheck(L, strspn(s, " \t\r\n") == n, 1,
                  "indent must contain only spaces, tabs, line feeds, or carriage returns");
    char *copy = NULL;
    if (n > 0) {
      copy = malloc(n);
      if (copy == NULL) return luaL_error(L, "not enough memory");
      memcpy(copy, s, n);
    }
    free(c->indent);
    c->indent = copy;
    c->indent_len = n;
  }
  lua_pushlstring(L, c->indent ? c->indent : "", c->indent_len);
  return 1;
}

static int cfg_encode_invalid_numbers(lua_State *L) {
  static const char *const names[] = {"off", "on", "null", NULL};
  return enum_option(L, 1, &cfg_args(L, 1)->invalid_numbers, names);
}

static int cfg_encode_keep_buffer(lua_State *L) {
  cfg_t *c = cfg_args(L, 1);
  enum_option(L, 1, &c->keep_buffer, NULL);
  if (!c->keep_buffer && !c->enc_busy) {
    free(c->enc.buf);
    c->enc.buf = c->enc.cur = c->enc.end = NULL;
  }
  return 1;
}

static int cfg_encode_max_depth(lua_State *L) {
  return int_option(L, 1, &cfg_args(L, 1)->encode_max_depth, 1, INT32_MAX);
}

/* 0 (the default) is the shortest round trip; 1 to 17 digits print as "%.<n>g" does. */
static int cfg_encode_number_precision(lua_State *L) {
  return int_option(L, 1, &cfg_args(L, 1)->precision, 0, 17);
}

static int cfg_encode_skip_unsupported_value_types(lua_State *L) {
  return enum_option(L, 1, &cfg_args(L, 1)->skip_unsupported, NULL);
}

/* encode_sparse_array([convert[, ratio[, safe]]]) -> convert, ratio, safe */
static int cfg_encode_sparse_array(lua_State *L) {
  cfg_t *c = cfg_args(L, 3);
  enum_option(L, 1, &c->sparse_convert, NULL);
  int_option(L, 2, &c->sparse_ratio, 0, INT32_MAX);
  int_option(L, 3, &c->sparse_safe, 0, INT32_MAX);
  return 3;
}

/* --- encoding: the output buffer ------------------------------------------------------ */

/* Ends an encode: the buffer stays for the next one (encode_keep_buffer) or goes. */
static void enc_release(enc_t *e) {
  if (e->nested) {
    free(e->buf);
    free(e);
    return;
  }
  cfg_t *c = e->cfg;
  if (!c->keep_buffer) {
    free(e->buf);
    e->buf = e->cur = e->end = NULL;
  }
  c->enc_busy = 0;
}

/* Raises "Cannot serialise <type of idx>: reason" after releasing the buffer. */
static void enc_fail(lua_State *L, enc_t *e, int idx, const char *reason) {
  const char *type = luaL_typename(L, idx);
  enc_release(e);
  luaL_error(L, "Cannot serialise %s: %s", type, reason);
}

static NOINLINE void enc_grow(lua_State *L, enc_t *e, size_t need) {
  size_t len = (size_t)(e->cur - e->buf), cap = (size_t)(e->end - e->buf);
  size_t want = cap < 4096 ? 4096 : cap;
  while (want - len < need) want *= 2;
  char *b = realloc(e->buf, want);
  if (b == NULL) {
    enc_release(e);
    luaL_error(L, "not enough memory");
  }
  e->buf = b;
  e->cur = b + len;
  e->end = b + want;
}

static inline void reserve(lua_State *L, enc_t *e, size_t n) {
  if ((size_t)(e->end - e->cur) < n) enc_grow(L, e, n);
}

static inline void put(lua_State *L, enc_t *e, const char *s, size_t n) {
  reserve(L, e, n);
  memcpy(e->cur, s, n);
  e->cur += n;
}

static inline void putc_(lua_State *L, enc_t *e, char ch) {
  reserve(L, e, 1);
  *e->cur++ = ch;
}

/* A line break and the indentation of `level` levels (encode_indent only). */
static NOINLINE void put_newline(lua_State *L, enc_t *e, int level) {
  cfg_t *c = e->cfg;
  putc_(L, e, '\n');
  for (int i = 0; i < level; i++) put(L, e, c->indent, c->indent_len);
}

/* --- encoding: strings ----------------------------------------------------------------- */

/* 0: the byte is copied; else it is escaped: lua-cjson's set (control characters, '"', '\',
 * DEL, and '/' unless encode_escape_forward_slash(false)). */
static const unsigned char needs_esc[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
#define HAS_ZERO(v) (((v)-ONES) & ~(v)&HIGHS)

/* Does any of the 8 bytes in v need an escape? slash is ONES * '/' when '/' is escaped, else
 * ONES * '"' (a second test for '"', which changes nothing). */
static inline uint64_t any_esc(uint64_t v, uint64_t slash) {
  uint64_t ctl = (v - ONES * 0x20) & ~v & HIGHS; /* a byte below 0x20 */
  return ctl | HAS_ZERO(v ^ (ONES * '"')) | HAS_ZERO(v ^ (ONES * '\\')) |
         HAS_ZERO(v ^ (ONES * 0x7f)) | HAS_ZERO(v ^ slash);
}

static inline uint64_t load8(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

static inline void store8(char *d, uint64_t v) { memcpy(d, &v, 8); }

static char *put_escape(char *d, unsigned char ch) {
  static const char hex[] = "0123456789abcdef";
  *d++ = '\\';
  switch (ch) {
    case '"': *d++ = '"'; break;
    case '\\': *d++ = '\\'; break;
    case '/': *d++ = '/'; break;
    case '\b': *d++ = 'b'; break;
    case '\t': *d++ = 't'; break;
    case '\n': *d++ = 'n'; break;
    case '\f': *d++ = 'f'; break;
    case '\r': *d++ = 'r'; break;
    default:
      memcpy(d, "u00", 3);
      d[3] = hex[ch >> 4];
      d[4] = hex[ch & 15];
      d += 5;
  }
  return d;
}

/* Bytes that need no escape go 8 at a time (a call to memcpy per run would cost more than
 * the copy: runs are short and musl's memcpy is not made for them). */
static void put_string(lua_State *L, enc_t *e, const char *str, size_t n) {
  const unsigned char *p = (const unsigned char *)str, *end = p + n;
  int mask = e->cfg->escape_slash ? 3 : 1;
  uint64_t slash = mask == 3 ? ONES * '/' : ONES * '"';
  reserve(L, e, n + 2);
  char *d = e->cur;
  *d++ = '"';
  for (;;) {
    while (end - p >= 8) {
      uint64_t v = load8(p);
      if (any_esc(v, slash)) break;
      store8(d, v);
      d += 8;
      p += 8;
    }
    const unsigned char *stop = end - p >= 8 ? p + 8 : end;
    while (p < stop) {
      unsigned char ch = *p++;
      if (!(needs_esc[ch] & mask)) {
        *d++ = (char)ch;
        continue;
      }
      /* An escape takes up to 6 bytes for 1: room for it, the rest and the quote. */
      e->cur = d;
      reserve(L, e, 6 + (size_t)(end - p) + 1);
      d = put_escape(e->cur, ch);
    }
    if (p == end) break;
  }
  *d++ = '"';
  e->cur = d;
}

/* --- encoding: numbers ----------------------------------------------------------------- */

static const char digits2[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static char *put_u64(char *d, uint64_t u) {
  int n = 1;
  for (uint64_t t = u; t >= 10; t /= 10) n++;
  char *q = d + n;
  while (u >= 100) {
    q -= 2;
    memcpy(q, digits2 + (u % 100) * 2, 2);
    u /= 100;
  }
  if (u >= 10) {
    q -= 2;
    memcpy(q, digits2 + u * 2, 2);
  } else {
    *--q = (char)('0' + u);
  }
  return d + n;
}

/* yyjson writes the number into d itself: this allocator hands it d (at least 40 bytes). */
static void *to_dest(void *ctx, size_t size) { return size <= 40 ? ctx : NULL; }
static void *no_realloc(void *ctx, void *p, size_t old, size_t size) { return NULL; }
static void no_free(void *ctx, void *p) {}

/* The shortest text that reads back as x (finite, not an integer below 2^53), by yyjson:
 * "0.1", "1e300", "5e-324"; "1e20.0" style endings lose their ".0" (1e20 prints as
 * "100000000000000000000", like JavaScript). Returns the end. */
static NOINLINE char *put_shortest(char *d, double x) {
  yyjson_val v;
  v.tag = YYJSON_TYPE_NUM | YYJSON_SUBTYPE_REAL;
  v.uni.f64 = x;
  yyjson_alc alc = {to_dest, no_realloc, no_free, d};
  size_t len = 0;
  if (yyjson_val_write_opts(&v, 0, &alc, &len, NULL) == NULL) return d;
  if (len > 2 && d[len - 2] == '.' && d[len - 1] == '0') len -= 2;
  return d + len;
}

static NOINLINE char *put_precision(char *d, double x, int precision) {
  return d + snprintf(d, 40, "%.*g", precision, x);
}

/* Writes the number at stack index idx (a value or a key). */
static void put_number(lua_State *L, enc_t *e, int idx) {
  double x = lua_tonumber(L, idx);
  cfg_t *c = e->cfg;
  reserve(L, e, 40);
  if (!isfinite(x)) {
    if (c->invalid_numbers == 0) enc_fail(L, e, idx, "must not be NaN or Infinity");
    if (c->invalid_numbers == 2)
      put(L, e, "null", 4);
    else if (isnan(x))
      put(L, e, "NaN", 3);
    else if (x > 0)
      put(L, e, "Infinity", 8);
    else
      put(L, e, "-Infinity", 9);
    return;
  }
  if (c->precision != 0) {
    e->cur = put_precision(e->cur, x, c->precision);
  } else if (x >= -MAX_SAFE_INT && x <= MAX_SAFE_INT && x == (double)(int64_t)x) {
    int64_t i = (int64_t)x;
    if (i < 0 || (i == 0 && signbit(x))) *e->cur++ = '-';
    e->cur = put_u64(e->cur, i < 0 ? (uint64_t)-i : (uint64_t)i);
  } else {
    e->cur = put_shortest(e->cur, x);
  }
}

/* --- encoding: values and tables ------------------------------------------------------- */

#define WROTE 0
#define SKIPPED 1

static int encode_value(lua_State *L, enc_t *e, int depth);

/* Starts an element of an array or object: the comma after the one before, and with
 * encode_indent its line. Returns where the element begins, to take it back. */
static size_t begin_item(lua_State *L, enc_t *e, int depth, int written) {
  size_t mark = (size_t)(e->cur - e->buf);
  if (written) putc_(L, e, ',');
  if (e->cfg->indent != NULL) put_newline(L, e, depth);
  return mark;
}

/* Encodes the value on top of the stack as the element begun at mark; returns 1, or 0 when
 * it was left out (encode_skip_unsupported_value_types) and the element taken back. */
static int end_item(lua_State *L, enc_t *e, int depth, size_t mark) {
  if (encode_value(L, e, depth) == WROTE) return 1;
  e->cur = e->buf + mark;
  return 0;
}

static void close_container(lua_State *L, enc_t *e, int depth, int written, char ch) {
  if (e->cfg->indent != NULL && written) put_newline(L, e, depth - 1);
  putc_(L, e, ch);
}

/* The table at t encoded as the array t[1..n] (holes are null). */
static void encode_array(lua_State *L, enc_t *e, int t, double n, int depth) {
  int written = 0;
  putc_(L, e, '[');
  for (double i = 1; i <= n; i++) {
    size_t mark = begin_item(L, e, depth, written);
    lua_rawgeti(L, t, (int)i);
    written += end_item(L, e, depth, mark);
    lua_pop(L, 1);
  }
  close_container(L, e, depth, written, ']');
}

/* The table at t encoded as an object; with `pending`, lua_next's first key and value are
 * already on the stack. */
static void encode_object(lua_State *L, enc_t *e, int t, int depth, int pending) {
  int written = 0;
  putc_(L, e, '{');
  if (!pending) lua_pushnil(L);
  while (pending || lua_next(L, t)) {
    pending = 0;
    size_t mark = begin_item(L, e, depth, written);
    int ktype = lua_type(L, -2);
    if (ktype == LUA_TSTRING) {
      put_string(L, e, lua_tostring(L, -2), lua_objlen(L, -2));
    } else if (ktype == LUA_TNUMBER) {
      putc_(L, e, '"');
      put_number(L, e, -2);
      putc_(L, e, '"');
    } else {
      enc_fail(L, e, -2, "table key must be a number or string");
    }
    if (e->cfg->indent != NULL)
      put(L, e, ": ", 2);
    else
      putc_(L, e, ':');
    written += end_item(L, e, depth, mark);
    lua_pop(L, 1);
  }
  close_container(L, e, depth, written, '}');
}

/* The common case in one pass: lua_next gives the keys 1, 2, ... n in order (the array part
 * does). The first key (1) and its value are on the stack. Returns 0, with the stack as it
 * was before lua_next, when a key breaks the sequence: the caller rewinds the output. */
static int encode_sequence(lua_State *L, enc_t *e, int t, int depth) {
  int written = 0;
  double expect = 1;
  putc_(L, e, '[');
  for (;;) {
    size_t mark = begin_item(L, e, depth, written);
    written += end_item(L, e, depth, mark);
    lua_pop(L, 1);
    if (!lua_next(L, t)) break;
    expect++;
    if (lua_type(L, -2) != LUA_TNUMBER || lua_tonumber(L, -2) != expect) {
      lua_pop(L, 2);
      return 0;
    }
  }
  close_container(L, e, depth, written, ']');
  return 1;
}

/* lua-cjson's rule: an array when every key is an integer >= 1 (holes become null), unless
 * it is excessively sparse (encode_sparse_array): then an error, or an object when
 * converting. Returns the array length, or -1 for an object. */
static double array_length(lua_State *L, enc_t *e, int t) {
  cfg_t *c = e->cfg;
  double max = 0, items = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    double k;
    if (lua_type(L, -1) != LUA_TNUMBER || (k = lua_tonumber(L, -1)) < 1 || k != floor(k)) {
      lua_pop(L, 1);
      return -1;
    }
    if (k > max) max = k;
    items++;
  }
  /* Past 2^31 an array would be gigabytes of nulls: as sparse as it gets, whatever the ratio. */
  if ((c->sparse_ratio > 0 && max > items * c->sparse_ratio && max > c->sparse_safe) ||
      max > INT32_MAX) {
    if (!c->sparse_convert) enc_fail(L, e, t, "excessively sparse array");
    return -1;
  }
  return max;
}

/* Does the metatable on top of the stack have __len? (OpenResty's cjson encodes such tables
 * as arrays of their raw length.) */
static int has_len(lua_State *L) {
  lua_pushliteral(L, "__len");
  lua_rawget(L, -2);
  int found = !lua_isnil(L, -1);
  lua_pop(L, 1);
  return found;
}

static void encode_table(lua_State *L, enc_t *e, int depth) {
  cfg_t *c = e->cfg;
  int t = lua_gettop(L);
  if (depth > c->encode_max_depth || !lua_checkstack(L, 6)) {
    enc_release(e);
    luaL_error(L, "Cannot serialise, excessive nesting (%d)", depth);
  }
  int empty_array = !c->empty_table_as_object;
  if (lua_getmetatable(L, t)) {
    if (lua_rawequal(L, -1, UV_ARRAY_MT) || has_len(L)) {
      lua_pop(L, 1);
      encode_array(L, e, t, (double)lua_objlen(L, t), depth);
      return;
    }
    if (lua_rawequal(L, -1, UV_EMPTY_ARRAY_MT)) empty_array = 1;
    lua_pop(L, 1);
  }
  size_t start = (size_t)(e->cur - e->buf);
  lua_pushnil(L);
  if (!lua_next(L, t)) {
    put(L, e, empty_array ? "[]" : "{}", 2);
    return;
  }
  if (lua_type(L, -2) == LUA_TNUMBER) {
    double k = lua_tonumber(L, -2);
    if (k == 1 && encode_sequence(L, e, t, depth)) return;
    if (k >= 1 && k == floor(k)) { /* keys out of order: classify them all, as lua-cjson does */
      if (k != 1) lua_pop(L, 2);
      e->cur = e->buf + start;
      double n = array_length(L, e, t);
      if (n >= 0)
        encode_array(L, e, t, n, depth);
      else
        encode_object(L, e, t, depth, 0);
      return;
    }
  }
  encode_object(L, e, t, depth, 1); /* a key no array has: an object */
}

/* Encodes the value on top of the stack (left there). */
static int encode_value(lua_State *L, enc_t *e, int depth) {
  switch (lua_type(L, -1)) {
    case LUA_TSTRING: put_string(L, e, lua_tostring(L, -1), lua_objlen(L, -1)); return WROTE;
    case LUA_TNUMBER: put_number(L, e, -1); return WROTE;
    case LUA_TBOOLEAN:
      if (lua_toboolean(L, -1))
        put(L, e, "true", 4);
      else
        put(L, e, "false", 5);
      return WROTE;
    case LUA_TTABLE: encode_table(L, e, depth + 1); return WROTE;
    case LUA_TNIL: put(L, e, "null", 4); return WROTE;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, -1) == NULL) {
        put(L, e, "null", 4);
        return WROTE;
      }
      if (lua_touserdata(L, -1) == (void *)&array_key) {
        put(L, e, "[]", 2);
        return WROTE;
      }
      break;
  }
  if (e->cfg->skip_unsupported) return SKIPPED;
  enc_fail(L, e, -1, "type not supported");
  return SKIPPED;
}

/* The configuration's encoder, or one of its own when that one is busy (see the top). */
static enc_t *enc_begin(lua_State *L, cfg_t *c) {
  enc_t *e = &c->enc;
  if (c->enc_busy) {
    e = calloc(1, sizeof *e);
    if (e == NULL) luaL_error(L, "not enough memory");
    e->cfg = c;
    e->nested = 1;
  } else {
    c->enc_busy = 1;
  }
  e->cur = e->buf;
  reserve(L, e, 64); /* a buffer from here on, even for "" */
  return e;
}

static int json_encode(lua_State *L) {
  luaL_argcheck(L, lua_gettop(L) == 1, 1, "expected 1 argument");
  enc_t *e = enc_begin(L, getcfg(L));
  encode_value(L, e, 0);
  size_t len = (size_t)(e->cur - e->buf);
  if (len > LJ_MAX_STR) {
    enc_release(e);
    luaL_error(L, "Cannot serialise: result longer than %d bytes", LJ_MAX_STR);
  }
  lua_pushlstring(L, e->buf, len);
  enc_release(e);
  return 1;
}

/* --- decoding: errors ------------------------------------------------------------------ */

static int is_ws(unsigned char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; }

static int is_delim(unsigned char ch, int comments) {
  return is_ws(ch) || ch == '{' || ch == '}' || ch == '[' || ch == ']' || ch == ',' || ch == ':' ||
         ch == '"' || (comments && ch == '/');
}

/* Skips whitespace (and comments when allowed) from i; stops at a comment not closed. */
static size_t skip_ws(const char *s, size_t len, size_t i, int comments) {
  for (;;) {
    while (i < len && is_ws((unsigned char)s[i])) i++;
    if (!comments || i + 1 >= len || s[i] != '/') return i;
    if (s[i + 1] == '/') {
      while (i < len && s[i] != '\n') i++;
    } else if (s[i + 1] == '*') {
      const char *end = memmem(s + i + 2, len - i - 2, "*/", 2);
      if (end == NULL) return i; /* not closed: the error is here */
      i = (size_t)(end - s) + 2;
    } else {
      return i;
    }
  }
}

/* The end of the string token starting at s[i] == '"' (after its closing quote), or 0 when
 * it is not closed. */
static size_t string_end(const char *s, size_t len, size_t i) {
  for (i++; i < len; i++) {
    if (s[i] == '\\')
      i++;
    else if (s[i] == '"')
      return i + 1;
  }
  return 0;
}

/* A complete JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][-+]?[0-9]+)? */
static int is_number(const char *s, size_t n) {
  size_t i = 0;
  if (i < n && s[i] == '-') i++;
  if (i >= n || s[i] < '0' || s[i] > '9') return 0;
  if (s[i] == '0')
    i++;
  else
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  if (i < n && s[i] == '.') {
    if (++i >= n || s[i] < '0' || s[i] > '9') return 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    if (++i < n && (s[i] == '+' || s[i] == '-')) i++;
    if (i >= n || s[i] < '0' || s[i] > '9') return 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  }
  return i == n;
}

static int is_word(const char *s, size_t n, const char *word) {
  return strlen(word) == n && memcmp(s, word, n) == 0;
}

/* NaN, Infinity and friends as yyjson reads them with YYJSON_READ_ALLOW_INF_AND_NAN. */
static int is_nonfinite(const char *s, size_t n) {
  if (n > 0 && (s[0] == '-' || s[0] == '+')) s++, n--;
  return (n == 3 && (!strncasecmp(s, "nan", 3) || !strncasecmp(s, "inf", 3))) ||
         (n == 8 && !strncasecmp(s, "infinity", 8));
}

/* Is s "\\uD800" to "\\uDBFF"? */
static int is_high_surrogate(const char *s) {
  return s[0] == '\\' && s[1] == 'u' && (s[2] == 'd' || s[2] == 'D') && s[3] &&
         strchr("89abAB", s[3]) && isxdigit((unsigned char)s[4]) && isxdigit((unsigned char)s[5]);
}

/* The end of the token at s[i]: a character, a string (len when not closed), a literal, or
 * anything else up to the next delimiter. */
static size_t token_end(const char *s, size_t len, size_t i, int comments) {
  if (strchr("{}[],:", s[i])) return i + 1;
  if (s[i] == '"') {
    size_t j = string_end(s, len, i);
    return j ? j : len;
  }
  static const char *const literals[] = {"true", "false", "null"};
  for (int k = 0; k < 3; k++) {
    size_t n = strlen(literals[k]);
    if (len - i >= n && memcmp(s + i, literals[k], n) == 0) return i + n;
  }
  size_t j = i + 1;
  while (j < len && !is_delim((unsigned char)s[j], comments)) j++;
  return j;
}

/* What lua-cjson calls the token of n bytes at s: a type name, or what is wrong with it. */
static const char *token_name(const char *s, size_t n, int invalid_numbers) {
  switch (s[0]) {
    case '{': return "T_OBJ_BEGIN";
    case '}': return "T_OBJ_END";
    case '[': return "T_ARR_BEGIN";
    case ']': return "T_ARR_END";
    case ',': return "T_COMMA";
    case ':': return "T_COLON";
    case '"': return "T_STRING";
  }
  if (is_word(s, n, "true") || is_word(s, n, "false")) return "T_BOOLEAN";
  if (is_word(s, n, "null")) return "T_NULL";
  if (is_number(s, n) || (invalid_numbers && is_nonfinite(s, n))) return "T_NUMBER";
  if (s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) return "invalid number";
  return "invalid token";
}

/* Where yyjson stopped, found again by a light tokenizer (all that comes before is valid
 * JSON): the bad token's offset and what lua-cjson would have expected there. */
typedef struct {
  size_t tok;
  const char *expected;
} stop_t;

enum { X_VALUE, X_KEY, X_COLON, X_AFTER };

static const char *expectation(int state, const char *stack, size_t depth) {
  switch (state) {
    case X_VALUE: return "value";
    case X_KEY: return "object key string";
    case X_COLON: return "colon";
  }
  return depth == 0                ? "the end"
         : stack[depth - 1] == 'a' ? "comma or array end"
                                   : "comma or object end";
}

static stop_t find_stop(cfg_t *c, const char *s, size_t len, yyjson_read_err err) {
  int comments = c->allow_comment;
  int code = err.code, at_end = code == YYJSON_READ_ERROR_UNEXPECTED_END;
  /* a bad number or literal: yyjson may point just past it */
  int inside = code == YYJSON_READ_ERROR_INVALID_NUMBER || code == YYJSON_READ_ERROR_LITERAL;
  size_t at = err.pos;
  if (code == YYJSON_READ_ERROR_EMPTY_CONTENT || at_end) at = len;
  if (code == YYJSON_READ_ERROR_JSON_STRUCTURE) at++; /* a trailing comma: what follows it */
  if (at > len) at = len;

  char *stack = NULL; /* the open containers, 'a' or 'o' each */
  size_t depth = 0, cap = 0, i = 0;
  int state = X_VALUE;
  for (;;) {
    i = skip_ws(s, len, i, comments);
    if (i >= at || i >= len) break;
    char ch = s[i];
    size_t j = token_end(s, len, i, comments);
    int bad = ch == '"' ? string_end(s, len, i) == 0
                        : token_name(s + i, j - i, c->decode_invalid_numbers)[0] == 'i';
    if (j > at || (inside && j == at && !strchr("{}[],:\"", ch)) || (at_end && j == len && bad))
      break;
    if (ch == '{' || ch == '[') {
      if (depth == cap) {
        char *grown = realloc(stack, cap = cap ? cap * 2 : 64);
        if (grown == NULL) break;
        stack = grown;
      }
      stack[depth++] = ch == '{' ? 'o' : 'a';
      state = ch == '{' ? X_KEY : X_VALUE;
    } else if (ch == '}' || ch == ']') {
      depth -= depth > 0;
      state = X_AFTER;
    } else if (ch == ',') {
      state = depth > 0 && stack[depth - 1] == 'o' ? X_KEY : X_VALUE;
    } else if (ch == ':') {
      state = X_VALUE;
    } else {
      state = state == X_KEY ? X_COLON : X_AFTER;
    }
    i = j;
  }
  stop_t stop = {i < len ? i : len, expectation(state, stack, depth)};
  free(stack);
  return stop;
}

/* Pushes lua-cjson's message for yyjson's error: "Expected <what> but found <token> at
 * character <1-based byte offset>". */
static NOINLINE void push_parse_error(lua_State *L, cfg_t *c, const char *s, size_t len) {
  yyjson_read_err err = c->rerr;
  if (err.code == YYJSON_READ_ERROR_MEMORY_ALLOCATION) {
    lua_pushliteral(L, "not enough memory");
    return;
  }
  stop_t stop = find_stop(c, s, len, err);
  size_t tok = stop.tok, where = tok;
  const char *found = "T_END";
  if (tok == len) {
    /* the end */
  } else if (err.code == YYJSON_READ_ERROR_INVALID_COMMENT) {
    found = "unclosed comment";
  } else if (s[tok] == '"' && err.code == YYJSON_READ_ERROR_UNEXPECTED_END) {
    found = "unexpected end of string";
    where = len;
  } else if (s[tok] == '"' && err.code == YYJSON_READ_ERROR_INVALID_STRING) {
    /* lua-cjson points at the backslash of the bad escape (the first of a pair) */
    where = err.pos < len ? err.pos : len;
    for (int k = 0; k < 6 && where > tok && s[where] != '\\'; k++) where--;
    if (where >= tok + 6 && is_high_surrogate(s + where - 6)) where -= 6;
    found = strstr(err.msg, "escaped character") ? "invalid escape code"
                                                 : "invalid unicode escape code";
  } else {
    found = token_name(s + tok, token_end(s, len, tok, c->allow_comment) - tok,
                       c->decode_invalid_numbers);
  }
  lua_pushfstring(L, "Expected %s but found %s at character %d", stop.expected, found,
                  (int)where + 1);
}

/* decode_max_depth: where the first container past the limit opens (1-based, as lua-cjson
 * counts), found again in the text. */
static NOINLINE void push_depth_error(lua_State *L, cfg_t *c, const char *s, size_t len,
                                      int limit) {
  int depth = 0;
  size_t i = 0;
  for (;;) {
    i = skip_ws(s, len, i, c->allow_comment);
    if (i >= len) break;
    if (s[i] == '"') {
      i = string_end(s, len, i);
      if (i == 0) break;
      continue;
    }
    if (s[i] == '{' || s[i] == '[') {
      if (++depth > limit) break;
    } else if (s[i] == '}' || s[i] == ']') {
      depth--;
    }
    i++;
  }
  lua_pushfstring(L, "Found too many nested data structures (%d) at character %d", depth,
                  (int)i + 1);
}

/* --- decoding: yyjson's document to Lua values ------------------------------------------ */

static int push_value(lua_State *L, cfg_t *c, yyjson_val *v, int depth);

/* Returns 0, or the depth that was too deep (decode_max_depth, or Lua's stack limit). */
static int push_array(lua_State *L, cfg_t *c, yyjson_val *v, int depth) {
  if (depth > c->decode_max_depth || !lua_checkstack(L, 4)) return depth;
  size_t n = unsafe_yyjson_get_len(v);
  lua_createtable(L, (int)n, 0);
  if (c->array_with_array_mt) {
    lua_pushvalue(L, UV_ARRAY_MT);
    lua_setmetatable(L, -2);
  }
  yyjson_val *item = unsafe_yyjson_get_first(v);
  for (size_t i = 1; i <= n; i++) {
    int bad = push_value(L, c, item, depth);
    if (bad) return bad;
    lua_rawseti(L, -2, (int)i);
    item = unsafe_yyjson_get_next(item);
  }
  return 0;
}

static int push_object(lua_State *L, cfg_t *c, yyjson_val *v, int depth) {
  if (depth > c->decode_max_depth || !lua_checkstack(L, 4)) return depth;
  size_t n = unsafe_yyjson_get_len(v);
  lua_createtable(L, 0, (int)n);
  yyjson_val *key = unsafe_yyjson_get_first(v);
  for (size_t i = 0; i < n; i++) {
    lua_pushlstring(L, unsafe_yyjson_get_str(key), unsafe_yyjson_get_len(key));
    int bad = push_value(L, c, key + 1, depth);
    if (bad) return bad;
    lua_rawset(L, -3);
    key = unsafe_yyjson_get_next(key + 1);
  }
  return 0;
}

static int push_value(lua_State *L, cfg_t *c, yyjson_val *v, int depth) {
  switch (unsafe_yyjson_get_tag(v)) {
    case YYJSON_TYPE_STR | YYJSON_SUBTYPE_NONE:
    case YYJSON_TYPE_STR | YYJSON_SUBTYPE_NOESC:
      lua_pushlstring(L, unsafe_yyjson_get_str(v), unsafe_yyjson_get_len(v));
      return 0;
    case YYJSON_TYPE_NUM | YYJSON_SUBTYPE_UINT:
      lua_pushnumber(L, (double)unsafe_yyjson_get_uint(v));
      return 0;
    case YYJSON_TYPE_NUM | YYJSON_SUBTYPE_SINT: { /* "-0" is the only 0 read as signed */
      int64_t i = unsafe_yyjson_get_sint(v);
      lua_pushnumber(L, i == 0 ? -0.0 : (double)i);
      return 0;
    }
    case YYJSON_TYPE_NUM | YYJSON_SUBTYPE_REAL:
      lua_pushnumber(L, unsafe_yyjson_get_real(v));
      return 0;
    case YYJSON_TYPE_BOOL | YYJSON_SUBTYPE_TRUE: lua_pushboolean(L, 1); return 0;
    case YYJSON_TYPE_BOOL | YYJSON_SUBTYPE_FALSE: lua_pushboolean(L, 0); return 0;
    case YYJSON_TYPE_ARR | YYJSON_SUBTYPE_NONE: return push_array(L, c, v, depth + 1);
    case YYJSON_TYPE_OBJ | YYJSON_SUBTYPE_NONE: return push_object(L, c, v, depth + 1);
    default: lua_pushlightuserdata(L, NULL); return 0; /* null */
  }
}

/* yyjson_read_opts takes the address of its error: kept out of json_decode, which raises. */
static NOINLINE yyjson_doc *read_doc(cfg_t *c, const char *s, size_t len, const yyjson_alc *alc) {
  yyjson_read_flag flags = YYJSON_READ_ALLOW_INVALID_UNICODE;
  if (c->decode_invalid_numbers) flags |= YYJSON_READ_ALLOW_INF_AND_NAN;
  if (c->allow_comment) flags |= YYJSON_READ_ALLOW_COMMENTS;
  return yyjson_read_opts((char *)s, len, flags, alc, &c->rerr);
}

static int json_decode(lua_State *L) {
  cfg_t *c = getcfg(L);
  luaL_argcheck(L, lua_gettop(L) == 1, 1, "expected 1 argument");
  const char *s = luaL_checkstring(L, 1);
  size_t len = lua_objlen(L, 1);
  /* lua-cjson's check: JSON text starts with an ASCII character. */
  if (len >= 2 && (s[0] == 0 || s[1] == 0))
    return luaL_error(L, "JSON parser does not support UTF-16 or UTF-32");
  if (len == 0) return luaL_error(L, "Expected value but found T_END at character 1");
  if (len > LJ_MAX_STR) return luaL_error(L, "JSON text too long");
  int own = !dec_busy; /* else decode memory of its own (see the top) */
  dec_busy = 1;
  yyjson_doc *doc = read_doc(c, s, len, own ? &keep_alc : NULL);
  if (doc == NULL) {
    if (own) dec_busy = 0;
    push_parse_error(L, c, s, len);
    return lua_error(L);
  }
  int bad = push_value(L, c, yyjson_doc_get_root(doc), 0);
  yyjson_doc_free(doc);
  if (own) {
    mem_trim();
    dec_busy = 0;
  }
  if (bad) {
    push_depth_error(L, c, s, len, bad - 1);
    return lua_error(L);
  }
  return 1;
}

/* --- cjson.safe: nil, message instead of an error --------------------------------------- */

static int json_protect(lua_State *L) {
  luaL_argcheck(L, lua_gettop(L) == 1, 1, "expected 1 argument");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  int err = lua_pcall(L, 1, 1, 0);
  if (err == 0) return 1;
  if (err != LUA_ERRRUN) return lua_error(L); /* out of memory stays an error */
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;
}

/* --- the module ------------------------------------------------------------------------ */

static int cjson_new(lua_State *L);
static int cjson_safe_new(lua_State *L);

static const luaL_Reg cjson_funcs[] = {
    {"decode", json_decode},
    {"decode_allow_comment", cfg_decode_allow_comment},
    {"decode_array_with_array_mt", cfg_decode_array_with_array_mt},
    {"decode_invalid_numbers", cfg_decode_invalid_numbers},
    {"decode_max_depth", cfg_decode_max_depth},
    {"encode", json_encode},
    {"encode_empty_table_as_object", cfg_encode_empty_table_as_object},
    {"encode_escape_forward_slash", cfg_encode_escape_forward_slash},
    {"encode_indent", cfg_encode_indent},
    {"encode_invalid_numbers", cfg_encode_invalid_numbers},
    {"encode_keep_buffer", cfg_encode_keep_buffer},
    {"encode_max_depth", cfg_encode_max_depth},
    {"encode_number_precision", cfg_encode_number_precision},
    {"encode_skip_unsupported_value_types", cfg_encode_skip_unsupported_value_types},
    {"encode_sparse_array", cfg_encode_sparse_array},
    {NULL, NULL}};

/* Pushes registry[key], creating an empty table there the first time. */
static void shared_table(lua_State *L, const void *key) {
  lua_pushlightuserdata(L, (void *)key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushlightuserdata(L, (void *)key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
}

/* A module table with a configuration of its own. */
static void build(lua_State *L, int safe) {
  lua_createtable(L, 0, 24);
  new_cfg(L);
  shared_table(L, &array_key);
  shared_table(L, &empty_array_key);
  luaL_setfuncs(L, cjson_funcs, 3);
  if (safe) {
    static const char *const wrapped[] = {"decode", "encode"};
    for (int i = 0; i < 2; i++) {
      lua_getfield(L, -1, wrapped[i]);
      lua_pushcclosure(L, json_protect, 1);
      lua_setfield(L, -2, wrapped[i]);
    }
  }
  lua_pushcfunction(L, safe ? cjson_safe_new : cjson_new);
  lua_setfield(L, -2, "new");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  lua_pushlightuserdata(L, (void *)&array_key);
  lua_setfield(L, -2, "empty_array");
  shared_table(L, &array_key);
  lua_setfield(L, -2, "array_mt");
  shared_table(L, &empty_array_key);
  lua_setfield(L, -2, "empty_array_mt");
  lua_pushliteral(L, "cjson");
  lua_setfield(L, -2, "_NAME");
  lua_pushliteral(L, CJSON_VERSION);
  lua_setfield(L, -2, "_VERSION");
}

static int cjson_new(lua_State *L) {
  build(L, 0);
  return 1;
}

static int cjson_safe_new(lua_State *L) {
  build(L, 1);
  return 1;
}

int luaopen_cjson(lua_State *L) { return cjson_new(L); }

int luaopen_cjson_safe(lua_State *L) { return cjson_safe_new(L); }
