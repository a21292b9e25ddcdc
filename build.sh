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
  fuzz [SECONDS]
           build the libFuzzer targets in tests/fuzz/ with clang (installed with apt-get when
           missing) into out/fuzz/ and run each for SECONDS (default 30)
  deps-check
           for each package pinned in deps/deps.lock: does the Debian mirror still serve its
           files, which newer revisions does the suite list (and are they served)
  deps-pin PACKAGE VERSION
           move a pin: fetch PACKAGE's files at VERSION, check them against its .dsc,
           rewrite its lines in deps/deps.lock (every library rebuilds once after)
  clean    remove out/ (the dependency cache in ~/.cache/luaio stays)
  help     this text
Environment: LUAIO_CACHE (dependency cache, default ~/.cache/luaio), JOBS (parallel jobs),
LUAIO_DEBIAN_MIRROR / LUAIO_DEBIAN_SECURITY (archive URIs when apt's sources name none).
USAGE
}

jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

build() { # flavor out cc mode [make targets...]
  local deps
  deps=$(deps/deps.sh "$1")
  if ! command -v zstd >/dev/null; then # compresses the embedded root store (runtime/Makefile)
    [ "$(id -u)" = 0 ] || { echo "build.sh: the build needs the zstd command" >&2; exit 1; }
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zstd >/dev/null
  fi
  make -s -C runtime -j"$jobs" DEPS="$deps" OUT="$root/$2" CC="$3" MODE="$4" "${@:5}"
}

# What the tests use: real peers, installed only when missing.
install_test_tools() {
  local pkgs=()
  command -v socat >/dev/null || pkgs+=(socat)
  command -v curl >/dev/null || pkgs+=(curl)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || pkgs+=(nginx)
  command -v chroot >/dev/null || pkgs+=(coreutils)
  command -v wrk >/dev/null || pkgs+=(wrk)
  command -v ab >/dev/null || pkgs+=(apache2-utils)
  command -v node >/dev/null || pkgs+=(nodejs)
  command -v pgrep >/dev/null || pkgs+=(procps)
  command -v file >/dev/null || pkgs+=(file)
  command -v perl >/dev/null || pkgs+=(perl)
  command -v taskset >/dev/null || pkgs+=(util-linux)
  command -v npm >/dev/null || pkgs+=(npm)
  /usr/bin/python3 -c 'import websockets' 2>/dev/null || pkgs+=(python3-websockets)
  command -v luajit >/dev/null || pkgs+=(luajit2) # with lua-cjson: what tests/json_test.lua compares
  [ -e /usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so ] || pkgs+=(lua-cjson)
  command -v openssl >/dev/null || pkgs+=(openssl)       # test certificates, s_client
  command -v python3 >/dev/null || pkgs+=(python3)       # raw TLS peers (ssl module)
  /usr/bin/python3 -c 'import cryptography' 2>/dev/null || pkgs+=(python3-cryptography) # a peer sealing its own TLS records
  command -v testssl >/dev/null || pkgs+=(testssl.sh)    # tests/testssl_test.lua
  command -v gnutls-cli >/dev/null || pkgs+=(gnutls-bin)   # a TLS stack of its own (tests/https_test.lua)
  # the Redis client's tests start their own servers (never the system's service)
  command -v redis-server >/dev/null || pkgs+=(redis-server)
  command -v redis-cli >/dev/null || pkgs+=(redis-tools)
  command -v chromium >/dev/null || pkgs+=(chromium)     # the browser tests (*_browser_test.lua)
  command -v argon2 >/dev/null || pkgs+=(argon2)         # the reference Argon2 (tests/crypto_test.lua)
  if [ ${#pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
    else
      echo "build.sh: missing test tools (${pkgs[*]}): some tests will fail" >&2
    fi
  fi
  install_mariadb
  # node's ws package (npm) for the WebSocket tests and puppeteer-core, which drives chromium
  # in the browser tests, in a git-ignored folder (one install: a later --no-save install
  # would remove what an earlier one put there)
  if { [ ! -f out/peers/node_modules/ws/package.json ] ||
    [ ! -f out/peers/node_modules/puppeteer-core/package.json ]; } && command -v npm >/dev/null; then
    mkdir -p out/peers
    (cd out/peers && npm install --no-save --no-audit --no-fund ws@8 puppeteer-core@24 >npm.log 2>&1) ||
      echo "build.sh: npm install failed (see out/peers/npm.log): the WebSocket peer and browser tests will fail" >&2
  fi
}

# The mysql tests start their own MariaDB servers (tests/mysql_helpers.lua), never the
# system's service: installing the package must not start one either (policy-rc.d says no
# for the length of the install, unless the machine already has its own policy).
install_mariadb() {
  command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null && return
  if [ "$(id -u)" != 0 ]; then
    echo "build.sh: mariadb-server is missing: the mysql tests will be skipped" >&2
    return
  fi
  local policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server mariadb-client >/dev/null ||
    echo "build.sh: apt-get install mariadb-server failed: the mysql tests will be skipped" >&2
  [ -z "$policy" ] || rm -f "$policy"
}

# libFuzzer needs clang and its runtime (libclang-rt-14-dev on Debian bookworm).
install_fuzz_tools() {
  if command -v clang >/dev/null &&
    [ -e "$(clang -print-resource-dir)/lib/linux/libclang_rt.fuzzer-x86_64.a" ]; then
    return
  fi
  [ "$(id -u)" = 0 ] || { echo "build.sh: fuzz needs clang and libclang-rt-14-dev" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-14-dev >/dev/null
}

# Each tests/fuzz/NAME_fuzz.c is one target: linked with the runtime file NAME.c when there is
# one (a pure-C unit: a parser), else with the whole runtime built for fuzzing (out/fuzz/rt:
# clang, the sanitizers, the host flavor's libraries), for targets that drive the server's
# loop. New inputs go to out/fuzz/corpus-NAME; the seeds in tests/fuzz/corpus/ are only read.
fuzz() { # seconds
  local src name bin unit includes leaks
  mkdir -p out/fuzz
  includes=$(find runtime -type d -printf "-I%p ")
  for src in tests/fuzz/*_fuzz.c; do
    name=$(basename "$src" _fuzz.c)
    bin=out/fuzz/${name}_fuzz
    unit=$(find runtime -name "$name.c")
    leaks=1
    if [ -n "$unit" ]; then # libcrypto for the units that call OpenSSL (net/tls_record.c)
      clang -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer $includes \
        -I"$(deps/deps.sh host)/include" -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=undefined -o "$bin" "$src" "$unit" \
        "$(deps/deps.sh host)/lib/libcrypto.a" -ldl -lpthread
    else # Lua's heap lives across inputs: not a leak per input
      leaks=0
      build host out/fuzz/rt clang fuzz lib
      clang -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer $includes \
        -I"$(deps/deps.sh host)/include" -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=undefined -o "$bin" "$src" out/fuzz/rt/libluaio.a \
        $(cat out/fuzz/rt/libs) -lm -ldl -lpthread
    fi
    mkdir -p "out/fuzz/corpus-$name"
    echo "fuzz: $bin for $1 s"
    if ! "$bin" -max_total_time="$1" -max_len=4096 -timeout=10 -detect_leaks=$leaks \
      -print_final_stats=1 -artifact_prefix="out/fuzz/$name-" "out/fuzz/corpus-$name" tests/fuzz/corpus \
      >"out/fuzz/$name.log" 2>&1; then
      tail -n 40 "out/fuzz/$name.log" >&2
      echo "fuzz: $name found a bug: the input is out/fuzz/$name-*" >&2
      exit 1
    fi
    grep -E '^(Done|stat::new_units_added)' "out/fuzz/$name.log" || true
  done
}

case "${1:-build}" in
  build)
    build musl out musl-gcc release
    echo "out/luaio: $(stat -c %s out/luaio) bytes"
    ;;
  test)
    build musl out musl-gcc release all tests
    install_test_tools
    out/luaio test tests
    ;;
  asan)
    build host out/asan gcc asan all tests
    install_test_tools
    ASAN_OPTIONS=detect_leaks=0 out/asan/luaio test tests
    ;;
  bench)
    build musl out musl-gcc release
    bench/run.sh
    ;;
  fuzz)
    install_fuzz_tools
    fuzz "${2:-30}"
    ;;
  deps-check) deps/mirror.sh check ;;
  deps-pin)
    [ $# = 3 ] || { echo "usage: ./build.sh deps-pin PACKAGE VERSION" >&2; exit 2; }
    deps/mirror.sh pin "$2" "$3"
    ;;
  clean) rm -rf out ;;
  help | -h | --help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
