/*
 * memcmp.c: memcmp for the static musl build, 8 bytes at a time.
 *
 * musl's memcmp compares one byte per step. LuaJIT interns every string it makes, and when a
 * new string has the hash and length of one alive (a JSON text encoded again, a body read
 * again), it memcmps them whole: with musl's loop that was 40% of cjson.encode on a 1 MB
 * document. Defining memcmp here keeps libc.a's out of the static link. The sanitizer build
 * (glibc, which has a fast one, and ASan's interceptor) does not get it.
 */
#include <stdint.h>
#include <string.h>

#ifndef __GLIBC__
int memcmp(const void *a, const void *b, size_t n) {
  const unsigned char *p = a, *q = b;
  for (; n >= 8; p += 8, q += 8, n -= 8) {
    uint64_t x, y;
    __builtin_memcpy(&x, p, 8);
    __builtin_memcpy(&y, q, 8);
    if (x != y) { /* the first differing byte decides: compare as big-endian numbers */
      x = __builtin_bswap64(x);
      y = __builtin_bswap64(y);
      return x < y ? -1 : 1;
    }
  }
  for (; n > 0; n--, p++, q++)
    if (*p != *q) return *p - *q;
  return 0;
}
#endif
