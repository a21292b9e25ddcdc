/*
 * crypto.c: module "luaio.crypto", the C half of stdlib/crypto.lua, on OpenSSL 3.5:
 *
 *   random(n)                     n bytes from RAND_bytes (the CSPRNG)
 *   digest(name, data)            a digest ("sha256", "sha512", "sha1", ...): raw bytes
 *   hmac(name, key, data)         HMAC with that digest: raw bytes
 *   equal(a, b)                   constant-time comparison (CRYPTO_memcmp)
 *   base64(s, url)                base64; url: the URL-safe alphabet without padding
 *   unbase64(s, url)              the bytes, or nil when s is not such base64
 *   argon2id(pw, salt, t, m, p, len[, secret[, ad]])
 *                                 Argon2id (RFC 9106, version 0x13), raw bytes; waits
 *
 * Argon2id is memory-hard on purpose (m KiB, t passes): tens of milliseconds of CPU per
 * call. It runs on libuv's thread pool (uv_queue_work) while the calling task waits, so the
 * loop goes on; the pool's threads are shared with fs and dns (4 unless UV_THREADPOOL_SIZE
 * says otherwise). OpenSSL computes the p lanes one after another in that one thread
 * (its own threads would need OSSL_set_max_threads): parallelism comes from concurrent
 * calls instead. OpenSSL is built with no-scrypt: Argon2 is the memory-hard KDF there is.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "luaio.h"
#include "ws_frame.h" /* ws_base64, ws_unbase64: one base64 in the runtime */

#define MAX_RANDOM (1 << 20)

/* A string argument. Returned by value: a function that raises must hold no local whose
 * address is taken (docs/internals.md), which rules out luaL_checklstring(L, i, &len). */
typedef struct {
  const char *p;
  size_t n;
} bytes;

static bytes check_bytes(lua_State *L, int arg) {
  luaL_checktype(L, arg, LUA_TSTRING);
  return (bytes){lua_tostring(L, arg), lua_objlen(L, arg)};
}

static bytes opt_bytes(lua_State *L, int arg) {
  return lua_isnoneornil(L, arg) ? (bytes){"", 0} : check_bytes(L, arg);
}

/* random(n) -> n random bytes */
static int crypto_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= MAX_RANDOM, 1, "0 to 1048576 bytes expected");
  unsigned char *p = lua_newuserdata(L, (size_t)n);
  if (RAND_bytes(p, (int)n) != 1) return luaL_error(L, "crypto: RAND_bytes failed");
  lua_pushlstring(L, (const char *)p, (size_t)n);
  return 1;
}

static const EVP_MD *check_md(lua_State *L, int arg) {
  const EVP_MD *md = EVP_get_digestbyname(luaio_checkcstring(L, arg));
  luaL_argcheck(L, md != NULL, arg, "unknown digest");
  return md;
}

/* Pushes the digest, or the HMAC when key is not NULL; 0 when OpenSSL failed. Apart from the
 * functions that raise (docs/internals.md: a raising frame holds no arrays). */
static __attribute__((noinline)) int push_mac(lua_State *L, const EVP_MD *md, const char *key,
                                              size_t klen, const char *data, size_t n) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len;
  int ok = key ? HMAC(md, key, (int)klen, (const unsigned char *)data, n, out, &len) != NULL
               : EVP_Digest(data, n, out, &len, md, NULL) == 1;
  if (ok) lua_pushlstring(L, (const char *)out, len);
  return ok;
}

/* digest(name, data) -> raw digest */
static int crypto_digest(lua_State *L) {
  const EVP_MD *md = check_md(L, 1);
  bytes data = check_bytes(L, 2);
  return push_mac(L, md, NULL, 0, data.p, data.n) ? 1 : luaL_error(L, "crypto: digest failed");
}

/* hmac(name, key, data) -> raw MAC */
static int crypto_hmac(lua_State *L) {
  const EVP_MD *md = check_md(L, 1);
  bytes key = check_bytes(L, 2), data = check_bytes(L, 3);
  luaL_argcheck(L, key.n <= INT_MAX, 2, "key too long");
  return push_mac(L, md, key.p, key.n, data.p, data.n) ? 1 : luaL_error(L, "crypto: hmac failed");
}

/* equal(a, b) -> true when the strings are equal; the time depends on the length only */
static int crypto_equal(lua_State *L) {
  bytes a = check_bytes(L, 1), b = check_bytes(L, 2);
  lua_pushboolean(L, a.n == b.n && CRYPTO_memcmp(a.p, b.p, a.n) == 0);
  return 1;
}

/* base64(s, url) -> text. The URL form (RFC 4648 section 5) has - and _ and no padding. */
static int crypto_base64(lua_State *L) {
  bytes b = check_bytes(L, 1);
  const char *s = b.p;
  size_t n = b.n;
  int url = lua_toboolean(L, 2);
  luaL_argcheck(L, n <= ((size_t)1 << 30), 1, "longer than 1 GiB");
  char *out = lua_newuserdata(L, 4 * ((n + 2) / 3) + 1);
  size_t len = ws_base64((const uint8_t *)s, n, out);
  if (url) {
    while (len > 0 && out[len - 1] == '=') len--;
    for (size_t i = 0; i < len; i++) out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
  }
  lua_pushlstring(L, out, len);
  return 1;
}

/* unbase64(s, url) -> bytes, or nil when s is not base64 of that form. The URL form takes
 * no padding; the standard one wants it. */
static int crypto_unbase64(lua_State *L) {
  bytes b = check_bytes(L, 1);
  const char *s = b.p;
  size_t n = b.n;
  int url = lua_toboolean(L, 2);
  luaL_argcheck(L, n <= ((size_t)1 << 30), 1, "longer than 1 GiB");
  if (url && n % 4 == 1) return 0;
  size_t padded = url ? (n + 3) / 4 * 4 : n;
  char *text = lua_newuserdata(L, padded + 3 * (padded / 4) + 1);
  uint8_t *out = (uint8_t *)text + padded;
  memcpy(text, s, n);
  if (url) {
    for (size_t i = 0; i < n; i++) {
      if (text[i] == '+' || text[i] == '/' || text[i] == '=') return 0;
      text[i] = text[i] == '-' ? '+' : text[i] == '_' ? '/' : text[i];
    }
    memset(text + n, '=', padded - n);
  }
  long len = ws_unbase64(text, padded, out, 3 * (padded / 4));
  if (len < 0) return 0;
  lua_pushlstring(L, (const char *)out, (size_t)len);
  return 1;
}

/* --- Argon2id on the thread pool ------------------------------------------------------------ */

typedef struct {
  uv_work_t work;
  lua_State *co;
  int co_ref;
  uint32_t t, m, p;
  size_t pwlen, saltlen, secretlen, adlen, outlen;
  int ok;
  uint8_t data[]; /* password, salt, secret, ad, then the output */
} kdf_req;

static EVP_KDF *argon2id; /* fetched once, on the loop's thread; shared by the pool's */

/* On a pool thread: no Lua here. */
static void kdf_work(uv_work_t *w) {
  kdf_req *r = w->data;
  uint8_t *pw = r->data, *salt = pw + r->pwlen, *secret = salt + r->saltlen,
          *ad = secret + r->secretlen;
  uint32_t threads = 1, version = 0x13;
  OSSL_PARAM params[10], *p = params;
  *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, pw, r->pwlen);
  *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt, r->saltlen);
  *p++ = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_ITER, &r->t);
  *p++ = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_ARGON2_MEMCOST, &r->m);
  *p++ = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_ARGON2_LANES, &r->p);
  *p++ = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_THREADS, &threads);
  *p++ = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_ARGON2_VERSION, &version);
  if (r->secretlen > 0)
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, secret, r->secretlen);
  if (r->adlen > 0)
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_ARGON2_AD, ad, r->adlen);
  *p = OSSL_PARAM_construct_end();
  EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(argon2id);
  r->ok = ctx != NULL && EVP_KDF_derive(ctx, ad + r->adlen, r->outlen, params) == 1;
  EVP_KDF_CTX_free(ctx);
}

static void kdf_after(uv_work_t *w, int status) {
  kdf_req *r = w->data;
  lua_State *co = r->co;
  size_t in = r->pwlen + r->saltlen + r->secretlen + r->adlen;
  int n;
  if (status < 0) {
    n = luaio_pusherror(co, status);
  } else if (!r->ok) {
    n = luaio_pushnamederror(co, "ECRYPTO", "argon2id failed (out of memory?)");
  } else {
    lua_pushlstring(co, (const char *)r->data + in, r->outlen);
    n = 1;
  }
  OPENSSL_cleanse(r->data, in + r->outlen); /* the password and what it gave */
  luaio_unanchor(r->co_ref);
  free(r);
  luaio_resume(co, n);
}

static uint32_t check_u32(lua_State *L, int arg, lua_Integer min, lua_Integer max,
                          const char *what) {
  lua_Integer v = luaL_checkinteger(L, arg);
  if (v < min || v > max || (lua_Number)v != lua_tonumber(L, arg)) luaL_argerror(L, arg, what);
  return (uint32_t)v;
}

/* argon2id(password, salt, t, m, p, len[, secret[, ad]]) -> raw hash | nil, err. Limits:
 * salt 8 bytes or more, t 1 to 2^16, m (KiB) 8p to 4 GiB, p 1 to 255, len 4 to 1024. */
static int crypto_argon2id(lua_State *L) {
  luaio_checktask(L, "argon2id");
  bytes pw = check_bytes(L, 1), salt = check_bytes(L, 2), secret = opt_bytes(L, 7),
        ad = opt_bytes(L, 8);
  uint32_t t = check_u32(L, 3, 1, 65536, "passes (t) from 1 to 65536 expected");
  uint32_t p = check_u32(L, 5, 1, 255, "lanes (p) from 1 to 255 expected");
  uint32_t m =
      check_u32(L, 4, 8 * (lua_Integer)p, 4194304, "memory (m) from 8p to 4194304 KiB expected");
  size_t outlen = check_u32(L, 6, 4, 1024, "hash length from 4 to 1024 bytes expected");
  luaL_argcheck(L, salt.n >= 8 && salt.n <= 1024, 2, "salt of 8 to 1024 bytes expected");
  luaL_argcheck(L, pw.n <= 65536, 1, "password longer than 64 KiB");
  luaL_argcheck(L, secret.n <= 1024, 7, "secret longer than 1024 bytes");
  luaL_argcheck(L, ad.n <= 65536, 8, "associated data longer than 64 KiB");
  if (argon2id == NULL && (argon2id = EVP_KDF_fetch(NULL, "ARGON2ID", NULL)) == NULL)
    return luaio_pushnamederror(L, "ENOTSUP", "this OpenSSL has no ARGON2ID");
  kdf_req *r = malloc(sizeof *r + pw.n + salt.n + secret.n + ad.n + outlen);
  if (r == NULL) return luaio_pusherror(L, UV_ENOMEM);
  *r = (kdf_req){.t = t,
                 .m = m,
                 .p = p,
                 .pwlen = pw.n,
                 .saltlen = salt.n,
                 .secretlen = secret.n,
                 .adlen = ad.n,
                 .outlen = outlen};
  uint8_t *d = r->data;
  memcpy(d, pw.p, pw.n);
  memcpy(d += pw.n, salt.p, salt.n);
  memcpy(d += salt.n, secret.p, secret.n);
  memcpy(d + secret.n, ad.p, ad.n);
  r->work.data = r;
  int err = uv_queue_work(luaio_loop(), &r->work, kdf_work, kdf_after);
  if (err < 0) {
    OPENSSL_cleanse(r->data, pw.n);
    free(r);
    return luaio_pusherror(L, err);
  }
  r->co = L;
  r->co_ref = luaio_anchor(L);
  return luaio_yield(L);
}

static const luaL_Reg crypto_functions[] = {
    {"argon2id", crypto_argon2id}, {"base64", crypto_base64},
    {"digest", crypto_digest},     {"equal", crypto_equal},
    {"hmac", crypto_hmac},         {"random", crypto_random},
    {"unbase64", crypto_unbase64}, {NULL, NULL}};

int luaopen_luaio_crypto(lua_State *L) {
  luaio_newlib(L, crypto_functions);
  return 1;
}
