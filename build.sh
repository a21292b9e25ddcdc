#!/usr/bin/env bash
# luaio's one build entry point. ./build.sh help lists the modes.
set -euo pipefail
cd "$(dirname "$0")"
root=$(pwd)

usage() {
  cat <<'USAGE'
usage: ./build.sh [MODE]
  build    (default) fetch and verify the pinned dependencies, build out/luaio (static, musl)
  test     build, install the test peers, run every test; ends with "N passed, N failed"
  asan     build out/asan/luaio with AddressSanitizer + UBSan (glibc, dynamic) and run the tests
  bench    build, then run the benchmarks in bench/
  clean    remove out/ (the dependency cache in ~/.cache/luaio stays)
  help     this text
Environment: LUAIO_CACHE (dependency cache, default ~/.cache/luaio), JOBS (parallel jobs).
USAGE
}

jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

build() { # flavor out cc mode
  local deps
  deps=$(deps/deps.sh "$1")
  make -s -C runtime -j"$jobs" DEPS="$deps" OUT="$root/$2" CC="$3" MODE="$4"
}

# What the tests use: real peers, installed only when missing.
install_test_tools() {
  local pkgs=()
  command -v socat >/dev/null || pkgs+=(socat)
  command -v curl >/dev/null || pkgs+=(curl)
  command -v chroot >/dev/null || pkgs+=(coreutils)
  if [ ${#pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
    else
      echo "build.sh: missing test tools (${pkgs[*]}): some tests will fail" >&2
    fi
  fi
}

case "${1:-build}" in
  build)
    build musl out musl-gcc release
    echo "out/luaio: $(stat -c %s out/luaio) bytes"
    ;;
  test)
    build musl out musl-gcc release
    install_test_tools
    out/luaio test tests
    ;;
  asan)
    build host out/asan gcc asan
    install_test_tools
    ASAN_OPTIONS=detect_leaks=0 out/asan/luaio test tests
    ;;
  bench)
    build musl out musl-gcc release
    bench/run.sh
    ;;
  clean) rm -rf out ;;
  help | -h | --help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
