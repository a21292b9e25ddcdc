/*
 * mysql_wire_fuzz.c: libFuzzer target for runtime/proto/mysql/mysql_wire.c (./build.sh fuzz).
 *
 * Input: byte 0 picks the column count (1-16), the next bytes the columns' types and flags
 * for binary rows, the rest is a payload. Every parser reads a heap copy of exactly the
 * payload, so AddressSanitizer catches any overread. Checked besides memory safety:
 *   - every parser returns 0 or MW_ERROR (text rows: 0, 1 or MW_ERROR per value), and every
 *     string it points to lies inside the payload;
 *   - a length-encoded integer written by mw_put_lenenc reads back the same, in
 *     mw_lenenc_size bytes;
 *   - mw_text_int agrees with strtoll/strtoull on plain digits; mw_text_double (whose fast
 *     path multiplies or divides by powers of ten) agrees exactly with strtod.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mysql_wire.h"

#define ASSERT(c) ((c) ? (void)0 : abort())

static const uint8_t *lo, *hi; /* the payload copy: strings must lie inside */

static void inside(const char *s, size_t n) {
  if (n == 0) return;
  ASSERT((const uint8_t *)s >= lo && (const uint8_t *)s + n <= hi);
}

static const uint8_t TYPES[] = {MW_DECIMAL, MW_TINY, MW_SHORT,      MW_LONG,       MW_FLOAT,
                                MW_DOUBLE,  MW_NULL, MW_TIMESTAMP,  MW_LONGLONG,   MW_INT24,
                                MW_DATE,    MW_TIME, MW_DATETIME,   MW_YEAR,       MW_NEWDATE,
                                MW_VARCHAR, MW_BIT,  MW_JSON,       MW_NEWDECIMAL, MW_ENUM,
                                MW_SET,     MW_BLOB, MW_VAR_STRING, MW_STRING,     MW_GEOMETRY};

static void packets(const uint8_t *p, size_t n) {
  mw_ok ok;
  mw_err e;
  mw_column col;
  mw_prepared pr;
  if (mw_parse_ok(p, n, &ok) == 0) inside(ok.info, ok.info_len);
  if (mw_parse_err(p, n, &e) == 0) {
    inside(e.message, e.message_len);
    ASSERT(strlen(e.sqlstate) <= 5);
  }
  if (mw_parse_column(p, n, &col) == 0) {
    inside(col.name, col.name_len);
    inside(col.table, col.table_len);
    inside(col.schema, col.schema_len);
    inside(col.org_name, col.org_name_len);
  }
  (void)mw_parse_prepared(p, n, &pr);
  (void)mw_is_eof(p, n);
}

static void text_row(const uint8_t *p, size_t n, unsigned ncols) {
  mw_buf b = {p, p + n};
  for (unsigned i = 0; i < ncols; i++) {
    const char *s;
    size_t len;
    int r = mw_lenstr(&b, &s, &len);
    ASSERT(r == 0 || r == 1 || r == MW_ERROR);
    if (r == MW_ERROR) return;
    if (r == 0) {
      inside(s, len);
      mw_value v;
      double d;
      (void)mw_text_int(s, len, &v);
      (void)mw_text_double(s, len, &d);
    }
  }
}

static void binary_row(const uint8_t *p, size_t n, unsigned ncols, const uint8_t *types,
                       const uint16_t *flags) {
  mw_buf b = {p, p + n};
  const uint8_t *nulls;
  if (mw_binary_row(&b, ncols, &nulls) != 0) return;
  for (unsigned i = 0; i < ncols; i++) {
    if (mw_binary_null(nulls, i)) continue;
    mw_value v;
    char tmp[64];
    int r = mw_binary_value(&b, types[i], flags[i], (uint8_t)(flags[i] >> 8), &v, tmp);
    ASSERT(r == 0 || r == MW_ERROR);
    if (r) return;
    if (v.kind == MW_V_BYTES && v.s != tmp) inside(v.s, v.n);
    if (v.kind == MW_V_BYTES && v.s == tmp) ASSERT(v.n < 64);
    ASSERT(b.p <= b.end);
  }
}

/* Plain decimal texts: the fast paths must agree with the C library exactly. */
static void numbers(const uint8_t *p, size_t n) {
  char s[40];
  size_t len = 0;
  for (size_t i = 0; i < n && len < sizeof s - 1; i++) {
    static const char alphabet[] = "0123456789.-e+";
    s[len++] = alphabet[p[i] % 14];
  }
  s[len] = 0;
  mw_value v;
  if (mw_text_int(s, len, &v) == 0) {
    char *end;
    errno = 0;
    if (v.kind == MW_V_INT) {
      long long x = strtoll(s, &end, 10);
      ASSERT(errno == 0 && *end == 0 && x == v.i);
    } else {
      unsigned long long x = strtoull(s, &end, 10);
      ASSERT(errno == 0 && *end == 0 && x == v.u);
    }
  }
  double d;
  if (mw_text_double(s, len, &d) == 0) {
    char *end;
    double x = strtod(s, &end);
    if (*end == 0) ASSERT((isnan(x) && isnan(d)) || memcmp(&x, &d, sizeof d) == 0);
  }
  uint64_t u = 0;
  for (size_t i = 0; i < n && i < 8; i++) u = u << 8 | p[i];
  for (int shift = 0; shift < 64; shift += 13) {
    uint64_t w = u >> shift;
    uint8_t out[9];
    uint8_t *end = mw_put_lenenc(out, w);
    ASSERT((size_t)(end - out) == mw_lenenc_size(w));
    mw_buf b = {out, end};
    uint64_t back;
    ASSERT(mw_lenenc(&b, &back) == 0 && back == w && b.p == end);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  unsigned ncols = (unsigned)(data[0] % 16) + 1;
  uint8_t types[16];
  uint16_t flags[16];
  size_t off = 1;
  for (unsigned i = 0; i < ncols; i++) {
    uint8_t t = off < size ? data[off++] : 0;
    types[i] = TYPES[t % sizeof TYPES];
    flags[i] =
        (uint16_t)((t & 0x80 ? MW_UNSIGNED_FLAG : 0) | (t & 0x70) << 4); /* high byte: decimals */
  }
  if (off > size) off = size;
  size_t n = size - off;
  uint8_t *copy = malloc(n ? n : 1);
  memcpy(copy, data + off, n);
  lo = copy;
  hi = copy + n;
  packets(copy, n);
  text_row(copy, n, ncols);
  binary_row(copy, n, ncols, types, flags);
  numbers(copy, n);
  free(copy);
  return 0;
}
