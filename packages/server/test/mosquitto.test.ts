import { readFileSync } from 'node:fs';
import { missingTools } from '@flotilla/image';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectWithin, mosquittoBroker } from './brokers.js';
import { deviceBrokerSuite } from './device-broker-suite.js';
import { cleanupDirs, connect, stateMessage, waitFor } from './helpers.js';

/**
 * The shared device contract (device-broker-suite.ts) against Mosquitto 2.0 in place of the
 * embedded broker; below are the cases only an external broker has: static credentials issued
 * by the server, password-file reloads (SIGHUP), and offline status by staleness.
 */
/** Mosquitto comes from its Debian package (CI installs it); without it these tests skip. */
const lacksMosquitto = missingTools(['mosquitto']).length > 0;

deviceBrokerSuite('Mosquitto (external broker)', () => mosquittoBroker(), { needs: ['mosquitto'] });

describe.skipIf(lacksMosquitto)('Mosquitto: credentials, reloads and staleness', () => {
  let broker: Awaited<ReturnType<typeof mosquittoBroker>>;

  beforeAll(async () => {
    // A short staleness window so the offline rule can be seen within the test.
    broker = await mosquittoBroker({ limits: { offlineAfterMs: 1500 } });
  }, 30_000);
  afterAll(async () => {
    await broker?.close();
    cleanupDirs();
  });

  it('issues an MQTT credential only once an operator accepted the device, and keeps only its $7$ hash', async () => {
    const p = await broker.provision('TEST-ONLY-mq-cred');
    expect(p.pending.device.status).toBe('pending');
    expect(p.pending.mqtt).toBeUndefined();
    expect(p.mqtt.username).toBe('TEST-ONLY-mq-cred');
    expect(p.mqtt.password.length).toBeGreaterThan(20);
    const file = readFileSync(broker.passwordFile, 'utf8');
    const line = file.split('\n').find((l) => l.startsWith('TEST-ONLY-mq-cred:'));
    expect(line).toMatch(/^TEST-ONLY-mq-cred:\$7\$101\$/);
    expect(file).not.toContain(p.mqtt.password);
  });

  it('lets a device accepted while Mosquitto runs in after the SIGHUP reload', async () => {
    const { mqtt } = await broker.provision('TEST-ONLY-mq-reload');
    // Only the reload can have taught Mosquitto this password: it was started without it.
    const c = await connectWithin(broker.url, { clientId: 'TEST-ONLY-mq-reload', ...mqtt }, 5000);
    expect(c.connected).toBe(true);
    await c.endAsync();
  });

  it('marks a device offline once it has been silent for offlineAfterMs (a device without a last will, or whose will was lost)', async () => {
    const { mqtt } = await broker.provision('TEST-ONLY-mq-stale');
    const c = await connectWithin(broker.url, { clientId: 'TEST-ONLY-mq-stale', ...mqtt }, 5000);
    const offline: string[] = [];
    const unsubscribe = broker.server.ctx.bus.subscribe((e) => {
      if (e.type === 'device.connection' && e.data.online === false) offline.push(String(e.data.deviceId));
    });
    try {
      await c.publishAsync('flotilla/v1/devices/TEST-ONLY-mq-stale/state', JSON.stringify(stateMessage(1)), {
        qos: 1,
      });
      await waitFor(
        async () => (await broker.server.ctx.store.devices.get('TEST-ONLY-mq-stale'))?.online === true,
        5000,
        'online after a report',
      );
      // Still connected, but silent: the broker tells the server nothing, staleness decides.
      await waitFor(
        async () => (await broker.server.ctx.store.devices.get('TEST-ONLY-mq-stale'))?.online === false,
        5000,
        'offline after the staleness window',
      );
      expect(c.connected).toBe(true);
      expect(offline).toContain('TEST-ONLY-mq-stale');
    } finally {
      unsubscribe();
      await c.endAsync();
    }
  });

  it('refuses a device id without a credential even with a plausible password', async () => {
    await expect(
      connect(broker.url, {
        clientId: 'TEST-ONLY-mq-none',
        username: 'TEST-ONLY-mq-none',
        password: 'x'.repeat(32),
      }),
    ).rejects.toThrow(/Not authorized|Bad username/);
  });
});
