/*
 * tls.c: TLS 1.2 and 1.3 as a transport of the connection core, on OpenSSL 3.5.
 *
 * One custom BIO per connection joins OpenSSL to the core, as h2o's socket does: its read
 * hands OpenSSL the ciphertext libuv just read (from a static buffer shared by every
 * connection, so an idle connection holds none; only a partial record left over is copied
 * into a buffer of its own), its write appends records to the connection's output queue.
 * Plaintext is decrypted straight into the connection's input buffer, and the plaintext a
 * protocol writes is encrypted once per flush, small pieces coalesced into full records.
 * OpenSSL's own buffers are released while a connection is idle (SSL_MODE_RELEASE_BUFFERS).
 *
 * A TLS 1.3 server connection leaves OpenSSL when its handshake is over: the traffic secrets
 * (from the key log callback) and the sequence numbers go to luaio's own record layer
 * (tls_record.c) and the SSL object is freed. Only records, alerts and KeyUpdate remain to
 * be done after a TLS 1.3 handshake, and an SSL object kept for them costs 9 KB (18 KB for
 * a post-quantum key share, held to the end) where the keys take 200 bytes: 10,000 idle
 * keep-alive connections hold 2 MB of TLS state instead of 90 to 180 MB. OpenSSL keeps
 * clients, TLS 1.2, connections with a client certificate (tlsinfo reads it) and servers
 * made with openssl_records = true.
 *
 * Contexts (luaio_tlsctx) wrap an SSL_CTX with what luaio adds: several certificates chosen
 * by SNI (one child SSL_CTX each) or an sni(servername) Lua callback, ALPN, client session
 * caching, and session-ticket keys derived from one secret by time period, rotated every 12
 * hours, the same in every worker process (the secret travels in the environment to the
 * processes the app forks). Verification (chain and host name) is on by default in clients;
 * roots come from SSL_CERT_FILE / SSL_CERT_DIR, else the system's bundle, else the Mozilla
 * store compiled into the binary (roots.c, generated at build time).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"
#include "tls_record.h"
#include "zstd.h"

#define CTX_MT "luaio.tls.context"
#define RAW_SHARED 65536
#define RECORD 16384        /* plaintext coalesced into records of this size */
#define SESSIONS_MAX 64     /* client sessions kept per context */
#define TICKET_PERIOD 43200 /* seconds a ticket key is the current one */
#define HANDSHAKE_TIMEOUT 10000

extern const unsigned char luaio_roots_zst[]; /* the Mozilla roots, DER, zstd (roots.c) */
extern const size_t luaio_roots_zst_len;

struct luaio_tlsctx {
  SSL_CTX *ctx;
  int refs;
  uint8_t server, verify;
  uint32_t handshake_timeout;
  uint8_t openssl_records; /* servers: no move to tls_record.c after a TLS 1.3 handshake */
  /* servers: more certificates, chosen by SNI (child contexts), or a Lua callback */
  struct child {
    luaio_tlsctx *ctx;
    char **names; /* the certificate's DNS names, lower case; "*.example.com" wildcards */
    int nnames;
  } * children;
  int nchildren;
  int sni_ref;
  unsigned char *alpn; /* wire format: length-prefixed protocol names */
  unsigned alpn_len;
  /* clients: the last session per "host:port" */
  struct session {
    char *key;
    SSL_SESSION *sess;
  } sessions[SESSIONS_MAX];
  int nsessions;
};

/* A TLS 1.3 server handshake under way, for the move to tls_record.c at its end. */
struct handoff {
  uint8_t secret[2][48]; /* the client's and the server's application traffic secrets */
  uint8_t secret_len[2];
  /* the records OpenSSL writes, counted: those of the handshake's last step are the ones
   * already sealed with the server's application key (its session tickets) */
  uint8_t hdr[5], hdr_have, records, unsealed;
  uint16_t body_left;
};

/* A connection on tls_record.c: its keys and what tlsinfo reports. */
struct lean {
  luaio_tls13 rl;
  const char *cipher, *group; /* static strings */
  uint8_t resumed, alpn_len, peer_closed;
  uint8_t update_owed; /* the peer asked for a KeyUpdate: ours goes before our next data */
  uint8_t updates_row; /* KeyUpdates received since the last data */
  uint8_t hs_have;     /* bytes of a KeyUpdate cut across records, in hs */
  uint8_t hs[5];
  char names[];        /* the ALPN protocol (alpn_len bytes), then the SNI name and a NUL */
};

struct luaio_tls {
  SSL *ssl; /* NULL once on tls_record.c */
  struct handoff *handoff;
  struct lean *lean;
  char *pend; /* decrypted content that did not fit c->in: pend[poff..plen) */
  uint32_t poff, plen;
  luaio_tlsctx *ctx;
  luaio_outq *plain;
  char *raw; /* ciphertext OpenSSL has not taken yet: raw[roff..rlen) */
  uint32_t roff, rlen, rcap;
  const char *src; /* what the BIO's read hands out now */
  size_t src_len;
  char *session_key; /* clients: where to keep the session */
  int reason_kind;   /* 0, or 1 (ETLS) / 2 (ECERT) once failed */
  char *reason;
  int16_t failed; /* the stream failed after content that the protocol reads first */
  uint8_t shared_raw, handshake_done, closed_notify;
  uint8_t notify_pending; /* close_notify asked for before the handshake was done */
};

static char raw_shared[RAW_SHARED];

static BIO_METHOD *bio_method;
static int ssl_conn_index = -1; /* SSL ex_data: the luaio_conn */
static int ctx_index = -1;      /* SSL_CTX ex_data: the luaio_tlsctx */
static X509_STORE *default_store;
static const char *roots_source = "none", *roots_path;
static int roots_count;

/* --- the BIO between OpenSSL and the core ------------------------------------------------- */

static void count_records(struct handoff *h, const uint8_t *p, size_t n);

static int bio_write(BIO *b, const char *data, int len) {
  luaio_conn *c = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (c->tls->handoff != NULL) count_records(c->tls->handoff, (const uint8_t *)data, (size_t)len);
  if (luaio_conn_wire_write(c, data, (size_t)len) < 0) return -1;
  return len;
}

static int bio_read(BIO *b, char *out, int len) {
  luaio_conn *c = BIO_get_data(b);
  luaio_tls *t = c->tls;
  BIO_clear_retry_flags(b);
  if (t->src_len == 0) {
    BIO_set_retry_read(b);
    return -1;
  }
  size_t n = (size_t)len < t->src_len ? (size_t)len : t->src_len;
  memcpy(out, t->src, n);
  t->src += n;
  t->src_len -= n;
  return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)b, (void)num, (void)ptr;
  return cmd == BIO_CTRL_FLUSH || cmd == BIO_CTRL_PUSH || cmd == BIO_CTRL_POP ? 1 : 0;
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

/* --- OpenSSL's memory ---------------------------------------------------------------------- */

/* OpenSSL allocates from luaio's heap (core/heap.c says why). Its contract matches
 * luaio_heap_realloc's: (NULL, n) allocates, (p, 0) frees and returns NULL, (p, n)
 * reallocates; a request for 0 bytes returns NULL, as OpenSSL's own does. */
static void *ossl_malloc(size_t n, const char *file, int line) {
  (void)file, (void)line;
  return n > 0 ? luaio_heap_realloc(NULL, n) : NULL;
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line) {
  (void)file, (void)line;
  return luaio_heap_realloc(p, n);
}

static void ossl_free(void *p, const char *file, int line) {
  (void)file, (void)line;
  if (p != NULL) luaio_heap_realloc(p, 0);
}

/* Before main, so before OpenSSL allocates anything (after that the call fails). */
__attribute__((constructor)) static void ossl_memory(void) {
  CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free);
}

/* --- errors ---------------------------------------------------------------------------------- */

/* SSL_get_error needs an empty error queue before the call it explains. Clearing one that is
 * empty already walks all its entries, and this runs for every record: look first. */
static void err_reset(void) {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

/* Records why the handshake or the stream failed: kind 1 (ETLS) or 2 (ECERT). */
static void set_reason(luaio_tls *t, int kind, const char *why) {
  free(t->reason);
  t->reason_kind = kind;
  t->reason = strdup(why);
}

/* The reason from OpenSSL's error queue or the verification result. */
static void fail_reason(luaio_tls *t) {
  long verify = SSL_get_verify_result(t->ssl);
  unsigned long e = ERR_peek_last_error();
  if (verify != X509_V_OK && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    set_reason(t, 2, X509_verify_cert_error_string(verify));
  } else {
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    set_reason(t, 1, why ? why : "the TLS stream failed");
  }
  ERR_clear_error();
}

int luaio_tls_pusherror(lua_State *L, luaio_conn *c, int err) {
  luaio_tls *t = c ? c->tls : NULL;
  if (t == NULL || t->reason_kind == 0 || err != UV_EPROTO) return luaio_pusherror(L, err);
  return luaio_pushnamederror(L, t->reason_kind == 2 ? "ECERT" : "ETLS",
                              t->reason ? t->reason : "out of memory");
}

/* --- the transport ---------------------------------------------------------------------------- */

luaio_outq **luaio_tls_plain(luaio_conn *c) { return &c->tls->plain; }

int luaio_tls_handshaking(luaio_conn *c) { return c->tls != NULL && !c->tls->handshake_done; }

uint64_t luaio_tls_handshake_timeout(luaio_conn *c) { return c->tls->ctx->handshake_timeout; }

void luaio_tls_alloc(luaio_conn *c, uv_buf_t *buf) {
  luaio_tls *t = c->tls;
  if (t->rlen == t->roff) { /* nothing left over: read into the shared buffer */
    t->shared_raw = 1;
    *buf = uv_buf_init(raw_shared, sizeof raw_shared);
    return;
  }
  t->shared_raw = 0;
  if (t->roff > 0) { /* slide the leftover to the front */
    memmove(t->raw, t->raw + t->roff, t->rlen - t->roff);
    t->rlen -= t->roff;
    t->roff = 0;
  }
  if (t->rcap - t->rlen < 4096) {
    uint32_t cap = t->rcap ? t->rcap * 2 : 16384;
    char *p = realloc(t->raw, cap);
    if (p != NULL) {
      t->raw = p;
      t->rcap = cap;
    }
  }
  *buf = uv_buf_init(t->raw + t->rlen, t->rcap - t->rlen);
}

/* Keeps the ciphertext not taken yet (t->src: OpenSSL takes all, luaio's layer whole
 * records) for the next round. */
static void keep_leftover(luaio_tls *t) {
  if (!t->shared_raw) {
    t->roff = t->rlen - (uint32_t)t->src_len;
  } else {
    t->shared_raw = 0;
    t->roff = t->rlen = 0;
  }
  if (t->src_len == 0) {
    /* nothing left over: the buffer goes, or a connection that once got a record in
     * pieces (luaio's layer leaves them here) would keep 16 KiB while idle */
    free(t->raw);
    t->raw = NULL;
    t->rcap = t->roff = t->rlen = 0;
    return;
  }
  if (t->rlen > 0) return; /* the leftover is in t->raw already */
  if (t->rcap < t->src_len) {
    char *p = realloc(t->raw, t->src_len);
    if (p == NULL) return; /* dropped: the stream then fails, and says so */
    t->raw = p;
    t->rcap = (uint32_t)t->src_len;
  }
  memcpy(t->raw, t->src, t->src_len);
  t->rlen = (uint32_t)t->src_len;
}

static int lean_has_input(luaio_tls *t);

int luaio_tls_has_input(luaio_conn *c) {
  luaio_tls *t = c->tls;
  if (t == NULL) return 0;
  if (t->failed) return 1; /* the next input reports it */
  if (t->lean != NULL) return lean_has_input(t);
  return t->rlen > t->roff || SSL_pending(t->ssl) > 0;
}

static void session_save(luaio_tls *t);

/* The stream ended (err: UV_EOF or a read error) in the middle of the handshake or of a
 * record: a read error as itself, an end as a TLS failure. */
static int cut_short(luaio_tls *t, int err) {
  if (err != UV_EOF) return err;
  set_reason(t, 1, "unexpected eof while reading");
  return UV_EPROTO;
}

static void handoff(luaio_tls *t);
static int lean_input(luaio_conn *c, luaio_tls *t, int *flags);
static int lean_send(luaio_conn *c, struct lean *l, uint8_t type, const uint8_t *data, size_t n);

/* Decrypts with OpenSSL into c->in while there is room, adding to *flags; 0 or an error. */
static int ssl_input(luaio_conn *c, luaio_tls *t, int *flags) {
  for (;;) {
    uint32_t room;
    char *p = luaio_conn_in_space(c, &room);
    if (room == 0) break; /* the protocol reads slower: the rest waits (luaio_tls_has_input) */
    int r = SSL_read(t->ssl, p, (int)(room > INT32_MAX ? INT32_MAX : room));
    if (r > 0) {
      luaio_conn_in_added(c, (uint32_t)r);
      *flags |= LUAIO_TLS_DATA;
      continue;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
      /* the stream ended inside a record: a cut, not an end (an end without close_notify
       * between records is taken as one: SSL_OP_IGNORE_UNEXPECTED_EOF) */
      if (c->read_err != 0 && (t->src_len > 0 || SSL_has_pending(t->ssl))) {
        keep_leftover(t);
        return cut_short(t, c->read_err);
      }
      break;
    }
    if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: the peer's clean end */
      if (c->read_err == 0) c->read_err = UV_EOF;
      break;
    }
    keep_leftover(t);
    fail_reason(t);
    return UV_EPROTO;
  }
  keep_leftover(t);
  return 0;
}

int luaio_tls_input(luaio_conn *c, size_t n) {
  luaio_tls *t = c->tls;
  int flags = 0;
  if (t->failed) return t->failed;
  if (t->shared_raw) {
    t->src = raw_shared;
    t->src_len = n;
  } else {
    t->rlen += (uint32_t)n;
    t->src = t->raw + t->roff;
    t->src_len = t->rlen - t->roff;
  }
  err_reset();
  if (!t->handshake_done) {
    if (t->handoff != NULL) t->handoff->records = t->handoff->unsealed = 0; /* this step's */
    int r = SSL_do_handshake(t->ssl);
    if (r <= 0) {
      int e = SSL_get_error(t->ssl, r);
      keep_leftover(t);
      if (e == SSL_ERROR_WANT_READ) return c->read_err == 0 ? 0 : cut_short(t, c->read_err);
      fail_reason(t);
      return UV_EPROTO;
    }
    t->handshake_done = 1;
    flags |= LUAIO_TLS_HANDSHAKE_DONE;
    if (t->handoff != NULL) handoff(t);
  }
  int err = t->lean != NULL ? lean_input(c, t, &flags) : ssl_input(c, t, &flags);
  if (err < 0) {
    if (!(flags & LUAIO_TLS_DATA)) return err;
    t->failed = (int16_t)err; /* what came before the failure is read first */
    return flags;
  }
  if (t->session_key != NULL && (flags & (LUAIO_TLS_DATA | LUAIO_TLS_HANDSHAKE_DONE)))
    session_save(t);
  /* Plaintext written (or a close_notify asked for) during the handshake goes now: the
   * handshake's last message may have been the peer's, and then nothing else flushes. */
  if ((flags & LUAIO_TLS_HANDSHAKE_DONE) &&
      ((t->plain != NULL && t->plain->n > 0) || t->notify_pending))
    luaio_conn_flush(c);
  return flags;
}

/* Encrypts the plaintext queue with OpenSSL; 0 or an error. */
static int ssl_encrypt(luaio_tls *t, luaio_outq *q) {
  static char record[RECORD];
  size_t fill = 0, done = 0;
  err_reset();
  for (uint32_t i = 0; i < q->n; i++) {
    luaio_piece *p = &q->pieces[i];
    const char *data = p->base + p->off;
    size_t len = p->len - p->off;
    if (len >= RECORD && fill == 0) { /* large: straight from the piece */
      while (len > 0) {               /* SSL_MODE_ENABLE_PARTIAL_WRITE: a record or so per call */
        int w = SSL_write(t->ssl, data, len > (1u << 30) ? 1 << 30 : (int)len);
        if (w <= 0) goto failed;
        data += w;
        len -= (size_t)w;
        done += (size_t)w;
      }
      continue;
    }
    while (len > 0) { /* small ones share records */
      size_t k = RECORD - fill < len ? RECORD - fill : len;
      memcpy(record + fill, data, k);
      fill += k;
      data += k;
      len -= k;
      done += k;
      if (fill == RECORD) {
        if (SSL_write(t->ssl, record, RECORD) <= 0) goto failed;
        fill = 0;
      }
    }
  }
  if (fill > 0 && SSL_write(t->ssl, record, (int)fill) <= 0) goto failed;
  luaio_outq_advance(q, done);
  return 0;
failed:
  fail_reason(t);
  return UV_EPROTO;
}

static int lean_encrypt(luaio_conn *c, luaio_tls *t, luaio_outq *q);

int luaio_tls_encrypt(luaio_conn *c) {
  luaio_tls *t = c->tls;
  luaio_outq *q = t->plain;
  if (!t->handshake_done) return 0;
  if (t->notify_pending && (q == NULL || q->n == 0)) { /* after the last of the plaintext */
    t->notify_pending = 0;
    luaio_tls_close_notify(c);
  }
  if (q == NULL || q->n == 0) return 0;
  if (t->closed_notify) { /* nothing may follow close_notify */
    luaio_outq_advance(q, q->bytes);
    return 0;
  }
  int err = t->lean != NULL ? lean_encrypt(c, t, q) : ssl_encrypt(t, q);
  if (err == UV_EPROTO && t->reason_kind == 0) set_reason(t, 1, "internal error");
  if (err) return err;
  if (t->notify_pending) {
    t->notify_pending = 0;
    luaio_tls_close_notify(c);
  }
  return 0;
}

void luaio_tls_close_notify(luaio_conn *c) {
  luaio_tls *t = c->tls;
  if (t == NULL || t->closed_notify) return;
  if (!t->handshake_done) { /* sent once it is (luaio_tls_encrypt) */
    t->notify_pending = 1;
    return;
  }
  t->closed_notify = 1;
  if (t->lean != NULL) {
    static const uint8_t close_notify[2] = {1, LUAIO_TLS13_CLOSE_NOTIFY};
    lean_send(c, t->lean, LUAIO_TLS13_ALERT, close_notify, sizeof close_notify);
    return;
  }
  ERR_clear_error();
  SSL_shutdown(t->ssl);
  ERR_clear_error();
}

void luaio_tls_free(luaio_conn *c) {
  luaio_tls *t = c->tls;
  c->tls = NULL;
  if (t->plain != NULL) { /* emptied by the core at close; the struct goes */
    luaio_outq_advance(t->plain, t->plain->bytes);
    free(t->plain->pieces);
    free(t->plain);
  }
  SSL_free(t->ssl);
  luaio_tlsctx_unref(t->ctx);
  if (t->handoff != NULL) OPENSSL_cleanse(t->handoff, sizeof *t->handoff);
  free(t->handoff);
  if (t->lean != NULL) luaio_tls13_clear(&t->lean->rl);
  free(t->lean);
  free(t->pend);
  free(t->raw);
  free(t->session_key);
  free(t->reason);
  free(t);
}

/* --- luaio's TLS 1.3 record layer, after the handshake ----------------------------------------- */

#define REKEY_RECORDS (1u << 24) /* AES-GCM's limit is 2^24.5 records a key (RFC 8446 5.5) */
#define LEAN_RECORD (LUAIO_BLOCK - LUAIO_TLS13_OVERHEAD) /* a sealed record fills one block */
#define UPDATES_ROW_MAX 32 /* KeyUpdates in a row without data between them */

/* Counts the records in bytes OpenSSL writes (a server handshake's). */
static void count_records(struct handoff *h, const uint8_t *p, size_t n) {
  while (n > 0) {
    if (h->body_left > 0) {
      size_t k = n < h->body_left ? n : h->body_left;
      p += k;
      n -= k;
      h->body_left -= (uint16_t)k;
      continue;
    }
    h->hdr[h->hdr_have++] = *p++;
    n--;
    if (h->hdr_have < LUAIO_TLS13_HEADER) continue;
    h->hdr_have = 0;
    h->body_left = (uint16_t)(h->hdr[3] << 8 | h->hdr[4]);
    if (h->hdr[0] != LUAIO_TLS13_APPDATA || h->records == UINT8_MAX)
      h->unsealed = 1; /* no move: a record not sealed, or more than the count holds */
    else
      h->records++;
  }
}

static int hex_digit(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* OpenSSL's key log, in NSS's format ("LABEL <client random> <secret>", hex): a TLS 1.3
 * server keeps its application traffic secrets for the move to tls_record.c. It is the
 * only way OpenSSL gives them out. */
static void keylog(const SSL *ssl, const char *line) {
  luaio_conn *c = SSL_get_ex_data(ssl, ssl_conn_index);
  luaio_tls *t = c ? c->tls : NULL;
  int which = strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0   ? 0
              : strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0 ? 1
                                                                   : -1;
  if (t == NULL || which < 0 || t->ctx->openssl_records) return;
  const char *hex = strchr(line + 24, ' ');
  size_t n = hex ? strlen(hex + 1) / 2 : 0;
  if (n == 0 || n > sizeof t->handoff->secret[0]) return;
  if (t->handoff == NULL && (t->handoff = calloc(1, sizeof *t->handoff)) == NULL) return;
  for (size_t i = 0; i < n; i++) {
    int hi = hex_digit(hex[1 + 2 * i]), lo = hex_digit(hex[2 + 2 * i]);
    if (hi < 0 || lo < 0) return;
    t->handoff->secret[which][i] = (uint8_t)(hi << 4 | lo);
  }
  t->handoff->secret_len[which] = (uint8_t)n;
}

/* Group names outlive the SSL object they came from: each is kept once. */
static const char *group_name(const char *name) {
  static char *names[16];
  static int n;
  if (name == NULL) return NULL;
  for (int i = 0; i < n; i++)
    if (strcmp(names[i], name) == 0) return names[i];
  if (n == 16 || (names[n] = strdup(name)) == NULL) return NULL;
  return names[n++];
}

/* A finished TLS 1.3 server handshake moves to tls_record.c when the stream is at a record
 * boundary on both sides: nothing read and not yet handed out (so the next record the peer
 * sends is its first under the new keys, number 0) and every record of the last step sealed
 * with the server's application key (its session tickets: their count is the write
 * sequence). Otherwise, or for a client certificate, OpenSSL keeps the connection. */
static void handoff(luaio_tls *t) {
  struct handoff *h = t->handoff;
  SSL *ssl = t->ssl;
  const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
  const unsigned char *alpn = NULL;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  size_t sni_len = sni ? strlen(sni) : 0;
  struct lean *l = NULL;
  t->handoff = NULL;
  if (SSL_version(ssl) == TLS1_3_VERSION && cipher != NULL && h->secret_len[0] > 0 &&
      h->secret_len[0] == h->secret_len[1] && h->hdr_have == 0 && h->body_left == 0 &&
      !h->unsealed && !SSL_has_pending(ssl) && SSL_get0_peer_certificate(ssl) == NULL &&
      alpn_len <= UINT8_MAX)
    l = calloc(1, sizeof *l + alpn_len + sni_len + 1);
  if (l != NULL && luaio_tls13_init(&l->rl, SSL_CIPHER_get_protocol_id(cipher), h->secret[0],
                                    h->secret[1], h->secret_len[0]) == 0) {
    l->rl.wr.seq = h->records;
    l->cipher = SSL_CIPHER_get_name(cipher); /* OpenSSL's static table */
    l->group = group_name(SSL_get0_group_name(ssl));
    l->resumed = (uint8_t)SSL_session_reused(ssl);
    l->alpn_len = (uint8_t)alpn_len;
    if (alpn_len > 0) memcpy(l->names, alpn, alpn_len);
    if (sni_len > 0) memcpy(l->names + alpn_len, sni, sni_len);
    t->lean = l;
    t->ssl = NULL;
    SSL_free(ssl);
  } else if (l != NULL) {
    luaio_tls13_clear(&l->rl);
    free(l);
  }
  OPENSSL_cleanse(h, sizeof *h);
  free(h);
}

/* Seals one record of n bytes of type onto the wire. */
static int lean_send(luaio_conn *c, struct lean *l, uint8_t type, const uint8_t *data, size_t n) {
  uint8_t *out = (uint8_t *)luaio_conn_wire_reserve(c, n + LUAIO_TLS13_OVERHEAD);
  if (out == NULL) return UV_ENOMEM;
  if (luaio_tls13_seal(&l->rl, out, type, data, n) < 0) return UV_EPROTO;
  luaio_conn_wire_commit(c, n + LUAIO_TLS13_OVERHEAD);
  return 0;
}

/* Our KeyUpdate (update_not_requested when answering one), then our next key. */
static int send_key_update(luaio_conn *c, struct lean *l, int request) {
  const uint8_t msg[5] = {24, 0, 0, 1, (uint8_t)request};
  int err = lean_send(c, l, LUAIO_TLS13_HANDSHAKE, msg, sizeof msg);
  if (err == 0 && luaio_tls13_update(&l->rl, 1) < 0) err = UV_EPROTO;
  l->update_owed = 0;
  return err;
}

/* The stream failed: why, and the fatal alert that tells the peer. */
static int lean_fail(luaio_conn *c, luaio_tls *t, int alert, const char *why) {
  const uint8_t msg[2] = {2, (uint8_t)alert};
  ERR_clear_error(); /* what EVP left there must not explain another connection's failure */
  if (why == NULL && alert == LUAIO_TLS13_BAD_RECORD_MAC)
    why = "decryption failed or bad record mac"; /* OpenSSL's words for it */
  set_reason(t, 1, why ? why : SSL_alert_desc_string_long(alert));
  if (!t->closed_notify) lean_send(c, t->lean, LUAIO_TLS13_ALERT, msg, sizeof msg);
  t->closed_notify = 1; /* nothing more goes out */
  keep_leftover(t);
  return UV_EPROTO;
}

/* Hands out decrypted content that did not fit c->in before; 1 once all of it is out. */
static int deliver_pending(luaio_conn *c, luaio_tls *t, int *flags) {
  while (t->plen > t->poff) {
    uint32_t room;
    char *p = luaio_conn_in_space(c, &room);
    if (room == 0) return 0;
    uint32_t k = t->plen - t->poff < room ? t->plen - t->poff : room;
    memcpy(p, t->pend + t->poff, k);
    luaio_conn_in_added(c, k);
    t->poff += k;
    *flags |= LUAIO_TLS_DATA;
  }
  free(t->pend);
  t->pend = NULL;
  t->poff = t->plen = 0;
  return 1;
}

/* n bytes of content go to c->in: they are there already when the record was opened
 * straight into the space luaio_conn_in_space gave (room bytes); what does not fit waits
 * in t->pend. */
static int lean_data(luaio_conn *c, luaio_tls *t, const uint8_t *content, int n, char *space,
                     uint32_t room) {
  if ((const char *)content == space) {
    luaio_conn_in_added(c, (uint32_t)n);
    return 0;
  }
  uint32_t k = (uint32_t)n < room ? (uint32_t)n : room;
  memcpy(space, content, k);
  luaio_conn_in_added(c, k);
  if (k == (uint32_t)n) return 0;
  if ((t->pend = malloc((size_t)n - k)) == NULL) return UV_ENOMEM;
  memcpy(t->pend, content + k, (size_t)n - k);
  t->poff = 0;
  t->plen = (uint32_t)n - k;
  return 0;
}

/* An alert record: close_notify ends the stream, user_canceled is nothing, the rest fail. */
static int lean_alert(luaio_conn *c, luaio_tls *t, const uint8_t *p, int n) {
  if (n != 2) return lean_fail(c, t, LUAIO_TLS13_DECODE_ERROR, NULL);
  if (p[1] == LUAIO_TLS13_USER_CANCELED) return 0;
  if (p[1] == LUAIO_TLS13_CLOSE_NOTIFY) {
    t->lean->peer_closed = 1;
    if (c->read_err == 0) c->read_err = UV_EOF;
    return 0;
  }
  char why[80];
  snprintf(why, sizeof why, "the peer sent alert %s", SSL_alert_desc_string_long(p[1]));
  set_reason(t, 1, why);
  t->closed_notify = 1;
  return UV_EPROTO;
}

/* A handshake record after the handshake: a KeyUpdate is all a client may send. It may be
 * cut across records (RFC 8446 5.1), which then carry nothing else, and ends its record,
 * since the key changes after it. */
static int lean_handshake(luaio_conn *c, luaio_tls *t, const uint8_t *p, int n) {
  static const uint8_t key_update[4] = {24, 0, 0, 1}; /* its type and length */
  struct lean *l = t->lean;
  if (n == 0) return lean_fail(c, t, LUAIO_TLS13_UNEXPECTED_MESSAGE, NULL); /* 5.1: not empty */
  for (int i = 0; i < n; i++) {
    uint8_t have = l->hs_have;
    if (have == sizeof l->hs) /* bytes after a whole KeyUpdate: the key changed there */
      return lean_fail(c, t, LUAIO_TLS13_UNEXPECTED_MESSAGE, NULL);
    if (have == 0 && p[i] != key_update[0])
      return lean_fail(c, t, LUAIO_TLS13_UNEXPECTED_MESSAGE, NULL);
    if ((have < 4 && p[i] != key_update[have]) || (have == 4 && p[i] > 1))
      return lean_fail(c, t, LUAIO_TLS13_DECODE_ERROR, "bad key update");
    l->hs[l->hs_have++] = p[i];
  }
  if (l->hs_have < sizeof l->hs) return 0; /* the rest comes in the next record */
  l->hs_have = 0;
  /* each costs key derivations: a peer sending nothing else is not let burn the CPU */
  if (++l->updates_row > UPDATES_ROW_MAX)
    return lean_fail(c, t, LUAIO_TLS13_UNEXPECTED_MESSAGE, "too many key updates");
  if (luaio_tls13_update(&l->rl, 0) < 0) return lean_fail(c, t, LUAIO_TLS13_INTERNAL_ERROR, NULL);
  if (l->hs[4] == 1) l->update_owed = 1; /* requests since our last KeyUpdate count once */
  return 0;
}

/* Content waits, or a whole record (or a header that fails it): not a record's first part,
 * which waits for more from the socket. */
static int lean_has_input(luaio_tls *t) {
  if (t->plen > t->poff) return 1;
  uint32_t n = t->rlen - t->roff;
  const uint8_t *hdr = (const uint8_t *)t->raw + t->roff;
  if (n < LUAIO_TLS13_HEADER) return 0;
  size_t len = (size_t)hdr[3] << 8 | hdr[4];
  return n >= LUAIO_TLS13_HEADER + len || hdr[0] != LUAIO_TLS13_APPDATA ||
         len > LUAIO_TLS13_CIPHER_MAX;
}

/* Opens the records in t->src into c->in while there is room, adding to *flags; 0 or an
 * error. */
static int lean_input(luaio_conn *c, luaio_tls *t, int *flags) {
  struct lean *l = t->lean;
  int stalled = !deliver_pending(c, t, flags);
  while (!stalled && !l->peer_closed && t->src_len >= LUAIO_TLS13_HEADER) {
    uint8_t *hdr = (uint8_t *)t->src; /* raw_shared or t->raw: ours to write */
    size_t len = (size_t)hdr[3] << 8 | hdr[4];
    if (hdr[0] != LUAIO_TLS13_APPDATA) /* every record is sealed now */
      return lean_fail(c, t, LUAIO_TLS13_UNEXPECTED_MESSAGE, NULL);
    if (len > LUAIO_TLS13_CIPHER_MAX) return lean_fail(c, t, LUAIO_TLS13_RECORD_OVERFLOW, NULL);
    if (t->src_len < LUAIO_TLS13_HEADER + len) break;
    uint32_t room;
    char *space = luaio_conn_in_space(c, &room);
    if (room == 0) {
      stalled = 1;
      break;
    }
    uint8_t *body = hdr + LUAIO_TLS13_HEADER, type;
    uint8_t *out = room >= len ? (uint8_t *)space : body; /* into c->in, or in place */
    int n = luaio_tls13_open(&l->rl, hdr, body, len, out, &type);
    t->src += LUAIO_TLS13_HEADER + len;
    t->src_len -= LUAIO_TLS13_HEADER + len;
    int err = 0;
    if (n < 0)
      return lean_fail(c, t, -n, NULL);
    else if (l->hs_have > 0 && type != LUAIO_TLS13_HANDSHAKE) /* inside a KeyUpdate */
      err = lean_fail(c, t, LUAIO_TLS13_UNEXPECTED_MESSAGE, NULL);
    else if (type == LUAIO_TLS13_APPDATA && n > 0) {
      *flags |= LUAIO_TLS_DATA;
      l->updates_row = 0;
      err = lean_data(c, t, out, n, space, room);
      stalled = t->pend != NULL;
    } else if (type == LUAIO_TLS13_ALERT)
      err = lean_alert(c, t, out, n);
    else if (type == LUAIO_TLS13_HANDSHAKE)
      err = lean_handshake(c, t, out, n);
    else if (type != LUAIO_TLS13_APPDATA)
      err = lean_fail(c, t, LUAIO_TLS13_UNEXPECTED_MESSAGE, NULL);
    if (err < 0) {
      keep_leftover(t);
      return err;
    }
  }
  if (l->peer_closed) t->src_len = 0;                   /* nothing counts after close_notify */
  if (!stalled && c->read_err != 0 && t->src_len > 0) { /* ended inside a record */
    keep_leftover(t);
    return cut_short(t, c->read_err);
  }
  keep_leftover(t);
  /* answered at once unless the peer does not read: then with our next data */
  if (l->update_owed && !t->closed_notify && luaio_conn_queued(c) <= c->high_water &&
      send_key_update(c, l, 0) < 0)
    return UV_EPROTO;
  return 0;
}

/* Seals the plaintext queue onto the wire, records gathered from its pieces. */
static int lean_encrypt(luaio_conn *c, luaio_tls *t, luaio_outq *q) {
  struct lean *l = t->lean;
  if ((l->update_owed || l->rl.wr.seq >= REKEY_RECORDS) && send_key_update(c, l, 0) < 0)
    return UV_EPROTO;
  uint32_t i = 0, off = q->n > 0 ? q->pieces[0].off : 0;
  uint64_t left = q->bytes;
  while (left > 0) {
    size_t n = left < LEAN_RECORD ? (size_t)left : LEAN_RECORD, k = 0;
    uint8_t *out = (uint8_t *)luaio_conn_wire_reserve(c, n + LUAIO_TLS13_OVERHEAD);
    if (out == NULL) return UV_ENOMEM;
    if (luaio_tls13_seal_begin(&l->rl, out, n) < 0) return UV_EPROTO;
    while (k < n) {
      luaio_piece *p = &q->pieces[i];
      size_t take = p->len - off < n - k ? p->len - off : n - k;
      if (luaio_tls13_seal_update(out + LUAIO_TLS13_HEADER + k, (uint8_t *)p->base + off, take) < 0)
        return UV_EPROTO;
      k += take;
      off += (uint32_t)take;
      if (off == p->len && ++i < q->n) off = q->pieces[i].off;
    }
    if (luaio_tls13_seal_end(&l->rl, out + LUAIO_TLS13_HEADER + n, LUAIO_TLS13_APPDATA) < 0)
      return UV_EPROTO;
    luaio_conn_wire_commit(c, n + LUAIO_TLS13_OVERHEAD);
    left -= n;
  }
  luaio_outq_advance(q, q->bytes);
  return 0;
}

/* --- client sessions --------------------------------------------------------------------------- */

static void session_save(luaio_tls *t) {
  SSL_SESSION *s = SSL_get1_session(t->ssl);
  if (s == NULL) return;
  if (!SSL_SESSION_is_resumable(s)) {
    SSL_SESSION_free(s);
    return;
  }
  luaio_tlsctx *x = t->ctx;
  for (int i = 0; i < x->nsessions; i++) {
    if (strcmp(x->sessions[i].key, t->session_key) != 0) continue;
    SSL_SESSION_free(x->sessions[i].sess);
    x->sessions[i].sess = s;
    return;
  }
  if (x->nsessions == SESSIONS_MAX) { /* full: the oldest goes */
    free(x->sessions[0].key);
    SSL_SESSION_free(x->sessions[0].sess);
    memmove(x->sessions, x->sessions + 1, (SESSIONS_MAX - 1) * sizeof x->sessions[0]);
    x->nsessions--;
  }
  char *key = strdup(t->session_key);
  if (key == NULL) {
    SSL_SESSION_free(s);
    return;
  }
  x->sessions[x->nsessions].key = key;
  x->sessions[x->nsessions++].sess = s;
}

static SSL_SESSION *session_find(luaio_tlsctx *x, const char *key) {
  for (int i = 0; i < x->nsessions; i++)
    if (strcmp(x->sessions[i].key, key) == 0) return x->sessions[i].sess;
  return NULL;
}

/* --- attaching ------------------------------------------------------------------------------------- */

static int is_ip(const char *s) {
  unsigned char buf[16];
  return uv_inet_pton(AF_INET, s, buf) == 0 || uv_inet_pton(AF_INET6, s, buf) == 0;
}

int luaio_tls_attach(luaio_conn *c, luaio_tlsctx *ctx, const char *servername) {
  if (c->tls != NULL) return UV_EALREADY;
  luaio_tls *t = calloc(1, sizeof *t);
  if (t == NULL) return UV_ENOMEM;
  t->ssl = SSL_new(ctx->ctx);
  BIO *bio = BIO_new(bio_method);
  if (t->ssl == NULL || bio == NULL) {
    BIO_free(bio);
    SSL_free(t->ssl);
    free(t);
    return UV_ENOMEM;
  }
  BIO_set_data(bio, c);
  SSL_set_bio(t->ssl, bio, bio);
  SSL_set_ex_data(t->ssl, ssl_conn_index, c);
  t->ctx = ctx;
  luaio_tlsctx_ref(ctx);
  c->tls = t;
  if (ctx->server) {
    SSL_set_accept_state(t->ssl);
  } else {
    SSL_set_connect_state(t->ssl);
    if (servername != NULL && *servername != '\0') {
      if (!is_ip(servername)) SSL_set_tlsext_host_name(t->ssl, servername);
      if (ctx->verify) {
        if (is_ip(servername))
          X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), servername);
        else
          SSL_set1_host(t->ssl, servername);
      }
      char key[300];
      struct sockaddr_storage addr;
      int port = 0;
      if (luaio_conn_peer(c, &addr) == 0)
        port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
                                                : ((struct sockaddr_in *)&addr)->sin_port);
      snprintf(key, sizeof key, "%.255s:%d", servername, port);
      t->session_key = strdup(key);
      SSL_SESSION *s = t->session_key ? session_find(ctx, t->session_key) : NULL;
      if (s != NULL) SSL_set_session(t->ssl, s);
    }
  }
  /* What arrived before TLS began (a STARTTLS peer that did not wait) is its first
   * ciphertext. */
  if (c->in != NULL && c->in->len > c->in->off) {
    uint32_t n = c->in->len - c->in->off;
    if ((t->raw = malloc(n)) != NULL) {
      memcpy(t->raw, c->in->data + c->in->off, n);
      t->rlen = t->rcap = n;
    }
    luaio_conn_consume(c, n);
  }
  luaio_conn_tls_started(c);
  if (!ctx->server) { /* the client speaks first */
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r <= 0 && SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ) {
      fail_reason(t);
      return UV_EPROTO;
    }
  }
  luaio_conn_flush(c);
  return 0;
}

/* --- info ------------------------------------------------------------------------------------------ */

static void push_name(lua_State *L, X509_NAME *name) {
  BIO *b = BIO_new(BIO_s_mem());
  if (b == NULL) {
    lua_pushnil(L);
    return;
  }
  X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char *data;
  long n = BIO_get_mem_data(b, &data);
  lua_pushlstring(L, data, (size_t)n);
  BIO_free(b);
}

static void push_time(lua_State *L, const ASN1_TIME *at) {
  struct tm tm;
  if (at == NULL || !ASN1_TIME_to_tm(at, &tm)) {
    lua_pushnil(L);
    return;
  }
  lua_pushnumber(L, (lua_Number)timegm(&tm));
}

static void push_peer(lua_State *L, X509 *x) {
  lua_createtable(L, 0, 6);
  push_name(L, X509_get_subject_name(x));
  lua_setfield(L, -2, "subject");
  push_name(L, X509_get_issuer_name(x));
  lua_setfield(L, -2, "issuer");
  push_time(L, X509_get0_notBefore(x));
  lua_setfield(L, -2, "not_before");
  push_time(L, X509_get0_notAfter(x));
  lua_setfield(L, -2, "not_after");
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
  char *hex = bn ? BN_bn2hex(bn) : NULL;
  if (hex)
    lua_pushstring(L, hex);
  else
    lua_pushnil(L);
  lua_setfield(L, -2, "serial");
  OPENSSL_free(hex);
  BN_free(bn);
  lua_newtable(L);
  GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
    GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    if (g->type != GEN_DNS) continue;
    lua_pushlstring(L, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                    (size_t)ASN1_STRING_length(g->d.dNSName));
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
  }
  GENERAL_NAMES_free(names);
  lua_setfield(L, -2, "names");
}

/* tlsinfo of a connection on tls_record.c: what was kept at the move. */
static void push_lean_info(lua_State *L, struct lean *l) {
  lua_createtable(L, 0, 7);
  lua_pushliteral(L, "TLSv1.3");
  lua_setfield(L, -2, "version");
  lua_pushliteral(L, "luaio");
  lua_setfield(L, -2, "records");
  lua_pushstring(L, l->cipher);
  lua_setfield(L, -2, "cipher");
  if (l->group) {
    lua_pushstring(L, l->group);
    lua_setfield(L, -2, "group");
  }
  if (l->alpn_len > 0) {
    lua_pushlstring(L, l->names, l->alpn_len);
    lua_setfield(L, -2, "alpn");
  }
  lua_pushboolean(L, l->resumed);
  lua_setfield(L, -2, "resumed");
  if (l->names[l->alpn_len] != '\0') {
    lua_pushstring(L, l->names + l->alpn_len);
    lua_setfield(L, -2, "servername");
  }
}

void luaio_tls_push_info(lua_State *L, luaio_conn *c) {
  luaio_tls *t = c ? c->tls : NULL;
  if (t == NULL || !t->handshake_done) {
    lua_pushnil(L);
    return;
  }
  if (t->lean != NULL) {
    push_lean_info(L, t->lean);
    return;
  }
  lua_createtable(L, 0, 8);
  lua_pushstring(L, SSL_get_version(t->ssl));
  lua_setfield(L, -2, "version");
  lua_pushliteral(L, "openssl");
  lua_setfield(L, -2, "records");
  lua_pushstring(L, SSL_get_cipher_name(t->ssl));
  lua_setfield(L, -2, "cipher");
  const char *group = SSL_get0_group_name(t->ssl);
  if (group) {
    lua_pushstring(L, group);
    lua_setfield(L, -2, "group");
  }
  const unsigned char *alpn;
  unsigned alen;
  SSL_get0_alpn_selected(t->ssl, &alpn, &alen);
  if (alen > 0) {
    lua_pushlstring(L, (const char *)alpn, alen);
    lua_setfield(L, -2, "alpn");
  }
  lua_pushboolean(L, SSL_session_reused(t->ssl));
  lua_setfield(L, -2, "resumed");
  const char *sni = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
  if (sni) {
    lua_pushstring(L, sni);
    lua_setfield(L, -2, "servername");
  }
  X509 *peer = SSL_get0_peer_certificate(t->ssl);
  if (peer) {
    push_peer(L, peer);
    lua_setfield(L, -2, "peer");
  }
}

/* --- roots ----------------------------------------------------------------------------------------- */

static const char *const system_bundles[] = {
    "/etc/ssl/certs/ca-certificates.crt", /* Debian, Ubuntu, Alpine */
    "/etc/pki/tls/certs/ca-bundle.crt",   /* Fedora, RHEL */
    "/etc/ssl/ca-bundle.pem",             /* openSUSE */
    "/etc/ssl/cert.pem",                  /* Alpine, macOS-like layouts */
    NULL};

static int count_store(X509_STORE *store) {
  STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
  int n = 0;
  for (int i = 0; i < sk_X509_OBJECT_num(objs); i++)
    if (X509_OBJECT_get_type(sk_X509_OBJECT_value(objs, i)) == X509_LU_X509) n++;
  return n;
}

static int load_embedded(X509_STORE *store) {
  unsigned long long size = ZSTD_getFrameContentSize(luaio_roots_zst, luaio_roots_zst_len);
  unsigned char *der = size < (1u << 24) ? malloc(size) : NULL;
  if (der == NULL || ZSTD_decompress(der, size, luaio_roots_zst, luaio_roots_zst_len) != size) {
    free(der);
    return 0;
  }
  const unsigned char *p = der, *end = der + size;
  while (p < end) {
    X509 *x = d2i_X509(NULL, &p, end - p);
    if (x == NULL) break;
    X509_STORE_add_cert(store, x);
    X509_free(x);
  }
  free(der);
  ERR_clear_error();
  return count_store(store);
}

/* The store every verifying client shares unless it names its own CA: loaded once. */
static X509_STORE *roots(void) {
  if (default_store != NULL) return default_store;
  X509_STORE *store = X509_STORE_new();
  if (store == NULL) return NULL;
  const char *file = getenv("SSL_CERT_FILE"), *dir = getenv("SSL_CERT_DIR");
  if ((file && *file) || (dir && *dir)) {
    /* both may be given: the file is what is counted and named */
    if (dir && *dir && X509_STORE_load_path(store, dir))
      roots_source = "SSL_CERT_DIR", roots_path = dir;
    if (file && *file && X509_STORE_load_file(store, file))
      roots_source = "SSL_CERT_FILE", roots_path = file;
  } else {
    for (int i = 0; system_bundles[i] != NULL; i++) {
      FILE *f = fopen(system_bundles[i], "r");
      if (f == NULL) continue;
      fclose(f);
      if (X509_STORE_load_file(store, system_bundles[i])) {
        roots_source = "system";
        roots_path = system_bundles[i];
        break;
      }
    }
    if (roots_path == NULL) {
      load_embedded(store);
      roots_source = "embedded";
    }
  }
  ERR_clear_error();
  roots_count = count_store(store);
  default_store = store;
  return store;
}

/* tls.roots() -> {source = "SSL_CERT_FILE" | "SSL_CERT_DIR" | "system" | "embedded", path,
 * count}; count is 0 for a directory (its files are read when needed) */
static int tls_roots(lua_State *L) {
  roots();
  lua_createtable(L, 0, 3);
  lua_pushstring(L, roots_source);
  lua_setfield(L, -2, "source");
  if (roots_path) {
    lua_pushstring(L, roots_path);
    lua_setfield(L, -2, "path");
  }
  lua_pushinteger(L, roots_count);
  lua_setfield(L, -2, "count");
  return 1;
}

/* --- session tickets -------------------------------------------------------------------------------- */

static unsigned char ticket_secret[32];
static int ticket_secret_ready;

/* The secret behind the ticket keys: LUAIO_TLS_TICKET_SECRET when the environment has it (a
 * worker forked by the app), else made now and put there, so the app's workers share it. */
static void ticket_secret_init(void) {
  if (ticket_secret_ready) return;
  const char *hex = getenv("LUAIO_TLS_TICKET_SECRET");
  int ok = hex != NULL && strlen(hex) == 64;
  for (int i = 0; ok && i < 32; i++) {
    unsigned v;
    ok = sscanf(hex + 2 * i, "%2x", &v) == 1;
    ticket_secret[i] = (unsigned char)v;
  }
  if (!ok) {
    char out[65];
    RAND_bytes(ticket_secret, sizeof ticket_secret);
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", ticket_secret[i]);
    setenv("LUAIO_TLS_TICKET_SECRET", out, 1);
  }
  ticket_secret_ready = 1;
}

typedef struct {
  unsigned char name[16], aes[32], hmac[32];
  long period;
} ticket_key;

/* The key of a period: HMAC-SHA256 of the secret over the period and the part's label. The
 * keys of the last two periods asked for are kept: three HMACs per ticket were a visible
 * share of a full handshake. The secret never changes once set (ticket_secret_init). */
static const ticket_key *ticket_key_for(long period) {
  static ticket_key keys[2];
  static int ready[2];
  ticket_key *k = &keys[period & 1];
  if (ready[period & 1] && k->period == period) return k;
  unsigned char out[32];
  unsigned len;
  char label[48];
  snprintf(label, sizeof label, "luaio ticket %ld name", period);
  HMAC(EVP_sha256(), ticket_secret, 32, (unsigned char *)label, strlen(label), out, &len);
  memcpy(k->name, out, 16);
  snprintf(label, sizeof label, "luaio ticket %ld aes", period);
  HMAC(EVP_sha256(), ticket_secret, 32, (unsigned char *)label, strlen(label), k->aes, &len);
  snprintf(label, sizeof label, "luaio ticket %ld hmac", period);
  HMAC(EVP_sha256(), ticket_secret, 32, (unsigned char *)label, strlen(label), k->hmac, &len);
  k->period = period;
  ready[period & 1] = 1;
  return k;
}

static int ticket_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc) {
  long period = (long)(time(NULL) / TICKET_PERIOD);
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
      OSSL_PARAM_construct_end()};
  if (enc) {
    const ticket_key *k = ticket_key_for(period);
    if (RAND_bytes(iv, 16) <= 0) return -1;
    memcpy(name, k->name, 16);
    if (!EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv)) return -1;
    return EVP_MAC_init(hctx, k->hmac, sizeof k->hmac, params) ? 1 : -1;
  }
  for (int age = 0; age < 2; age++) { /* the current key, or the one before it */
    const ticket_key *k = ticket_key_for(period - age);
    if (memcmp(name, k->name, 16) != 0) continue;
    if (!EVP_MAC_init(hctx, k->hmac, sizeof k->hmac, params)) return -1;
    if (!EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv)) return -1;
    /* 2: accepted, and a new ticket is sent. Always in TLS 1.3, whose clients use a ticket
     * once (RFC 8446, C.4): without one a client that reconnects again and again resumed
     * only every other time. In TLS 1.2 a ticket may be reused: renewed when its key is old. */
    return age > 0 || SSL_version(s) == TLS1_3_VERSION ? 2 : 1;
  }
  return 0; /* unknown key: a full handshake */
}

/* --- contexts ------------------------------------------------------------------------------------- */

void luaio_tlsctx_ref(luaio_tlsctx *x) { x->refs++; }

void luaio_tlsctx_unref(luaio_tlsctx *x) {
  if (--x->refs > 0) return;
  for (int i = 0; i < x->nchildren; i++) {
    for (int j = 0; j < x->children[i].nnames; j++) free(x->children[i].names[j]);
    free(x->children[i].names);
    luaio_tlsctx_unref(x->children[i].ctx);
  }
  free(x->children);
  for (int i = 0; i < x->nsessions; i++) {
    free(x->sessions[i].key);
    SSL_SESSION_free(x->sessions[i].sess);
  }
  if (x->sni_ref != LUA_NOREF) luaL_unref(luaio_mainstate(), LUA_REGISTRYINDEX, x->sni_ref);
  free(x->alpn);
  SSL_CTX_free(x->ctx);
  free(x);
}

luaio_tlsctx *luaio_tlsctx_check(lua_State *L, int idx) {
  luaio_tlsctx **box = luaL_checkudata(L, idx, CTX_MT);
  if (*box == NULL) luaL_argerror(L, idx, "TLS context already freed");
  return *box;
}

/* A string option, or NULL. */
static const char *opt_string(lua_State *L, int opts, const char *name, size_t *len) {
  lua_getfield(L, opts, name);
  const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, len) : NULL;
  lua_pop(L, 1); /* the options table keeps it alive */
  return s;
}

/* Fails a context creation: raises with OpenSSL's reason. */
static int ctx_error(lua_State *L, luaio_tlsctx *x, const char *what) {
  unsigned long e = ERR_peek_last_error();
  const char *why = e ? ERR_reason_error_string(e) : NULL;
  ERR_clear_error();
  if (x != NULL) luaio_tlsctx_unref(x);
  lua_pushnil(L);
  luaio_namederror(L, "ETLS", lua_pushfstring(L, "%s: %s", what, why ? why : "failed"));
  lua_remove(L, -2);
  return 2;
}

/* Loads the PEM certificate chain and key (strings) into ctx. */
static int use_cert(SSL_CTX *ctx, const char *cert, size_t cert_len, const char *key,
                    size_t key_len) {
  BIO *b = BIO_new_mem_buf(cert, (int)cert_len);
  X509 *x = b ? PEM_read_bio_X509_AUX(b, NULL, NULL, NULL) : NULL;
  int ok = x != NULL && SSL_CTX_use_certificate(ctx, x) == 1;
  X509_free(x);
  SSL_CTX_clear_chain_certs(ctx);
  while (ok) { /* the rest of the PEM is the chain */
    X509 *extra = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (extra == NULL) break;
    if (!SSL_CTX_add0_chain_cert(ctx, extra)) {
      X509_free(extra);
      ok = 0;
    }
  }
  BIO_free(b);
  ERR_clear_error(); /* the end of the PEM reads as an error */
  if (!ok) return 0;
  b = BIO_new_mem_buf(key, (int)key_len);
  EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  ok = k != NULL && SSL_CTX_use_PrivateKey(ctx, k) == 1 && SSL_CTX_check_private_key(ctx) == 1;
  EVP_PKEY_free(k);
  return ok;
}

/* Adds the PEM certificates in pem to store; returns how many. */
static int add_pem_certs(X509_STORE *store, const char *pem, size_t len) {
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  int n = 0;
  X509 *x;
  while (b != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
    if (X509_STORE_add_cert(store, x)) n++;
    X509_free(x);
  }
  BIO_free(b);
  ERR_clear_error();
  return n;
}

static int alpn_select(SSL *s, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg) {
  (void)s;
  luaio_tlsctx *x = arg;
  if (x->alpn == NULL) return SSL_TLSEXT_ERR_NOACK;
  /* the server's order of preference decides */
  if (SSL_select_next_proto((unsigned char **)out, outlen, x->alpn, x->alpn_len, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL; /* RFC 7301: no common protocol */
  return SSL_TLSEXT_ERR_OK;
}

/* Whether a certificate name ("www.example.com" or "*.example.com") covers host. */
static int name_matches(const char *pattern, const char *host) {
  if (pattern[0] == '*' && pattern[1] == '.') {
    const char *dot = strchr(host, '.');
    return dot != NULL && dot != host && strcasecmp(dot + 1, pattern + 2) == 0;
  }
  return strcasecmp(pattern, host) == 0;
}

typedef struct {
  luaio_tlsctx *x;
  const char *name;
  luaio_tlsctx *chosen;
} sni_call_t;

static void call_sni(lua_State *L, void *arg) {
  sni_call_t *a = arg;
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->x->sni_ref);
  lua_pushstring(L, a->name);
  lua_call(L, 1, 1);
  luaio_tlsctx **box = luaL_testudata(L, -1, CTX_MT);
  if (box == NULL && !lua_isnil(L, -1))
    luaL_error(L, "sni callback: a context from tls.server{...} or nil expected, got %s",
               luaL_typename(L, -1));
  a->chosen = box ? *box : NULL;
  lua_pop(L, 1);
}

static int servername_cb(SSL *s, int *alert, void *arg) {
  (void)alert;
  luaio_tlsctx *x = arg;
  const char *name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
  if (name == NULL) return SSL_TLSEXT_ERR_NOACK; /* the first certificate answers */
  for (int i = 0; i < x->nchildren; i++)
    for (int j = 0; j < x->children[i].nnames; j++)
      if (name_matches(x->children[i].names[j], name)) {
        SSL_set_SSL_CTX(s, x->children[i].ctx->ctx);
        return SSL_TLSEXT_ERR_OK;
      }
  if (x->sni_ref != LUA_NOREF) {
    sni_call_t a = {x, name, NULL};
    if (luaio_protect(call_sni, &a, "tls sni callback") != 0) return SSL_TLSEXT_ERR_ALERT_FATAL;
    if (a.chosen != NULL && a.chosen->ctx != NULL) SSL_set_SSL_CTX(s, a.chosen->ctx);
  }
  return SSL_TLSEXT_ERR_OK;
}

/* The DNS names of ctx's certificate (subjectAltName, else the CN), lower case. */
static void collect_names(struct child *ch) {
  X509 *x = SSL_CTX_get0_certificate(ch->ctx->ctx);
  if (x == NULL) return;
  GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  int n = names ? sk_GENERAL_NAME_num(names) : 0;
  ch->names = calloc((size_t)n + 1, sizeof *ch->names);
  for (int i = 0; ch->names && i < n; i++) {
    GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    if (g->type == GEN_DNS)
      ch->names[ch->nnames++] = strndup((const char *)ASN1_STRING_get0_data(g->d.dNSName),
                                        (size_t)ASN1_STRING_length(g->d.dNSName));
  }
  GENERAL_NAMES_free(names);
  if (ch->names != NULL && ch->nnames == 0) { /* no SAN: the subject's CN */
    char cn[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn) > 0)
      ch->names[ch->nnames++] = strdup(cn);
  }
}

/* The settings every context shares: versions, ciphers, modes. */
static int base_settings(lua_State *L, SSL_CTX *ctx, int opts) {
  size_t n;
  const char *min = opt_string(L, opts, "min_version", &n);
  int version = TLS1_2_VERSION;
  if (min != NULL) {
    if (strcmp(min, "1.3") == 0)
      version = TLS1_3_VERSION;
    else if (strcmp(min, "1.2") != 0)
      return 0;
  }
  SSL_CTX_set_min_proto_version(ctx, version);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                               SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  const char *ciphers = opt_string(L, opts, "ciphers", &n);
  /* TLS 1.2: forward secrecy and AEAD only (Mozilla's "intermediate", without DHE) */
  if (!SSL_CTX_set_cipher_list(
          ctx, ciphers ? ciphers
                       : "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                         "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                         "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"))
    return 0;
  /* TLS 1.3: Mozilla's order. OpenSSL's own puts AES-256-GCM-SHA384 first, whose key
   * schedule hashes with SHA-384: 7% of a full handshake here, against SHA-256 on the CPU's
   * SHA extensions. With SSL_OP_CIPHER_SERVER_PREFERENCE the server's order decides. */
  const char *suites = opt_string(L, opts, "ciphersuites", &n);
  if (!SSL_CTX_set_ciphersuites(ctx, suites ? suites
                                            : "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                              "TLS_CHACHA20_POLY1305_SHA256"))
    return 0;
  return 1;
}

static luaio_tlsctx *ctx_new(lua_State *L, int server) {
  luaio_tlsctx *x = calloc(1, sizeof *x);
  if (x == NULL) return NULL;
  x->refs = 1;
  x->server = (uint8_t)server;
  x->sni_ref = LUA_NOREF;
  x->handshake_timeout = HANDSHAKE_TIMEOUT;
  x->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (x->ctx == NULL) {
    free(x);
    return NULL;
  }
  SSL_CTX_set_ex_data(x->ctx, ctx_index, x);
  (void)L;
  return x;
}

static void push_ctx(lua_State *L, luaio_tlsctx *x) {
  luaio_tlsctx **box = lua_newuserdata(L, sizeof *box);
  *box = x;
  luaL_getmetatable(L, CTX_MT);
  lua_setmetatable(L, -2);
}

/* Reads alpn = {"h2", "http/1.1"} into wire format. */
static int read_alpn(lua_State *L, int opts, luaio_tlsctx *x) {
  lua_getfield(L, opts, "alpn");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return 1;
  }
  size_t total = 0, count = lua_objlen(L, -1);
  for (size_t i = 1; i <= count; i++) {
    lua_rawgeti(L, -1, (int)i);
    size_t n = 0;
    lua_tolstring(L, -1, &n);
    lua_pop(L, 1);
    if (n == 0 || n > 255) {
      lua_pop(L, 1);
      return 0;
    }
    total += n + 1;
  }
  x->alpn = malloc(total ? total : 1);
  if (x->alpn == NULL) {
    lua_pop(L, 1);
    return 0;
  }
  for (size_t i = 1; i <= count; i++) {
    lua_rawgeti(L, -1, (int)i);
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    x->alpn[x->alpn_len++] = (unsigned char)n;
    memcpy(x->alpn + x->alpn_len, s, n);
    x->alpn_len += (unsigned)n;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 1;
}

/* Server settings on one SSL_CTX (the main one and each SNI child). */
static void server_settings(luaio_tlsctx *x, luaio_tlsctx *main) {
  SSL_CTX *ctx = x->ctx;
  ticket_secret_init();
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
  SSL_CTX_set_num_tickets(ctx, 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* tickets carry the sessions */
  SSL_CTX_set_alpn_select_cb(ctx, alpn_select, main);
  SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
  SSL_CTX_set_tlsext_servername_arg(ctx, main);
  SSL_CTX_set_keylog_callback(ctx, keylog); /* the handshake's end moves to tls_record.c */
}

/* Client certificates: requested when the server names client_ca, required with
 * verify_client. SNI children verify the same way (a handshake moved to a child's SSL_CTX
 * verifies against that SSL_CTX's store). The session id context is a digest of these
 * settings, so that a session resumes only where it would have been verified the same
 * way (OpenSSL refuses to resume without one when it verifies peers). */
static int client_verify(luaio_tlsctx *x, const char *ca, size_t calen, int verify_client) {
  unsigned char sid[32];
  unsigned sid_len = 0;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) &&
           EVP_DigestUpdate(md, verify_client ? "1" : "0", 1) &&
           (ca == NULL || EVP_DigestUpdate(md, ca, calen)) && EVP_DigestFinal_ex(md, sid, &sid_len);
  EVP_MD_CTX_free(md);
  if (!ok) return 0;
  int mode = ca != NULL || verify_client
                 ? SSL_VERIFY_PEER | (verify_client ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0)
                 : SSL_VERIFY_NONE;
  X509_STORE *store = SSL_CTX_get_cert_store(x->ctx);
  STACK_OF(X509_NAME) *names = SSL_CTX_get_client_CA_list(x->ctx);
  for (int i = -1; i < x->nchildren; i++) {
    SSL_CTX *ctx = i < 0 ? x->ctx : x->children[i].ctx->ctx;
    if (!SSL_CTX_set_session_id_context(ctx, sid, sid_len)) return 0;
    SSL_CTX_set_verify(ctx, mode, NULL);
    if (i < 0) continue;
    SSL_CTX_set1_cert_store(ctx, store);
    if (names != NULL) SSL_CTX_set_client_CA_list(ctx, SSL_dup_CA_list(names));
  }
  return 1;
}

/* C.context(options, server) -> context | nil, err. The options are checked by tls.lua;
 * certificates and keys are PEM text here (tls.lua reads files and bundle paths). */
static int tls_context(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int server = lua_toboolean(L, 2);
  luaio_tlsctx *x = ctx_new(L, server);
  if (x == NULL) return ctx_error(L, NULL, "SSL_CTX_new");
  if (!base_settings(L, x->ctx, 1)) return ctx_error(L, x, "min_version, ciphers or ciphersuites");
  lua_getfield(L, 1, "handshake_timeout");
  if (lua_isnumber(L, -1)) x->handshake_timeout = luaio_ms32((uint64_t)lua_tonumber(L, -1));
  lua_pop(L, 1);
  if (!read_alpn(L, 1, x)) return ctx_error(L, x, "alpn");
  size_t clen, klen, calen;
  const char *cert = opt_string(L, 1, "cert", &clen), *key = opt_string(L, 1, "key", &klen);
  const char *ca = opt_string(L, 1, server ? "client_ca" : "ca", &calen);
  if (cert != NULL && (key == NULL || !use_cert(x->ctx, cert, clen, key, klen)))
    return ctx_error(L, x, "cert/key");
  if (server) {
    lua_getfield(L, 1, "openssl_records");
    x->openssl_records = (uint8_t)lua_toboolean(L, -1);
    lua_pop(L, 1);
    server_settings(x, x);
    lua_getfield(L, 1, "certs"); /* more certificates, chosen by the client's SNI */
    int nc = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    if (nc > 0 && (x->children = calloc((size_t)nc, sizeof *x->children)) == NULL)
      return ctx_error(L, x, "certs");
    for (int i = 1; i <= nc; i++) {
      lua_rawgeti(L, -1, i);
      int o = lua_gettop(L);
      luaio_tlsctx *child = ctx_new(L, 1);
      if (child == NULL) return ctx_error(L, x, "certs");
      x->children[x->nchildren++].ctx = child;
      size_t cl, kl;
      const char *cc = opt_string(L, o, "cert", &cl), *ck = opt_string(L, o, "key", &kl);
      if (!base_settings(L, child->ctx, 1) || cc == NULL || ck == NULL ||
          !use_cert(child->ctx, cc, cl, ck, kl))
        return ctx_error(L, x, "certs");
      /* no default certificate: the first one, chain and all */
      if (i == 1 && cert == NULL && !use_cert(x->ctx, cc, cl, ck, kl))
        return ctx_error(L, x, "certs");
      server_settings(child, x);
      collect_names(&x->children[i - 1]);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, "sni");
    if (lua_isfunction(L, -1))
      x->sni_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    else
      lua_pop(L, 1);
    lua_getfield(L, 1, "verify_client");
    int verify_client = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (ca != NULL) {
      X509_STORE *store = SSL_CTX_get_cert_store(x->ctx);
      if (add_pem_certs(store, ca, calen) == 0) return ctx_error(L, x, "client_ca");
      STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
      BIO *b = BIO_new_mem_buf(ca, (int)calen);
      X509 *c;
      while (names && b && (c = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        sk_X509_NAME_push(names, X509_NAME_dup(X509_get_subject_name(c)));
        X509_free(c);
      }
      BIO_free(b);
      ERR_clear_error();
      SSL_CTX_set_client_CA_list(x->ctx, names);
    }
    if (!client_verify(x, ca, calen, verify_client)) return ctx_error(L, x, "client_ca");
    if (cert == NULL && x->nchildren == 0 && x->sni_ref == LUA_NOREF)
      return ctx_error(L, x, "a server needs cert and key, certs, or sni");
  } else {
    lua_getfield(L, 1, "verify");
    x->verify = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    SSL_CTX_set_session_cache_mode(x->ctx,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    if (x->alpn) SSL_CTX_set_alpn_protos(x->ctx, x->alpn, x->alpn_len);
    if (x->verify) {
      SSL_CTX_set_verify(x->ctx, SSL_VERIFY_PEER, NULL);
      if (ca != NULL) {
        if (add_pem_certs(SSL_CTX_get_cert_store(x->ctx), ca, calen) == 0)
          return ctx_error(L, x, "ca");
      } else {
        X509_STORE *store = roots();
        if (store == NULL) return ctx_error(L, x, "roots");
        SSL_CTX_set1_cert_store(x->ctx, store);
      }
    }
  }
  push_ctx(L, x);
  return 1;
}

static int ctx_gc(lua_State *L) {
  luaio_tlsctx **box = lua_touserdata(L, 1);
  if (*box != NULL) luaio_tlsctx_unref(*box);
  *box = NULL;
  return 0;
}

static int ctx_tostring(lua_State *L) {
  luaio_tlsctx *x = luaio_tlsctx_check(L, 1);
  lua_pushfstring(L, "tls context (%s, %p)", x->server ? "server" : "client", (void *)x);
  return 1;
}

static const luaL_Reg tls_funcs[] = {{"context", tls_context}, {"roots", tls_roots}, {NULL, NULL}};

int luaopen_luaio_tls(lua_State *L) {
  if (bio_method == NULL) {
    OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG, NULL); /* a static binary reads no openssl.cnf */
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "luaio");
    BIO_meth_set_write(bio_method, bio_write);
    BIO_meth_set_read(bio_method, bio_read);
    BIO_meth_set_ctrl(bio_method, bio_ctrl);
    BIO_meth_set_create(bio_method, bio_create);
    ssl_conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  }
  if (luaL_newmetatable(L, CTX_MT)) {
    lua_pushcfunction(L, ctx_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, ctx_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  luaio_newlib(L, tls_funcs);
  return 1;
}

/* --- for protocols: how the peer ended (added for the HTTP client) ------------------------- */

/* A read EOF looks the same to protocols whether close_notify came first or not (an end
 * between records is taken as an end); a protocol whose message ends with the connection
 * (an HTTP body without a length) asks here whether it was the peer's clean end. */
int luaio_tls_peer_closed(luaio_conn *c) {
  luaio_tls *t = c->tls;
  if (t == NULL) return 0;
  if (t->lean != NULL) return t->lean->peer_closed;
  return t->ssl != NULL && (SSL_get_shutdown(t->ssl) & SSL_RECEIVED_SHUTDOWN) != 0;
}
