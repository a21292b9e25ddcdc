#!/usr/bin/env bash
# HTTP hello world against nginx with its Lua module, nginx's static `return 200` and node, in
# one run, server pinned to one core: runs ../shared/bench/http_compare.sh with
# bench/hello_http.lua as the luaio server. Knobs pass through (PIPELINE=16, IDLE_CONNS=0,
# ROUNDS, DURATION, SERVERS...). Installs the peers with apt-get when missing.
#   bench/http.sh                     # wrk -c64, then 10,000 idle keep-alive connections
#   PIPELINE=16 IDLE_CONNS=0 bench/http.sh
#   TLS=1 bench/http.sh               # HTTPS (the harness makes a P-256 certificate)
#   TLS=1 NEW_CONN=1 IDLE_CONNS=0 bench/http.sh   # a full TLS handshake per request
set -euo pipefail
cd "$(dirname "$0")/.."
compare=${HTTP_COMPARE:-$(pwd)/../shared/bench/http_compare.sh}
[ -x out/luaio ] || { echo "bench: build first (./build.sh)" >&2; exit 1; }
[ -f "$compare" ] || { echo "bench: $compare not found (set HTTP_COMPARE)" >&2; exit 1; }
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx)
[ -e /usr/share/nginx/modules-available/mod-http-lua.conf ] || missing+=(libnginx-mod-http-lua)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cert_args=""
[ "${TLS:-0}" = 1 ] && cert_args=" @CERT@ @KEY@"
LUAIO_CMD="$(pwd)/out/luaio run $(pwd)/bench/hello_http.lua @PORT@$cert_args" LUAIO_PORT=${LUAIO_PORT:-8085} \
  bash "$compare"
