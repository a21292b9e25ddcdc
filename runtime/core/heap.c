/*
 * heap.c: luaio's own heap, for OpenSSL (tls.c) and the connection objects (conn.c).
 *
 * It is LuaJIT's allocator (dlmalloc), taken from a Lua state made for nothing else, behind
 * a lock: OpenSSL also runs on libuv's thread pool (crypto's hashing). musl's malloc is the
 * wrong one for both users:
 * - With SSL_MODE_RELEASE_BUFFERS a keep-alive connection frees its 17 KB record buffers
 *   after every request and allocates them again for the next, and musl gave each back to
 *   the kernel at once (three madvise calls per request, page faults after them: a third of
 *   the HTTPS hello server's CPU); a full handshake makes hundreds of small allocations, and
 *   musl's malloc, free and their munmap/mmap were 15% of it. dlmalloc keeps freed chunks in
 *   its bins and trims only past 2 MB free.
 * - musl rounds a request up to its size classes (a 392-byte connection takes a 400-byte
 *   slot, 420 bytes with its group's overhead; the next class down is 320), where dlmalloc
 *   adds an 8-byte header and rounds to 8: a 360-byte connection costs 368, not 420.
 * The sanitizer builds keep the system's allocator, so that ASan sees every block's life:
 * gcc says so with __SANITIZE_ADDRESS__, clang (the fuzz build) with __has_feature.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "luaio.h"

#if defined(__SANITIZE_ADDRESS__)
#define ASAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN_BUILD 1
#endif
#endif

#if defined(ASAN_BUILD)
void *luaio_heap_realloc(void *p, size_t n) {
  if (n == 0) {
    free(p);
    return NULL;
  }
  return realloc(p, n);
}
#else
static lua_Alloc heap_alloc;
static void *heap;
static atomic_flag heap_lock = ATOMIC_FLAG_INIT;

static void heap_enter(void) {
  while (atomic_flag_test_and_set_explicit(&heap_lock, memory_order_acquire)) {}
}

static void heap_leave(void) { atomic_flag_clear_explicit(&heap_lock, memory_order_release); }

void *luaio_heap_realloc(void *p, size_t n) {
  heap_enter();
  p = heap_alloc(heap, p, 0, n); /* dlmalloc needs no old size */
  heap_leave();
  return p;
}

/* Before main and before the other constructors (tls.c's hands this heap to OpenSSL in
 * one). */
__attribute__((constructor(101))) static void heap_init(void) {
  lua_State *owner = luaL_newstate(); /* never closed: it owns the heap */
  if (owner == NULL) abort();
  heap_alloc = lua_getallocf(owner, &heap);
  /* a fork (workers, process.spawn) while a pool thread allocates must not leave the
   * child a heap locked forever, or half changed: the lock is held across the fork */
  pthread_atfork(heap_enter, heap_leave, heap_leave);
}
#endif

void *luaio_heap_calloc(size_t n) {
  void *p = luaio_heap_realloc(NULL, n);
  if (p != NULL) memset(p, 0, n);
  return p;
}
