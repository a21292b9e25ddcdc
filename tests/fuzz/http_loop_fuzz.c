/*
 * http_loop_fuzz.c: libFuzzer target for the HTTP server's request loop, not just its
 * parser: the whole runtime (./build.sh fuzz builds it with the sanitizers) runs an HTTP
 * server on loopback with handlers that read part of a body, read all of it, stream, yield,
 * raise mid-response and set their own Content-Length; each input is sent on a fresh TCP
 * connection (then half-closed) and the loop runs until the server has closed it. Pipelined
 * requests, chunked bodies cut anywhere, garbage after a body: whatever the input, the server
 * must neither crash, nor leak, nor hang (libFuzzer's -timeout catches a hang), and must end
 * the connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "luaio.h"

static lua_State *L;
static int port;

static const char *SERVER =
    "local http = require 'http'\n"
    "local task = require 'task'\n"
    "local function handler(req, res)\n"
    "  local p = req.path\n"
    "  if p == '/read4' then req:read(4) return res:finish('x') end\n"
    "  if p == '/body' then local b = req:body() return res:finish(b and #b .. '' or 'err') end\n"
    "  if p == '/stream' then res:write('a') task.yield() res:write('b') return res:finish() end\n"
    "  if p == '/error' then res:write('x') error('boom') end\n"
    "  if p == '/len' then res:setHeader('Content-Length', '5') return res:finish('12345') end\n"
    "  if p == '/short' then res:setHeader('Content-Length', '9') res:write('123') return end\n"
    "  if p == '/headers' then local n = 0 for _ in pairs(req.headers) do n = n + 1 end\n"
    "    return res:finish(tostring(n) .. tostring(req.query.a) .. tostring(req.host)) end\n"
    "  if p == '/upgrade' then local s = res:upgrade() if s then s:write(s:read() or '') end return end\n"
    "  res:finish('ok')\n"
    "end\n"
    "local server = assert(http.createServer(0, handler, { host = '127.0.0.1', graceful = false,\n"
    "  max_header_size = 2048, max_body_size = 4096, header_timeout = 2000, body_timeout = 2000,\n"
    "  keepalive_timeout = 2000 }))\n"
    "return server:address().port\n";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  L = luaio_state_new("http_loop_fuzz", 0, NULL);
  if (luaL_loadstring(L, SERVER) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
    fprintf(stderr, "http_loop_fuzz: %s\n", lua_tostring(L, -1));
    abort();
  }
  port = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return 0;
}

/* Sends the input on a new connection, half-closes, and runs the loop until the server has
 * closed its end (reading and dropping what it answers, so that it never waits for us). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = -1;
  for (int tries = 0; fd < 0 && tries < 100; tries++) { /* local ports may run short */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
      close(fd);
      fd = -1;
      usleep(10000);
    }
  }
  if (fd < 0) abort();
  /* Closed with a reset when done: no TIME_WAIT per input (a run makes thousands). */
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  fcntl(fd, F_SETFL, O_NONBLOCK);
  size_t sent = 0;
  int shut = 0;
  char sink[65536];
  for (int rounds = 0;; rounds++) {
    while (sent < size) {
      ssize_t n = write(fd, data + sent, size - sent);
      if (n <= 0) break;
      sent += (size_t)n;
    }
    if (sent == size && !shut) {
      shutdown(fd, SHUT_WR);
      shut = 1;
    }
    uv_run(luaio_loop(), UV_RUN_NOWAIT);
    ssize_t n = read(fd, sink, sizeof sink);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) break; /* closed */
    if (n < 0) usleep(rounds < 1000 ? 0 : 100); /* nothing yet: let the server work */
  }
  close(fd);
  for (int i = 0; i < 8; i++) uv_run(luaio_loop(), UV_RUN_NOWAIT); /* the close callbacks */
  return 0;
}
