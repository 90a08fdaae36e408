import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy } from '../src/net-proxy.js';

const BODY = Buffer.alloc(300 * 1024, 7);
let server: Server;
let port: number;

beforeAll(async () => {
  server = createServer((_req, res) => {
    res.setHeader('content-length', BODY.length);
    res.end(BODY);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

async function get(p: number): Promise<Buffer> {
  const res = await fetch(`http://127.0.0.1:${p}/x`, { signal: AbortSignal.timeout(10_000) });
  return Buffer.from(await res.arrayBuffer());
}

describe('fault proxy', () => {
  it('forwards bytes unchanged when no fault is set and counts them', async () => {
    const proxy = await startFaultProxy({ upstreamHost: '127.0.0.1', upstreamPort: port });
    try {
      const body = await get(proxy.port);
      expect(body.equals(BODY)).toBe(true);
      expect(proxy.stats.bytesToDevice).toBeGreaterThanOrEqual(BODY.length);
    } finally {
      await proxy.close();
    }
  });

  it('cuts a download after the configured number of bytes', async () => {
    const proxy = await startFaultProxy({
      upstreamHost: '127.0.0.1',
      upstreamPort: port,
      faults: { dropShare: 1, dropAfterBytes: 50_000 },
    });
    try {
      await expect(get(proxy.port)).rejects.toThrow();
      expect(proxy.stats.cut).toBe(1);
      expect(proxy.stats.bytesToDevice).toBe(50_000);
    } finally {
      await proxy.close();
    }
  });

  it('refuses every connection during a blackout and serves again after it', async () => {
    const proxy = await startFaultProxy({ upstreamHost: '127.0.0.1', upstreamPort: port });
    try {
      proxy.blackout(true);
      await expect(get(proxy.port)).rejects.toThrow();
      expect(proxy.stats.refused).toBe(1);
      proxy.blackout(false);
      expect((await get(proxy.port)).length).toBe(BODY.length);
    } finally {
      await proxy.close();
    }
  });

  it('delivers every byte through a bandwidth cap and latency', async () => {
    const proxy = await startFaultProxy({
      upstreamHost: '127.0.0.1',
      upstreamPort: port,
      faults: { bytesPerSecond: 4 * 1024 * 1024, latencyMs: 2 },
    });
    try {
      expect((await get(proxy.port)).equals(BODY)).toBe(true);
    } finally {
      await proxy.close();
    }
  });
});
