/*
 * fs.c: files through libuv's thread pool (uv_fs_* requests), so the loop never waits for
 * a disk. The Lua module "luaio.fs" is the C half of stdlib/fs.lua, which adds readFile and
 * writeFile on top of these calls.
 *
 * Every call is one request: the task checks it may wait, starts the request, anchors
 * itself and yields; on_fs pushes the results, cleans the request up and resumes the task.
 * Files have nothing to try before waiting (a read of a regular file always goes to the
 * thread pool: even a cached page can fault), so there is no fast path.
 *
 * A read allocates its request and its buffer in one block and copies the bytes once, into
 * the Lua string it returns. A file handle is a 2-int userdata; it counts the requests in
 * flight on it, because closing the descriptor under a thread-pool read would let a newly
 * opened file reuse the number.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "luaio.h"

#define FILE_MT "luaio.file"
#define DEFAULT_READ 65536
#define MAX_READ (1 << 30) /* one read allocates its buffer: 1 GiB is plenty per call */

typedef struct {
  int fd;  /* -1 once closed */
  int ops; /* requests in flight on fd */
} file_t;

typedef struct {
  uv_fs_t req;
  lua_State *co;
  int co_ref;
  int file_ref; /* the file userdata, kept alive while libuv uses its descriptor */
  int data_ref; /* a write's string: libuv points into it */
  file_t *file;
  uv_buf_t buf;   /* a read's buffer (data below); a write's rest after a short write */
  int64_t offset; /* a write's position, -1 for the file position */
  char data[];
} fsreq_t;

/* --- requests ----------------------------------------------------------------------------- */

static fsreq_t *req_new(size_t extra) {
  fsreq_t *r = malloc(sizeof *r + extra);
  if (r == NULL) return NULL;
  r->co = NULL;
  r->co_ref = r->file_ref = r->data_ref = LUA_NOREF;
  r->file = NULL;
  r->offset = -1;
  r->req.data = r;
  return r;
}

/* Keeps the file at arg alive and counted busy for the request's lifetime. */
static void req_hold_file(lua_State *L, fsreq_t *r, int arg, file_t *f) {
  lua_pushvalue(L, arg);
  r->file_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  r->file = f;
  f->ops++;
}

/* The one cleanup for every path: libuv's own allocations, our references, the block. */
static void req_free(fsreq_t *r) {
  uv_fs_req_cleanup(&r->req);
  if (r->file != NULL) r->file->ops--;
  luaio_unanchor(r->file_ref);
  luaio_unanchor(r->data_ref);
  luaio_unanchor(r->co_ref);
  free(r);
}

/* After uv_fs_<op>(..., on_fs) returned err: wait for on_fs, or fail now. */
static int req_wait(lua_State *L, fsreq_t *r, int err) {
  if (err < 0) {
    req_free(r);
    return luaio_pusherror(L, err);
  }
  r->co = L;
  r->co_ref = luaio_anchor(L);
  return luaio_yield(L);
}

static void setnum(lua_State *L, const char *key, double value) {
  lua_pushnumber(L, value);
  lua_setfield(L, -2, key);
}

static const char *type_name(uint64_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "link";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    case S_IFCHR: return "char";
    case S_IFBLK: return "block";
    default: return "unknown";
  }
}

static void push_stat(lua_State *L, const uv_stat_t *st) {
  lua_createtable(L, 0, 11);
  setnum(L, "size", (double)st->st_size);
  setnum(L, "mtime", (double)st->st_mtim.tv_sec + (double)st->st_mtim.tv_nsec / 1e9);
  setnum(L, "atime", (double)st->st_atim.tv_sec + (double)st->st_atim.tv_nsec / 1e9);
  setnum(L, "ctime", (double)st->st_ctim.tv_sec + (double)st->st_ctim.tv_nsec / 1e9);
  setnum(L, "mode", (double)(st->st_mode & 07777)); /* permission bits; the kind is `type` */
  lua_pushstring(L, type_name(st->st_mode));
  lua_setfield(L, -2, "type");
  setnum(L, "ino", (double)st->st_ino);
  setnum(L, "dev", (double)st->st_dev);
  setnum(L, "nlink", (double)st->st_nlink);
  setnum(L, "uid", (double)st->st_uid);
  setnum(L, "gid", (double)st->st_gid);
}

static void push_file(lua_State *L, int fd) {
  file_t *f = lua_newuserdata(L, sizeof *f);
  f->fd = fd;
  f->ops = 0;
  luaL_getmetatable(L, FILE_MT);
  lua_setmetatable(L, -2);
}

/* Pushes what the finished request gives Lua; returns the count. */
static int push_result(lua_State *co, fsreq_t *r, ssize_t res) {
  if (res < 0) return luaio_pusherror(co, (int)res);
  switch (r->req.fs_type) {
    case UV_FS_OPEN: push_file(co, (int)res); return 1;
    case UV_FS_READ:
      if (res == 0 && r->buf.len > 0) return luaio_pusherror(co, UV_EOF);
      lua_pushlstring(co, r->data, (size_t)res);
      return 1;
    case UV_FS_STAT:
    case UV_FS_LSTAT:
    case UV_FS_FSTAT: push_stat(co, &r->req.statbuf); return 1;
    default: /* write, close, unlink, rename, mkdir */ lua_pushboolean(co, 1); return 1;
  }
}

static void on_fs(uv_fs_t *req) {
  fsreq_t *r = req->data;
  ssize_t res = req->result;
  if (req->fs_type == UV_FS_WRITE && res >= 0 && (size_t)res < r->buf.len) {
    /* A short write (a full disk stops one midway, a signal can): write the rest, and
     * report the error that the next attempt gives, if any. */
    if (res == 0) {
      res = UV_EIO; /* no progress: do not spin */
    } else {
      r->buf.base += res;
      r->buf.len -= (size_t)res;
      if (r->offset >= 0) r->offset += res;
      uv_fs_req_cleanup(req);
      uv_buf_t rest = r->buf; /* libuv copies the buffer list into the request */
      int err = uv_fs_write(luaio_loop(), req, r->file->fd, &rest, 1, r->offset, on_fs);
      if (err == 0) return;
      res = err;
    }
  }
  lua_State *co = r->co;
  int n = push_result(co, r, res);
  req_free(r);
  luaio_resume(co, n);
}

/* --- files ---------------------------------------------------------------------------------- */

/* The open file at arg, or NULL once closed. */
static file_t *check_file(lua_State *L, int arg) {
  file_t *f = luaL_checkudata(L, arg, FILE_MT);
  return f->fd < 0 ? NULL : f;
}

static int push_closed(lua_State *L) { return luaio_pusherror(L, UV_EBADF); }

/* A position argument: nil for the file position (-1), or a byte offset. */
static int64_t opt_offset(lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) return -1;
  lua_Number n = luaL_checknumber(L, arg);
  luaL_argcheck(L, n >= 0 && n <= 9007199254740992.0 && n == (lua_Number)(int64_t)n, arg,
                "non-negative integer offset expected");
  return (int64_t)n;
}

/* file:read([n][, offset]) -> data | nil, err. Up to n bytes (default 64 KiB) from the file
 * position or from offset (which leaves the position alone). At the end: nil, EOF error. */
static int file_read(lua_State *L) {
  file_t *f = check_file(L, 1);
  lua_Integer n = luaL_optinteger(L, 2, DEFAULT_READ);
  luaL_argcheck(L, n >= 0, 2, "must not be negative");
  luaL_argcheck(L, n <= MAX_READ, 2, "larger than 1 GiB");
  int64_t offset = opt_offset(L, 3);
  if (f == NULL) return push_closed(L);
  if (n == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  luaio_checktask(L, "read");
  fsreq_t *r = req_new((size_t)n);
  if (r == NULL) return luaio_pusherror(L, UV_ENOMEM);
  req_hold_file(L, r, 1, f);
  r->buf = uv_buf_init(r->data, (unsigned)n);
  return req_wait(L, r, uv_fs_read(luaio_loop(), &r->req, f->fd, &r->buf, 1, offset, on_fs));
}

/* file:write(data[, offset]) -> true | nil, err. Returns once every byte is written. */
static int file_write(lua_State *L) {
  file_t *f = check_file(L, 1);
  luaL_checktype(L, 2, LUA_TSTRING);
  int64_t offset = opt_offset(L, 3);
  if (f == NULL) return push_closed(L);
  size_t len = lua_objlen(L, 2);
  if (len == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  luaL_argcheck(L, len <= UINT32_MAX, 2, "larger than 4 GiB");
  luaio_checktask(L, "write");
  fsreq_t *r = req_new(0);
  if (r == NULL) return luaio_pusherror(L, UV_ENOMEM);
  req_hold_file(L, r, 1, f);
  lua_pushvalue(L, 2);
  r->data_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  r->buf = uv_buf_init((char *)lua_tostring(L, 2), (unsigned)len);
  r->offset = offset;
  return req_wait(L, r, uv_fs_write(luaio_loop(), &r->req, f->fd, &r->buf, 1, offset, on_fs));
}

/* file:stat() -> the same table as fs.stat */
static int file_stat(lua_State *L) {
  file_t *f = check_file(L, 1);
  if (f == NULL) return push_closed(L);
  luaio_checktask(L, "stat");
  fsreq_t *r = req_new(0);
  if (r == NULL) return luaio_pusherror(L, UV_ENOMEM);
  req_hold_file(L, r, 1, f);
  return req_wait(L, r, uv_fs_fstat(luaio_loop(), &r->req, f->fd, on_fs));
}

/* file:close() -> true | nil, err. Closing twice is harmless; closing while another task
 * still reads or writes the file is refused (EBUSY) rather than pulling the descriptor
 * from under it. */
static int file_close(lua_State *L) {
  file_t *f = check_file(L, 1);
  if (f == NULL) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (f->ops > 0)
    return luaio_pushnamederror(L, "EBUSY", "the file has a read or write in progress");
  luaio_checktask(L, "close");
  fsreq_t *r = req_new(0);
  if (r == NULL) return luaio_pusherror(L, UV_ENOMEM);
  int fd = f->fd;
  f->fd = -1; /* from now on the handle reads as closed, whatever close(2) says */
  return req_wait(L, r, uv_fs_close(luaio_loop(), &r->req, fd, on_fs));
}

/* A file still open when collected: close(2) right here. __gc cannot wait, and closing a
 * descriptor is quick; no request can be in flight (each one holds the userdata). */
static int file_gc(lua_State *L) {
  file_t *f = lua_touserdata(L, 1);
  if (f->fd >= 0) close(f->fd);
  f->fd = -1;
  return 0;
}

static int file_tostring(lua_State *L) {
  file_t *f = luaL_checkudata(L, 1, FILE_MT);
  if (f->fd < 0)
    lua_pushliteral(L, "file (closed)");
  else
    lua_pushfstring(L, "file (fd %d)", f->fd);
  return 1;
}

/* --- paths ------------------------------------------------------------------------------------ */

static const char *const open_names[] = {"r",  "r+",  "w",  "w+",  "a", "a+",
                                         "wx", "wx+", "ax", "ax+", NULL};
static const int open_flags[] = {
    O_RDONLY,
    O_RDWR,
    O_WRONLY | O_CREAT | O_TRUNC,
    O_RDWR | O_CREAT | O_TRUNC,
    O_WRONLY | O_CREAT | O_APPEND,
    O_RDWR | O_CREAT | O_APPEND,
    O_WRONLY | O_CREAT | O_EXCL,
    O_RDWR | O_CREAT | O_EXCL,
    O_WRONLY | O_CREAT | O_APPEND | O_EXCL,
    O_RDWR | O_CREAT | O_APPEND | O_EXCL,
};

/* An octal string ("644", "0755") as a number, or -1. Apart from its callers, which raise:
 * a frame that raises must not hold address-taken locals (see docs/internals.md). */
static __attribute__((noinline)) long parse_octal(const char *s) {
  char *end;
  long v = strtol(s, &end, 8);
  return (*s == '\0' || *end != '\0' || v < 0 || v > 07777) ? -1 : v;
}

/* A mode argument: a number (420) or an octal string ("644"); default def. */
static int opt_mode(lua_State *L, int arg, int def) {
  if (lua_isnoneornil(L, arg)) return def;
  long v;
  if (lua_type(L, arg) == LUA_TSTRING)
    v = parse_octal(lua_tostring(L, arg));
  else
    v = (long)luaL_checkinteger(L, arg);
  luaL_argcheck(L, v >= 0 && v <= 07777, arg,
                "permission bits expected (a number or an octal string)");
  return (int)v;
}

/* fs.open(path[, flags = "r"][, mode = "644"]) -> file | nil, err */
static int fs_open(lua_State *L) {
  const char *path = luaio_checkcstring(L, 1);
  int flags = open_flags[luaL_checkoption(L, 2, "r", open_names)];
  int mode = opt_mode(L, 3, 0644);
  luaio_checktask(L, "open");
  fsreq_t *r = req_new(0);
  if (r == NULL) return luaio_pusherror(L, UV_ENOMEM);
  return req_wait(L, r, uv_fs_open(luaio_loop(), &r->req, path, flags, mode, on_fs));
}

/* fs.stat(path) -> {size, mtime, atime, ctime, mode, type, ino, dev, nlink, uid, gid} | nil, err */
static int fs_stat(lua_State *L) {
  const char *path = luaio_checkcstring(L, 1);
  luaio_checktask(L, "stat");
  fsreq_t *r = req_new(0);
  if (r == NULL) return luaio_pusherror(L, UV_ENOMEM);
  return req_wait(L, r, uv_fs_stat(luaio_loop(), &r->req, path, on_fs));
}

/* fs.lstat(path): fs.stat of a symbolic link itself (type "link") */
static int fs_lstat(lua_State *L) {
  const char *path = luaio_checkcstring(L, 1);
  luaio_checktask(L, "lstat");
  fsreq_t *r = req_new(0);
  if (r == NULL) return luaio_pusherror(L, UV_ENOMEM);
  return req_wait(L, r, uv_fs_lstat(luaio_loop(), &r->req, path, on_fs));
}

/* fs.unlink(path) -> true | nil, err */
static int fs_unlink(lua_State *L) {
  const char *path = luaio_checkcstring(L, 1);
  luaio_checktask(L, "unlink");
  fsreq_t *r = req_new(0);
  if (r == NULL) return luaio_pusherror(L, UV_ENOMEM);
  return req_wait(L, r, uv_fs_unlink(luaio_loop(), &r->req, path, on_fs));
}

/* fs.rename(from, to) -> true | nil, err */
static int fs_rename(lua_State *L) {
  const char *from = luaio_checkcstring(L, 1);
  const char *to = luaio_checkcstring(L, 2);
  luaio_checktask(L, "rename");
  fsreq_t *r = req_new(0);
  if (r == NULL) return luaio_pusherror(L, UV_ENOMEM);
  return req_wait(L, r, uv_fs_rename(luaio_loop(), &r->req, from, to, on_fs));
}

/* fs.mkdir(path[, mode = "755"]) -> true | nil, err */
static int fs_mkdir(lua_State *L) {
  const char *path = luaio_checkcstring(L, 1);
  int mode = opt_mode(L, 2, 0755);
  luaio_checktask(L, "mkdir");
  fsreq_t *r = req_new(0);
  if (r == NULL) return luaio_pusherror(L, UV_ENOMEM);
  return req_wait(L, r, uv_fs_mkdir(luaio_loop(), &r->req, path, mode, on_fs));
}

static const luaL_Reg file_methods[] = {{"close", file_close},
                                        {"read", file_read},
                                        {"stat", file_stat},
                                        {"write", file_write},
                                        {NULL, NULL}};

static const luaL_Reg fs_funcs[] = {
    {"lstat", fs_lstat}, {"mkdir", fs_mkdir},   {"open", fs_open}, {"rename", fs_rename},
    {"stat", fs_stat},   {"unlink", fs_unlink}, {NULL, NULL}};

int luaopen_luaio_fs(lua_State *L) {
  if (luaL_newmetatable(L, FILE_MT)) {
    luaio_newlib(L, file_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, file_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, file_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  luaio_newlib(L, fs_funcs);
  return 1;
}
