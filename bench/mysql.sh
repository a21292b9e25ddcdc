#!/usr/bin/env bash
# The mysql client against node's mysql2 (npm) in one run: one MariaDB (its own data
# directory in a temporary folder, never the system's service) pinned to CPU 0, each client
# in turn pinned to CPU 1. Figures only.
#   bench/mysql.sh          DURATION=5 (seconds per run), ROUNDS=1, TASKS=32, POOL=32,
#                           CONNS=500 (idle), SERVER_CPU=0, CLIENT_CPU=1,
#                           MODES="point rows rows_exec", LUAIO=out/luaio (the binary measured)
# Loads (bench/mysql_client.lua and bench/mysql_client.js):
#   point      TASKS tasks on a pool of POOL connections: prepared SELECT * by primary key
#              (5 columns) in a loop
#   rows       one connection reading SELECT * of a 10,000-row table of 10 mixed columns
#              (INT, BIGINT, VARCHAR, DOUBLE, DECIMAL, DATETIME, TINYINT, TEXT, DATE, NULLs):
#              the text protocol (query); rows_exec: the binary one (execute). After rows,
#              bench/mysql_rows_ceiling.lua: LuaJIT building the same rows with no I/O
#   idle       CONNS pooled connections opened then left idle: RSS per connection
# mysql2 is installed with npm into out/bench/node (git ignores out/) when missing; it is
# set to give what luaio gives (dateStrings, supportBigNumbers).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-1}
export TASKS=${TASKS:-32} POOL=${POOL:-32} CONNS=${CONNS:-500} DURATION
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
MODES=${MODES:-point rows rows_exec}
LUAIO=${LUAIO:-out/luaio}
[ -x "$LUAIO" ] || { echo "bench: build first (./build.sh)" >&2; exit 1; }
command -v mariadbd >/dev/null || { echo "bench: needs mariadb-server" >&2; exit 1; }

node_dir=$root/out/bench/node
have_node=0
if command -v node >/dev/null; then
  if [ ! -d "$node_dir/node_modules/mysql2" ] && command -v npm >/dev/null; then
    mkdir -p "$node_dir"
    (cd "$node_dir" && { [ -f package.json ] || npm init -y >/dev/null; } &&
      npm install --no-audit --no-fund mysql2@3 >/dev/null 2>&1) || true
  fi
  [ -d "$node_dir/node_modules/mysql2" ] && have_node=1
fi
[ $have_node = 1 ] || echo "bench: node or mysql2 missing: no mysql2 figures" >&2

tmp=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mariadb-install-db --no-defaults --datadir="$tmp/data" --auth-root-authentication-method=socket \
  --skip-test-db --user=root >"$tmp/install.log" 2>&1
taskset -c "$SERVER_CPU" mariadbd --no-defaults --datadir="$tmp/data" --socket="$tmp/sock" --port="$port" \
  --bind-address=127.0.0.1 --user=root --skip-log-bin --skip-name-resolve --max-connections=2000 \
  --innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=0 --log-error="$tmp/error.log" &
server_pid=$!
disown "$server_pid" # killed in cleanup: no "Killed" line from the shell
for _ in $(seq 200); do [ -S "$tmp/sock" ] && break; sleep 0.05; done
sql() { mariadb --no-defaults -S "$tmp/sock" -u root "$@"; }
for _ in $(seq 100); do sql -e "SELECT 1" >/dev/null 2>&1 && break; sleep 0.05; done
sql <<'SQL'
CREATE DATABASE bench CHARACTER SET utf8mb4;
CREATE USER 'bench'@'%' IDENTIFIED BY 'bench-pw';
GRANT ALL ON bench.* TO 'bench'@'%';
USE bench;
CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(64), email VARCHAR(128), age INT, created DATETIME);
INSERT INTO users SELECT seq, CONCAT('user ', seq), CONCAT('user', seq, '@example.com'), 18 + seq % 60,
  '2024-01-01 00:00:00' + INTERVAL seq MINUTE FROM seq_1_to_10000;
CREATE TABLE wide (id INT PRIMARY KEY, a BIGINT, b VARCHAR(32), c DOUBLE, d DECIMAL(10,2), e DATETIME,
  f TINYINT, g TEXT, h DATE, i INT NULL);
INSERT INTO wide SELECT seq, seq * 1000003, CONCAT('name-', seq), seq / 7, seq / 3,
  '2024-01-01 00:00:00' + INTERVAL seq MINUTE, seq % 100, REPEAT('x', seq % 40),
  '2024-01-01' + INTERVAL seq % 365 DAY, IF(seq % 5 = 0, NULL, seq) FROM seq_1_to_10000;
SQL
export PORT=$port

# run MODE CMD... -> "ops/s ops_per_cpu_s cpu%" (or the idle line)
run() {
  local mode=$1
  shift
  MODE=$mode taskset -c "$CLIENT_CPU" "$@" | awk -v mode="$mode" '
    /^ops=/ { split($1, o, "="); split($2, w, "="); split($3, c, "=");
      printf "%.0f %.0f %.0f\n", o[2] / w[2], (c[2] > 0 ? o[2] / c[2] : 0), 100 * c[2] / w[2] }
    /^rss_kib_per_conn=/ { split($1, r, "="); print r[2] }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }

echo "MariaDB $(mariadbd --version | awk '{print $3}') on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU, ${DURATION} s per run"
for round in $(seq "$ROUNDS"); do
  [ "$ROUNDS" = 1 ] || echo "round $round"
  for mode in $MODES; do
    read -r l_ops l_cpu l_pct <<<"$(run $mode "$LUAIO" run bench/mysql_client.lua)"
    if [ $have_node = 1 ]; then
      read -r n_ops n_cpu n_pct <<<"$(NODE_PATH=$node_dir/node_modules run $mode node bench/mysql_client.js)"
    else
      n_ops=0 n_cpu=0 n_pct=0
    fi
    unit=$([ $mode = point ] && echo "queries" || echo "rows")
    printf "%-10s luaio %9s %s/s %9s/cpu-s (%s%% cpu) | mysql2 %9s/s %9s/cpu-s (%s%% cpu) | %s/s %s, per cpu-s %s\n" \
      "$mode" "$l_ops" "$unit" "$l_cpu" "$l_pct" "$n_ops" "$n_cpu" "$n_pct" "$unit" "$(ratio "$l_ops" "$n_ops")" "$(ratio "$l_cpu" "$n_cpu")"
    if [ $mode = rows ]; then # the same rows built by LuaJIT alone: the client's ceiling
      read -r c_ops c_cpu c_pct <<<"$(run ceiling "$LUAIO" run bench/mysql_rows_ceiling.lua)"
      printf "%-10s LuaJIT alone building the same rows in memory (bench/mysql_rows_ceiling.lua): %s rows/cpu-s, %s mysql2's\n" \
        "" "$c_cpu" "$(ratio "$c_cpu" "$n_cpu")"
    fi
  done
done
l_idle=$(run idle "$LUAIO" run bench/mysql_client.lua)
n_idle=-
[ $have_node = 1 ] && n_idle=$(NODE_PATH=$node_dir/node_modules MODE=idle taskset -c "$CLIENT_CPU" node --expose-gc bench/mysql_client.js | awk -F'[= ]' '/^rss/ {print $2}')
echo "idle pooled connection ($CONNS): luaio ${l_idle} KiB, mysql2 ${n_idle} KiB of RSS each"
