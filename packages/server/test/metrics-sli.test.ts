import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { deltaWorkerPath } from '../src/deltas/delta-service.js';
import type { RunningServer } from '../src/index.js';
import { connectFleet, firstOffered, SimDevice, testImage, uploadRelease } from './fleet.js';
import { auth, cleanupDirs, endClients, eventMessage, startTestServer, waitFor } from './helpers.js';
import { scrape } from './metrics-scrape.js';

// The SLI metrics of docs/observability.md, driven through the real server: releases uploaded
// over the API, devices reporting over real MQTT, rollouts run by the real runner, /metrics scraped.
// The server runs on a test clock so offer→healthy times are exact.

let server: RunningServer | undefined;
let fleet: SimDevice[] = [];
let now = Date.now();
afterEach(async () => {
  await endClients(fleet.map((d) => d.client));
  fleet = [];
  await server?.close();
  server = undefined;
  cleanupDirs();
});

async function setup(n: number, limits: Record<string, number> = {}) {
  now = Date.now();
  server = await startTestServer({ clock: () => now, limits: { rolloutTickMs: 100, ...limits } });
  const v1 = await uploadRelease(server, '1.0.0', testImage(0));
  const v2 = await uploadRelease(server, '1.1.0', testImage(1));
  fleet = SimDevice.fleet('TEST-ONLY-sli', n, '1.0.0', v1.image.sha256);
  await connectFleet(server, fleet);
  return { v1, v2 };
}

async function createRollout(policy: unknown): Promise<string> {
  const res = await server!.app.inject({
    method: 'POST',
    url: '/api/v1/rollouts',
    headers: auth(),
    payload: { release: '1.1.0', policy },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().id as string;
}

/** Publishes one event payload as is (so it can be sent twice with the same eventId). */
async function publishEvent(d: SimDevice, message: object) {
  await d.client.publishAsync(`flotilla/v1/devices/${d.id}/events`, JSON.stringify(message), { qos: 1 });
}

const UPDATES = 'flotilla_updates_total';
const HIST = 'flotilla_offer_to_healthy_seconds';

describe('update SLIs', () => {
  it('counts each healthy update once with its offer-to-healthy time, and not again for repeated or resent healthy events', async () => {
    const { v2 } = await setup(2);
    const rolloutId = await createRollout({ target: {}, phases: [{ count: 1 }, { percent: 100 }] });
    const canary = await firstOffered(fleet);
    now += 100_000;
    await canary.d.install(canary.cmd.offer.signed.deploymentId, 'healthy', '1.1.0', v2.image.sha256);
    const other = fleet.find((d) => d !== canary.d)!;
    const offer = await other.nextOffer(20_000);
    now += 1_000_000;
    await other.install(offer.offer.signed.deploymentId, 'healthy', '1.1.0', v2.image.sha256);
    await waitFor(
      async () => (await server!.ctx.store.rollouts.get(rolloutId))?.status === 'completed',
      10_000,
      'completed',
    );

    // Another healthy event of a healthy deployment, then the same one resent: nothing more is counted.
    const again = eventMessage('TEST-ONLY-healthy-again', 900, 'healthy', {
      deploymentId: offer.offer.signed.deploymentId,
      version: '1.1.0',
    });
    await publishEvent(other, again);
    await publishEvent(other, again);
    await waitFor(async () => (await scrape(server!)).value('flotilla_reports_duplicate_total') >= 1);

    const m = await scrape(server!);
    expect(m.types.get(UPDATES)).toBe('counter');
    expect(m.types.get(HIST)).toBe('histogram');
    expect(m.value(UPDATES, { release: '1.1.0', result: 'healthy' })).toBe(2);
    expect(m.value(UPDATES)).toBe(2);
    expect(m.value(`${HIST}_count`)).toBe(2);
    expect(m.value(`${HIST}_sum`)).toBe(1100);
    expect(m.value(`${HIST}_bucket`, { le: '60' })).toBe(0);
    expect(m.value(`${HIST}_bucket`, { le: '120' })).toBe(1);
    expect(m.value(`${HIST}_bucket`, { le: '900' })).toBe(1);
    expect(m.value(`${HIST}_bucket`, { le: '1800' })).toBe(2);
    expect(m.series(`${HIST}_bucket`).map((s) => s.labels.le)).toEqual([
      '30',
      '60',
      '120',
      '300',
      '600',
      '900',
      '1800',
      '3600',
      '7200',
      '14400',
      '+Inf',
    ]);
    // Both offers were signed; no rollout paused.
    expect(m.value('flotilla_signing_total', { role: 'offer', result: 'ok' })).toBeGreaterThanOrEqual(2);
    expect(m.value('flotilla_rollout_pauses_total')).toBe(0);
  }, 60_000);

  it('counts a rolled-back canary, its rollback reason code once per stored event, the automatic pause, and an operator pause', async () => {
    await setup(2);
    // successThreshold 0: after the resume the canary phase still succeeds and the rollout goes on
    // (at 100 % it could never succeed again, and the rollout would end `failed`).
    const rolloutId = await createRollout({
      target: {},
      phases: [{ count: 1, errorThreshold: 0, successThreshold: 0 }, { percent: 100 }],
    });
    const canary = await firstOffered(fleet);
    const depId = canary.cmd.offer.signed.deploymentId;
    await canary.d.install(depId, 'rolled-back', '', '');
    await waitFor(
      async () => (await server!.ctx.store.rollouts.get(rolloutId))?.status === 'paused',
      10_000,
      'paused',
    );
    await waitFor(async () => (await scrape(server!)).value(UPDATES) === 1, 5000, 'update counted');

    let m = await scrape(server!);
    expect(m.value(UPDATES, { release: '1.1.0', result: 'rolled-back' })).toBe(1);
    expect(m.value('flotilla_rollbacks_total', { reason: 'HEALTH' })).toBe(1);
    expect(m.value('flotilla_rollout_pauses_total', { reason: 'error-threshold' })).toBe(1);
    expect(m.value('flotilla_rollout_pauses_total', { reason: 'operator' })).toBe(0);

    // A resent rolled-back event (same eventId) is stored once and counted once.
    const resent = eventMessage('TEST-ONLY-rb-resent', 800, 'rolled-back', {
      deploymentId: depId,
      reason: { code: 'TEST_RESENT', message: 'resent' },
    });
    await publishEvent(canary.d, resent);
    await publishEvent(canary.d, resent);
    await waitFor(async () => (await scrape(server!)).value('flotilla_reports_duplicate_total') >= 1);
    // A code outside the label alphabet cannot create arbitrary series.
    await publishEvent(
      canary.d,
      eventMessage('TEST-ONLY-rb-odd', 801, 'rolled-back', {
        deploymentId: depId,
        reason: { code: 'bad code {"x"}', message: 'odd' },
      }),
    );
    await waitFor(async () => (await scrape(server!)).value('flotilla_rollbacks_total') === 3);
    m = await scrape(server!);
    expect(m.value('flotilla_rollbacks_total', { reason: 'TEST_RESENT' })).toBe(1);
    expect(m.value('flotilla_rollbacks_total', { reason: 'invalid' })).toBe(1);
    // The deployment was already rolled back: no second update.
    expect(m.value(UPDATES)).toBe(1);

    for (const action of ['resume', 'pause']) {
      const res = await server!.app.inject({
        method: 'POST',
        url: `/api/v1/rollouts/${rolloutId}/${action}`,
        headers: auth(),
        payload: {},
      });
      expect(res.statusCode, res.body).toBe(200);
    }
    m = await scrape(server!);
    expect(m.value('flotilla_rollout_pauses_total', { reason: 'operator' })).toBe(1);
    expect(m.value('flotilla_rollout_pauses_total', { reason: 'error-threshold' })).toBe(1);
  }, 60_000);

  it('counts a failed update and a timed-out one (per-device timeout on the server clock)', async () => {
    await setup(2);
    await createRollout({
      target: {},
      deviceTimeoutSeconds: 10,
      phases: [{ percent: 100, errorThreshold: 100 }],
    });
    const offers = await Promise.all(fleet.map((d) => d.nextOffer(20_000)));
    const [a] = fleet;
    await a!.event('offer-accepted', offers[0]!.offer.signed.deploymentId);
    await a!.event('failed', offers[0]!.offer.signed.deploymentId, {
      reason: { code: 'TEST_DOWNLOAD', message: 'TEST-ONLY download failed' },
    });
    await waitFor(async () => (await scrape(server!)).value(UPDATES, { result: 'failed' }) === 1, 5000);
    // The second device never answers: past its timeout the engine times it out.
    now += 20_000;
    await waitFor(async () => (await scrape(server!)).value(UPDATES, { result: 'timed-out' }) === 1, 5000);
    const m = await scrape(server!);
    expect(m.value(UPDATES, { release: '1.1.0', result: 'failed' })).toBe(1);
    expect(m.value(UPDATES, { release: '1.1.0', result: 'timed-out' })).toBe(1);
    expect(m.value(UPDATES, { result: 'healthy' })).toBe(0);
    expect(m.value(`${HIST}_count`)).toBe(0);
    expect(m.value('flotilla_rollbacks_total')).toBe(0);
  }, 60_000);
});

describe('artifact bytes, builds and signing', () => {
  it('counts artifact bytes by kind as they are sent: whole files, ranges, nothing for HEAD or 304', async () => {
    if (!existsSync(deltaWorkerPath())) throw new Error(`run \`npx tsc -b\` first: ${deltaWorkerPath()}`);
    await setup(0);
    const v1 = (await server!.ctx.store.releases.get('1.0.0'))!;
    const get = (sha: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET') =>
      server!.app.inject({ method, url: `/api/v1/artifacts/${sha}`, headers: { ...auth(), ...headers } });
    const bytes = async (kind: string) =>
      (await scrape(server!)).value('flotilla_artifact_bytes_served_total', { kind });
    for (const kind of ['full', 'delta', 'sbom', 'bundle']) expect(await bytes(kind)).toBe(0);

    expect((await get(v1.imageSha256)).rawPayload.length).toBe(v1.imageSize);
    expect(await bytes('full')).toBe(v1.imageSize);
    const part = await get(v1.imageSha256, { range: 'bytes=100-1123' });
    expect(part.statusCode).toBe(206);
    expect(await bytes('full')).toBe(v1.imageSize + 1024);
    const tail = await get(v1.imageSha256, { range: 'bytes=-10' });
    expect(tail.rawPayload.length).toBe(10);
    expect(await bytes('full')).toBe(v1.imageSize + 1034);
    expect((await get(v1.imageSha256, {}, 'HEAD')).statusCode).toBe(200);
    expect((await get(v1.imageSha256, { 'if-none-match': `"${v1.imageSha256}"` })).statusCode).toBe(304);
    expect(await bytes('full')).toBe(v1.imageSize + 1034);

    const sbom = await get(v1.sbomSha256!);
    expect(await bytes('sbom')).toBe(sbom.rawPayload.length);

    const res = await server!.app.inject({
      method: 'POST',
      url: '/api/v1/deltas',
      headers: auth(),
      payload: { from: '1.0.0', to: '1.1.0' },
    });
    expect(res.statusCode, res.body).toBe(202);
    await waitFor(
      async () =>
        (
          await server!.ctx.store.deltas.get(
            v1.imageSha256,
            (await server!.ctx.store.releases.get('1.1.0'))!.imageSha256,
          )
        )?.status === 'ready',
      20_000,
      'delta',
    );
    const d = (await server!.ctx.store.deltas.get(
      v1.imageSha256,
      (await server!.ctx.store.releases.get('1.1.0'))!.imageSha256,
    ))!;
    const delta = await get(d.deltaSha256!);
    expect(delta.rawPayload.length).toBe(d.deltaSize);
    const m = await scrape(server!);
    expect(m.value('flotilla_artifact_bytes_served_total', { kind: 'delta' })).toBe(d.deltaSize);
    expect(m.value('flotilla_signing_total', { role: 'delta', result: 'ok' })).toBe(1);
    expect(m.value('flotilla_signing_total', { role: 'release', result: 'ok' })).toBe(2);
    expect(m.value('flotilla_image_builds_total', { result: 'ok' })).toBe(2);
    expect(m.value('flotilla_signing_total', { result: 'failed' })).toBe(0);
  }, 60_000);

  it('counts a failed image build, and a failed offer signature when the online delta key is broken', async () => {
    await setup(1);
    const bad = await server!.app.inject({
      method: 'POST',
      url: '/api/v1/releases/build?name=TEST-ONLY-os&version=9.9.9&securityVersion=1&compatible=TEST-ONLY-board&format=ext4&partitionSize=8388608&input=tar',
      headers: { ...auth(), 'content-type': 'application/octet-stream' },
      payload: truncatedTarball(),
    });
    expect(bad.statusCode).toBeGreaterThanOrEqual(400);
    let m = await scrape(server!);
    expect(m.value('flotilla_image_builds_total', { result: 'failed' })).toBe(1);
    expect(m.value('flotilla_image_builds_total', { result: 'ok' })).toBe(2);

    // A delta key whose secret is unusable: every offer signature fails (and no offer goes out).
    const keys = server!.ctx.keys as { delta: { secretKey: Uint8Array } };
    keys.delta = { ...keys.delta, secretKey: new Uint8Array(3) };
    await createRollout({ target: {}, phases: [{ percent: 100 }] });
    await waitFor(
      async () =>
        (await scrape(server!)).value('flotilla_signing_total', { role: 'offer', result: 'failed' }) >= 1,
      5000,
      'failed offer signature',
    );
    m = await scrape(server!);
    expect(m.value('flotilla_signing_total', { role: 'offer', result: 'ok' })).toBe(0);
    expect(m.value('flotilla_offers_sent_total')).toBe(0);
    expect(fleet[0]!.commands).toEqual([]);
  }, 60_000);
});

/**
 * A tarball cut after its first header: the upload's leading-bytes check passes (it is a tar
 * header), so the build itself runs and fails on the missing file data.
 */
function truncatedTarball(): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-tar-'));
  try {
    writeFileSync(join(dir, 'app.bin'), Buffer.alloc(64 * 1024, 7));
    execFileSync('tar', ['-cf', join(dir, 'rootfs.tar'), '-C', dir, 'app.bin']);
    return readFileSync(join(dir, 'rootfs.tar')).subarray(0, 1024);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
