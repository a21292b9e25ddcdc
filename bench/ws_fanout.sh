#!/usr/bin/env bash
# Fan-out: one publish to N subscribed WebSocket connections on loopback, timed until every
# connection has it (bench/ws_fanout_client.js, node's ws, on core 1), and the server's CPU
# for it (server on core 0). luaio: websocket.publish (bench/ws_fanout_server.lua); node: ws
# looping send over its clients (bench/ws_fanout_node.js). Same run, same client.
#   bench/ws_fanout.sh [N=10000] [SIZE=64] [ROUNDS=7]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000} size=${2:-64} rounds=${3:-7}
[ -x out/luaio ] || { echo "bench: build first (./build.sh)" >&2; exit 1; }
[ -f out/peers/node_modules/ws/package.json ] || { echo "bench: node's ws is missing (./build.sh test installs it)" >&2; exit 1; }
export NODE_PATH=$(pwd)/out/peers/node_modules
ulimit -n 65536 2>/dev/null || true

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

measure() { # name port command...
  local name=$1 port=$2
  shift 2
  taskset -c 0 "$@" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
  local log
  log=$(mktemp)
  taskset -c 1 node bench/ws_fanout_client.js "$port" "$n" "$rounds" >"$log" &
  local client=$!
  # server CPU over the rounds only: from the first round's start to the end
  for _ in $(seq 1200); do grep -q "round=0" "$log" && break; sleep 0.05; done
  local t0 c0 t1 c1
  t0=$(date +%s.%N) c0=$(ticks $pid)
  wait $client || true
  t1=$(date +%s.%N) c1=$(ticks $pid)
  local hz
  hz=$(getconf CLK_TCK)
  printf '%-8s %d conns, %d B: %s  server CPU %.0f ms for %d publishes (%.1f ms each, incl. idle rounds)\n' \
    "$name" "$n" "$size" "$(tail -n1 "$log")" "$(echo "($c1 - $c0) * 1000 / $hz" | bc -l)" "$((rounds - 1))" \
    "$(echo "($c1 - $c0) * 1000 / $hz / ($rounds - 1)" | bc -l)"
  kill $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  rm -f "$log"
}

. bench/ports.sh
base=$(port_base)
measure luaio $base out/luaio run bench/ws_fanout_server.lua $base "$size"
measure node-ws $((base + 1)) node bench/ws_fanout_node.js $((base + 1)) "$size"
