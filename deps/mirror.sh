#!/usr/bin/env bash
# The Debian mirror that this machine's apt sources name: fetch pinned files, check pins,
# move a pin. Nothing here changes what is built, so it is not part of the cache key.
#
#   deps/mirror.sh check              one line per package in deps.lock: are the pinned files
#                                     still served, which newer revisions does the suite list
#                                     (exit 1 when a pinned file is gone)
#   deps/mirror.sh pin PKG VERSION    fetch PKG's .dsc and files at VERSION, check them
#                                     against the .dsc, rewrite PKG's lines in deps.lock
#
# deps/deps.sh sources this file for mirror_fetch. The mirror is read from
# /etc/apt/sources.list.d/debian.sources (or /etc/apt/sources.list) at run time: the main
# archive from the entry for the release, the security archive from the "-security" entry.
# LUAIO_DEBIAN_MIRROR and LUAIO_DEBIAN_SECURITY set them by hand. Files live in the pool:
# pool/main/<dir>/<file> (pool/updates/main/... on the security archive).
set -euo pipefail

mirror_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lock=${lock:-$mirror_here/deps.lock}
cache=${cache:-${LUAIO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/luaio}}

mirror_log() { printf 'deps: %s\n' "$*" >&2; }
mirror_die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }

# The archives, "main URI" and "security URI", from the machine's apt sources.
mirror_archives() {
  {
    [ -z "${LUAIO_DEBIAN_MIRROR:-}" ] || echo "main $LUAIO_DEBIAN_MIRROR"
    [ -z "${LUAIO_DEBIAN_SECURITY:-}" ] || echo "security $LUAIO_DEBIAN_SECURITY"
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      awk 'BEGIN { RS = ""; FS = "\n" } {
        types = uris = suites = ""
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^Types:/) types = $i
          else if ($i ~ /^URIs:/) uris = $i
          else if ($i ~ /^Suites:/) suites = $i
        }
        if (types !~ /deb/ || uris == "") next
        n = split(uris, u, " ")
        for (j = 2; j <= n; j++) print (suites ~ /-security/ ? "security " : "main ") u[j]
      }' /etc/apt/sources.list.d/debian.sources
    fi
    if [ -f /etc/apt/sources.list ]; then # one-line style: deb [options] URI SUITE COMPONENTS
      awk '$1 == "deb" || $1 == "deb-src" { sub(/ \[[^]]*\]/, "")
        print ($3 ~ /-security/ ? "security " : "main ") $2 }' /etc/apt/sources.list
    fi
  } | awk '!seen[$1]++ { sub(/\/+$/, "", $2); print }'
}

mirror_uri() { # main|security -> the archive's URI, or nothing
  mirror_archives | awk -v k="$1" '$1 == k { print $2 }'
}

# Debian's pool layout: lib* packages under their first four letters, others the first one.
pool_dir() {
  case "$1" in
    lib?*) echo "${1:0:4}/$1" ;;
    *) echo "${1:0:1}/$1" ;;
  esac
}

# The URLs a package's file may be at, main archive first.
mirror_urls() { # package file
  local main sec
  main=$(mirror_uri main)
  sec=$(mirror_uri security)
  [ -n "$main$sec" ] || mirror_die "no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list (set LUAIO_DEBIAN_MIRROR)"
  [ -z "$main" ] || echo "$main/pool/main/$(pool_dir "$1")/$2"
  [ -z "$sec" ] || echo "$sec/pool/updates/main/$(pool_dir "$1")/$2"
}

need_curl() {
  command -v curl >/dev/null && return 0
  [ "$(id -u)" = 0 ] || mirror_die "curl is needed to fetch from the Debian mirror: install it, or put the files in $cache/src/"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >&2
}

# Downloads one file of a package into DEST (via DEST.part); 1 when no archive serves it.
mirror_fetch() { # package file dest
  local url
  need_curl
  for url in $(mirror_urls "$1" "$2"); do
    if curl -fsSL --retry 2 --connect-timeout 20 -o "$3.part" "$url" 2>/dev/null; then
      mv "$3.part" "$3"
      return 0
    fi
  done
  rm -f "$3.part"
  return 1
}

mirror_serves() { # package file -> 0 when an archive answers for it
  local url
  for url in $(mirror_urls "$1" "$2"); do
    curl -fsSI --retry 2 --connect-timeout 20 -o /dev/null "$url" 2>/dev/null && return 0
  done
  return 1
}

# What to do when the mirror lacks a file: printed after the failure names the package.
fetch_advice() { # package
  printf '\n%s' "  ./build.sh deps-check            lists the newer revisions and whether the mirror serves them" \
    "  ./build.sh deps-pin $1 VERSION   moves the pin (fetches, checks against the .dsc, rewrites deps/deps.lock)" \
    "  without network: put the files deps/deps.lock names into $cache/src/"
}

lock_lines() { grep -v '^#' "$lock" | awk 'NF'; }

# --- check -----------------------------------------------------------------------------

# "package version suite" for every pinned package in the suite's Sources indexes (the
# release, its -updates and -security); an index the mirror lacks is said and skipped.
suite_versions() { # suite packages...
  local suite=$1 archive dist uri
  shift
  for dist in "$suite:main" "$suite-updates:main" "$suite-security:security"; do
    uri=$(mirror_uri "${dist#*:}")
    [ -n "$uri" ] || continue
    if ! curl -fsSL --retry 2 --connect-timeout 20 "$uri/dists/${dist%:*}/main/source/Sources.xz" |
      xz -dc 2>/dev/null | awk -v want=" $* " -v s="${dist%:*}" '
        /^Package:/ { p = $2 } /^Version:/ && index(want, " " p " ") { print p, $2, s }'; then
      mirror_log "${dist%:*}: no Sources index on the mirror, skipped"
    fi
  done
}

check() {
  local suite pkgs pkg ver files file missing line newer v s status=0 index
  need_curl
  suite=$(awk '/^# suite:/ { print $3; exit }' "$lock")
  [ -n "$suite" ] || mirror_die "deps.lock names no '# suite:'"
  pkgs=$(lock_lines | awk '!seen[$1]++ { print $1 }')
  index=$(suite_versions "$suite" $pkgs)
  for pkg in $pkgs; do
    ver=$(lock_lines | awk -v p="$pkg" '$1 == p { print $2; exit }')
    files=$(lock_lines | awk -v p="$pkg" '$1 == p { print $3 }')
    missing=
    for file in $files; do mirror_serves "$pkg" "$file" || missing="$missing $file"; done
    line="$pkg $ver:"
    if [ -n "$missing" ]; then
      line="$line MISSING on the mirror:$missing;"
      status=1
    else
      line="$line files served;"
    fi
    newer=
    while read -r v s; do
      [ -n "$v" ] && dpkg --compare-versions "$v" gt "$ver" || continue
      mirror_serves "$pkg" "${pkg}_${v#*:}.dsc" && v="$v ($s; served)" || v="$v ($s; .dsc not served)"
      newer="${newer:+$newer, }$v"
    done < <(echo "$index" | awk -v p="$pkg" '$1 == p { s[$2] = s[$2] ? s[$2] ", " $3 : $3 }
      END { for (v in s) print v, s[v] }' | sort -V)
    if [ -n "$newer" ]; then
      line="$line newer: $newer"
    elif echo "$index" | awk -v p="$pkg" -v v="$ver" '$1 == p && $2 == v { f = 1 } END { exit !f }'; then
      line="$line up to date"
    else
      line="$line no newer revision ($ver is not in $suite's indexes)"
    fi
    echo "$line"
  done
  echo "move a pin: ./build.sh deps-pin PACKAGE VERSION"
  return $status
}

# --- pin -------------------------------------------------------------------------------

# Replaces PKG's lines in the lock with the lines on stdin (at the same place; new packages
# go last) and aligns the columns again.
rewrite_lock() { # package
  local new tmp
  new=$(cat)
  tmp=$(mktemp "$lock.XXXXXX")
  awk -v p="$1" -v new="$new" '
    /^#/ || !NF { print; next }
    $1 == p { if (!done) { n = split(new, l, "\n"); for (i = 1; i <= n; i++) print l[i]; done = 1 }; next }
    { print }
    END { if (!done) print new }' "$lock" |
    awk '/^#/ || !NF { lines[++n] = $0; next }
      { lines[++n] = $0; for (i = 1; i <= 3; i++) if (length($i) > w[i]) w[i] = length($i) }
      END { for (i = 1; i <= n; i++) {
        if (lines[i] ~ /^#/ || lines[i] !~ /[^ \t]/) { print lines[i]; continue }
        split(lines[i], f, " ")
        printf "%-*s  %-*s  %-*s  %s\n", w[1], f[1], w[2], f[2], w[3], f[3], f[4] } }' >"$tmp"
  mv "$tmp" "$lock"
}

# Fetches FILE into the cache unless a copy with that sha256 is there; prints its sha256.
pin_file() { # package file
  local dest="$cache/src/$2"
  if [ ! -f "$dest" ]; then
    mirror_fetch "$1" "$2" "$dest" || return 1
  fi
  sha256sum "$dest" | cut -d' ' -f1
}

pin() { # package version
  local pkg=$1 ver=$2 dsc sum file want got lines
  [ -n "$pkg" ] && [ -n "$ver" ] || mirror_die "usage: ./build.sh deps-pin PACKAGE VERSION"
  mkdir -p "$cache/src"
  dsc="${pkg}_${ver#*:}.dsc"
  rm -f "$cache/src/$dsc"
  if mirror_fetch "$pkg" "$dsc" "$cache/src/$dsc"; then
    [ "$(awk '/^Source:/ { print $2 }' "$cache/src/$dsc")" = "$pkg" ] || mirror_die "$dsc is not the source package $pkg"
    ver=$(awk '/^Version:/ { print $2 }' "$cache/src/$dsc") # with its epoch, as Debian spells it
    lines="$pkg $ver $dsc $(sha256sum "$cache/src/$dsc" | cut -d' ' -f1)"
    while read -r want _ file; do
      got=$(pin_file "$pkg" "$file") || mirror_die "$pkg $ver: the mirror does not serve $file, which its .dsc lists$(fetch_advice "$pkg")"
      [ "$got" = "$want" ] || { rm -f "$cache/src/$file"; mirror_die "$pkg $ver: $file has sha256 $got, its .dsc says $want (removed)"; }
      lines="$lines"$'\n'"$pkg $ver $file $got"
    done < <(awk '/^Checksums-Sha256:/ { on = 1; next } /^[^ ]/ { on = 0 } on && NF == 3' "$cache/src/$dsc")
  else
    # No .dsc: an upstream version alone (no Debian revision) may be pinned as its orig tarball.
    case "$ver" in *-*) mirror_die "$pkg $ver: the mirror does not serve $dsc$(fetch_advice "$pkg")" ;; esac
    for file in "${pkg}_$ver.orig.tar."{xz,gz,bz2}; do
      if sum=$(pin_file "$pkg" "$file"); then
        mirror_log "$pkg $ver: no .dsc on the mirror: pinning $file alone (no Debian patches to apply)"
        lines="$pkg $ver $file $sum"
        break
      fi
    done
    [ -n "${lines:-}" ] || mirror_die "$pkg $ver: the mirror serves neither $dsc nor ${pkg}_$ver.orig.tar.*$(fetch_advice "$pkg")"
  fi
  echo "$lines" | rewrite_lock "$pkg"
  mirror_log "pinned $pkg $ver in deps/deps.lock:"
  echo "$lines" | awk '{ print "  " $3 }' >&2
  mirror_log "the dependency cache key changed: the next build rebuilds every library once"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    check) check ;;
    pin) pin "${2:-}" "${3:-}" ;;
    *) mirror_die "usage: deps/mirror.sh check | pin PACKAGE VERSION" ;;
  esac
fi
