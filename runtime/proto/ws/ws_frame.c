/*
 * ws_frame.c: WebSocket frame headers, masking, UTF-8 validation, close codes and the
 * handshake's accept key (SHA-1, base64). Pure C: see ws_frame.h.
 */
#include <string.h>

#include "ws_frame.h"

/* --- frame headers ------------------------------------------------------------------------- */

int ws_parse_header(const uint8_t *p, size_t n, ws_header *h) {
  if (n < 2) return WS_INCOMPLETE;
  h->fin = p[0] >> 7;
  h->rsv = (p[0] >> 4) & 7;
  h->opcode = p[0] & 15;
  h->masked = p[1] >> 7;
  uint64_t len = p[1] & 127;
  size_t need = 2 + (len == 126 ? 2 : len == 127 ? 8 : 0) + (h->masked ? 4 : 0);
  if (h->opcode >= 8 && (!h->fin || len > 125)) return WS_ERROR; /* control frames: 5.5 */
  if (n < need) return WS_INCOMPLETE;
  size_t i = 2;
  if (len == 126) {
    len = (uint64_t)p[2] << 8 | p[3];
    if (len < 126) return WS_ERROR; /* 5.2: "the minimal number of bytes MUST be used" */
    i = 4;
  } else if (len == 127) {
    len = 0;
    for (i = 2; i < 10; i++) len = len << 8 | p[i];
    if (len >> 63 || len <= 0xffff) return WS_ERROR;
  }
  h->len = len;
  if (h->masked)
    memcpy(h->mask, p + i, 4);
  else
    memset(h->mask, 0, 4);
  return (int)need;
}

size_t ws_write_header(uint8_t *out, int fin, int rsv, int opcode, uint64_t len,
                       const uint8_t *mask) {
  size_t i = 2;
  out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv & 7) << 4 | (opcode & 15));
  uint8_t m = mask ? 0x80 : 0;
  if (len < 126) {
    out[1] = (uint8_t)(m | len);
  } else if (len <= 0xffff) {
    out[1] = (uint8_t)(m | 126);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    i = 4;
  } else {
    out[1] = (uint8_t)(m | 127);
    for (int b = 0; b < 8; b++) out[2 + b] = (uint8_t)(len >> (56 - 8 * b));
    i = 10;
  }
  if (mask) {
    memcpy(out + i, mask, 4);
    i += 4;
  }
  return i;
}

/* --- masking ------------------------------------------------------------------------------------ */

/* The key as a 64-bit word, rotated so that byte 0 of the word lines up with key byte
 * (phase % 4). Loads and stores go through memcpy: any alignment, one instruction each. */
static uint64_t mask_word(const uint8_t mask[4], uint64_t phase, uint8_t rot[4]) {
  for (int i = 0; i < 4; i++) rot[i] = mask[(phase + (uint64_t)i) & 3];
  uint32_t m32;
  memcpy(&m32, rot, 4);
  return (uint64_t)m32 << 32 | m32;
}

/* dst = src XOR the key from byte (phase % 4); dst may be src (each word is read before it is
 * written). */
static void xor_key(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4],
                    uint64_t phase) {
  uint8_t rot[4];
  uint64_t m = mask_word(mask, phase, rot);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    uint64_t v[4];
    memcpy(v, src + i, 32);
    v[0] ^= m, v[1] ^= m, v[2] ^= m, v[3] ^= m;
    memcpy(dst + i, v, 32);
  }
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, src + i, 8);
    v ^= m;
    memcpy(dst + i, &v, 8);
  }
  for (; i < n; i++) dst[i] = src[i] ^ rot[i & 3];
}

void ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t phase) {
  xor_key(p, p, n, mask, phase);
}

void ws_mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4]) {
  xor_key(dst, src, n, mask, 0);
}

/* --- UTF-8 ------------------------------------------------------------------------------------ */

/* A deterministic automaton over byte classes. States: 0 at a boundary; 1-3: that many
 * continuation bytes (80-BF) still to come; 4-7: the second byte is restricted (after E0:
 * A0-BF, no overlong form; after ED: 80-9F, no surrogate; after F0: 90-BF, no overlong
 * form; after F4: 80-8F, nothing above U+10FFFF); 8: rejected. */
enum { C_ASCII, C_80, C_90, C_A0, C_BAD, C_2, C_E0, C_3, C_ED, C_F0, C_4, C_F4, NCLASS };

static const uint8_t byte_class[256] = {
    [0x00 ... 0x7f] = C_ASCII,
    [0x80 ... 0x8f] = C_80,
    [0x90 ... 0x9f] = C_90,
    [0xa0 ... 0xbf] = C_A0,
    [0xc0 ... 0xc1] = C_BAD,
    [0xc2 ... 0xdf] = C_2,
    [0xe0] = C_E0,
    [0xe1 ... 0xec] = C_3,
    [0xed] = C_ED,
    [0xee ... 0xef] = C_3,
    [0xf0] = C_F0,
    [0xf1 ... 0xf3] = C_4,
    [0xf4] = C_F4,
    [0xf5 ... 0xff] = C_BAD,
};

#define R 8
static const uint8_t next_state[9][NCLASS] = {
    /*        ASCII 80 90 A0 BAD 2  E0 3  ED F0 4  F4 */
    /* 0 */ {0, R, R, R, R, 1, 4, 2, 5, 6, 3, 7},
    /* 1 */ {R, 0, 0, 0, R, R, R, R, R, R, R, R},
    /* 2 */ {R, 1, 1, 1, R, R, R, R, R, R, R, R},
    /* 3 */ {R, 2, 2, 2, R, R, R, R, R, R, R, R},
    /* 4 */ {R, R, R, 1, R, R, R, R, R, R, R, R},
    /* 5 */ {R, 1, 1, R, R, R, R, R, R, R, R, R},
    /* 6 */ {R, R, 2, 2, R, R, R, R, R, R, R, R},
    /* 7 */ {R, 2, R, R, R, R, R, R, R, R, R, R},
    /* R */ {R, R, R, R, R, R, R, R, R, R, R, R},
};

int ws_utf8(uint32_t *state, const uint8_t *p, size_t n) {
  uint32_t s = *state;
  size_t i = 0;
  while (i < n) {
    if (s == 0) { /* ASCII runs, 16 bytes at a time */
      while (i + 16 <= n) {
        uint64_t a, b;
        memcpy(&a, p + i, 8);
        memcpy(&b, p + i + 8, 8);
        if ((a | b) & 0x8080808080808080ull) break;
        i += 16;
      }
      while (i < n && p[i] < 0x80) i++;
      if (i == n) break;
    }
    s = next_state[s][byte_class[p[i++]]];
    if (s == R) {
      *state = R;
      return -1;
    }
  }
  *state = s;
  return 0;
}

/* --- close codes ------------------------------------------------------------------------------- */

int ws_close_code_valid(unsigned code) {
  if (code >= 3000 && code <= 4999) return 1;
  if (code < 1000 || code > 1014) return 0;
  return code != 1004 && code != 1005 && code != 1006;
}

/* --- the accept key: SHA-1 (FIPS 180-4) and base64 ----------------------------------------------- */

#define ROL(x, n) ((x) << (n) | (x) >> (32 - (n)))

static void sha1_block(uint32_t h[5], const uint8_t *b) {
  uint32_t w[80];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 | (uint32_t)b[4 * i + 2] << 8 |
           b[4 * i + 3];
  for (int i = 16; i < 80; i++) w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4];
  for (int i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20)
      f = (bb & c) | (~bb & d), k = 0x5a827999;
    else if (i < 40)
      f = bb ^ c ^ d, k = 0x6ed9eba1;
    else if (i < 60)
      f = (bb & c) | (bb & d) | (c & d), k = 0x8f1bbcdc;
    else
      f = bb ^ c ^ d, k = 0xca62c1d6;
    uint32_t t = ROL(a, 5) + f + e + k + w[i];
    e = d, d = c, c = ROL(bb, 30), bb = a, a = t;
  }
  h[0] += a, h[1] += bb, h[2] += c, h[3] += d, h[4] += e;
}

static void sha1(const uint8_t *p, size_t n, uint8_t out[20]) {
  uint32_t h[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
  size_t i = 0;
  for (; i + 64 <= n; i += 64) sha1_block(h, p + i);
  uint8_t last[128] = {0};
  size_t rest = n - i, total = rest + 9 <= 64 ? 64 : 128;
  memcpy(last, p + i, rest);
  last[rest] = 0x80;
  uint64_t bits = (uint64_t)n * 8;
  for (int b = 0; b < 8; b++) last[total - 1 - b] = (uint8_t)(bits >> (8 * b));
  sha1_block(h, last);
  if (total == 128) sha1_block(h, last + 64);
  for (int k = 0; k < 5; k++)
    for (int b = 0; b < 4; b++) out[4 * k + b] = (uint8_t)(h[k] >> (24 - 8 * b));
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ws_base64(const uint8_t *p, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                 (i + 2 < n ? p[i + 2] : 0);
    out[o++] = b64[v >> 18];
    out[o++] = b64[(v >> 12) & 63];
    out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? b64[v & 63] : '=';
  }
  out[o] = 0;
  return o;
}

static int b64_value(char ch) {
  const char *at = ch ? strchr(b64, ch) : NULL;
  return at ? (int)(at - b64) : -1;
}

long ws_unbase64(const char *s, size_t n, uint8_t *out, size_t cap) {
  if (n % 4 != 0) return -1;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 4) {
    int v[4], pad = 0;
    for (int k = 0; k < 4; k++) {
      if (s[i + k] == '=' && i + 4 == n && k >= 2) {
        v[k] = 0;
        pad++;
      } else {
        if (pad || (v[k] = b64_value(s[i + k])) < 0) return -1;
      }
    }
    uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
    for (int k = 0; k < 3 - pad; k++) {
      if (o == cap) return -1;
      out[o++] = (uint8_t)(w >> (16 - 8 * k));
    }
  }
  return (long)o;
}

void ws_accept_key(const char *key, size_t len, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  uint8_t buf[256], digest[20];
  if (len > sizeof buf - (sizeof guid - 1)) len = sizeof buf - (sizeof guid - 1);
  memcpy(buf, key, len);
  memcpy(buf + len, guid, sizeof guid - 1);
  sha1(buf, len + sizeof guid - 1, digest);
  ws_base64(digest, 20, out);
}
