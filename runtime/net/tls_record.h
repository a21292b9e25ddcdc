/*
 * tls_record.h: the TLS 1.3 record layer (RFC 8446 section 5) that a server connection runs
 * itself once OpenSSL has finished the handshake (tls.c says why: an idle connection then
 * holds about 200 bytes of TLS state instead of OpenSSL's 9 to 18 KB).
 *
 * Pure crypto on caller-owned buffers, no I/O: tls.c moves the bytes, and the fuzz target
 * (tests/fuzz/tls_record_fuzz.c) drives it alone. AEAD through OpenSSL's EVP: one cipher
 * context per direction for the whole process, re-keyed when the record belongs to another
 * connection than the last one, so an idle connection holds only its keys.
 */
#ifndef LUAIO_TLS_RECORD_H
#define LUAIO_TLS_RECORD_H

#include <stddef.h>
#include <stdint.h>

#define LUAIO_TLS13_HEADER 5
#define LUAIO_TLS13_OVERHEAD 22 /* header, the inner content type, the 16-byte tag */
#define LUAIO_TLS13_PLAIN_MAX 16384
#define LUAIO_TLS13_CIPHER_MAX (16384 + 256) /* the largest record body a peer may send */

/* Record content types, and the alerts this layer raises (RFC 8446 6). */
enum {
  LUAIO_TLS13_ALERT = 21,
  LUAIO_TLS13_HANDSHAKE = 22,
  LUAIO_TLS13_APPDATA = 23,
};
enum {
  LUAIO_TLS13_CLOSE_NOTIFY = 0,
  LUAIO_TLS13_UNEXPECTED_MESSAGE = 10,
  LUAIO_TLS13_BAD_RECORD_MAC = 20,
  LUAIO_TLS13_RECORD_OVERFLOW = 22,
  LUAIO_TLS13_DECODE_ERROR = 50,
  LUAIO_TLS13_INTERNAL_ERROR = 80,
  LUAIO_TLS13_USER_CANCELED = 90,
};

/* One direction: its traffic secret (kept for KeyUpdate), the key and IV made from it, and
 * the sequence number of its next record. */
typedef struct {
  uint64_t seq;
  uint64_t key_id; /* tells the shared cipher context whether it holds this key */
  uint8_t secret[48], key[32], iv[12];
} luaio_tls13_dir;

typedef struct {
  luaio_tls13_dir rd, wr;
  uint8_t suite; /* index into tls_record.c's table of the three TLS 1.3 AEAD suites */
} luaio_tls13;

/* Sets up r from the traffic secrets of a finished handshake (suite: the cipher suite's
 * number, 0x1301 to 0x1303; the secrets are as long as the suite's hash). Returns 0, or -1
 * for a suite it does not know. */
int luaio_tls13_init(luaio_tls13 *r, unsigned suite, const uint8_t *read_secret,
                     const uint8_t *write_secret, size_t secret_len);
/* Wipes the keys. */
void luaio_tls13_clear(luaio_tls13 *r);

/* Opens one record: hdr is its 5-byte header, body its len bytes (17 to
 * LUAIO_TLS13_CIPHER_MAX). The inner plaintext goes to out (room for len - 16 bytes; out may
 * be body), padding stripped. Returns the content's length with *type set, or minus the
 * alert to send (bad_record_mac, record_overflow, unexpected_message). */
int luaio_tls13_open(luaio_tls13 *r, const uint8_t *hdr, uint8_t *body, size_t len, uint8_t *out,
                     uint8_t *type);

/* Seals one record of n content bytes (at most LUAIO_TLS13_PLAIN_MAX) into out, which has
 * room for n + LUAIO_TLS13_OVERHEAD: seal_begin writes the header, each seal_update encrypts
 * the next piece of content to out + where it goes, seal_end adds the content type and the
 * tag. Returns 0 or -1 (OpenSSL failed). */
int luaio_tls13_seal_begin(luaio_tls13 *r, uint8_t *out, size_t n);
int luaio_tls13_seal_update(uint8_t *out, const uint8_t *in, size_t n);
int luaio_tls13_seal_end(luaio_tls13 *r, uint8_t *out, uint8_t type);
/* A whole record of one piece: seal_begin, seal_update and seal_end. */
int luaio_tls13_seal(luaio_tls13 *r, uint8_t *out, uint8_t type, const uint8_t *in, size_t n);

/* KeyUpdate: the next traffic secret of one direction, and its key and IV (RFC 8446 7.2). */
int luaio_tls13_update(luaio_tls13 *r, int write);

#endif
