import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { acceptProxied } from '../src/mqtt/proxy-protocol.js';

let server: Server | null = null;
afterEach(() => {
  server?.close();
  server = null;
});

/** A real TCP listener behind acceptProxied: what the handed-on socket says and reads, or that it was closed. */
async function send(chunks: (string | Buffer)[]): Promise<{ address: string; bytes: string } | 'closed'> {
  let settle: (v: { address: string; bytes: string } | 'closed') => void = () => undefined;
  const result = new Promise<{ address: string; bytes: string } | 'closed'>((r) => {
    settle = r;
  });
  server = createServer((s) => {
    s.once('close', () => settle('closed'));
    acceptProxied(s, (p: Socket) => {
      let bytes = '';
      p.on('data', (d: Buffer) => {
        bytes += d.toString('latin1');
        if (bytes.endsWith('END')) settle({ address: p.remoteAddress ?? '', bytes });
      });
    });
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  const c = connect({ port, host: '127.0.0.1' });
  c.on('error', () => undefined);
  await new Promise<void>((r) => c.once('connect', () => r()));
  for (const chunk of chunks) {
    c.write(chunk);
    // Separate TCP segments: the header may arrive in pieces.
    await new Promise((r) => setImmediate(r));
  }
  const r = await result;
  c.destroy();
  return r;
}

describe('PROXY protocol v1 on the MQTT port', () => {
  it('gives the socket the address in the header and hands on the bytes after it intact', async () => {
    const r = await send(['PROXY TCP4 192.0.2.7 127.0.0.1 40000 1883\r\n\x10\x00MQTT-END']);
    expect(r).toEqual({ address: '192.0.2.7', bytes: '\x10\x00MQTT-END' });
  });

  it('reads a header that arrives in pieces, IPv6 too', async () => {
    const r = await send(['PROXY TCP6 2001:db8::5 ', '::1 40000 1883\r', '\n\x10rest-END']);
    expect(r).toEqual({ address: '2001:db8::5', bytes: '\x10rest-END' });
  });

  it('keeps the socket address for PROXY UNKNOWN (a health check)', async () => {
    const r = await send(['PROXY UNKNOWN\r\nEND']);
    expect(r).toEqual({ address: '127.0.0.1', bytes: 'END' });
  });

  it('closes a connection that starts with MQTT instead of the header', async () => {
    expect(await send([Buffer.from([0x10, 0x0c, 0x00, 0x04]), 'MQTT\r\nEND'])).toBe('closed');
  });

  it('closes a connection whose first line is longer than the protocol allows', async () => {
    expect(await send([`PROXY TCP4 ${'1'.repeat(120)}`])).toBe('closed');
  });
});
