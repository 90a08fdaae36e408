import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type FlotillaServer, type RunningServer } from '../src/index.js';
import {
  auth,
  cleanupDirs,
  connectDevice,
  endClients,
  enroll,
  silent,
  startTestServer,
  TEST_ADMIN,
  tempDir,
  testDevice,
} from './helpers.js';

const DASHBOARD = fileURLToPath(new URL('../dashboard', import.meta.url));

let server: FlotillaServer | RunningServer | null = null;
const clients: (MqttClient | undefined)[] = [];
afterEach(async () => {
  await endClients(clients);
  await server?.close();
  server = null;
  cleanupDirs();
});

async function apiServer(o: Parameters<typeof createServer>[0] = {}) {
  const s = await createServer({ dataDir: tempDir(), logger: silent, adminToken: TEST_ADMIN, ...o });
  server = s;
  return s;
}

describe('hardening a user expects', () => {
  it('sends a CSP without inline script (the import map by hash), no framing and nosniff (clickjacking, MIME sniffing)', async () => {
    const s = await apiServer({ dashboardDir: DASHBOARD });
    for (const url of ['/', '/api/v1/devices', '/healthz']) {
      const res = await s.app.inject({ method: 'GET', url, headers: auth() });
      const csp = String(res.headers['content-security-policy']);
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).toContain("default-src 'self'");
      expect(csp).not.toContain('unsafe-inline');
      expect(res.headers['x-frame-options']).toBe('DENY');
      expect(res.headers['x-content-type-options']).toBe('nosniff');
    }
    // The dashboard's only inline script (its import map) is allowed by its exact hash.
    const html = readFileSync(join(DASHBOARD, 'index.html'), 'utf8');
    const importMap = /<script type="importmap">([\s\S]*?)<\/script>/.exec(html)![1]!;
    const { createHash } = await import('node:crypto');
    const hash = createHash('sha256').update(importMap).digest('base64');
    const page = await s.app.inject({ method: 'GET', url: '/' });
    expect(String(page.headers['content-security-policy'])).toContain(`'sha256-${hash}'`);
  });

  it('accepts the Bearer scheme in any case (RFC 7235), still refusing Basic', async () => {
    const s = await apiServer();
    for (const scheme of ['Bearer', 'bearer', 'BEARER'])
      expect(
        (
          await s.app.inject({
            method: 'GET',
            url: '/api/v1/devices',
            headers: { authorization: `${scheme} ${TEST_ADMIN}` },
          })
        ).statusCode,
      ).toBe(200);
    expect(
      (
        await s.app.inject({
          method: 'GET',
          url: '/api/v1/devices',
          headers: { authorization: `Basic ${TEST_ADMIN}` },
        })
      ).statusCode,
    ).toBe(401);
  });

  it('rate-limits failed token logins per source (token brute force) with a coded 429, not the next address', async () => {
    const s = await apiServer({ limits: { maxFailedLogins: 5, failedLoginWindowMs: 60_000 } });
    const attempt = (token: string, ip: string) =>
      s.app.inject({ method: 'GET', url: '/api/v1/devices', headers: auth(token), remoteAddress: ip });
    for (let i = 0; i < 5; i++)
      expect((await attempt(`guess-${i}-xxxxxxxx`, '10.0.0.1')).statusCode).toBe(401);
    const blocked = await attempt(`guess-6-xxxxxxxx`, '10.0.0.1');
    expect(blocked.statusCode).toBe(429);
    expect(blocked.json().error.code).toBe('FLOTILLA_ERR_SERVER_RATE_LIMITED');
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0);
    // Even the right token waits: a brute-forcer learns nothing from a blocked address.
    expect((await attempt(TEST_ADMIN, '10.0.0.1')).statusCode).toBe(429);
    // Another address, and successful logins, are not slowed.
    for (let i = 0; i < 20; i++) expect((await attempt(TEST_ADMIN, '10.0.0.2')).statusCode).toBe(200);
  });

  it('keys failed logins on X-Forwarded-For only behind a trusted proxy (spoofed header dodging the limiter)', async () => {
    const limits = { maxFailedLogins: 3, failedLoginWindowMs: 60_000 };
    const attempt = (s: FlotillaServer, from: string, forwardedFor: string) =>
      s.app.inject({
        method: 'GET',
        url: '/api/v1/devices',
        headers: { ...auth('wrong-token-xxxxxxxx'), 'x-forwarded-for': forwardedFor },
        remoteAddress: from,
      });
    // Not trusted: a client that invents a new X-Forwarded-For per guess is still one source.
    const direct = await apiServer({ limits });
    for (let i = 0; i < 3; i++)
      expect((await attempt(direct, '10.0.0.9', `192.0.2.${i}`)).statusCode).toBe(401);
    expect((await attempt(direct, '10.0.0.9', '192.0.2.200')).statusCode).toBe(429);
    await direct.close();
    // Behind nginx at 127.0.0.1: the limit is per client, so one attacker does not lock out the rest.
    const proxied = await apiServer({ limits, trustProxy: ['127.0.0.1'] });
    for (let i = 0; i < 3; i++)
      expect((await attempt(proxied, '127.0.0.1', '192.0.2.7')).statusCode).toBe(401);
    expect((await attempt(proxied, '127.0.0.1', '192.0.2.7')).statusCode).toBe(429);
    expect((await attempt(proxied, '127.0.0.1', '192.0.2.8')).statusCode).toBe(401);
    // A header from a connection that is not the proxy is ignored there too.
    for (let i = 0; i < 3; i++) await attempt(proxied, '10.0.0.5', `198.51.100.${i}`);
    expect((await attempt(proxied, '10.0.0.5', '198.51.100.99')).statusCode).toBe(429);
  });

  it('puts /metrics behind a token when one is configured (scrape data is not public)', async () => {
    const s = await apiServer({ metricsToken: 'TEST-ONLY-metrics-token' });
    expect((await s.app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(401);
    const ok = await s.app.inject({
      method: 'GET',
      url: '/metrics',
      headers: auth('TEST-ONLY-metrics-token'),
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toContain('flotilla_');
    expect((await s.app.inject({ method: 'GET', url: '/metrics', headers: auth() })).statusCode).toBe(200);
  });

  it('never grants more than QoS 1 in a SUBACK (a device asking for QoS 2)', async () => {
    const s = await startTestServer();
    server = s;
    const d = testDevice('dev-qos');
    await enroll(s, d);
    const c = await connectDevice(s.addresses.mqtt!, d);
    clients.push(c);
    const granted = await c.subscribeAsync(`flotilla/v1/devices/${d.id}/commands`, { qos: 2 });
    expect(granted.map((g) => g.qos)).toEqual([1]);
  });

  it('refuses MQTT CONNECTs from a source after too many failed logins (password guessing), before checking more', async () => {
    const s = await startTestServer({ limits: { maxFailedLogins: 3, failedLoginWindowMs: 60_000 } });
    server = s;
    const d = testDevice('dev-guess');
    await enroll(s, d);
    const other = testDevice('dev-guess'); // same id, wrong key
    for (let i = 0; i < 3; i++)
      await expect(connectDevice(s.addresses.mqtt!, other)).rejects.toMatchObject({ code: 4 });
    // Now even the right key is refused from this address until the window ends.
    await expect(connectDevice(s.addresses.mqtt!, d)).rejects.toMatchObject({ code: 5 });
  });
});
