#!/usr/bin/env bash
# JSON figures, measured in one run: encode and decode MB/s of `require "cjson"` in luaio
# against Debian's lua-cjson (2.1.0, on Debian's luajit2: OpenResty's LuaJIT, as OpenResty
# users run cjson) and node's JSON.parse / JSON.stringify, on three documents that
# bench/json_docs.js writes (an API response, a flat array of numbers, text-heavy articles).
#
# The same Lua script (bench/json_bench.lua) runs in luaio and in luajit. MB/s counts the
# document's bytes, for encode too (each engine encodes the same value: the time is compared,
# not the digits it prints). ROUNDS rounds, the engines taking turns, pinned to one core; the
# median round counts. Target: luaio at least 1.5x lua-cjson both ways.
#
# Usage: bench/json.sh  (after ./build.sh; installs luajit2, lua-cjson and node when missing)
#   ROUNDS (default 3), SECONDS_PER_RUN (default 1), BENCH_CPU (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
luaio=$(pwd)/out/luaio
[ -x "$luaio" ] || { echo "bench: build first (./build.sh)" >&2; exit 1; }
missing=()
command -v luajit >/dev/null || missing+=(luajit2) # Debian's OpenResty LuaJIT: coexists with nginx-lua
[ -e /usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so ] || missing+=(lua-cjson)
command -v node >/dev/null || missing+=(nodejs)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
luajit -e 'require "cjson"' || { echo "bench: Debian's lua-cjson does not load in luajit" >&2; exit 1; }
cpu=${BENCH_CPU:-1}
rounds=${ROUNDS:-3}
seconds=${SECONDS_PER_RUN:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

node bench/json_docs.js "$work"
for doc in api numbers strings; do
  printf '%-8s %8d bytes\n' "$doc.json" "$(stat -c %s "$work/$doc.json")"
done

for round in $(seq "$rounds"); do
  taskset -c "$cpu" "$luaio" bench/json_bench.lua "$work" "$seconds" | sed 's/^/luaio /' >>"$work/all"
  taskset -c "$cpu" luajit bench/json_bench.lua "$work" "$seconds" | sed 's/^/cjson /' >>"$work/all"
  taskset -c "$cpu" node bench/json_bench.js "$work" "$seconds" | sed 's/^/node /' >>"$work/all"
  echo "round $round of $rounds done" >&2
done

# all: "engine doc op MB/s" lines -> the median per engine, doc and op, and the ratios.
printf '\n%-8s %-6s %10s %14s %10s %12s %10s\n' document op "luaio MB/s" "lua-cjson MB/s" "node MB/s" \
  "vs lua-cjson" "vs node"
for doc in api numbers strings; do
  for op in decode encode; do
    med() { awk -v e="$1" -v d="$doc" -v o="$op" '$1 == e && $2 == d && $3 == o { print $4 }' "$work/all" |
      sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
    ours=$(med luaio) theirs=$(med cjson) node=$(med node)
    printf '%-8s %-6s %10.1f %14.1f %10.1f %11.2fx %9.2fx\n' "$doc" "$op" "$ours" "$theirs" "$node" \
      "$(echo "$ours / $theirs" | bc -l)" "$(echo "$ours / $node" | bc -l)"
  done
done
echo "target: at least 1.50x lua-cjson both ways"
