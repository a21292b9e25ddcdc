#!/usr/bin/env bash
# Server memory per idle TCP connection: the echo server (bench/echo_server.lua) pinned to
# one core; N connections each echo one line and then stay open and silent.
# KiB/conn = (RSS with N idle connections - RSS before) / N. Node's net echo is measured
# the same way in the same run. Kernel socket buffers are not in RSS (for any server).
#   bench/idle_tcp.sh [N=10000]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
luaio=$(pwd)/out/luaio
[ -x "$luaio" ] || { echo "bench: build first (./build.sh)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || true
command -v bc >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bc >/dev/null; }
peers=/work/shared/bench/peers
[ -d "$peers" ] || peers=$(pwd)/../shared/bench/peers

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

measure() { # name port command...
  local name=$1 port=$2
  shift 2
  taskset -c 0 "$@" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
  sleep 0.3
  kill -0 $pid 2>/dev/null || { echo "bench: $name exited at start (port $port)" >&2; return 1; }
  local before after
  before=$(rss_kib $pid)
  local log
  log=$(mktemp)
  taskset -c 1 node bench/idle_tcp.js "$port" "$n" >"$log" &
  local client=$!
  for _ in $(seq 600); do grep -q READY "$log" && break; sleep 0.1; done
  sleep 1
  after=$(rss_kib $pid)
  printf '%-8s %s  RSS before %6d KiB, with %d idle: %7d KiB  => %.2f KiB/conn\n' \
    "$name" "$(cat "$log")" "$before" "$n" "$after" "$(echo "($after - $before) / $n" | bc -l)"
  kill $client $pid 2>/dev/null || true
  wait $client $pid 2>/dev/null || true
  rm -f "$log"
}

. bench/ports.sh
base=$(port_base)
measure luaio $base "$luaio" run bench/echo_server.lua $base
if [ -f "$peers/node-echo.js" ]; then measure node $((base + 1)) node "$peers/node-echo.js" $((base + 1)); fi
