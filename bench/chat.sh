#!/usr/bin/env bash
# examples/chat under load: 5,000 WebSocket members over 100 rooms, one room of 1,000; a
# member of that room posts 20 messages a second for 10 s; p50/p99 delivery latency of every
# copy (bench/chat_load.lua, luaio's own client, on core 1), the server on core 0 with a
# redis-server of its own. Figures only.
#   bench/chat.sh [CLIENTS=5000] [ROOMS=100] [BIG=1000] [SECONDS=10] [RATE=20] [WORKERS=0]
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-5000} rooms=${2:-100} big=${3:-1000} seconds=${4:-10} rate=${5:-20} workers=${6:-0}
[ -x out/luaio ] || { echo "bench: build first (./build.sh)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || true
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
. bench/ports.sh
rport=$(port_base) port=$((rport + 1))
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" --daemonize no \
  --maxclients 20000 >"$dir/redis.log" 2>&1 &
for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
cpus=0
[ "$workers" -gt 0 ] && cpus=0,1
env PORT=$port REDIS_URL=redis://127.0.0.1:$rport WORKERS=$workers RATE=1000 BURST=1000 \
  taskset -c $cpus out/luaio run examples/chat >"$dir/chat.log" 2>&1 &
server=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
c0=$(ticks $server) t0=$(date +%s.%N)
taskset -c 1 out/luaio run bench/chat_load.lua "$port" "$clients" "$rooms" "$big" "$seconds" "$rate"
c1=$(ticks $server) t1=$(date +%s.%N)
printf 'chat server (workers=%s): %.1f CPU-seconds over %.1f s; RSS %s KiB; load average after: %s\n' "$workers" \
  "$(echo "($c1 - $c0) / $(getconf CLK_TCK)" | bc -l)" "$(echo "$t1 - $t0" | bc -l)" \
  "$(awk '/VmRSS/ {print $2}' /proc/$server/status)" "$(cut -d' ' -f1-3 /proc/loadavg)"
