#!/usr/bin/env bash
# TCP echo throughput against node's net echo, in one run, server pinned to one core:
# runs ../shared/bench/tcp_echo_compare.sh with bench/echo_server.lua as the luaio server.
#   bench/tcp_echo.sh                 (ROUNDS, DURATION, WORKLOADS... pass through)
set -euo pipefail
cd "$(dirname "$0")/.."
compare=${TCP_ECHO_COMPARE:-$(pwd)/../shared/bench/tcp_echo_compare.sh}
[ -x out/luaio ] || { echo "bench: build first (./build.sh)" >&2; exit 1; }
[ -f "$compare" ] || { echo "bench: $compare not found (set TCP_ECHO_COMPARE)" >&2; exit 1; }
LUAIO_CMD="$(pwd)/out/luaio run $(pwd)/bench/echo_server.lua @PORT@" LUAIO_PORT=${LUAIO_PORT:-9085} \
  bash "$compare"
