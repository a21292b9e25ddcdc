/*
 * libFuzzer target for runtime/proto/ws/ws_frame.c: the frame header parser, masking, the
 * UTF-8 validator and base64. Besides not crashing, it checks:
 *   - a parsed header written back with ws_write_header is the same bytes (so parsing and
 *     writing agree, and only minimal lengths are accepted);
 *   - unmasking in two pieces (with the phase) equals unmasking at once, and masking twice
 *     gives the input back;
 *   - the UTF-8 validator agrees with a slow reference decoder, whole and fed in two pieces
 *     split at every position, and fails at the first byte that cannot be valid;
 *   - base64 decodes what it encoded.
 * ./build.sh fuzz [SECONDS] runs it; seeds in tests/fuzz/corpus/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"

#define CHECK(x)                                                                                   \
  do {                                                                                             \
    if (!(x)) abort();                                                                             \
  } while (0)

/* The reference: decodes each character by the RFC 3629 rules, the long way. Returns the
 * number of bytes of the longest prefix that is valid or could still become valid, and
 * whether the whole input is complete and valid. */
static size_t reference_utf8(const uint8_t *p, size_t n, int *complete) {
  size_t i = 0;
  *complete = 0;
  while (i < n) {
    uint8_t b = p[i];
    size_t len;
    uint32_t cp, min;
    if (b < 0x80) {
      i++;
      continue;
    }
    if (b >= 0xc2 && b < 0xe0)
      len = 2, cp = b & 0x1f, min = 0x80; /* C0, C1: always overlong */
    else if (b >= 0xe0 && b < 0xf0)
      len = 3, cp = b & 0x0f, min = 0x800;
    else if (b >= 0xf0 && b <= 0xf4)
      len = 4, cp = b & 0x07, min = 0x10000;
    else
      return i;
    size_t k = 1;
    for (; k < len && i + k < n; k++) {
      if ((p[i + k] & 0xc0) != 0x80) return i + k;
      cp = cp << 6 | (p[i + k] & 0x3f);
      /* fail at the earliest byte that decides: overlong, surrogate or too large */
      uint32_t shift = 6 * (uint32_t)(len - 1 - k);
      uint32_t lo = cp << shift, hi = lo | ((1u << shift) - 1);
      if (hi < min || lo > 0x10ffff || (lo >= 0xd800 && hi <= 0xdfff)) return i + k;
    }
    if (k < len) return n; /* cut short: may still become valid */
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += len;
  }
  *complete = 1;
  return n;
}

/* Where ws_utf8 fails when fed p one byte at a time: the index of the failing byte, or n. */
static size_t fails_at(const uint8_t *p, size_t n) {
  uint32_t st = WS_UTF8_OK;
  for (size_t i = 0; i < n; i++)
    if (ws_utf8(&st, p + i, 1) < 0) return i;
  return n;
}

static void check_utf8(const uint8_t *p, size_t n) {
  int complete;
  size_t ok_prefix = reference_utf8(p, n, &complete);
  uint32_t st = WS_UTF8_OK;
  int r = ws_utf8(&st, p, n);
  int valid = r == 0 && st == WS_UTF8_OK;
  CHECK(valid == complete);
  CHECK(fails_at(p, n) == ok_prefix); /* the first byte that cannot be valid, exactly */
  for (size_t cut = 0; cut <= n; cut++) {
    uint32_t s2 = WS_UTF8_OK;
    int r2 = ws_utf8(&s2, p, cut);
    if (r2 == 0) r2 = ws_utf8(&s2, p + cut, n - cut);
    CHECK((r2 == 0 && s2 == WS_UTF8_OK) == valid);
    CHECK((r2 < 0) == (r < 0));
  }
}

static void check_header(const uint8_t *p, size_t n) {
  ws_header h;
  int hl = ws_parse_header(p, n, &h);
  CHECK(hl == WS_ERROR || hl == WS_INCOMPLETE ||
        (hl >= 2 && hl <= WS_MAX_HEADER && (size_t)hl <= n));
  if (hl <= 0) return;
  uint8_t out[WS_MAX_HEADER];
  size_t wl = ws_write_header(out, h.fin, h.rsv, h.opcode, h.len, h.masked ? h.mask : NULL);
  CHECK(wl == (size_t)hl && memcmp(out, p, wl) == 0);
  if (h.opcode >= 8) CHECK(h.fin && h.len <= 125);
  /* the payload that is there: unmask in two pieces, and at once */
  size_t len = n - (size_t)hl < h.len ? n - (size_t)hl : (size_t)h.len;
  uint8_t *a = malloc(len + 1), *b = malloc(len + 1);
  memcpy(a, p + hl, len);
  memcpy(b, p + hl, len);
  size_t cut = len / 3;
  ws_unmask(a, cut, h.mask, 0);
  ws_unmask(a + cut, len - cut, h.mask, cut);
  ws_unmask(b, len, h.mask, 0);
  CHECK(memcmp(a, b, len) == 0);
  ws_mask_copy(b, a, len, h.mask);
  CHECK(memcmp(b, p + hl, len) == 0);
  free(a);
  free(b);
}

static void check_base64(const uint8_t *p, size_t n) {
  if (n > 300) n = 300;
  char enc[401];
  uint8_t dec[300];
  size_t el = ws_base64(p, n, enc);
  CHECK(el == 4 * ((n + 2) / 3));
  CHECK(ws_unbase64(enc, el, dec, sizeof dec) == (long)n && memcmp(dec, p, n) == 0);
  ws_unbase64((const char *)p, n, dec, sizeof dec); /* any input: no crash */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_header(data, size);
  check_utf8(data, size < 512 ? size : 512);
  check_base64(data, size);
  if (size >= 2) CHECK(ws_close_code_valid((unsigned)data[0] << 8 | data[1]) <= 1);
  return 0;
}
