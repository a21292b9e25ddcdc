// The arena's page: the binary protocol of proto.lua with DataView, a canvas, the keyboard
// and the mouse. window.game holds what the page knows (the browser test reads it).
"use strict";
const OP = { JOIN: 1, RESUME: 2, INPUT: 3, WELCOME: 1, SNAPSHOT: 2, INFO: 3, GONE: 4, ERROR: 5 };
const KEY = { UP: 1, DOWN: 2, LEFT: 4, RIGHT: 8, FIRE: 16 };
const KEYS = { KeyW: KEY.UP, ArrowUp: KEY.UP, KeyS: KEY.DOWN, ArrowDown: KEY.DOWN, KeyA: KEY.LEFT,
  ArrowLeft: KEY.LEFT, KeyD: KEY.RIGHT, ArrowRight: KEY.RIGHT, Space: KEY.FIRE };
const RADIUS = 18;
const game = window.game = { me: 0, world: 2000, cell: 250, view: 375, hz: 30, tick: 0, score: 0,
  players: new Map(), prev: new Map(), shots: [], names: new Map(), colors: new Map(), at: 0,
  connected: false, resumed: 0 };
const canvas = document.getElementById("view"), ctx = canvas.getContext("2d");
const $ = (id) => document.getElementById(id);
const enc = new TextEncoder(), dec = new TextDecoder();
let ws = null, keys = 0, aim = 0, seq = 0, sent = "", lastSent = 0, token = null, refused = false;

function b64(bytes) { return btoa(String.fromCharCode(...bytes)); }
function unb64(s) { return Uint8Array.from(atob(s), (c) => c.charCodeAt(0)); }

function message(size, op) {
  const buf = new ArrayBuffer(size), v = new DataView(buf);
  v.setUint8(0, op);
  return [buf, v];
}

function sendJoin(name) {
  const b = enc.encode(name), params = new URLSearchParams(location.search);
  const x = params.get("x"), y = params.get("y");
  const [buf, v] = message(2 + b.length + (x ? 4 : 0), OP.JOIN);
  v.setUint8(1, b.length);
  new Uint8Array(buf, 2).set(b);
  if (x) { v.setUint16(2 + b.length, +x, true); v.setUint16(4 + b.length, +y, true); }
  ws.send(buf);
}

function sendResume() {
  const [buf] = message(17, OP.RESUME);
  new Uint8Array(buf, 1).set(token);
  ws.send(buf);
}

function sendInput(now) {
  const state = keys + ":" + aim;
  if (state === sent && now - lastSent < 100) return;
  const [buf, v] = message(8, OP.INPUT);
  v.setUint32(1, ++seq, true);
  v.setUint8(5, keys);
  v.setUint16(6, aim, true);
  ws.send(buf);
  sent = state;
  lastSent = now;
}

function onSnapshot(v) {
  game.tick = v.getUint32(1, true);
  game.score = v.getUint16(9, true);
  const n = v.getUint16(11, true), players = new Map();
  let at = 13;
  for (let i = 0; i < n; i++, at += 8) {
    players.set(v.getUint16(at, true), { x: v.getUint16(at + 2, true), y: v.getUint16(at + 4, true),
      angle: v.getUint8(at + 6), hp: v.getUint8(at + 7) });
  }
  const m = v.getUint16(at, true), shots = [];
  at += 2;
  for (let i = 0; i < m; i++, at += 4) shots.push({ x: v.getUint16(at, true), y: v.getUint16(at + 2, true) });
  game.prev = game.players;
  game.players = players;
  game.shots = shots;
  game.at = performance.now();
}

function onMessage(e) {
  const v = new DataView(e.data), op = v.getUint8(0);
  if (op === OP.SNAPSHOT) return onSnapshot(v);
  if (op === OP.WELCOME) {
    if (game.me === v.getUint16(1, true)) game.resumed++;
    game.me = v.getUint16(1, true);
    token = new Uint8Array(e.data.slice(3, 19));
    sessionStorage.setItem("token", b64(token));
    game.world = v.getUint16(19, true);
    game.hz = v.getUint8(21);
    game.view = v.getUint16(22, true);
    game.cell = v.getUint16(24, true);
    game.connected = true;
    $("join").hidden = true;
    document.activeElement.blur();
  } else if (op === OP.INFO) {
    let at = 3;
    for (let i = v.getUint16(1, true); i > 0; i--) {
      const id = v.getUint16(at, true), len = v.getUint8(at + 3);
      game.colors.set(id, v.getUint8(at + 2));
      game.names.set(id, dec.decode(new Uint8Array(e.data, at + 4, len)));
      at += 4 + len;
    }
  } else if (op === OP.GONE) {
    game.names.delete(v.getUint16(1, true));
  } else if (op === OP.ERROR) {
    const why = dec.decode(new Uint8Array(e.data, 2, v.getUint8(1)));
    refused = true;
    if (why === "unknown token") { sessionStorage.removeItem("token"); token = null; }
    $("error").textContent = why;
    $("join").hidden = false;
  }
}

function connect(name) {
  refused = false;
  ws = new WebSocket(`${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => (token ? sendResume() : sendJoin(name));
  ws.onmessage = onMessage;
  ws.onclose = () => {
    game.connected = false;
    if (token && !refused) setTimeout(() => connect(), 500); // resume with the token
  };
}

$("form").addEventListener("submit", (e) => {
  e.preventDefault();
  $("error").textContent = "";
  token = null;
  connect($("name").value.trim());
});
const saved = sessionStorage.getItem("token");
if (saved) { token = unb64(saved); connect(); }

// Inputs go out when they change and every 100 ms (not from the drawing loop, which a
// hidden tab does not run).
function input() { if (ws && ws.readyState === WebSocket.OPEN && game.connected) sendInput(performance.now()); }
setInterval(input, 100);
addEventListener("keydown", (e) => {
  if (KEYS[e.code] && $("join").hidden) { keys |= KEYS[e.code]; e.preventDefault(); input(); }
});
addEventListener("keyup", (e) => { if (KEYS[e.code]) { keys &= ~KEYS[e.code]; input(); } });
addEventListener("blur", () => { keys = 0; input(); });
canvas.addEventListener("mousedown", () => { keys |= KEY.FIRE; input(); });
addEventListener("mouseup", () => { keys &= ~KEY.FIRE; input(); });
canvas.addEventListener("mousemove", (e) => {
  const a = Math.atan2(e.clientY - canvas.clientHeight / 2, e.clientX - canvas.clientWidth / 2);
  aim = Math.round((a < 0 ? a + 2 * Math.PI : a) / (2 * Math.PI) * 65536) & 0xffff;
  input();
});

// Where a player is drawn: between its last two positions, as time goes to the next tick.
function position(id, p, now) {
  const q = game.prev.get(id), t = Math.min(1, (now - game.at) * game.hz / 1000);
  return q ? { x: q.x + (p.x - q.x) * t, y: q.y + (p.y - q.y) * t } : p;
}

function draw(now) {
  requestAnimationFrame(draw);
  if (canvas.width !== canvas.clientWidth || canvas.height !== canvas.clientHeight) {
    canvas.width = canvas.clientWidth;
    canvas.height = canvas.clientHeight;
  }
  const w = canvas.width, h = canvas.height;
  ctx.fillStyle = "#10141c";
  ctx.fillRect(0, 0, w, h);
  const mine = game.players.get(game.me);
  const c = mine ? position(game.me, mine, now) : { x: game.world / 2, y: game.world / 2 };
  const scale = Math.max(w, h) / (2 * game.view);
  ctx.save();
  ctx.translate(w / 2 - c.x * scale, h / 2 - c.y * scale);
  ctx.scale(scale, scale);
  ctx.strokeStyle = "#1f2838";
  ctx.lineWidth = 1 / scale;
  for (let g = 0; g <= game.world; g += game.cell / 5) {
    ctx.beginPath(); ctx.moveTo(g, 0); ctx.lineTo(g, game.world); ctx.moveTo(0, g); ctx.lineTo(game.world, g); ctx.stroke();
  }
  ctx.strokeStyle = "#e0a526";
  ctx.lineWidth = 4;
  ctx.strokeRect(0, 0, game.world, game.world);
  ctx.fillStyle = "#ffe27a";
  for (const s of game.shots) { ctx.beginPath(); ctx.arc(s.x, s.y, 4, 0, 2 * Math.PI); ctx.fill(); }
  ctx.textAlign = "center";
  ctx.font = "14px system-ui, sans-serif";
  for (const [id, p] of game.players) {
    const at = position(id, p, now), a = p.angle / 256 * 2 * Math.PI;
    ctx.fillStyle = `hsl(${(game.colors.get(id) || 0) * 360 / 256}, 70%, 55%)`;
    ctx.beginPath(); ctx.arc(at.x, at.y, RADIUS, 0, 2 * Math.PI); ctx.fill();
    if (id === game.me) { ctx.strokeStyle = "#fff"; ctx.lineWidth = 3; ctx.stroke(); }
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 4;
    ctx.beginPath(); ctx.moveTo(at.x, at.y); ctx.lineTo(at.x + Math.cos(a) * RADIUS * 1.6, at.y + Math.sin(a) * RADIUS * 1.6); ctx.stroke();
    ctx.fillStyle = "#c33"; ctx.fillRect(at.x - 20, at.y - 30, 40, 4);
    ctx.fillStyle = "#3c6"; ctx.fillRect(at.x - 20, at.y - 30, 40 * p.hp / 100, 4);
    ctx.fillStyle = "#dde"; ctx.fillText(game.names.get(id) || "#" + id, at.x, at.y + RADIUS + 16);
  }
  ctx.restore();
  $("hud").textContent = game.connected
    ? `${game.names.get(game.me) || ""}  score ${game.score}  hp ${mine ? mine.hp : "-"}  near ${game.players.size}  tick ${game.tick}`
    : (token ? "reconnecting…" : "");
}
requestAnimationFrame(draw);
