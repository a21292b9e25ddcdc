/*
 * bundle.c: the app store. An app's files come from one of two places:
 *
 *   - a payload appended to our own executable by `luaio build` (a bundled app), or
 *   - the app folder given to `luaio run`.
 *
 * Both are served by the same code: one searcher for require (so a bundled app resolves
 * modules exactly as it does on disk) and one `bundle` module for the other files.
 *
 * Executable layout:  [runtime][payload: zstd frame of the archive][trailer, 64 bytes]
 *
 * The trailer sits at a fixed place, the end of the file, so start-up reads 64 bytes and never
 * scans. The runtime also knows its own size (build.sh writes it into runtime_size_mark after
 * stripping), so a bundle whose tail was cut off is told apart from the plain runtime.
 *
 * Archive (after decompression): u32 count, then per file u32 name_len, u32 data_len, name,
 * data. Little-endian, names sorted, .lua files hold LuaJIT bytecode.
 *
 * Files and folders whose names start with "." are not part of an app, in either place.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buildinfo.h" /* generated: LUAIO_BUILD_ID */
#include "luaio.h"
#include "zstd.h"

#define TRAILER_SIZE 64
#define TRAILER_MAGIC "LUAIOPK1"
#define FORMAT_VERSION 1
#define BUILD_ID_LEN 16
#define MAX_NAME 4096

/* Trailer, little-endian:
 *   0 u32 format version     4 u32 crc32 of the payload   8 u64 payload offset
 *  16 u64 payload size      24 u64 archive size           32 char build id[16]
 *  48 char reserved[8]      56 char magic[8]                                          */

/* Patched after linking by build.sh with the stripped executable's size, 16 digits. */
__attribute__((used)) static const char runtime_size_mark[] = "LUAIO_RUNTIME_SIZE=????????????????";

typedef struct {
  const char *name;
  size_t name_len;
  const char *data;
  size_t size;
} entry_t;

static struct {
  int mounted;      /* 1: files come from the archive below */
  char *archive;    /* decompressed archive, kept for the life of the process */
  entry_t *entries; /* sorted by name */
  uint32_t count;
  char *folder;       /* otherwise files come from this folder (luaio run) */
  char *chunk_prefix; /* what chunk names start with: "" or "<folder>/" */
  char *entry;        /* the app file that runs first, relative to the app */
} store;

/* --- little helpers ---------------------------------------------------------------------- */

static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const unsigned char *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }
static void put32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
  put32(p, (uint32_t)v);
  put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t crc32(const unsigned char *p, size_t n) {
  static uint32_t table[256];
  if (table[1] == 0)
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
  uint32_t c = 0xFFFFFFFFu;
  while (n--) c = table[(c ^ *p++) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

/* The runtime's own size as patched by build.sh, or 0 when the mark was never patched. */
static uint64_t runtime_size(void) {
  const volatile char *digits = runtime_size_mark + sizeof "LUAIO_RUNTIME_SIZE=" - 1;
  uint64_t size = 0;
  for (int i = 0; i < 16; i++) {
    if (digits[i] < '0' || digits[i] > '9') return 0;
    size = size * 10 + (uint64_t)(digits[i] - '0');
  }
  return size;
}

/* Opens our own executable. /proc may be missing (a chroot, a bare container), so fall back
 * to the path the kernel was asked to execute. */
static int open_self(void) {
  int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const char *path = (const char *)getauxval(AT_EXECFN);
    if (path != NULL) fd = open(path, O_RDONLY | O_CLOEXEC);
  }
  return fd;
}

static int read_at(int fd, void *buf, size_t n, uint64_t offset) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = pread(fd, (char *)buf + done, n - done, (off_t)(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    done += (size_t)r;
  }
  return 0;
}

/* --- reading a payload -------------------------------------------------------------------- */

static void fail(const char *fmt, const char *detail) {
  fprintf(stderr, "luaio: corrupt bundle: ");
  fprintf(stderr, fmt, detail);
  fputc('\n', stderr);
  exit(1);
}

/* Lookups are binary searches, so the writer sorts names and the reader insists on it. */
static int names_ascending(const entry_t *a, const entry_t *b) {
  size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
  int c = memcmp(a->name, b->name, n);
  return c < 0 || (c == 0 && a->name_len < b->name_len);
}

/* Checks the archive's index and fills store.entries; returns an error string or NULL. */
static const char *parse_archive(const char *buf, size_t size) {
  const unsigned char *p = (const unsigned char *)buf, *end = p + size;
  if (size < 4) return "archive too short";
  uint32_t count = get32(p);
  p += 4;
  if (count > size / 8) return "bad file count";
  store.entries = calloc(count ? count : 1, sizeof(entry_t));
  if (store.entries == NULL) return "out of memory";
  for (uint32_t i = 0; i < count; i++) {
    if ((size_t)(end - p) < 8) return "index cut short";
    uint64_t nlen = get32(p), dlen = get32(p + 4);
    p += 8;
    if (nlen == 0 || nlen > MAX_NAME || (uint64_t)(end - p) < nlen + dlen)
      return "entry out of bounds";
    entry_t e = {(const char *)p, (size_t)nlen, (const char *)p + nlen, (size_t)dlen};
    if (i > 0 && !names_ascending(&store.entries[i - 1], &e)) return "index not sorted";
    store.entries[i] = e;
    p += nlen + dlen;
  }
  if (p != end) return "trailing bytes after the last file";
  store.count = count;
  return NULL;
}

/* A build id as the Makefile writes it: 16 lowercase hex digits. */
static int is_build_id(const unsigned char *id) {
  for (int i = 0; i < BUILD_ID_LEN; i++)
    if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'))) return 0;
  return 1;
}

/* The trailer's build id differs from ours: another build made the bundle, or, when it is not
 * even a build id, the trailer is damaged (its bytes are shown in hex, never raw). */
static void fail_build_id(const unsigned char *id) {
  if (is_build_id(id)) {
    fprintf(stderr,
            "luaio: this bundle was made by another luaio build (bundle %.16s, runtime %s); "
            "rebuild the app with this runtime's `luaio build`\n",
            (const char *)id, LUAIO_BUILD_ID);
    exit(1);
  }
  char hex[2 * BUILD_ID_LEN + 1];
  for (int i = 0; i < BUILD_ID_LEN; i++) snprintf(hex + 2 * i, 3, "%02x", id[i]);
  fail("the build id in the trailer is not one (bytes %s)", hex);
}

luaio_payload luaio_bundle_mount_self(void) {
  int fd = open_self();
  if (fd < 0) return LUAIO_NO_PAYLOAD; /* cannot see ourselves: behave as the plain runtime */
  struct stat st;
  uint64_t own = runtime_size();
  if (fstat(fd, &st) < 0 || (own != 0 && (uint64_t)st.st_size == own)) {
    close(fd);
    return LUAIO_NO_PAYLOAD; /* the common case for the CLI: one fstat, nothing read */
  }
  uint64_t file_size = (uint64_t)st.st_size;
  if (own != 0 && file_size < own)
    fail("%s", "the executable is shorter than the runtime (truncated)");
  unsigned char t[TRAILER_SIZE];
  if (file_size < TRAILER_SIZE || read_at(fd, t, TRAILER_SIZE, file_size - TRAILER_SIZE) < 0 ||
      memcmp(t + 56, TRAILER_MAGIC, 8) != 0) {
    close(fd);
    if (own == 0) return LUAIO_NO_PAYLOAD;
    fail("%s", "no trailer at the end of the file (truncated or overwritten)");
  }
  if (get32(t) != FORMAT_VERSION) fail("%s", "unknown bundle format version");
  if (memcmp(t + 32, LUAIO_BUILD_ID, BUILD_ID_LEN) != 0) fail_build_id(t + 32);
  uint32_t crc = get32(t + 4);
  uint64_t offset = get64(t + 8), packed = get64(t + 16), raw = get64(t + 24);
  if (offset + packed + TRAILER_SIZE != file_size || (own != 0 && offset != own))
    fail("%s", "payload offsets do not match the file size (truncated?)");
  if (raw > ((uint64_t)1 << 32)) fail("%s", "archive larger than 4 GiB");
  char *payload = malloc(packed ? packed : 1);
  store.archive = malloc(raw ? raw : 1);
  if (payload == NULL || store.archive == NULL) fail("%s", "out of memory");
  if (read_at(fd, payload, packed, offset) < 0) fail("%s", "cannot read the payload");
  close(fd);
  if (crc32((unsigned char *)payload, packed) != crc) fail("%s", "checksum mismatch");
  size_t got = ZSTD_decompress(store.archive, raw, payload, packed);
  if (ZSTD_isError(got)) fail("zstd: %s", ZSTD_getErrorName(got));
  if (got != raw) fail("%s", "archive size mismatch");
  free(payload);
  const char *err = parse_archive(store.archive, raw);
  if (err != NULL) fail("%s", err);
  store.mounted = 1;
  store.chunk_prefix = "";
  return LUAIO_PAYLOAD;
}

const char *luaio_bundle_folder(void) { return store.mounted ? NULL : store.folder; }

void luaio_bundle_use_folder(const char *dir) {
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') n--;
  store.folder = strndup(dir, n);
  store.chunk_prefix = malloc(n + 2);
  memcpy(store.chunk_prefix, dir, n);
  strcpy(store.chunk_prefix + n, "/");
  if (strcmp(store.folder, ".") == 0) store.chunk_prefix[0] = '\0'; /* "x.lua:1", not "./x.lua:1" */
}

/* --- looking files up ------------------------------------------------------------------- */

static int entry_cmp(const void *key, const void *elem) {
  const char *name = key;
  const entry_t *e = elem;
  int c = strncmp(name, e->name, e->name_len);
  if (c != 0) return c;
  return name[e->name_len] == '\0' ? 0 : 1;
}

/* Finds path in the store. Archive data is borrowed; folder data is malloc'd (*owned = 1).
 * Returns 0, or a negative errno-style libuv code. */
static int store_get(const char *path, const char **data, size_t *size, int *owned) {
  *owned = 0;
  if (store.mounted) {
    const entry_t *e = bsearch(path, store.entries, store.count, sizeof(entry_t), entry_cmp);
    if (e == NULL) return UV_ENOENT;
    *data = e->data;
    *size = e->size;
    return 0;
  }
  if (path[0] == '.' || strstr(path, "/.") != NULL) return UV_ENOENT; /* hidden: as in a bundle */
  char full[MAX_NAME * 2];
  if (snprintf(full, sizeof full, "%s/%s", store.folder, path) >= (int)sizeof full)
    return UV_ENAMETOOLONG;
  FILE *f = fopen(full, "rb");
  if (f == NULL) return -errno;
  struct stat st;
  int err = fstat(fileno(f), &st) < 0 ? -errno
            : S_ISDIR(st.st_mode)     ? UV_EISDIR
            : S_ISREG(st.st_mode)     ? 0
                                      : UV_EINVAL;
  if (err != 0) {
    fclose(f);
    return err;
  }
  char *buf = malloc((size_t)st.st_size + 1);
  size_t got = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
  int bad = buf == NULL || ferror(f) || got != (size_t)st.st_size;
  fclose(f);
  if (bad) {
    free(buf);
    return buf == NULL ? UV_ENOMEM : UV_EIO;
  }
  *data = buf;
  *size = got;
  *owned = 1;
  return 0;
}

/* App paths are relative, '/'-separated, and never leave the app: no "..", no leading "/". */
static const char *check_path(lua_State *L, int arg) {
  const char *path = luaio_checkcstring(L, arg);
  while (path[0] == '.' && path[1] == '/') path += 2;
  const char *p = path;
  luaL_argcheck(L, *p != '/', arg, "must be relative to the app");
  for (;;) {
    const char *slash = strchr(p, '/');
    size_t len = slash ? (size_t)(slash - p) : strlen(p);
    luaL_argcheck(L, !(len == 2 && p[0] == '.' && p[1] == '.'), arg, "must not contain '..'");
    if (slash == NULL) break;
    p = slash + 1;
  }
  luaL_argcheck(L, strlen(path) < MAX_NAME, arg, "too long");
  return path;
}

/* --- require ------------------------------------------------------------------------------- */

/* Loads the app file at path as a chunk. On success leaves the chunk on the stack and returns 1;
 * when there is no such file pushes a "no file" line and returns 0; a syntax error raises. */
static int load_file(lua_State *L, const char *path, const char *modname) {
  const char *data;
  size_t size;
  int owned;
  if (store_get(path, &data, &size, &owned) != 0) {
    lua_pushfstring(L, "\n\tno file '%s' in the app", path);
    return 0;
  }
  lua_pushfstring(L, "@%s%s", store.chunk_prefix, path);
  int status = luaL_loadbuffer(L, data, size, lua_tostring(L, -1));
  if (owned) free((void *)data);
  if (status != 0) luaL_error(L, "error loading module '%s':\n\t%s", modname, lua_tostring(L, -1));
  lua_remove(L, -2); /* the chunk name */
  return 1;
}

/* Tries "<modname with / for .><suffix>" for require. */
static int search_one(lua_State *L, const char *modname, const char *suffix) {
  char path[MAX_NAME];
  size_t n = strlen(modname);
  if (n + strlen(suffix) >= sizeof path) return 0;
  for (size_t i = 0; i < n; i++) path[i] = modname[i] == '.' ? '/' : modname[i];
  strcpy(path + n, suffix);
  return load_file(L, path, modname);
}

static int app_searcher(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  if (search_one(L, name, ".lua") || search_one(L, name, "/init.lua")) return 1;
  lua_concat(L, 2); /* the two "no file" lines */
  return 1;
}

void luaio_bundle_install(lua_State *L) {
  /* package.loaders = {preload, app}: nothing is looked up on disk outside the app. */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaders");
  lua_pushcfunction(L, app_searcher);
  lua_rawseti(L, -2, 2);
  lua_pushnil(L);
  lua_rawseti(L, -2, 3);
  lua_pushnil(L);
  lua_rawseti(L, -2, 4);
  lua_pop(L, 1);
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "path");
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
}

void luaio_bundle_load_main(lua_State *L, const char *path) {
  free(store.entry);
  store.entry = strdup(path);
  if (!load_file(L, path, path)) {
    lua_pop(L, 1);
    luaL_error(L, "no %s in %s", path, store.mounted ? "the bundle" : store.folder);
  }
}

/* --- the bundle module -------------------------------------------------------------------- */

/* bundle.read(path) -> contents, or nil, err */
/* Pushes the app file at path, or nil, err. Apart from bundle_read, which raises: a raising
 * frame must hold no locals whose address is taken (see docs/internals.md, ASan). */
static __attribute__((noinline)) int push_file(lua_State *L, const char *path) {
  const char *data;
  size_t size;
  int owned;
  int err = store_get(path, &data, &size, &owned);
  if (err != 0) return luaio_pusherror(L, err);
  lua_pushlstring(L, data, size);
  if (owned) free((void *)data);
  return 1;
}

static int bundle_read(lua_State *L) { return push_file(L, check_path(L, 1)); }

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends the files under root/rel (recursively) to the table on top as relative paths. */
static int walk(lua_State *L, const char *root, const char *rel, int depth) {
  char dir[MAX_NAME * 2];
  snprintf(dir, sizeof dir, "%s%s%s", root, *rel ? "/" : "", rel);
  DIR *d = opendir(dir);
  if (d == NULL) return -errno;
  if (depth > 64) {
    closedir(d);
    return UV_ELOOP;
  }
  int err = 0;
  struct dirent *de;
  while (err == 0 && (de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.') continue; /* hidden files are not part of the app */
    char child[MAX_NAME];
    if (snprintf(child, sizeof child, "%s%s%s", rel, *rel ? "/" : "", de->d_name) >=
        (int)sizeof child) {
      err = UV_ENAMETOOLONG;
      break;
    }
    char full[MAX_NAME * 2];
    snprintf(full, sizeof full, "%s/%s", root, child);
    struct stat st;
    if (stat(full, &st) < 0) continue; /* a dangling link: nothing to read */
    if (S_ISDIR(st.st_mode)) {
      err = walk(L, root, child, depth + 1);
    } else if (S_ISREG(st.st_mode)) {
      lua_pushstring(L, child);
      lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
    }
  }
  closedir(d);
  return err;
}

/* Sorts the array of strings on top of the stack. */
static void sort_names(lua_State *L) {
  size_t n = lua_objlen(L, -1);
  const char **names = malloc((n ? n : 1) * sizeof *names);
  if (names == NULL) luaL_error(L, "out of memory");
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, -1, (int)i + 1);
    names[i] = lua_tostring(L, -1);
    lua_pop(L, 1); /* still referenced by the table */
  }
  qsort(names, n, sizeof *names, name_cmp);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  free(names);
  lua_remove(L, -2);
}

/* walk() from the app folder's dir (its first dlen bytes). Apart from bundle_list, which
 * raises: a frame that raises must hold no array (see docs/internals.md, ASan). */
static __attribute__((noinline)) int walk_folder(lua_State *L, const char *dir, size_t dlen) {
  char rel[MAX_NAME];
  snprintf(rel, sizeof rel, "%.*s", (int)dlen, dir);
  return walk(L, store.folder, rel, 0);
}

/* bundle.list([dir]) -> sorted array of the app's file paths under dir (all files without) */
static int bundle_list(lua_State *L) {
  const char *dir = lua_isnoneornil(L, 1) ? "" : check_path(L, 1);
  size_t dlen = strlen(dir);
  while (dlen > 0 && dir[dlen - 1] == '/') dlen--;
  if (dlen == 1 && dir[0] == '.') dlen = 0;
  lua_newtable(L);
  if (store.mounted) {
    int n = 0;
    for (uint32_t i = 0; i < store.count; i++) {
      const entry_t *e = &store.entries[i];
      if (dlen == 0 ||
          (e->name_len > dlen && memcmp(e->name, dir, dlen) == 0 && e->name[dlen] == '/')) {
        lua_pushlstring(L, e->name, e->name_len);
        lua_rawseti(L, -2, ++n);
      }
    }
    return 1;
  }
  int err = walk_folder(L, dir, dlen);
  if (err != 0) return luaio_pusherror(L, err);
  sort_names(L);
  return 1;
}

/* --- writing a bundle (used by bundler/build.lua) ----------------------------------------- */

/* archive.walk(dir) -> sorted array of every regular file under dir, relative to it */
static int archive_walk(lua_State *L) {
  const char *dir = luaio_checkcstring(L, 1);
  lua_newtable(L);
  int err = walk(L, dir, "", 0);
  if (err != 0) return luaio_pusherror(L, err);
  sort_names(L);
  return 1;
}

/* Serialises {{name, data}, ...} (sorted by the caller) into one archive string. */
static void pack_archive(lua_State *L, int files) {
  size_t n = lua_objlen(L, files);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  unsigned char word[8];
  put32(word, (uint32_t)n);
  luaL_addlstring(&b, (char *)word, 4);
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, files, (int)i);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    size_t nlen, dlen;
    const char *name = lua_tolstring(L, -2, &nlen);
    const char *data = lua_tolstring(L, -1, &dlen);
    if (name == NULL || data == NULL || nlen == 0 || nlen > MAX_NAME || dlen > UINT32_MAX)
      luaL_error(L, "archive.write: bad entry %d", (int)i);
    put32(word, (uint32_t)nlen);
    put32(word + 4, (uint32_t)dlen);
    lua_pop(L, 3); /* the strings stay alive in the files table */
    luaL_addlstring(&b, (char *)word, 8);
    luaL_addlstring(&b, name, nlen);
    luaL_addlstring(&b, data, dlen);
  }
  luaL_pushresult(&b);
}

static int write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -errno;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Copies the first n bytes of fd_in (our runtime) to fd_out. */
static int copy_runtime(int fd_in, int fd_out, uint64_t n) {
  char buf[1 << 16];
  uint64_t off = 0;
  while (off < n) {
    size_t chunk = n - off < sizeof buf ? (size_t)(n - off) : sizeof buf;
    if (read_at(fd_in, buf, chunk, off) < 0) return UV_EIO;
    int err = write_all(fd_out, buf, chunk);
    if (err < 0) return err;
    off += chunk;
  }
  return 0;
}

/* The size of the runtime part of our own executable (without any payload). */
static int self_runtime_size(int fd, uint64_t *size) {
  struct stat st;
  if (fstat(fd, &st) < 0) return -errno;
  *size = runtime_size();
  if (*size != 0) return (uint64_t)st.st_size >= *size ? 0 : UV_EINVAL;
  unsigned char t[TRAILER_SIZE]; /* unpatched dev build: trust a trailer if there is one */
  *size = (uint64_t)st.st_size;
  if (st.st_size > TRAILER_SIZE && read_at(fd, t, TRAILER_SIZE, *size - TRAILER_SIZE) == 0 &&
      memcmp(t + 56, TRAILER_MAGIC, 8) == 0)
    *size = get64(t + 8);
  return 0;
}

static int write_bundle(int out, int self, const char *archive, size_t raw, int level,
                        size_t *packed_size) {
  uint64_t offset = 0;
  int err = self_runtime_size(self, &offset);
  if (err < 0) return err;
  size_t cap = ZSTD_compressBound(raw);
  char *packed = malloc(cap ? cap : 1);
  if (packed == NULL) return UV_ENOMEM;
  size_t packed_len = ZSTD_compress(packed, cap, archive, raw, level);
  if (ZSTD_isError(packed_len)) {
    free(packed);
    return UV_EINVAL;
  }
  unsigned char t[TRAILER_SIZE] = {0};
  put32(t, FORMAT_VERSION);
  put32(t + 4, crc32((unsigned char *)packed, packed_len));
  put64(t + 8, offset);
  put64(t + 16, packed_len);
  put64(t + 24, raw);
  memcpy(t + 32, LUAIO_BUILD_ID, BUILD_ID_LEN);
  memcpy(t + 56, TRAILER_MAGIC, 8);
  err = copy_runtime(self, out, offset);
  if (err == 0) err = write_all(out, packed, packed_len);
  if (err == 0) err = write_all(out, t, TRAILER_SIZE);
  free(packed);
  *packed_size = packed_len;
  return err;
}

/* archive.write(path, files[, level]) -> {files, archive, payload, size}, or nil, err.
 * Writes our runtime plus the packed files to path.tmp, then renames it over path, so a
 * failed build never leaves a half-written executable behind. */
static int archive_write(lua_State *L) {
  const char *path = luaio_checkcstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int level = (int)luaL_optinteger(L, 3, 19);
  luaL_argcheck(L, level >= 1 && level <= ZSTD_maxCLevel(), 3, "zstd level out of range");
  pack_archive(L, 2);
  size_t raw;
  const char *archive = lua_tolstring(L, -1, &raw);
  int self = open_self();
  if (self < 0) return luaio_pusherror(L, -errno);
  char *tmp = malloc(strlen(path) + 32);
  sprintf(tmp, "%s.tmp%d", path, (int)getpid());
  int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
  if (out < 0) {
    int err = -errno;
    close(self);
    free(tmp);
    return luaio_pusherror(L, err);
  }
  size_t packed = 0;
  int err = write_bundle(out, self, archive, raw, level, &packed);
  struct stat st;
  if (err == 0 && fstat(out, &st) < 0) err = -errno;
  if (close(out) < 0 && err == 0) err = -errno;
  close(self);
  if (err == 0 && chmod(tmp, 0755) < 0) err = -errno;
  if (err == 0 && rename(tmp, path) < 0) err = -errno;
  if (err != 0) unlink(tmp);
  free(tmp);
  if (err != 0) return luaio_pusherror(L, err);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)lua_objlen(L, 2));
  lua_setfield(L, -2, "files");
  lua_pushnumber(L, (double)raw);
  lua_setfield(L, -2, "archive");
  lua_pushnumber(L, (double)packed);
  lua_setfield(L, -2, "payload");
  lua_pushnumber(L, (double)st.st_size);
  lua_setfield(L, -2, "size");
  return 1;
}

static const luaL_Reg bundle_funcs[] = {{"list", bundle_list}, {"read", bundle_read}, {NULL, NULL}};
static const luaL_Reg archive_funcs[] = {
    {"walk", archive_walk}, {"write", archive_write}, {NULL, NULL}};

int luaopen_bundle(lua_State *L) {
  luaio_newlib(L, bundle_funcs);
  lua_pushboolean(L, store.mounted);
  lua_setfield(L, -2, "bundled"); /* true inside a built executable, false under luaio run */
  lua_pushstring(L, store.entry);
  lua_setfield(L, -2, "entry"); /* "main.lua", or the .lua file luaio ran */
  if (!store.mounted && store.folder != NULL) {
    lua_pushstring(L, store.folder);
    lua_setfield(L, -2, "folder"); /* the app folder under luaio run; nil in a bundle */
  }
  return 1;
}

int luaopen_luaio_archive(lua_State *L) {
  luaio_newlib(L, archive_funcs);
  return 1;
}
