/*
 * redis_resp_test.c: unit tests of the RESP parser (runtime/proto/redis/redis_resp.c), built
 * by `make -C runtime tests` into out/tests/ (out/asan/tests/ under the sanitizers) and run by
 * tests/redis_resp_test.lua. Each case parses a byte string into a compact description of
 * its tokens and compares it:
 *
 *   S'text'  string    E'text' error    I42 integer     D3.5 double    T/F boolean
 *   B'digits' big number   N null   A2 M1 U3 P2 array, map (pairs), set, push headers
 *   @ attribute token (skipped)   ^n closes n aggregates   k/v map key/value   | a whole reply
 *
 * Then every case is parsed again fed a byte at a time, which must give the same result.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_resp.h"

static int passed, failed;

/* Describes the tokens of buf into out; stops at INCOMPLETE ("..." and the need) or ERROR
 * ("!"). bytewise: feed one more byte after each INCOMPLETE. */
static void describe(const char *buf, size_t len, int bytewise, char *out, size_t cap) {
  resp_parser p;
  resp_init(&p);
  size_t off = 0, avail = bytewise ? 0 : len, o = 0;
  out[0] = '\0';
#define PUT(...) (o += (size_t)snprintf(out + o, o < cap ? cap - o : 0, __VA_ARGS__))
  for (;;) {
    resp_token t;
    size_t need;
    char *copy = malloc(avail - off + 1);
    memcpy(copy, buf + off, avail - off);
    long n = resp_next(&p, copy, avail - off, &t, &need);
    if (n == RESP_INCOMPLETE) {
      free(copy);
      if (bytewise && avail < len) {
        avail++;
        continue;
      }
      if (off < len) PUT("%s...%zu", o > 0 ? " " : "", need);
      break;
    }
    if (n == RESP_ERROR) {
      free(copy);
      PUT("!");
      break;
    }
    if (o > 0) PUT(" ");
    if (t.skip) PUT("@");
    if (t.role == RESP_KEY) PUT("k");
    if (t.role == RESP_VALUE) PUT("v");
    switch (t.type) {
      case RESP_STRING: PUT("S'%.*s'", (int)t.len, t.str); break;
      case RESP_ERR: PUT("E'%.*s'", (int)t.len, t.str); break;
      case RESP_INTEGER: PUT("I%lld", (long long)t.i); break;
      case RESP_DOUBLE: PUT("D%g", t.d); break;
      case RESP_BOOLEAN: PUT(t.i ? "T" : "F"); break;
      case RESP_BIGNUM: PUT("B'%.*s'", (int)t.len, t.str); break;
      case RESP_NULL: PUT("N"); break;
      case RESP_ARRAY: PUT("A%lld", (long long)t.i); break;
      case RESP_MAP: PUT("M%lld", (long long)t.i); break;
      case RESP_SET: PUT("U%lld", (long long)t.i); break;
      case RESP_PUSH: PUT("P%lld", (long long)t.i); break;
      case RESP_ATTRIBUTE: PUT("T%lld", (long long)t.i); break;
    }
    if (t.closes) PUT("^%d", t.closes);
    if (!t.skip && p.depth == 0 &&
        (t.closes > 0 || !(t.type >= RESP_ARRAY && t.type <= RESP_PUSH && t.i > 0)))
      PUT("|");
    free(copy);
    off += (size_t)n;
    if (avail < off) avail = off;
  }
#undef PUT
}

static void check(const char *name, const char *in, size_t len, const char *want) {
  char got[2048], got2[2048];
  describe(in, len, 0, got, sizeof got);
  describe(in, len, 1, got2, sizeof got2);
  int ok = strcmp(got, want) == 0 && strcmp(got2, want) == 0;
  if (ok) {
    passed++;
  } else {
    failed++;
    printf("FAIL %s\n  want: %s\n  got:  %s\n  byte by byte: %s\n", name, want, got, got2);
  }
}

#define CHECK(name, in, want) check(name, in, sizeof(in) - 1, want)

static void check_header(const char *name, const char *in, long want, long long want_n) {
  int64_t n = 0;
  long h = resp_bulk_header(in, strlen(in), &n);
  if (h == want && (h <= 0 || n == want_n)) {
    passed++;
  } else {
    failed++;
    printf("FAIL %s: got %ld (n %lld), want %ld (n %lld)\n", name, h, (long long)n, want, want_n);
  }
}

int main(void) {
  /* RESP2 */
  CHECK("simple string", "+OK\r\n", "S'OK'|");
  CHECK("empty simple string", "+\r\n", "S''|");
  CHECK("error", "-ERR no\r\n", "E'ERR no'|");
  CHECK("integer", ":42\r\n", "I42|");
  CHECK("negative integer", ":-7\r\n", "I-7|");
  CHECK("plus sign", ":+7\r\n", "I7|");
  CHECK("int64 max", ":9223372036854775807\r\n", "I9223372036854775807|");
  CHECK("int64 min", ":-9223372036854775808\r\n", "I-9223372036854775808|");
  CHECK("int64 overflow", ":9223372036854775808\r\n", "!");
  CHECK("20 digits", ":12345678901234567890\r\n", "!");
  CHECK("bulk", "$5\r\nhello\r\n", "S'hello'|");
  CHECK("empty bulk", "$0\r\n\r\n", "S''|");
  CHECK("bulk with CRLF inside", "$4\r\na\r\nb\r\n", "S'a\r\nb'|");
  CHECK("null bulk", "$-1\r\n", "N|");
  CHECK("null array", "*-1\r\n", "N|");
  CHECK("empty array", "*0\r\n", "A0|");
  CHECK("array", "*2\r\n:1\r\n$1\r\na\r\n", "A2 I1 S'a'^1|");
  CHECK("nested", "*2\r\n*1\r\n:1\r\n*0\r\n", "A2 A1 I1^1 A0^1|");
  CHECK("deep close", "*1\r\n*1\r\n*1\r\n:1\r\n", "A1 A1 A1 I1^3|");
  CHECK("two replies", "+a\r\n+b\r\n", "S'a'| S'b'|");
  CHECK("null inside", "*2\r\n$-1\r\n*-1\r\n", "A2 N N^1|");
  /* RESP3 */
  CHECK("map", "%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n", "M2 kS'a' vI1 kS'b' vI2^1|");
  CHECK("map with an aggregate key", "%1\r\n*1\r\n:1\r\n+v\r\n", "M1 kA1 I1^1 vS'v'^1|");
  CHECK("set", "~2\r\n+a\r\n+b\r\n", "U2 S'a' S'b'^1|");
  CHECK("push", ">2\r\n+invalidate\r\n*1\r\n+k\r\n", "P2 S'invalidate' A1 S'k'^2|");
  CHECK("double", ",3.5\r\n", "D3.5|");
  CHECK("double exp", ",-1.5e-3\r\n", "D-0.0015|");
  CHECK("inf", ",inf\r\n", "Dinf|");
  CHECK("-inf", ",-inf\r\n", "D-inf|");
  CHECK("double junk", ",1.2.3\r\n", "!");
  CHECK("double hex", ",0x10\r\n", "!");
  CHECK("double empty", ",\r\n", "!");
  CHECK("booleans", "#t\r\n#f\r\n", "T| F|");
  CHECK("bad boolean", "#x\r\n", "!");
  CHECK("null", "_\r\n", "N|");
  CHECK("bad null", "_x\r\n", "!");
  CHECK("big number", "(-123456789012345678901234567890\r\n",
        "B'-123456789012345678901234567890'|");
  CHECK("bad big number", "(12a\r\n", "!");
  CHECK("verbatim", "=9\r\ntxt:hello\r\n", "S'hello'|");
  CHECK("verbatim too short", "=3\r\ntxt\r\n", "!");
  CHECK("verbatim no colon", "=5\r\ntxt_a\r\n", "!");
  CHECK("blob error", "!5\r\nERR x\r\n", "E'ERR x'|");
  CHECK("null blob error", "!-1\r\n", "!");
  CHECK("attribute before a reply", "|1\r\n+ttl\r\n:3600\r\n+value\r\n",
        "@T1 @S'ttl' @I3600 S'value'|");
  CHECK("attribute inside an array", "*2\r\n|1\r\n+a\r\n*1\r\n:1\r\n:5\r\n:6\r\n",
        "A2 @T1 @S'a' @A1 @I1 I5 I6^1|");
  CHECK("empty attribute", "|0\r\n:1\r\n", "@T0 I1|");
  CHECK("attribute inside a map value", "%1\r\n+k\r\n|1\r\n+x\r\n+y\r\n+v\r\n",
        "M1 kS'k' @T1 @S'x' @S'y' vS'v'^1|");
  /* strictness */
  CHECK("unknown type", "?x\r\n", "!");
  CHECK("bare LF", "+OK\n", "!");
  CHECK("bare CR", "+O\rK\r\n", "!");
  CHECK("LF before CR", "+O\nK\r\n", "!");
  CHECK("bulk not followed by CRLF", "$2\r\nabc\r\n", "!");
  CHECK("length with junk", "$1x\r\n", "!");
  CHECK("negative length", "$-2\r\n", "!");
  CHECK("signed length", "$+1\r\na\r\n", "!");
  CHECK("empty length", "$\r\n", "!");
  CHECK("negative map", "%-1\r\n", "!");
  CHECK("negative push", ">-1\r\n", "!");
  CHECK("streamed string", "$?\r\n", "!");
  CHECK("streamed array", "*?\r\n", "!");
  CHECK("bulk too long", "$2147483649\r\n", "!");
  /* incomplete: what it waits for */
  CHECK("nothing", "", "");
  CHECK("half a line", "+O", "...0");
  CHECK("CR alone", "+OK\r", "...0");
  CHECK("bulk header", "$5\r\n", "...11");
  CHECK("half a bulk", "$5\r\nhel", "...11");
  CHECK("bulk without its CRLF", "$5\r\nhello", "...11");
  CHECK("half an array", "*2\r\n:1\r\n", "A2 I1");
  CHECK("half an array, half an element", "*2\r\n:1\r\n:", "A2 I1 ...0");
  CHECK("half a length", "$12", "...0");
  /* depth */
  {
    char deep[RESP_MAX_DEPTH * 4 + 8];
    size_t n = 0;
    for (int i = 0; i < RESP_MAX_DEPTH; i++) n += (size_t)sprintf(deep + n, "*1\r\n");
    n += (size_t)sprintf(deep + n, ":1\r\n");
    char got[4096];
    describe(deep, n, 0, got, sizeof got);
    if (strstr(got, "!") == NULL && strstr(got, "^64|") != NULL)
      passed++;
    else {
      failed++;
      printf("FAIL depth %d: %s\n", RESP_MAX_DEPTH, got);
    }
    n = 0;
    for (int i = 0; i <= RESP_MAX_DEPTH; i++) n += (size_t)sprintf(deep + n, "*1\r\n");
    describe(deep, n, 0, got, sizeof got);
    if (got[strlen(got) - 1] == '!')
      passed++;
    else {
      failed++;
      printf("FAIL depth %d: %s\n", RESP_MAX_DEPTH + 1, got);
    }
  }
  /* the streaming caller's header */
  check_header("header", "$5\r\nhello\r\n", 4, 5);
  check_header("null header", "$-1\r\n", 5, -1);
  check_header("partial header", "$12", RESP_INCOMPLETE, 0);
  check_header("not a bulk", "+OK\r\n", RESP_ERROR, 0);
  check_header("bad header", "$x\r\n", RESP_ERROR, 0);
  printf("redis_resp_test: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
