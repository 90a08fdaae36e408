import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { prepareWorld, type SimServer, type WorldBase } from '@flotilla/fleet-simulator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCEL_PREFIX, type Nginx, serverBehindNginx } from './nginx.js';

/**
 * Artifacts behind nginx: the shipped deploy/nginx/flotilla-artifacts.conf in a real nginx, in
 * front of a real server (`artifactBaseUrl` + `artifactAccelRedirect`). Every download is
 * authorised by the server; nginx sends the bytes. Refusals come back as the server's coded 403s.
 */
let base: WorldBase;
let sim: SimServer;
let nginx: Nginx;
let image: { sha256: string; bytes: Buffer };
let other: { sha256: string };

beforeAll(async () => {
  base = await prepareWorld({
    size: 'light',
    server: async (x) => {
      ({ sim, nginx } = await serverBehindNginx(x));
      return sim;
    },
  });
  await base.publish('1.1.0');
  const v1 = base.firmware.releases.get('1.0.0')!;
  image = { sha256: v1.image.sha256, bytes: readFileSync(v1.imagePath) };
  other = { sha256: base.firmware.releases.get('1.1.0')!.image.sha256 };
}, 120_000);
afterAll(async () => base?.close());

const path = (sha256: string) => `/api/v1/artifacts/${sha256}`;
/** A URL signed exactly as an offer signs it, for `aud`, expiring at `expiresAt`. */
function signed(sha256: string, aud = 'TEST-ONLY-dev-1', expiresAt = Date.now() + 60_000): string {
  return `${nginx.url}${path(sha256)}?${sim.running.ctx.urlSigner.sign(path(sha256), sha256, aud, expiresAt)}`;
}
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
async function counter(name: 'artifactBytes' | 'artifactRedirects'): Promise<number> {
  const got = await sim.running.ctx.metrics[name].get();
  return got.values.find((v) => v.labels.kind === 'full')?.value ?? 0;
}
async function errorCode(res: Response): Promise<string | undefined> {
  return ((await res.json()) as { error?: { code?: string } }).error?.code;
}

describe('artifacts behind nginx', () => {
  it('serves a device its image through nginx on a signed URL, the bytes sent by nginx and not the server', async () => {
    const [bytesBefore, redirectsBefore] = [
      await counter('artifactBytes'),
      await counter('artifactRedirects'),
    ];
    const res = await fetch(signed(image.sha256, 'TEST-ONLY-dev-1'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect(res.headers.get('cache-control')).toBe('private, max-age=31536000, immutable');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('x-accel-redirect')).toBeNull();
    const body = Buffer.from(await res.arrayBuffer());
    expect(sha(body)).toBe(image.sha256);
    expect(await counter('artifactBytes')).toBe(bytesBefore);
    expect(await counter('artifactRedirects')).toBe(redirectsBefore + 1);
    const line = nginx.accessLog().at(-1)!;
    expect(line).toMatchObject({
      uri: `${ACCEL_PREFIX}${image.sha256.slice(0, 2)}/${image.sha256}`,
      status: 200,
      bytes: image.bytes.length,
      serverStatus: '200',
      aud: 'TEST-ONLY-dev-1',
    });
  });

  it('answers a Range request through nginx with 206 and exactly the bytes asked for', async () => {
    const res = await fetch(signed(image.sha256), { headers: { range: 'bytes=1000-4999' } });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe(`bytes 1000-4999/${image.bytes.length}`);
    expect(Buffer.from(await res.arrayBuffer()).equals(image.bytes.subarray(1000, 5000))).toBe(true);
    const open = await fetch(signed(image.sha256), { headers: { range: 'bytes=4096-' } });
    expect(open.status).toBe(206);
    expect(Buffer.from(await open.arrayBuffer()).equals(image.bytes.subarray(4096))).toBe(true);
  });

  it("refuses an expired URL with the server's coded 403 FLOTILLA_ERR_SERVER_URL_EXPIRED (the agent's cue to refresh)", async () => {
    const res = await fetch(signed(image.sha256, 'TEST-ONLY-dev-1', Date.now() - 1000), {
      headers: { range: 'bytes=4096-' },
    });
    expect(res.status).toBe(403);
    expect(await errorCode(res)).toBe('FLOTILLA_ERR_SERVER_URL_EXPIRED');
    expect(nginx.accessLog().at(-1)).toMatchObject({
      uri: path(image.sha256),
      status: 403,
      serverStatus: '403',
    });
  });

  it('refuses a forged signature with 403 FLOTILLA_ERR_SERVER_URL_SIGNATURE', async () => {
    const url = new URL(signed(image.sha256));
    const sig = url.searchParams.get('sig')!;
    url.searchParams.set('sig', `${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`);
    const res = await fetch(url);
    expect(res.status).toBe(403);
    expect(await errorCode(res)).toBe('FLOTILLA_ERR_SERVER_URL_SIGNATURE');
  });

  it("refuses a URL signed for another artifact (or another device's expiry) with 403", async () => {
    const forOther = new URL(signed(other.sha256));
    const res = await fetch(`${nginx.url}${path(image.sha256)}${forOther.search}`);
    expect(res.status).toBe(403);
    expect(await errorCode(res)).toBe('FLOTILLA_ERR_SERVER_URL_SIGNATURE');
    // The audience and expiry are signed too: a longer life or another device's name breaks it.
    const url = new URL(signed(image.sha256, 'TEST-ONLY-dev-1'));
    url.searchParams.set('aud', 'TEST-ONLY-dev-2');
    expect((await fetch(url)).status).toBe(403);
  });

  it('refuses a request for the internal store location from outside (404), whatever headers it sends', async () => {
    const internal = `${nginx.url}${ACCEL_PREFIX}${image.sha256.slice(0, 2)}/${image.sha256}`;
    expect((await fetch(internal)).status).toBe(404);
    expect((await fetch(`${nginx.url}/api/v1/releases`)).status).toBe(404);
    // A client's own X-Flotilla-Accel header earns nothing without a credential.
    const direct = await fetch(`${sim.apiUrl}${path(image.sha256)}`, {
      headers: { 'x-flotilla-accel': '1' },
    });
    expect(direct.status).toBe(401);
    expect(direct.headers.get('x-accel-redirect')).toBeNull();
  });

  it('refuses an unsatisfiable Range with the server’s 416 and any method but GET/HEAD with 403', async () => {
    const res = await fetch(signed(image.sha256), { headers: { range: `bytes=${image.bytes.length}-` } });
    expect(res.status).toBe(416);
    expect(await errorCode(res)).toBe('FLOTILLA_ERR_SERVER_RANGE');
    expect((await fetch(signed(image.sha256), { method: 'DELETE' })).status).toBe(403);
    const head = await fetch(signed(image.sha256), { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(image.bytes.length));
  });

  it('lets an operator API token download through nginx, and straight from the server (which then streams it itself)', async () => {
    const headers = { authorization: `Bearer ${sim.token}` };
    const via = await fetch(`${nginx.url}${path(image.sha256)}`, { headers });
    expect(via.status).toBe(200);
    expect(sha(Buffer.from(await via.arrayBuffer()))).toBe(image.sha256);
    expect((await fetch(`${nginx.url}${path(image.sha256)}`)).status).toBe(401);

    const bytesBefore = await counter('artifactBytes');
    const direct = await fetch(`${sim.apiUrl}${path(image.sha256)}`, { headers });
    expect(direct.status).toBe(200);
    expect(direct.headers.get('x-accel-redirect')).toBeNull();
    expect(sha(Buffer.from(await direct.arrayBuffer()))).toBe(image.sha256);
    expect(await counter('artifactBytes')).toBe(bytesBefore + image.bytes.length);
  });
});
