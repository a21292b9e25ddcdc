#!/usr/bin/env bash
# The Redis client against node's ioredis and redis-benchmark (C, the ceiling), in one run:
# one redis-server pinned to CPU 0, each client in turn pinned to CPU 1. Figures only.
#   bench/redis.sh          DURATION=5 (seconds per run), ROUNDS=1, TASKS=50,
#                           SERVER_CPU=0, CLIENT_CPU=1
# Loads (bench/redis_client.lua and bench/redis_client.js):
#   conns     TASKS tasks, a connection each, SET then GET in a loop, no pipelining;
#             redis-benchmark -c TASKS -P 1
#   shared    TASKS tasks sharing one client: luaio's automatic pipelining, ioredis with
#             enableAutoPipelining (and with its defaults: "plain"); redis-benchmark -P 16.
#             One connection carries at most TASKS commands per round trip (redis-benchmark
#             -P 16 -c 50: 800), so this is round-trip bound; the row with two shared
#             clients (TASKS/2 tasks each) shows what overlapping two round trips gives,
#             and redis-benchmark -c 1 -P TASKS is the C client in the same shape.
#   pipeline  one task, explicit pipelines of 100 commands (50 SET + 50 GET)
# ioredis is installed with npm into out/bench/node (git ignores out/) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-1}
TASKS=${TASKS:-50}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
[ -x out/luaio ] || { echo "bench: build first (./build.sh)" >&2; exit 1; }
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null ||
  { echo "bench: needs redis-server and redis-benchmark (apt-get install redis-server redis-tools)" >&2; exit 1; }

node_dir=$root/out/bench/node
have_node=0
if command -v node >/dev/null; then
  if [ ! -d "$node_dir/node_modules/ioredis" ] && command -v npm >/dev/null; then
    mkdir -p "$node_dir"
    (cd "$node_dir" && npm init -y >/dev/null && npm install --no-audit --no-fund ioredis@5 >/dev/null 2>&1) || true
  fi
  [ -d "$node_dir/node_modules/ioredis" ] && have_node=1
fi
[ $have_node = 1 ] || echo "bench: node or ioredis missing: no ioredis figures" >&2

tmp=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# a free port: the kernel's pick for a socket bound to port 0
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
taskset -c "$SERVER_CPU" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$tmp" --daemonize no --protected-mode no --loglevel warning >"$tmp/redis.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis-cli -p "$port" ping >/dev/null || { cat "$tmp/redis.log" >&2; exit 1; }

# client NAME CMD... -> "ops/s ops_per_cpu_s cpu_percent" from the client's ops= wall= cpu= line
client() {
  local out
  out=$(taskset -c "$CLIENT_CPU" "$@" | grep '^ops=')
  echo "$out" | awk '{ split($1, o, "="); split($2, w, "="); split($3, c, "=");
    printf "%.0f %.0f %.0f\n", o[2] / w[2], (c[2] > 0 ? o[2] / c[2] : 0), 100 * c[2] / w[2] }'
}

# redis-benchmark's SET and GET at -P pipe: the rate of a 50/50 mix (harmonic mean)
benchmark() { # pipe [conns]
  local n=$((DURATION * ($1 == 1 ? 100000 : ${2:-$TASKS} == 1 ? 200000 : 800000)))
  taskset -c "$CLIENT_CPU" redis-benchmark -p "$port" -c "${2:-$TASKS}" -n "$n" -P "$1" -d 16 -t set,get -q 2>/dev/null |
    tr '\r' '\n' | awk '/^(SET|GET): [0-9.]+ requests per second/ { r[$1] = $2 }
      END { printf "%.0f %.0f %.0f\n", 2 / (1 / r["SET:"] + 1 / r["GET:"]), r["SET:"], r["GET:"] }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }

row() { printf '  %-34s %10s ops/s %10s ops/cpu-s %5s%% cpu\n' "$1" "$2" "$3" "$4"; }

echo "redis bench: redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on cpu $SERVER_CPU," \
  "clients on cpu $CLIENT_CPU, ${DURATION}s per run, $TASKS tasks, $ROUNDS round(s)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
  [ "$ROUNDS" -gt 1 ] && echo "round $round"
  redis-cli -p "$port" flushall >/dev/null

  echo "conns: $TASKS connections, GET/SET, no pipelining"
  read -r l_ops l_cpu l_pct < <(client out/luaio run bench/redis_client.lua "$port" conns "$DURATION" "$TASKS")
  row "luaio" "$l_ops" "$l_cpu" "$l_pct"
  if [ $have_node = 1 ]; then
    read -r n_ops n_cpu n_pct < <(NODE_PATH=$node_dir/node_modules client node bench/redis_client.js "$port" conns "$DURATION" "$TASKS")
    row "ioredis" "$n_ops" "$n_cpu" "$n_pct"
  fi
  read -r b_ops b_set b_get < <(benchmark 1)
  row "redis-benchmark -c $TASKS (SET $b_set, GET $b_get)" "$b_ops" "-" "-"
  [ $have_node = 1 ] && echo "  luaio/ioredis: $(ratio "$l_ops" "$n_ops") ops/s, $(ratio "$l_cpu" "$n_cpu") ops/cpu-s"
  echo "  luaio/redis-benchmark: $(ratio "$l_ops" "$b_ops") ops/s"

  echo "shared: $TASKS tasks on one client (automatic pipelining)"
  read -r l_ops l_cpu l_pct < <(client out/luaio run bench/redis_client.lua "$port" shared "$DURATION" "$TASKS")
  row "luaio" "$l_ops" "$l_cpu" "$l_pct"
  read -r t_ops t_cpu t_pct < <(client out/luaio run bench/redis_client.lua "$port" shared "$DURATION" "$TASKS" 2)
  row "luaio, two shared clients (for info)" "$t_ops" "$t_cpu" "$t_pct"
  if [ $have_node = 1 ]; then
    read -r n_ops n_cpu n_pct < <(NODE_PATH=$node_dir/node_modules client node bench/redis_client.js "$port" shared "$DURATION" "$TASKS")
    row "ioredis enableAutoPipelining" "$n_ops" "$n_cpu" "$n_pct"
    read -r p_ops p_cpu p_pct < <(NODE_PATH=$node_dir/node_modules client node bench/redis_client.js "$port" plain "$DURATION" "$TASKS")
    row "ioredis defaults" "$p_ops" "$p_cpu" "$p_pct"
  fi
  read -r b_ops b_set b_get < <(benchmark 16)
  row "redis-benchmark -P 16 (SET $b_set, GET $b_get)" "$b_ops" "-" "-"
  read -r s_ops s_set s_get < <(benchmark "$TASKS" 1)
  row "redis-benchmark -c 1 -P $TASKS (same shape)" "$s_ops" "-" "-"
  [ $have_node = 1 ] && echo "  luaio/ioredis auto: $(ratio "$l_ops" "$n_ops") ops/s, $(ratio "$l_cpu" "$n_cpu") ops/cpu-s"
  echo "  luaio/redis-benchmark -P 16: $(ratio "$l_ops" "$b_ops") ops/s;" \
    "luaio/redis-benchmark -c 1 -P $TASKS (one connection, $TASKS in flight, as here): $(ratio "$l_ops" "$s_ops") ops/s"

  echo "pipeline: explicit pipelines of 100 commands, one task"
  read -r l_ops l_cpu l_pct < <(client out/luaio run bench/redis_client.lua "$port" pipeline "$DURATION")
  row "luaio" "$l_ops" "$l_cpu" "$l_pct"
  if [ $have_node = 1 ]; then
    read -r n_ops n_cpu n_pct < <(NODE_PATH=$node_dir/node_modules client node bench/redis_client.js "$port" pipeline "$DURATION")
    row "ioredis" "$n_ops" "$n_cpu" "$n_pct"
    echo "  luaio/ioredis: $(ratio "$l_ops" "$n_ops") ops/s, $(ratio "$l_cpu" "$n_cpu") ops/cpu-s"
  fi
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
