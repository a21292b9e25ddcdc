/*
 * ws_deflate.c: permessage-deflate (RFC 7692) over zlib.
 *
 * Compressing never uses context takeover (the server always answers
 * server_no_context_takeover, the client always offers client_no_context_takeover), so a
 * message is compressed in one call by a stream shared by the whole process (one per window
 * size), reset first: no connection ever holds a deflate state, and a published message is
 * compressed once for every subscriber.
 *
 * Decompressing: a peer that compresses without context takeover is inflated by one shared
 * stream too, reset for each message. Only a peer that keeps its context (it did not agree to
 * no_context_takeover) costs its connection an inflate stream of its own (about 7 KiB, and a
 * 32 KiB window once zlib needs it), from its first compressed message on.
 *
 * The compressed bytes of a message are inflated when the message is complete, in one call,
 * so a shared stream is never left half-way through one connection's message.
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ws.h"

#define SCRATCH_KEEP (1u << 20) /* output buffers larger than this are freed after use */

static z_stream *deflaters[16]; /* by window bits, 9-15 */
static z_stream *shared_inflater;
static uint8_t *scratch;
static size_t scratch_cap;

static int scratch_reserve(size_t n) {
  if (n <= scratch_cap) return 0;
  size_t cap = scratch_cap ? scratch_cap : 16384;
  while (cap < n) cap *= 2;
  uint8_t *p = realloc(scratch, cap);
  if (p == NULL) return -1;
  scratch = p;
  scratch_cap = cap;
  return 0;
}

void ws_scratch_trim(void) {
  if (scratch_cap <= SCRATCH_KEEP) return;
  free(scratch);
  scratch = NULL;
  scratch_cap = 0;
}

static z_stream *deflater(int bits) {
  if (bits < 9 || bits > 15) bits = 15;
  if (deflaters[bits] != NULL) return deflaters[bits];
  z_stream *z = calloc(1, sizeof *z);
  if (z == NULL) return NULL;
  /* memLevel 8 (zlib's default); the window as negotiated. Raw deflate: no zlib header. */
  if (deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    free(z);
    return NULL;
  }
  return deflaters[bits] = z;
}

int ws_deflate(int bits, const uint8_t *src, size_t n, const uint8_t **out, size_t *out_len) {
  z_stream *z = deflater(bits);
  if (z == NULL || deflateReset(z) != Z_OK) return -1;
  size_t bound = deflateBound(z, (uLong)n) + 16;
  if (scratch_reserve(bound) < 0) return -1;
  z->next_in = (Bytef *)src;
  z->avail_in = (uInt)n;
  z->next_out = scratch;
  z->avail_out = (uInt)bound;
  /* A sync flush ends the data on a byte boundary with an empty stored block, whose last
   * four bytes (00 00 ff ff) the sender removes (RFC 7692 7.2.1). */
  if (deflate(z, Z_SYNC_FLUSH) != Z_OK || z->avail_in != 0) return -1;
  size_t len = bound - z->avail_out;
  if (len >= 4 && memcmp(scratch + len - 4, "\0\0\xff\xff", 4) == 0) len -= 4;
  if (len == 0) scratch[len++] = 0; /* an empty message: one empty stored block, "00" */
  *out = scratch;
  *out_len = len;
  return 0;
}

/* inflate into the scratch buffer from offset *len, growing it, at most max bytes in all. */
static int inflate_some(z_stream *z, const uint8_t *src, size_t n, size_t *len, uint64_t max) {
  z->next_in = (Bytef *)src;
  z->avail_in = (uInt)n;
  while (z->avail_in > 0) {
    if (*len >= max + 1) return WS_INFLATE_TOO_BIG;
    size_t room = scratch_cap - *len;
    if (room < 4096) {
      if (scratch_reserve(scratch_cap < 16384 ? 16384 : scratch_cap * 2) < 0)
        return WS_INFLATE_NOMEM;
      room = scratch_cap - *len;
    }
    if (room > max + 1 - *len) room = (size_t)(max + 1 - *len); /* one byte more: too big */
    z->next_out = scratch + *len;
    z->avail_out = (uInt)room;
    int r = inflate(z, Z_SYNC_FLUSH);
    *len += room - z->avail_out;
    if (r == Z_STREAM_END) return z->avail_in == 0 ? 1 : WS_INFLATE_BAD; /* a final block */
    if (r == Z_BUF_ERROR && z->avail_out > 0) return WS_INFLATE_BAD;
    if (r != Z_OK && r != Z_BUF_ERROR) return r == Z_MEM_ERROR ? WS_INFLATE_NOMEM : WS_INFLATE_BAD;
  }
  return *len > max ? WS_INFLATE_TOO_BIG : 0;
}

int ws_inflate(void **own, const uint8_t *src, size_t n, uint64_t max, const uint8_t **out,
               size_t *out_len) {
  z_stream *z;
  if (own == NULL) { /* no context takeover: the shared stream, from a fresh state */
    if (shared_inflater == NULL) {
      if ((z = calloc(1, sizeof *z)) == NULL) return WS_INFLATE_NOMEM;
      if (inflateInit2(z, -15) != Z_OK) {
        free(z);
        return WS_INFLATE_NOMEM;
      }
      shared_inflater = z;
    }
    z = shared_inflater;
    inflateReset(z);
  } else {
    if (*own == NULL) {
      if ((z = calloc(1, sizeof *z)) == NULL) return WS_INFLATE_NOMEM;
      if (inflateInit2(z, -15) != Z_OK) { /* 15: decodes what any smaller window made */
        free(z);
        return WS_INFLATE_NOMEM;
      }
      *own = z;
    }
    z = *own;
  }
  size_t len = 0;
  static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
  int r = inflate_some(z, src, n, &len, max);
  if (r == 0) r = inflate_some(z, tail, 4, &len, max);
  if (r == 1) { /* the sender ended with a final block (RFC 7692 7.2.3.4): no tail, and
                 * the next message starts a new stream */
    inflateReset(z);
    r = 0;
  }
  if (r < 0) return r;
  *out = scratch;
  *out_len = len;
  return 0;
}

void ws_inflate_free(void **own) {
  if (*own == NULL) return;
  inflateEnd(*own);
  free(*own);
  *own = NULL;
}
