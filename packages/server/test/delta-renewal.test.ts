import { existsSync } from 'node:fs';
import { verifyOffer } from '@flotilla/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deltaWorkerPath } from '../src/deltas/delta-service.js';
import { OfferBuilder } from '../src/deploy/offers.js';
import { createServer, type FlotillaServer } from '../src/index.js';
import { testImage, uploadRelease } from './fleet.js';
import { cleanupDirs, silent, TEST_ADMIN, tempDir, waitFor } from './helpers.js';

const DAY = 24 * 60 * 60 * 1000;
const t0 = Date.now();
let now = t0;
let server: FlotillaServer;
let from: string;
let to: string;
let offers: OfferBuilder;

beforeAll(async () => {
  if (!existsSync(deltaWorkerPath()))
    throw new Error(`run \`npx tsc -b\` first: ${deltaWorkerPath()} is missing`);
  server = await createServer({
    dataDir: tempDir(),
    devKeys: true,
    logger: silent,
    adminToken: TEST_ADMIN,
    clock: () => now,
  });
  from = (await uploadRelease(server, '1.0.0', testImage(0, 256 * 1024))).image.sha256;
  to = (await uploadRelease(server, '1.1.0', testImage(1, 256 * 1024))).image.sha256;
  await server.ctx.deltas.want([from], to);
  await waitFor(
    async () => (await server.ctx.store.deltas.get(from, to))?.status === 'ready',
    20_000,
    'delta built',
  );
  offers = new OfferBuilder(
    server.ctx.store,
    server.ctx.keys,
    server.ctx.limits,
    { publicUrl: () => 'http://127.0.0.1:1', artifactBaseUrl: () => 'http://127.0.0.1:1' },
    server.ctx.urlSigner,
  );
});
afterAll(async () => {
  await server.close();
  cleanupDirs();
});

async function offerAt(at: number) {
  now = at;
  const release = (await server.ctx.store.releases.get('1.1.0'))!;
  const offer = await offers.build({
    deploymentId: 'dep_TEST-ONLY',
    deviceId: 'TEST-ONLY-dev',
    release,
    deviceImageSha256: from,
    now: at,
  });
  return offer;
}

/** What a device would conclude at `at` (throws when it refuses the offer). */
const deviceVerifies = (offer: Awaited<ReturnType<typeof offerAt>>, at: number) =>
  verifyOffer(offer, {
    root: server.ctx.keys.rootMeta,
    now: new Date(at),
    deviceId: 'TEST-ONLY-dev',
    device: { hardware: 'TEST-ONLY-board', securityVersion: 1 },
    activeImageSha256: from,
  });

describe('delta descriptors are re-issued instead of falling back to the full image', () => {
  it('offers a fresh descriptor as stored', async () => {
    const stored = (await server.ctx.store.deltas.get(from, to))!.descriptor!;
    const offer = await offerAt(t0);
    expect(offer.signed.delta?.descriptor).toEqual(stored);
    expect(deviceVerifies(offer, t0).delta?.toImageSha256).toBe(to);
  });

  it('re-signs an expired descriptor with the delta key, stores it, and the device accepts the delta', async () => {
    const at = t0 + 31 * DAY;
    const before = (await server.ctx.store.deltas.get(from, to))!.descriptor!;
    expect(Date.parse(before.signed.expires)).toBeLessThan(at);
    const offer = await offerAt(at);
    const d = offer.signed.delta!.descriptor;
    expect(Date.parse(d.signed.expires)).toBeGreaterThan(at + 29 * DAY);
    expect({ ...d.signed, expires: null }).toEqual({ ...before.signed, expires: null });
    expect(d.signatures[0]?.keyid).toBe(server.ctx.keys.delta.keyId);
    expect((await server.ctx.store.deltas.get(from, to))!.descriptor).toEqual(d);
    expect(deviceVerifies(offer, at).delta?.deltaSha256).toBe(before.signed.deltaSha256);
  });

  it('re-signs a descriptor about to expire (less than a day left), not one with time to spare', async () => {
    const issued = Date.parse((await server.ctx.store.deltas.get(from, to))!.descriptor!.signed.expires);
    const spare = (await offerAt(issued - 2 * DAY)).signed.delta!.descriptor;
    expect(Date.parse(spare.signed.expires)).toBe(issued);
    const near = (await offerAt(issued - 60 * 60 * 1000)).signed.delta!.descriptor;
    expect(Date.parse(near.signed.expires)).toBeGreaterThan(issued);
  });

  it('never signs a descriptor whose fields no longer match the cached delta (full image instead)', async () => {
    const row = (await server.ctx.store.deltas.get(from, to))!;
    const tampered = {
      ...row.descriptor!,
      signed: { ...row.descriptor!.signed, deltaSize: row.descriptor!.signed.deltaSize + 1 },
    };
    await server.ctx.store.deltas.setDescriptor(from, to, tampered, now);
    const at = Date.parse(tampered.signed.expires) + DAY;
    const offer = await offerAt(at);
    expect(offer.signed.delta).toBeUndefined();
    expect(deviceVerifies(offer, at).delta).toBeUndefined();
    expect((await server.ctx.store.deltas.get(from, to))!.descriptor).toEqual(tampered);
  });
});
