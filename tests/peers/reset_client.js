// node peer: connects, sends a partial line, then resets the connection (RST, not FIN).
const net = require("net");
const s = net.connect(Number(process.argv[2]), "127.0.0.1", () => {
  s.write("partial");
  setTimeout(() => { s.resetAndDestroy(); console.log("reset sent"); }, 100);
});
