// The ioredis side of bench/redis.sh, the same loads as bench/redis_client.lua.
//   node bench/redis_client.js PORT MODE SECONDS [TASKS]
// MODE: conns (a client per task), shared (one client, enableAutoPipelining), plain (one
// client, ioredis defaults), pipeline (explicit pipelines of 100). Prints ops= wall= cpu=.
const Redis = require("ioredis");
const [port, mode, seconds, ntasks = 50] = process.argv.slice(2).map((v, i) => (i === 1 ? v : Number(v)));
const value = "v".repeat(16);
let ops = 0, stop = false;

async function main() {
  const opts = { port, enableAutoPipelining: mode === "shared", lazyConnect: false };
  const loops = [];
  if (mode === "conns" || mode === "shared" || mode === "plain") {
    const shared = mode === "conns" ? null : new Redis(opts);
    const clients = [];
    for (let i = 0; i < ntasks; i++) clients.push(shared || new Redis(opts));
    await Promise.all(clients.map((c) => c.ping()));
    for (let i = 0; i < ntasks; i++) {
      const r = clients[i], key = "key:" + (i + 1);
      loops.push((async () => {
        while (!stop) {
          await r.set(key, value);
          await r.get(key);
          ops += 2;
        }
      })());
    }
  } else if (mode === "pipeline") {
    const r = new Redis(opts);
    await r.ping();
    loops.push((async () => {
      while (!stop) {
        const p = r.pipeline();
        for (let i = 1; i <= 50; i++) { p.set("pkey:" + i, value); p.get("pkey:" + i); }
        const res = await p.exec();
        ops += res.length;
      }
    })());
  } else {
    throw new Error("unknown mode " + mode);
  }
  await new Promise((res) => setTimeout(res, 500));
  ops = 0;
  const cpu0 = process.cpuUsage(), wall0 = process.hrtime.bigint();
  await new Promise((res) => setTimeout(res, seconds * 1000));
  const done = ops, wall = Number(process.hrtime.bigint() - wall0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  stop = true;
  await Promise.all(loops);
  console.log(`ops=${done} wall=${wall.toFixed(3)} cpu=${((cpu.user + cpu.system) / 1e6).toFixed(3)}`);
  process.exit(0);
}
main();
