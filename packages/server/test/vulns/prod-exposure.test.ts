import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../src/index.js';
import { SimDevice } from '../fleet.js';
import { cleanupDirs, endClients, startTestServer, waitFor } from '../helpers.js';
import { scrape } from '../metrics-scrape.js';
import { CRITICAL, HIGH, osvRecord } from './fixtures.js';
import { vulnApi } from './vuln-api.js';

// Devices on two images report over the real MQTT path; an import after a clean release reached
// prod makes it fail its policy: the alert gauge and the API say so, the fleet view weighs findings
// by the devices that run each image, and nothing is sent to the devices.

let server: RunningServer;
let api: ReturnType<typeof vulnApi>;
const devices: SimDevice[] = [];

const OPENSSL = { name: 'libssl3', version: '3.0.11-1~deb12u2', source: 'openssl' };
const BASH = { name: 'bash', version: '5.2.15-2+b2', source: 'bash (5.2.15-2)' };
const EXPAT = { name: 'libexpat1', version: '2.5.0-1', source: 'expat' };

interface DeviceView {
  id: string;
  channel: string;
  version: string | null;
  imageSha256: string | null;
  agentState: string | null;
  deploymentId: string | null;
  status: string;
  online: boolean;
}

const device = async (id: string) => (await api.call('GET', `/api/v1/devices/${id}`)).json() as DeviceView;

/** Registers the devices through the admin API, places them, connects them and waits for their reports. */
async function runFleet(
  placed: { id: string; release: { version: string; image: { sha256: string } }; channel: string }[],
) {
  const fleet = placed.map((p) => SimDevice.create(p.id, p.release.version, p.release.image.sha256));
  const registered = await api.call('POST', '/api/v1/devices/bulk-register', {
    devices: fleet.map((d) => ({
      deviceId: d.id,
      publicKey: d.key.publicKeyHex,
      hardware: 'TEST-ONLY-board',
    })),
  });
  expect(registered.statusCode, registered.body).toBe(200);
  for (const [i, d] of fleet.entries()) {
    const res = await api.call('PUT', `/api/v1/devices/${d.id}/placement`, { channel: placed[i]!.channel });
    expect(res.statusCode, res.body).toBe(200);
    await d.connect(server.addresses.mqtt!);
    devices.push(d);
  }
  for (const d of fleet)
    await waitFor(async () => (await device(d.id)).imageSha256 === d.imageSha256, 20_000, `${d.id} reports`);
}

beforeAll(async () => {
  server = await startTestServer();
  api = vulnApi(server);
}, 60_000);

afterAll(async () => {
  await endClients(devices.map((d) => d.client));
  await server?.close();
  cleanupDirs();
});

describe('an import that makes a prod release fail its policy', () => {
  it('raises flotilla_policy_prod_failures, names the release in the API, weighs exposure by devices and stops nothing', async () => {
    // An import before anything is affected: the releases scan clean.
    expect(
      (
        await api.importRecords({
          'DSA-8000.json': osvRecord({ id: 'DSA-8000', name: 'zlib', cvss: CRITICAL }),
        })
      ).statusCode,
    ).toBe(200);
    const v800 = await api.build('8.0.0', [OPENSSL, BASH]);
    const v810 = await api.build('8.1.0', [OPENSSL, BASH, EXPAT]);
    for (const channel of ['staging', 'prod'])
      expect((await api.promote('8.0.0', channel)).statusCode).toBe(200);
    await runFleet([
      { id: 'TEST-ONLY-exp-prod-0', release: v800, channel: 'prod' },
      { id: 'TEST-ONLY-exp-prod-1', release: v800, channel: 'prod' },
      { id: 'TEST-ONLY-exp-staging', release: v800, channel: 'staging' },
      { id: 'TEST-ONLY-exp-dev', release: v810, channel: 'dev' },
    ]);

    let m = await scrape(server);
    expect(m.has('flotilla_policy_prod_failures')).toBe(true);
    expect(m.value('flotilla_policy_prod_failures')).toBe(0);
    expect(m.series('flotilla_devices_exposed')).toEqual([]);
    let fleet = (await api.call('GET', '/api/v1/vulnerabilities/fleet')).json();
    expect(fleet.prodFailures).toEqual([]);
    expect(fleet.images.map((i: { version: string; devices: number }) => [i.version, i.devices])).toEqual([
      ['8.0.0', 3],
      ['8.1.0', 1],
    ]);
    const before = await Promise.all(devices.map((d) => device(d.id)));
    const commandsBefore = devices.map((d) => d.commands.length);

    const imported = await api.importRecords({
      'DSA-8001.json': osvRecord({
        id: 'DSA-8001',
        name: 'openssl',
        fixed: '3.0.13-1~deb12u1',
        cvss: CRITICAL,
      }),
      'DSA-8002.json': osvRecord({ id: 'DSA-8002', name: 'bash', fixed: '5.2.15-3', cvss: HIGH }),
      'DSA-8003.json': osvRecord({ id: 'DSA-8003', name: 'expat', fixed: '2.5.0-2', cvss: CRITICAL }),
    });
    expect(imported.statusCode, imported.body).toBe(200);
    expect(imported.json()).toMatchObject({ added: 3, rescanned: 2 });

    // The alert's gauge and the API name the prod release that fails now.
    m = await scrape(server);
    expect(m.value('flotilla_policy_prod_failures')).toBe(1);
    fleet = (await api.call('GET', '/api/v1/vulnerabilities/fleet')).json();
    expect(fleet.prodFailures).toHaveLength(1);
    expect(fleet.prodFailures[0].version).toBe('8.0.0');
    expect(fleet.prodFailures[0].violations.join('\n')).toMatch(
      /DSA-8001 in libssl3 3\.0\.11-1~deb12u2: critical exceeds prod's maximum high/,
    );

    // Weighted by devices: 8.0.0 (1 critical × 3 devices) before 8.1.0 (2 critical × 1 device).
    expect(
      fleet.images.map((i: Record<string, unknown>) => [i.version, i.devices, i.channels, i.bySeverity]),
    ).toEqual([
      ['8.0.0', 3, { prod: 2, staging: 1 }, { critical: 1, high: 1 }],
      ['8.1.0', 1, { dev: 1 }, { critical: 2, high: 1 }],
    ]);
    expect(fleet.devicesExposed).toEqual({
      critical: { prod: 2, staging: 1, dev: 1 },
      high: { prod: 2, staging: 1, dev: 1 },
    });
    for (const [severity, channel, n] of [
      ['critical', 'prod', 2],
      ['critical', 'staging', 1],
      ['critical', 'dev', 1],
      ['high', 'prod', 2],
    ] as const)
      expect(m.value('flotilla_devices_exposed', { severity, channel }), `${severity} ${channel}`).toBe(n);
    expect(m.has('flotilla_devices_exposed', { severity: 'medium' })).toBe(false);

    // Nothing is stopped: no command reached a device, each still runs and reports what it did.
    const after = await Promise.all(devices.map((d) => device(d.id)));
    const running = (v: DeviceView) => [
      v.id,
      v.status,
      v.channel,
      v.version,
      v.imageSha256,
      v.agentState,
      v.deploymentId,
      v.online,
    ];
    expect(after.map(running)).toEqual(before.map(running));
    expect(after.every((v) => v.online && v.status === 'accepted')).toBe(true);
    expect(devices.map((d) => d.commands.length)).toEqual(commandsBefore);
    expect((await api.call('GET', '/api/v1/releases/8.0.0')).json().channels).toContain('prod');
  }, 120_000);
});
