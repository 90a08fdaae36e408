import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { verifyOffer } from '@flotilla/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { deltaWorkerPath } from '../src/deltas/delta-service.js';
import type { RunningServer } from '../src/index.js';
import { connectFleet, firstOffered, SimDevice, testImage, uploadRelease } from './fleet.js';
import { auth, cleanupDirs, endClients, startTestServer, tempDir, waitFor } from './helpers.js';

let server: RunningServer | undefined;
let fleet: SimDevice[] = [];
afterEach(async () => {
  await endClients(fleet.map((d) => d.client));
  fleet = [];
  await server?.close();
  server = undefined;
  cleanupDirs();
});

async function setup(n: number) {
  if (!existsSync(deltaWorkerPath()))
    throw new Error(`run \`npx tsc -b\` first: ${deltaWorkerPath()} is missing`);
  server = await startTestServer({ limits: { rolloutTickMs: 200, deltaWaitMs: 30_000 } });
  const v1 = await uploadRelease(server, '1.0.0', testImage(0));
  const v2 = await uploadRelease(server, '1.1.0', testImage(1));
  fleet = SimDevice.fleet('TEST-ONLY-fleet', n, '1.0.0', v1.image.sha256);
  await connectFleet(server, fleet);
  return { v1, v2 };
}

const createRollout = (s: RunningServer, policy: unknown) =>
  s.app.inject({
    method: 'POST',
    url: '/api/v1/rollouts',
    headers: auth(),
    payload: { release: '1.1.0', policy },
  });

describe('rollouts drive signed offers over MQTT', () => {
  it('offers the canary a delta-backed signed offer, then the rest, and completes on healthy reports', async () => {
    const { v1, v2 } = await setup(3);
    const res = await createRollout(server!, { target: {}, phases: [{ count: 1 }, { percent: 100 }] });
    expect(res.statusCode, res.body).toBe(201);
    const rolloutId = res.json().id as string;

    const canary = await firstOffered(fleet);
    const root = server!.ctx.keys.rootMeta;
    const verified = verifyOffer(canary.cmd.offer, {
      root,
      now: new Date(),
      deviceId: canary.d.id,
      device: { hardware: 'TEST-ONLY-board', securityVersion: 1 },
      activeImageSha256: v1.image.sha256,
    });
    expect(verified.release.version).toBe('1.1.0');
    expect(verified.delta?.fromImageSha256).toBe(v1.image.sha256);
    // Only the canary was offered.
    expect(fleet.filter((d) => d !== canary.d).every((d) => d.commands.length === 0)).toBe(true);

    // The delta the offer names rebuilds exactly the release image from the device's image.
    // Fetched with the URL exactly as signed into the offer (path and ?aud=&exp=&sig=).
    const signedUrl = new URL(canary.cmd.offer.signed.delta!.url);
    expect(signedUrl.searchParams.get('aud')).toBe(canary.d.id);
    const deltaBytes = await server!.app.inject({
      method: 'GET',
      url: `${signedUrl.pathname}${signedUrl.search}`,
    });
    expect(deltaBytes.statusCode).toBe(200);
    const dir = tempDir('flotilla-apply-');
    const base = join(dir, 'base.img');
    const out = join(dir, 'out.img');
    writeFileSync(base, testImage(0));
    writeFileSync(join(dir, 'd.fdelta'), deltaBytes.rawPayload);
    // Apply with the compiled codec, the same build the delta worker (and a device agent) runs.
    const { applyDelta } = (await import(
      new URL('../../delta/dist/index.js', import.meta.url).href
    )) as typeof import('@flotilla/delta');
    await applyDelta({
      base,
      delta: join(dir, 'd.fdelta'),
      target: out,
      expectedTargetSha256: v2.image.sha256,
    });
    expect(readFileSync(out).equals(testImage(1))).toBe(true);

    await canary.d.install(canary.cmd.offer.signed.deploymentId, 'healthy', '1.1.0', v2.image.sha256);
    const rest = fleet.filter((d) => d !== canary.d);
    const offers = await Promise.all(rest.map((d) => d.nextOffer(20_000)));
    for (const [i, d] of rest.entries())
      await d.install(offers[i]!.offer.signed.deploymentId, 'healthy', '1.1.0', v2.image.sha256);
    await waitFor(
      async () => (await server!.ctx.store.rollouts.get(rolloutId))?.status === 'completed',
      10_000,
      'rollout completed',
    );
    const summary = await server!.ctx.rollouts.summary(rolloutId);
    expect(summary.totals.healthy).toBe(3);
  }, 90_000);

  it('pauses the rollout when the canary rolls back, and keeps the reason on the device timeline', async () => {
    await setup(3);
    const res = await createRollout(server!, {
      target: {},
      phases: [{ count: 1, errorThreshold: 0 }, { percent: 100 }],
    });
    const rolloutId = res.json().id as string;
    const canary = await firstOffered(fleet);
    await canary.d.install(canary.cmd.offer.signed.deploymentId, 'rolled-back', '', '');
    await waitFor(
      async () => (await server!.ctx.store.rollouts.get(rolloutId))?.status === 'paused',
      10_000,
      'paused',
    );
    const r = (await server!.ctx.store.rollouts.get(rolloutId))!;
    expect(r.runtime.pause?.kind).toBe('error-threshold');
    const tl = await server!.app.inject({
      method: 'GET',
      url: `/api/v1/devices/${canary.d.id}/timeline`,
      headers: auth(),
    });
    const rb = tl.json().items.find((e: { kind: string }) => e.kind === 'rolled-back');
    expect(rb.reason).toEqual({ code: 'HEALTH', message: 'app.service failed: exit code 3' });
    const dep = (await server!.ctx.store.deployments.find(rolloutId, canary.d.id))!;
    expect(dep.state).toBe('rolled-back');
    expect(dep.failureReason).toContain('app.service failed');
    // No one else got an offer.
    await new Promise((r) => setTimeout(r, 500));
    expect(fleet.filter((d) => d !== canary.d).every((d) => d.commands.length === 0)).toBe(true);
  }, 90_000);

  it("ignores a device's event that names another device's deployment", async () => {
    await setup(2);
    const res = await createRollout(server!, { target: {}, phases: [{ count: 1 }, { percent: 100 }] });
    const rolloutId = res.json().id as string;
    const canary = await firstOffered(fleet);
    const other = fleet.find((d) => d !== canary.d)!;
    await other.event('healthy', canary.cmd.offer.signed.deploymentId);
    await new Promise((r) => setTimeout(r, 300));
    expect((await server!.ctx.store.deployments.find(rolloutId, canary.d.id))?.state).toBe('offered');
  }, 90_000);

  it('answers an offer-refresh (signed URL expired mid-download) with a fresh offer of the same deployment, once per interval', async () => {
    await setup(1);
    const res = await createRollout(server!, { target: {}, phases: [{ percent: 100 }] });
    expect(res.statusCode, res.body).toBe(201);
    const { d, cmd } = await firstOffered(fleet);
    const deploymentId = cmd.offer.signed.deploymentId;
    await d.event('offer-accepted', deploymentId);
    await d.event('download-progress', deploymentId, { progress: { done: 1, total: 2 } });
    await d.event('offer-refresh', deploymentId);
    const fresh = await d.nextOffer();
    expect(fresh.offer.signed.deploymentId).toBe(deploymentId);
    expect(fresh.commandId).not.toBe(cmd.commandId);
    expect(fresh.offer.signed.full.sha256).toBe(cmd.offer.signed.full.sha256);
    const url = new URL(fresh.offer.signed.full.url);
    expect(url.searchParams.get('aud')).toBe(d.id);
    const got = await server!.app.inject({ method: 'GET', url: `${url.pathname}${url.search}` });
    expect(got.statusCode).toBe(200);
    // A second request right away is not answered: one device cannot make the server sign in a loop.
    await d.event('offer-refresh', deploymentId);
    await d.event('offer-refresh', 'not-my-deployment');
    await d.event('log', deploymentId); // ordered after the refreshes: once it is stored, they were handled
    await waitFor(
      async () => (await server!.ctx.store.events.byDeployment(deploymentId)).some((e) => e.kind === 'log'),
      10_000,
      'the log event stored',
    );
    expect(d.commands.filter((c) => c.type === 'offer')).toHaveLength(0);
  });
});
