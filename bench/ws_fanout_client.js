// Fan-out load for bench/ws_fanout.sh: opens N WebSocket connections (node's ws), then ROUNDS
// times sends "go" on one of them and times until every connection has its message.
// Prints "round=i ms=..." per round and "median_ms=... delivered=..." at the end.
// Usage: node ws_fanout_client.js PORT N ROUNDS
"use strict";
const WebSocket = require("ws");
const [port, total, rounds] = [Number(process.argv[2]), Number(process.argv[3] || 10000), Number(process.argv[4] || 5)];
const all = [];
let opened = 0, got = 0, round = 0, t0 = 0, delivered = 0;
const times = [];
function start() {
  if (round === rounds) {
    times.sort((a, b) => a - b);
    console.log(`median_ms=${times[Math.floor(times.length / 2)].toFixed(2)} min_ms=${times[0].toFixed(2)} delivered=${delivered}`);
    process.exit(0);
  }
  got = 0;
  setTimeout(() => { t0 = process.hrtime.bigint(); all[0].send("go"); }, 300);
}
function onMessage() {
  got++; delivered++;
  if (got === total) {
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    times.push(ms);
    console.log(`round=${round} ms=${ms.toFixed(2)}`);
    round++;
    start();
  }
}
let inflight = 0, started = 0;
function launch() {
  while (inflight < 256 && started < total) {
    started++; inflight++;
    const ws = new WebSocket("ws://127.0.0.1:" + port + "/", { perMessageDeflate: false });
    all.push(ws);
    ws.on("open", () => { inflight--; opened++; launch(); if (opened === total) start(); });
    ws.on("message", onMessage);
    ws.on("error", (e) => { console.log("error " + e.message); process.exit(1); });
  }
}
launch();
