/*
 * dns.c: the `dns` module (seed-api.md, "dns"), name lookups through uv_getaddrinfo.
 *
 * getaddrinfo blocks, so libuv runs it on its thread pool and the task waits; the loop
 * goes on serving others. A numeric address is its own answer: it is parsed here and
 * returned at once, without a thread-pool round trip or a yield.
 */
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "luaio.h"

/* One lookup in flight: the libuv request, the waiting task and its anchor. */
typedef struct {
  uv_getaddrinfo_t req;
  struct addrinfo hints;
  lua_State *co;
  int ref;
  int family;
} lookup_t;

/* Pushes nil, err. getaddrinfo's "no such name" codes become ENOTFOUND (the name users of
 * other runtimes know, and one name for both "no such host" and "no address of this
 * family"); the code stays libuv's, so nothing is lost. */
static int push_lookup_error(lua_State *L, int status) {
  if (status == UV_EAI_NONAME || status == UV_EAI_NODATA || status == UV_EAI_ADDRFAMILY) {
    lua_pushnil(L);
    luaio_newerror(L, status, "ENOTFOUND", uv_strerror(status));
    return 2;
  }
  return luaio_pusherror(L, status);
}

/* Pushes the array of the distinct addresses of `family` in res, in resolver order. */
static void push_addresses(lua_State *L, const struct addrinfo *res, int family) {
  lua_newtable(L); /* the result */
  lua_newtable(L); /* seen: address -> true */
  int n = 0;
  for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
    char name[INET6_ADDRSTRLEN];
    if (ai->ai_family != family) continue;
    if (family == AF_INET)
      uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, name, sizeof name);
    else
      uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, name, sizeof name);
    lua_getfield(L, -1, name);
    int dup = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (dup) continue;
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, name);
    lua_pushstring(L, name);
    lua_rawseti(L, -3, ++n);
  }
  lua_pop(L, 1);
}

static void lookup_done(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  lookup_t *lk = req->data;
  lua_State *co = lk->co;
  int nresults;
  if (status < 0) {
    nresults = push_lookup_error(co, status);
  } else {
    push_addresses(co, res, lk->family);
    nresults = 1;
    if (lua_objlen(co, -1) == 0) { /* only other families came back */
      lua_pop(co, 1);
      nresults = push_lookup_error(co, UV_EAI_NODATA);
    }
  }
  uv_freeaddrinfo(res);
  luaio_unanchor(lk->ref);
  free(lk);
  luaio_resume(co, nresults);
}

/* Pushes {host} when host is a numeric address of family (in canonical form, as a lookup
 * gives it) and returns 1; returns 0 otherwise.
 *
 * Not inlined, on purpose: LuaJIT raises errors and yields by unwinding the C stack, which
 * ASan does not see, so the redzones of a frame that raises or yields stay poisoned and a
 * later call reports a false overflow there. Functions that raise or yield therefore hold
 * no arrays and no locals whose address is taken; such buffers live in helpers like this. */
__attribute__((noinline)) static int push_numeric(lua_State *L, int family, const char *host) {
  unsigned char bin[sizeof(struct in6_addr)];
  char name[INET6_ADDRSTRLEN];
  if (uv_inet_pton(family, host, bin) != 0) return 0;
  uv_inet_ntop(family, bin, name, sizeof name);
  lua_createtable(L, 1, 0);
  lua_pushstring(L, name);
  lua_rawseti(L, -2, 1);
  return 1;
}

static int resolve(lua_State *L, int family, const char *what) {
  /* a number is not a host name: "123" would parse as the address 0.0.0.123 */
  if (lua_type(L, 1) != LUA_TSTRING) luaL_typerror(L, 1, "string");
  const char *host = luaio_checkcstring(L, 1);
  if (push_numeric(L, family, host)) return 1; /* no lookup, no wait */
  luaio_checktask(L, what);
  lookup_t *lk = calloc(1, sizeof *lk);
  if (lk == NULL) return luaL_error(L, "%s: out of memory", what);
  lk->hints.ai_family = family;
  lk->hints.ai_socktype = SOCK_STREAM; /* one entry per address, not one per socket type */
  lk->co = L;
  lk->family = family;
  lk->req.data = lk;
  int err = uv_getaddrinfo(luaio_loop(), &lk->req, lookup_done, host, NULL, &lk->hints);
  if (err < 0) {
    free(lk);
    return push_lookup_error(L, err);
  }
  lk->ref = luaio_anchor(L);
  return luaio_yield(L);
}

/* dns.resolve4(hostname) -> {"a.b.c.d", ...}, or nil, err (name "ENOTFOUND" for no such name) */
static int dns_resolve4(lua_State *L) { return resolve(L, AF_INET, "resolve4"); }

/* dns.resolve6(hostname) -> {"::1", ...}, or nil, err */
static int dns_resolve6(lua_State *L) { return resolve(L, AF_INET6, "resolve6"); }

static const luaL_Reg dns_funcs[] = {
    {"resolve4", dns_resolve4}, {"resolve6", dns_resolve6}, {NULL, NULL}};

int luaopen_dns(lua_State *L) {
  luaio_newlib(L, dns_funcs);
  return 1;
}
