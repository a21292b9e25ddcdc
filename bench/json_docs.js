// Writes the documents bench/json.sh measures, the same bytes every run (a seeded generator):
//   api.json      an API response: 400 records with nested objects and arrays   (~400 KB)
//   numbers.json  a flat array of 100,000 numbers: integers, prices, measurements (~1 MB)
//   strings.json  1,000 articles: paragraphs of text, a few quotes and UTF-8 words (~1.7 MB)
// Usage: node bench/json_docs.js DIR
"use strict";
const fs = require("fs");
const path = require("path");

let seed = 42;
function rand() { // xorshift32, in [0, 1)
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return seed / 4294967296;
}
const int = (n) => Math.floor(rand() * n);
const pick = (a) => a[int(a.length)];

// Text as people write it: mostly ASCII words, now and then a word in UTF-8, a quotation
// (escaped quotes) and paragraphs (escaped newlines).
const words = ("the of and to in is that it was for on are with as his they be at one have this " +
  "from or had by word but what some we can out other were all there when up use your how said " +
  "an each she which do their time if will way about many then them write would like so these " +
  "her long make thing see him two has look more day could go come did number sound no most " +
  "people my over know water than call first who may down side been now find server request").split(" ");
const foreign = ["café", "naïve", "Zürich", "São Paulo", "日本語", "данные", "😀", "“quoted”", "résumé"];
function sentence(n) {
  const w = [];
  for (let i = 0; i < n; i++) w.push(rand() < 0.03 ? pick(foreign) : pick(words));
  if (rand() < 0.15) { const at = int(n); w[at] = '"' + w[at]; w[n - 1] += '"'; }
  const s = w.join(" ");
  return s[0].toUpperCase() + s.slice(1) + ".";
}
function paragraphs(n) {
  const p = [];
  for (let i = 0; i < n; i++) {
    const s = [];
    for (let k = 3 + int(4); k > 0; k--) s.push(sentence(8 + int(12)));
    p.push(s.join(" "));
  }
  return p.join("\n\n");
}

function api() {
  const data = [];
  for (let i = 0; i < 400; i++) {
    const tags = [];
    for (let t = int(6); t > 0; t--) tags.push(pick(["admin", "beta", "eu-west", "premium", "trial", "legacy"]));
    const friends = [];
    for (let f = int(12); f > 0; f--) friends.push(int(1000000));
    data.push({
      id: 100000 + i,
      uuid: [8, 4, 4, 4, 12].map((n) => Array.from({ length: n }, () => "0123456789abcdef"[int(16)]).join("")).join("-"),
      name: pick(["Ada", "Grace", "Linus", "Ken", "Barbara"]) + " " + pick(["Lovelace", "Hopper", "Torvalds", "Thompson", "Liskov"]),
      email: `user${i}@example.com`,
      active: rand() < 0.7,
      score: Math.round(rand() * 10000) / 100,
      balance: Math.round(rand() * 1e8) / 100,
      created_at: new Date(1600000000000 + int(1e11)).toISOString(),
      avatar: `https://cdn.example.com/avatars/${i}/large.png`,
      tags,
      friends,
      address: {
        street: `${int(999)} ${pick(["Main", "High", "Park", "Oak"])} St`,
        city: pick(["Berlin", "Paris", "Tokyo", "Lima", "Oslo"]),
        zip: String(10000 + int(89999)),
        geo: { lat: Math.round((rand() * 180 - 90) * 1e6) / 1e6, lng: Math.round((rand() * 360 - 180) * 1e6) / 1e6 },
      },
      orders: Array.from({ length: int(4) }, (_, k) => ({ id: i * 10 + k, total: Math.round(rand() * 50000) / 100, items: [int(100), int(100)], paid: rand() < 0.5 })),
      manager: rand() < 0.5 ? null : 100000 + int(400),
    });
  }
  return { data, paging: { page: 3, per_page: 400, total: 12345, next: "https://api.example.com/users?page=4" } };
}

function numbers() {
  const a = [];
  for (let i = 0; i < 100000; i++) {
    const k = i % 4;
    if (k === 0) a.push(int(1000000));                      // ids, counts
    else if (k === 1) a.push(Math.round(rand() * 1e6) / 100); // prices
    else if (k === 2) a.push(rand() * 1000 - 500);            // measurements, full precision
    else a.push(Math.round((rand() * 2 - 1) * 1e5) / 1e3);    // small signed decimals
  }
  return a;
}

function strings() {
  const a = [];
  for (let i = 0; i < 1000; i++) {
    a.push({
      id: i,
      title: sentence(6),
      author: pick(["Ada Lovelace", "Grace Hopper", "Zoë Ýr", "Linus"]),
      url: `https://news.example.com/articles/${i}/${pick(words)}-${pick(words)}`,
      body: paragraphs(2 + int(4)),
      comments: Array.from({ length: int(5) }, () => sentence(10 + int(20))),
    });
  }
  return a;
}

const dir = process.argv[2];
for (const [name, make] of [["api", api], ["numbers", numbers], ["strings", strings]])
  fs.writeFileSync(path.join(dir, name + ".json"), JSON.stringify(make()));
