/*
 * ws_frame.h: WebSocket frames (RFC 6455 section 5) and UTF-8 validation, in pure C: no
 * libuv, no Lua, no allocation, so that a fuzzer can drive it alone
 * (tests/fuzz/ws_frame_fuzz.c). The protocol (ws.c) parses frames with it straight from a
 * connection's input buffer and unmasks payloads in place.
 *
 *   ws_header h;
 *   int n = ws_parse_header(buf, len, &h);   // > 0: header bytes; payload follows
 *   if (n == WS_INCOMPLETE) ... wait for more bytes
 *   if (n == WS_ERROR) ... close 1002
 *   ws_unmask(buf + n, h.len, h.mask, 0);     // in place (phase: bytes unmasked before)
 *   uint32_t st = WS_UTF8_OK;
 *   if (ws_utf8(&st, payload, len) < 0) ... close 1007 (the first bad byte fails at once)
 *   if (fin && st != WS_UTF8_OK) ... a sequence was cut by the message's end: 1007
 */
#ifndef LUAIO_WS_FRAME_H
#define LUAIO_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

enum { WS_CONT = 0, WS_TEXT = 1, WS_BINARY = 2, WS_CLOSE = 8, WS_PING = 9, WS_PONG = 10 };

#define WS_INCOMPLETE 0
#define WS_ERROR (-1)
#define WS_MAX_HEADER 14

typedef struct {
  uint64_t len;   /* payload length */
  uint8_t fin;    /* 1 for the last frame of a message */
  uint8_t rsv;    /* the three reserved bits, RSV1 = 4, RSV2 = 2, RSV3 = 1 */
  uint8_t opcode; /* 0-15 as sent (unknown ones are the caller's to refuse) */
  uint8_t masked;
  uint8_t mask[4];
} ws_header;

/* Parses the frame header at p[0..n). Returns its size (2 to 14), WS_INCOMPLETE, or WS_ERROR
 * for a length that is not minimally encoded or has the 64-bit form's high bit set, and for
 * a control frame (opcode >= 8) that is fragmented or longer than 125 bytes. */
int ws_parse_header(const uint8_t *p, size_t n, ws_header *h);

/* Writes a frame header for a payload of len bytes (mask: 4 bytes, or NULL); returns its
 * size, at most WS_MAX_HEADER. rsv: the RSV bits as in ws_header. */
size_t ws_write_header(uint8_t *out, int fin, int rsv, int opcode, uint64_t len,
                       const uint8_t *mask);

/* XORs p[0..n) with the masking key, starting at key byte (phase % 4): unmasking and masking
 * are the same. */
void ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t phase);
/* Copies src to dst masked (dst and src must not overlap). */
void ws_mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4]);

/* UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), checked
 * incrementally: *state is WS_UTF8_OK at a character boundary, else how the sequence in
 * progress may go on. Returns 0 while the bytes can still be valid, -1 at the first byte
 * that cannot (so a bad message fails as soon as its bad byte arrives). */
#define WS_UTF8_OK 0u
int ws_utf8(uint32_t *state, const uint8_t *p, size_t n);

/* Close frames: 1 when code may be sent in a close frame (1000-1003, 1007-1011, 1012-1014,
 * 3000-4999), 0 otherwise (1004-1006, 1015, unassigned ones, 0-999, 5000+). */
int ws_close_code_valid(unsigned code);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)) into out (28
 * characters and a NUL). */
void ws_accept_key(const char *key, size_t len, char out[29]);
/* base64 of n bytes into out (4 * ((n + 2) / 3) characters and a NUL); returns the length. */
size_t ws_base64(const uint8_t *p, size_t n, char *out);
/* Decodes standard base64 (with padding); returns the byte count, or -1 when malformed or
 * longer than cap. */
long ws_unbase64(const char *s, size_t n, uint8_t *out, size_t cap);

#endif
