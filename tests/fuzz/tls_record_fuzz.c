/*
 * tls_record_fuzz.c: libFuzzer target for runtime/net/tls_record.c (./build.sh fuzz).
 *
 * Two ends of one TLS 1.3 stream share fixed traffic secrets: `server` is the layer under
 * test as luaio runs it, `client` its peer. Input byte 0 picks the suite; the rest is a list
 * of operations, each an opcode byte and its operands:
 *   0 len16 bytes   the client seals an inner plaintext of its own choosing (content, type,
 *                   zero padding: any bytes), the server opens it, into a separate buffer or
 *                   in place; checked against the RFC 8446 5.4 reading of the same bytes
 *   1 len16 bytes   the server seals content in up to three pieces, the client opens it:
 *                   the same content and type come back
 *   2 pos16 bit     a record with one bit flipped (header or body): bad_record_mac
 *   3 len16 bytes   a record of arbitrary body bytes: never opens (no forged tag)
 *   4 which         KeyUpdate (0: client to server, 1: server to client): records still open
 * Every buffer is a heap copy of exactly its size, so AddressSanitizer catches overreads.
 */
#include <stdlib.h>
#include <string.h>

#include "tls_record.h"

#define ASSERT(c) ((c) ? (void)0 : abort())

static luaio_tls13 server, client;

static size_t take(const uint8_t **p, size_t *n, size_t want) {
  size_t k = want < *n ? want : *n;
  *p += k;
  *n -= k;
  return k;
}

static unsigned u16(const uint8_t **p, size_t *n) {
  unsigned v = 0;
  for (int i = 0; i < 2 && *n > 0; i++) {
    v = v << 8 | **p;
    take(p, n, 1);
  }
  return v;
}

/* Seals inner (content || type) from `from`, as one record in a fresh heap buffer. */
static uint8_t *seal(luaio_tls13 *from, const uint8_t *inner, size_t len, size_t *out_len) {
  size_t content = len - 1;
  uint8_t *rec = malloc(content + LUAIO_TLS13_OVERHEAD);
  ASSERT(rec != NULL);
  size_t cut1 = content / 3, cut2 = content - content / 4; /* three pieces */
  ASSERT(luaio_tls13_seal_begin(from, rec, content) == 0);
  ASSERT(luaio_tls13_seal_update(rec + 5, inner, cut1) == 0);
  ASSERT(luaio_tls13_seal_update(rec + 5 + cut1, inner + cut1, cut2 - cut1) == 0);
  ASSERT(luaio_tls13_seal_update(rec + 5 + cut2, inner + cut2, content - cut2) == 0);
  ASSERT(luaio_tls13_seal_end(from, rec + 5 + content, inner[content]) == 0);
  *out_len = content + LUAIO_TLS13_OVERHEAD;
  return rec;
}

/* Opens rec at `to`: in place or into a separate buffer of exactly the room needed. */
static int open_rec(luaio_tls13 *to, uint8_t *rec, size_t len, int in_place, uint8_t **content,
                    uint8_t *type) {
  size_t body = len - 5;
  uint8_t *out = in_place ? rec + 5 : malloc(body - 16 > 0 ? body - 16 : 1);
  ASSERT(out != NULL);
  int n = luaio_tls13_open(to, rec, rec + 5, body, out, type);
  *content = out;
  return n;
}

static void roundtrip(luaio_tls13 *from, luaio_tls13 *to, const uint8_t *inner, size_t len,
                      int in_place) {
  if (len == 0 || len > LUAIO_TLS13_PLAIN_MAX + 1) return;
  size_t rec_len;
  uint8_t *rec = seal(from, inner, len, &rec_len), *content, type;
  int n = open_rec(to, rec, rec_len, in_place, &content, &type);
  size_t real = len; /* RFC 8446 5.4: the last non-zero byte is the type */
  while (real > 0 && inner[real - 1] == 0) real--;
  if (real == 0) {
    ASSERT(n == -LUAIO_TLS13_UNEXPECTED_MESSAGE);
  } else {
    ASSERT(n == (int)real - 1);
    ASSERT(type == inner[real - 1]);
    ASSERT(memcmp(content, inner, (size_t)n) == 0);
  }
  if (!in_place) free(content);
  free(rec);
}

/* After a failed open a connection ends; here the reader skips the record and goes on. */
static void resync(luaio_tls13 *from, luaio_tls13 *to) { to->rd.seq = from->wr.seq; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const uint8_t secret_c[48] = "client application traffic secret, fuzz only.",
                       secret_s[48] = "server application traffic secret, fuzz only.";
  if (size < 1) return 0;
  unsigned suite = 0x1301 + data[0] % 3;
  size_t hash = suite == 0x1302 ? 48 : 32;
  ASSERT(luaio_tls13_init(&server, suite, secret_c, secret_s, hash) == 0);
  ASSERT(luaio_tls13_init(&client, suite, secret_s, secret_c, hash) == 0);
  const uint8_t *p = data + 1;
  size_t n = size - 1;
  for (int ops = 0; n > 0 && ops < 64; ops++) {
    uint8_t op = *p;
    take(&p, &n, 1);
    switch (op % 5) {
      case 0:
      case 1: {
        unsigned want = u16(&p, &n);
        uint8_t *inner = malloc(want ? want : 1);
        ASSERT(inner != NULL);
        size_t len = want ? want : 0;
        size_t k = take(&p, &n, len);
        memcpy(inner, p - k, k);
        memset(inner + k, 0x2a, len - k);
        if (op % 5 == 0)
          roundtrip(&client, &server, inner, len, op & 0x80);
        else
          roundtrip(&server, &client, inner, len, op & 0x80);
        free(inner);
        break;
      }
      case 2: {
        static const uint8_t inner[] = "GET / HTTP/1.1\r\n\r\n\x17";
        size_t rec_len;
        uint8_t *rec = seal(&client, inner, sizeof inner - 1, &rec_len), *content, type;
        unsigned pos = u16(&p, &n) % rec_len, bit = n > 0 ? *p % 8 : 0;
        take(&p, &n, 1);
        rec[pos] ^= (uint8_t)(1u << bit);
        int r = open_rec(&server, rec, rec_len, 1, &content, &type);
        ASSERT(r == -LUAIO_TLS13_BAD_RECORD_MAC);
        resync(&client, &server);
        free(rec);
        break;
      }
      case 3: {
        size_t len = u16(&p, &n) % (LUAIO_TLS13_CIPHER_MAX + 64);
        uint8_t *rec = malloc(len + 5), *content, type;
        ASSERT(rec != NULL);
        rec[0] = 23, rec[1] = rec[2] = 3, rec[3] = (uint8_t)(len >> 8), rec[4] = (uint8_t)len;
        size_t k = take(&p, &n, len);
        memcpy(rec + 5, p - k, k);
        memset(rec + 5 + k, 0, len - k);
        int r = luaio_tls13_open(&server, rec, rec + 5, len, rec + 5, &type);
        (void)content;
        ASSERT(r < 0);
        if (len < 17) ASSERT(r == -LUAIO_TLS13_DECODE_ERROR);
        if (len > 16384 + 17) ASSERT(r == -LUAIO_TLS13_RECORD_OVERFLOW);
        free(rec);
        break;
      }
      case 4: {
        int server_to_client = n > 0 && (*p & 1);
        take(&p, &n, 1);
        if (server_to_client) {
          ASSERT(luaio_tls13_update(&server, 1) == 0 && luaio_tls13_update(&client, 0) == 0);
        } else {
          ASSERT(luaio_tls13_update(&client, 1) == 0 && luaio_tls13_update(&server, 0) == 0);
        }
        ASSERT(server.rd.seq == 0 || server.wr.seq == 0);
        break;
      }
    }
  }
  luaio_tls13_clear(&server);
  luaio_tls13_clear(&client);
  return 0;
}
