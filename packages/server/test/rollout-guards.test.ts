import type { ReleaseManifest } from '@flotilla/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/index.js';
import { connectFleet, SimDevice, testImage, uploadRelease } from './fleet.js';
import { auth, cleanupDirs, endClients, startTestServer, stateMessage, waitFor } from './helpers.js';

// What POST /rollouts refuses (downgrades, security floors, recovery releases) and what a device
// can no longer do to its own deployment record (turn a failure into success).

let server: RunningServer;
let fleet: SimDevice[] = [];
let v1: Awaited<ReturnType<typeof uploadRelease>>;
let v2: Awaited<ReturnType<typeof uploadRelease>>;

beforeAll(async () => {
  server = await startTestServer();
  v1 = await uploadRelease(server, '1.0.0', testImage(0, 256 * 1024));
  v2 = await uploadRelease(server, '1.1.0', testImage(1, 256 * 1024));
  // Devices 0-2 already run 1.1.0; device 3 still runs 1.0.0.
  fleet = [
    ...SimDevice.fleet('TEST-ONLY-guard', 3, '1.1.0', v2.image.sha256),
    SimDevice.create('TEST-ONLY-guard-3', '1.0.0', v1.image.sha256),
  ];
  await connectFleet(server, fleet);
}, 60_000);
afterAll(async () => {
  await endClients(fleet.map((d) => d.client));
  await server.close();
  cleanupDirs();
});

const create = (payload: object) =>
  server.app.inject({ method: 'POST', url: '/api/v1/rollouts', headers: auth(), payload });
const rolloutCount = async () => (await server.ctx.store.rollouts.list(1000, 0)).length;

describe('POST /rollouts refuses downgrades and recovery releases', () => {
  it('refuses a rollout of 1.0.0 onto devices running 1.1.0 (a downgrade rolled out unchecked)', async () => {
    const before = await rolloutCount();
    const res = await create({ release: '1.0.0', policy: { phases: [{}] } });
    expect(res.statusCode, res.body).toBe(409);
    expect(res.json().error.code).toBe('FLOTILLA_ERR_SERVER_ROLLOUT_DOWNGRADE');
    expect(res.json().error.message).toMatch(/TEST-ONLY-guard-0 \(1\.1\.0\)/);
    expect(await rolloutCount()).toBe(before);
  });

  it('refuses allowDowngrade without a reason', async () => {
    const res = await create({ release: '1.0.0', policy: { phases: [{}], allowDowngrade: {} } });
    expect(res.statusCode, res.body).toBe(400);
  });

  it('never below a device security floor, even with allowDowngrade', async () => {
    const id = 'TEST-ONLY-guard-2';
    await server.ctx.store.devices.applyState(
      id,
      stateMessage(1000, { version: '1.1.0', imageSha256: v2.image.sha256, securityVersion: 2 }),
      Date.now(),
    );
    const res = await create({
      release: '1.0.0',
      policy: { target: { devices: [id] }, phases: [{}], allowDowngrade: { reason: 'TEST-ONLY' } },
    });
    expect(res.statusCode, res.body).toBe(409);
    expect(res.json().error.code).toBe('FLOTILLA_ERR_SERVER_ROLLOUT_SECURITY_FLOOR');
  });

  it('takes devices down only with allowDowngrade and a reason, which is audited', async () => {
    const res = await create({
      release: '1.0.0',
      policy: {
        target: { devices: ['TEST-ONLY-guard-0', 'TEST-ONLY-guard-1'] },
        phases: [{}],
        allowDowngrade: { reason: 'TEST-ONLY 1.1.0 drops the modem' },
      },
    });
    expect(res.statusCode, res.body).toBe(201);
    const id = res.json().id as string;
    const audit = await server.ctx.store.audit.list(Number.MAX_SAFE_INTEGER, 50);
    expect(audit.find((e) => e.action === 'rollout.allow-downgrade' && e.target === id)).toMatchObject({
      actor: expect.any(String),
      detail: { release: '1.0.0', reason: 'TEST-ONLY 1.1.0 drops the modem', devices: 2 },
    });
    await server.app.inject({
      method: 'POST',
      url: `/api/v1/rollouts/${id}/abort`,
      headers: auth(),
      payload: {},
    });
  });

  it('refuses to roll out a recovery-kind release (every device would refuse it)', async () => {
    const base = (await server.ctx.store.releases.get('1.1.0'))!;
    const manifest = {
      ...(base.manifest.signed as ReleaseManifest),
      kind: 'recovery',
      version: '1.2.0',
    } as ReleaseManifest;
    await server.ctx.store.releases.insert(manifest, { ...base.manifest, signed: manifest }, Date.now());
    const res = await create({ release: '1.2.0', policy: { phases: [{}] } });
    expect(res.statusCode, res.body).toBe(422);
    expect(res.json().error.code).toBe('FLOTILLA_ERR_SERVER_ROLLOUT_RECOVERY');
  });
});

describe('a device cannot turn its own failure into success', () => {
  it('keeps failed after a later healthy, and the static rollout ends failed, not healthy', async () => {
    const device = fleet[3]!;
    const res = await create({
      release: '1.1.0',
      policy: { target: { devices: [device.id] }, phases: [{ errorThreshold: 100 }] },
    });
    expect(res.statusCode, res.body).toBe(201);
    const rolloutId = res.json().id as string;
    const offer = await device.nextOffer(20_000);
    const dep = offer.offer.signed.deploymentId;
    await device.event('failed', dep, { reason: { code: 'TEST', message: 'TEST-ONLY disk full' } });
    await device.event('healthy', dep, { version: '1.1.0' });
    await waitFor(
      async () =>
        (await server.ctx.store.events.timeline(device.id, Number.MAX_SAFE_INTEGER, 10)).some(
          (e) => e.kind === 'healthy',
        ),
      10_000,
      'the healthy event stored',
    );
    expect((await server.ctx.store.deployments.find(rolloutId, device.id))?.state).toBe('failed');
    await waitFor(
      async () => (await server.ctx.store.rollouts.get(rolloutId))?.status === 'failed',
      10_000,
      'rollout failed',
    );
    const summary = (
      await server.app.inject({ method: 'GET', url: `/api/v1/rollouts/${rolloutId}`, headers: auth() })
    ).json().summary;
    expect(summary.totals).toMatchObject({ healthy: 0, failed: 1 });
    expect(summary.failure).toMatchObject({ phase: 0, healthy: 0, total: 1 });
  });
});
