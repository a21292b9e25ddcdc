// node peer: an echo server on 127.0.0.1 (port 0), prints "listening PORT".
const net = require("net");
const server = net.createServer((s) => s.pipe(s));
server.listen(0, "127.0.0.1", () => console.log(`listening ${server.address().port}`));
