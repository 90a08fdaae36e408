import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { download } from '../src/download/downloader.js';
import { AGENT_LIMITS, HttpFetcher, systemClock } from '../src/index.js';
import { ChunkWriter } from '../src/install/chunk-writer.js';
import { MemorySlotDevice } from '../src/testing.js';
import { FAST_LIMITS, makeImage, manifestFor, Rig, sha } from './helpers.js';

/** A real HTTP server on loopback whose behaviour each test scripts per request. */
type Behaviour = (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void;

let server: http.Server;
let base: string;
let behave: Behaviour;
let requests: { range: string | undefined }[];

beforeEach(async () => {
  requests = [];
  server = http.createServer((req, res) => {
    requests.push({ range: req.headers.range });
    behave(req, res, requests.length);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterEach(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

/** Serves `body` with Range support; `cutAfter` ends the socket after that many bytes of the body. */
function serve(res: http.ServerResponse, req: http.IncomingMessage, body: Buffer, cutAfter?: number) {
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const start = m ? Number(m[1]) : 0;
  const part = body.subarray(start);
  res.writeHead(m ? 206 : 200, {
    'content-length': part.length,
    ...(m ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
  });
  if (cutAfter === undefined) return res.end(part);
  res.write(part.subarray(0, cutAfter), () => res.socket?.destroy());
}

const limits = { ...AGENT_LIMITS.download, ...FAST_LIMITS.download } as typeof AGENT_LIMITS.download;

async function fetchInto(image: Buffer, url: string, l = limits) {
  const m = manifestFor(image, { version: '1.0.0' });
  const slot = new MemorySlotDevice('B', image.length);
  const w = await slot.openWrite();
  const cw = new ChunkWriter(w, m.image, 0, { everyBytes: 1 << 30, save: async () => undefined });
  await download({
    fetcher: new HttpFetcher(),
    clock: systemClock,
    url,
    offset: 0,
    size: image.length,
    sink: cw,
    limits: l,
    signal: new AbortController().signal,
  });
  await cw.finish();
  return slot.bytes;
}

describe('HTTP download', () => {
  it('resumes with a Range request where a cut connection stopped, instead of restarting', async () => {
    const image = makeImage(3, 256 * 1024);
    behave = (req, res, n) => serve(res, req, image, n === 1 ? 100_000 : undefined);
    const got = await fetchInto(image, `${base}/img`);
    expect(sha(got)).toBe(sha(image));
    // 100 000 bytes arrived: 24 whole 4 KiB chunks were verified and written; resume from there.
    expect(requests.map((r) => r.range)).toEqual([undefined, `bytes=${24 * 4096}-`]);
  });

  it('retries server errors with backoff, then succeeds', async () => {
    const image = makeImage(4, 64 * 1024);
    behave = (req, res, n) => {
      if (n <= 2) {
        res.writeHead(503).end();
        return;
      }
      serve(res, req, image);
    };
    expect(sha(await fetchInto(image, `${base}/img`))).toBe(sha(image));
    expect(requests).toHaveLength(3);
  });

  it('gives up after the bounded number of retries (FLOTILLA_ERR_AGENT_DOWNLOAD_FAILED)', async () => {
    const image = makeImage(4, 64 * 1024);
    behave = (_req, res) => {
      res.socket?.destroy();
    };
    await expect(fetchInto(image, `${base}/img`)).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_AGENT_DOWNLOAD_FAILED',
    });
    expect(requests).toHaveLength(limits.maxRetries + 1);
  });

  it('does not retry a 404 (FLOTILLA_ERR_AGENT_DOWNLOAD_HTTP)', async () => {
    behave = (_req, res) => res.writeHead(404).end();
    await expect(fetchInto(makeImage(1, 8192), `${base}/img`)).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_AGENT_DOWNLOAD_HTTP',
    });
    expect(requests).toHaveLength(1);
  });

  it('refuses a response that announces more bytes than signed, before reading it (FLOTILLA_ERR_AGENT_DOWNLOAD_TOO_LARGE)', async () => {
    const image = makeImage(5, 64 * 1024);
    behave = (req, res) => serve(res, req, Buffer.concat([image, Buffer.alloc(4096)]));
    await expect(fetchInto(image, `${base}/img`)).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_AGENT_DOWNLOAD_TOO_LARGE',
    });
    expect(requests).toHaveLength(1);
  });

  it('refuses extra bytes sent without a length (chunked endless data)', async () => {
    const image = makeImage(5, 64 * 1024);
    behave = (_req, res) => {
      res.writeHead(200); // no content-length: chunked
      res.write(image);
      res.end(Buffer.alloc(10_000));
    };
    await expect(fetchInto(image, `${base}/img`)).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_AGENT_DOWNLOAD_TOO_LARGE',
    });
  });
});

describe('slow-drip attack over real HTTP, end to end', () => {
  let rig: Rig;
  afterEach(async () => rig?.cleanup());

  it('aborts a download that stays under the minimum rate (FLOTILLA_ERR_AGENT_DOWNLOAD_TOO_SLOW), active slot untouched', async () => {
    rig = await Rig.create({
      fetcher: new HttpFetcher(),
      config: {
        limits: {
          ...FAST_LIMITS,
          download: {
            ...limits,
            maxRetries: 1,
            maxAttempts: 2,
            minBytesPerSecond: 256 * 1024,
            rateWindowMs: 150,
          },
        },
      },
    });
    const next = makeImage(8, rig.factory.length);
    const timers = new Set<NodeJS.Timeout>();
    behave = (_req, res) => {
      res.writeHead(200, { 'content-length': next.length });
      let at = 0;
      const t = setInterval(() => {
        if (at >= next.length || res.destroyed) return clearInterval(t);
        res.write(next.subarray(at, at + 64));
        at += 64;
      }, 10);
      timers.add(t);
      res.on('close', () => clearInterval(t));
    };
    await rig.powerOn();
    rig.send(rig.offer(next, { version: '1.1.0', baseUrl: base }));
    await rig.runToRest();
    await rig.agent!.flushReports();
    for (const t of timers) clearInterval(t);
    expect(rig.told()).toEqual(['offer-accepted', 'failed:FLOTILLA_ERR_AGENT_DOWNLOAD_TOO_SLOW']);
    expect(requests).toHaveLength(2);
    expect(sha(await rig.slotBytes('A', rig.factory.length))).toBe(sha(rig.factory));
    expect(rig.agent!.record.committedSlot).toBe('A');
  });

  it('installs a full image over real HTTP end to end', async () => {
    rig = await Rig.create({ fetcher: new HttpFetcher() });
    const next = makeImage(8, rig.factory.length);
    behave = (req, res) => serve(res, req, next);
    await rig.powerOn();
    rig.send(rig.offer(next, { version: '1.1.0', baseUrl: base }));
    await rig.runToRest();
    expect(rig.agent!.record.committedSlot).toBe('B');
    expect(sha(await rig.slotBytes('B', next.length))).toBe(sha(next));
  });
});
