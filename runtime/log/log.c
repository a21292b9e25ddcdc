/*
 * log.c: the writer behind stdlib/log.lua. Logging never waits and never blocks the loop.
 *
 * A sink is one output (a file, stdout or stderr). A log call formats its line straight into
 * the sink's pending buffer (no intermediate Lua strings) and, when no batch is being
 * written, hands the whole buffer to the thread pool as the next batch and starts a fresh
 * one. So there is at most one write in flight per sink, and the busier the app the bigger
 * the batches. Nothing waits for a write: the call works the same from a task, a module's
 * top level or the main thread.
 *
 * The pending buffer is bounded (buffer_size, 4 MiB by default): a line that does not fit is
 * dropped and counted, and once there is room again one line saying how many were dropped
 * goes in first. A disk that stalls costs lines, never latency.
 *
 * The batch is written by uv_queue_work rather than uv_fs_write because of exit: the exit
 * hook (atexit, run by a normal end, os.exit, process.exit and a failed main task alike)
 * must know, under a lock, whether the thread pool is still writing a batch before it writes
 * what is pending itself, synchronously, in order. A batch still queued behind other work is
 * cancelled and written by the hook too. When the loop simply runs out of work no hook is
 * needed: a batch in flight keeps the loop alive and its completion starts the next one.
 *
 * Reopening (log rotation) happens in the thread pool too, at the point of the pending
 * buffer where reopen() was called: lines logged before it go to the old file, lines after
 * it to the new one.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "luaio.h"

#define SINK_MT "luaio.logsink"
#define NO_REOPEN SIZE_MAX
#define KEEP_BUFFER (256 * 1024) /* a batch buffer bigger than this is freed, not kept */
#define EXIT_WAIT_MS 2000        /* how long exit waits for a batch the thread pool writes */
#define NOTE_ROOM 160            /* a "lines dropped" line is never longer */

typedef struct sink_s sink_t;
struct sink_s {
  sink_t *next; /* every sink not yet freed, for the exit hook */
  sink_t **box; /* the Lua userdata's slot, or NULL once it was collected */
  char *path;   /* for reopen; NULL for stdout and stderr */
  int fd;       /* -1 once closed; the worker replaces it on reopen */
  int json;     /* the format of the "lines dropped" line */
  size_t max;   /* bound on pending bytes */
  /* pending lines: only the loop thread touches these */
  char *buf;
  size_t len, cap, reopen_at;
  int oom; /* an allocation failed while formatting the current line */
  uint64_t dropped, dropped_total, errors;
  /* the batch being written: the worker owns these while `working` */
  uv_work_t work;
  char *wbuf;
  size_t wlen, wcap, wreopen_at;
  int werr;
  int busy;    /* a batch was queued and its completion has not run yet */
  int working; /* under lock: the batch has not been written yet */
  int closed;  /* no more lines; the descriptor closes once drained */
  uv_mutex_t lock;
  uv_cond_t cond;
};

static sink_t *sinks;
static int exit_hook_set;

static const char *const level_text[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const char *const level_json[] = {"debug", "info", "warn", "error"};

/* --- writing (thread pool, or the exit hook) --------------------------------------------- */

/* Writes everything; 0 or -errno. A descriptor someone made non-blocking is waited for with
 * poll; `patient` = 0 (at exit) gives up after one second without progress. */
static int write_all(int fd, const char *p, size_t n, int patient) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (poll(&pfd, 1, 1000) == 0 && !patient) return -EAGAIN;
        continue;
      }
      return -errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int open_path(const char *path) {
  return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

/* Writes a batch, reopening the file at offset reopen_at. Returns the first error. If the
 * file cannot be reopened the old descriptor stays: lines in the old file beat no lines. */
static int write_batch(sink_t *s, const char *p, size_t n, size_t reopen_at, int patient) {
  size_t first = reopen_at == NO_REOPEN || reopen_at > n ? n : reopen_at;
  int err = write_all(s->fd, p, first, patient);
  if (reopen_at != NO_REOPEN && s->path != NULL) {
    int fd = open_path(s->path);
    if (fd >= 0) {
      close(s->fd);
      s->fd = fd;
    } else if (err == 0) {
      err = -errno;
    }
  }
  int err2 = write_all(s->fd, p + first, n - first, patient);
  return err != 0 ? err : err2;
}

static void sink_work(uv_work_t *w) {
  sink_t *s = w->data;
  s->werr = write_batch(s, s->wbuf, s->wlen, s->wreopen_at, 1);
  uv_mutex_lock(&s->lock);
  s->working = 0;
  uv_cond_signal(&s->cond);
  uv_mutex_unlock(&s->lock);
}

static void sink_after(uv_work_t *w, int status);

/* Hands the pending lines to the thread pool unless a batch is already there. */
static void sink_kick(sink_t *s) {
  if (s->busy || s->fd < 0 || (s->len == 0 && s->reopen_at == NO_REOPEN)) return;
  char *b = s->wbuf;
  size_t cap = s->wcap;
  s->wbuf = s->buf;
  s->wlen = s->len;
  s->wcap = s->cap;
  s->wreopen_at = s->reopen_at;
  s->buf = b;
  s->cap = cap;
  s->len = 0;
  s->reopen_at = NO_REOPEN;
  s->working = 1; /* no lock: the worker has not started and the exit hook runs on this thread */
  s->busy = 1;
  s->work.data = s;
  if (uv_queue_work(luaio_loop(), &s->work, sink_work, sink_after) != 0) {
    s->busy = s->working = 0; /* cannot happen with valid arguments; never lose the lines */
    s->werr = write_batch(s, s->wbuf, s->wlen, s->wreopen_at, 0);
    s->wlen = 0;
  }
}

/* --- formatting into the pending buffer (loop thread; nothing here raises) ---------------- */

/* Makes room for n more bytes; 0, or -1 with s->oom set. */
static int grow(sink_t *s, size_t n) {
  size_t cap = s->cap ? s->cap : 4096;
  while (cap < s->len + n) cap *= 2;
  char *b = realloc(s->buf, cap);
  if (b == NULL) {
    s->oom = 1;
    return -1;
  }
  s->buf = b;
  s->cap = cap;
  return 0;
}

/* Most pieces are a few bytes: copied by hand, they cost less than a call to memcpy.
 * Not inlined: it is called from some sixty places. */
static __attribute__((noinline)) void put(sink_t *s, const char *p, size_t n) {
  if (s->cap - s->len < n && grow(s, n) != 0) return;
  char *d = s->buf + s->len;
  s->len += n;
  if (n > 16) {
    memcpy(d, p, n);
    return;
  }
  while (n-- > 0) *d++ = *p++;
}

static inline void putc_(sink_t *s, char c) {
  if (s->cap == s->len && grow(s, 1) != 0) return;
  s->buf[s->len++] = c;
}

static void puts_(sink_t *s, const char *str) { put(s, str, strlen(str)); }

/* "2026-11-26T05:30:00.123Z"; the part up to the seconds is made once a second. */
static __attribute__((noinline)) void put_time(sink_t *s) {
  static int64_t cached_sec = INT64_MIN;
  static char cached[32];
  static size_t cached_len;
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  if (tv.tv_sec != cached_sec) {
    time_t t = (time_t)tv.tv_sec;
    struct tm tm;
    gmtime_r(&t, &tm);
    cached_len = strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
    cached_sec = tv.tv_sec;
  }
  int ms = (int)(tv.tv_usec / 1000);
  char tail[5] = {'.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10),
                  'Z'};
  put(s, cached, cached_len);
  put(s, tail, sizeof tail);
}

/* Integers exactly, other numbers as Lua's tostring shows them; JSON has no NaN or
 * infinity, so those are null there. */
static __attribute__((noinline)) void put_number(sink_t *s, double x, int json) {
  char b[40];
  if (x == floor(x) && fabs(x) < 1e15) { /* the common case, without printf's cost */
    uint64_t u = (uint64_t)fabs(x);
    char *p = b + sizeof b;
    do *--p = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (x < 0) *--p = '-';
    put(s, p, (size_t)(b + sizeof b - p));
    return;
  }
  if (isnan(x) || isinf(x))
    snprintf(b, sizeof b, "%s", json ? "null" : isnan(x) ? "nan" : x > 0 ? "inf" : "-inf");
  else if (x == floor(x) && fabs(x) < 9007199254740992.0)
    snprintf(b, sizeof b, "%.0f", x);
  else
    snprintf(b, sizeof b, "%.14g", x);
  puts_(s, b);
}

/* Length of the valid UTF-8 sequence at p, or 0 (overlong forms, surrogates and code points
 * past U+10FFFF are invalid, as are truncated sequences). */
static size_t utf8_len(const unsigned char *p, size_t n) {
  unsigned c = p[0];
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;
  if (c < 0xE0) return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
  if (c < 0xF0) {
    if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
    if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0)) return 0;
    return 3;
  }
  if (c < 0xF5) {
    if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
    if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90)) return 0;
    return 4;
  }
  return 0;
}

typedef enum { ESC_JSON, ESC_QUOTED, ESC_MESSAGE } esc_mode;

/* Writes p escaped so that it can never break its line: control characters escaped, invalid
 * UTF-8 replaced by U+FFFD; in JSON and in quoted text values `"` and `\` escaped too. */
static void put_escaped(sink_t *s, const char *str, size_t n, esc_mode mode) {
  const unsigned char *p = (const unsigned char *)str;
  static const char hex[] = "0123456789abcdef";
  size_t i = 0;
  while (i < n) {
    size_t run = i;
    while (run < n && p[run] >= 0x20 && p[run] < 0x7f &&
           (mode == ESC_MESSAGE || (p[run] != '"' && p[run] != '\\')))
      run++;
    if (run > i) put(s, str + i, run - i);
    i = run;
    if (i >= n) break;
    unsigned c = p[i];
    if (c >= 0x80) {
      size_t k = utf8_len(p + i, n - i);
      if (k == 0) {
        if (mode == ESC_JSON)
          put(s, "\\ufffd", 6);
        else
          put(s, "\xef\xbf\xbd", 3);
        i++;
      } else {
        put(s, str + i, k);
        i += k;
      }
      continue;
    }
    i++;
    switch (c) {
      case '"': put(s, "\\\"", 2); continue;
      case '\\': put(s, "\\\\", 2); continue;
      case '\n': put(s, "\\n", 2); continue;
      case '\r': put(s, "\\r", 2); continue;
      case '\t': put(s, "\\t", 2); continue;
    }
    if (mode == ESC_JSON) {
      char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      put(s, u, 6);
    } else {
      char x[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
      put(s, x, 4);
    }
  }
}

static void put_json_string(sink_t *s, const char *p, size_t n) {
  putc_(s, '"');
  put_escaped(s, p, n, ESC_JSON);
  putc_(s, '"');
}

/* A text value goes bare unless it is empty or holds a space, '"', '=', '\' or a control
 * character: then it is quoted, so `key=value` pairs always split unambiguously. */
static void put_text_value(sink_t *s, const char *p, size_t n) {
  int quote = n == 0;
  for (size_t i = 0; i < n && !quote; i++) {
    unsigned char c = (unsigned char)p[i];
    quote = c <= 0x20 || c == 0x7f || c == '"' || c == '=' || c == '\\';
  }
  if (!quote) {
    put_escaped(s, p, n, ESC_MESSAGE); /* still replaces invalid UTF-8 */
    return;
  }
  putc_(s, '"');
  put_escaped(s, p, n, ESC_QUOTED);
  putc_(s, '"');
}

/* The "N lines dropped" line, when there is room for it (or always, at exit). */
static void add_note(sink_t *s, int force) {
  if (s->dropped == 0 || (!force && s->len + NOTE_ROOM > s->max)) return;
  size_t start = s->len;
  if (s->json) {
    puts_(s, "{\"time\":\"");
    put_time(s);
    puts_(s, "\",\"level\":\"warn\",\"msg\":\"log lines dropped\",\"dropped\":");
    put_number(s, (double)s->dropped, 1);
    puts_(s, "}\n");
  } else {
    put_time(s);
    puts_(s, " WARN log lines dropped dropped=");
    put_number(s, (double)s->dropped, 0);
    putc_(s, '\n');
  }
  if (s->oom) {
    s->oom = 0;
    s->len = start;
    return;
  }
  s->dropped = 0;
}

/* Keeps the line just formatted (from start) if it fits the bound; drops it otherwise. */
static int commit_line(sink_t *s, size_t start) {
  if (s->oom || s->len > s->max) {
    s->oom = 0;
    s->len = start;
    s->dropped++;
    s->dropped_total++;
    return 0;
  }
  return 1;
}

/* Formats one line from the stack: msg at 3, n sorted field names from base + 1 and their
 * values (strings, numbers or booleans) after them. Returns 1, or 0 when dropped. Apart
 * from sink_log because it takes addresses of locals (see docs/internals.md). */
static __attribute__((noinline)) int format_line(lua_State *L, sink_t *s, int level, int base,
                                                 int n) {
  add_note(s, 0);
  size_t start = s->len, len;
  const char *p;
  if (s->json) {
    puts_(s, "{\"time\":\"");
    put_time(s);
    puts_(s, "\",\"level\":\"");
    puts_(s, level_json[level]);
    puts_(s, "\",\"msg\":");
    p = lua_tolstring(L, 3, &len);
    put_json_string(s, p, len);
  } else {
    put_time(s);
    putc_(s, ' ');
    puts_(s, level_text[level]);
    putc_(s, ' ');
    p = lua_tolstring(L, 3, &len);
    put_escaped(s, p, len, ESC_MESSAGE);
  }
  for (int i = 1; i <= n; i++) {
    int k = base + i, v = base + n + i;
    p = lua_tolstring(L, k, &len);
    if (s->json) {
      putc_(s, ',');
      put_json_string(s, p, len);
      putc_(s, ':');
    } else {
      putc_(s, ' ');
      put_text_value(s, p, len);
      putc_(s, '=');
    }
    switch (lua_type(L, v)) {
      case LUA_TNUMBER: put_number(s, lua_tonumber(L, v), s->json); break;
      case LUA_TBOOLEAN: puts_(s, lua_toboolean(L, v) ? "true" : "false"); break;
      default:
        p = lua_tolstring(L, v, &len);
        if (s->json)
          put_json_string(s, p, len);
        else
          put_text_value(s, p, len);
    }
  }
  put(s, s->json ? "}\n" : "\n", s->json ? 2 : 1);
  return commit_line(s, start);
}

/* --- access lines (Common and Combined Log Format) --------------------------------------- */

/* The fields in the order of the line; time is handled apart. */
static const char *const access_keys[] = {"remote_addr", "user",     "method",
                                          "path",        "protocol", "status",
                                          "bytes",       "referer",  "user_agent"};
enum {
  A_REMOTE,
  A_USER,
  A_METHOD,
  A_PATH,
  A_PROTOCOL,
  A_STATUS,
  A_BYTES,
  A_REFERER,
  A_AGENT,
  A_TIME,
  A_COUNT
};

/* "26/Nov/2026:05:30:00 +0000" for a time in seconds; made once a second. */
static __attribute__((noinline)) void put_clf_time(sink_t *s, double when) {
  static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  static int64_t cached_sec = INT64_MIN;
  static char cached[40];
  static int cached_len;
  int64_t sec = (int64_t)floor(when);
  if (sec != cached_sec) {
    time_t t = (time_t)sec;
    struct tm tm;
    gmtime_r(&t, &tm);
    cached_len =
        snprintf(cached, sizeof cached, "%02d/%.3s/%04d:%02d:%02d:%02d +0000", tm.tm_mday,
                 months + 3 * tm.tm_mon, tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    cached_sec = sec;
  }
  put(s, cached, (size_t)cached_len);
}

/* A field as nginx writes it: "-" when missing or empty; '"', '\', control characters and
 * bytes past ASCII as \xHH, so the field cannot end its quotes early or break the line.
 * Outside quotes (bare) a space would split the field, so it becomes \x20 too. */
static void put_clf_field(lua_State *L, sink_t *s, int idx, int bare) {
  static const char hex[] = "0123456789ABCDEF";
  if (lua_type(L, idx) == LUA_TNUMBER) {
    put_number(s, lua_tonumber(L, idx), 0);
    return;
  }
  size_t n;
  const char *p = lua_tolstring(L, idx, &n);
  if (p == NULL || n == 0) {
    putc_(s, '-');
    return;
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || (bare && c == ' ')) {
      char x[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
      put(s, x, 4);
    } else {
      putc_(s, (char)c);
    }
  }
}

/* Formats an access line from the A_COUNT values from base + 1 (collect_access); returns
 * 1, or 0 when dropped. */
static __attribute__((noinline)) int format_access(lua_State *L, sink_t *s, int base, int common,
                                                   int newline) {
  size_t start = s->len;
  put_clf_field(L, s, base + 1 + A_REMOTE, 1);
  put(s, " - ", 3);
  put_clf_field(L, s, base + 1 + A_USER, 1);
  put(s, " [", 2);
  put_clf_time(s, lua_tonumber(L, base + 1 + A_TIME));
  put(s, "] \"", 3);
  put_clf_field(L, s, base + 1 + A_METHOD, 0);
  putc_(s, ' ');
  put_clf_field(L, s, base + 1 + A_PATH, 0);
  putc_(s, ' ');
  put_clf_field(L, s, base + 1 + A_PROTOCOL, 0);
  put(s, "\" ", 2);
  put_clf_field(L, s, base + 1 + A_STATUS, 1);
  putc_(s, ' ');
  if (lua_type(L, base + 1 + A_BYTES) == LUA_TNUMBER && lua_tonumber(L, base + 1 + A_BYTES) == 0)
    putc_(s, '-'); /* CLF writes no body as "-" */
  else
    put_clf_field(L, s, base + 1 + A_BYTES, 1);
  if (!common) {
    put(s, " \"", 2);
    put_clf_field(L, s, base + 1 + A_REFERER, 0);
    put(s, "\" \"", 3);
    put_clf_field(L, s, base + 1 + A_AGENT, 0);
    putc_(s, '"');
  }
  if (newline) putc_(s, '\n');
  return commit_line(s, start);
}

/* --- the Lua side ---------------------------------------------------------------------------- */

static sink_t *check_sink(lua_State *L, int arg) {
  sink_t **box = luaL_checkudata(L, arg, SINK_MT);
  return *box;
}

/* Replaces the value on top by its text: __tostring's result, or "type: address". */
static void to_text(lua_State *L) {
  int top = lua_gettop(L);
  if (luaL_callmeta(L, -1, "__tostring")) {
    if (lua_type(L, -1) == LUA_TSTRING) {
      lua_replace(L, top);
      return;
    }
    lua_settop(L, top);
  }
  lua_pushfstring(L, "%s: %p", luaL_typename(L, top), lua_topointer(L, top));
  lua_replace(L, top);
}

static int log_now(lua_State *L);

/* Pushes the field names of the table at idx, sorted, then their values as strings, numbers
 * or booleans (anything else through __tostring, or "type: address"); returns the count.
 * Everything that can raise happens here, before a byte of the line is written. */
static int collect_fields(lua_State *L, int idx, const char *fname) {
  int base = lua_gettop(L), n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "bad argument #2 to '%s' (field names must be strings, got %s)", fname,
                 luaL_typename(L, -1));
    luaL_checkstack(L, 8, "too many log fields");
    lua_pushvalue(L, -1); /* the one below stays as collected; this one goes on iterating */
    n++;
  }
  for (int i = 2; i <= n; i++) { /* insertion sort: a line has a handful of fields */
    int j = i;
    while (j > 1 && lua_lessthan(L, base + i, base + j - 1)) j--;
    if (j != i) {
      lua_pushvalue(L, base + i);
      lua_remove(L, base + i);
      lua_insert(L, base + j);
    }
  }
  for (int i = 1; i <= n; i++) {
    lua_pushvalue(L, base + i);
    lua_rawget(L, idx);
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN) to_text(L);
  }
  return n;
}

/* Pushes the access-line fields of the table at idx (see access_keys), then the time (a
 * number: the field, or now). Anything but a string or a number goes through to_text. */
static void collect_access(lua_State *L, int idx) {
  luaL_checkstack(L, A_COUNT + 4, "access line");
  for (int i = 0; i < A_TIME; i++) {
    lua_pushstring(L, access_keys[i]);
    lua_rawget(L, idx);
    int t = lua_type(L, -1);
    if (t != LUA_TNIL && t != LUA_TSTRING && t != LUA_TNUMBER) to_text(L);
  }
  lua_pushliteral(L, "time");
  lua_rawget(L, idx);
  if (lua_type(L, -1) != LUA_TNUMBER) {
    lua_pop(L, 1);
    log_now(L);
  }
}

/* sink:log(level 0-3, msg[, fields]) -> true, or false when the line was dropped */
static int sink_log(lua_State *L) {
  sink_t *s = check_sink(L, 1);
  int level = (int)luaL_checkinteger(L, 2);
  luaL_argcheck(L, level >= 0 && level <= 3, 2, "level 0-3 expected");
  const char *fname = level_json[level];
  if (!lua_isstring(L, 3))
    luaL_error(L, "bad argument #1 to '%s' (string expected, got %s)", fname, luaL_typename(L, 3));
  int t = lua_type(L, 4);
  if (t != LUA_TNONE && t != LUA_TNIL && t != LUA_TTABLE)
    luaL_error(L, "bad argument #2 to '%s' (table of fields expected, got %s)", fname,
               luaL_typename(L, 4));
  if (s == NULL || s->closed) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_settop(L, 4);
  int n = t == LUA_TTABLE ? collect_fields(L, 4, fname) : 0;
  int kept = format_line(L, s, level, 4, n);
  sink_kick(s);
  lua_pushboolean(L, kept);
  return 1;
}

/* sink:access(fields, common) -> true, or false when dropped: one access line */
static int sink_access(lua_State *L) {
  sink_t *s = check_sink(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int common = lua_toboolean(L, 3);
  if (s == NULL || s->closed) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_settop(L, 3);
  collect_access(L, 2);
  add_note(s, 0);
  int kept = format_access(L, s, 3, common, 1);
  sink_kick(s);
  lua_pushboolean(L, kept);
  return 1;
}

/* sink:write(text, ...) -> true, or false when dropped: raw bytes, the pieces in a row
 * (whole lines, with their "\n") */
static int sink_write(lua_State *L) {
  sink_t *s = check_sink(L, 1);
  int top = lua_gettop(L);
  for (int i = 2; i <= top; i++) luaL_checktype(L, i, LUA_TSTRING);
  if (s == NULL || s->closed) {
    lua_pushboolean(L, 0);
    return 1;
  }
  add_note(s, 0);
  size_t start = s->len;
  for (int i = 2; i <= top; i++) put(s, lua_tostring(L, i), lua_objlen(L, i));
  int kept = commit_line(s, start);
  sink_kick(s);
  lua_pushboolean(L, kept);
  return 1;
}

/* sink:reopen(): lines from now on go to a freshly opened file at the same path. */
static int sink_reopen(lua_State *L) {
  sink_t *s = check_sink(L, 1);
  if (s != NULL && !s->closed && s->path != NULL) {
    if (s->reopen_at == NO_REOPEN) s->reopen_at = s->len;
    sink_kick(s);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* The descriptor closes once every line is written; the memory goes with the userdata. */
static void sink_free_if_done(sink_t *s) {
  if (!s->closed || s->busy || (s->len > 0 && s->fd >= 0)) return;
  if (s->fd > 2) close(s->fd); /* after the last write: quick, and never the std streams */
  s->fd = -1;
  if (s->box != NULL) return;
  for (sink_t **p = &sinks; *p != NULL; p = &(*p)->next) {
    if (*p == s) {
      *p = s->next;
      break;
    }
  }
  uv_mutex_destroy(&s->lock);
  uv_cond_destroy(&s->cond);
  free(s->buf);
  free(s->wbuf);
  free(s->path);
  free(s);
}

static void sink_after(uv_work_t *w, int status) {
  sink_t *s = w->data;
  s->busy = 0;
  if (s->werr != 0) s->errors++;
  s->wlen = 0;
  if (s->wcap > KEEP_BUFFER) {
    free(s->wbuf);
    s->wbuf = NULL;
    s->wcap = 0;
  }
  add_note(s, 0);
  sink_kick(s);
  sink_free_if_done(s);
}

/* sink:close(): no more lines; those pending are still written. */
static int sink_close(lua_State *L) {
  sink_t *s = check_sink(L, 1);
  if (s != NULL && !s->closed) {
    s->closed = 1;
    add_note(s, 1);
    sink_kick(s);
    sink_free_if_done(s);
  }
  return 0;
}

/* sink:pending() -> bytes not written yet (pending and in flight) */
static int sink_pending(lua_State *L) {
  sink_t *s = check_sink(L, 1);
  lua_pushnumber(L, s == NULL ? 0 : (double)(s->len + (s->busy ? s->wlen : 0)));
  return 1;
}

/* sink:stats() -> {pending, dropped, errors}: dropped counts every line ever dropped,
 * errors the batches a write failed for */
static int sink_stats(lua_State *L) {
  sink_t *s = check_sink(L, 1);
  lua_createtable(L, 0, 3);
  lua_pushnumber(L, s == NULL ? 0 : (double)(s->len + (s->busy ? s->wlen : 0)));
  lua_setfield(L, -2, "pending");
  lua_pushnumber(L, s == NULL ? 0 : (double)s->dropped_total);
  lua_setfield(L, -2, "dropped");
  lua_pushnumber(L, s == NULL ? 0 : (double)s->errors);
  lua_setfield(L, -2, "errors");
  return 1;
}

static int sink_gc(lua_State *L) {
  sink_t **box = lua_touserdata(L, 1);
  sink_t *s = *box;
  if (s != NULL) {
    s->box = NULL;
    *box = NULL;
    if (!s->closed) {
      s->closed = 1;
      add_note(s, 1);
      sink_kick(s);
    }
    sink_free_if_done(s);
  }
  return 0;
}

/* At exit: wait (boundedly) for a batch the thread pool is writing, take back one that is
 * still queued, then write what is pending, synchronously and in order. */
static void sinks_atexit(void) {
  for (sink_t *s = sinks; s != NULL; s = s->next) {
    if (s->busy && uv_cancel((uv_req_t *)&s->work) == 0) { /* it never started */
      write_batch(s, s->wbuf, s->wlen, s->wreopen_at, 0);
      s->working = 0;
    }
    uv_mutex_lock(&s->lock);
    uint64_t deadline = uv_hrtime() + (uint64_t)EXIT_WAIT_MS * 1000000;
    while (s->working) {
      uint64_t now = uv_hrtime();
      if (now >= deadline) break;
      uv_cond_timedwait(&s->cond, &s->lock, deadline - now);
    }
    int stuck = s->working;
    uv_mutex_unlock(&s->lock);
    if (stuck || s->fd < 0) continue;
    add_note(s, 1);
    write_batch(s, s->buf, s->len, s->reopen_at, 0);
    s->len = 0;
    s->reopen_at = NO_REOPEN;
  }
}

/* Opens output ("stdout", "stderr" or a path) outside the sink; -errno on failure. A file
 * is opened synchronously, once, when a logger is made: so a bad path fails right there. */
static __attribute__((noinline)) int open_output(const char *output) {
  if (strcmp(output, "stdout") == 0) return 1;
  if (strcmp(output, "stderr") == 0) return 2;
  int fd = open_path(output);
  return fd < 0 ? -errno : fd;
}

/* log.open(output, buffer_size, json) -> sink | nil, err */
static int log_open(lua_State *L) {
  const char *output = luaio_checkcstring(L, 1);
  lua_Number max = luaL_checknumber(L, 2);
  luaL_argcheck(L, max >= 1 && max <= 1e12, 2, "buffer size out of range");
  int json = lua_toboolean(L, 3);
  sink_t **box = lua_newuserdata(L, sizeof *box);
  *box = NULL;
  luaL_getmetatable(L, SINK_MT);
  lua_setmetatable(L, -2);
  sink_t *s = calloc(1, sizeof *s);
  if (s == NULL) return luaio_pusherror(L, UV_ENOMEM);
  int fd = open_output(output);
  if (fd < 0) {
    free(s);
    return luaio_pusherror(L, fd);
  }
  if (fd > 2 && (s->path = strdup(output)) == NULL) {
    close(fd);
    free(s);
    return luaio_pusherror(L, UV_ENOMEM);
  }
  s->fd = fd;
  s->json = json;
  s->max = (size_t)max;
  s->reopen_at = s->wreopen_at = NO_REOPEN;
  uv_mutex_init(&s->lock);
  uv_cond_init(&s->cond);
  s->box = box;
  *box = s;
  s->next = sinks;
  sinks = s;
  if (!exit_hook_set) exit_hook_set = atexit(sinks_atexit) == 0;
  return 1;
}

/* log.formatAccess(fields, common) -> the access line, without "\n". Formatted in a
 * scratch sink kept for the next call (the loop thread is the only caller). */
static int log_formataccess(lua_State *L) {
  static sink_t scratch = {.max = SIZE_MAX};
  luaL_checktype(L, 1, LUA_TTABLE);
  int common = lua_toboolean(L, 2);
  lua_settop(L, 2);
  collect_access(L, 1);
  scratch.len = 0;
  if (!format_access(L, &scratch, 2, common, 0)) return luaio_pusherror(L, UV_ENOMEM);
  lua_pushlstring(L, scratch.buf, scratch.len);
  return 1;
}

/* log.now() -> seconds since the epoch, with microseconds */
static int log_now(lua_State *L) {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  lua_pushnumber(L, (double)tv.tv_sec + (double)tv.tv_usec / 1e6);
  return 1;
}

static const luaL_Reg sink_methods[] = {{"access", sink_access}, {"close", sink_close},
                                        {"log", sink_log},       {"pending", sink_pending},
                                        {"reopen", sink_reopen}, {"stats", sink_stats},
                                        {"write", sink_write},   {NULL, NULL}};

static const luaL_Reg log_funcs[] = {
    {"formatAccess", log_formataccess}, {"now", log_now}, {"open", log_open}, {NULL, NULL}};

int luaopen_luaio_log(lua_State *L) {
  if (luaL_newmetatable(L, SINK_MT)) {
    luaio_newlib(L, sink_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, sink_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaio_newlib(L, log_funcs);
  return 1;
}
