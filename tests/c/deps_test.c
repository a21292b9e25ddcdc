/*
 * deps_test.c: the libraries built by deps/deps.sh but not linked into luaio yet (OpenSSL,
 * zlib, yyjson, the Mozilla roots) link statically and do their jobs with the build's
 * compiler: TLS 1.3 and 1.2 handshakes between a client and a server in this process over
 * a socketpair (X25519MLKEM768, X25519, P-256; ECDSA and RSA certificates; X509
 * verification with a throwaway self-signed certificate; SNI, ALPN, session tickets), a raw
 * deflate round trip (WebSocket permessage-deflate), a JSON round trip, and roots.pem.
 *
 * No framework: each CHECK counts a pass or prints the failure; the last line is
 * "deps_test: N passed, N failed" and the exit status is 1 when anything failed.
 * Run by tests/deps_test.lua; ROOTS_PEM (the bundle's path) comes from runtime/Makefile.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <yyjson.h>
#include <zlib.h>

static int passed, failed;

#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (cond) {                                                                                    \
      passed++;                                                                                    \
    } else {                                                                                       \
      failed++;                                                                                    \
      printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                       \
      printf(__VA_ARGS__);                                                                         \
      printf("\n");                                                                                \
      ERR_print_errors_fp(stdout);                                                                 \
    }                                                                                              \
  } while (0)

/* --- certificates ------------------------------------------------------------------------ */

/* A self-signed certificate for NAME (subject CN and subjectAltName DNS), valid for a day. */
static X509 *self_signed(EVP_PKEY *key, const char *name) {
  X509 *x = X509_new();
  char san[64];
  X509_set_version(x, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_NAME *subject = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const unsigned char *)name, -1, -1, 0);
  X509_set_issuer_name(x, subject);
  snprintf(san, sizeof san, "DNS:%s", name);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  X509_sign(x, key, EVP_sha256());
  return x;
}

static SSL_CTX *server_ctx(EVP_PKEY *key, X509 *cert) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_use_certificate(ctx, cert);
  SSL_CTX_use_PrivateKey(ctx, key);
  return ctx;
}

/* A client that trusts exactly the certificates given (none: an empty store). */
static SSL_CTX *client_ctx(X509 *trust1, X509 *trust2) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  X509_STORE *store = SSL_CTX_get_cert_store(ctx);
  if (trust1) X509_STORE_add_cert(store, trust1);
  if (trust2) X509_STORE_add_cert(store, trust2);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  return ctx;
}

/* --- server callbacks -------------------------------------------------------------------- */

static SSL_CTX *rsa_server; /* the context a server switches to for the name "rsa.test" */

static int on_servername(SSL *s, int *alert, void *arg) {
  const char *name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
  if (name && strcmp(name, "rsa.test") == 0) SSL_set_SSL_CTX(s, rsa_server);
  return SSL_TLSEXT_ERR_OK;
}

static int on_alpn(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg) {
  static const unsigned char ours[] = "\x08http/1.1";
  unsigned char *chosen;
  if (SSL_select_next_proto(&chosen, outlen, ours, sizeof ours - 1, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

/* --- one connection ---------------------------------------------------------------------- */

struct conn {
  SSL *c, *s;
  int ok; /* both handshakes completed */
};

/* Both ends of a non-blocking socketpair, driven in turn from this one thread until both
 * handshakes finish or one fails. */
static struct conn connect_pair(SSL_CTX *cctx, SSL_CTX *sctx, const char *sni, const char *host,
                                SSL_SESSION *resume) {
  struct conn k = {SSL_new(cctx), SSL_new(sctx), 0};
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return k;
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  fcntl(fds[1], F_SETFL, O_NONBLOCK);
  SSL_set_fd(k.c, fds[0]);
  SSL_set_fd(k.s, fds[1]);
  SSL_set_connect_state(k.c);
  SSL_set_accept_state(k.s);
  if (sni) SSL_set_tlsext_host_name(k.c, sni);
  if (host) SSL_set1_host(k.c, host);
  if (resume) SSL_set_session(k.c, resume);
  for (int i = 0; i < 1000; i++) {
    int rc = SSL_do_handshake(k.c), rs = SSL_do_handshake(k.s);
    if (rc == 1 && rs == 1) {
      k.ok = 1;
      break;
    }
    int ec = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(k.c, rc);
    int es = rs == 1 ? SSL_ERROR_NONE : SSL_get_error(k.s, rs);
    if ((ec != SSL_ERROR_NONE && ec != SSL_ERROR_WANT_READ && ec != SSL_ERROR_WANT_WRITE) ||
        (es != SSL_ERROR_NONE && es != SSL_ERROR_WANT_READ && es != SSL_ERROR_WANT_WRITE))
      break;
  }
  ERR_clear_error(); /* a failed handshake is what some checks want: they read verify results */
  return k;
}

/* "ping" one way, "pong" back: application data flows, and the client takes in the TLS 1.3
 * session tickets the server sent after its handshake. */
static int ping_pong(struct conn *k) {
  char buf[16];
  int n = 0;
  if (SSL_write(k->c, "ping", 4) != 4) return 0;
  for (int i = 0; i < 100 && n <= 0; i++) n = SSL_read(k->s, buf, sizeof buf);
  if (n != 4 || memcmp(buf, "ping", 4) != 0) return 0;
  if (SSL_write(k->s, "pong", 4) != 4) return 0;
  n = 0;
  for (int i = 0; i < 100 && n <= 0; i++) n = SSL_read(k->c, buf, sizeof buf);
  return n == 4 && memcmp(buf, "pong", 4) == 0;
}

/* With close_notify sent: OpenSSL takes a connection closed without it for an attack and
 * makes its session unusable for resumption. */
static void close_pair(struct conn *k) {
  if (k->ok) {
    SSL_shutdown(k->c);
    SSL_shutdown(k->s);
  }
  close(SSL_get_fd(k->c));
  close(SSL_get_fd(k->s));
  SSL_free(k->c);
  SSL_free(k->s);
}

static const char *group(SSL *ssl) {
  const char *name = SSL_get0_group_name(ssl);
  return name ? name : "(none)";
}

static int peer_key_is(SSL *ssl, const char *type) {
  X509 *peer = SSL_get1_peer_certificate(ssl);
  int is = peer && EVP_PKEY_is_a(X509_get0_pubkey(peer), type);
  X509_free(peer);
  return is;
}

/* --- the checks ---------------------------------------------------------------------------- */

static void test_tls(void) {
  CHECK(OpenSSL_version_num() >= 0x30500000L, "%s", OpenSSL_version(OPENSSL_VERSION));
  CHECK(strcmp(OpenSSL_version(OPENSSL_VERSION), OPENSSL_VERSION_TEXT) == 0,
        "headers match the library");

  EVP_PKEY *ec_key = EVP_EC_gen("P-256"), *rsa_key = EVP_RSA_gen(2048);
  CHECK(ec_key && rsa_key, "key generation");
  X509 *ec_cert = self_signed(ec_key, "localhost"), *rsa_cert = self_signed(rsa_key, "rsa.test");
  SSL_CTX *server = server_ctx(ec_key, ec_cert);
  rsa_server = server_ctx(rsa_key, rsa_cert);
  SSL_CTX_set_tlsext_servername_callback(server, on_servername);
  SSL_CTX_set_alpn_select_cb(server, on_alpn, NULL);
  SSL_CTX *client = client_ctx(ec_cert, rsa_cert);
  struct conn k;

  /* The defaults: TLS 1.3 with the post-quantum hybrid key share, ECDSA certificate. */
  k = connect_pair(client, server, "localhost", "localhost", NULL);
  CHECK(k.ok, "default handshake");
  CHECK(SSL_version(k.c) == TLS1_3_VERSION, "%s", SSL_get_version(k.c));
  CHECK(strcmp(group(k.c), "X25519MLKEM768") == 0, "default group %s", group(k.c));
  CHECK(SSL_get_verify_result(k.c) == X509_V_OK, "verify %ld", SSL_get_verify_result(k.c));
  CHECK(peer_key_is(k.c, "EC"), "ECDSA certificate");
  const char *sni = SSL_get_servername(k.s, TLSEXT_NAMETYPE_host_name);
  CHECK(sni && strcmp(sni, "localhost") == 0, "server saw SNI %s", sni ? sni : "(none)");
  CHECK(ping_pong(&k), "application data");
  SSL_SESSION *session = SSL_get1_session(k.c);
  close_pair(&k);

  /* A TLS 1.3 session ticket resumes. */
  CHECK(session && SSL_SESSION_is_resumable(session), "a resumable TLS 1.3 session");
  k = connect_pair(client, server, "localhost", "localhost", session);
  CHECK(k.ok && SSL_session_reused(k.c), "TLS 1.3 resumption");
  close_pair(&k);
  SSL_SESSION_free(session);

  /* ALPN: the server picks http/1.1 among the client's offers. */
  SSL_CTX_set_alpn_protos(client, (const unsigned char *)"\x02h2\x08http/1.1", 12);
  k = connect_pair(client, server, "localhost", "localhost", NULL);
  const unsigned char *alpn;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(k.c, &alpn, &alpn_len);
  CHECK(k.ok && alpn_len == 8 && memcmp(alpn, "http/1.1", 8) == 0, "ALPN");
  close_pair(&k);

  /* X25519 and P-256 key exchange; SNI switches the server to its RSA certificate. */
  SSL_CTX_set1_groups_list(client, "X25519");
  k = connect_pair(client, server, "localhost", "localhost", NULL);
  CHECK(k.ok && strcasecmp(group(k.c), "X25519") == 0, "X25519: %s", group(k.c));
  close_pair(&k);
  SSL_CTX_set1_groups_list(client, "P-256");
  k = connect_pair(client, server, "rsa.test", "rsa.test", NULL);
  CHECK(k.ok && strcmp(group(k.c), "secp256r1") == 0, "P-256: %s", group(k.c));
  CHECK(k.ok && peer_key_is(k.c, "RSA"), "SNI chose the RSA certificate");
  close_pair(&k);
  SSL_CTX_set1_groups_list(client, "X25519MLKEM768:X25519:P-256");

  /* TLS 1.2: ECDHE with both certificate kinds, then ticket resumption. */
  SSL_CTX_set_max_proto_version(client, TLS1_2_VERSION);
  SSL_CTX_set_cipher_list(client, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305");
  k = connect_pair(client, server, "localhost", "localhost", NULL);
  CHECK(k.ok && SSL_version(k.c) == TLS1_2_VERSION, "TLS 1.2");
  CHECK(k.ok && strcmp(SSL_get_cipher_name(k.c), "ECDHE-ECDSA-AES128-GCM-SHA256") == 0, "%s",
        SSL_get_cipher_name(k.c));
  CHECK(ping_pong(&k), "TLS 1.2 application data");
  session = SSL_get1_session(k.c);
  close_pair(&k);
  k = connect_pair(client, server, "localhost", "localhost", session);
  CHECK(k.ok && SSL_session_reused(k.c), "TLS 1.2 resumption");
  close_pair(&k);
  SSL_SESSION_free(session);
  k = connect_pair(client, server, "rsa.test", "rsa.test", NULL);
  CHECK(k.ok && strcmp(SSL_get_cipher_name(k.c), "ECDHE-RSA-CHACHA20-POLY1305") == 0, "%s",
        SSL_get_cipher_name(k.c));
  close_pair(&k);
  SSL_CTX_free(client);

  /* Verification fails for an unknown certificate and for another name. */
  client = client_ctx(NULL, NULL);
  k = connect_pair(client, server, "localhost", "localhost", NULL);
  CHECK(!k.ok && SSL_get_verify_result(k.c) == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
        "untrusted: %ld", SSL_get_verify_result(k.c));
  close_pair(&k);
  SSL_CTX_free(client);
  client = client_ctx(ec_cert, NULL);
  k = connect_pair(client, server, "localhost", "other.test", NULL);
  CHECK(!k.ok && SSL_get_verify_result(k.c) == X509_V_ERR_HOSTNAME_MISMATCH, "wrong name: %ld",
        SSL_get_verify_result(k.c));
  close_pair(&k);
  SSL_CTX_free(client);

  SSL_CTX_free(server);
  SSL_CTX_free(rsa_server);
  X509_free(ec_cert);
  X509_free(rsa_cert);
  EVP_PKEY_free(ec_key);
  EVP_PKEY_free(rsa_key);
}

static void test_roots(void) {
  FILE *f = fopen(ROOTS_PEM, "r");
  char line[128];
  int in_file = 0;
  CHECK(f != NULL, "%s", ROOTS_PEM);
  if (!f) return;
  while (fgets(line, sizeof line, f))
    if (strcmp(line, "-----BEGIN CERTIFICATE-----\n") == 0) in_file++;
  fclose(f);
  X509_STORE *store = X509_STORE_new();
  CHECK(X509_STORE_load_file(store, ROOTS_PEM) == 1, "load %s", ROOTS_PEM);
  int loaded = sk_X509_OBJECT_num(X509_STORE_get0_objects(store));
  CHECK(in_file > 100 && loaded == in_file, "%d certificates in the file, %d loaded", in_file,
        loaded);
  X509_STORE_free(store);
}

/* Raw deflate (no zlib header), as WebSocket permessage-deflate uses it. */
static void test_zlib(void) {
  static unsigned char text[8192], packed[8192], back[8192];
  for (size_t i = 0; i < sizeof text; i++) text[i] = "luaio speaks WebSocket "[i % 23];
  z_stream z = {0};
  CHECK(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK, "deflateInit2");
  z.next_in = text, z.avail_in = sizeof text, z.next_out = packed, z.avail_out = sizeof packed;
  CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate");
  size_t packed_len = z.total_out;
  deflateEnd(&z);
  CHECK(packed_len < sizeof text / 10, "compressed to %zu bytes", packed_len);
  z_stream u = {0};
  CHECK(inflateInit2(&u, -15) == Z_OK, "inflateInit2");
  u.next_in = packed, u.avail_in = packed_len, u.next_out = back, u.avail_out = sizeof back;
  CHECK(inflate(&u, Z_FINISH) == Z_STREAM_END, "inflate");
  CHECK(u.total_out == sizeof text && memcmp(back, text, sizeof text) == 0, "round trip");
  inflateEnd(&u);
  CHECK(strcmp(zlibVersion(), ZLIB_VERSION) == 0, "zlib %s", zlibVersion());
}

static void test_yyjson(void) {
  static const char in[] = "{\"a\":[1,2.5,-3],\"s\":\"h\\u00e9\",\"t\":true,\"n\":null}";
  yyjson_doc *doc = yyjson_read(in, sizeof in - 1, 0);
  CHECK(doc != NULL, "parse");
  if (!doc) return;
  yyjson_val *root = yyjson_doc_get_root(doc);
  CHECK(yyjson_arr_size(yyjson_obj_get(root, "a")) == 3, "array size");
  CHECK(yyjson_get_real(yyjson_arr_get(yyjson_obj_get(root, "a"), 1)) == 2.5, "a real");
  CHECK(strcmp(yyjson_get_str(yyjson_obj_get(root, "s")), "h\xc3\xa9") == 0, "\\u escape");
  size_t len;
  char *out = yyjson_write(doc, 0, &len);
  CHECK(out && strcmp(out, "{\"a\":[1,2.5,-3],\"s\":\"h\xc3\xa9\",\"t\":true,\"n\":null}") == 0,
        "write: %s", out ? out : "(null)");
  free(out);
  yyjson_doc_free(doc);
  CHECK(yyjson_version() == YYJSON_VERSION_HEX, "yyjson %s", YYJSON_VERSION_STRING);
}

int main(void) {
  /* A static binary must not read the host's openssl.cnf: behave the same everywhere. */
  OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG, NULL);
  test_tls();
  test_roots();
  test_zlib();
  test_yyjson();
  printf("deps_test: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
