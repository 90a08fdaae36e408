// One guest connection (QEMU user networking, `guestfwd=...-cmd:`): QEMU runs this once per TCP
// connection the guest opens to the forwarded address; stdin/stdout is that connection, piped to
// the server on the host's loopback. Usage: node guestfwd-pipe.mjs PORT
import { connect } from 'node:net';

const port = Number(process.argv[2]);
const socket = connect({ host: '127.0.0.1', port });
process.stdin.pipe(socket);
socket.pipe(process.stdout);
const end = () => process.exit(0);
socket.on('close', end);
socket.on('error', end);
process.stdin.on('end', () => socket.end());
