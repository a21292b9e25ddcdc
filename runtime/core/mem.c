/*
 * mem.c: memcmp, memcpy and memmove for the static musl build.
 *
 * musl's versions are small and correct, and slow where a server spends its time:
 * - memcmp compares one byte per step. LuaJIT interns every string it makes, and when a new
 *   string has the hash and length of one alive (a JSON text encoded again, a body read
 *   again), it memcmps them whole: with musl's loop that was 40% of cjson.encode on a 1 MB
 *   document.
 * - memcpy is `rep movsq` for every size, whose start-up cost (tens of cycles, more in a VM)
 *   dwarfs the copy of a header name or a 13-byte body: an HTTP request makes about ten such
 *   copies, and they were 5% of the hello-world server's CPU (perf, bench/http.sh). Here small
 *   copies are two overlapping loads and stores, middling ones a 16-byte loop, and only
 *   large ones `rep movsb` (fast on CPUs with ERMS, which is every x86-64 of the last decade).
 * - memmove must come with memcpy: musl's jumps into its memcpy's object, which would then be
 *   linked twice.
 * Defining them here keeps libc.a's out of the static link. The sanitizer build (glibc, which
 * has fast ones, and ASan's interceptors) does not get them. tests/c/mem_test.c checks them
 * against byte loops for every size, alignment and overlap up to a few hundred bytes.
 */
#include <stdint.h>
#include <string.h>

#if !defined(__GLIBC__) || defined(LUAIO_MEM_TEST)
typedef unsigned char v16 __attribute__((vector_size(16), aligned(1), may_alias));

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

/* Up to 32 bytes: everything is loaded before anything is stored, so the source and the
 * destination may overlap (memmove uses it too). */
static inline void copy_small(unsigned char *d, const unsigned char *s, size_t n) {
  if (n >= 16) {
    v16 a = *(const v16 *)s, b = *(const v16 *)(s + n - 16);
    *(v16 *)d = a;
    *(v16 *)(d + n - 16) = b;
  } else if (n >= 8) {
    uint64_t a, b;
    __builtin_memcpy(&a, s, 8);
    __builtin_memcpy(&b, s + n - 8, 8);
    __builtin_memcpy(d, &a, 8);
    __builtin_memcpy(d + n - 8, &b, 8);
  } else if (n >= 4) {
    uint32_t a, b;
    __builtin_memcpy(&a, s, 4);
    __builtin_memcpy(&b, s + n - 4, 4);
    __builtin_memcpy(d, &a, 4);
    __builtin_memcpy(d + n - 4, &b, 4);
  } else if (n > 0) {
    unsigned char a = s[0], b = s[n / 2], c = s[n - 1];
    d[0] = a;
    d[n / 2] = b;
    d[n - 1] = c;
  }
}

/* The loops below must not be turned back into calls to memcpy by the compiler. */
#define NO_LIBCALL __attribute__((optimize("no-tree-loop-distribute-patterns")))

NO_LIBCALL void *memcpy(void *restrict dst, const void *restrict src, size_t n) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  if (n <= 32) {
    copy_small(d, s, n);
    return dst;
  }
#if defined(__x86_64__)
  if (n >= 1024) {
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    return dst;
  }
#endif
  v16 last = *(const v16 *)(s + n - 16);
  for (size_t i = 0; i < n - 16; i += 16) *(v16 *)(d + i) = *(const v16 *)(s + i);
  *(v16 *)(d + n - 16) = last;
  return dst;
}

NO_LIBCALL void *memmove(void *dst, const void *src, size_t n) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  if (n <= 32) {
    copy_small(d, s, n);
    return dst;
  }
  if ((uintptr_t)d + n <= (uintptr_t)s || (uintptr_t)s + n <= (uintptr_t)d)
    return memcpy(dst, src, n);
  /* Overlapping: 16 bytes at a time, each block loaded before it is stored, walking away
   * from the bytes not yet read (forward when the destination is below the source). */
  size_t i = 0;
  if (d < s) {
    for (; i + 16 <= n; i += 16) *(v16 *)(d + i) = *(const v16 *)(s + i);
    for (; i < n; i++) d[i] = s[i];
  } else {
    for (; i + 16 <= n; i += 16) *(v16 *)(d + n - i - 16) = *(const v16 *)(s + n - i - 16);
    for (; i < n; i++) d[n - i - 1] = s[n - i - 1];
  }
  return dst;
}
#endif
