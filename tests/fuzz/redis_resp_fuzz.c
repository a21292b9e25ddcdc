/*
 * redis_resp_fuzz.c: libFuzzer target for runtime/proto/redis/redis_resp.c (./build.sh fuzz).
 *
 * The first input byte picks how the bytes are fed in the second pass; the rest is a stream
 * of replies. Every call reads a heap copy of exactly the bytes it may see, so
 * AddressSanitizer catches any overread. Checked besides memory safety:
 *   - a result is > 0 and at most the bytes given, RESP_INCOMPLETE or RESP_ERROR;
 *   - strings lie inside the token's bytes; depth stays within RESP_MAX_DEPTH; a token closes
 *     no more aggregates than are open; roles alternate key, value inside maps;
 *   - a model of the nesting kept from the tokens alone (what redis.c's builder does) agrees
 *     with the parser's depth after every token, and every whole reply ends at depth 0;
 *   - feeding the bytes in pieces (INCOMPLETE, then more) gives the same tokens as one call
 *     with everything, and an INCOMPLETE that names `need` completes with exactly that many;
 *   - resp_bulk_header agrees with resp_next on bulk string headers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redis_resp.h"

#define ASSERT(c) ((c) ? (void)0 : abort())
#define MAXTOK 4096

typedef struct {
  long n;
  resp_token t;
  size_t off; /* of str in the stream, or SIZE_MAX */
} rec_t;

/* Calls resp_next on a heap copy of buf[0..len). */
static long next(resp_parser *p, const uint8_t *buf, size_t len, resp_token *t, size_t *need,
                 size_t *str_off) {
  char *copy = malloc(len ? len : 1);
  memcpy(copy, buf, len);
  long n = resp_next(p, copy, len, t, need);
  ASSERT(n == RESP_INCOMPLETE || n == RESP_ERROR || (n > 0 && (size_t)n <= len));
  *str_off = SIZE_MAX;
  if (n > 0 && t->str != NULL) {
    ASSERT(t->str >= copy && t->len <= (size_t)n && (size_t)(t->str - copy) <= (size_t)n - t->len);
    *str_off = (size_t)(t->str - copy);
  }
  free(copy);
  return n;
}

/* The nesting as the tokens tell it, checked against the parser. */
typedef struct {
  int depth;
  struct {
    int64_t left;
    int map;
  } st[RESP_MAX_DEPTH];
} model_t;

static void model_token(model_t *m, const resp_parser *p, const resp_token *t) {
  if (t->skip) return;
  ASSERT(t->depth == m->depth);
  if (m->depth > 0 && m->st[m->depth - 1].map) {
    int want_key = m->st[m->depth - 1].left % 2 == 0;
    ASSERT(t->role == (want_key ? RESP_KEY : RESP_VALUE));
  } else {
    ASSERT(t->role == RESP_ITEM);
  }
  int aggregate =
      t->type == RESP_ARRAY || t->type == RESP_MAP || t->type == RESP_SET || t->type == RESP_PUSH;
  if (aggregate && t->i > 0) {
    ASSERT(t->closes == 0);
    ASSERT(m->depth < RESP_MAX_DEPTH);
    m->st[m->depth].left = t->type == RESP_MAP ? t->i * 2 : t->i;
    m->st[m->depth].map = t->type == RESP_MAP;
    m->depth++;
  } else {
    int closes = 0;
    while (m->depth > 0) {
      if (--m->st[m->depth - 1].left > 0) break;
      m->depth--;
      closes++;
    }
    ASSERT(closes == t->closes);
  }
  ASSERT(m->depth <= (int)p->depth); /* open attributes are the parser's own */
  if (p->depth == 0) ASSERT(m->depth == 0);
}

static int same(const rec_t *a, const rec_t *b) {
  return a->n == b->n && a->t.type == b->t.type && a->t.depth == b->t.depth &&
         a->t.role == b->t.role && a->t.skip == b->t.skip && a->t.closes == b->t.closes &&
         a->t.len == b->t.len && a->t.i == b->t.i && a->off == b->off &&
         (a->t.type != RESP_DOUBLE || a->t.d == b->t.d || (a->t.d != a->t.d && b->t.d != b->t.d));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  unsigned mode = data[0];
  const uint8_t *buf = data + 1;
  size_t len = size - 1;

  /* one pass with everything */
  static rec_t recs[MAXTOK];
  int ntok = 0, end_error = 0;
  resp_parser p;
  resp_init(&p);
  model_t m = {0};
  size_t off = 0;
  while (ntok < MAXTOK) {
    rec_t *r = &recs[ntok];
    size_t need, so;
    r->n = next(&p, buf + off, len - off, &r->t, &need, &so);
    if (r->n == RESP_ERROR) {
      end_error = 1;
      break;
    }
    if (r->n == RESP_INCOMPLETE) {
      ASSERT(need == 0 || need > len - off);
      break;
    }
    r->off = so == SIZE_MAX ? SIZE_MAX : off + so;
    ASSERT(p.depth <= RESP_MAX_DEPTH);
    ASSERT(r->t.closes <= r->t.depth);
    model_token(&m, &p, &r->t);
    if (buf[off] == '$') { /* the streaming caller's view of the same header */
      int64_t bn;
      char *copy = malloc(len - off);
      memcpy(copy, buf + off, len - off);
      long h = resp_bulk_header(copy, len - off, &bn);
      free(copy);
      ASSERT(h > 0 && h <= r->n);
      ASSERT(r->t.type == RESP_NULL
                 ? bn == -1
                 : (size_t)bn == r->t.len && (size_t)h + (size_t)bn + 2 == (size_t)r->n);
    }
    off += (size_t)r->n;
    ntok++;
  }

  /* again, fed in pieces: the same tokens */
  resp_init(&p);
  size_t avail = 0, step = (mode & 7) + 1;
  off = 0;
  for (int k = 0; k < ntok || (end_error && k == ntok);) {
    rec_t r;
    size_t need, so;
    if (avail < off) avail = off;
    r.n = next(&p, buf + off, avail - off, &r.t, &need, &so);
    if (r.n == RESP_INCOMPLETE) {
      if (avail == len) { /* everything given: only the one-pass end can be like this */
        ASSERT(k == ntok && !end_error);
        break;
      }
      if (need > 0) {
        ASSERT(need > avail - off);
        if (mode & 8) { /* take the size the header gave: it must then complete */
          avail = off + need <= len ? off + need : len;
          continue;
        }
      }
      avail = avail + step <= len ? avail + step : len;
      continue;
    }
    if (r.n == RESP_ERROR) {
      ASSERT(end_error && k == ntok);
      break;
    }
    ASSERT(k < ntok);
    r.off = so == SIZE_MAX ? SIZE_MAX : off + so;
    ASSERT(same(&r, &recs[k]));
    off += (size_t)r.n;
    k++;
  }
  return 0;
}
