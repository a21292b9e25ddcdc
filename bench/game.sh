#!/usr/bin/env bash
# examples/game under load: 1,000 bots (bench/game_bots.lua, luaio's own client) on core 1,
# the server on core 0 at 30 Hz in a 4000-unit world; after SECONDS of play, the server's
# /stats: how late ticks started (jitter), wall and CPU milliseconds per tick, over the last
# 1,024 ticks (34 s). Figures only.
#   bench/game.sh [BOTS=1000] [SECONDS=40] [TICK_HZ=30] [WORLD=4000]
set -euo pipefail
cd "$(dirname "$0")/.."
bots=${1:-1000} seconds=${2:-40} hz=${3:-30} world=${4:-4000}
[ -x out/luaio ] || { echo "bench: build first (./build.sh)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || true
. bench/ports.sh
port=$(port_base)
env PORT=$port TICK_HZ=$hz WORLD=$world taskset -c 0 out/luaio run examples/game >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "idle server: $(curl -s "http://127.0.0.1:$port/stats")"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
c0=$(ticks $server) t0=$(date +%s.%N)
taskset -c 1 out/luaio run bench/game_bots.lua "$port" "$bots" "$seconds"
c1=$(ticks $server) t1=$(date +%s.%N)
echo "loaded server: $(curl -s "http://127.0.0.1:$port/stats")"
printf 'game server: %.1f%% of a core over the run; RSS %s KiB; load average after: %s\n' \
  "$(echo "($c1 - $c0) / $(getconf CLK_TCK) / ($t1 - $t0) * 100" | bc -l)" \
  "$(awk '/VmRSS/ {print $2}' /proc/$server/status)" "$(cut -d' ' -f1-3 /proc/loadavg)"
