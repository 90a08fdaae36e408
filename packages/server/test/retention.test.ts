import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type FlotillaServer } from '../src/index.js';
import { testImage, uploadRelease } from './fleet.js';
import { auth, cleanupDirs, silent, TEST_ADMIN, tempDir, testDevice } from './helpers.js';

let server: FlotillaServer;
const sha: Record<string, string> = {};

beforeAll(async () => {
  server = await createServer({ dataDir: tempDir(), logger: silent, adminToken: TEST_ADMIN });
  for (const [i, v] of ['1.0.0', '1.1.0', '1.2.0', '1.3.0', '1.4.0'].entries())
    sha[v] = (await uploadRelease(server, v, testImage(i, 256 * 1024))).image.sha256;
  // A device still runs 1.0.0; an unfinished rollout targets 1.2.0.
  const d = testDevice('TEST-ONLY-ret-1');
  server.ctx.store.devices.insert({
    id: d.id,
    publicKey: d.publicKeyHex,
    status: 'accepted',
    hardware: 'TEST-ONLY-board',
    now: 1,
  });
  server.ctx.store.db
    .prepare('UPDATE devices SET version = ?, image_sha256 = ? WHERE id = ?')
    .run('1.0.0', sha['1.0.0'], d.id);
  server.ctx.rollouts.create(
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
    expect(server.ctx.store.releases.list()).toHaveLength(5);

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
    expect(
      server.ctx.store.releases
        .list()
        .map((r) => r.version)
        .sort(),
    ).toEqual(['1.0.0', '1.2.0', '1.4.0']);
    expect(server.ctx.artifacts.has(sha['1.1.0']!)).toBe(false);
    expect(server.ctx.artifacts.has(sha['1.0.0']!)).toBe(true);
    const gone = await server.app.inject({ method: 'GET', url: `/api/v1/artifacts/${sha['1.3.0']}` });
    expect(gone.statusCode).toBe(404);
    expect(
      server.ctx.store.audit.list(Number.MAX_SAFE_INTEGER, 100).some((e) => e.action === 'retention.prune'),
    ).toBe(true);
  });
});
