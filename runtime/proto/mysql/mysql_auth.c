/*
 * mysql_auth.c: the cryptography of the authentication plugins, on OpenSSL (EVP), for
 * stdlib/mysql.lua's handshake; functions of module "luaio.mysql".
 *
 *   native(password, nonce)      mysql_native_password: SHA1(pw) xor SHA1(nonce, SHA1(SHA1(pw)))
 *   sha256(password, nonce)      caching_sha2_password's fast path:
 *                                SHA256(pw) xor SHA256(SHA256(SHA256(pw)), nonce)
 *   rsa_encrypt(pem, password, nonce)
 *                                full authentication without TLS: (pw .. "\0") xor the nonce,
 *                                RSA-OAEP with the server's public key
 *   ed25519(password, message)   MariaDB's client_ed25519 signature
 *
 * client_ed25519 signs with the scalar a = clamp(SHA512(password)[0..31]): Ed25519 whose
 * "seed" is the password of any length, which OpenSSL's Ed25519 (32-byte seeds) does not
 * take. It is made from OpenSSL's pieces instead: X25519 gives the Montgomery u of a*B and of
 * r*B (r a random clamped scalar: the nonce of a signature needs only be secret and fresh, and
 * clamping keeps X25519 from changing it), the Edwards y follows as (u - 1) / (u + 1), and
 * of the two signs of x for each point the one pair whose signature Ed25519 verifies (OpenSSL
 * again) is the answer. S = r + SHA512(R, A, message) * a mod L with BIGNUMs.
 */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "luaio.h"

static int digest(const char *md, const void *a, size_t alen, const void *b, size_t blen,
                  uint8_t *out) {
  unsigned int n;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int ok = ctx && EVP_DigestInit_ex(ctx, EVP_get_digestbyname(md), NULL) &&
           EVP_DigestUpdate(ctx, a, alen) && (b == NULL || EVP_DigestUpdate(ctx, b, blen)) &&
           EVP_DigestFinal_ex(ctx, out, &n);
  EVP_MD_CTX_free(ctx);
  return ok;
}

static int crypto_error(lua_State *L, const char *what) {
  return luaL_error(L, "mysql: %s failed", what);
}

/* The two scrambles: H(pw) xor H(nonce, H(H(pw))) for native (SHA1, 20 bytes), H(pw) xor
 * H(H(H(pw)), nonce) for caching_sha2 (SHA256, 32 bytes); "" for an empty password. */
static int scramble(lua_State *L, const char *md, size_t n, int nonce_first) {
  size_t plen, nlen;
  const char *pw = luaL_checklstring(L, 1, &plen), *nonce = luaL_checklstring(L, 2, &nlen);
  if (plen == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  uint8_t h1[32], h2[32], h3[32];
  if (nlen > 20) nlen = 20; /* the server's 20 bytes; a trailing NUL is not part of them */
  int ok = digest(md, pw, plen, NULL, 0, h1) && digest(md, h1, n, NULL, 0, h2) &&
           (nonce_first ? digest(md, nonce, nlen, h2, n, h3) : digest(md, h2, n, nonce, nlen, h3));
  if (!ok) return crypto_error(L, md);
  for (size_t i = 0; i < n; i++) h1[i] ^= h3[i];
  lua_pushlstring(L, (const char *)h1, n);
  return 1;
}

/* native(password, nonce) -> 20 bytes */
static int auth_native(lua_State *L) { return scramble(L, "SHA1", 20, 1); }

/* sha256(password, nonce) -> 32 bytes */
static int auth_sha256(lua_State *L) { return scramble(L, "SHA256", 32, 0); }

/* rsa_encrypt(pem, password, nonce) -> ciphertext | nil, message */
static int auth_rsa(lua_State *L) {
  size_t klen, plen, nlen;
  const char *pem = luaL_checklstring(L, 1, &klen), *pw = luaL_checklstring(L, 2, &plen),
             *nonce = luaL_checklstring(L, 3, &nlen);
  if (nlen > 20) nlen = 20;
  if (nlen == 0 || plen > 1024) return luaL_argerror(L, 3, "nonce empty or password too long");
  uint8_t plain[1025], out[1024];
  for (size_t i = 0; i <= plen; i++) plain[i] = (uint8_t)((i < plen ? pw[i] : 0) ^ nonce[i % nlen]);
  BIO *bio = BIO_new_mem_buf(pem, (int)klen);
  EVP_PKEY *key = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
  BIO_free(bio);
  EVP_PKEY_CTX *ctx = key ? EVP_PKEY_CTX_new(key, NULL) : NULL;
  size_t olen = sizeof out;
  int ok = ctx && EVP_PKEY_encrypt_init(ctx) > 0 &&
           EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0 &&
           EVP_PKEY_encrypt(ctx, out, &olen, plain, plen + 1) > 0;
  EVP_PKEY_CTX_free(ctx);
  EVP_PKEY_free(key);
  if (!ok) {
    lua_pushnil(L);
    lua_pushliteral(L, "the server's RSA public key is unusable");
    return 2;
  }
  lua_pushlstring(L, (const char *)out, olen);
  return 1;
}

/* --- client_ed25519 ---------------------------------------------------------------------------- */

/* The Montgomery u of k*B (k clamped by X25519, as ours already are). */
static int x25519_base(const uint8_t k[32], uint8_t u[32]) {
  EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, k, 32);
  size_t len = 32;
  int ok = pk != NULL && EVP_PKEY_get_raw_public_key(pk, u, &len) && len == 32;
  EVP_PKEY_free(pk);
  return ok;
}

/* Edwards y = (u - 1) / (u + 1) mod p, encoded little-endian (the sign bit clear). */
static int edwards_y(const uint8_t u[32], uint8_t y[32], BN_CTX *bc) {
  BIGNUM *p = BN_new(), *bu = BN_lebin2bn(u, 32, NULL), *num = BN_new(), *den = BN_new();
  int ok = p && bu && num && den && BN_set_bit(p, 255) && BN_sub_word(p, 19) && BN_copy(num, bu) &&
           BN_sub_word(num, 1) && BN_copy(den, bu) && BN_add_word(den, 1) &&
           BN_mod_inverse(den, den, p, bc) && BN_mod_mul(num, num, den, p, bc) &&
           BN_bn2lebinpad(num, y, 32) == 32;
  BN_free(p);
  BN_free(bu);
  BN_free(num);
  BN_free(den);
  return ok;
}

/* S = r + SHA512(R, A, m) * a mod L, little-endian. */
static int ed_s(const uint8_t R[32], const uint8_t A[32], const uint8_t *m, size_t mlen,
                const uint8_t r[32], const uint8_t a[32], uint8_t S[32], BN_CTX *bc) {
  static const uint8_t L_be[32] = {0x10, 0,    0,    0,    0,    0,    0,    0,    0,    0,    0,
                                   0,    0,    0,    0,    0,    0x14, 0xde, 0xf9, 0xde, 0xa2, 0xf7,
                                   0x9c, 0xd6, 0x58, 0x12, 0x63, 0x1a, 0x5c, 0xf5, 0xd3, 0xed};
  uint8_t ram[64], h[64];
  memcpy(ram, R, 32);
  memcpy(ram + 32, A, 32);
  if (!digest("SHA512", ram, 64, m, mlen, h)) return 0;
  BIGNUM *bl = BN_bin2bn(L_be, 32, NULL), *bh = BN_lebin2bn(h, 64, NULL),
         *ba = BN_lebin2bn(a, 32, NULL), *br = BN_lebin2bn(r, 32, NULL), *s = BN_new();
  int ok = bl && bh && ba && br && s && BN_mod_mul(s, bh, ba, bl, bc) &&
           BN_mod_add(s, s, br, bl, bc) && BN_bn2lebinpad(s, S, 32) == 32;
  BN_free(bl);
  BN_free(bh);
  BN_free(ba);
  BN_free(br);
  BN_free(s);
  return ok;
}

static int ed_verify(const uint8_t A[32], const uint8_t sig[64], const uint8_t *m, size_t mlen) {
  EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, A, 32);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int ok = pk && ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk) == 1 &&
           EVP_DigestVerify(ctx, sig, 64, m, mlen) == 1;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(pk);
  return ok;
}

/* Signs m; returns 1 with sig filled, 0 on failure. */
static int ed25519_sign(const char *pw, size_t plen, const uint8_t *m, size_t mlen,
                        uint8_t sig[64]) {
  uint8_t az[64], r[32], uA[32], uR[32], A[32], R[32];
  if (!digest("SHA512", pw, plen, NULL, 0, az) || RAND_bytes(r, 32) != 1) return 0;
  az[0] &= 248, az[31] &= 63, az[31] |= 64;
  r[0] &= 248, r[31] &= 127, r[31] |= 64;
  BN_CTX *bc = BN_CTX_new();
  int ok = bc && x25519_base(az, uA) && x25519_base(r, uR) && edwards_y(uA, A, bc) &&
           edwards_y(uR, R, bc);
  int found = 0;
  for (int k = 0; ok && !found && k < 4; k++) {
    A[31] = (uint8_t)((A[31] & 0x7f) | (k & 1) << 7);
    R[31] = (uint8_t)((R[31] & 0x7f) | (k & 2) << 6);
    memcpy(sig, R, 32);
    ok = ed_s(R, A, m, mlen, r, az, sig + 32, bc);
    found = ok && ed_verify(A, sig, m, mlen);
  }
  BN_CTX_free(bc);
  OPENSSL_cleanse(az, sizeof az);
  OPENSSL_cleanse(r, sizeof r);
  return found;
}

/* ed25519(password, message) -> 64-byte signature */
static int auth_ed25519(lua_State *L) {
  size_t plen, mlen;
  const char *pw = luaL_checklstring(L, 1, &plen), *m = luaL_checklstring(L, 2, &mlen);
  uint8_t sig[64];
  if (!ed25519_sign(pw, plen, (const uint8_t *)m, mlen, sig)) return crypto_error(L, "ed25519");
  lua_pushlstring(L, (const char *)sig, 64);
  return 1;
}

/* Adds the functions to the module table on top of L. */
void luaio_mysql_auth_register(lua_State *L) {
  static const luaL_Reg funcs[] = {{"ed25519", auth_ed25519},
                                   {"native", auth_native},
                                   {"rsa_encrypt", auth_rsa},
                                   {"sha256", auth_sha256},
                                   {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
}
