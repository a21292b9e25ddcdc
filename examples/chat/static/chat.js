// The chat page: joins a room over WebSocket, shows history, messages, members and who types.
"use strict";
const $ = (id) => document.getElementById(id);
let ws = null, me = "", lastId = 0, members = new Set(), typingTimers = new Map(), lastTyping = 0;
const seen = new Set();

function time(ts) {
  const d = ts ? new Date(ts * 1000) : new Date();
  return d.toTimeString().slice(0, 5);
}

function line(cls, parts, ts, id) {
  const p = document.createElement("p");
  p.className = cls;
  if (id !== undefined) p.dataset.id = id;
  const t = document.createElement("time");
  t.textContent = time(ts);
  p.append(t, ...parts);
  return p;
}

function message(m) {
  if (seen.has(m.id)) return null; // history and the live stream may both carry it
  seen.add(m.id);
  const b = document.createElement("b");
  b.textContent = m.nick;
  return line("msg", [b, document.createTextNode(m.text)], m.ts, m.id);
}

function append(node) {
  if (!node) return;
  const log = $("log");
  const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
  log.append(node);
  if (atEnd) log.scrollTop = log.scrollHeight;
}

function notice(text, ts) { append(line("notice", [document.createTextNode(text)], ts)); }

function showMembers() {
  const ul = $("members");
  ul.replaceChildren(...[...members].sort().map((n) => {
    const li = document.createElement("li");
    li.textContent = n === me ? n + " (you)" : n;
    return li;
  }));
}

function showTyping() {
  const who = [...typingTimers.keys()];
  $("typing").textContent = who.length ? who.join(", ") + (who.length > 1 ? " are" : " is") + " typing…" : "";
}

function typing(nick) {
  if (nick === me) return;
  clearTimeout(typingTimers.get(nick));
  typingTimers.set(nick, setTimeout(() => { typingTimers.delete(nick); showTyping(); }, 3000));
  showTyping();
}

function onEvent(m) {
  switch (m.type) {
  case "hello": {
    $("title").textContent = "#" + m.room;
    me = m.nick;
    members = new Set(m.members);
    showMembers();
    // history goes before anything the live stream already showed
    const log = $("log"), first = log.firstChild;
    for (const raw of m.history) {
      const node = message(raw);
      if (node) log.insertBefore(node, first);
    }
    log.scrollTop = log.scrollHeight;
    break;
  }
  case "msg":
    typingTimers.delete(m.nick);
    showTyping();
    append(message(m));
    break;
  case "join":
    members.add(m.nick);
    showMembers();
    if (m.nick !== me) notice(m.nick + " joined", m.ts);
    break;
  case "leave":
    members.delete(m.nick);
    showMembers();
    notice(m.nick + " left", m.ts);
    break;
  case "typing":
    typing(m.nick);
    break;
  case "error":
    notice("⚠ " + m.error + (m.retry_ms ? " (retry in " + m.retry_ms + " ms)" : ""));
    break;
  }
}

function join(nick, room) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${scheme}//${location.host}/ws?room=${encodeURIComponent(room)}&nick=${encodeURIComponent(nick)}`);
  ws.onopen = () => { $("status").textContent = "connected"; };
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "hello") {
      $("join").hidden = true;
      $("chat").hidden = false;
      $("text").focus();
    } else if (m.type === "error" && $("chat").hidden) {
      $("join-error").textContent = m.error;
    }
    onEvent(m);
  };
  ws.onclose = (e) => {
    $("status").textContent = "disconnected" + (e.reason ? ": " + e.reason : "");
    if ($("chat").hidden && !$("join-error").textContent) $("join-error").textContent = e.reason || "could not join";
  };
}

$("join").addEventListener("submit", (e) => {
  e.preventDefault();
  $("join-error").textContent = "";
  join($("nick").value.trim(), $("room").value.trim());
});

$("send").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!text || !ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(JSON.stringify({ type: "msg", text }));
  $("text").value = "";
});

$("text").addEventListener("input", () => {
  const now = Date.now();
  if (ws && ws.readyState === WebSocket.OPEN && now - lastTyping > 1500) {
    lastTyping = now;
    ws.send(JSON.stringify({ type: "typing" }));
  }
});
