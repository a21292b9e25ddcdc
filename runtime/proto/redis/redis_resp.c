/*
 * redis_resp.c: the RESP2/RESP3 reply parser (see redis_resp.h). One token per call, in
 * place; the nesting is a small stack of counts, so a reply that arrives in pieces is
 * parsed once, token by token, however large it is, and a caller never scans a byte twice
 * except a line (a number, a simple string) that arrived cut in two.
 */
#include <stdlib.h>
#include <string.h>

#include "redis_resp.h"

#define MAX_DOUBLE_LINE 127

void resp_init(resp_parser *p) { p->depth = 0; }

/* The line at s[0..len): its length without the CRLF, or -1 when it has no CRLF yet, -2
 * when a CR or LF stands alone in it. */
static long line_length(const char *s, size_t len) {
  const char *cr = memchr(s, '\r', len);
  size_t upto = cr ? (size_t)(cr - s) : len;
  if (memchr(s, '\n', upto) != NULL) return -2;
  if (cr == NULL || upto + 1 == len) return -1;
  return cr[1] == '\n' ? (long)upto : -2;
}

/* A decimal integer line at s[0..len) (after the type byte): with `sign`, an optional + or
 * -. Returns the bytes taken with the CRLF, RESP_INCOMPLETE or RESP_ERROR. */
static long read_int(const char *s, size_t len, int sign, int64_t *out) {
  size_t i = 0;
  int neg = 0;
  if (sign && len > 0 && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    i = 1;
  }
  size_t start = i;
  uint64_t v = 0;
  for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
    if (i - start == 19) return RESP_ERROR; /* past int64 */
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (i == len) return RESP_INCOMPLETE;
  if (i == start || s[i] != '\r') return RESP_ERROR;
  if (i + 1 == len) return RESP_INCOMPLETE;
  if (s[i + 1] != '\n') return RESP_ERROR;
  if (v > (uint64_t)INT64_MAX + (uint64_t)neg) return RESP_ERROR;
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return (long)(i + 2);
}

/* A length or count: digits, or the -1 of a null. */
static long read_length(const char *s, size_t len, int64_t *out) {
  if (len > 0 && s[0] == '-') {
    if (len < 2) return RESP_INCOMPLETE;
    if (s[1] != '1') return RESP_ERROR;
    int64_t one;
    long n = read_int(s + 1, len - 1, 0, &one);
    if (n <= 0) return n;
    if (one != 1) return RESP_ERROR;
    *out = -1;
    return n + 1;
  }
  return read_int(s, len, 0, out);
}

/* RESP3 doubles: [+-]digits[.digits][e[+-]digits], inf, -inf, nan. */
static int parse_double(const char *s, size_t n, double *out) {
  char buf[MAX_DOUBLE_LINE + 1];
  if (n == 0 || n > MAX_DOUBLE_LINE) return -1;
  memcpy(buf, s, n);
  buf[n] = '\0';
  const char *p = buf[0] == '-' || buf[0] == '+' ? buf + 1 : buf;
  if (strcmp(p, "inf") == 0 || strcmp(p, "nan") == 0) {
    double v = p[0] == 'i' ? (double)__builtin_inf() : (double)__builtin_nan("");
    *out = buf[0] == '-' ? -v : v;
    return 0;
  }
  int digits = 0, dot = 0, exp = 0;
  for (const char *q = p; *q; q++) {
    if (*q >= '0' && *q <= '9') {
      digits++;
    } else if (*q == '.' && !dot && !exp) {
      dot = 1;
    } else if ((*q == 'e' || *q == 'E') && digits && !exp) {
      exp = 1;
      if (q[1] == '+' || q[1] == '-') q++;
      if (q[1] == '\0') return -1;
    } else {
      return -1;
    }
  }
  if (digits == 0) return -1;
  char *end;
  *out = strtod(buf, &end);
  return *end == '\0' ? 0 : -1;
}

/* A value ended at the current depth: count it, and close the aggregates it completes. */
static void value_done(resp_parser *p, resp_token *t) {
  while (p->depth > 0) {
    uint32_t d = p->depth - 1;
    if (--p->stack[d].left > 0) return;
    p->depth = d;
    if (p->stack[d].type == RESP_ATTRIBUTE) return; /* not an element: the parent goes on */
    if (!p->stack[d].skip) t->closes++;
  }
}

static int scalar_type(char c) {
  switch (c) {
    case '$':
    case '+':
    case '=': return RESP_STRING;
    case '-':
    case '!': return RESP_ERR;
    case ':': return RESP_INTEGER;
    case ',': return RESP_DOUBLE;
    case '#': return RESP_BOOLEAN;
    case '(': return RESP_BIGNUM;
    case '_': return RESP_NULL;
    case '*': return RESP_ARRAY;
    case '%': return RESP_MAP;
    case '~': return RESP_SET;
    case '>': return RESP_PUSH;
    case '|': return RESP_ATTRIBUTE;
    default: return 0;
  }
}

/* The token's body after its type byte; returns the bytes taken in all or an error. */
static long parse_body(const char *buf, size_t len, resp_token *t, size_t *need) {
  char c = buf[0];
  const char *s = buf + 1;
  size_t n = len - 1;
  long h, l;
  int64_t v;
  switch (c) {
    case '+':
    case '-':
    case '(':
    case ',':
      l = line_length(s, n);
      if (l == -1) return RESP_INCOMPLETE;
      if (l < 0) return RESP_ERROR;
      t->str = s;
      t->len = (size_t)l;
      if (c == ',' && parse_double(s, (size_t)l, &t->d) != 0) return RESP_ERROR;
      if (c == '(') {
        const char *d = s + (l > 0 && (s[0] == '-' || s[0] == '+'));
        if (d == s + l) return RESP_ERROR;
        for (; d < s + l; d++)
          if (*d < '0' || *d > '9') return RESP_ERROR;
      }
      return 1 + l + 2;
    case ':': h = read_int(s, n, 1, &t->i); return h > 0 ? 1 + h : h;
    case '#':
      if (n < 3) return RESP_INCOMPLETE;
      if ((s[0] != 't' && s[0] != 'f') || s[1] != '\r' || s[2] != '\n') return RESP_ERROR;
      t->i = s[0] == 't';
      return 4;
    case '_':
      if (n < 2) return RESP_INCOMPLETE;
      return s[0] == '\r' && s[1] == '\n' ? 3 : RESP_ERROR;
    case '$':
    case '=':
    case '!':
      h = read_length(s, n, &v);
      if (h <= 0) return h;
      if (v < 0) {
        if (c != '$') return RESP_ERROR;
        t->type = RESP_NULL;
        return 1 + h;
      }
      if (v > RESP_MAX_BULK) return RESP_ERROR;
      *need = 1 + (size_t)h + (size_t)v + 2;
      if (len < *need) return RESP_INCOMPLETE;
      if (s[h + v] != '\r' || s[h + v + 1] != '\n') return RESP_ERROR;
      t->str = s + h;
      t->len = (size_t)v;
      if (c == '=') { /* "txt:" then the text */
        if (v < 4 || t->str[3] != ':') return RESP_ERROR;
        t->str += 4;
        t->len -= 4;
      }
      return (long)*need;
    default: /* aggregates */
      h = read_length(s, n, &v);
      if (h <= 0) return h;
      if (v < 0) {
        if (c != '*') return RESP_ERROR;
        t->type = RESP_NULL;
      }
      if (v > (c == '%' || c == '|' ? RESP_MAX_COUNT / 2 : RESP_MAX_COUNT)) return RESP_ERROR;
      t->i = v;
      return 1 + h;
  }
}

long resp_next(resp_parser *p, const char *buf, size_t len, resp_token *t, size_t *need) {
  *need = 0;
  if (len == 0) return RESP_INCOMPLETE;
  int type = scalar_type(buf[0]);
  if (type == 0) return RESP_ERROR;
  t->type = (uint8_t)type;
  t->closes = 0;
  t->str = NULL;
  t->len = 0;
  t->i = 0;
  t->d = 0;
  long n = parse_body(buf, len, t, need);
  if (n <= 0) return n;
  uint32_t d = p->depth;
  int parent_skip = d > 0 && p->stack[d - 1].skip;
  t->depth = (uint8_t)d;
  t->skip = (uint8_t)(parent_skip || type == RESP_ATTRIBUTE);
  t->role = RESP_ITEM;
  if (!t->skip && d > 0 && p->stack[d - 1].type == RESP_MAP)
    t->role = p->stack[d - 1].left % 2 == 0 ? RESP_KEY : RESP_VALUE;
  int aggregate = t->type == RESP_ARRAY || t->type == RESP_MAP || t->type == RESP_SET ||
                  t->type == RESP_PUSH || t->type == RESP_ATTRIBUTE;
  if (aggregate && t->i > 0) {
    if (d == RESP_MAX_DEPTH) return RESP_ERROR;
    p->stack[d].left = t->type == RESP_MAP || t->type == RESP_ATTRIBUTE ? t->i * 2 : t->i;
    p->stack[d].type = t->type;
    p->stack[d].skip = t->skip;
    p->depth = d + 1;
  } else if (t->type != RESP_ATTRIBUTE) { /* a scalar, or an empty aggregate */
    value_done(p, t);
  }
  return n;
}

long resp_bulk_header(const char *buf, size_t len, int64_t *n) {
  if (len == 0) return RESP_INCOMPLETE;
  if (buf[0] != '$') return RESP_ERROR;
  long h = read_length(buf + 1, len - 1, n);
  if (h <= 0) return h;
  if (*n > RESP_MAX_BULK) return RESP_ERROR;
  return 1 + h;
}
