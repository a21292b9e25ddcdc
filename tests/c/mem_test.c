/*
 * mem_test.c: unit tests of runtime/core/mem.c (the memcmp, memcpy and memmove that replace
 * musl's in the static build), built by `make -C runtime tests` and run by tests/mem_test.lua.
 * mem.c is compiled in here under other names, so the sanitizer build (glibc) tests it too.
 * Every size up to 300 bytes and a few large ones, every source and destination alignment
 * mod 16, and for memmove every overlap, against byte loops, with guard bytes around the
 * destination that must stay untouched.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LUAIO_MEM_TEST
#define memcmp luaio_memcmp
#define memcpy luaio_memcpy
#define memmove luaio_memmove
#include "../../runtime/core/mem.c"
#undef memcmp
#undef memcpy
#undef memmove

static int passed, failed;

static void check(int ok, const char *what, size_t n, size_t a, size_t b) {
  if (ok) {
    passed++;
  } else if (failed++ < 20) {
    printf("FAIL %s n=%zu offsets %zu %zu\n", what, n, a, b);
  }
}

#define MAXN 70000
#define SLACK 64 /* guard bytes past the copy that must stay as they were */
static unsigned char src[MAXN + SLACK], dst[MAXN + SLACK], want[2 * MAXN + SLACK],
    buf[2 * MAXN + SLACK];

static void fill(unsigned char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed * 131 + i * 7 + (i >> 8));
}

static void test_memcpy(size_t n, size_t sa, size_t da) {
  size_t len = n + 32; /* offsets are below 16: the copy and guard bytes on both sides */
  fill(src, len, (unsigned)n);
  fill(dst, len, 99);
  for (size_t i = 0; i < len; i++) want[i] = dst[i];
  for (size_t i = 0; i < n; i++) want[da + i] = src[sa + i];
  void *r = luaio_memcpy(dst + da, src + sa, n);
  int same = r == dst + da;
  for (size_t i = 0; i < len && same; i++) same = dst[i] == want[i];
  check(same, "memcpy", n, sa, da);
}

/* Moves n bytes from buf+from to buf+to, which may overlap either way. */
static void test_memmove(size_t n, size_t from, size_t to) {
  size_t len = (from > to ? from : to) + n + 32;
  fill(buf, len, (unsigned)(n + from));
  for (size_t i = 0; i < len; i++) want[i] = buf[i];
  for (size_t i = 0; i < n; i++) want[to + i] = buf[from + i];
  void *r = luaio_memmove(buf + to, buf + from, n);
  int same = r == buf + to;
  for (size_t i = 0; i < len && same; i++) same = buf[i] == want[i];
  check(same, "memmove", n, from, to);
}

static int sign(int x) { return (x > 0) - (x < 0); }

static void test_memcmp(size_t n, size_t at) {
  fill(src, n + 16, 5);
  for (size_t i = 0; i < n + 16; i++) dst[i] = src[i];
  check(luaio_memcmp(src, dst, n) == 0, "memcmp equal", n, at, 0);
  if (at >= n) return;
  dst[at] = (unsigned char)(src[at] + 1); /* wraps at 255: the sign follows the bytes */
  int expect = src[at] < dst[at] ? -1 : 1;
  check(sign(luaio_memcmp(src, dst, n)) == expect, "memcmp order", n, at, 0);
  check(sign(luaio_memcmp(dst, src, n)) == -expect, "memcmp order reversed", n, at, 0);
}

int main(void) {
  static const size_t large[] = {1023, 1024, 1025, 4096, 65536 + 7, MAXN};
  for (size_t n = 0; n <= 300; n++)
    for (size_t sa = 0; sa < 16; sa++)
      for (size_t da = 0; da < 16; da++) test_memcpy(n, sa, da);
  for (size_t k = 0; k < sizeof large / sizeof *large; k++)
    for (size_t a = 0; a < 16; a += 5) test_memcpy(large[k], a, 15 - a);
  /* every distance between source and destination that overlaps, and a little more, from
   * every alignment of the source */
  for (size_t n = 0; n <= 100; n++)
    for (size_t from = n + 16; from < n + 32; from++)
      for (size_t to = from - n - 16; to <= from + n + 16; to++) test_memmove(n, from, to);
  for (size_t k = 0; k < sizeof large / sizeof *large; k++) {
    test_memmove(large[k], 0, 3);
    test_memmove(large[k], 3, 0);
    test_memmove(large[k], 0, large[k]);
    test_memmove(large[k], 17, 1);
  }
  for (size_t n = 0; n <= 70; n++)
    for (size_t at = 0; at <= n; at++) test_memcmp(n, at);
  printf("mem_test: %d passed, %d failed\n", passed, failed);
  return failed != 0;
}
