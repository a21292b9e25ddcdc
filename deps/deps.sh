#!/usr/bin/env bash
# Fetch, verify and build luaio's third-party libraries as static archives.
#
#   deps/deps.sh FLAVOR      FLAVOR is "musl" (the release build) or "host" (gcc + glibc,
#                            for the sanitizer build). Prints the install prefix on stdout.
#
# Sources are the Debian source packages pinned in deps/deps.lock, fetched from the pool of
# the Debian mirror this machine's apt sources name (deps/mirror.sh). Every file is checked
# against its sha256 before anything is unpacked, and Debian's patches (CVE fixes among
# them) are applied by dpkg-source. Built libraries live in a cache outside the work tree,
# keyed by the lock file and the build scripts, so a second build only checks a stamp file.
#
# The prefix holds lib/*.a, include/, bin/luajit (runs on the build host: compiles the
# stdlib to bytecode), share/luaio/roots.pem (Mozilla's roots) and "versions", one line per
# package: "package debian-version what-luaio-version-prints" (read by runtime/Makefile).
#
# Without network: put the files named in deps.lock into "$LUAIO_CACHE/src/" by hand; they
# are verified the same way and nothing is downloaded.
set -euo pipefail

flavor=${1:-musl}
here=$(cd "$(dirname "$0")" && pwd)
lock="$here/deps.lock"
cache=${LUAIO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/luaio}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

log() { printf 'deps: %s\n' "$*" >&2; }
die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }

key=$(cat "$lock" "$0" "$here/roots.sh" | sha256sum | cut -c1-16)
prefix="$cache/deps-$flavor-$key"
if [ -f "$prefix/.done" ]; then
  echo "$prefix"
  exit 0
fi

case "$flavor" in
  musl) cc=musl-gcc ;;
  host) cc=gcc ;;
  *) die "unknown flavor '$flavor' (musl or host)" ;;
esac

# --- tools -----------------------------------------------------------------------------
need_pkgs=()
command -v "$cc" >/dev/null || need_pkgs+=(musl-tools musl-dev)
command -v dpkg-source >/dev/null || need_pkgs+=(dpkg-dev)
command -v cmake >/dev/null || need_pkgs+=(cmake)
command -v make >/dev/null || need_pkgs+=(make)
command -v xz >/dev/null || need_pkgs+=(xz-utils)
command -v perl >/dev/null || need_pkgs+=(perl) # OpenSSL's Configure
if [ ${#need_pkgs[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing tools (${need_pkgs[*]}): install them or run as root"
  log "installing ${need_pkgs[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >&2
fi

# --- sources ---------------------------------------------------------------------------
mkdir -p "$cache/src"
exec 9>"$cache/.lock"
flock 9 # one builder at a time per cache
[ -f "$prefix/.done" ] && { echo "$prefix"; exit 0; } # built while we waited

. "$here/mirror.sh" # mirror_fetch, fetch_advice, lock_lines

verify() { # file sha256 -> 0 when the cached file exists and matches
  [ -f "$cache/src/$1" ] && echo "$2  $cache/src/$1" | sha256sum -c --status
}

while read -r pkg ver file sum; do
  verify "$file" "$sum" && continue
  log "downloading $file"
  mirror_fetch "$pkg" "$file" "$cache/src/$file" ||
    die "cannot fetch $file for $pkg $ver; tried:"$'\n'"$(mirror_urls "$pkg" "$file" | sed 's/^/  /')$(fetch_advice "$pkg")"
  verify "$file" "$sum" || { rm -f "$cache/src/$file"; die "sha256 mismatch for $file of $pkg $ver (removed)"; }
done < <(lock_lines)

# A .dsc lists its files with their sha256: they must be the lock's (dpkg-source then
# unpacks with --no-check, as Debian's signing keys are not at hand; the lock is the trust).
check_dsc() { # package dsc
  local want _ file
  while read -r want _ file; do
    lock_lines | awk -v p="$1" -v f="$file" -v s="$want" '$1 == p && $3 == f && $4 == s { ok = 1 }
      END { exit !ok }' || die "$2 lists $file with sha256 $want, which deps.lock does not pin"
  done < <(awk '/^Checksums-Sha256:/ { on = 1; next } /^[^ ]/ { on = 0 } on && NF == 3' "$cache/src/$2")
}
while read -r pkg file; do check_dsc "$pkg" "$file"; done < <(lock_lines | awk '$3 ~ /\.dsc$/ { print $1, $3 }')

# --- build -----------------------------------------------------------------------------
work="$cache/build-$flavor-$key"
rm -rf "$work" "$prefix"
mkdir -p "$work" "$prefix/lib" "$prefix/include" "$prefix/bin" "$prefix/share/luaio"

unpack() { # package -> prints the source folder, Debian's patches applied
  local dsc orig
  dsc=$(lock_lines | awk -v p="$1" '$1 == p && $3 ~ /\.dsc$/ { print $3 }')
  if [ -n "$dsc" ]; then
    (cd "$work" && dpkg-source --no-check -x "$cache/src/$dsc" "$1" >/dev/null)
  else # an orig tarball pinned alone
    orig=$(lock_lines | awk -v p="$1" '$1 == p { print $3 }')
    mkdir "$work/$1"
    tar -xf "$cache/src/$orig" -C "$work/$1" --strip-components=1
  fi
  echo "$work/$1"
}

debian_version() { lock_lines | awk -v p="$1" '$1 == p { print $2; exit }'; }

# One line of "versions": package, Debian version, then what `luaio version` prints for it.
version_line() { # package text
  echo "$1 $(debian_version "$1") $2" >>"$prefix/versions"
}

define() { # header macro -> the value of a #define, quotes and comment removed
  awk -v m="$2" '$0 ~ "^#[ \t]*define[ \t]+" m "[ \t]" { sub("^#[ \t]*define[ \t]+" m "[ \t]+", "")
    sub(/[ \t]*\/\*.*/, ""); gsub(/"/, ""); print; exit }' "$1"
}

# Size matters (the runtime must stay small) and the linker drops unused sections.
common_cflags="-O2 -fPIC -ffunction-sections -fdata-sections"

build_luajit() {
  local src
  src=$(unpack luajit)
  # LUAJIT_NO_UNWIND: a static musl binary has no unwind tables; LuaJIT's own error
  # handling works without them (see shared/deps-facts.md).
  make -C "$src" -j"$jobs" CC="$cc" HOST_CC=gcc BUILDMODE=static CCDEBUG= \
    XCFLAGS="-DLUAJIT_NO_UNWIND -ffunction-sections -fdata-sections" amalg >&2
  cp "$src/src/libluajit.a" "$prefix/lib/"
  cp "$src/src/lua.h" "$src/src/lualib.h" "$src/src/lauxlib.h" "$src/src/luaconf.h" \
    "$src/src/luajit.h" "$src/src/lua.hpp" "$prefix/include/"
  cp "$src/src/luajit" "$prefix/bin/luajit"
  version_line luajit "LuaJIT $(define "$src/src/luajit.h" LUAJIT_VERSION | cut -d' ' -f2)"
}

build_libuv() {
  local src h
  src=$(unpack libuv1)
  cmake -S "$src" -B "$src/build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS="$common_cflags" -DLIBUV_BUILD_TESTS=OFF -DLIBUV_BUILD_BENCH=OFF \
    -DBUILD_TESTING=OFF >&2
  cmake --build "$src/build" --target uv_a -j"$jobs" >&2
  cp "$src/build/libuv.a" "$prefix/lib/libuv.a"
  cp -r "$src/include/"* "$prefix/include/"
  h="$src/include/uv/version.h"
  version_line libuv1 "libuv $(define "$h" UV_VERSION_MAJOR).$(define "$h" UV_VERSION_MINOR).$(define "$h" UV_VERSION_PATCH)"
}

build_zstd() {
  local src h
  src=$(unpack libzstd)
  # Minified (-Oz, one Huffman and one sequence decoder, no inlining): 200 KB less in luaio
  # for slower (de)compression, which app bundles of a few MB do not feel. No legacy formats,
  # no dictionary builder; error strings kept for messages. CFLAGS goes in through the
  # environment: on the command line it would replace the flags ZSTD_LIB_MINIFY adds.
  CFLAGS="-fPIC -ffunction-sections -fdata-sections" make -C "$src/lib" -j"$jobs" CC="$cc" \
    ZSTD_LIB_MINIFY=1 ZSTD_STRIP_ERROR_STRINGS=0 ZSTD_LIB_DICTBUILDER=0 ZSTD_LIB_DEPRECATED=0 \
    ZSTD_NO_ASM=1 libzstd.a >&2
  cp "$src/lib/libzstd.a" "$prefix/lib/"
  cp "$src/lib/zstd.h" "$src/lib/zstd_errors.h" "$prefix/include/"
  h="$src/lib/zstd.h"
  version_line libzstd "zstd $(define "$h" ZSTD_VERSION_MAJOR).$(define "$h" ZSTD_VERSION_MINOR).$(define "$h" ZSTD_VERSION_RELEASE)"
}

# OpenSSL for TLS 1.2/1.3 servers and clients (ECDHE with X25519, P-256 and the
# X25519MLKEM768 hybrid; RSA and ECDSA certificates; tickets, ALPN, SNI, X509 checks), the
# assembly kept, everything else left out (tests/c/deps_test.c checks what is kept).
# no-async: musl has no makecontext. no-autoload-config: never read the host's openssl.cnf.
# The directories are what Debian and Alpine use, for code that asks for the system roots.
openssl_options=(no-shared no-module no-dso no-engine no-legacy no-comp no-ssl3 no-dtls no-srp
  no-tests no-docs no-ui-console no-async no-apps no-autoload-config
  no-quic no-ml-dsa no-slh-dsa no-cms no-ts no-cmp no-ct no-rfc3779 no-sm2 no-sm3 no-sm4 no-idea
  no-camellia no-aria no-seed no-bf no-cast no-rc2 no-rc4 no-rc5 no-md4 no-mdc2 no-whirlpool
  no-dsa no-gost no-ec2m no-srtp no-ssl-trace no-siphash no-scrypt no-des no-sctp no-psk
  no-nextprotoneg no-dgram no-dh no-ocsp no-rmd160 no-ocb no-siv --prefix=/usr --openssldir=/etc/ssl --libdir=lib)

build_openssl() {
  local src target occ=$cc
  src=$(unpack openssl)
  # Memory per TLS connection: since 3.2 each direction of every connection has a record
  # layer with arrays for SSL_MAX_PIPELINES (32) records and buffers, about 4.4 KB each,
  # 8.8 KB a connection, used only by the pipelining API (SSL_CTX_set_max_pipelines), which
  # needs an engine and which luaio never calls. One pipeline makes them about 0.2 KB.
  sed -i 's/^# *define SSL_MAX_PIPELINES 32$/# define SSL_MAX_PIPELINES 1/' "$src/include/openssl/ssl.h.in"
  grep -q '^# define SSL_MAX_PIPELINES 1$' "$src/include/openssl/ssl.h.in" ||
    die "openssl: SSL_MAX_PIPELINES not found in ssl.h.in (the pipelines change needs a look)"
  if [ "$flavor" = musl ]; then
    # musl ships no linux/*.h: the kernel's headers, reached only through these three
    # names and only after musl's own (-idirafter), so no glibc header can slip in.
    mkdir -p "$work/kernel-headers"
    ln -s /usr/include/linux /usr/include/asm-generic "$work/kernel-headers/"
    ln -s "/usr/include/$(gcc -print-multiarch)/asm" "$work/kernel-headers/asm"
    occ="musl-gcc -idirafter $work/kernel-headers"
  fi
  case "$(uname -m)" in
    x86_64 | aarch64) target=linux-$(uname -m) ;;
    *) target= ;; # Configure guesses
  esac
  # No unwind tables for OpenSSL's C (its assembly keeps its CFI): 0.25 MB of .eh_frame in
  # the static binary. They are needed only to unwind through OpenSSL's frames, and nothing
  # does: a Lua error never crosses an OpenSSL frame (the callbacks OpenSSL makes into luaio,
  # the BIO, the heap, SNI, ALPN, tickets, are C that cannot raise, or call Lua through
  # lua_pcall).
  (cd "$src" && CC="$occ" ./Configure $target "${openssl_options[@]}" \
    -ffunction-sections -fdata-sections -fno-asynchronous-unwind-tables -fno-unwind-tables >&2)
  make -C "$src" -j"$jobs" build_libs >&2
  cp "$src/libssl.a" "$src/libcrypto.a" "$prefix/lib/"
  mkdir -p "$prefix/include/openssl"
  cp "$src/include/openssl/"*.h "$prefix/include/openssl/"
  version_line openssl "OpenSSL $(define "$src/include/openssl/opensslv.h" OPENSSL_FULL_VERSION_STR)"
}

# zlib: raw deflate for WebSocket permessage-deflate.
build_zlib() {
  local src
  src=$(unpack zlib)
  (cd "$src" && CC="$cc" CFLAGS="$common_cflags" ./configure --static >&2)
  make -C "$src" -j"$jobs" libz.a >&2
  cp "$src/libz.a" "$prefix/lib/"
  cp "$src/zlib.h" "$src/zconf.h" "$prefix/include/"
  version_line zlib "zlib $(define "$src/zlib.h" ZLIB_VERSION)"
}

# yyjson: one C file, built into libyyjson.a like the others.
build_yyjson() {
  local src
  src=$(unpack yyjson)
  $cc $common_cflags -c "$src/src/yyjson.c" -o "$src/yyjson.o"
  ar rcs "$prefix/lib/libyyjson.a" "$src/yyjson.o"
  cp "$src/src/yyjson.h" "$prefix/include/"
  version_line yyjson "yyjson $(define "$src/src/yyjson.h" YYJSON_VERSION_STRING)"
}

# The Mozilla roots as one PEM file, for the runtime to embed.
build_roots() {
  local src n
  src=$(unpack ca-certificates)
  "$here/roots.sh" "$src/mozilla/certdata.txt" "$src/mozilla/blacklist.txt" >"$prefix/share/luaio/roots.pem"
  n=$(grep -c -- '-----BEGIN CERTIFICATE-----' "$prefix/share/luaio/roots.pem")
  [ "$n" -gt 100 ] || die "only $n certificates in roots.pem"
  version_line ca-certificates "Mozilla roots: $n certificates"
}

for lib in luajit libuv zstd openssl zlib yyjson roots; do
  log "building $lib ($flavor)"
  start=$SECONDS
  build_$lib
  log "built $lib in $((SECONDS - start)) s"
done

rm -rf "$work"
touch "$prefix/.done"
log "done: $prefix"
echo "$prefix"
