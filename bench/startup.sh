#!/usr/bin/env bash
# Foundation figures, measured in one run:
#   - the stripped size of out/luaio;
#   - the median start-to-exit time of a bundled hello app against Debian's
#     `luajit -e 'print(1)'` (both pinned to one core, many runs, hyperfine);
#   - the time of `luaio build` on a generated app of 500 modules.
# Usage: bench/startup.sh  (after ./build.sh; installs hyperfine and luajit when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
luaio=$(pwd)/out/luaio
[ -x "$luaio" ] || { echo "bench: build first (./build.sh)" >&2; exit 1; }
missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v luajit >/dev/null || missing+=(luajit2) # Debian's OpenResty LuaJIT: coexists with nginx-lua
command -v bc >/dev/null || missing+=(bc)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cpu=${BENCH_CPU:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

median() { # hyperfine json -> median seconds of each command, one per line
  awk -F'[:,]' '/"median"/ { gsub(/ /, "", $2); print $2 }' "$1"
}

echo "== size"
size=$(stat -c %s "$luaio")
printf 'out/luaio: %d bytes (%.2f MB), %s\n' "$size" "$(echo "$size / 1000000" | bc -l)" \
  "$(file -b "$luaio" | grep -o 'statically linked' || echo 'NOT static')"

echo "== bundled hello, start to exit (median of 500 runs, cpu $cpu)"
mkdir -p "$work/hello"
echo 'print("hello")' >"$work/hello/main.lua"
"$luaio" build "$work/hello" -o "$work/hello-app" >/dev/null
hyperfine -N --warmup 50 --runs 500 --export-json "$work/start.json" \
  "taskset -c $cpu $work/hello-app" "taskset -c $cpu luajit -e 'print(1)'" >/dev/null 2>&1
read -r ours theirs < <(median "$work/start.json" | paste -sd' ')
printf 'luaio bundled hello: %.3f ms   luajit -e print(1): %.3f ms   ratio: %.2fx (target <= 1.5x)\n' \
  "$(echo "$ours * 1000" | bc -l)" "$(echo "$theirs * 1000" | bc -l)" "$(echo "$ours / $theirs" | bc -l)"

echo "== luaio build of 500 generated modules"
app="$work/big"
mkdir -p "$app/mods"
for i in $(seq 1 500); do
  cat >"$app/mods/m$i.lua" <<MOD
local M = {}
function M.value(x) return x + $i end
function M.name() return "module $i" end
local t = {}
for k = 1, 10 do t[k] = k * $i end
M.table = t
return M
MOD
done
{
  echo 'local sum = 0'
  echo 'for i = 1, 500 do sum = sum + require("mods.m" .. i).value(0) end'
  echo 'print(sum)'
} >"$app/main.lua"
hyperfine -N --warmup 2 --runs 10 --export-json "$work/build.json" \
  "taskset -c $cpu $luaio build $app -o $work/big-app" >/dev/null 2>&1
printf 'luaio build, 501 files: %.0f ms median (target < 1000 ms); the app prints %s\n' \
  "$(echo "$(median "$work/build.json") * 1000" | bc -l)" "$("$work/big-app")"
