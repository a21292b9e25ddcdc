#!/usr/bin/env bash
# Runs every benchmark in bench/ (./build.sh bench), one after the other. Figures only:
# nothing here passes or fails. Run it on a quiet machine: every script pins the server to
# one core and the client to the other, and compares peers measured in the same run.
set -euo pipefail
cd "$(dirname "$0")"
./startup.sh
./idle_tcp.sh 10000
./tcp_echo.sh
PIPELINE=16 IDLE_CONNS=0 ./http.sh
./http.sh
TLS=1 ./http.sh
TLS=1 PIPELINE=16 IDLE_CONNS=0 ./http.sh
TLS=1 NEW_CONN=1 IDLE_CONNS=0 ./http.sh
./ws_echo.sh
./ws_fanout.sh
./ws_idle.sh
./json.sh
./mysql.sh
./redis.sh
./chat.sh
./game.sh
