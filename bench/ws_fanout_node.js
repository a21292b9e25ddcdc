// Fan-out peer for bench/ws_fanout.sh: node's ws; a "go" from any client sends one message of
// SIZE bytes to every client, looping send over them (what a ws app does without a pub/sub
// layer). Usage: node ws_fanout_node.js PORT [SIZE]
"use strict";
const { WebSocketServer } = require("ws");
const port = Number(process.argv[2] || 9087), size = Number(process.argv[3] || 64);
const payload = "f".repeat(size);
const wss = new WebSocketServer({ host: "127.0.0.1", port, backlog: 4096, perMessageDeflate: false });
wss.on("connection", (ws) => {
  ws.on("error", () => {});
  ws.on("message", (data) => {
    if (data.toString() === "go") for (const c of wss.clients) c.send(payload);
  });
});
wss.on("listening", () => console.log("listening " + port));
