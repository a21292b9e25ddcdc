/*
 * mysql_wire.c: packets and values of the MySQL client/server protocol (mysql_wire.h).
 * Pure C, fuzzed alone (tests/fuzz/mysql_wire_fuzz.c).
 */
#include "mysql_wire.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- integers and strings ------------------------------------------------------------------ */

static uint64_t le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

static int take(mw_buf *b, size_t n, const uint8_t **p) {
  if ((size_t)(b->end - b->p) < n) return MW_ERROR;
  *p = b->p;
  b->p += n;
  return 0;
}

int mw_lenenc(mw_buf *b, uint64_t *v) {
  const uint8_t *p;
  if (take(b, 1, &p)) return MW_ERROR;
  int n = *p < 0xfb ? 0 : *p == 0xfc ? 2 : *p == 0xfd ? 3 : *p == 0xfe ? 8 : -1;
  if (*p == 0xfb) return 1;
  if (n < 0) return MW_ERROR; /* 0xff is no length */
  if (n == 0) {
    *v = *p;
    return 0;
  }
  if (take(b, (size_t)n, &p)) return MW_ERROR;
  *v = le(p, n);
  return 0;
}

int mw_lenstr(mw_buf *b, const char **s, size_t *n) {
  uint64_t len;
  int r = mw_lenenc(b, &len);
  if (r != 0) return r;
  const uint8_t *p;
  if (len > (uint64_t)(b->end - b->p) || take(b, (size_t)len, &p)) return MW_ERROR;
  *s = (const char *)p;
  *n = (size_t)len;
  return 0;
}

size_t mw_lenenc_size(uint64_t v) { return v < 0xfb ? 1 : v < 0x10000 ? 3 : v < 0x1000000 ? 4 : 9; }

uint8_t *mw_put_lenenc(uint8_t *out, uint64_t v) {
  size_t n = mw_lenenc_size(v);
  if (n == 1) {
    *out++ = (uint8_t)v;
    return out;
  }
  *out++ = n == 3 ? 0xfc : n == 4 ? 0xfd : 0xfe;
  for (size_t i = 0; i < n - 1; i++) *out++ = (uint8_t)(v >> (8 * i));
  return out;
}

/* --- OK, EOF, ERR, column definitions, prepare ----------------------------------------------- */

int mw_parse_ok(const uint8_t *p, size_t n, mw_ok *ok) {
  memset(ok, 0, sizeof *ok);
  if (n == 0) return MW_ERROR;
  if (p[0] == 0xfe && n < 7) { /* the old EOF: warnings, status */
    if (n < 5) return n == 1 ? 0 : MW_ERROR;
    ok->warnings = (uint16_t)le(p + 1, 2);
    ok->status = (uint16_t)le(p + 3, 2);
    return 0;
  }
  mw_buf b = {p + 1, p + n};
  const uint8_t *f;
  if (mw_lenenc(&b, &ok->affected_rows) || mw_lenenc(&b, &ok->insert_id) || take(&b, 4, &f))
    return MW_ERROR;
  ok->status = (uint16_t)le(f, 2);
  ok->warnings = (uint16_t)le(f + 2, 2);
  ok->info = (const char *)b.p;
  ok->info_len = (size_t)(b.end - b.p);
  return 0;
}

int mw_parse_err(const uint8_t *p, size_t n, mw_err *e) {
  if (n < 3 || p[0] != 0xff) return MW_ERROR;
  e->code = (uint16_t)le(p + 1, 2);
  size_t off = 3;
  if (n >= 9 && p[3] == '#') {
    memcpy(e->sqlstate, p + 4, 5);
    off = 9;
  } else {
    memcpy(e->sqlstate, "HY000", 5);
  }
  e->sqlstate[5] = 0;
  e->message = (const char *)p + off;
  e->message_len = n - off;
  return 0;
}

int mw_parse_column(const uint8_t *p, size_t n, mw_column *col) {
  mw_buf b = {p, p + n};
  const char *skip;
  size_t skip_len;
  uint64_t fixed;
  const uint8_t *f;
  if (mw_lenstr(&b, &skip, &skip_len) || /* catalog */
      mw_lenstr(&b, &col->schema, &col->schema_len) ||
      mw_lenstr(&b, &col->table, &col->table_len) ||
      mw_lenstr(&b, &skip, &skip_len) || /* org_table */
      mw_lenstr(&b, &col->name, &col->name_len) ||
      mw_lenstr(&b, &col->org_name, &col->org_name_len) || mw_lenenc(&b, &fixed) || fixed < 10 ||
      take(&b, 10, &f))
    return MW_ERROR;
  col->charset = (uint16_t)le(f, 2);
  col->length = (uint32_t)le(f + 2, 4);
  col->type = f[6];
  col->flags = (uint16_t)le(f + 7, 2);
  col->decimals = f[9];
  return 0;
}

int mw_parse_prepared(const uint8_t *p, size_t n, mw_prepared *ok) {
  if (n < 9 || p[0] != 0) return MW_ERROR;
  ok->stmt_id = (uint32_t)le(p + 1, 4);
  ok->ncols = (uint16_t)le(p + 5, 2);
  ok->nparams = (uint16_t)le(p + 7, 2);
  ok->warnings = n >= 12 ? (uint16_t)le(p + 10, 2) : 0;
  return 0;
}

/* --- binary rows ------------------------------------------------------------------------------ */

int mw_binary_row(mw_buf *b, unsigned ncols, const uint8_t **nulls) {
  const uint8_t *h;
  if (take(b, 1, &h) || *h != 0) return MW_ERROR;
  return take(b, (ncols + 9) / 8, nulls);
}

/* Writes v in `width` digits at least (musl's snprintf costs more than the whole row). */
static char *put_digits(char *out, uint64_t v, int width) {
  char d[20];
  int n = 0;
  do d[n++] = (char)('0' + v % 10);
  while ((v /= 10) > 0);
  while (n < width) d[n++] = '0';
  while (n > 0) *out++ = d[--n];
  return out;
}

/* Appends ".ffffff" cut to `decimals` digits (all six when the column does not say). */
static char *put_micro(char *out, uint32_t micro, uint8_t decimals) {
  if (decimals == 0 || (decimals > 6 && micro == 0)) return out;
  if (decimals > 6) decimals = 6;
  char six[6];
  put_digits(six, micro % 1000000u, 6);
  *out++ = '.';
  memcpy(out, six, decimals);
  return out + decimals;
}

static char *put_hms(char *p, uint64_t h, const uint8_t *d) {
  p = put_digits(p, h, 2);
  *p++ = ':';
  p = put_digits(p, d[0], 2);
  *p++ = ':';
  return put_digits(p, d[1], 2);
}

static int binary_date(mw_buf *b, uint8_t type, uint8_t decimals, mw_value *v, char *tmp) {
  const uint8_t *p;
  if (take(b, 1, &p)) return MW_ERROR;
  uint8_t len = *p;
  if (len != 0 && len != 4 && len != 7 && len != 11) return MW_ERROR;
  if (take(b, len, &p)) return MW_ERROR;
  uint8_t d[11] = {0};
  memcpy(d, p, len);
  char *o = put_digits(tmp, le(d, 2), 4);
  *o++ = '-';
  o = put_digits(o, d[2], 2);
  *o++ = '-';
  o = put_digits(o, d[3], 2);
  if (type != MW_DATE && type != MW_NEWDATE) {
    *o++ = ' ';
    o = put_hms(o, d[4], d + 5);
    o = put_micro(o, (uint32_t)le(d + 7, 4), decimals);
  }
  v->kind = MW_V_BYTES;
  v->s = tmp;
  v->n = (size_t)(o - tmp);
  return 0;
}

static int binary_time(mw_buf *b, uint8_t decimals, mw_value *v, char *tmp) {
  const uint8_t *p;
  if (take(b, 1, &p)) return MW_ERROR;
  uint8_t len = *p;
  if (len != 0 && len != 8 && len != 12) return MW_ERROR;
  if (take(b, len, &p)) return MW_ERROR;
  uint8_t d[12] = {0};
  memcpy(d, p, len);
  char *o = tmp;
  if (d[0]) *o++ = '-';
  o = put_hms(o, le(d + 1, 4) * 24 + d[5], d + 6);
  o = put_micro(o, (uint32_t)le(d + 8, 4), decimals);
  v->kind = MW_V_BYTES;
  v->s = tmp;
  v->n = (size_t)(o - tmp);
  return 0;
}

/* The double closest to the shortest decimal text that reads back as f. */
static double float_value(float f) {
  if (!isfinite(f)) return (double)f;
  char text[32];
  for (int prec = 1; prec <= 9; prec++) {
    snprintf(text, sizeof text, "%.*g", prec, (double)f);
    if (strtof(text, NULL) == f) break;
  }
  return strtod(text, NULL);
}

static int fixed_int(mw_buf *b, int size, int is_unsigned, mw_value *v) {
  const uint8_t *p;
  if (take(b, (size_t)size, &p)) return MW_ERROR;
  uint64_t u = le(p, size);
  if (is_unsigned) {
    v->kind = size == 8 && u > INT64_MAX ? MW_V_UINT : MW_V_INT;
    v->u = u;
    return 0;
  }
  int shift = 64 - 8 * size; /* sign-extend */
  v->kind = MW_V_INT;
  v->i = (int64_t)(u << shift) >> shift;
  return 0;
}

int mw_binary_value(mw_buf *b, uint8_t type, uint16_t flags, uint8_t decimals, mw_value *v,
                    char *tmp) {
  int is_unsigned = (flags & MW_UNSIGNED_FLAG) != 0;
  const uint8_t *p;
  switch (type) {
    case MW_TINY: return fixed_int(b, 1, is_unsigned, v);
    case MW_SHORT:
    case MW_YEAR: return fixed_int(b, 2, is_unsigned, v);
    case MW_LONG:
    case MW_INT24: return fixed_int(b, 4, is_unsigned, v);
    case MW_LONGLONG: return fixed_int(b, 8, is_unsigned, v);
    case MW_FLOAT: {
      if (take(b, 4, &p)) return MW_ERROR;
      uint32_t bits = (uint32_t)le(p, 4);
      float f;
      memcpy(&f, &bits, 4);
      v->kind = MW_V_DOUBLE;
      v->d = float_value(f);
      return 0;
    }
    case MW_DOUBLE: {
      if (take(b, 8, &p)) return MW_ERROR;
      uint64_t bits = le(p, 8);
      v->kind = MW_V_DOUBLE;
      memcpy(&v->d, &bits, 8);
      return 0;
    }
    case MW_DATE:
    case MW_NEWDATE:
    case MW_DATETIME:
    case MW_TIMESTAMP: return binary_date(b, type, decimals, v, tmp);
    case MW_TIME: return binary_time(b, decimals, v, tmp);
    case MW_NULL: v->kind = MW_V_NULL; return 0;
    default: {
      int r = mw_lenstr(b, &v->s, &v->n);
      if (r) return MW_ERROR; /* no NULL marker here: NULLs are in the bitmap */
      v->kind = MW_V_BYTES;
      return 0;
    }
  }
}

/* --- text values -------------------------------------------------------------------------------- */

int mw_text_int(const char *s, size_t n, mw_value *v) {
  size_t i = 0;
  int neg = n > 0 && s[0] == '-';
  if (neg || (n > 0 && s[0] == '+')) i++;
  if (i == n || n - i > 20) return MW_ERROR;
  uint64_t u = 0;
  for (; i < n; i++) {
    unsigned d = (unsigned)(s[i] - '0');
    if (d > 9 || u > (UINT64_MAX - d) / 10) return MW_ERROR;
    u = u * 10 + d;
  }
  if (neg) {
    if (u > (uint64_t)INT64_MAX + 1) return MW_ERROR;
    v->kind = MW_V_INT;
    v->i = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
  } else {
    v->kind = u > INT64_MAX ? MW_V_UINT : MW_V_INT;
    v->u = u;
  }
  return 0;
}

static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Clinger's fast path: at most 15 digits and a power of ten up to 22 are both exact
 * doubles, so one multiplication or division rounds correctly. Other texts go to strtod. */
int mw_text_double(const char *s, size_t n, double *d) {
  size_t i = 0;
  int neg = n > 0 && s[0] == '-';
  if (neg) i++;
  uint64_t m = 0;
  int digits = 0, exp = 0, seen = 0;
  for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, seen = 1)
    if (digits < 19)
      m = m * 10 + (uint64_t)(s[i] - '0'), digits += m > 0;
    else
      exp++;
  if (i < n && s[i] == '.') {
    for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, seen = 1)
      if (digits < 19) m = m * 10 + (uint64_t)(s[i] - '0'), digits += m > 0, exp--;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    size_t j = i + 1;
    int eneg = j < n && s[j] == '-';
    if (j < n && (s[j] == '-' || s[j] == '+')) j++;
    int e = 0;
    if (j == n) return MW_ERROR;
    for (; j < n && s[j] >= '0' && s[j] <= '9'; j++)
      if (e < 10000) e = e * 10 + (s[j] - '0');
    exp += eneg ? -e : e;
    i = j;
  }
  if (!seen || i != n) { /* inf, nan or something odd: the C library decides */
    char buf[64];
    if (n == 0 || n >= sizeof buf) return MW_ERROR;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    *d = strtod(buf, &end);
    return end == buf + n ? 0 : MW_ERROR;
  }
  if (digits <= 15 && exp >= -22 && exp <= 22) {
    double v = (double)m;
    v = exp < 0 ? v / pow10_exact[-exp] : v * pow10_exact[exp];
    *d = neg ? -v : v;
    return 0;
  }
  char buf[400];
  if (n >= sizeof buf) return MW_ERROR;
  memcpy(buf, s, n);
  buf[n] = 0;
  *d = strtod(buf, NULL);
  return 0;
}
