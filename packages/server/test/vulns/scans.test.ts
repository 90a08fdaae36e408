import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FlotillaServer } from '../../src/index.js';
import { cleanupDirs, waitFor } from '../helpers.js';
import { scrape } from '../metrics-scrape.js';
import { CRITICAL, HIGH, osvRecord } from './fixtures.js';
import { vulnApi, vulnServer } from './vuln-api.js';

// Scans are stored: a release uploaded after an import is scanned as it lands, and
// POST …/vulnerabilities/scan matches again on demand. The server clock tells the scans apart.

const MINUTE = 60_000;
let now = Date.parse('2026-05-01T00:00:00Z');
let server: FlotillaServer;
let api: ReturnType<typeof vulnApi>;

beforeAll(async () => {
  server = await vulnServer(() => now);
  api = vulnApi(server);
}, 60_000);

afterAll(async () => {
  await server?.close();
  cleanupDirs();
});

const iso = (t: number) => new Date(t).toISOString();
const findings = async (version: string) => {
  const res = await api.call('GET', `/api/v1/releases/${version}/vulnerabilities`);
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as { scannedAt: string; importId: number; vulnerabilities: { id: string }[] };
};

describe('release scans', () => {
  it('scans a release uploaded after an import as it lands; GET answers from that stored scan', async () => {
    const imported = await api.importRecords({
      'DSA-9001.json': osvRecord({
        id: 'DSA-9001',
        name: 'openssl',
        fixed: '3.0.13-1~deb12u1',
        cvss: CRITICAL,
      }),
    });
    expect(imported.statusCode, imported.body).toBe(200);
    const uploadedAt = now;
    await api.build('9.0.0', [{ name: 'libssl3', version: '3.0.11-1~deb12u2', source: 'openssl' }]);
    // The upload's scan is stored when its findings show in the metrics (read from stored scans only).
    await waitFor(
      async () =>
        (await scrape(server)).value('flotilla_release_vulnerabilities', {
          version: '9.0.0',
          severity: 'critical',
        }) === 1,
      30_000,
      'the upload scan',
    );
    now += 10 * MINUTE; // a scan made by the GET would carry this time
    const body = await findings('9.0.0');
    expect(body.scannedAt).toBe(iso(uploadedAt));
    expect(body.importId).toBe(imported.json().importId);
    expect(body.vulnerabilities.map((v) => v.id)).toEqual(['DSA-9001']);
  });

  it('POST …/vulnerabilities/scan records a new scan: new time, and the findings of a newer import', async () => {
    now += 10 * MINUTE;
    const first = await api.call('POST', '/api/v1/releases/9.0.0/vulnerabilities/scan');
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json()).toEqual({ version: '9.0.0', scannedAt: iso(now), findings: 1 });
    expect((await findings('9.0.0')).scannedAt).toBe(iso(now));

    now += 10 * MINUTE;
    const imported = await api.importRecords({
      'DSA-9002.json': osvRecord({ id: 'DSA-9002', name: 'openssl', fixed: '3.0.12-1', cvss: HIGH }),
    });
    expect(imported.json()).toMatchObject({ added: 1, rescanned: 1 });
    now += 10 * MINUTE;
    const second = await api.call('POST', '/api/v1/releases/9.0.0/vulnerabilities/scan');
    expect(second.json()).toEqual({ version: '9.0.0', scannedAt: iso(now), findings: 2 });
    const body = await findings('9.0.0');
    expect(body.scannedAt).toBe(iso(now));
    expect(body.vulnerabilities.map((v) => v.id).sort()).toEqual(['DSA-9001', 'DSA-9002']);
  });

  it('refuses a scan of an unknown release (404) and of a viewer (403)', async () => {
    const missing = await api.call('POST', '/api/v1/releases/9.9.9/vulnerabilities/scan');
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error.code).toBe('FLOTILLA_ERR_SERVER_NOT_FOUND');
    const viewer = await api.token('TEST-ONLY viewer', 'viewer');
    expect(
      (await api.call('POST', '/api/v1/releases/9.0.0/vulnerabilities/scan', undefined, viewer)).statusCode,
    ).toBe(403);
  });
});
