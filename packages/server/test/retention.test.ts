import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type FlotillaServer } from '../src/index.js';
import type { Timers } from '../src/retention/retention.js';
import { testImage, uploadRelease } from './fleet.js';
import {
  auth,
  cleanupDirs,
  silent,
  startTestServer,
  TEST_ADMIN,
  tempDir,
  testDevice,
  waitFor,
} from './helpers.js';

let server: FlotillaServer;
const sha: Record<string, string> = {};

beforeAll(async () => {
  server = await createServer({ dataDir: tempDir(), devKeys: true, logger: silent, adminToken: TEST_ADMIN });
  for (const [i, v] of ['1.0.0', '1.1.0', '1.2.0', '1.3.0', '1.4.0'].entries())
    sha[v] = (await uploadRelease(server, v, testImage(i, 256 * 1024))).image.sha256;
  // A device still runs 1.0.0; an unfinished rollout targets 1.2.0.
  const d = testDevice('TEST-ONLY-ret-1');
  await server.ctx.store.devices.insert({
    id: d.id,
    publicKey: d.publicKeyHex,
    status: 'accepted',
    hardware: 'TEST-ONLY-board',
    now: 1,
  });
  await server.ctx.store.sql.run('UPDATE devices SET version = ?, image_sha256 = ? WHERE id = ?', [
    '1.0.0',
    sha['1.0.0']!,
    d.id,
  ]);
  await server.ctx.rollouts.create(
    { release: '1.2.0', policy: { target: {}, phases: [{ percent: 100 }] } },
    'test',
  );
});
afterAll(async () => {
  await server.close();
  cleanupDirs();
});

describe('retention', () => {
  it('keeps what devices run, what rollouts need and the newest per channel; prunes the rest with its files', async () => {
    const dry = await server.app.inject({
      method: 'POST',
      url: '/api/v1/retention/prune',
      headers: auth(),
      payload: { keepPerChannel: 1, dryRun: true },
    });
    expect(dry.json().releases).toEqual(['1.3.0', '1.1.0']);
    expect(await server.ctx.store.releases.list()).toHaveLength(5);

    const res = await server.app.inject({
      method: 'POST',
      url: '/api/v1/retention/prune',
      headers: auth(),
      payload: { keepPerChannel: 1 },
    });
    const body = res.json();
    expect(body.releases.sort()).toEqual(['1.1.0', '1.3.0']);
    const why = Object.fromEntries(
      body.kept.map((k: { release: string; why: string[] }) => [k.release, k.why]),
    );
    expect(why['1.0.0']).toContain('running on devices');
    expect(why['1.2.0']).toContain('unfinished rollout');
    expect(why['1.4.0']).toContain('newest in dev');
    expect((await server.ctx.store.releases.list()).map((r) => r.version).sort()).toEqual([
      '1.0.0',
      '1.2.0',
      '1.4.0',
    ]);
    expect(server.ctx.artifacts.has(sha['1.1.0']!)).toBe(false);
    expect(server.ctx.artifacts.has(sha['1.0.0']!)).toBe(true);
    const gone = await server.app.inject({
      method: 'GET',
      url: `/api/v1/artifacts/${sha['1.3.0']}`,
      headers: auth(),
    });
    expect(gone.statusCode).toBe(404);
    expect(
      (await server.ctx.store.audit.list(Number.MAX_SAFE_INTEGER, 100)).some(
        (e) => e.action === 'retention.prune',
      ),
    ).toBe(true);
  });
});

/** A fake interval: records what was scheduled and fires only when the test says so. */
function fakeTimers() {
  const scheduled: { fn: () => void; ms: number; cleared: boolean; unref: () => void }[] = [];
  const timers: Timers = {
    setInterval(fn, ms) {
      const t = { fn, ms, cleared: false, unref: () => undefined };
      scheduled.push(t);
      return t;
    },
    clearInterval(handle) {
      (handle as { cleared: boolean }).cleared = true;
    },
  };
  return { timers, scheduled };
}

describe('retention on a timer', () => {
  it('prunes like the API call each time the interval fires, audited as the timer, until unscheduled', async () => {
    const s = await createServer({
      dataDir: tempDir(),
      devKeys: true,
      logger: silent,
      adminToken: TEST_ADMIN,
    });
    try {
      for (const [i, v] of ['2.0.0', '2.1.0', '2.2.0'].entries())
        await uploadRelease(s, v, testImage(i, 256 * 1024));
      const { timers, scheduled } = fakeTimers();
      s.ctx.retention.schedule(60_000, { keepPerChannel: 1 }, timers);
      expect(scheduled.map((t) => t.ms)).toEqual([60_000]);
      expect(await s.ctx.store.releases.list()).toHaveLength(3); // nothing happens before the interval
      scheduled[0]!.fn();
      expect((await s.ctx.store.releases.list()).map((r) => r.version)).toEqual(['2.2.0']);
      const entry = (await s.ctx.store.audit.list(Number.MAX_SAFE_INTEGER, 100)).find(
        (e) => e.action === 'retention.prune',
      );
      expect(entry?.actor).toBe('retention-timer');
      s.ctx.retention.unschedule();
      expect(scheduled[0]!.cleared).toBe(true);
    } finally {
      await s.close();
    }
  });

  it('schedules nothing when the interval is 0', async () => {
    const s = await createServer({
      dataDir: tempDir(),
      devKeys: true,
      logger: silent,
      adminToken: TEST_ADMIN,
    });
    try {
      const { timers, scheduled } = fakeTimers();
      s.ctx.retention.schedule(0, { keepPerChannel: 1 }, timers);
      expect(scheduled).toEqual([]);
    } finally {
      await s.close();
    }
  });

  it('runs by itself in a started server when retentionIntervalMs is set', async () => {
    const s = await startTestServer({ limits: { retentionIntervalMs: 50, retentionKeepPerChannel: 1 } });
    try {
      await uploadRelease(s, '3.0.0', testImage(0, 256 * 1024));
      await uploadRelease(s, '3.1.0', testImage(1, 256 * 1024));
      await waitFor(
        async () => (await s.ctx.store.releases.list()).map((r) => r.version).join() === '3.1.0',
        10_000,
        'the timer to prune 3.0.0',
      );
    } finally {
      await s.close();
    }
  });
});
