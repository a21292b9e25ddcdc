// ws_idle.js PORT N: opens N WebSocket connections to 127.0.0.1:PORT (node's ws package),
// each sends one message and reads its echo (so the server has really served it), then all
// stay open and silent. Prints "READY ok=N failed=N" and holds until killed.
"use strict";
const WebSocket = require("ws");
const [port, total] = [Number(process.argv[2]), Number(process.argv[3] || 10000)];
let started = 0, ok = 0, inflight = 0, failed = 0;
const all = [];
function launch() {
  while (inflight < 256 && started < total) {
    started++; inflight++;
    const ws = new WebSocket("ws://127.0.0.1:" + port + "/", { perMessageDeflate: false });
    all.push(ws);
    ws.on("open", () => ws.send("x"));
    ws.once("message", () => { inflight--; ok++; launch(); });
    ws.on("error", () => { inflight--; failed++; launch(); });
  }
  if (ok + failed === total) console.log(`READY ok=${ok} failed=${failed}`);
}
launch();
setInterval(() => {}, 1 << 30);
