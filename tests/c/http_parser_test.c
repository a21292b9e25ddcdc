/*
 * http_parser_test.c: unit tests for runtime/proto/http/http_parser.c. No framework: each CHECK counts
 * a pass or prints the failure; the last line is "http_parser_test: N passed, N failed" and
 * the exit status is 1 when anything failed. Run by tests/http_parser_test.lua.
 *
 * Every parse of a prefix copies it into a buffer of exactly that size, so the sanitizer
 * build catches any read past the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parser.h"

static int passed, failed;

#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (cond) {                                                                                    \
      passed++;                                                                                    \
    } else {                                                                                       \
      failed++;                                                                                    \
      printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                       \
      printf(__VA_ARGS__);                                                                         \
      printf("\n");                                                                                \
    }                                                                                              \
  } while (0)

#define MAXH 16

/* --- requests ------------------------------------------------------------------------- */

struct req {
  int ret;
  const char *method, *path;
  size_t method_len, path_len, nh;
  int minor;
  struct lhttp_header h[MAXH];
};

static char *dup_bytes(const char *s, size_t n) {
  char *b = malloc(n ? n : 1);
  memcpy(b, s, n);
  return b;
}

static int parse_req(struct req *r, const char *buf, size_t len, size_t cap, size_t last_len) {
  r->nh = cap;
  r->ret = lhttp_parse_request(buf, len, &r->method, &r->method_len, &r->path, &r->path_len,
                               &r->minor, r->h, &r->nh, last_len);
  return r->ret;
}

/* Parses s (n bytes) whole; returns the result. The caller must not keep pointers. */
static int reqn(const char *s, size_t n) {
  struct req r;
  char *b = dup_bytes(s, n);
  int ret = parse_req(&r, b, n, MAXH, 0);
  free(b);
  return ret;
}
#define REQ(s) reqn(s, sizeof(s) - 1)

static int same_header(const struct lhttp_header *a, const char *abase,
                       const struct lhttp_header *b, const char *bbase) {
  return a->name - abase == b->name - bbase && a->name_len == b->name_len &&
         a->value - abase == b->value - bbase && a->value_len == b->value_len;
}

/* Feeding s a byte at a time, with and without last_len, must give INCOMPLETE until the
 * whole-buffer result, then the same result and outputs; an error may show up earlier but
 * must be the same error. */
static void incremental_request(const char *s, size_t n, int line) {
  struct req all, part;
  parse_req(&all, s, n, MAXH, 0);
  for (int use_last = 0; use_last < 2; use_last++) {
    size_t last = 0;
    for (size_t i = 0; i <= n; i++) {
      char *b = dup_bytes(s, i);
      int ret = parse_req(&part, b, i, MAXH, use_last ? last : 0);
      last = i;
      if (ret == LHTTP_INCOMPLETE) {
        free(b);
        if (all.ret > 0 && i >= (size_t)all.ret) {
          CHECK(0, "line %d: incomplete at %zu of %d (last_len %d)", line, i, all.ret, use_last);
          break;
        }
        continue;
      }
      if (all.ret > 0) {
        int ok = ret == all.ret && (size_t)ret == i && part.nh == all.nh &&
                 part.method - b == all.method - s && part.method_len == all.method_len &&
                 part.path - b == all.path - s && part.path_len == all.path_len &&
                 part.minor == all.minor;
        for (size_t k = 0; ok && k < all.nh; k++) ok = same_header(&part.h[k], b, &all.h[k], s);
        CHECK(ok, "line %d: byte-by-byte gives %d at %zu, whole gives %d", line, ret, i, all.ret);
      } else {
        CHECK(ret == all.ret, "line %d: byte-by-byte gives %d at %zu, whole gives %d", line, ret, i,
              all.ret);
      }
      free(b);
      break;
    }
  }
}
#define INCREMENTAL_REQ(s) incremental_request(s, sizeof(s) - 1, __LINE__)

static int header_is(const struct lhttp_header *h, const char *name, const char *value) {
  return h->name_len == strlen(name) && memcmp(h->name, name, h->name_len) == 0 &&
         h->value_len == strlen(value) && memcmp(h->value, value, h->value_len) == 0;
}

static void test_valid_requests(void) {
  struct req r;
  const char *s = "GET /index.html?a=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n\r\n";
  CHECK(parse_req(&r, s, strlen(s), MAXH, 0) == (int)strlen(s), "got %d", r.ret);
  CHECK(r.method_len == 3 && memcmp(r.method, "GET", 3) == 0, "method");
  CHECK(r.path_len == 15 && memcmp(r.path, "/index.html?a=1", 15) == 0, "path %zu", r.path_len);
  CHECK(r.minor == 1, "minor %d", r.minor);
  CHECK(r.nh == 2 && header_is(&r.h[0], "Host", "example.com") &&
            header_is(&r.h[1], "User-Agent", "t/1"),
        "headers");

  s = "OPTIONS * HTTP/1.0\r\n\r\n";
  CHECK(parse_req(&r, s, strlen(s), MAXH, 0) == (int)strlen(s) && r.minor == 0 && r.nh == 0 &&
            r.path_len == 1,
        "HTTP/1.0 without headers: %d", r.ret);

  s = "GET / HTTP/1.1\r\nA:  x y \t\r\nB:\r\nC: \t \r\nD:\tq\tr\r\n\r\n";
  CHECK(parse_req(&r, s, strlen(s), MAXH, 0) > 0, "OWS: %d", r.ret);
  CHECK(r.nh == 4 && header_is(&r.h[0], "A", "x y") && header_is(&r.h[1], "B", "") &&
            header_is(&r.h[2], "C", "") && header_is(&r.h[3], "D", "q\tr"),
        "OWS trimmed");

  s = "GET /caf\xc3\xa9 HTTP/1.1\r\nX: \xff\x80 obs-text\r\n\r\n";
  CHECK(parse_req(&r, s, strlen(s), MAXH, 0) > 0, "obs-text in target and value: %d", r.ret);

  s = "M-SEARCH!#$%&'*+.^_`|~09az * HTTP/1.1\r\n!#$%&'*+-.^_`|~09AZaz: v\r\n\r\n";
  CHECK(parse_req(&r, s, strlen(s), MAXH, 0) > 0, "every tchar: %d", r.ret);

  CHECK(REQ("GET http://a.b/c?d HTTP/1.1\r\nHost: a.b\r\n\r\n") > 0, "absolute-form");
  CHECK(REQ("CONNECT a.b:443 HTTP/1.1\r\nHost: a.b:443\r\n\r\n") > 0, "authority-form");

  /* Up to 4 empty lines before the request line are skipped and counted as consumed. */
  s = "\r\n\r\nGET / HTTP/1.1\r\n\r\n";
  CHECK(parse_req(&r, s, strlen(s), MAXH, 0) == (int)strlen(s) && r.method == s + 4,
        "leading CRLF: %d", r.ret);
  CHECK(REQ("\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n") > 0, "4 leading empty lines");
  CHECK(REQ("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n") == LHTTP_ERROR, "5 empty lines");
  CHECK(REQ("\nGET / HTTP/1.1\r\n\r\n") == LHTTP_ERROR, "leading bare LF");

  /* Values longer than a word, with a forbidden byte at every position (the word scan). */
  for (int pos = 0; pos < 40; pos++) {
    char buf[128];
    char v[41];
    memset(v, 'a', 40);
    v[40] = 0;
    const char bad[] = {0x00, 0x01, 0x0b, 0x1f, 0x7f, '\n'};
    for (size_t k = 0; k < sizeof bad; k++) {
      v[pos] = bad[k];
      int n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nX: ");
      memcpy(buf + n, v, 40);
      memcpy(buf + n + 40, "\r\n\r\n", 4);
      CHECK(reqn(buf, (size_t)n + 44) == LHTTP_ERROR, "byte %02x at %d of a value", bad[k], pos);
      n = snprintf(buf, sizeof buf, "GET /");
      memcpy(buf + n, v, 40);
      memcpy(buf + n + 40, " HTTP/1.1\r\n\r\n", 13);
      CHECK(reqn(buf, (size_t)n + 53) == LHTTP_ERROR, "byte %02x at %d of a target", bad[k], pos);
    }
    v[pos] = '\t';
    int n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nX: ");
    memcpy(buf + n, v, 40);
    memcpy(buf + n + 40, "\r\n\r\n", 4);
    CHECK(reqn(buf, (size_t)n + 44) > 0, "HTAB at %d of a value", pos);
    memcpy(buf + 5, v, 40);
    buf[5 + pos] = ' ';
    memcpy(buf + 45, " HTTP/1.1\r\n\r\n", 13);
    CHECK(reqn(buf, 58) == LHTTP_ERROR, "SP at %d of a target", pos);
  }
}

static void test_pipelining_and_limits(void) {
  struct req r;
  const char *s = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: y\r\n"
                  "Content-Length: 3\r\n\r\nabcGET /c HTTP/1.0\r\n\r\n";
  size_t len = strlen(s), off = 0;
  int n = parse_req(&r, s, len, MAXH, 0);
  CHECK(n == 28 && r.path_len == 2 && memcmp(r.path, "/a", 2) == 0, "first: %d", n);
  off += (size_t)n;
  n = parse_req(&r, s + off, len - off, MAXH, 0);
  CHECK(n > 0 && r.nh == 2 && memcmp(r.method, "POST", 4) == 0, "second: %d", n);
  off += (size_t)n + 3;
  n = parse_req(&r, s + off, len - off, MAXH, 0);
  CHECK(n > 0 && off + (size_t)n == len && r.minor == 0, "third: %d", n);

  /* The header array's capacity: exactly full is fine, one more is TOO_MANY_HEADERS, and
   * num_headers is left alone on anything but success. */
  s = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
  CHECK(parse_req(&r, s, strlen(s), 3, 0) > 0 && r.nh == 3, "3 headers fit in 3");
  CHECK(parse_req(&r, s, strlen(s), 2, 0) == LHTTP_TOO_MANY_HEADERS && r.nh == 2, "3 in 2");
  CHECK(parse_req(&r, s, 30, 2, 0) == LHTTP_TOO_MANY_HEADERS, "too many, still incomplete");
  CHECK(parse_req(&r, "GET / HTTP/1.1\r\n\r\n", 18, 0, 0) == 18, "no headers, capacity 0");
  CHECK(parse_req(&r, s, strlen(s), 0, 0) == LHTTP_TOO_MANY_HEADERS, "capacity 0");
  CHECK(parse_req(&r, s, 20, 3, 0) == LHTTP_INCOMPLETE && r.nh == 3, "nh kept on INCOMPLETE");

  /* last_len: a re-parse only looks for the end in the new bytes. */
  s = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  len = strlen(s);
  CHECK(parse_req(&r, s, len - 1, MAXH, 0) == LHTTP_INCOMPLETE, "last byte missing");
  CHECK(parse_req(&r, s, len, MAXH, len - 1) == (int)len, "last byte arrives");
  CHECK(parse_req(&r, s, len, MAXH, len) == (int)len, "last_len == len: full parse");
  CHECK(parse_req(&r, s, len, MAXH, len + 5) == (int)len, "last_len > len: full parse");
  CHECK(parse_req(&r, s, 0, MAXH, 0) == LHTTP_INCOMPLETE, "empty buffer");
}

static void test_incremental(void) {
  INCREMENTAL_REQ("GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n");
  INCREMENTAL_REQ("\r\nPOST /form HTTP/1.0\r\nContent-Length: 4\r\n\r\nbody");
  INCREMENTAL_REQ("GET /a HTTP/1.1\r\nA:\r\nB: \t x\t\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
  INCREMENTAL_REQ("GET / HTTP/1.1\r\nA: a very long header value that spans words\r\n\r\n");
  INCREMENTAL_REQ("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n");
  INCREMENTAL_REQ("GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n");
  INCREMENTAL_REQ("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n");
  INCREMENTAL_REQ("GET / HTTP/2.0\r\n\r\n");
  INCREMENTAL_REQ("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\n"
                  "H: 8\r\nI: 9\r\nJ: 10\r\nK: 11\r\nL: 12\r\nM: 13\r\nN: 14\r\nO: 15\r\n"
                  "P: 16\r\nQ: 17\r\n\r\n");
}

static void test_rejected_requests(void) {
  /* request line */
  CHECK(REQ("GET  / HTTP/1.1\r\n\r\n") == LHTTP_ERROR, "two SP after the method");
  CHECK(REQ("GET /  HTTP/1.1\r\n\r\n") == LHTTP_ERROR, "two SP after the target");
  CHECK(REQ("GET / HTTP/1.1 \r\n\r\n") == LHTTP_ERROR, "SP after the version");
  CHECK(REQ("GET\t/ HTTP/1.1\r\n\r\n") == LHTTP_ERROR, "HTAB as separator");
  CHECK(REQ(" GET / HTTP/1.1\r\n\r\n") == LHTTP_ERROR, "SP before the method");
  CHECK(REQ("G(T / HTTP/1.1\r\n\r\n") == LHTTP_ERROR, "non-token method");
  CHECK(REQ("G\x01T / HTTP/1.1\r\n\r\n") == LHTTP_ERROR, "control in method");
  CHECK(REQ("GET /\x01 HTTP/1.1\r\n\r\n") == LHTTP_ERROR, "control in target");
  CHECK(reqn("GET /\0 HTTP/1.1\r\n\r\n", 19) == LHTTP_ERROR, "NUL in target");
  CHECK(REQ("GET /\x7f HTTP/1.1\r\n\r\n") == LHTTP_ERROR, "DEL in target");
  CHECK(REQ("GET  HTTP/1.1\r\n\r\n") == LHTTP_ERROR, "empty target");
  CHECK(REQ("GET /\r\n\r\n") == LHTTP_ERROR, "HTTP/0.9 style");
  CHECK(REQ("GET / HTTP/2.0\r\n\r\n") == LHTTP_ERROR, "HTTP/2.0");
  CHECK(REQ("GET / HTTP/1.2\r\n\r\n") == LHTTP_ERROR, "HTTP/1.2");
  CHECK(REQ("GET / HTTP/1.10\r\n\r\n") == LHTTP_ERROR, "HTTP/1.10");
  CHECK(REQ("GET / HTTP/0.9\r\n\r\n") == LHTTP_ERROR, "HTTP/0.9");
  CHECK(REQ("GET / http/1.1\r\n\r\n") == LHTTP_ERROR, "lowercase http");
  CHECK(REQ("GET / HTTP/1.1\n\n") == LHTTP_ERROR, "LF-only request line");
  CHECK(REQ("GET / HTTP/1.1\r\r\n\r\n") == LHTTP_ERROR, "CR CR LF");
  CHECK(REQ("GET / HTTP/3") == LHTTP_ERROR, "bad version seen before the line ends");
  CHECK(REQ("GET / HTTX") == LHTTP_ERROR, "bad version prefix seen early");
  /* header lines */
  CHECK(REQ("GET / HTTP/1.1\r\nHost: a\n\r\n") == LHTTP_ERROR, "bare LF after a value");
  CHECK(REQ("GET / HTTP/1.1\r\nHost: a\r\n\n") == LHTTP_ERROR, "bare LF as the empty line");
  CHECK(REQ("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n") == LHTTP_ERROR, "bare CR in a value");
  CHECK(REQ("GET / HTTP/1.1\r\nX: a\r\r\n\r\n") == LHTTP_ERROR, "CR CR LF in a value");
  CHECK(REQ("GET / HTTP/1.1\r\nX: a\r\n\rX") == LHTTP_ERROR, "bare CR as the empty line");
  CHECK(REQ("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n") == LHTTP_ERROR, "obs-fold (SP)");
  CHECK(REQ("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n") == LHTTP_ERROR, "obs-fold (HTAB)");
  CHECK(REQ("GET / HTTP/1.1\r\n Host: a\r\n\r\n") == LHTTP_ERROR, "SP before the first field");
  CHECK(REQ("GET / HTTP/1.1\r\nHost : a\r\n\r\n") == LHTTP_ERROR, "SP before the colon");
  CHECK(REQ("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n") == LHTTP_ERROR, "HTAB before the colon");
  CHECK(REQ("GET / HTTP/1.1\r\n: a\r\n\r\n") == LHTTP_ERROR, "empty field name");
  CHECK(REQ("GET / HTTP/1.1\r\nX Y: a\r\n\r\n") == LHTTP_ERROR, "SP in a field name");
  CHECK(REQ("GET / HTTP/1.1\r\nX@Y: a\r\n\r\n") == LHTTP_ERROR, "@ in a field name");
  CHECK(REQ("GET / HTTP/1.1\r\nX\x80: a\r\n\r\n") == LHTTP_ERROR, "obs-text in a field name");
  CHECK(REQ("GET / HTTP/1.1\r\nHost\r\n\r\n") == LHTTP_ERROR, "line without a colon");
  CHECK(reqn("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 26) == LHTTP_ERROR, "NUL in a value");
  CHECK(REQ("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n") == LHTTP_ERROR, "DEL in a value");
  CHECK(REQ("GET / HTTP/1.1\r\nX: \x1b[0m\r\n\r\n") == LHTTP_ERROR, "ESC in a value");
  CHECK(REQ("GET / HTTP/1.1\r\nTransfer-Encoding:\x0b"
            "chunked\r\n\r\n") == LHTTP_ERROR,
        "VT before chunked");
  /* incomplete, not wrong */
  CHECK(REQ("GET") == LHTTP_INCOMPLETE, "method only");
  CHECK(REQ("GET /") == LHTTP_INCOMPLETE, "no version yet");
  CHECK(REQ("GET / HTTP/1") == LHTTP_INCOMPLETE, "version prefix");
  CHECK(REQ("GET / HTTP/1.1\r") == LHTTP_INCOMPLETE, "CR of the request line");
  CHECK(REQ("GET / HTTP/1.1\r\nHost: a") == LHTTP_INCOMPLETE, "in a value");
  CHECK(REQ("GET / HTTP/1.1\r\nHost: a\r\n\r") == LHTTP_INCOMPLETE, "last CR");
  CHECK(REQ("\r") == LHTTP_INCOMPLETE, "a CR");
}

/* --- responses -------------------------------------------------------------------------- */

struct resp {
  int ret, minor, status;
  const char *msg;
  size_t msg_len, nh;
  struct lhttp_header h[MAXH];
};

static int parse_resp(struct resp *r, const char *buf, size_t len, size_t last_len) {
  r->nh = MAXH;
  r->ret = lhttp_parse_response(buf, len, &r->minor, &r->status, &r->msg, &r->msg_len, r->h, &r->nh,
                                last_len);
  return r->ret;
}

static int respn(const char *s, size_t n) {
  struct resp r;
  char *b = dup_bytes(s, n);
  int ret = parse_resp(&r, b, n, 0);
  free(b);
  return ret;
}
#define RESP(s) respn(s, sizeof(s) - 1)

static void test_responses(void) {
  struct resp r;
  const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
  CHECK(parse_resp(&r, s, strlen(s), 0) == (int)strlen(s) - 5, "200: %d", r.ret);
  CHECK(r.minor == 1 && r.status == 200 && r.msg_len == 2 && memcmp(r.msg, "OK", 2) == 0 &&
            r.nh == 1 && header_is(&r.h[0], "Content-Length", "5"),
        "200 fields");
  s = "HTTP/1.0 404 Not Found\r\n\r\n";
  CHECK(parse_resp(&r, s, strlen(s), 0) > 0 && r.minor == 0 && r.status == 404 && r.msg_len == 9,
        "404");
  s = "HTTP/1.1 204\r\n\r\n";
  CHECK(parse_resp(&r, s, strlen(s), 0) > 0 && r.status == 204 && r.msg_len == 0,
        "no SP and no reason");
  s = "HTTP/1.1 500 \r\n\r\n";
  CHECK(parse_resp(&r, s, strlen(s), 0) > 0 && r.status == 500 && r.msg_len == 0, "empty reason");
  CHECK(RESP("HTTP/1.1 200 Fine \xe2\x9c\x93\tok\r\n\r\n") > 0, "obs-text and HTAB in reason");
  CHECK(RESP("HTTP/1.1 100 Continue\r\n\r\n") > 0, "100");
  CHECK(RESP("HTTP/1.1 599 X\r\n\r\n") > 0, "599");
  s = "HTTP/1.1 200 OK\r\nA: b\r\n\r\n";
  CHECK(parse_resp(&r, s, strlen(s) - 1, 0) == LHTTP_INCOMPLETE &&
            parse_resp(&r, s, strlen(s), strlen(s) - 1) == (int)strlen(s),
        "last_len");

  CHECK(RESP("HTTP/1.1 20 OK\r\n\r\n") == LHTTP_ERROR, "2 digits");
  CHECK(RESP("HTTP/1.1 2000 OK\r\n\r\n") == LHTTP_ERROR, "4 digits");
  CHECK(RESP("HTTP/1.1 099 X\r\n\r\n") == LHTTP_ERROR, "below 100");
  CHECK(RESP("HTTP/1.1 600 X\r\n\r\n") == LHTTP_ERROR, "above 599");
  CHECK(RESP("HTTP/1.1  200 OK\r\n\r\n") == LHTTP_ERROR, "two SP");
  CHECK(RESP("HTTP/1.1 abc OK\r\n\r\n") == LHTTP_ERROR, "letters");
  CHECK(RESP("HTTP/1.1 -20 OK\r\n\r\n") == LHTTP_ERROR, "sign");
  CHECK(RESP("HTTP/1.1 \r\n\r\n") == LHTTP_ERROR, "missing status");
  CHECK(RESP("HTTP/1.1\r\n\r\n") == LHTTP_ERROR, "missing SP and status");
  CHECK(RESP("HTTP/2 200 OK\r\n\r\n") == LHTTP_ERROR, "HTTP/2");
  CHECK(RESP("HTTP/1.1 200 O\x01K\r\n\r\n") == LHTTP_ERROR, "control in reason");
  CHECK(RESP("HTTP/1.1 200 OK\n\r\n") == LHTTP_ERROR, "bare LF");
  CHECK(RESP("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n") == LHTTP_ERROR, "obs-fold");
  CHECK(RESP("HTTP/1.1 200 OK\r\nX : a\r\n\r\n") == LHTTP_ERROR, "SP before colon");
  CHECK(RESP("\r\nHTTP/1.1 200 OK\r\n\r\n") == LHTTP_ERROR, "no empty lines before a status");
  CHECK(RESP("HTTP/1.1 20") == LHTTP_INCOMPLETE, "incomplete status");
  CHECK(RESP("HTTP/1.1 200") == LHTTP_INCOMPLETE, "incomplete after status");
  CHECK(RESP("HTTP/1.1 200 OK\r\nA: b\r\n") == LHTTP_INCOMPLETE, "incomplete headers");
  CHECK(RESP("HTTP/1") == LHTTP_INCOMPLETE, "incomplete version");

  /* Byte by byte: INCOMPLETE until the end, then the same. */
  s = "HTTP/1.1 301 Moved Permanently\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n";
  size_t len = strlen(s), last = 0;
  int bad = 0;
  for (size_t i = 0; i < len; i++) {
    char *b = dup_bytes(s, i);
    bad += parse_resp(&r, b, i, last) != LHTTP_INCOMPLETE;
    last = i;
    free(b);
  }
  CHECK(bad == 0 && parse_resp(&r, s, len, last) == (int)len && r.status == 301 && r.nh == 2,
        "byte by byte");
}

/* --- framing ---------------------------------------------------------------------------- */

/* Parses a request head and runs lhttp_request_framing on it. */
static int req_framing(const char *s, struct lhttp_framing *f) {
  struct req r;
  if (parse_req(&r, s, strlen(s), MAXH, 0) <= 0) {
    printf("  (request did not parse: %d)\n", r.ret);
    return 99;
  }
  return lhttp_request_framing(r.h, r.nh, r.minor, f);
}

static int resp_framing(const char *s, int head, struct lhttp_framing *f) {
  struct resp r;
  if (parse_resp(&r, s, strlen(s), 0) <= 0) {
    printf("  (response did not parse: %d)\n", r.ret);
    return 99;
  }
  return lhttp_response_framing(r.h, r.nh, r.minor, r.status, head, f);
}

#define H11 "POST / HTTP/1.1\r\nHost: h\r\n"

static void test_request_framing(void) {
  struct lhttp_framing f;
  CHECK(req_framing("GET / HTTP/1.1\r\nHost: h\r\n\r\n", &f) == 0 && f.body == LHTTP_BODY_NONE &&
            f.keep_alive == 1 && f.flags == 0 && f.host_len == 1 && *f.host == 'h',
        "plain GET");
  CHECK(req_framing(H11 "Content-Length: 5\r\n\r\n", &f) == 0 && f.body == LHTTP_BODY_LENGTH &&
            f.content_length == 5,
        "CL 5");
  CHECK(req_framing(H11 "content-LENGTH: 0\r\n\r\n", &f) == 0 && f.body == LHTTP_BODY_LENGTH &&
            f.content_length == 0,
        "CL 0, any case");
  CHECK(req_framing(H11 "Content-Length: 007\r\n\r\n", &f) == 0 && f.content_length == 7, "007");
  CHECK(req_framing(H11 "Content-Length: 9223372036854775807\r\n\r\n", &f) == 0 &&
            f.content_length == 9223372036854775807ull,
        "INT64_MAX");
  CHECK(req_framing(H11 "Content-Length: 5, 5\r\n\r\n", &f) == 0 && f.content_length == 5, "5, 5");
  CHECK(req_framing(H11 "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", &f) == 0 &&
            f.content_length == 5,
        "identical lines");
  CHECK(req_framing(H11 "Content-Length: +5\r\n\r\n", &f) == LHTTP_ERROR, "+5");
  CHECK(req_framing(H11 "Content-Length: -5\r\n\r\n", &f) == LHTTP_ERROR, "-5");
  CHECK(req_framing(H11 "Content-Length: 0x5\r\n\r\n", &f) == LHTTP_ERROR, "0x5");
  CHECK(req_framing(H11 "Content-Length: 5 5\r\n\r\n", &f) == LHTTP_ERROR, "5 5");
  CHECK(req_framing(H11 "Content-Length: 5.0\r\n\r\n", &f) == LHTTP_ERROR, "5.0");
  CHECK(req_framing(H11 "Content-Length:\r\n\r\n", &f) == LHTTP_ERROR, "empty");
  CHECK(req_framing(H11 "Content-Length: 5,\r\n\r\n", &f) == LHTTP_ERROR, "5,");
  CHECK(req_framing(H11 "Content-Length: 5, 6\r\n\r\n", &f) == LHTTP_ERROR, "5, 6");
  CHECK(req_framing(H11 "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", &f) == LHTTP_ERROR,
        "lines 5 and 6");
  CHECK(req_framing(H11 "Content-Length: 9223372036854775808\r\n\r\n", &f) == LHTTP_ERROR,
        "INT64_MAX + 1");
  CHECK(req_framing(H11 "Content-Length: 18446744073709551621\r\n\r\n", &f) == LHTTP_ERROR,
        "wraps to 5 in 64 bits");
  CHECK(req_framing(H11 "Content-Length: 99999999999999999999999\r\n\r\n", &f) == LHTTP_ERROR,
        "huge");

  CHECK(req_framing(H11 "Transfer-Encoding: chunked\r\n\r\n", &f) == 0 &&
            f.body == LHTTP_BODY_CHUNKED,
        "chunked");
  CHECK(req_framing(H11 "transfer-encoding: CHUNKED \r\n\r\n", &f) == 0 &&
            f.body == LHTTP_BODY_CHUNKED,
        "CHUNKED, any case, trailing OWS");
  CHECK(req_framing(H11 "Transfer-Encoding: \tchunked\r\n\r\n", &f) == 0 &&
            f.body == LHTTP_BODY_CHUNKED,
        "leading OWS");
  CHECK(req_framing(H11 "Transfer-Encoding: , chunked\r\n\r\n", &f) == 0 &&
            f.body == LHTTP_BODY_CHUNKED,
        "empty list element ignored");
  CHECK(req_framing(H11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", &f) ==
            LHTTP_ERROR,
        "TE + CL");
  CHECK(req_framing(H11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", &f) ==
            LHTTP_ERROR,
        "CL + TE");
  CHECK(req_framing(H11 "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n", &f) ==
            LHTTP_ERROR,
        "CL 0 + TE");
  CHECK(req_framing(H11 "Transfer-Encoding: identity\r\n\r\n", &f) == LHTTP_ERROR, "identity");
  CHECK(req_framing(H11 "Transfer-Encoding: chunked, identity\r\n\r\n", &f) == LHTTP_ERROR,
        "chunked, identity");
  CHECK(req_framing(H11 "Transfer-Encoding: gzip\r\n\r\n", &f) == LHTTP_ERROR, "gzip alone");
  CHECK(req_framing(H11 "Transfer-Encoding: gzip, chunked\r\n\r\n", &f) == LHTTP_UNSUPPORTED,
        "gzip, chunked: 501");
  CHECK(req_framing(H11 "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", &f) ==
            LHTTP_UNSUPPORTED,
        "gzip then chunked on two lines: 501");
  CHECK(req_framing(H11 "Transfer-Encoding: chunked, chunked\r\n\r\n", &f) == LHTTP_ERROR,
        "chunked twice");
  CHECK(req_framing(H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", &f) ==
            LHTTP_ERROR,
        "chunked twice on two lines");
  CHECK(req_framing(H11 "Transfer-Encoding: xchunked\r\n\r\n", &f) == LHTTP_ERROR, "xchunked");
  CHECK(req_framing(H11 "Transfer-Encoding: chunked;q=1\r\n\r\n", &f) == LHTTP_ERROR,
        "chunked with a parameter");
  CHECK(req_framing(H11 "Transfer-Encoding: \"chunked\"\r\n\r\n", &f) == LHTTP_ERROR, "quoted");
  CHECK(req_framing(H11 "Transfer-Encoding: chunk\r\n\r\n", &f) == LHTTP_ERROR, "chunk");
  CHECK(req_framing(H11 "Transfer-Encoding:\r\n\r\n", &f) == LHTTP_ERROR, "empty TE");
  CHECK(req_framing(H11 "Transfer-Encoding: ,\r\n\r\n", &f) == LHTTP_ERROR, "TE of commas");
  CHECK(req_framing("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", &f) == LHTTP_ERROR,
        "TE in HTTP/1.0");

  CHECK(req_framing("GET / HTTP/1.1\r\n\r\n", &f) == LHTTP_ERROR, "1.1 without Host");
  CHECK(req_framing("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", &f) == LHTTP_ERROR, "two Host");
  CHECK(req_framing("GET / HTTP/1.0\r\n\r\n", &f) == 0 && f.host == NULL && f.keep_alive == 0,
        "1.0 without Host, not kept alive");
  CHECK(req_framing("GET / HTTP/1.1\r\nHost:\r\n\r\n", &f) == 0 && f.host_len == 0, "empty Host");

  CHECK(req_framing("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &f) == 0 &&
            f.keep_alive == 1 && f.flags == LHTTP_CONN_KEEP_ALIVE,
        "1.0 keep-alive");
  CHECK(req_framing("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", &f) == 0 &&
            f.keep_alive == 0 && f.flags == LHTTP_CONN_CLOSE,
        "1.1 close");
  CHECK(req_framing("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
                    "Connection: CLOSE\r\n\r\n",
                    &f) == 0 &&
            f.keep_alive == 0 &&
            f.flags == (LHTTP_CONN_CLOSE | LHTTP_CONN_KEEP_ALIVE | LHTTP_CONN_UPGRADE),
        "mixed tokens");
  CHECK(req_framing("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n", &f) == 0 &&
            f.keep_alive == 1 && f.flags == 0,
        "closed is not close");
  CHECK(req_framing(H11 "Expect: 100-continue\r\nContent-Length: 9\r\n\r\n", &f) == 0 &&
            f.flags == LHTTP_EXPECT_CONTINUE,
        "100-continue");
  CHECK(req_framing(H11 "Expect: 100-Continue\r\n\r\n", &f) == 0 &&
            f.flags == LHTTP_EXPECT_CONTINUE,
        "100-Continue");
  CHECK(req_framing("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", &f) == 0 && f.flags == 0,
        "ignored in 1.0");
  CHECK(req_framing(H11 "Expect: teapot\r\n\r\n", &f) == 0 && f.flags == LHTTP_EXPECT_OTHER,
        "unknown expectation");
  CHECK(req_framing(H11 "Expect:\r\n\r\n", &f) == 0 && f.flags == 0, "empty Expect");
}

static void test_response_framing(void) {
  struct lhttp_framing f;
  CHECK(resp_framing("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", 0, &f) == 0 &&
            f.body == LHTTP_BODY_LENGTH && f.content_length == 12 && f.keep_alive == 1,
        "CL");
  CHECK(resp_framing("HTTP/1.1 200 OK\r\n\r\n", 0, &f) == 0 && f.body == LHTTP_BODY_UNTIL_CLOSE &&
            f.keep_alive == 0,
        "no framing: until close");
  CHECK(resp_framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, &f) == 0 &&
            f.body == LHTTP_BODY_CHUNKED && f.keep_alive == 1,
        "chunked");
  CHECK(resp_framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0, &f) == 0 &&
            f.body == LHTTP_BODY_CHUNKED,
        "gzip, chunked");
  CHECK(resp_framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 0, &f) == 0 &&
            f.body == LHTTP_BODY_UNTIL_CLOSE && f.keep_alive == 0,
        "gzip: until close");
  CHECK(resp_framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                     0, &f) == LHTTP_ERROR,
        "TE + CL");
  CHECK(resp_framing("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, &f) == LHTTP_ERROR,
        "TE in 1.0");
  CHECK(resp_framing("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 0, &f) ==
            LHTTP_ERROR,
        "CL 3 and 4");
  CHECK(resp_framing("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", 1, &f) == 0 &&
            f.body == LHTTP_BODY_NONE && f.keep_alive == 1,
        "HEAD");
  CHECK(resp_framing("HTTP/1.1 204 No Content\r\n\r\n", 0, &f) == 0 && f.body == LHTTP_BODY_NONE &&
            f.keep_alive == 1,
        "204");
  CHECK(resp_framing("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", 0, &f) == 0 &&
            f.body == LHTTP_BODY_NONE,
        "304");
  CHECK(resp_framing("HTTP/1.1 100 Continue\r\n\r\n", 0, &f) == 0 && f.body == LHTTP_BODY_NONE,
        "100");
  CHECK(resp_framing("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", 0, &f) ==
                0 &&
            f.keep_alive == 0 && f.flags == LHTTP_CONN_CLOSE,
        "close");
  CHECK(resp_framing("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", 0, &f) == 0 &&
            f.keep_alive == 0,
        "1.0 default");
  CHECK(resp_framing("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", 0,
                     &f) == 0 &&
            f.keep_alive == 1,
        "1.0 keep-alive");
}

/* --- chunked ---------------------------------------------------------------------------- */

struct dechunk {
  ssize_t ret; /* the last call's result */
  char body[8192];
  size_t body_len;
  char rest[256]; /* what followed the body */
  size_t rest_len;
};

/* Decodes s (n bytes) in pieces of `step` bytes (0: all at once), each in a buffer of its
 * own exact size; after completion the unread pieces count as what followed the body. */
static void dechunk(struct dechunk *out, const char *s, size_t n, size_t step) {
  struct lhttp_chunked_decoder d;
  memset(&d, 0, sizeof d);
  memset(out, 0, sizeof *out);
  out->ret = LHTTP_INCOMPLETE;
  if (step == 0) step = n ? n : 1;
  size_t off = 0;
  while (off < n) {
    size_t len = n - off < step ? n - off : step;
    char *b = dup_bytes(s + off, len);
    size_t sz = len;
    out->ret = lhttp_decode_chunked(&d, b, &sz);
    off += len;
    if (out->ret != LHTTP_ERROR && out->body_len + sz <= sizeof out->body) {
      memcpy(out->body + out->body_len, b, sz);
      out->body_len += sz;
    }
    if (out->ret >= 0) {
      size_t rest = (size_t)out->ret + (n - off);
      if (rest <= sizeof out->rest) {
        memcpy(out->rest, b + sz, (size_t)out->ret);
        memcpy(out->rest + out->ret, s + off, n - off);
        out->rest_len = rest;
      }
      free(b);
      return;
    }
    free(b);
    if (out->ret == LHTTP_ERROR) return;
  }
}

/* Checks s decodes to body followed by rest, whole and split in pieces of every size. */
static void chunked_ok(const char *s, size_t n, const char *body, const char *rest, int line) {
  struct dechunk r;
  for (size_t step = 0; step <= n; step++) {
    dechunk(&r, s, n, step);
    int ok = r.ret >= 0 && r.body_len == strlen(body) && memcmp(r.body, body, r.body_len) == 0 &&
             r.rest_len == strlen(rest) && memcmp(r.rest, rest, r.rest_len) == 0;
    CHECK(ok, "line %d, pieces of %zu: ret %zd, body %zu bytes, rest %zu bytes", line, step, r.ret,
          r.body_len, r.rest_len);
    if (!ok) return;
  }
}
#define CHUNKED_OK(s, body, rest) chunked_ok(s, sizeof(s) - 1, body, rest, __LINE__)

/* Checks s is refused whole and in pieces of every size (or, with `incomplete`, that it is
 * a valid prefix that needs more). */
static void chunked_result(const char *s, size_t n, ssize_t want, int line) {
  struct dechunk r;
  for (size_t step = 0; step <= n; step++) {
    dechunk(&r, s, n, step);
    CHECK(r.ret == want, "line %d, pieces of %zu: got %zd, want %zd", line, step, r.ret, want);
    if (r.ret != want) return;
  }
}
#define CHUNKED_BAD(s) chunked_result(s, sizeof(s) - 1, LHTTP_ERROR, __LINE__)
#define CHUNKED_MORE(s) chunked_result(s, sizeof(s) - 1, LHTTP_INCOMPLETE, __LINE__)

static void test_chunked(void) {
  CHUNKED_OK("5\r\nhello\r\n0\r\n\r\n", "hello", "");
  CHUNKED_OK("0\r\n\r\n", "", "");
  CHUNKED_OK("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n", "hello world",
             "GET / HTTP/1.1\r\n\r\n");
  CHUNKED_OK("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", "0123456789abcdefghij", "");
  CHUNKED_OK("0000000000000005\r\nhello\r\n0\r\n\r\n", "hello", "");
  CHUNKED_OK("5;name=value\r\nhello\r\n0;last\r\n\r\n", "hello", "");
  CHUNKED_OK("5 ;a=\"q s\"; b\r\nhello\r\n0\t; x\r\n\r\n", "hello", "");
  CHUNKED_OK("3\r\n\r\n\n\r\n0\r\n\r\n", "\r\n\n", ""); /* data is data */
  CHUNKED_OK("2\r\nok\r\n0\r\nExpires: never\r\nX-Sum:\t1 2\r\n\r\nnext", "ok", "next");

  CHUNKED_BAD("x\r\n");
  CHUNKED_BAD("\r\n");
  CHUNKED_BAD("-5\r\nhello\r\n");
  CHUNKED_BAD("+5\r\nhello\r\n");
  CHUNKED_BAD("0x5\r\nhello\r\n");
  CHUNKED_BAD(" 5\r\nhello\r\n");
  CHUNKED_BAD("5 \r\nhello\r\n");
  CHUNKED_BAD("5 x\r\nhello\r\n");
  CHUNKED_BAD("5\nhello\r\n");
  CHUNKED_BAD("5\rhello\r\n");
  CHUNKED_BAD("5\r\nhelloX\r\n");
  CHUNKED_BAD("5\r\nhello\n0\r\n\r\n");
  CHUNKED_BAD("5\r\nhello\r\r\n");
  CHUNKED_BAD("5\r\nhello\r\n0\r\n\n");
  CHUNKED_BAD("5\r\nhello\r\n0\n\r\n");
  CHUNKED_BAD("00000000000000005\r\nhello\r\n"); /* 17 digits */
  CHUNKED_BAD("8000000000000000\r\n");           /* 2^63 */
  CHUNKED_BAD("ffffffffffffffff\r\n");
  CHUNKED_BAD("10000000000000005\r\n"); /* wraps to 5 in 64 bits */
  CHUNKED_MORE("7fffffffffffffff\r\nabc");
  CHUNKED_BAD("5;a\x01\r\nhello\r\n");
  CHUNKED_BAD("5;a\x7f\r\nhello\r\n");
  CHUNKED_BAD("5;a\nhello\r\n");
  CHUNKED_BAD("0\r\nX: a\r\n b\r\n\r\n"); /* obs-fold in trailers */
  CHUNKED_BAD("0\r\n X: a\r\n\r\n");
  CHUNKED_BAD("0\r\nX\r\n\r\n");
  CHUNKED_BAD("0\r\n: a\r\n\r\n");
  CHUNKED_BAD("0\r\nX : a\r\n\r\n");
  CHUNKED_BAD("0\r\nX: a\rb\r\n\r\n");
  CHUNKED_BAD("0\r\nX: a\x01\r\n\r\n");
  CHUNKED_MORE("5\r\nhel");
  CHUNKED_MORE("5\r\nhello\r\n0\r\n");
  CHUNKED_MORE("5\r\nhello\r\n0\r\nX: y\r\n");
  CHUNKED_MORE("");

  /* Extensions: LHTTP_MAX_CHUNK_EXT bytes pass, one more does not. */
  static char big[LHTTP_MAX_TRAILERS + 64];
  int n = snprintf(big, sizeof big, "1;");
  memset(big + n, 'e', LHTTP_MAX_CHUNK_EXT - 1);
  n += LHTTP_MAX_CHUNK_EXT - 1;
  n += snprintf(big + n, sizeof big - (size_t)n, "\r\na\r\n0\r\n\r\n");
  struct dechunk r;
  dechunk(&r, big, (size_t)n, 0);
  CHECK(r.ret == 0 && r.body_len == 1, "longest extension: %zd", r.ret);
  n = snprintf(big, sizeof big, "1;");
  memset(big + n, 'e', LHTTP_MAX_CHUNK_EXT);
  n += LHTTP_MAX_CHUNK_EXT;
  n += snprintf(big + n, sizeof big - (size_t)n, "\r\na\r\n0\r\n\r\n");
  dechunk(&r, big, (size_t)n, 0);
  CHECK(r.ret == LHTTP_ERROR, "extension one byte too long: %zd", r.ret);

  /* Trailers: bounded in total. */
  n = snprintf(big, sizeof big, "0\r\n");
  while ((size_t)n < LHTTP_MAX_TRAILERS + 16)
    n += snprintf(big + n, sizeof big - (size_t)n, "X-Pad: 0123456789\r\n");
  n += snprintf(big + n, sizeof big - (size_t)n, "\r\n");
  dechunk(&r, big, (size_t)n, 0);
  CHECK(r.ret == LHTTP_ERROR, "trailers too long: %zd", r.ret);
  dechunk(&r, big, (size_t)n, 100);
  CHECK(r.ret == LHTTP_ERROR, "trailers too long, in pieces: %zd", r.ret);

  /* A flood of extensions on 1-byte chunks: refused once framing dwarfs the data. */
  {
    struct lhttp_chunked_decoder d;
    memset(&d, 0, sizeof d);
    ssize_t ret = LHTTP_INCOMPLETE;
    int calls = 0;
    char chunk[1100];
    int len = snprintf(chunk, sizeof chunk, "1;");
    memset(chunk + len, 'e', 1000);
    len += 1000;
    len += snprintf(chunk + len, sizeof chunk - (size_t)len, "\r\na\r\n");
    while (ret == LHTTP_INCOMPLETE && calls < 1000) {
      char *b = dup_bytes(chunk, (size_t)len);
      size_t sz = (size_t)len;
      ret = lhttp_decode_chunked(&d, b, &sz);
      free(b);
      calls++;
    }
    CHECK(ret == LHTTP_ERROR && calls < 100, "extension flood: %zd after %d chunks", ret, calls);

    /* Plain 1-byte chunks are slow but legitimate. */
    memset(&d, 0, sizeof d);
    ret = LHTTP_INCOMPLETE;
    for (calls = 0; ret == LHTTP_INCOMPLETE && calls < 100000; calls++) {
      char one[] = "1\r\na\r\n";
      size_t sz = 6;
      ret = lhttp_decode_chunked(&d, one, &sz);
    }
    CHECK(ret == LHTTP_INCOMPLETE, "100000 1-byte chunks: %zd", ret);
  }

  /* After the end, everything is what follows. */
  {
    struct lhttp_chunked_decoder d;
    memset(&d, 0, sizeof d);
    char b1[] = "0\r\n\r\n";
    size_t sz = 5;
    ssize_t ret = lhttp_decode_chunked(&d, b1, &sz);
    char b2[] = "abc";
    size_t sz2 = 3;
    ssize_t ret2 = lhttp_decode_chunked(&d, b2, &sz2);
    CHECK(ret == 0 && sz == 0 && ret2 == 3 && sz2 == 0, "decoder done: %zd %zd", ret, ret2);
  }
}

int main(void) {
  test_valid_requests();
  test_pipelining_and_limits();
  test_incremental();
  test_rejected_requests();
  test_responses();
  test_request_framing();
  test_response_framing();
  test_chunked();
  printf("http_parser_test: %d passed, %d failed\n", passed, failed);
  return failed != 0;
}
