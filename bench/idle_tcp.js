// idle_tcp.js PORT N: opens N connections to 127.0.0.1:PORT, each sends one line and reads
// its echo (so the server has really served it), then all stay open and silent.
// Prints "READY ok=N" and holds until killed.
"use strict";
const net = require("net");
const [port, total] = [Number(process.argv[2]), Number(process.argv[3] || 10000)];
let started = 0, ok = 0, inflight = 0, failed = 0;
const sockets = [];
function launch() {
  while (inflight < 256 && started < total) {
    started++; inflight++;
    const s = net.connect(port, "127.0.0.1");
    sockets.push(s);
    s.on("connect", () => s.write("x\n"));
    s.once("data", () => { inflight--; ok++; launch(); });
    s.on("error", () => { inflight--; failed++; launch(); });
  }
  if (ok + failed === total) console.log(`READY ok=${ok} failed=${failed}`);
}
launch();
setInterval(() => {}, 1 << 30);
