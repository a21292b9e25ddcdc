/*
 * conn.c: the connection core (see conn.h for what it owns and why).
 *
 * Reading. libuv reads into the connection's input buffer, or, when it has none, into one
 * static 64 KiB buffer shared by every connection. The protocol's on_read parses or hands
 * over the bytes right there; only what it leaves (unread bytes, a kept request head) is
 * copied into an owned buffer afterwards. So a request answered at once, or bytes a
 * waiting reader takes, cost no allocation, and an idle connection holds no buffer. An
 * owned buffer grows up to in_max; reading pauses while in_max unread bytes wait, so a
 * peer that sends faster than the app reads is held back by TCP itself.
 *
 * Writing. Writes append to the output queue (small pieces copied into blocks, large Lua
 * strings referenced) and mark the queue dirty; the dirty queues are written right after
 * the loop's I/O callbacks (uv_check) and before it next waits (uv_prepare). So what a
 * loop iteration produces, pipelined responses or many small writes, leaves in one
 * writev, and nothing waits longer than the iteration. uv_try_write first; only what the
 * kernel did not take goes to uv_write, one at a time, with everything queued since.
 *
 * Timeouts. One deadline per connection: the protocol's (a read, an idle keep-alive), or,
 * while written bytes wait and the protocol waits for nothing, the send timeout, which
 * closes a connection whose peer has taken nothing for send_timeout ms.
 *
 * Every protocol callback runs through luaio_protect: a Lua error or out-of-memory there
 * closes the one connection, not the process.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "tls.h"

#define SHARED_SIZE 131072 /* a 64 KiB message and its framing fit: parsed in place */
#define BLOCKS_MAX 64      /* free blocks kept */
#define OUTQS_MAX 64       /* free output queues kept */
#define FLUSH_NOW 65536    /* queued bytes that are written at once, not at the loop's end */
#define REF_MIN 4096       /* Lua strings at least this long are referenced, not copied */
#define MAX_IOV 1024
#define INBUF_CAP (LUAIO_BLOCK - sizeof(luaio_inbuf))

static union { /* a buffer header and its data (a struct would nest a flexible array) */
  luaio_inbuf head;
  char bytes[sizeof(luaio_inbuf) + SHARED_SIZE];
} shared;
#define SHARED (&shared.head)

static void *blocks[BLOCKS_MAX];
static int nblocks;
static luaio_outq *free_outqs[OUTQS_MAX];
static int noutqs;

static luaio_outq *dirty_head;
static uv_prepare_t flush_prepare;
static uv_check_t flush_check;
static int flush_ready;

static void conn_fail(luaio_conn *c, int err);
static void write_failed(luaio_conn *c, int err);
static void schedule_input(luaio_conn *c);
static void mark_dirty(luaio_outq *q);
static void unschedule_input(luaio_conn *c);
static void end_continue(luaio_conn *c);
static void update_reading(luaio_conn *c);

/* --- memory ------------------------------------------------------------------------------ */

static void *block_get(void) { return nblocks > 0 ? blocks[--nblocks] : malloc(LUAIO_BLOCK); }

static void block_put(void *b) {
  if (nblocks < BLOCKS_MAX)
    blocks[nblocks++] = b;
  else
    free(b);
}

static void inbuf_free(luaio_conn *c) {
  luaio_inbuf *in = c->in;
  c->in = NULL;
  if (in == NULL || in == SHARED) return;
  if (in->cap == INBUF_CAP)
    block_put(in);
  else
    free(in);
}

static void piece_release(luaio_piece *p) {
  if (p->cap == 0)
    luaL_unref(luaio_mainstate(), LUA_REGISTRYINDEX, p->ref);
  else if (p->cap == LUAIO_BLOCK)
    block_put(p->base);
  else
    free(p->base);
}

/* --- the protocol's callbacks, protected ------------------------------------------------- */

enum { CB_READ, CB_DRAIN, CB_TIMEOUT, CB_CLOSE, CB_TLS };

typedef struct {
  luaio_conn *c;
  int what, err;
} callback_t;

static void run_callback(lua_State *L, void *arg) {
  callback_t *cb = arg;
  luaio_conn *c = cb->c;
  const luaio_conn_proto *p = c->proto;
  if (p == NULL) return;
  switch (cb->what) {
    case CB_READ: p->on_read(L, c); break;
    case CB_DRAIN:
      if (p->on_drain) p->on_drain(L, c);
      break;
    case CB_TIMEOUT:
      if (p->on_timeout) p->on_timeout(L, c);
      break;
    case CB_TLS:
      if (p->on_tls) p->on_tls(L, c, cb->err);
      break;
    default: p->on_close(L, c, cb->err); break;
  }
}

static void callback(luaio_conn *c, int what, int err) {
  if (c->proto == NULL) return;
  callback_t cb = {c, what, err};
  static const char *names[] = {"connection read", "connection drain", "connection timeout",
                                "connection close", "connection handshake"};
  if (luaio_protect(run_callback, &cb, names[what]) != 0 && what != CB_CLOSE)
    luaio_conn_close(c, UV_ECANCELED);
}

/* --- creating ---------------------------------------------------------------------------- */

static size_t handle_size(int is_pipe) {
  size_t n = offsetof(luaio_conn, h) + (is_pipe ? sizeof(uv_pipe_t) : sizeof(uv_tcp_t));
  return (n + 7) & ~(size_t)7;
}

luaio_conn *luaio_conn_new(int is_pipe, size_t extra, int *err) {
  size_t size = handle_size(is_pipe);
  luaio_conn *c = luaio_heap_calloc(size + extra); /* heap.c: no size-class rounding */
  *err = UV_ENOMEM;
  if (c == NULL) return NULL;
  *err = is_pipe ? uv_pipe_init(luaio_loop(), &c->h.pipe, 0) : uv_tcp_init(luaio_loop(), &c->h.tcp);
  if (*err < 0) {
    luaio_heap_free(c);
    return NULL;
  }
  c->is_pipe = (unsigned)is_pipe;
  luaio_conn_ud(c) = extra > 0 ? (char *)c + size : NULL;
  c->in_max = 16384;
  c->high_water = 1048576;
  c->send_timeout = 60000;
  return c;
}

static void on_handle_close(uv_handle_t *h) {
  luaio_conn *c = luaio_conn_of(h);
  unschedule_input(c);
  inbuf_free(c);
  if (c->tls != NULL) luaio_tls_free(c);
  luaio_heap_free(c);
}

luaio_conn *luaio_conn_accept(luaio_server *s, size_t extra) {
  int err;
  luaio_conn *c = luaio_conn_new(s->is_pipe, extra, &err);
  if (c == NULL) {
    /* Out of memory or descriptors: take the connection off the queue anyway, or libuv
     * reports it again at once, forever. */
    uv_os_fd_t lfd;
    if (uv_fileno(&s->h.handle, &lfd) == 0) {
      int fd = accept(lfd, NULL, NULL);
      if (fd >= 0) close(fd);
    }
    return NULL;
  }
  s->connections++;
  c->server = s;
  if (uv_accept(&s->h.stream, &c->h.stream) != 0 || s->connections > s->max_connections) {
    luaio_conn_close(c, UV_ECANCELED);
    return NULL;
  }
  return c;
}

void luaio_conn_set_proto(luaio_conn *c, const luaio_conn_proto *proto, void *ud) {
  c->proto = proto;
  luaio_conn_ud(c) = ud;
}

/* --- reading ------------------------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  luaio_conn *c = luaio_conn_of(h);
  if (c->tls != NULL) { /* ciphertext: the TLS transport has its own buffer */
    luaio_tls_alloc(c, buf);
    return;
  }
  luaio_inbuf *in = c->in;
  if (in == NULL) {
    in = c->in = SHARED;
    in->off = in->len = in->kept = in->kept_len = 0;
    in->cap = SHARED_SIZE;
  } else if (in != SHARED && in->cap - in->len < in->cap / 4) {
    luaio_conn_reserve_in(c, in->cap / 4); /* compact or grow; may leave less room */
    in = c->in;
  }
  *buf = uv_buf_init(in->data + in->len, in->cap - in->len);
}

/* Moves what is kept, then what is unread, to the front of dst (which may be src). */
static void compact_into(luaio_inbuf *dst, luaio_inbuf *src) {
  uint32_t unread = src->len - src->off, kept_len = src->kept_len;
  memmove(dst->data, src->data + src->kept, kept_len);
  memmove(dst->data + kept_len, src->data + src->off, unread);
  dst->kept = 0;
  dst->kept_len = kept_len;
  dst->off = kept_len;
  dst->len = kept_len + unread;
}

/* An owned buffer of at least `need` bytes (a block when that is enough), or NULL. */
static luaio_inbuf *inbuf_new(uint32_t need) {
  uint32_t cap = need <= INBUF_CAP ? (uint32_t)INBUF_CAP : need;
  luaio_inbuf *in = cap == INBUF_CAP ? block_get() : malloc(sizeof *in + cap);
  if (in != NULL) in->cap = cap;
  return in;
}

/* The bytes left in the shared buffer after the protocol's turn move to an owned one. */
static void own_input(luaio_conn *c) {
  luaio_inbuf *in = c->in;
  if (in != SHARED) return;
  c->in = NULL;
  uint32_t need = in->kept_len + (in->len - in->off);
  if (need == 0 || c->closing) return;
  luaio_inbuf *own = inbuf_new(need);
  if (own == NULL) {
    conn_fail(c, UV_ENOMEM);
    return;
  }
  compact_into(own, in);
  c->in = own;
}

int luaio_conn_reserve_in(luaio_conn *c, uint32_t room) {
  if (c->in == SHARED) own_input(c); /* an owned buffer from now on */
  if (c->closing) return UV_ENOTCONN;
  luaio_inbuf *in = c->in;
  if (in == NULL) {
    if ((in = c->in = inbuf_new(room)) == NULL) return UV_ENOMEM;
    in->off = in->len = in->kept = in->kept_len = 0;
  }
  if (in->cap - in->len >= room) return 0;
  uint32_t used = in->kept_len + (in->len - in->off);
  if (used < in->len) compact_into(in, in); /* reclaim what was consumed */
  if (in->cap - in->len >= room) return 0;
  /* Grows as far as the bound allows: when that is less than asked, the room there is is
   * still taken (a read fills it), and the caller hears ENOBUFS. */
  uint64_t want = (uint64_t)in->len + room, limit = c->in_max > INBUF_CAP ? c->in_max : INBUF_CAP;
  if (limit <= in->cap) return UV_ENOBUFS;
  if (want > limit) want = limit;
  uint64_t cap = (uint64_t)in->cap * 2;
  while (cap < want) cap *= 2;
  if (cap > limit) cap = limit;
  luaio_inbuf *grown;
  if (in->cap == INBUF_CAP) { /* a block from the free list: copy into a bigger one */
    grown = malloc(sizeof *grown + cap);
    if (grown == NULL) return UV_ENOMEM;
    memcpy(grown, in, sizeof *in + in->len);
    block_put(in);
  } else {
    grown = realloc(in, sizeof *grown + cap);
    if (grown == NULL) return UV_ENOMEM;
  }
  grown->cap = (uint32_t)cap;
  c->in = grown;
  return grown->cap - grown->len >= room ? 0 : UV_ENOBUFS;
}

char *luaio_conn_in_space(luaio_conn *c, uint32_t *room) {
  luaio_inbuf *in = c->in;
  *room = 0;
  if (in == NULL) {
    in = c->in = SHARED;
    in->off = in->len = in->kept = in->kept_len = 0;
    in->cap = SHARED_SIZE;
  } else if (in->len - in->off >= c->in_max) {
    return NULL; /* the protocol has enough waiting */
  } else if (in != SHARED && in->cap - in->len < in->cap / 4) {
    luaio_conn_reserve_in(c, in->cap / 4); /* a quarter more, or what the bound allows */
    in = c->in;
  }
  *room = in->cap - in->len;
  return in->data + in->len;
}

void luaio_conn_in_added(luaio_conn *c, uint32_t n) { c->in->len += n; }

/* After bytes were added to c->in (or the read side ended): the protocol's turn, then what
 * it left moves to an owned buffer, and reading pauses when that is full. */
static void deliver(luaio_conn *c) {
  if (c->ending) { /* nobody listens any more: read and forget */
    if (c->in != NULL) c->in->off = c->in->len;
    luaio_conn_unkeep(c);
    if (c->read_err != 0) end_continue(c);
    return;
  }
  callback(c, CB_READ, 0);
  own_input(c);
  if (c->in != NULL && c->in->len - c->in->off >= c->in_max && !c->full) {
    c->full = 1;
    update_reading(c);
  }
}

/* Ciphertext arrived (n bytes, 0 after a pause): decrypt, tell the protocol. */
static void tls_deliver(luaio_conn *c, size_t n) {
  int r = luaio_tls_input(c, n);
  if (c->closing) return;
  if (r < 0) { /* the handshake failed, or the peer sent garbage */
    callback(c, CB_TLS, r);
    if (c->closing || c->ending) return;
    /* The protocol goes now; the alert OpenSSL queued still goes out before the close, so
     * that the peer learns why (a protocol_version alert, a bad certificate). */
    if (c->write_err == 0) c->write_err = (int16_t)r;
    callback(c, CB_CLOSE, r);
    c->proto = NULL;
    luaio_conn_end(c, 0);
    return;
  }
  if (r & LUAIO_TLS_HANDSHAKE_DONE) {
    if (c->dl_hs) {
      c->dl_hs = 0;
      luaio_deadline_disarm(&c->dl);
    }
    if (c->shut_after) { /* a half close asked for during the handshake goes out now */
      luaio_tls_encrypt(c);
      luaio_tls_close_notify(c);
      if (c->out != NULL) mark_dirty(c->out);
    }
    callback(c, CB_TLS, 0);
    if (c->closing) return;
  }
  if ((r & LUAIO_TLS_DATA) || c->read_err != 0)
    deliver(c);
  else if (c->in == SHARED)
    c->in = NULL;
  /* Decryption stopped when c->in was full. If the protocol then took it all, the rest
   * would wait for a socket event that may never come: go on from the loop. If nothing
   * could be decrypted (no room: a kept request head), pause as a full buffer does, until
   * a consume makes room (luaio_conn_consume redrives then). */
  if (!c->closing && !c->full && luaio_tls_has_input(c)) {
    if (r & LUAIO_TLS_DATA) {
      schedule_input(c);
    } else {
      c->full = 1;
      update_reading(c);
    }
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  luaio_conn *c = luaio_conn_of(s);
  if (nread == 0 || nread == UV_ENOBUFS) { /* EAGAIN, or no room: a pause */
    if (nread == UV_ENOBUFS) {
      c->full = 1;
      update_reading(c);
    }
    if (c->in == SHARED) c->in = NULL;
    return;
  }
  if (nread < 0) {
    c->read_err = (int16_t)(nread < INT16_MIN ? UV_EIO : nread);
    if (c->in == SHARED && c->in->len == 0) c->in = NULL;
    update_reading(c);
  } else if (c->tls == NULL) {
    c->in->len += (uint32_t)nread;
  }
  if (c->tls != NULL) {
    tls_deliver(c, nread > 0 ? (size_t)nread : 0);
    return;
  }
  deliver(c);
}

/* Reads while the protocol wants bytes, the buffer has room and the stream is open. */
static void update_reading(luaio_conn *c) {
  int on = (c->want_read || c->ending) && !c->full && c->read_err == 0 && !c->closing;
  if (on == c->reading) return;
  if (on) {
    if (uv_read_start(&c->h.stream, on_alloc, on_read) == 0) c->reading = 1;
  } else {
    uv_read_stop(&c->h.stream);
    c->reading = 0;
  }
}

void luaio_conn_read_start(luaio_conn *c) {
  c->want_read = 1;
  update_reading(c);
}

void luaio_conn_read_stop(luaio_conn *c) {
  c->want_read = 0;
  update_reading(c);
}

void luaio_conn_consume(luaio_conn *c, uint32_t n) {
  luaio_inbuf *in = c->in;
  if (in == NULL) return;
  in->off += n;
  if (in->off == in->len && in->kept_len == 0) {
    if (in == SHARED)
      c->in = NULL;
    else
      inbuf_free(c);
  }
  if (c->full && (c->in == NULL || c->in->len - c->in->off < c->in_max)) {
    c->full = 0;
    update_reading(c);
    /* Decrypted or raw input may wait in the TLS transport, with no socket event to come
     * for it: the loop delivers it (not here: this may run inside the protocol's call). */
    if (c->tls != NULL && luaio_tls_has_input(c)) schedule_input(c);
  }
}

void luaio_conn_need(luaio_conn *c, uint32_t n) {
  if (n <= c->in_max) return;
  c->in_max = n;
  if (c->full && (c->in == NULL || c->in->len - c->in->off < c->in_max)) {
    c->full = 0;
    update_reading(c);
  }
  /* Plaintext the TLS transport holds comes now, not at the next socket event. */
  if (c->tls != NULL && luaio_tls_has_input(c)) schedule_input(c);
}

void luaio_conn_keep(luaio_conn *c, uint32_t n) {
  c->in->kept = c->in->off;
  c->in->kept_len = n;
  luaio_conn_consume(c, n);
}

void luaio_conn_unkeep(luaio_conn *c) {
  if (c->in == NULL) return;
  c->in->kept_len = 0;
  luaio_conn_consume(c, 0);
}

/* --- the output queue ------------------------------------------------------------------------ */

static void flush(luaio_conn *c, int notify);
static void flush_dirty(void);
static void tls_deliver(luaio_conn *c, size_t n);

static void on_flush_prepare(uv_prepare_t *h) {
  (void)h;
  flush_dirty();
}
static void on_flush_check(uv_check_t *h) {
  (void)h;
  flush_dirty();
}

/* Connections whose TLS transport holds input for them after a pause (tls_deliver runs from
 * the loop, not from inside the call that unpaused them). */
static luaio_conn **redrive;
static size_t nredrive, redrive_cap;

static void flush_handles_start(void) {
  if (!flush_ready) {
    uv_prepare_init(luaio_loop(), &flush_prepare);
    uv_check_init(luaio_loop(), &flush_check);
    uv_unref((uv_handle_t *)&flush_prepare);
    uv_unref((uv_handle_t *)&flush_check);
    flush_ready = 1;
  }
  uv_prepare_start(&flush_prepare, on_flush_prepare);
  uv_check_start(&flush_check, on_flush_check);
}

static void mark_dirty(luaio_outq *q) {
  if (q->dirty) return;
  q->dirty = 1;
  q->dirty_next = dirty_head;
  if (dirty_head == NULL && nredrive == 0) flush_handles_start();
  dirty_head = q;
}

static void schedule_input(luaio_conn *c) {
  if (c->redrive) return;
  if (nredrive == redrive_cap) {
    size_t cap = redrive_cap ? redrive_cap * 2 : 16;
    luaio_conn **p = realloc(redrive, cap * sizeof *p);
    if (p == NULL) return; /* the next socket event delivers it */
    redrive = p;
    redrive_cap = cap;
  }
  c->redrive = 1;
  redrive[nredrive++] = c;
  if (dirty_head == NULL && nredrive == 1) flush_handles_start();
}

static void unschedule_input(luaio_conn *c) {
  for (size_t i = 0; c->redrive && i < nredrive; i++)
    if (redrive[i] == c) redrive[i] = redrive[--nredrive];
  c->redrive = 0;
}

static void outq_release(luaio_outq *q) {
  q->n = q->flying = 0;
  q->shut = NULL;
  q->bytes = 0;
  q->conn = NULL;
  if (noutqs < OUTQS_MAX && q->cap <= 16) {
    free_outqs[noutqs++] = q;
  } else {
    free(q->pieces);
    free(q);
  }
}

/* The queue in *slot is empty and nothing is in flight: it goes back to the free list
 * (later, when it is still in the dirty list). */
static void outq_free(luaio_outq **slot) {
  luaio_outq *q = *slot;
  *slot = NULL;
  q->conn = NULL;
  if (!q->dirty) outq_release(q);
}

static void flush_dirty(void) {
  while (nredrive > 0) {
    luaio_conn *c = redrive[--nredrive];
    c->redrive = 0;
    if (!c->closing && c->tls != NULL) tls_deliver(c, 0);
  }
  while (dirty_head != NULL) {
    luaio_outq *q = dirty_head;
    dirty_head = q->dirty_next;
    q->dirty = 0;
    if (q->conn == NULL)
      outq_release(q);
    else
      flush(q->conn, 1);
  }
  if (nredrive == 0) {
    uv_prepare_stop(&flush_prepare);
    uv_check_stop(&flush_check);
  }
}

static luaio_outq *outq_get(luaio_conn *c, luaio_outq **slot) {
  if (*slot != NULL) return *slot;
  luaio_outq *q = noutqs > 0 ? free_outqs[--noutqs] : calloc(1, sizeof *q);
  if (q == NULL) return NULL;
  q->conn = c;
  *slot = q;
  return q;
}

/* The queue protocols write to: the wire itself (c->out), or with TLS the plaintext that
 * the next flush encrypts onto the wire. */
static luaio_outq **app_slot(luaio_conn *c) { return c->tls ? luaio_tls_plain(c) : &c->out; }

static luaio_piece *piece_add(luaio_outq *q) {
  if (q->n == q->cap) {
    uint32_t cap = q->cap ? q->cap * 2 : 4;
    luaio_piece *p = realloc(q->pieces, cap * sizeof *p);
    if (p == NULL) return NULL;
    q->pieces = p;
    q->cap = cap;
  }
  luaio_piece *p = &q->pieces[q->n++];
  p->off = p->len = 0;
  p->ref = LUA_NOREF;
  return p;
}

/* The last piece, when bytes may still be appended to it. */
static luaio_piece *open_piece(luaio_outq *q) {
  if (q->n == q->flying) return NULL;
  luaio_piece *last = &q->pieces[q->n - 1];
  return last->cap > last->len ? last : NULL;
}

static int write_state(luaio_conn *c) {
  if (c->write_err) return c->write_err;
  if (c->closing || c->ending) return UV_ENOTCONN;
  if (c->shut_after) return UV_EPIPE;
  return 0;
}

/* Room for n bytes at the end of the queue in slot. */
static char *reserve(luaio_conn *c, luaio_outq **slot, size_t n) {
  if (n > UINT32_MAX) return NULL;
  luaio_outq *q = outq_get(c, slot);
  if (q == NULL) return NULL;
  luaio_piece *p = open_piece(q);
  if (p != NULL && p->cap - p->len >= n) return p->base + p->len;
  if ((p = piece_add(q)) == NULL) return NULL;
  p->cap = n <= LUAIO_BLOCK ? LUAIO_BLOCK : (uint32_t)n;
  p->base = n <= LUAIO_BLOCK ? block_get() : malloc(n);
  if (p->base == NULL) {
    q->n--;
    return NULL;
  }
  return p->base;
}

/* Copies data to the end of the queue in slot; returns the bytes queued (less than len
 * only when out of memory). */
static size_t append(luaio_conn *c, luaio_outq **slot, const char *data, size_t len) {
  size_t done = 0;
  while (done < len) {
    luaio_outq *q = outq_get(c, slot);
    luaio_piece *p = q ? open_piece(q) : NULL;
    size_t room = p ? p->cap - p->len : len - done > LUAIO_BLOCK ? len - done : LUAIO_BLOCK;
    if (p == NULL && reserve(c, slot, room) == NULL) break;
    p = &(*slot)->pieces[(*slot)->n - 1];
    size_t n = len - done < room ? len - done : room;
    memcpy(p->base + p->len, data + done, n);
    p->len += (uint32_t)n;
    (*slot)->bytes += n;
    done += n;
  }
  return done;
}

uint64_t luaio_conn_queued(luaio_conn *c) {
  uint64_t n = c->out ? c->out->bytes : 0;
  if (c->tls != NULL && *luaio_tls_plain(c) != NULL) n += (*luaio_tls_plain(c))->bytes;
  return n;
}

int luaio_conn_above_high(luaio_conn *c) { return luaio_conn_queued(c) > c->high_water; }

/* n more bytes are queued: written now when many wait, else at the end of this turn. */
static void queued(luaio_conn *c) {
  uint64_t bytes = luaio_conn_queued(c);
  if (bytes > c->high_water) c->over_high = 1;
  if (bytes >= FLUSH_NOW)
    flush(c, 0);
  else
    mark_dirty(*app_slot(c));
}

char *luaio_conn_reserve(luaio_conn *c, size_t n) {
  if (write_state(c)) return NULL;
  return reserve(c, app_slot(c), n);
}

void luaio_conn_commit(luaio_conn *c, size_t n) {
  if (n == 0) return;
  luaio_outq *q = *app_slot(c);
  q->pieces[q->n - 1].len += (uint32_t)n;
  q->bytes += n;
  queued(c);
}

int luaio_conn_write(luaio_conn *c, const char *data, size_t len) {
  int err = write_state(c);
  if (err || len == 0) return err;
  if (append(c, app_slot(c), data, len) < len) return UV_ENOMEM;
  queued(c);
  return write_state(c); /* a flush on the way may have failed */
}

static int write_ref(luaio_conn *c, lua_State *L, int idx, const char *s, size_t len);

int luaio_conn_write_lua(luaio_conn *c, lua_State *L, int idx) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (len < REF_MIN || len > UINT32_MAX) return luaio_conn_write(c, s, len);
  return write_ref(c, L, idx, s, len);
}

/* Added for WebSocket fan-out (proto/ws/ws.c): one string queued on many connections at
 * once is referenced by each, whatever its size, rather than copied into a block per
 * connection (10,000 subscribers would take 10,000 blocks of 16 KiB). */
int luaio_conn_write_shared(luaio_conn *c, lua_State *L, int idx) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (len > UINT32_MAX) return luaio_conn_write(c, s, len);
  return write_ref(c, L, idx, s, len);
}

static int write_ref(luaio_conn *c, lua_State *L, int idx, const char *s, size_t len) {
  int err = write_state(c);
  if (err) return err;
  luaio_outq *q = outq_get(c, app_slot(c));
  luaio_piece *p = q ? piece_add(q) : NULL;
  if (p == NULL) return UV_ENOMEM;
  lua_pushvalue(L, idx);
  p->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  p->base = (char *)s;
  p->len = (uint32_t)len;
  p->cap = 0;
  q->bytes += len;
  queued(c);
  return write_state(c);
}

int luaio_conn_wire_write(luaio_conn *c, const char *data, size_t len) {
  if (append(c, &c->out, data, len) < len) return UV_ENOMEM;
  mark_dirty(c->out);
  return 0;
}

char *luaio_conn_wire_reserve(luaio_conn *c, size_t n) { return reserve(c, &c->out, n); }

void luaio_conn_wire_commit(luaio_conn *c, size_t n) {
  luaio_outq *q = c->out;
  q->pieces[q->n - 1].len += (uint32_t)n;
  q->bytes += n;
  mark_dirty(q);
}

/* n bytes at the front of the queue were written (or encrypted): release them. */
void luaio_outq_advance(luaio_outq *q, size_t n) {
  uint32_t i = 0;
  q->bytes -= n;
  while (i < q->n && n >= q->pieces[i].len - q->pieces[i].off) {
    n -= q->pieces[i].len - q->pieces[i].off;
    piece_release(&q->pieces[i++]);
  }
  if (i < q->n) q->pieces[i].off += (uint32_t)n;
  memmove(q->pieces, q->pieces + i, (q->n - i) * sizeof *q->pieces);
  q->n -= i;
  q->flying = q->flying > i ? q->flying - i : 0;
}

/* Drops what the queue in slot holds but the write in flight; frees it when nothing flies. */
static void outq_drop(luaio_outq **slot) {
  luaio_outq *q = *slot;
  if (q == NULL) return;
  for (uint32_t i = q->flying; i < q->n; i++) piece_release(&q->pieces[i]);
  q->n = q->flying;
  if (q->wreq == NULL) outq_free(slot);
}

/* After progress: below the low-water mark, or all written, the protocol hears of it. */
static void drained(luaio_conn *c) {
  luaio_outq *q = c->out;
  if (q != NULL && q->n == 0 && q->wreq == NULL && q->shut == NULL) outq_free(&c->out);
  int empty = luaio_conn_queued(c) == 0 && c->out == NULL;
  if (c->ending) {
    if (empty) end_continue(c);
    return;
  }
  if ((c->over_high && luaio_conn_queued(c) <= c->high_water / 2) || empty) {
    c->over_high = 0;
    callback(c, CB_DRAIN, 0);
  }
}

static void send_expire(luaio_deadline *d);

static void arm_send(luaio_conn *c) {
  if (c->send_timeout == 0 || (luaio_deadline_armed(&c->dl) && !c->dl_send)) return;
  c->dl_send = 1;
  c->dl_hs = 0;
  c->out->progress = (uint32_t)uv_stream_get_write_queue_size(&c->h.stream);
  luaio_deadline_arm(&c->dl, c->send_timeout, send_expire);
}

static void on_write(uv_write_t *req, int status) {
  luaio_conn *c = req->data;
  luaio_outq *q = c->out;
  free(req);
  q->wreq = NULL;
  size_t done = 0;
  for (uint32_t i = 0; i < q->flying; i++) done += q->pieces[i].len - q->pieces[i].off;
  luaio_outq_advance(q, done);
  q->flying = 0;
  if (c->dl_send) {
    c->dl_send = 0;
    luaio_deadline_disarm(&c->dl);
  }
  if (c->closing) {
    if (q->n == 0) outq_free(&c->out);
    return;
  }
  if (status < 0) {
    write_failed(c, status);
    return;
  }
  flush(c, 1);
}

/* Fills iov from the queue's pieces; returns the count. */
static unsigned collect(luaio_outq *q, uv_buf_t *iov) {
  unsigned n = q->n < MAX_IOV ? q->n : MAX_IOV;
  for (unsigned i = 0; i < n; i++) {
    luaio_piece *p = &q->pieces[i];
    iov[i] = uv_buf_init(p->base + p->off, p->len - p->off);
  }
  return n;
}

/* notify: the caller is the loop (not Lua), so on_drain may run. */
static void flush(luaio_conn *c, int notify) {
  if (c->closing) return;
  if (c->tls != NULL) { /* plaintext becomes records on the wire first */
    int err = luaio_tls_encrypt(c);
    if (err < 0) {
      write_failed(c, err);
      return;
    }
  }
  luaio_outq *q = c->out;
  if (q == NULL) {
    if (notify) drained(c);
    return;
  }
  if (q->wreq != NULL) return;
  static uv_buf_t iov[MAX_IOV];
  int r = 0;
  if (q->n > 0) {
    unsigned n = collect(q, iov);
    r = uv_try_write(&c->h.stream, iov, n);
    if (r < 0 && r != UV_EAGAIN) {
      write_failed(c, r);
      return;
    }
    if (r > 0) luaio_outq_advance(q, (size_t)r);
  }
  if (q->n > 0) {
    uv_write_t *req = malloc(sizeof *req);
    if (req == NULL) {
      write_failed(c, UV_ENOMEM);
      return;
    }
    req->data = c;
    unsigned n = collect(q, iov);
    int err = uv_write(req, &c->h.stream, iov, n, on_write);
    if (err < 0) {
      free(req);
      write_failed(c, err);
      return;
    }
    q->wreq = req;
    q->flying = n;
    arm_send(c);
  }
  if (q->shut != NULL && q->flying == q->n &&
      !luaio_tls_handshaking(c)) { /* all of it is with libuv */
    uv_shutdown_t *sreq = q->shut;
    q->shut = NULL;
    int err = uv_shutdown(sreq, &c->h.stream, q->shut_cb);
    if (err < 0) q->shut_cb(sreq, err);
    if (c->closing) return;
  }
  if (!notify) {
    if (q->n == 0) mark_dirty(q); /* the loop frees it and tells the protocol */
    return;
  }
  if (r > 0 || q->n == 0) drained(c);
}

void luaio_conn_flush(luaio_conn *c) { flush(c, 0); }

/* --- deadlines --------------------------------------------------------------------------------- */

#define conn_of(d) ((luaio_conn *)((char *)(d)-offsetof(luaio_conn, dl)))

static void arm_core_deadline(luaio_conn *c);

static void proto_expire(luaio_deadline *d) {
  luaio_conn *c = conn_of(d);
  callback(c, CB_TIMEOUT, 0);
  if (!c->closing) arm_core_deadline(c);
}

/* The send timeout: closes unless the kernel took some of the output meanwhile. */
static void send_expire(luaio_deadline *d) {
  luaio_conn *c = conn_of(d);
  c->dl_send = 0;
  luaio_outq *q = c->out;
  if (q == NULL || q->wreq == NULL) return;
  uint32_t left = (uint32_t)uv_stream_get_write_queue_size(&c->h.stream);
  if (left != q->progress) {
    arm_send(c);
    return;
  }
  conn_fail(c, UV_ETIMEDOUT);
}

static void linger_expire(luaio_deadline *d) { luaio_conn_close(conn_of(d), 0); }

/* A TLS handshake that takes too long, while the protocol waits for nothing. */
static void handshake_expire(luaio_deadline *d) {
  luaio_conn *c = conn_of(d);
  c->dl_hs = 0;
  callback(c, CB_TLS, UV_ETIMEDOUT);
  conn_fail(c, UV_ETIMEDOUT);
}

/* With nothing armed by the protocol: the handshake's or the send timeout. */
static void arm_core_deadline(luaio_conn *c) {
  if (luaio_deadline_armed(&c->dl)) return;
  if (c->tls != NULL && luaio_tls_handshaking(c)) {
    c->dl_hs = 1;
    luaio_deadline_arm(&c->dl, luaio_tls_handshake_timeout(c), handshake_expire);
  } else if (c->out != NULL && c->out->wreq != NULL) {
    arm_send(c);
  }
}

void luaio_conn_timeout(luaio_conn *c, uint64_t ms) {
  if (c->closing) return;
  c->dl_send = c->dl_hs = 0;
  luaio_deadline_arm(&c->dl, ms, proto_expire);
  arm_core_deadline(c);
}

void luaio_conn_tls_started(luaio_conn *c) {
  if (c->dl_send) luaio_deadline_disarm(&c->dl), c->dl_send = 0;
  arm_core_deadline(c);
  /* Ciphertext that arrived before TLS began (a client's hello right behind its STARTTLS):
   * no socket event will come for it. */
  if (luaio_tls_has_input(c)) schedule_input(c);
}

/* --- closing ---------------------------------------------------------------------------------- */

/* Writing failed (the peer reset, or out of memory): the output is dropped and later writes
 * fail with err, but what was received can still be read (a response the peer sent before
 * resetting). The protocol hears of it through on_drain, maybe from inside a Lua call. */
static void write_failed(luaio_conn *c, int err) {
  if (c->write_err == 0) c->write_err = (int16_t)(err < INT16_MIN ? UV_EIO : err);
  if (c->tls != NULL) outq_drop(luaio_tls_plain(c));
  luaio_outq *q = c->out;
  if (q != NULL) {
    if (q->shut != NULL) {
      uv_shutdown_t *req = q->shut;
      q->shut = NULL;
      q->shut_cb(req, err);
    }
    outq_drop(&c->out);
  }
  if (c->dl_send) {
    c->dl_send = 0;
    luaio_deadline_disarm(&c->dl);
  }
  if (c->ending) {
    luaio_conn_close(c, err);
    return;
  }
  callback(c, CB_DRAIN, 0);
}

static void conn_fail(luaio_conn *c, int err) {
  if (c->write_err == 0) c->write_err = (int16_t)(err < INT16_MIN ? UV_EIO : err);
  luaio_conn_close(c, err);
}

void luaio_conn_close(luaio_conn *c, int err) {
  if (c->closing) return;
  c->closing = 1;
  if (c->write_err == 0 && err < 0) c->write_err = (int16_t)(err < INT16_MIN ? UV_EIO : err);
  update_reading(c);
  luaio_deadline_disarm(&c->dl);
  unschedule_input(c);
  if (c->tls != NULL) outq_drop(luaio_tls_plain(c));
  luaio_outq *q = c->out;
  if (q != NULL) { /* what is not in flight goes now; the write in flight is cancelled */
    for (uint32_t i = q->flying; i < q->n; i++) piece_release(&q->pieces[i]);
    q->n = q->flying;
  }
  if (c->server != NULL) {
    luaio_server *s = c->server;
    c->server = NULL;
    s->connections--;
    luaio_server_gone(s);
  }
  callback(c, CB_CLOSE, err);
  c->proto = NULL;
  if (q != NULL) {
    if (q->shut != NULL) { /* a half close that never went out: its waiter was told */
      uv_shutdown_t *req = q->shut;
      q->shut = NULL;
      q->shut_cb(req, UV_ECANCELED);
    }
    if (q->wreq == NULL) outq_free(&c->out);
  }
  if (c->in == SHARED) c->in = NULL;
  uv_close(&c->h.handle, on_handle_close);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  luaio_conn *c = req->data;
  free(req);
  if (c->closing) return;
  if (status < 0 || c->read_err != 0) {
    luaio_conn_close(c, 0);
    return;
  }
  luaio_deadline_arm(&c->dl, c->linger_ms, linger_expire); /* read and drop meanwhile */
}

/* An ending connection goes on: once its output is written, linger or close. */
static void end_continue(luaio_conn *c) {
  if (c->closing || luaio_conn_queued(c) > 0 || c->out != NULL) return;
  if (!c->lingering || c->read_err != 0) {
    luaio_conn_close(c, 0);
    return;
  }
  if (c->shut_sent) return;
  c->shut_sent = 1;
  uv_shutdown_t *req = malloc(sizeof *req);
  if (req == NULL || uv_shutdown(req, &c->h.stream, on_shutdown) != 0) {
    free(req);
    luaio_conn_close(c, 0);
    return;
  }
  req->data = c;
}

void luaio_conn_end(luaio_conn *c, unsigned linger_ms) {
  if (c->closing || c->ending) return;
  c->proto = NULL;
  c->ending = 1;
  c->lingering = linger_ms > 0;
  c->linger_ms = (uint16_t)(linger_ms > UINT16_MAX ? UINT16_MAX : linger_ms);
  if (luaio_deadline_armed(&c->dl) && !c->dl_send) luaio_deadline_disarm(&c->dl);
  if (c->in != NULL) { /* unread input is dropped */
    c->in->off = c->in->len;
    luaio_conn_unkeep(c);
  }
  c->full = 0;
  update_reading(c); /* read and drop: a close with unread input would send a reset */
  if (c->tls != NULL) {
    luaio_tls_encrypt(c);
    luaio_tls_close_notify(c); /* so that a client can tell our end from a cut */
  }
  if (c->out != NULL) {
    flush(c, 0); /* the loop goes on from drained() */
    return;
  }
  end_continue(c);
}

/* --- half close ---------------------------------------------------------------------------------- */

int luaio_conn_shutdown(luaio_conn *c, uv_shutdown_t *req, uv_shutdown_cb cb) {
  int err = write_state(c);
  if (err) return err;
  c->shut_after = 1;
  if (c->tls != NULL) { /* TLS half close: close_notify, then the TCP one */
    luaio_tls_encrypt(c);
    luaio_tls_close_notify(c); /* during the handshake: when it is over (tls_deliver) */
  }
  int handshaking = luaio_tls_handshaking(c);
  if (c->out == NULL && !handshaking) return uv_shutdown(req, &c->h.stream, cb);
  luaio_outq *q = outq_get(c, &c->out);
  if (q == NULL) return UV_ENOMEM;
  q->shut = req; /* after the pieces queued so far (flush), and after the handshake */
  q->shut_cb = cb;
  flush(c, 0);
  return 0;
}

/* --- addresses --------------------------------------------------------------------------------- */

int luaio_conn_peer(luaio_conn *c, struct sockaddr_storage *addr) {
  int len = sizeof *addr;
  if (c->is_pipe) return UV_ENOTSUP;
  return uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)addr, &len);
}

void luaio_addr_name(const struct sockaddr_storage *addr, char *buf, size_t size) {
  if (addr->ss_family == AF_INET6)
    uv_ip6_name((const struct sockaddr_in6 *)addr, buf, size);
  else
    uv_ip4_name((const struct sockaddr_in *)addr, buf, size);
}

int luaio_push_handle_address(lua_State *L, uv_handle_t *h, int peer) {
  if (h->type == UV_NAMED_PIPE) {
    char path[1024];
    size_t n = sizeof path;
    uv_pipe_t *p = (uv_pipe_t *)h;
    int err = peer ? uv_pipe_getpeername(p, path, &n) : uv_pipe_getsockname(p, path, &n);
    if (err < 0) return luaio_pusherror(L, err);
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, path, n);
    lua_setfield(L, -2, "path");
    return 1;
  }
  struct sockaddr_storage addr;
  int len = sizeof addr;
  uv_tcp_t *t = (uv_tcp_t *)h;
  int err = peer ? uv_tcp_getpeername(t, (struct sockaddr *)&addr, &len)
                 : uv_tcp_getsockname(t, (struct sockaddr *)&addr, &len);
  if (err < 0) return luaio_pusherror(L, err);
  luaio_push_addr(L, &addr);
  return 1;
}
