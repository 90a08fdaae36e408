import type { MqttClient } from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/index.js';
import {
  cleanupDirs,
  connect,
  connectDevice,
  endClients,
  startTestServer,
  TEST_ADMIN,
  testDevice,
  waitFor,
} from './helpers.js';

// The small version of bench/fleet/storm.mjs (19,000 devices there): every device logs in at the
// same instant. FLOTILLA_LONG=1 runs 5,000.
const DEVICES = process.env.FLOTILLA_LONG ? 5000 : 600;

let server: RunningServer | undefined;
const clients: MqttClient[] = [];
afterAll(async () => {
  await endClients(clients);
  await server?.close();
  cleanupDirs();
});

describe('a login storm', () => {
  it(`lets ${DEVICES} devices in at once, each nonce on disk before its CONNACK; a replayed one stays out`, async () => {
    server = await startTestServer();
    const url = server.addresses.mqtt!;
    const devices = Array.from({ length: DEVICES }, (_, i) => testDevice(`TEST-ONLY-storm-${i}`));
    // Bulk registration (as an operator would): also parses the keys ahead of the logins.
    const res = await server.app.inject({
      method: 'POST',
      url: '/api/v1/devices/bulk-register',
      headers: { authorization: `Bearer ${TEST_ADMIN}` },
      payload: {
        devices: devices.map((d) => ({
          deviceId: d.id,
          publicKey: d.publicKeyHex,
          hardware: 'TEST-ONLY-board',
        })),
        status: 'accepted',
      },
    });
    expect(res.statusCode, res.body).toBe(200);

    const passwords = devices.map((d) => d.password());
    const nonceRows = async () =>
      ((await server!.ctx.store.sql.get('SELECT COUNT(*) AS n FROM auth_nonces')) as { n: number }).n;
    const connectedAt: number[] = [];
    clients.push(
      ...(await Promise.all(
        devices.map((d, i) =>
          connect(url, {
            clientId: d.id,
            username: d.id,
            password: passwords[i]!,
            clean: false,
            connectTimeout: 60_000,
          }).then(async (c) => {
            // A CONNACK means the nonce is committed: the table holds at least this many.
            connectedAt.push(await nonceRows());
            return c;
          }),
        ),
      )),
    );
    expect(connectedAt.every((rows, i) => rows >= i + 1)).toBe(true);
    expect(await nonceRows()).toBe(DEVICES);
    await waitFor(() => server!.broker!.connectedCount === DEVICES, 10_000, 'all devices connected');
    const refused = await server.ctx.metrics.mqttAuth.get();
    expect(refused.values.filter((v) => v.labels.result !== 'ok').reduce((a, v) => a + v.value, 0)).toBe(0);

    // One of them replays its password from another socket: refused, and the device stays in.
    await expect(
      connect(url, { clientId: devices[7]!.id, username: devices[7]!.id, password: passwords[7]! }),
    ).rejects.toThrow(/Bad username or password/);
    expect(server.broker!.isConnected(devices[7]!.id)).toBe(true);
    // A fresh password still works (the session is taken over, as a reconnecting device would).
    clients.push(await connectDevice(url, devices[7]!));
  }, 120_000);
});
