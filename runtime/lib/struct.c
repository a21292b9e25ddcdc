/*
 * struct.c: the `struct` module, binary packing with Lua 5.3's string.pack formats.
 *
 *   struct.pack("<I2 i4 d s1", 7, -1, 0.5, "hi")    -> 17 bytes
 *   struct.unpack("<I2 i4", data[, pos])            -> 7, -1, next position
 *   struct.size("<I2 i4")                           -> 6
 *
 * LuaJIT has no string.pack (Lua 5.3 added it); its ffi could write numbers into a buffer
 * too, but without bounds checks. This is 5.3's format language (docs/api.md lists it), in
 * C, with every length and range checked. Numbers are doubles: an integer option takes a
 * number with no fractional part that fits its size; 8-byte integers are exact up to 2^53.
 *
 * The work is done by helpers that never raise and report an error in `failure`; the Lua
 * functions raise once they have returned. LuaJIT raises by unwinding the C stack, and a
 * frame that takes the address of its locals must not be on it (docs/internals.md).
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luaio.h"

#define MAX_INT_SIZE 8 /* i8/I8: a double holds the value (exactly up to 2^53) */
#define NATIVE_ALIGN 8 /* what "!" alone means on x86_64 */
#define KEEP_MAX 65536 /* the output buffer is kept between calls up to this size */

enum {
  K_ERROR = -1,
  K_INT,
  K_UINT,
  K_FLOAT,
  K_DOUBLE,
  K_CHAR,
  K_STRING,
  K_ZSTR,
  K_PADDING,
  K_PADALIGN,
  K_NOP
};

typedef struct {
  const char *fmt; /* the next option */
  int little;      /* byte order */
  int maxalign;    /* "!": alignment limit; 1 = no alignment */
} parser;

/* The last error: a message, and the argument it is about (0: none in particular). */
static struct {
  char msg[160];
  int arg;
} failure;

static int fail(int arg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int arg, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(failure.msg, sizeof failure.msg, fmt, ap);
  va_end(ap);
  failure.arg = arg;
  return K_ERROR;
}

/* Raises the recorded failure (from the Lua function, once the helper has returned). */
static int raise_failure(lua_State *L) {
  if (failure.arg > 0) return luaL_argerror(L, failure.arg, failure.msg);
  return luaL_error(L, "%s", failure.msg);
}

/* --- the format language ------------------------------------------------------------------ */

static int is_digit(int c) { return c >= '0' && c <= '9'; }

/* A decimal count after an option, or dflt when there is none. */
static int read_count(parser *p, int dflt) {
  if (!is_digit(*p->fmt)) return dflt;
  int n = 0;
  while (is_digit(*p->fmt) && n <= 100000000) n = n * 10 + (*p->fmt++ - '0');
  return n;
}

static int int_size(parser *p, int dflt, int *size) {
  *size = read_count(p, dflt);
  if (*size < 1 || *size > MAX_INT_SIZE)
    return fail(1, "integral size (%d) out of limits [1,%d]", *size, MAX_INT_SIZE);
  return 0;
}

/* Reads one option: its kind and size (for s[n], the size of the length before the bytes). */
static int read_option(parser *p, int *size) {
  int c = *p->fmt++;
  *size = 0;
  switch (c) {
    case 'b': *size = 1; return K_INT;
    case 'B': *size = 1; return K_UINT;
    case 'h': *size = 2; return K_INT;
    case 'H': *size = 2; return K_UINT;
    case 'l':
    case 'j': *size = 8; return K_INT;
    case 'L':
    case 'J':
    case 'T': *size = 8; return K_UINT;
    case 'i': return int_size(p, 4, size) ? K_ERROR : K_INT;
    case 'I': return int_size(p, 4, size) ? K_ERROR : K_UINT;
    case 'f': *size = 4; return K_FLOAT;
    case 'd':
    case 'n': *size = 8; return K_DOUBLE;
    case 's': return int_size(p, 8, size) ? K_ERROR : K_STRING;
    case 'z': return K_ZSTR;
    case 'x': *size = 1; return K_PADDING;
    case 'X': return K_PADALIGN;
    case 'c':
      *size = read_count(p, -1);
      if (*size < 0) return fail(1, "missing size for format option 'c'");
      return K_CHAR;
    case ' ': return K_NOP;
    case '<':
    case '=': p->little = 1; return K_NOP;
    case '>': p->little = 0; return K_NOP;
    case '!': return int_size(p, NATIVE_ALIGN, &p->maxalign) ? K_ERROR : K_NOP;
    default: return fail(1, "invalid format option '%c'", c);
  }
}

/* The next option and the padding it needs at offset pos (with "!", values are aligned to
 * their size, at most maxalign; "Xop" aligns to op's size and packs nothing). */
static int next_option(parser *p, size_t pos, int *size, size_t *pad) {
  int kind = read_option(p, size);
  if (kind == K_ERROR) return kind;
  int align = *size;
  if (kind == K_PADALIGN) {
    if (*p->fmt == '\0' || read_option(p, &align) == K_CHAR || align == 0)
      return fail(1, "invalid next option for option 'X'");
  }
  *pad = 0;
  if (align > 1 && kind != K_CHAR) {
    if (align > p->maxalign) align = p->maxalign;
    if (align & (align - 1)) return fail(1, "format asks for alignment not power of 2");
    *pad = (size_t)(align - (int)(pos & (size_t)(align - 1))) & (size_t)(align - 1);
  }
  return kind;
}

/* --- pack --------------------------------------------------------------------------------- */

static char *out; /* the output being built, kept between calls */
static size_t out_len, out_cap;

static int reserve(size_t n) {
  if (out != NULL && out_len + n <= out_cap)
    return 0; /* memset and memcpy want a buffer even for 0 bytes */
  size_t cap = out_cap ? out_cap : 256;
  while (cap < out_len + n) cap *= 2;
  char *grown = realloc(out, cap);
  if (grown == NULL) return fail(0, "pack: out of memory");
  out = grown;
  out_cap = cap;
  return 0;
}

static void put_uint(uint64_t v, int size, int little) {
  for (int i = 0; i < size; i++) {
    int shift = 8 * (little ? i : size - 1 - i);
    out[out_len + i] = (char)((v >> shift) & 0xff);
  }
  out_len += (size_t)size;
}

/* An integer argument that fits size bytes, as the bits to write. */
static int int_arg(lua_State *L, int arg, int size, int is_signed, uint64_t *bits) {
  if (lua_type(L, arg) != LUA_TNUMBER && !lua_isnumber(L, arg))
    return fail(arg, "number expected, got %s", lua_typename(L, lua_type(L, arg)));
  double v = lua_tonumber(L, arg);
  if (v != floor(v)) return fail(arg, "number has no integer representation");
  double lo = is_signed ? -ldexp(1, 8 * size - 1) : 0,
         hi = ldexp(1, 8 * size - (is_signed ? 1 : 0));
  if (size == 8) lo = -ldexp(1, 63), hi = ldexp(1, 64); /* 8 bytes: either sign, as in 5.3 */
  if (!(v >= lo && v < hi)) return fail(arg, "%s overflow", is_signed ? "integer" : "unsigned");
  *bits = v < 0 ? (uint64_t)(int64_t)v : (uint64_t)v;
  return 0;
}

static int number_arg(lua_State *L, int arg, double *v) {
  if (lua_type(L, arg) != LUA_TNUMBER && !lua_isnumber(L, arg))
    return fail(arg, "number expected, got %s", lua_typename(L, lua_type(L, arg)));
  *v = lua_tonumber(L, arg);
  return 0;
}

static const char *string_arg(lua_State *L, int arg, size_t *len) {
  if (lua_type(L, arg) != LUA_TSTRING && lua_type(L, arg) != LUA_TNUMBER) {
    fail(arg, "string expected, got %s", lua_typename(L, lua_type(L, arg)));
    return NULL;
  }
  return lua_tolstring(L, arg, len);
}

/* Packs one value of kind at out_len (the padding before it is written). */
static int pack_value(lua_State *L, parser *p, int kind, int size, int arg) {
  uint64_t bits = 0;
  double d = 0;
  size_t len;
  const char *s;
  switch (kind) {
    case K_INT:
    case K_UINT:
      if (int_arg(L, arg, size, kind == K_INT, &bits)) return K_ERROR;
      put_uint(bits, size, p->little);
      return 0;
    case K_FLOAT: {
      if (number_arg(L, arg, &d)) return K_ERROR;
      float f = (float)d;
      uint32_t u;
      memcpy(&u, &f, 4);
      put_uint(u, 4, p->little);
      return 0;
    }
    case K_DOUBLE:
      if (number_arg(L, arg, &d)) return K_ERROR;
      memcpy(&bits, &d, 8);
      put_uint(bits, 8, p->little);
      return 0;
    case K_CHAR:
      if ((s = string_arg(L, arg, &len)) == NULL) return K_ERROR;
      if (len > (size_t)size) return fail(arg, "string longer than given size");
      memcpy(out + out_len, s, len);
      memset(out + out_len + len, 0, (size_t)size - len);
      out_len += (size_t)size;
      return 0;
    case K_STRING:
      if ((s = string_arg(L, arg, &len)) == NULL) return K_ERROR;
      if (size < 8 && len >= (size_t)1 << (8 * size))
        return fail(arg, "string length does not fit in given size");
      if (reserve(len)) return K_ERROR;
      put_uint(len, size, p->little);
      memcpy(out + out_len, s, len);
      out_len += len;
      return 0;
    case K_ZSTR:
      if ((s = string_arg(L, arg, &len)) == NULL) return K_ERROR;
      if (strlen(s) != len) return fail(arg, "string contains zeros");
      if (reserve(len + 1)) return K_ERROR;
      memcpy(out + out_len, s, len + 1);
      out_len += len + 1;
      return 0;
    case K_PADDING: out[out_len++] = 0; return 0;
  }
  return 0;
}

/* Packs the arguments after the format into out; K_ERROR with failure set otherwise. */
static __attribute__((noinline)) int pack_all(lua_State *L, const char *fmt) {
  parser p = {fmt, 1, 1};
  int arg = 1;
  out_len = 0;
  while (*p.fmt != '\0') {
    int size;
    size_t pad;
    int kind = next_option(&p, out_len, &size, &pad);
    if (kind == K_ERROR) return kind;
    if (reserve(pad + (size_t)size)) return K_ERROR;
    memset(out + out_len, 0, pad);
    out_len += pad;
    if (kind == K_PADALIGN || kind == K_NOP || kind == K_PADDING) {
      pack_value(L, &p, kind, size, 0);
      continue;
    }
    if (++arg > lua_gettop(L)) return fail(arg, "no value");
    if (pack_value(L, &p, kind, size, arg)) return K_ERROR;
  }
  return 0;
}

/* struct.pack(fmt, v1, v2, ...) -> a string holding the values in the format. */
static int struct_pack(lua_State *L) {
  const char *fmt = luaL_checkstring(L, 1);
  int rc = pack_all(L, fmt);
  if (rc == 0) lua_pushlstring(L, out, out_len);
  if (out_cap > KEEP_MAX) { /* one large pack does not keep its buffer */
    free(out);
    out = NULL;
    out_cap = 0;
  }
  if (rc != 0) return raise_failure(L);
  return 1;
}

/* --- unpack ------------------------------------------------------------------------------- */

static uint64_t get_uint(const char *s, int size, int little) {
  uint64_t v = 0;
  for (int i = 0; i < size; i++) {
    int shift = 8 * (little ? i : size - 1 - i);
    v |= (uint64_t)(unsigned char)s[i] << shift;
  }
  return v;
}

static double to_signed(uint64_t v, int size) {
  if (size < 8 && (v >> (8 * size - 1)) & 1) v |= ~(uint64_t)0 << (8 * size); /* sign-extend */
  return (double)(int64_t)v;
}

/* Pushes the values of s from pos (0-based) on, then the position after them: their count
 * plus one, or K_ERROR (nothing pushed). */
static __attribute__((noinline)) int unpack_all(lua_State *L, const char *fmt, const char *s,
                                                size_t len, size_t pos) {
  parser p = {fmt, 1, 1};
  int n = 0, top = lua_gettop(L);
  while (*p.fmt != '\0') {
    int size;
    size_t pad;
    int kind = next_option(&p, pos, &size, &pad);
    if (kind == K_ERROR) goto error;
    if (pad + (size_t)size > len - pos) goto short_data;
    pos += pad;
    const char *at = s + pos;
    if (kind == K_NOP || kind == K_PADALIGN) continue;
    if (!lua_checkstack(L, 2)) {
      fail(0, "too many results");
      goto error;
    }
    switch (kind) {
      case K_INT: lua_pushnumber(L, to_signed(get_uint(at, size, p.little), size)); break;
      case K_UINT: lua_pushnumber(L, (double)get_uint(at, size, p.little)); break;
      case K_FLOAT: {
        uint32_t u = (uint32_t)get_uint(at, 4, p.little);
        float f;
        memcpy(&f, &u, 4);
        lua_pushnumber(L, f);
        break;
      }
      case K_DOUBLE: {
        uint64_t u = get_uint(at, 8, p.little);
        double d;
        memcpy(&d, &u, 8);
        lua_pushnumber(L, d);
        break;
      }
      case K_CHAR: lua_pushlstring(L, at, (size_t)size); break;
      case K_STRING: {
        uint64_t n_bytes = get_uint(at, size, p.little);
        if (n_bytes > len - pos - (size_t)size) goto short_data;
        lua_pushlstring(L, at + size, (size_t)n_bytes);
        pos += (size_t)n_bytes;
        break;
      }
      case K_ZSTR: {
        const char *end = memchr(at, '\0', len - pos);
        if (end == NULL) {
          fail(2, "unfinished string for format 'z'");
          goto error;
        }
        lua_pushlstring(L, at, (size_t)(end - at));
        pos += (size_t)(end - at) + 1;
        break;
      }
      case K_PADDING: break;
    }
    if (kind != K_PADDING) n++;
    pos += (size_t)size;
  }
  lua_pushnumber(L, (lua_Number)pos + 1);
  return n + 1;
short_data:
  fail(2, "data string too short");
error:
  lua_settop(L, top);
  return K_ERROR;
}

/* struct.unpack(fmt, s[, pos = 1]) -> the values, then the position after them. A negative
 * pos counts from the end of s. */
static int struct_unpack(lua_State *L) {
  const char *fmt = luaL_checkstring(L, 1);
  const char *s = luaL_checkstring(L, 2);
  lua_Number len = (lua_Number)lua_objlen(L, 2), at = luaL_optnumber(L, 3, 1);
  luaL_argcheck(L, at == floor(at), 3, "integer expected");
  if (at < 0) at = -at > len ? 0 : len + at + 1;
  luaL_argcheck(L, at >= 1 && at - 1 <= len, 3, "initial position out of string");
  int n = unpack_all(L, fmt, s, (size_t)len, (size_t)at - 1);
  if (n == K_ERROR) return raise_failure(L);
  return n;
}

/* --- size --------------------------------------------------------------------------------- */

/* The size of a fixed-size format, or -1 (failure set). */
static __attribute__((noinline)) double size_all(const char *fmt) {
  parser p = {fmt, 1, 1};
  size_t total = 0;
  while (*p.fmt != '\0') {
    int size;
    size_t pad;
    int kind = next_option(&p, total, &size, &pad);
    if (kind == K_ERROR) return -1;
    if (kind == K_STRING || kind == K_ZSTR) return fail(1, "variable-length format"), -1;
    total += pad + (size_t)size;
  }
  return (double)total;
}

/* struct.size(fmt) -> the bytes pack(fmt, ...) makes (fixed-size formats only). */
static int struct_size(lua_State *L) {
  double total = size_all(luaL_checkstring(L, 1));
  if (total < 0) return raise_failure(L);
  lua_pushnumber(L, total);
  return 1;
}

static const luaL_Reg struct_funcs[] = {
    {"pack", struct_pack}, {"size", struct_size}, {"unpack", struct_unpack}, {NULL, NULL}};

int luaopen_struct(lua_State *L) {
  luaio_newlib(L, struct_funcs);
  return 1;
}
