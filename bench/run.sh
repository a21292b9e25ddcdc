#!/usr/bin/env bash
# Runs every benchmark in bench/ (./build.sh bench). Figures only: nothing here passes or fails.
set -euo pipefail
cd "$(dirname "$0")"
./startup.sh
./idle_tcp.sh 10000
./tcp_echo.sh
PIPELINE=16 IDLE_CONNS=0 ./http.sh
./http.sh
./json.sh
./mysql.sh
./redis.sh
./chat.sh
./game.sh
