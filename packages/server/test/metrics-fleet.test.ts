import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type FlotillaServer } from '../src/index.js';
import { testImage, uploadRelease } from './fleet.js';
import { cleanupDirs, silent, stateMessage, TEST_ADMIN, tempDir, testDevice } from './helpers.js';
import { scrape } from './metrics-scrape.js';

// Fleet gauges are computed from the store at scrape time: set the fleet up in the store, scrape.

let server: FlotillaServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
  cleanupDirs();
});

const DAY = 86_400_000;

async function addDevice(
  s: FlotillaServer,
  id: string,
  status: 'pending' | 'accepted' | 'rejected' | 'decommissioned',
  now: number,
  state?: { version: string | null; imageSha256: string | null; online?: boolean },
) {
  await s.ctx.store.devices.insert({ id, publicKey: testDevice(id).publicKeyHex, status, now });
  if (!state) return;
  await s.ctx.store.devices.applyState(
    id,
    stateMessage(1, { version: state.version, imageSha256: state.imageSha256 }),
    now,
  );
  if (state.online === false) await s.ctx.store.devices.setOnline(id, false, now);
}

describe('fleet gauges', () => {
  it('reports devices by status, online, by version, release created times and image ages from the store at scrape time', async () => {
    let now = Date.parse('2026-01-10T00:00:00Z');
    server = await createServer({
      dataDir: tempDir(),
      devKeys: true,
      logger: silent,
      adminToken: TEST_ADMIN,
      clock: () => now,
    });
    const v1 = await uploadRelease(server, '1.0.0', testImage(0));
    now += 10 * DAY;
    const v2 = await uploadRelease(server, '1.1.0', testImage(1));
    const created = async (v: string) =>
      Date.parse((await server!.ctx.store.releases.get(v))!.manifest.signed.created);
    now += 5 * DAY;

    let m = await scrape(server);
    expect(m.types.get('flotilla_devices')).toBe('gauge');
    expect(m.value('flotilla_devices_online')).toBe(0);
    expect(m.value('flotilla_fleet_oldest_image_age_seconds')).toBe(0);
    expect(m.series('flotilla_devices_by_version')).toEqual([]);

    for (let i = 0; i < 3; i++)
      await addDevice(server, `TEST-ONLY-g-v1-${i}`, 'accepted', now, {
        version: '1.0.0',
        imageSha256: v1.image.sha256,
      });
    await addDevice(server, 'TEST-ONLY-g-v2', 'accepted', now, {
      version: '1.1.0',
      imageSha256: v2.image.sha256,
      online: false,
    });
    await addDevice(server, 'TEST-ONLY-g-none', 'accepted', now); // never reported
    await addDevice(server, 'TEST-ONLY-g-pending', 'pending', now);
    await addDevice(server, 'TEST-ONLY-g-rejected', 'rejected', now, {
      version: '1.1.0',
      imageSha256: v2.image.sha256,
    });
    now += DAY;

    m = await scrape(server);
    expect(Object.fromEntries(m.series('flotilla_devices').map((s) => [s.labels.status, s.value]))).toEqual({
      pending: 1,
      accepted: 5,
      rejected: 1,
      decommissioned: 0,
    });
    // Online: accepted and connected (the rejected device's state does not count).
    expect(m.value('flotilla_devices_online')).toBe(3);
    expect(
      Object.fromEntries(m.series('flotilla_devices_by_version').map((s) => [s.labels.version, s.value])),
    ).toEqual({
      '1.0.0': 3,
      '1.1.0': 1,
      none: 1,
    });
    expect(m.value('flotilla_release_created_timestamp_seconds', { version: '1.0.0' })).toBe(
      (await created('1.0.0')) / 1000,
    );
    expect(m.value('flotilla_release_created_timestamp_seconds', { version: '1.1.0' })).toBe(
      (await created('1.1.0')) / 1000,
    );
    const age = async (v: string) => (now - (await created(v))) / 1000;
    expect(m.value('flotilla_fleet_oldest_image_age_seconds')).toBe(await age('1.0.0'));
    // Mean over the 4 accepted devices on a known release image (the one that never reported is left out).
    expect(m.value('flotilla_fleet_mean_image_age_seconds')).toBeCloseTo(
      (3 * (await age('1.0.0')) + (await age('1.1.0'))) / 4,
      6,
    );

    // The last 1.1.0 device moves back: its version series disappears instead of keeping a stale 1.
    await server.ctx.store.devices.applyState(
      'TEST-ONLY-g-v2',
      stateMessage(2, { version: '1.0.0', imageSha256: v1.image.sha256 }),
      now,
    );
    m = await scrape(server);
    expect(m.has('flotilla_devices_by_version', { version: '1.1.0' })).toBe(false);
    expect(m.value('flotilla_devices_by_version', { version: '1.0.0' })).toBe(4);
    expect(m.value('flotilla_fleet_mean_image_age_seconds')).toBe(await age('1.0.0'));
  });

  it('counts online devices on an external broker only when seen within offlineAfterMs', async () => {
    const now = Date.now();
    server = await createServer({
      dataDir: tempDir(),
      devKeys: true,
      logger: silent,
      adminToken: TEST_ADMIN,
      clock: () => now,
      broker: {
        kind: 'external',
        connect: { url: 'mqtt://127.0.0.1:1', username: 'TEST-ONLY-server', password: 'TEST-ONLY-password' },
      },
      limits: { offlineAfterMs: 60_000 },
    });
    await addDevice(server, 'TEST-ONLY-x-fresh', 'accepted', now - 1000, {
      version: null,
      imageSha256: null,
    });
    await addDevice(server, 'TEST-ONLY-x-stale', 'accepted', now - 120_000, {
      version: null,
      imageSha256: null,
    });
    const m = await scrape(server);
    expect(m.value('flotilla_devices_online')).toBe(1);
  });
});
