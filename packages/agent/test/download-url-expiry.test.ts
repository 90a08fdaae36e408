import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HttpFetcher } from '../src/index.js';
import { FAST_LIMITS, makeImage, Rig, sha } from './helpers.js';

/**
 * A loopback server that behaves like the Flotilla server's signed URLs: paths under /g1/ are the
 * first offer's URLs and expire after the first request (the coded 403 with
 * FLOTILLA_ERR_SERVER_URL_EXPIRED); /g2/ are the refreshed offer's URLs.
 */
let server: http.Server;
let base: string;
let image: Buffer;
let requests: { path: string; range: string | undefined }[];

beforeEach(async () => {
  requests = [];
  server = http.createServer((req, res) => {
    requests.push({ path: req.url ?? '', range: req.headers.range });
    if (req.url?.startsWith('/g1/') && requests.length > 1) {
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          error: { code: 'FLOTILLA_ERR_SERVER_URL_EXPIRED', message: 'signed artifact URL has expired' },
        }),
      );
      return;
    }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const part = image.subarray(start);
    res.writeHead(m ? 206 : 200, {
      'content-length': part.length,
      ...(m ? { 'content-range': `bytes ${start}-${image.length - 1}/${image.length}` } : {}),
    });
    // The first response is cut half-way: the download must resume, not restart.
    if (requests.length === 1) res.write(part.subarray(0, part.length >> 1), () => res.socket?.destroy());
    else res.end(part);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterEach(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

describe('signed download URL expiring mid-download', () => {
  let rig: Rig;
  afterEach(async () => rig?.cleanup());

  it('asks for a fresh offer when the URL expired (offer-refresh) and resumes the Range download from where it was', async () => {
    rig = await Rig.create({ fetcher: new HttpFetcher() });
    image = makeImage(41, rig.factory.length);
    await rig.powerOn();
    rig.send(rig.offer(image, { version: '1.1.0', baseUrl: `${base}/g1` }));
    // The "server": answers the device's offer-refresh with a fresh offer of the same deployment.
    let refreshed = false;
    const answer = (async () => {
      for (let i = 0; i < 600 && !refreshed; i++) {
        if (rig.hub.events('dev-1').some((e) => e.kind === 'offer-refresh')) {
          refreshed = true;
          rig.send(rig.offer(image, { version: '1.1.0', baseUrl: `${base}/g2` }));
        } else await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await rig.runToRest();
    await answer;
    expect(refreshed).toBe(true);
    expect(rig.agent!.record.committedSlot).toBe('B');
    expect(sha(await rig.slotBytes('B', image.length))).toBe(sha(image));
    // 1: cut half-way; 2: expired (403); 3: fresh URL, resumed from the verified bytes, not from 0.
    expect(requests.map((r) => r.path.split('/')[1])).toEqual(['g1', 'g1', 'g2']);
    expect(requests[1]!.range).toBeDefined();
    expect(requests[2]!.range).toBe(requests[1]!.range);
  });

  it('ends with FLOTILLA_ERR_AGENT_URL_EXPIRED when no fresh offer comes (bounded wait)', async () => {
    rig = await Rig.create({
      fetcher: new HttpFetcher(),
      config: { limits: { ...FAST_LIMITS, download: { ...FAST_LIMITS.download, urlRefreshTimeoutMs: 200 } } },
    });
    image = makeImage(42, rig.factory.length);
    await rig.powerOn();
    rig.send(rig.offer(image, { version: '1.1.0', baseUrl: `${base}/g1` }));
    await rig.runToRest();
    await rig.agent!.flushReports();
    expect(rig.told()).toContain('failed:FLOTILLA_ERR_AGENT_URL_EXPIRED');
    expect(rig.agent!.record.committedSlot).toBe('A');
  });
});
