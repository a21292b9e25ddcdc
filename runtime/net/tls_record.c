/*
 * tls_record.c: TLS 1.3 records after the handshake (tls_record.h).
 *
 * A record on the wire is a 5-byte header (type 23, version 0x0303, length) and the AEAD
 * sealing of content || content type || zero padding, with the header as additional data
 * and iv XOR the 64-bit sequence number as nonce (RFC 8446 5.2, 5.3). Keys and IVs come from
 * the traffic secrets by HKDF-Expand-Label, and KeyUpdate moves a secret on with the label
 * "traffic upd" (7.1, 7.2, 7.3).
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tls_record.h"

#define TAG 16

static const struct suite {
  const char *cipher; /* OpenSSL's name for the AEAD */
  uint8_t key_len, hash_len;
} suites[] = {
    {"AES-128-GCM", 16, 32},       /* TLS_AES_128_GCM_SHA256 (0x1301) */
    {"AES-256-GCM", 32, 48},       /* TLS_AES_256_GCM_SHA384 (0x1302) */
    {"ChaCha20-Poly1305", 32, 32}, /* TLS_CHACHA20_POLY1305_SHA256 (0x1303) */
};
#define NSUITES (sizeof suites / sizeof suites[0])

static EVP_CIPHER *ciphers[NSUITES]; /* fetched once: an init then skips the lookup */

/* The two cipher contexts of the process, and whose key each holds now. */
static struct keyed {
  EVP_CIPHER_CTX *ctx;
  uint64_t key_id;
  int suite; /* -1: none yet */
} opener = {NULL, 0, -1}, sealer = {NULL, 0, -1};

static uint64_t last_key_id;

/* --- keys ---------------------------------------------------------------------------------- */

/* HKDF-Expand-Label(secret, label, "", n) for n up to the hash's size: one HMAC block. */
static int expand_label(const struct suite *s, const uint8_t *secret, const char *label,
                        uint8_t *out, size_t n) {
  uint8_t info[2 + 1 + 6 + 16 + 1 + 1], md[EVP_MAX_MD_SIZE];
  size_t label_len = strlen(label), i = 0;
  unsigned md_len = 0;
  info[i++] = 0;
  info[i++] = (uint8_t)n;
  info[i++] = (uint8_t)(6 + label_len);
  memcpy(info + i, "tls13 ", 6);
  memcpy(info + i + 6, label, label_len);
  i += 6 + label_len;
  info[i++] = 0; /* no context */
  info[i++] = 1; /* the block counter of T(1) */
  const EVP_MD *hash = s->hash_len == 48 ? EVP_sha384() : EVP_sha256();
  if (HMAC(hash, secret, s->hash_len, info, i, md, &md_len) == NULL || md_len < n) return -1;
  memcpy(out, md, n);
  OPENSSL_cleanse(md, sizeof md);
  return 0;
}

/* The key and IV of one direction from its secret; a new key id, the sequence from 0. */
static int derive(const struct suite *s, luaio_tls13_dir *d) {
  if (expand_label(s, d->secret, "key", d->key, s->key_len) < 0 ||
      expand_label(s, d->secret, "iv", d->iv, sizeof d->iv) < 0)
    return -1;
  d->seq = 0;
  d->key_id = ++last_key_id;
  return 0;
}

int luaio_tls13_init(luaio_tls13 *r, unsigned suite, const uint8_t *read_secret,
                     const uint8_t *write_secret, size_t secret_len) {
  memset(r, 0, sizeof *r);
  if (suite < 0x1301 || suite >= 0x1301 + NSUITES) return -1;
  r->suite = (uint8_t)(suite - 0x1301);
  const struct suite *s = &suites[r->suite];
  if (secret_len != s->hash_len) return -1;
  if (ciphers[r->suite] == NULL &&
      (ciphers[r->suite] = EVP_CIPHER_fetch(NULL, s->cipher, NULL)) == NULL)
    return -1;
  memcpy(r->rd.secret, read_secret, secret_len);
  memcpy(r->wr.secret, write_secret, secret_len);
  return derive(s, &r->rd) < 0 || derive(s, &r->wr) < 0 ? -1 : 0;
}

void luaio_tls13_clear(luaio_tls13 *r) { OPENSSL_cleanse(r, sizeof *r); }

int luaio_tls13_update(luaio_tls13 *r, int write) {
  const struct suite *s = &suites[r->suite];
  luaio_tls13_dir *d = write ? &r->wr : &r->rd;
  uint8_t next[48];
  if (expand_label(s, d->secret, "traffic upd", next, s->hash_len) < 0) return -1;
  memcpy(d->secret, next, s->hash_len);
  OPENSSL_cleanse(next, sizeof next);
  return derive(s, d);
}

/* The shared context k, holding d's key, with the nonce of d's next record set. Only a
 * record of another connection (or after a KeyUpdate) re-keys it; only another suite makes
 * OpenSSL build a new one. */
static EVP_CIPHER_CTX *keyed(struct keyed *k, const luaio_tls13 *r, const luaio_tls13_dir *d,
                             int enc) {
  if (k->ctx == NULL && (k->ctx = EVP_CIPHER_CTX_new()) == NULL) return NULL;
  if (k->key_id != d->key_id) {
    const EVP_CIPHER *cipher = k->suite == r->suite ? NULL : ciphers[r->suite];
    k->key_id = 0;
    if (!EVP_CipherInit_ex2(k->ctx, cipher, d->key, NULL, enc, NULL)) {
      k->suite = -1;
      return NULL;
    }
    k->suite = r->suite;
    k->key_id = d->key_id;
  }
  uint8_t nonce[12];
  memcpy(nonce, d->iv, sizeof nonce);
  for (int i = 0; i < 8; i++) nonce[11 - i] ^= (uint8_t)(d->seq >> (8 * i));
  return EVP_CipherInit_ex2(k->ctx, NULL, NULL, nonce, enc, NULL) ? k->ctx : NULL;
}

/* --- records ------------------------------------------------------------------------------- */

int luaio_tls13_open(luaio_tls13 *r, const uint8_t *hdr, uint8_t *body, size_t len, uint8_t *out,
                     uint8_t *type) {
  if (len < TAG + 1) return -LUAIO_TLS13_DECODE_ERROR;
  /* the inner plaintext is at most 2^14 + 1 bytes (RFC 8446 5.2 and 5.4) */
  if (len - TAG > LUAIO_TLS13_PLAIN_MAX + 1) return -LUAIO_TLS13_RECORD_OVERFLOW;
  EVP_CIPHER_CTX *ctx = keyed(&opener, r, &r->rd, 0);
  int n = 0, last = 0;
  size_t sealed = len - TAG;
  if (ctx == NULL) return -LUAIO_TLS13_INTERNAL_ERROR;
  /* the tag first: out may be body, and the plaintext stops before it */
  if (!EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG, body + sealed) ||
      !EVP_CipherUpdate(ctx, NULL, &n, hdr, LUAIO_TLS13_HEADER) ||
      !EVP_CipherUpdate(ctx, out, &n, body, (int)sealed) ||
      EVP_CipherFinal_ex(ctx, out + n, &last) <= 0) {
    opener.key_id = 0; /* a failed open leaves the context in no known state */
    return -LUAIO_TLS13_BAD_RECORD_MAC;
  }
  r->rd.seq++;
  while (sealed > 0 && out[sealed - 1] == 0) sealed--;     /* the padding */
  if (sealed == 0) return -LUAIO_TLS13_UNEXPECTED_MESSAGE; /* no content type */
  *type = out[--sealed];
  return (int)sealed;
}

int luaio_tls13_seal_begin(luaio_tls13 *r, uint8_t *out, size_t n) {
  size_t len = n + 1 + TAG;
  out[0] = LUAIO_TLS13_APPDATA;
  out[1] = out[2] = 3;
  out[3] = (uint8_t)(len >> 8);
  out[4] = (uint8_t)len;
  EVP_CIPHER_CTX *ctx = keyed(&sealer, r, &r->wr, 1);
  int done;
  return ctx != NULL && EVP_CipherUpdate(ctx, NULL, &done, out, LUAIO_TLS13_HEADER) ? 0 : -1;
}

int luaio_tls13_seal_update(uint8_t *out, const uint8_t *in, size_t n) {
  int done = 0;
  if (n == 0) return 0;
  /* stream ciphers both: what goes in comes out at once */
  return EVP_CipherUpdate(sealer.ctx, out, &done, in, (int)n) && (size_t)done == n ? 0 : -1;
}

int luaio_tls13_seal_end(luaio_tls13 *r, uint8_t *out, uint8_t type) {
  int done = 0, last = 0;
  if (!EVP_CipherUpdate(sealer.ctx, out, &done, &type, 1) || done != 1 ||
      !EVP_CipherFinal_ex(sealer.ctx, out + 1, &last) ||
      !EVP_CIPHER_CTX_ctrl(sealer.ctx, EVP_CTRL_AEAD_GET_TAG, TAG, out + 1)) {
    sealer.key_id = 0;
    return -1;
  }
  r->wr.seq++;
  return 0;
}

int luaio_tls13_seal(luaio_tls13 *r, uint8_t *out, uint8_t type, const uint8_t *in, size_t n) {
  if (luaio_tls13_seal_begin(r, out, n) < 0) return -1;
  if (luaio_tls13_seal_update(out + LUAIO_TLS13_HEADER, in, n) < 0) return -1;
  return luaio_tls13_seal_end(r, out + LUAIO_TLS13_HEADER + n, type);
}
