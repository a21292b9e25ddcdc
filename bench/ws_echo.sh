#!/usr/bin/env bash
# WebSocket echo throughput: node's ws, the raw-TCP ceiling (uv-echo fed the same frames) and
# luaio (bench/ws_echo_server.lua) in one run, server pinned to one core: runs
# ../shared/bench/tcp_echo_compare.sh with PROTO=ws.
#   bench/ws_echo.sh                 (ROUNDS, DURATION, WORKLOADS... pass through)
set -euo pipefail
cd "$(dirname "$0")/.."
compare=${TCP_ECHO_COMPARE:-$(pwd)/../shared/bench/tcp_echo_compare.sh}
[ -f "$compare" ] || compare=/work/shared/bench/tcp_echo_compare.sh
[ -x out/luaio ] || { echo "bench: build first (./build.sh)" >&2; exit 1; }
[ -f "$compare" ] || { echo "bench: tcp_echo_compare.sh not found (set TCP_ECHO_COMPARE)" >&2; exit 1; }
PROTO=ws LUAIO_CMD="$(pwd)/out/luaio run $(pwd)/bench/ws_echo_server.lua @PORT@" LUAIO_PORT=${LUAIO_PORT:-9085} \
  bash "$compare"
