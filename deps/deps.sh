#!/usr/bin/env bash
# Fetch, verify and build luaio's third-party libraries as static archives.
#
#   deps/deps.sh FLAVOR      FLAVOR is "musl" (the release build) or "host" (gcc + glibc,
#                            for the sanitizer build). Prints the install prefix on stdout.
#
# Sources are the Debian source packages pinned in deps/deps.lock. Every file is checked
# against its sha256 before it is unpacked, and Debian's patches (CVE fixes among them) are
# applied by dpkg-source. Built libraries live in a cache outside the work tree, keyed by
# the lock file and this script, so a second build only checks a stamp file.
#
# Without apt: put the files named in deps.lock into "$LUAIO_CACHE/src/" by hand; they are
# verified the same way and nothing is downloaded.
set -euo pipefail

flavor=${1:-musl}
here=$(cd "$(dirname "$0")" && pwd)
lock="$here/deps.lock"
cache=${LUAIO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/luaio}
jobs=$(nproc 2>/dev/null || echo 2)

log() { printf 'deps: %s\n' "$*" >&2; }
die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }

key=$(cat "$lock" "$0" | sha256sum | cut -c1-16)
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
if [ ${#need_pkgs[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing tools (${need_pkgs[*]}): install them or run as root"
  log "installing ${need_pkgs[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >&2
fi

# --- sources ---------------------------------------------------------------------------
mkdir -p "$cache/src"
exec 9>"$cache/.lock"
flock 9 # one builder at a time per cache

verify() { # file sha256 -> 0 when the file exists and matches
  [ -f "$cache/src/$1" ] && echo "$2  $cache/src/$1" | sha256sum -c --status
}

# The deb-src entry mirrors the machine's own Debian sources, nothing else.
add_deb_src() {
  local list=/etc/apt/sources.list.d/luaio-deb-src.sources
  [ -f "$list" ] && return 0
  [ -f /etc/apt/sources.list.d/debian.sources ] || die "no /etc/apt/sources.list.d/debian.sources to copy a deb-src entry from"
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$list"
  apt-get update -qq >&2
}

fetch() { # package version
  [ "$(id -u)" = 0 ] || die "sources for $1 missing in $cache/src and not root to apt-get them"
  add_deb_src
  log "downloading $1=$2"
  (cd "$cache/src" && apt-get source --download-only -qq "$1=$2" >&2 2>/dev/null) ||
    die "apt-get source $1=$2 failed"
}

grep -v '^#' "$lock" | awk 'NF' | while read -r pkg ver file sum; do
  verify "$file" "$sum" && continue
  fetch "$pkg" "$ver"
  verify "$file" "$sum" || { rm -f "$cache/src/$file"; die "sha256 mismatch for $file (removed)"; }
done

# --- build -----------------------------------------------------------------------------
work="$cache/build-$flavor-$key"
rm -rf "$work" "$prefix"
mkdir -p "$work" "$prefix/lib" "$prefix/include" "$prefix/bin"

unpack() { # package -> prints the source folder. Every file was verified above.
  local dsc
  dsc=$(grep -v '^#' "$lock" | awk -v p="$1" '$1 == p && $3 ~ /\.dsc$/ {print $3}')
  (cd "$work" && dpkg-source --no-check -x "$cache/src/$dsc" "$1" >/dev/null)
  echo "$work/$1"
}

# Size matters (the runtime must stay small) and the linker drops unused sections.
common_cflags="-O2 -fPIC -ffunction-sections -fdata-sections"

log "building luajit ($flavor)"
src=$(unpack luajit)
# LUAJIT_NO_UNWIND: a static musl binary has no unwind tables; LuaJIT's own error
# handling works without them (see shared/deps-facts.md).
make -C "$src" -j"$jobs" CC="$cc" HOST_CC=gcc BUILDMODE=static CCDEBUG= \
  XCFLAGS="-DLUAJIT_NO_UNWIND -ffunction-sections -fdata-sections" amalg >&2
cp "$src/src/libluajit.a" "$prefix/lib/"
cp "$src/src/lua.h" "$src/src/lualib.h" "$src/src/lauxlib.h" "$src/src/luaconf.h" \
  "$src/src/luajit.h" "$src/src/lua.hpp" "$prefix/include/"
cp "$src/src/luajit" "$prefix/bin/luajit" # runs on the build host: compiles stdlib bytecode

log "building libuv ($flavor)"
src=$(unpack libuv1)
cmake -S "$src" -B "$src/build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_FLAGS="$common_cflags" -DLIBUV_BUILD_TESTS=OFF -DLIBUV_BUILD_BENCH=OFF \
  -DBUILD_TESTING=OFF >&2
cmake --build "$src/build" --target uv_a -j"$jobs" >&2
cp "$src/build/libuv_a.a" "$prefix/lib/libuv.a"
cp -r "$src/include/"* "$prefix/include/"

log "building zstd ($flavor)"
src=$(unpack libzstd)
# Minified: no legacy formats, no dictionary builder; error strings kept for messages.
make -C "$src/lib" -j"$jobs" CC="$cc" ZSTD_LIB_MINIFY=1 ZSTD_STRIP_ERROR_STRINGS=0 \
  ZSTD_LIB_DICTBUILDER=0 ZSTD_LIB_DEPRECATED=0 ZSTD_NO_ASM=1 \
  CFLAGS="-Os -fPIC -ffunction-sections -fdata-sections" libzstd.a >&2
cp "$src/lib/libzstd.a" "$prefix/lib/"
cp "$src/lib/zstd.h" "$src/lib/zstd_errors.h" "$prefix/include/"

# Versions for `luaio version`, read from the lock so they cannot drift.
grep -v '^#' "$lock" | awk 'NF && !seen[$1]++ {print $1, $2}' >"$prefix/versions"
rm -rf "$work"
touch "$prefix/.done"
log "done: $prefix"
echo "$prefix"
