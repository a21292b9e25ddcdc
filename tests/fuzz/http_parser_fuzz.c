/*
 * http_parser_fuzz.c: libFuzzer target for runtime/proto/http/http_parser.c (./build.sh fuzz).
 *
 * The first input byte picks a split point and the header capacity; the rest is the
 * message. Each parse runs on a copy of exactly the bytes it may read, so AddressSanitizer
 * sees any overread. Checked besides memory safety:
 *   - the result is > 0, -1, -2 or -3, and consumed <= len;
 *   - every output pointer + length lies inside the consumed bytes, names are tokens, values
 *     have no control characters (but HTAB) and no surrounding whitespace;
 *   - parsing in two steps with last_len, or byte by byte, agrees with one parse (an error
 *     may stay hidden as INCOMPLETE while the block has no CRLF CRLF: the documented cost of
 *     last_len);
 *   - the framing helpers return known values;
 *   - chunked decoding in pieces gives the same data and end as decoding in one call, and
 *     never writes past what it was given.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_parser.h"

#define MAXH 32
#define ASSERT(c) ((c) ? (void)0 : abort())

static int inside(const char *p, size_t n, const char *buf, size_t len) {
  return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

static int is_token(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void check_headers(const struct lhttp_header *h, size_t nh, size_t cap, const char *buf,
                          size_t n) {
  ASSERT(nh <= cap);
  for (size_t i = 0; i < nh; i++) {
    ASSERT(h[i].name_len > 0 && inside(h[i].name, h[i].name_len, buf, n));
    ASSERT(inside(h[i].value, h[i].value_len, buf, n));
    for (size_t k = 0; k < h[i].name_len; k++) ASSERT(is_token((unsigned char)h[i].name[k]));
    for (size_t k = 0; k < h[i].value_len; k++) {
      unsigned char c = (unsigned char)h[i].value[k];
      ASSERT(c == '\t' || (c >= 0x20 && c != 0x7f));
    }
    if (h[i].value_len) {
      char first = h[i].value[0], last = h[i].value[h[i].value_len - 1];
      ASSERT(first != ' ' && first != '\t' && last != ' ' && last != '\t');
    }
  }
}

static void check_framing(int ret, const struct lhttp_framing *f, int request) {
  ASSERT(ret == 0 || ret == LHTTP_ERROR || (request && ret == LHTTP_UNSUPPORTED));
  if (ret != 0) return;
  ASSERT(f->body >= LHTTP_BODY_NONE && f->body <= LHTTP_BODY_UNTIL_CLOSE);
  ASSERT(f->body != LHTTP_BODY_UNTIL_CLOSE || (!request && !f->keep_alive));
  ASSERT(f->content_length <= INT64_MAX);
  ASSERT(f->keep_alive == 0 || f->keep_alive == 1);
}

/* CRLF CRLF after any leading empty lines (which a request may start with: they are not the
 * end of a block, so re-parses with last_len do not look at them). */
static int has_block_end(const char *buf, size_t len) {
  size_t i = 0;
  while (i + 2 <= len && buf[i] == '\r' && buf[i + 1] == '\n') i += 2;
  for (; i + 4 <= len; i++)
    if (memcmp(buf + i, "\r\n\r\n", 4) == 0) return 1;
  return 0;
}

struct req {
  const char *method, *path;
  size_t method_len, path_len, nh;
  int minor, ret;
  struct lhttp_header h[MAXH];
};

static int parse_req(struct req *r, const char *buf, size_t len, size_t cap, size_t last) {
  r->nh = cap;
  r->ret = lhttp_parse_request(buf, len, &r->method, &r->method_len, &r->path, &r->path_len,
                               &r->minor, r->h, &r->nh, last);
  ASSERT(r->ret >= LHTTP_TOO_MANY_HEADERS && r->ret != 0);
  if (r->ret > 0) {
    size_t n = (size_t)r->ret;
    ASSERT(n <= len);
    ASSERT(r->method_len > 0 && inside(r->method, r->method_len, buf, n));
    ASSERT(r->path_len > 0 && inside(r->path, r->path_len, buf, n));
    ASSERT(r->minor == 0 || r->minor == 1);
    for (size_t k = 0; k < r->method_len; k++) ASSERT(is_token((unsigned char)r->method[k]));
    check_headers(r->h, r->nh, cap, buf, n);
  } else {
    ASSERT(r->nh == cap);
  }
  return r->ret;
}

/* Same message, same outputs (as offsets into their own buffers). */
static void same_req(const struct req *a, const char *abuf, const struct req *b, const char *bbuf) {
  ASSERT(a->ret == b->ret);
  if (a->ret <= 0) return;
  ASSERT(a->method - abuf == b->method - bbuf && a->method_len == b->method_len);
  ASSERT(a->path - abuf == b->path - bbuf && a->path_len == b->path_len);
  ASSERT(a->minor == b->minor && a->nh == b->nh);
  for (size_t i = 0; i < a->nh; i++) {
    ASSERT(a->h[i].name - abuf == b->h[i].name - bbuf && a->h[i].name_len == b->h[i].name_len);
    ASSERT(a->h[i].value - abuf == b->h[i].value - bbuf && a->h[i].value_len == b->h[i].value_len);
  }
}

/* The result after re-parses with last_len may differ from one parse only by hiding an
 * error as INCOMPLETE while there is no CRLF CRLF (after leading empty lines). */
static void agrees(int whole, int stepped, const char *buf, size_t len) {
  if (whole == stepped) return;
  ASSERT(whole != LHTTP_INCOMPLETE && whole < 0 && stepped == LHTTP_INCOMPLETE);
  ASSERT(!has_block_end(buf, len));
}

static char *copy(const uint8_t *data, size_t n) {
  char *b = malloc(n ? n : 1);
  memcpy(b, data, n);
  return b;
}

static void fuzz_request(const uint8_t *data, size_t size, size_t split, size_t cap) {
  char *buf = copy(data, size);
  struct req whole, step;
  parse_req(&whole, buf, size, cap, 0);
  if (whole.ret > 0) {
    struct lhttp_framing f;
    check_framing(lhttp_request_framing(whole.h, whole.nh, whole.minor, &f), &f, 1);
    if (f.host) ASSERT(inside(f.host, f.host_len, buf, (size_t)whole.ret));
  }

  /* Two steps: a prefix, then everything with last_len. */
  char *pre = copy(data, split);
  int r1 = parse_req(&step, pre, split, cap, 0);
  if (r1 == LHTTP_INCOMPLETE) {
    parse_req(&step, buf, size, cap, split);
    agrees(whole.ret, step.ret, buf, size);
    if (step.ret == whole.ret) same_req(&whole, buf, &step, buf);
  } else if (r1 > 0) {
    ASSERT(whole.ret == r1); /* a complete prefix is the same message */
    same_req(&whole, buf, &step, pre);
  } else {
    ASSERT(whole.ret == r1); /* an error in a prefix is an error in the whole */
  }
  free(pre);

  /* Byte by byte for short inputs. */
  if (size <= 96) {
    size_t last = 0;
    int r = LHTTP_INCOMPLETE;
    for (size_t i = 1; i <= size && r == LHTTP_INCOMPLETE; i++) {
      char *b = copy(data, i);
      r = parse_req(&step, b, i, cap, last);
      last = i;
      if (r > 0) {
        ASSERT(r == whole.ret && (size_t)r == i);
        same_req(&whole, buf, &step, b);
      }
      free(b);
    }
    if (r <= 0) agrees(whole.ret, r, buf, size);
  }
  free(buf);
}

static void fuzz_response(const uint8_t *data, size_t size, size_t split, size_t cap) {
  char *buf = copy(data, size);
  struct lhttp_header h[MAXH];
  size_t nh = cap;
  int minor = -1, status = -1;
  const char *msg = NULL;
  size_t msg_len = 0;
  int ret = lhttp_parse_response(buf, size, &minor, &status, &msg, &msg_len, h, &nh, 0);
  ASSERT(ret >= LHTTP_TOO_MANY_HEADERS && ret != 0);
  if (ret > 0) {
    ASSERT((size_t)ret <= size && (minor == 0 || minor == 1) && status >= 100 && status <= 599);
    ASSERT(inside(msg, msg_len, buf, (size_t)ret));
    check_headers(h, nh, cap, buf, (size_t)ret);
    struct lhttp_framing f;
    check_framing(lhttp_response_framing(h, nh, minor, status, split & 1, &f), &f, 0);
  } else {
    ASSERT(nh == cap);
  }
  char *pre = copy(data, split);
  size_t nh2 = cap;
  int r1 = lhttp_parse_response(pre, split, &minor, &status, &msg, &msg_len, h, &nh2, 0);
  free(pre);
  if (r1 == LHTTP_INCOMPLETE) {
    nh2 = cap;
    int r2 = lhttp_parse_response(buf, size, &minor, &status, &msg, &msg_len, h, &nh2, split);
    agrees(ret, r2, buf, size);
  } else {
    ASSERT(r1 == ret);
  }
  free(buf);
}

struct decoded {
  ssize_t ret;
  size_t body_len, rest_len;
  char *body, *rest;
};

/* Decodes in pieces of `step` bytes; each piece in its own exact-size buffer. */
static void decode(const uint8_t *data, size_t size, size_t step, struct decoded *out) {
  struct lhttp_chunked_decoder d;
  memset(&d, 0, sizeof d);
  out->ret = LHTTP_INCOMPLETE;
  out->body_len = out->rest_len = 0;
  out->body = malloc(size + 1);
  out->rest = malloc(size + 1);
  for (size_t off = 0; off < size;) {
    size_t n = size - off < step ? size - off : step;
    char *b = copy(data + off, n);
    size_t sz = n;
    out->ret = lhttp_decode_chunked(&d, b, &sz);
    off += n;
    ASSERT(out->ret >= LHTTP_INCOMPLETE);
    ASSERT(sz <= n);
    if (out->ret == LHTTP_ERROR) {
      free(b);
      return;
    }
    memcpy(out->body + out->body_len, b, sz);
    out->body_len += sz;
    if (out->ret >= 0) {
      ASSERT((size_t)out->ret <= n - sz);
      memcpy(out->rest, b + sz, (size_t)out->ret);
      memcpy(out->rest + out->ret, data + off, size - off);
      out->rest_len = (size_t)out->ret + size - off;
      free(b);
      return;
    }
    free(b);
  }
}

static void fuzz_chunked(const uint8_t *data, size_t size, size_t step) {
  struct decoded whole, pieces;
  decode(data, size, size ? size : 1, &whole);
  decode(data, size, step, &pieces);
  ASSERT(whole.ret == pieces.ret || (whole.ret >= 0 && pieces.ret >= 0));
  if (whole.ret != LHTTP_ERROR) {
    ASSERT(whole.body_len == pieces.body_len);
    ASSERT(memcmp(whole.body, pieces.body, whole.body_len) == 0);
    ASSERT(whole.rest_len == pieces.rest_len);
    ASSERT(memcmp(whole.rest, pieces.rest, whole.rest_len) == 0);
    ASSERT(whole.body_len + whole.rest_len <= size);
  }
  free(whole.body);
  free(whole.rest);
  free(pieces.body);
  free(pieces.rest);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t ctl = data[0];
  data++;
  size--;
  size_t split = size ? (size_t)ctl * 7 % (size + 1) : 0;
  size_t cap = (ctl & 0x80) ? (size_t)(ctl & 7) : MAXH; /* small arrays reach TOO_MANY */
  fuzz_request(data, size, split, cap);
  fuzz_response(data, size, split, cap);
  fuzz_chunked(data, size, (size_t)(ctl & 15) + 1);
  return 0;
}
