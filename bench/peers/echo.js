// bench/peers/echo.js - a Node.js echo server for the side-by-side benchmark.
//
// One event loop; net.Socket.pipe() to itself gives flow control (a client
// that does not read stops being read).  With a second port, a dgram echo
// too.  Addresses are numeric: Node resolves nothing for an IP literal.
//
//   node echo.js TCP_PORT [UDP_PORT]
'use strict';
const net = require('net');
const dgram = require('dgram');

const port = Number(process.argv[2]);
const udpPort = Number(process.argv[3] || 0);

const server = net.createServer((sock) => {
  sock.setNoDelay(true);
  sock.on('error', () => sock.destroy());
  sock.pipe(sock);
});
server.listen({ port, host: '127.0.0.1', backlog: 4096 }, () => {
  console.error(`node: listening on tcp 127.0.0.1:${port}`);
});

if (udpPort) {
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg, rinfo) => udp.send(msg, rinfo.port, rinfo.address));
  udp.bind(udpPort, '127.0.0.1');
}
