// The node side of bench/mysql.sh, with mysql2 (npm): same modes, same output as
// bench/mysql_client.lua. dateStrings and supportBigNumbers make mysql2's values what
// luaio gives (dates as text, BIGINT past 2^53 as a string).
const mysql = require('mysql2/promise');
const env = process.env;
const mode = env.MODE || 'point', port = +env.PORT, duration = +(env.DURATION || 5) * 1000;
const o = { host: '127.0.0.1', port, user: 'bench', password: 'bench-pw', database: 'bench',
  dateStrings: true, supportBigNumbers: true };
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
const report = (ops, t0, c0) => console.log(`ops=${ops} wall=${((Date.now() - t0) / 1000).toFixed(3)} cpu=${(cpu() - c0).toFixed(3)}`);

async function main() {
  if (mode === 'point') {
    const tasks = +(env.TASKS || 32);
    const pool = mysql.createPool({ ...o, connectionLimit: +(env.POOL || 32) });
    await Promise.all([...Array(tasks)].map((_, i) => pool.execute('SELECT * FROM users WHERE id = ?', [i + 1])));
    let ops = 0, stop = false;
    const t0 = Date.now(), c0 = cpu();
    const worker = async (n) => {
      let id = n;
      while (!stop) {
        const [rows] = await pool.execute('SELECT * FROM users WHERE id = ?', [id]);
        if (rows[0].id !== id) throw new Error('bad row');
        id = id % 10000 + 1;
        ops++;
      }
    };
    const ws = [...Array(tasks)].map((_, i) => worker((i + 1) * 311));
    await new Promise((r) => setTimeout(r, duration));
    stop = true;
    report(ops, t0, c0);
    await Promise.all(ws);
    await pool.end();
  } else if (mode === 'rows' || mode === 'rows_exec') {
    const db = await mysql.createConnection(o);
    const run = mode === 'rows' ? () => db.query('SELECT * FROM wide') : () => db.execute('SELECT * FROM wide');
    if ((await run())[0].length !== 10000) throw new Error('bad count');
    let rows = 0;
    const t0 = Date.now(), c0 = cpu();
    while (Date.now() - t0 < duration) rows += (await run())[0].length;
    report(rows, t0, c0);
    await db.end();
  } else if (mode === 'idle') {
    const n = +(env.CONNS || 500);
    const pool = mysql.createPool({ ...o, connectionLimit: n, maxIdle: n });
    global.gc && global.gc();
    const before = process.memoryUsage().rss;
    const held = await Promise.all([...Array(n)].map(() => pool.getConnection()));
    held.forEach((c) => c.release());
    global.gc && global.gc();
    await new Promise((r) => setTimeout(r, 500));
    global.gc && global.gc();
    console.log(`rss_kib_per_conn=${((process.memoryUsage().rss - before) / 1024 / n).toFixed(2)} idle=${n}`);
    await pool.end();
  }
}
main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
