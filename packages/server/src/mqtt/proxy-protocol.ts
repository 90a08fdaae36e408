import type { Socket } from 'node:net';

/** The longest PROXY protocol v1 line, CRLF included (the specification's bound). */
const MAX_HEADER_BYTES = 107;
/** A load balancer sends the header at once; a connection that does not is closed. */
const HEADER_TIMEOUT_MS = 10_000;
const HEADER = /^PROXY (?:UNKNOWN.*|(TCP4|TCP6) (\S+) (\S+) (\d{1,5}) (\d{1,5}))$/;

/**
 * Behind a TCP load balancer (nginx `stream` with `proxy_protocol on`) every connection comes
 * from the balancer's address; the PROXY protocol v1 line it sends first names the device's. This
 * reads that line, gives the socket the device's address (what the failed-login limit counts) and
 * hands the socket on with the bytes after the line still unread. A connection that does not start
 * with a valid line is destroyed: on a port configured for it, nothing else may connect.
 */
export function acceptProxied(socket: Socket, onReady: (socket: Socket) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  const done = () => {
    clearTimeout(timer);
    socket.off('data', onData);
  };
  const refuse = () => {
    done();
    socket.destroy();
  };
  const timer = setTimeout(refuse, HEADER_TIMEOUT_MS);
  const onData = (chunk: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    const end = buf.indexOf('\r\n');
    if (end < 0) {
      if (buf.length >= MAX_HEADER_BYTES) refuse();
      return;
    }
    if (end + 2 > MAX_HEADER_BYTES) return refuse();
    const m = HEADER.exec(buf.subarray(0, end).toString('latin1'));
    if (!m) return refuse();
    done();
    socket.pause();
    const rest = buf.subarray(end + 2);
    if (rest.length > 0) socket.unshift(rest);
    // UNKNOWN: the balancer's own health check or a non-TCP source; the socket's address stays.
    if (m[2]) Object.defineProperty(socket, 'remoteAddress', { value: m[2], configurable: true });
    onReady(socket);
    socket.resume();
  };
  socket.on('data', onData);
  socket.once('error', done);
  socket.once('close', done);
}
