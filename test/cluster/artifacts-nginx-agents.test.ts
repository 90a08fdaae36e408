import type { SimServer, World } from '@flotilla/fleet-simulator';
import { afterEach, describe, expect, it } from 'vitest';
import { rollOut, smallWorld } from '../e2e/helpers.js';
import { ACCEL_PREFIX, type Nginx, serverBehindNginx } from './nginx.js';

const URL_TTL_MS = 60_000;
const CUT = 'cut-after-url-expiry';

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

describe('real agents download through nginx', () => {
  it('updates a fleet with every artifact byte sent by nginx; a download cut after its URL expired resumes with Range on a fresh offer URL', async () => {
    let sim: SimServer | undefined;
    let nginx: Nginx | undefined;
    // The server's clock: moved past the first URLs' expiry mid-download, as a slow download would.
    let skewMs = 0;
    world = await smallWorld(
      3,
      // One device downloads through a throttled proxy, so its download is still running when cut.
      [{ name: CUT, devices: ['sim-0001'], network: { bytesPerSecond: 64 * 1024 } }],
      7,
      async (x) => {
        ({ sim, nginx } = await serverBehindNginx(x, {
          clock: () => Date.now() + skewMs,
          limits: { artifactUrlTtlMs: URL_TTL_MS },
        }));
        return sim;
      },
    );
    const proxy = world.fleet.proxies.get(CUT)!.http!;
    const { view } = await rollOut(world, { deviceTimeoutSeconds: 900 }, async () => {
      for (let i = 0; proxy.stats.bytesToDevice < 32 * 1024; i++) {
        if (i > 1200) throw new Error('sim-0001 never started its download');
        await new Promise((r) => setTimeout(r, 50));
      }
      // Every URL signed so far is now expired for the server; the connection drops mid-body.
      skewMs = URL_TTL_MS + 1000;
      proxy.setFaults({});
      proxy.cutAll();
    });
    expect(view.status).toBe('completed');
    expect(world.fleet.versions().get('1.1.0')).toBe(3);

    // nginx sent every artifact byte; the server only authorised.
    const ctx = sim!.running.ctx;
    const served = (await ctx.metrics.artifactBytes.get()).values.reduce((n, v) => n + v.value, 0);
    const redirects = (await ctx.metrics.artifactRedirects.get()).values.reduce((n, v) => n + v.value, 0);
    expect(served).toBe(0);
    expect(redirects).toBeGreaterThanOrEqual(4);

    // The cut device: first URL authorised (200 from the server, file from nginx), then the same
    // URL expired (403) at byte N, then the fresh offer's URL resumed from byte N (206).
    const lines = nginx!.accessLog().filter((l) => l.aud === 'sim-0001');
    const refused = lines.findIndex((l) => l.status === 403);
    expect(refused, JSON.stringify(lines)).toBeGreaterThan(0);
    const [first, resumed] = [lines[0]!, lines[refused + 1]!];
    expect(first).toMatchObject({ serverStatus: '200', range: '-' });
    expect(first.uri.startsWith(ACCEL_PREFIX)).toBe(true);
    expect(lines[refused]!.range).toMatch(/^bytes=[1-9]\d*-$/);
    expect(resumed).toMatchObject({ status: 206, serverStatus: '200', range: lines[refused]!.range });
    expect(resumed.uri).toBe(first.uri);
    const events = await ctx.store.events.timeline('sim-0001', Number.MAX_SAFE_INTEGER, 1000);
    expect(events.map((e) => e.kind)).toContain('offer-refresh');
  }, 300_000);
});
