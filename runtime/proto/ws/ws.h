/*
 * ws.h: the WebSocket protocol's parts.
 *
 *   ws_frame.c    frame headers, masking, UTF-8, close codes, the accept key (pure C)
 *   ws_deflate.c  permessage-deflate over zlib (shared streams; see there)
 *   ws.c          the protocol on the connection core and the luaio.websocket module
 *
 * stdlib/websocket.lua is the Lua half: handshakes, options, the router shortcut.
 */
#ifndef LUAIO_WS_H
#define LUAIO_WS_H

#include "conn.h"
#include "ws_frame.h"

#define WS_INFLATE_BAD (-1)     /* not a valid deflate stream: close 1007 */
#define WS_INFLATE_TOO_BIG (-2) /* inflates past the limit: close 1009 */
#define WS_INFLATE_NOMEM (-3)

/* Compresses one message with the shared stream for a window of `bits` (9-15), without
 * context takeover, minus the 00 00 ff ff tail. *out points into a buffer that the next call
 * reuses. Returns 0 or -1 (out of memory). */
int ws_deflate(int bits, const uint8_t *src, size_t n, const uint8_t **out, size_t *out_len);
/* Inflates one whole message (its frames' payloads, concatenated) into a buffer that the next
 * call reuses, at most max bytes. own: NULL for a peer without context takeover (the shared
 * stream is used and reset), else the address of the connection's own stream pointer (made
 * on first use). Returns 0 or WS_INFLATE_*. */
int ws_inflate(void **own, const uint8_t *src, size_t n, uint64_t max, const uint8_t **out,
               size_t *out_len);
void ws_inflate_free(void **own);
/* Frees the shared output buffer when a large message made it large. */
void ws_scratch_trim(void);

int luaopen_luaio_websocket(lua_State *L);

#endif
