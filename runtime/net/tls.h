/*
 * tls.h: TLS as a transport of the connection core (tls.c, on OpenSSL 3.5). Protocols never
 * see it: they read plaintext from c->in and write plaintext with luaio_conn_write; the
 * core hands ciphertext between the socket and this transport.
 */
#ifndef LUAIO_TLS_H
#define LUAIO_TLS_H

#include "conn.h"

#define LUAIO_TLS_DATA 1           /* luaio_tls_input: plaintext was added to c->in */
#define LUAIO_TLS_HANDSHAKE_DONE 2 /* luaio_tls_input: the handshake just completed */

/* A TLS context: certificates, verification, ALPN, tickets; shared by the connections made
 * with it (reference counted; a Lua userdata holds one reference). */
typedef struct luaio_tlsctx luaio_tlsctx;

/* --- the transport, for conn.c ------------------------------------------------------------ */

/* Where protocols' plaintext waits for the next flush to encrypt it. */
luaio_outq **luaio_tls_plain(luaio_conn *c);
/* Room for ciphertext from the socket. */
void luaio_tls_alloc(luaio_conn *c, uv_buf_t *buf);
/* n bytes of ciphertext arrived where luaio_tls_alloc said (n == 0: go on with what is
 * buffered, after the protocol made room). Decrypts into c->in; returns LUAIO_TLS_* flags,
 * or UV_EPROTO when the handshake or the stream failed (luaio_tls_pusherror says why).
 * Output it causes (handshake messages, tickets, alerts) goes to the wire. */
int luaio_tls_input(luaio_conn *c, size_t n);
/* Ciphertext or decrypted bytes wait for room in c->in. */
int luaio_tls_has_input(luaio_conn *c);
/* Encrypts the plaintext queue onto the wire; 0 or an error. */
int luaio_tls_encrypt(luaio_conn *c);
/* Queues close_notify (once): the end of the stream, told apart from a cut. */
void luaio_tls_close_notify(luaio_conn *c);
int luaio_tls_handshaking(luaio_conn *c);
uint64_t luaio_tls_handshake_timeout(luaio_conn *c);
/* Frees the transport (the connection's handle is closed). */
void luaio_tls_free(luaio_conn *c);

/* --- for protocols and modules ----------------------------------------------------------- */

/* The context userdata at idx (raises otherwise). */
luaio_tlsctx *luaio_tlsctx_check(lua_State *L, int idx);
void luaio_tlsctx_ref(luaio_tlsctx *ctx);
void luaio_tlsctx_unref(luaio_tlsctx *ctx);
/* Puts TLS under connection c: as a server when ctx is a server context, else as a client
 * verifying servername (a host name or an IP address; NULL: no SNI, no host check). Bytes
 * already in c->in are taken as the first ciphertext (STARTTLS). A client sends its hello
 * at once. Returns 0 or an error. */
int luaio_tls_attach(luaio_conn *c, luaio_tlsctx *ctx, const char *servername);
/* Pushes nil, err for a failure on c: the TLS reason when err is a TLS failure
 * ({name = "ETLS" or "ECERT", message = "certificate has expired"}), else as
 * luaio_pusherror. Returns 2. */
int luaio_tls_pusherror(lua_State *L, luaio_conn *c, int err);
/* Pushes {version, cipher, alpn, resumed, servername, peer = {...}} or nil (no TLS). */
void luaio_tls_push_info(lua_State *L, luaio_conn *c);
/* Whether the peer sent close_notify (0 without TLS): a read EOF alone does not tell. */
int luaio_tls_peer_closed(luaio_conn *c);

int luaopen_luaio_tls(lua_State *L);

#endif
