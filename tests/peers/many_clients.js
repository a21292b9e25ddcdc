// node peer: opens N connections at once to 127.0.0.1:PORT, sends one line on each, checks
// that each gets the same line back, and prints "ok N" (or the first failure, exit 1).
const net = require("net");
const [port, n] = [Number(process.argv[2]), Number(process.argv[3])];
let open = 0, done = 0, failed = false;
const sockets = [];
const timer = setTimeout(() => { console.log(`timeout: ${done}/${n} echoed, ${open} connected`); process.exit(1); }, 20000);
for (let i = 0; i < n; i++) {
  const s = net.connect(port, "127.0.0.1");
  let got = "";
  s.on("connect", () => { open++; if (open === n) for (const t of sockets) t.write(`hello ${t.id}\n`); });
  s.id = i;
  sockets.push(s);
  s.on("data", (d) => {
    got += d;
    if (got.endsWith("\n")) {
      if (got !== `hello ${i}\n`) { console.log(`bad echo on ${i}: ${got}`); process.exit(1); }
      s.end();
      if (++done === n) { clearTimeout(timer); console.log(`ok ${n} ${open}`); }
    }
  });
  s.on("error", (e) => { if (!failed) { failed = true; console.log(`error on ${i}: ${e.message}`); process.exit(1); } });
}
