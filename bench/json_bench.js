// node's JSON.parse and JSON.stringify on the documents in DIR, as bench/json_bench.lua
// measures cjson. Usage: node bench/json_bench.js DIR [SECONDS]
"use strict";
const fs = require("fs");
const dir = process.argv[2];
const seconds = Number(process.argv[3] || 1);

function rate(fn) {
  for (let i = 0; i < 3; i++) fn();
  let n = 0;
  const start = process.hrtime.bigint();
  let elapsed;
  do {
    fn();
    n++;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  } while (elapsed < seconds);
  return n / elapsed;
}

for (const name of ["api", "numbers", "strings"]) {
  const text = fs.readFileSync(`${dir}/${name}.json`, "utf8");
  const mb = Buffer.byteLength(text) / 1e6;
  const value = JSON.parse(text);
  console.log(`${name} decode ${(rate(() => JSON.parse(text)) * mb).toFixed(1)}`);
  console.log(`${name} encode ${(rate(() => JSON.stringify(value)) * mb).toFixed(1)}`);
}
