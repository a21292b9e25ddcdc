/*
 * redis_resp.h: a RESP2/RESP3 reply parser. Pure C: no Lua, no libuv, no allocation; the
 * caller owns the buffer and every string in a token points into it. It parses one token
 * at a time (a scalar, or the header of an aggregate) and tracks the nesting itself, so
 * the caller only follows instructions: put this value at this depth, in this role, then
 * close this many aggregates. Attributes (RESP3 `|`) are parsed and marked `skip`.
 *
 *   resp_parser p;
 *   resp_init(&p);
 *   for (;;) {
 *     resp_token t;
 *     size_t need;
 *     long n = resp_next(&p, buf, len, &t, &need);
 *     if (n == RESP_INCOMPLETE) break;      // read more (need: bytes the token takes, if known)
 *     if (n == RESP_ERROR) fail();          // not RESP: the stream is lost
 *     use(&t);                              // t.str points into buf: copy it before moving on
 *     buf += n, len -= n;
 *     if (t.closes ... && p.depth == 0) a whole reply is done
 *   }
 *
 * Types: $ + = (strings; `=` verbatim gives the text after "fmt:"), - ! (errors), : , #
 * ( _ (integer, double, boolean, big number as its digits, null), * % ~ > (array, map,
 * set, push: a header with a count, then the elements; a map counts pairs), | (attribute,
 * skipped), and the RESP2 nulls $-1 and *-1. Streamed strings and aggregates ($? *?),
 * which no server sends, are errors.
 *
 * Strict where the grammar is clear: lines end with CRLF, lengths and counts are digits
 * with no sign but the -1 of a null, a bulk string is followed by CRLF, simple strings
 * and errors hold no CR or LF. Limits: RESP_MAX_DEPTH open aggregates, bulk strings up
 * to RESP_MAX_BULK bytes, counts up to RESP_MAX_COUNT, lines (simple strings, numbers) up
 * to whatever the caller buffers (the caller bounds it).
 */
#ifndef LUAIO_REDIS_RESP_H
#define LUAIO_REDIS_RESP_H

#include <stddef.h>
#include <stdint.h>

#define RESP_MAX_DEPTH 64
#define RESP_MAX_BULK 0x7fffff00LL /* LuaJIT's longest string */
#define RESP_MAX_COUNT 0x7fffffffLL

#define RESP_INCOMPLETE 0L
#define RESP_ERROR (-1L)

typedef enum {
  RESP_STRING = 1, /* str, len */
  RESP_ERR,        /* str, len: the message */
  RESP_INTEGER,    /* i */
  RESP_DOUBLE,     /* d */
  RESP_BOOLEAN,    /* i: 0 or 1 */
  RESP_BIGNUM,     /* str, len: the digits, with their sign */
  RESP_NULL,
  RESP_ARRAY, /* i: elements; 0 means an empty one, complete at once */
  RESP_MAP,   /* i: pairs */
  RESP_SET,
  RESP_PUSH,
  RESP_ATTRIBUTE /* only with skip set */
} resp_type;

typedef enum { RESP_ITEM = 0, RESP_KEY, RESP_VALUE } resp_role;

typedef struct {
  uint8_t type;   /* resp_type */
  uint8_t depth;  /* open aggregates around this value: 0 = a reply of its own */
  uint8_t role;   /* in a map: key or value; else item */
  uint8_t skip;   /* part of an attribute: not a value, ignore it */
  uint8_t closes; /* aggregates (not skipped) this token completes, innermost first */
  const char *str;
  size_t len;
  int64_t i;
  double d;
} resp_token;

typedef struct {
  uint32_t depth; /* open aggregates, attributes included */
  struct {
    int64_t left; /* elements still to come (a map: keys and values) */
    uint8_t type, skip;
  } stack[RESP_MAX_DEPTH];
} resp_parser;

void resp_init(resp_parser *p);

/* Parses the token at buf[0..len). Returns the bytes it takes (> 0) and fills *t, or
 * RESP_INCOMPLETE when buf does not hold all of it (*need: the bytes it takes in all when
 * its header says so, as for a bulk string; 0 when unknown yet), or RESP_ERROR. On
 * RESP_INCOMPLETE the parser is unchanged: call again with more bytes. After RESP_ERROR
 * the parser's state is undefined. */
long resp_next(resp_parser *p, const char *buf, size_t len, resp_token *t, size_t *need);

/* For a caller that streams a bulk string itself: when buf starts with a whole `$N\r\n`
 * header, returns its length and sets *n (-1: the null string); RESP_INCOMPLETE when it may
 * still become one; RESP_ERROR when buf starts with anything else. The parser is not
 * involved: the caller consumes the N bytes and the CRLF itself. */
long resp_bulk_header(const char *buf, size_t len, int64_t *n);

#endif
