/*
 * http_parser.c: the HTTP/1.1 parser (http_parser.h has the contract, docs/internals.md the
 * strictness choices).
 *
 * Everything is a forward scan over the caller's bytes. Each step returns the position after
 * what it read, or NULL with *ret set to LHTTP_INCOMPLETE (the bytes ran out while what we
 * have is still a valid prefix) or LHTTP_ERROR (a byte that can never be valid here). So a
 * malformed message is refused as soon as the bad byte arrives, not when the line ends.
 */
#include "http_parser.h"

#include <limits.h>
#include <string.h>

/* Character classes, one byte per character:
 *   C_TOKEN  tchar (RFC 9110 5.6.2): method and field names;
 *   C_VALUE  field-vchar, SP, HTAB, obs-text: field values, reason phrases, chunk extensions;
 *   C_TARGET VCHAR and obs-text, no SP: the request target (raw UTF-8 is let through). */
#define C_TOKEN 1
#define C_VALUE 2
#define C_TARGET 4

static const unsigned char cls[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, /* 00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 10 */
    2, 7, 6, 7, 7, 7, 7, 7, 6, 6, 7, 7, 6, 7, 7, 6, /* 20 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6, /* 30 */
    6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 40 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 7, 7, /* 50 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 60 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 7, 6, 7, 0, /* 70 */
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, /* 80 */
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, /* 90 */
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, /* a0 */
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, /* b0 */
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, /* c0 */
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, /* d0 */
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, /* e0 */
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, /* f0 */
};

#define IS(c, class) (cls[(unsigned char)(c)] & (class))

/* Word-at-a-time checks (the classic bit tricks): nonzero when some byte of w is below n
 * (n <= 128; bytes >= 0x80 never match), or equal to b. Exact as yes/no answers. */
#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)
#define HAS_LESS(w, n) (((w)-ONES * (n)) & ~(w)&HIGHS)
#define HAS_BYTE(w, b) HAS_LESS((w) ^ (ONES * (b)), 1)

/* The first byte in [p, end) outside `class`, or end. Values and targets are long and
 * mostly plain, so 8 bytes are checked at once for anything below `lowest` or DEL (the
 * only bytes outside both classes, besides SP for targets); a flagged word is then walked
 * byte by byte through the table. */
static inline const char *scan(const char *p, const char *end, unsigned lowest, unsigned class) {
  for (;;) {
    while (end - p >= 8) {
      uint64_t w;
      memcpy(&w, p, 8);
      if (HAS_LESS(w, lowest) | HAS_BYTE(w, 0x7f)) break;
      p += 8;
    }
    const char *stop = end - p > 8 ? p + 8 : end;
    for (; p < stop; p++)
      if (!IS(*p, class)) return p;
    if (p == end) return end;
  }
}

static const char *scan_token(const char *p, const char *end) {
  while (p < end && IS(*p, C_TOKEN)) p++;
  return p;
}

static const char *expect_crlf(const char *p, const char *end, int *ret) {
  if (p == end) goto incomplete;
  if (*p != '\r') goto error;
  if (p + 1 == end) goto incomplete;
  if (p[1] != '\n') goto error;
  return p + 2;
incomplete:
  *ret = LHTTP_INCOMPLETE;
  return NULL;
error:
  *ret = LHTTP_ERROR;
  return NULL;
}

/* "HTTP/1.0" or "HTTP/1.1"; a prefix of either is incomplete, anything else an error. */
static const char *parse_version(const char *p, const char *end, int *minor, int *ret) {
  static const char prefix[] = "HTTP/1.";
  for (int i = 0; i < 7; i++, p++) {
    if (p == end) goto incomplete;
    if (*p != prefix[i]) goto error;
  }
  if (p == end) goto incomplete;
  if (*p != '0' && *p != '1') goto error;
  *minor = *p - '0';
  return p + 1;
incomplete:
  *ret = LHTTP_INCOMPLETE;
  return NULL;
error:
  *ret = LHTTP_ERROR;
  return NULL;
}

/* Header lines up to and including the empty line. */
static const char *parse_headers(const char *p, const char *end, struct lhttp_header *headers,
                                 size_t max, size_t *num_headers, int *ret) {
  size_t n = 0;
  for (;;) {
    if (p == end) goto incomplete;
    if (*p == '\r') {
      if (!(p = expect_crlf(p, end, ret))) return NULL;
      *num_headers = n;
      return p;
    }
    if (n == max) {
      *ret = LHTTP_TOO_MANY_HEADERS;
      return NULL;
    }
    /* An empty name covers obs-fold and any whitespace at the start of a line; a byte
     * other than ':' after the name covers whitespace before the colon. */
    const char *name = p;
    p = scan_token(p, end);
    if (p == end) goto incomplete;
    if (p == name || *p != ':') goto error;
    headers[n].name = name;
    headers[n].name_len = (size_t)(p - name);
    p++;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    const char *value = p;
    p = scan(p, end, 0x20, C_VALUE);
    const char *value_end = p;
    if (!(p = expect_crlf(p, end, ret))) return NULL;
    while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t')) value_end--;
    headers[n].value = value;
    headers[n].value_len = (size_t)(value_end - value);
    n++;
  }
incomplete:
  *ret = LHTTP_INCOMPLETE;
  return NULL;
error:
  *ret = LHTTP_ERROR;
  return NULL;
}

/* Whether buf[0..len) holds CRLF CRLF, looking only at what is new since last_len (the
 * terminator of a block that was incomplete then ends after last_len). */
static int block_complete(const char *buf, size_t len, size_t last_len) {
  size_t i = last_len > 3 ? last_len - 3 : 0;
  while (len >= 4 && i <= len - 4) {
    const char *lf = memchr(buf + i + 3, '\n', len - i - 3);
    if (!lf) return 0;
    size_t j = (size_t)(lf - buf);
    if (buf[j - 1] == '\r' && buf[j - 2] == '\n' && buf[j - 3] == '\r') return 1;
    i = j - 2;
  }
  return 0;
}

int lhttp_parse_request(const char *buf, size_t len, const char **method, size_t *method_len,
                        const char **path, size_t *path_len, int *minor_version,
                        struct lhttp_header *headers, size_t *num_headers, size_t last_len) {
  if (len > INT_MAX) len = INT_MAX;
  if (last_len != 0 && last_len < len && !block_complete(buf, len, last_len))
    return LHTTP_INCOMPLETE;
  const char *p = buf, *end = buf + len;
  int ret = LHTTP_INCOMPLETE;

  /* RFC 9112 2.2: a server SHOULD ignore at least one empty line before a request line
   * (old clients send CRLF after a POST body). A few, not an unbounded number. */
  for (int blank = 0; p < end && *p == '\r'; blank++) {
    if (blank == 4) return LHTTP_ERROR;
    if (!(p = expect_crlf(p, end, &ret))) return ret;
  }

  const char *m = p;
  p = scan_token(p, end);
  if (p == end) return LHTTP_INCOMPLETE;
  if (p == m || *p != ' ') return LHTTP_ERROR;
  const char *m_end = p++;

  const char *target = p;
  p = scan(p, end, 0x21, C_TARGET);
  if (p == end) return LHTTP_INCOMPLETE;
  if (p == target || *p != ' ') return LHTTP_ERROR;
  const char *target_end = p++;

  int minor;
  size_t n;
  if (!(p = parse_version(p, end, &minor, &ret))) return ret;
  if (!(p = expect_crlf(p, end, &ret))) return ret;
  if (!(p = parse_headers(p, end, headers, *num_headers, &n, &ret))) return ret;

  *method = m;
  *method_len = (size_t)(m_end - m);
  *path = target;
  *path_len = (size_t)(target_end - target);
  *minor_version = minor;
  *num_headers = n;
  return (int)(p - buf);
}

int lhttp_parse_response(const char *buf, size_t len, int *minor_version, int *status,
                         const char **msg, size_t *msg_len, struct lhttp_header *headers,
                         size_t *num_headers, size_t last_len) {
  if (len > INT_MAX) len = INT_MAX;
  if (last_len != 0 && last_len < len && !block_complete(buf, len, last_len))
    return LHTTP_INCOMPLETE;
  const char *p = buf, *end = buf + len;
  int ret = LHTTP_INCOMPLETE;

  int minor;
  if (!(p = parse_version(p, end, &minor, &ret))) return ret;
  if (p == end) return LHTTP_INCOMPLETE;
  if (*p++ != ' ') return LHTTP_ERROR;

  int code = 0;
  for (int i = 0; i < 3; i++, p++) {
    if (p == end) return LHTTP_INCOMPLETE;
    if (*p < '0' || *p > '9') return LHTTP_ERROR;
    code = code * 10 + (*p - '0');
  }
  if (code < 100 || code > 599) return LHTTP_ERROR;

  /* status-line = HTTP-version SP status-code SP [ reason-phrase ]; the second SP is
   * missing in the wild ("HTTP/1.1 200\r\n") and harmless, so it is optional here. */
  const char *reason = p, *reason_end = p;
  if (p == end) return LHTTP_INCOMPLETE;
  if (*p == ' ') {
    reason = ++p;
    p = scan(p, end, 0x20, C_VALUE);
    reason_end = p;
  }
  size_t n;
  if (!(p = expect_crlf(p, end, &ret))) return ret;
  if (!(p = parse_headers(p, end, headers, *num_headers, &n, &ret))) return ret;

  *minor_version = minor;
  *status = code;
  *msg = reason;
  *msg_len = (size_t)(reason_end - reason);
  *num_headers = n;
  return (int)(p - buf);
}

/* --- body framing ----------------------------------------------------------------------- */

static int lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* s[0..n) equals the lowercase literal lit, ignoring ASCII case. */
static int same(const char *s, size_t n, const char *lit, size_t lit_len) {
  if (n != lit_len) return 0;
  for (size_t i = 0; i < n; i++)
    if (lower((unsigned char)s[i]) != lit[i]) return 0;
  return 1;
}
#define SAME(s, n, lit) same((s), (n), lit, sizeof(lit) - 1)

/* The next element of a comma-separated list at *pos (RFC 9110 5.6.1), OWS trimmed and
 * possibly empty; 0 at the end of the list. */
static int next_element(const char **pos, const char *end, const char **elem, size_t *len) {
  const char *p = *pos;
  if (!p) return 0;
  while (p < end && (*p == ' ' || *p == '\t')) p++;
  const char *start = p;
  while (p < end && *p != ',') p++;
  const char *stop = p;
  while (stop > start && (stop[-1] == ' ' || stop[-1] == '\t')) stop--;
  *elem = start;
  *len = (size_t)(stop - start);
  *pos = p < end ? p + 1 : NULL; /* past the comma; NULL after the last element */
  return 1;
}

static int parse_length(const char *s, size_t n, uint64_t *out) {
  uint64_t v = 0;
  if (n == 0) return -1;
  for (size_t i = 0; i < n; i++) {
    unsigned d = (unsigned char)s[i] - '0';
    if (d > 9) return -1;
    if (v > (UINT64_C(0x7fffffffffffffff) - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

/* What the framing decisions need from the headers, in one pass. */
struct facts {
  int te;           /* Transfer-Encoding lines seen */
  int codings;      /* transfer codings named in them (empty elements ignored) */
  int chunked;      /* how many of them are chunked */
  int last_chunked; /* the last coding is chunked */
  int cl;           /* Content-Length seen */
  uint64_t length;
  int hosts;
  const char *host;
  size_t host_len;
  unsigned flags;
};

static int collect(const struct lhttp_header *h, size_t n, struct facts *f) {
  memset(f, 0, sizeof *f);
  for (size_t i = 0; i < n; i++, h++) {
    const char *e, *pos = h->value, *end = h->value + h->value_len;
    size_t len;
    switch (h->name_len) {
      case 4:
        if (!SAME(h->name, 4, "host")) break;
        f->hosts++;
        f->host = h->value;
        f->host_len = h->value_len;
        break;
      case 6:
        if (!SAME(h->name, 6, "expect")) break;
        while (next_element(&pos, end, &e, &len)) {
          if (len == 0) continue;
          f->flags |= SAME(e, len, "100-continue") ? LHTTP_EXPECT_CONTINUE : LHTTP_EXPECT_OTHER;
        }
        break;
      case 10:
        if (!SAME(h->name, 10, "connection")) break;
        while (next_element(&pos, end, &e, &len)) {
          if (SAME(e, len, "close"))
            f->flags |= LHTTP_CONN_CLOSE;
          else if (SAME(e, len, "keep-alive"))
            f->flags |= LHTTP_CONN_KEEP_ALIVE;
          else if (SAME(e, len, "upgrade"))
            f->flags |= LHTTP_CONN_UPGRADE;
        }
        break;
      case 14:
        if (!SAME(h->name, 14, "content-length")) break;
        /* Every element of every line must be the same 1*DIGIT (RFC 9110 8.6). */
        while (next_element(&pos, end, &e, &len)) {
          uint64_t v;
          if (parse_length(e, len, &v) < 0) return -1;
          if (f->cl && v != f->length) return -1;
          f->cl = 1;
          f->length = v;
        }
        break;
      case 17:
        if (!SAME(h->name, 17, "transfer-encoding")) break;
        f->te++;
        while (next_element(&pos, end, &e, &len)) {
          if (len == 0) continue;
          f->codings++;
          f->last_chunked = SAME(e, len, "chunked");
          f->chunked += f->last_chunked;
        }
        break;
    }
  }
  return 0;
}

static int keep_alive(int minor_version, unsigned flags) {
  if (flags & LHTTP_CONN_CLOSE) return 0;
  return minor_version >= 1 || (flags & LHTTP_CONN_KEEP_ALIVE);
}

int lhttp_request_framing(const struct lhttp_header *headers, size_t num_headers, int minor_version,
                          struct lhttp_framing *out) {
  struct facts f;
  memset(out, 0, sizeof *out);
  if (collect(headers, num_headers, &f) < 0) return LHTTP_ERROR;
  /* RFC 9112 3.2: 400 for an HTTP/1.1 request without Host, with more than one, or with
   * an invalid one. */
  if (f.hosts > 1 || (f.hosts == 0 && minor_version >= 1)) return LHTTP_ERROR;
  if (f.hosts == 1 && !lhttp_valid_host(f.host, f.host_len)) return LHTTP_ERROR;
  if (minor_version == 0) f.flags &= ~(unsigned)LHTTP_EXPECT_CONTINUE;
  out->flags = f.flags;
  out->host = f.host;
  out->host_len = f.host_len;
  out->keep_alive = keep_alive(minor_version, f.flags);
  if (f.te) {
    /* RFC 9112 6.1-6.3: TE with CL is a smuggling attempt, TE in HTTP/1.0 is faulty
     * framing, and a request whose last coding is not chunked has no knowable length. */
    if (f.cl || minor_version == 0) return LHTTP_ERROR;
    if (f.codings == 0 || !f.last_chunked || f.chunked > 1) return LHTTP_ERROR;
    if (f.codings > 1) return LHTTP_UNSUPPORTED;
    out->body = LHTTP_BODY_CHUNKED;
  } else if (f.cl) {
    out->body = LHTTP_BODY_LENGTH;
    out->content_length = f.length;
  } else {
    out->body = LHTTP_BODY_NONE;
  }
  return 0;
}

int lhttp_response_framing(const struct lhttp_header *headers, size_t num_headers,
                           int minor_version, int status, int head_request,
                           struct lhttp_framing *out) {
  struct facts f;
  memset(out, 0, sizeof *out);
  if (collect(headers, num_headers, &f) < 0) return LHTTP_ERROR;
  out->flags = f.flags & ~(unsigned)(LHTTP_EXPECT_CONTINUE | LHTTP_EXPECT_OTHER);
  out->keep_alive = keep_alive(minor_version, out->flags);
  if (head_request || status < 200 || status == 204 || status == 304) {
    out->body = LHTTP_BODY_NONE; /* RFC 9112 6.3 (1): whatever the headers say */
  } else if (f.te) {
    if (f.cl || minor_version == 0 || f.chunked > 1) return LHTTP_ERROR;
    out->body = f.last_chunked ? LHTTP_BODY_CHUNKED : LHTTP_BODY_UNTIL_CLOSE;
  } else if (f.cl) {
    out->body = LHTTP_BODY_LENGTH;
    out->content_length = f.length;
  } else {
    out->body = LHTTP_BODY_UNTIL_CLOSE;
  }
  if (out->body == LHTTP_BODY_UNTIL_CLOSE) out->keep_alive = 0;
  return 0;
}

/* --- request targets ------------------------------------------------------------------- */

static int hexval(unsigned c);

/* RFC 3986 reg-name: unreserved / pct-encoded / sub-delims. */
static int reg_name_char(unsigned char c) {
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return 1;
  if (c >= '0' && c <= '9') return 1;
  return c != 0 && strchr("-._~!$&'()*+,;=", c) != NULL;
}

int lhttp_valid_host(const char *s, size_t n) {
  size_t i = 0;
  if (n > 0 && s[0] == '[') { /* IP-literal: hex digits, colons and dots (IPv4 suffix) */
    for (i = 1; i < n && s[i] != ']'; i++)
      if (hexval((unsigned char)s[i]) < 0 && s[i] != ':' && s[i] != '.') return 0;
    if (i == n || i == 1) return 0;
    i++;
  } else {
    for (; i < n && s[i] != ':'; i++) {
      if (s[i] == '%') {
        if (i + 2 >= n || hexval((unsigned char)s[i + 1]) < 0 ||
            hexval((unsigned char)s[i + 2]) < 0)
          return 0;
        i += 2;
      } else if (!reg_name_char((unsigned char)s[i])) {
        return 0;
      }
    }
  }
  if (i == n) return 1;
  if (s[i] != ':') return 0;
  for (i++; i < n; i++) /* port = *DIGIT */
    if (s[i] < '0' || s[i] > '9') return 0;
  return 1;
}

/* Splits "path?query" at t[0..n) into out. */
static void split_query(const char *t, size_t n, struct lhttp_target *out) {
  const char *q = memchr(t, '?', n);
  out->path = t;
  out->path_len = q ? (size_t)(q - t) : n;
  out->query = q ? q + 1 : NULL;
  out->query_len = q ? n - out->path_len - 1 : 0;
}

int lhttp_parse_target(const char *t, size_t n, struct lhttp_target *out) {
  memset(out, 0, sizeof *out);
  if (memchr(t, '#', n) != NULL) return LHTTP_ERROR; /* a fragment is never sent (RFC 9112 3.2) */
  if (n > 0 && t[0] == '/') {
    out->form = LHTTP_TARGET_ORIGIN;
    split_query(t, n, out);
    return 0;
  }
  if (n == 1 && t[0] == '*') {
    out->form = LHTTP_TARGET_ASTERISK;
    out->path = t;
    out->path_len = 1;
    return 0;
  }
  size_t skip;
  if (n >= 7 && same(t, 7, "http://", 7))
    skip = 7;
  else if (n >= 8 && same(t, 8, "https://", 8))
    skip = 8;
  else
    return LHTTP_ERROR;
  const char *a = t + skip, *end = t + n, *p = a;
  while (p < end && *p != '/' && *p != '?') p++;
  if (p == a || !lhttp_valid_host(a, (size_t)(p - a))) return LHTTP_ERROR;
  out->form = LHTTP_TARGET_ABSOLUTE;
  out->authority = a;
  out->authority_len = (size_t)(p - a);
  split_query(p, (size_t)(end - p), out);
  if (out->path_len == 0) {
    out->path = "/";
    out->path_len = 1;
  }
  return 0;
}

ssize_t lhttp_decode_path(char *dst, const char *src, size_t n) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (src[i] != '%') {
      dst[o++] = src[i];
      continue;
    }
    if (i + 2 >= n) return LHTTP_ERROR;
    int hi = hexval((unsigned char)src[i + 1]), lo = hexval((unsigned char)src[i + 2]);
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return LHTTP_ERROR;
    dst[o++] = (char)(hi * 16 + lo);
    i += 2;
  }
  return (ssize_t)o;
}

/* --- chunked decoding ------------------------------------------------------------------- */

enum {
  CS_SIZE_FIRST = 0, /* zero-filled decoder: expecting the first hex digit of a size */
  CS_SIZE,           /* more hex digits */
  CS_SIZE_WS,        /* BWS after the size: only ";" may follow */
  CS_EXT,            /* chunk extensions, up to CR */
  CS_SIZE_LF,
  CS_DATA,
  CS_DATA_CR,
  CS_DATA_LF,
  CS_TRAILER_START, /* a trailer line or the final CRLF */
  CS_TRAILER_NAME,
  CS_TRAILER_VALUE,
  CS_TRAILER_LF,
  CS_END_LF,
  CS_DONE,
};

static int hexval(unsigned c) {
  if (c - '0' < 10) return (int)(c - '0');
  c |= 0x20;
  if (c - 'a' < 6) return (int)(c - 'a' + 10);
  return -1;
}

ssize_t lhttp_decode_chunked(struct lhttp_chunked_decoder *d, char *buf, size_t *bufsz) {
  size_t n = *bufsz, src = 0, dst = 0;
  if (d->state == CS_DONE) {
    *bufsz = 0;
    return (ssize_t)n;
  }
  while (src < n) {
    if (d->state == CS_DATA) {
      size_t take = n - src;
      if (d->remaining < take) take = (size_t)d->remaining;
      if (dst != src) memmove(buf + dst, buf + src, take);
      dst += take;
      src += take;
      d->remaining -= take;
      d->data += take;
      if (d->remaining == 0) d->state = CS_DATA_CR;
      continue;
    }
    unsigned char c = (unsigned char)buf[src++];
    d->overhead++;
    if (d->state >= CS_TRAILER_START && ++d->count > LHTTP_MAX_TRAILERS) goto error;
    switch (d->state) {
      case CS_SIZE_FIRST:
      case CS_SIZE: {
        int v = hexval(c);
        if (v >= 0) {
          /* At most 16 digits (leading zeros included) and a size below 2^63. */
          if (d->count == 16 || (d->remaining >> 59) != 0) goto error;
          d->remaining = d->remaining << 4 | (unsigned)v;
          d->count++;
          d->state = CS_SIZE;
          break;
        }
        if (d->state == CS_SIZE_FIRST) goto error;
        d->count = 1; /* extension bytes, from here to the CR */
        if (c == '\r')
          d->state = CS_SIZE_LF;
        else if (c == ';')
          d->state = CS_EXT;
        else if (c == ' ' || c == '\t')
          d->state = CS_SIZE_WS;
        else
          goto error;
        break;
      }
      case CS_SIZE_WS:
        if (++d->count > LHTTP_MAX_CHUNK_EXT) goto error;
        if (c == ';')
          d->state = CS_EXT;
        else if (c != ' ' && c != '\t')
          goto error;
        break;
      case CS_EXT:
        /* The extension grammar is not checked, only its bytes and its length: extensions
       * are ignored, and what matters is that the line ends where every parser says. */
        if (c == '\r')
          d->state = CS_SIZE_LF;
        else if (!IS(c, C_VALUE) || ++d->count > LHTTP_MAX_CHUNK_EXT)
          goto error;
        break;
      case CS_SIZE_LF:
        if (c != '\n') goto error;
        d->count = 0;
        d->state = d->remaining ? CS_DATA : CS_TRAILER_START;
        break;
      case CS_DATA_CR:
        if (c != '\r') goto error;
        d->state = CS_DATA_LF;
        break;
      case CS_DATA_LF:
        if (c != '\n') goto error;
        d->count = 0;
        d->state = CS_SIZE_FIRST;
        break;
      case CS_TRAILER_START:
        if (c == '\r')
          d->state = CS_END_LF;
        else if (IS(c, C_TOKEN))
          d->state = CS_TRAILER_NAME;
        else
          goto error; /* obs-fold, whitespace, an empty name */
        break;
      case CS_TRAILER_NAME:
        if (c == ':')
          d->state = CS_TRAILER_VALUE;
        else if (!IS(c, C_TOKEN))
          goto error;
        break;
      case CS_TRAILER_VALUE:
        if (c == '\r')
          d->state = CS_TRAILER_LF;
        else if (!IS(c, C_VALUE))
          goto error;
        break;
      case CS_TRAILER_LF:
        if (c != '\n') goto error;
        d->state = CS_TRAILER_START;
        break;
      case CS_END_LF:
        if (c != '\n') goto error;
        d->state = CS_DONE;
        if (dst != src) memmove(buf + dst, buf + src, n - src);
        *bufsz = dst;
        return (ssize_t)(n - src);
      default: goto error;
    }
  }
  *bufsz = dst;
  /* Framing bytes cost work but are not body bytes, so a body-size limit does not bound
   * them: past 64 KiB they may be at most 8 times the data (1-byte chunks cost 5). */
  if (d->overhead > 65536 && d->overhead / 8 > d->data) return LHTTP_ERROR;
  return LHTTP_INCOMPLETE;
error:
  *bufsz = dst;
  return LHTTP_ERROR;
}
