import { connect as netConnect } from 'node:net';
import { verifyDevicePassword } from '@flotilla/protocol';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/index.js';
import { aedesBroker } from './brokers.js';
import { deviceBrokerSuite } from './device-broker-suite.js';
import {
  cleanupDirs,
  connect,
  connectDevice,
  endClients,
  enroll,
  eventMessage,
  retainedStream,
  startTestServer,
  stateMessage,
  type TestDevice,
  tempDir,
  testDevice,
  waitFor,
} from './helpers.js';

/**
 * The shared device contract (device-broker-suite.ts) runs here against aedes over TCP; below are
 * the cases only the embedded broker has: signed, time-bound passwords (replay, clock window,
 * client-id takeover), MQTT 5 refusal, its frame guard, retained messages, provisioning tokens.
 */
deviceBrokerSuite('embedded aedes over TCP', () => aedesBroker('tcp'));

let server: RunningServer;
let url: string;
const a = testDevice('TEST-ONLY-dev-a');
const b = testDevice('TEST-ONLY-dev-b');
const clients: MqttClient[] = [];

beforeAll(async () => {
  server = await startTestServer();
  url = server.addresses.mqtt!;
  await enroll(server, a);
  await enroll(server, b);
});
afterAll(async () => {
  await endClients(clients);
  await server.close();
  cleanupDirs();
});

async function device(d: TestDevice): Promise<MqttClient> {
  const c = await connectDevice(url, d);
  clients.push(c);
  return c;
}

/** Resolves when the broker closes the connection, or false after ms. */
function closedWithin(c: MqttClient, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    c.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** The server is unharmed: a fresh legitimate report still gets stored. */
async function serverStillWorks(): Promise<void> {
  const c = await device(a);
  const eventId = `alive-${Math.random().toString(36).slice(2)}`;
  await c.publishAsync(
    'flotilla/v1/devices/TEST-ONLY-dev-a/events',
    JSON.stringify(eventMessage(eventId, 1, 'log')),
    { qos: 1 },
  );
  const rows = (await server.ctx.store.sql.get('SELECT COUNT(*) AS n FROM device_events WHERE event_id = ?', [
    eventId,
  ])) as { n: number };
  expect(rows.n).toBe(1);
  await c.endAsync();
}

describe('embedded aedes: signed passwords and broker-specific attacks', () => {
  it('helper passwords verify with protocol verifyDevicePassword', () => {
    expect(verifyDevicePassword(a.password(), a.id, a.publicKeyHex, new Date()).deviceId).toBe(a.id);
  });

  it('refuses a replayed password', async () => {
    const pw = a.password();
    const first = await connect(url, { clientId: a.id, username: a.id, password: pw });
    await first.endAsync();
    await expect(connect(url, { clientId: a.id, username: a.id, password: pw })).rejects.toThrow(
      /Bad username or password/,
    );
  });

  it('closes a login whose device is rejected while its login is being checked', async () => {
    const d = testDevice('TEST-ONLY-dev-revoked-mid-login');
    await enroll(server, d);
    // Reject the device in the middle of its login: after its status was read, before its nonce
    // is committed (the connection is not registered yet, so the revocation cannot find it).
    const nonces = server.ctx.store.nonces;
    const addMany = nonces.addMany.bind(nonces);
    nonces.addMany = (entries, now) => {
      if (entries.some((e) => e.key.startsWith(`${d.id}:`)))
        void server.ctx.registry.setStatus(d.id, 'rejected', 'TEST-ONLY-operator');
      return addMany(entries, now);
    };
    try {
      const c = await connectDevice(url, d).catch(() => null);
      if (c) {
        clients.push(c);
        expect(await closedWithin(c, 5000)).toBe(true);
      }
      expect(server.broker!.isConnected(d.id)).toBe(false);
    } finally {
      nonces.addMany = addMany;
    }
  });

  it('refuses a password outside the time window', async () => {
    await expect(
      connect(url, { clientId: a.id, username: a.id, password: a.password(Date.now() - 10 * 60_000) }),
    ).rejects.toThrow(/Bad username or password/);
  });

  it('refuses a device using another device id as client id (session takeover)', async () => {
    await expect(connect(url, { clientId: b.id, username: a.id, password: a.password() })).rejects.toThrow(
      /Identifier rejected/,
    );
  });

  it('refuses a stale login while a session opened with a newer password is open, and admits it once that session ends', async () => {
    const d = testDevice('TEST-ONLY-dev-stale');
    await enroll(server, d);
    const now = Date.now();
    const open = await connectDevice(url, d, { password: d.password(now) });
    clients.push(open);
    // A login that finishes after its device gave up and logged in again: its password is older.
    // CONNACK 3 (retry later), and the open session is not taken over.
    await expect(connectDevice(url, d, { password: d.password(now - 10_000) })).rejects.toThrow(
      /Server unavailable/,
    );
    expect(open.connected).toBe(true);
    // A newer password takes the session over, as every reconnect does.
    const newer = await connectDevice(url, d, { password: d.password(now + 1_000) });
    clients.push(newer);
    await waitFor(() => !open.connected, 10_000, 'the older connection closed by the newer login');
    // Once the newest session ended, an older password (a clock stepped back) logs in again.
    await newer.endAsync();
    let admitted: MqttClient | null = null;
    await waitFor(
      async () => {
        admitted = await connectDevice(url, d, { password: d.password(now - 5_000) }).catch(() => null);
        return admitted !== null;
      },
      10_000,
      'an older password admitted after the session ended',
    );
    clients.push(admitted!);
  });

  it('refuses unknown and pending devices', async () => {
    const stranger = testDevice('TEST-ONLY-stranger');
    await expect(connectDevice(url, stranger)).rejects.toThrow(/Not authorized/);
    await server.ctx.store.devices.insert({
      id: 'TEST-ONLY-pending',
      publicKey: testDevice('x').publicKeyHex,
      status: 'pending',
      now: 1,
    });
    const p = testDevice('TEST-ONLY-pending');
    await expect(connectDevice(url, p)).rejects.toThrow(/Not authorized|Bad username/);
  });

  it('refuses an MQTT 5 client (the embedded broker speaks 3.1.1)', async () => {
    await expect(connectDevice(url, a, { protocolVersion: 5 })).rejects.toThrow();
  });

  it('disconnects a device publishing on its own commands topic or on $SYS', async () => {
    for (const topic of ['flotilla/v1/devices/TEST-ONLY-dev-a/commands', '$SYS/broker/x', 'other/topic']) {
      const c = await device(a);
      const closed = closedWithin(c, 3000);
      c.publish(topic, '{}', { qos: 1 });
      expect(await closed).toBe(true);
    }
    await serverStillWorks();
  });

  it("negates (SUBACK 0x80) subscriptions to B's topics, to # and to $SYS instead of granting them", async () => {
    const c = await device(a);
    for (const topic of [
      'flotilla/v1/devices/TEST-ONLY-dev-b/commands',
      'flotilla/v1/devices/+/commands',
      '#',
      '$SYS/#',
      'flotilla/v1/devices/TEST-ONLY-dev-a/state',
    ]) {
      // mqtt.js turns the SUBACK failure code 0x80 into this error.
      await expect(c.subscribeAsync(topic, { qos: 1 }), topic).rejects.toThrow(/Subscribe error/);
    }
    const own = await c.subscribeAsync('flotilla/v1/devices/TEST-ONLY-dev-a/commands', { qos: 1 });
    expect(own[0]?.qos).toBe(1);
    await c.endAsync();
  });

  it('closes a raw TCP connection announcing a 256 MB frame', async () => {
    const port = Number(new URL(url).port);
    const closed = await new Promise<boolean>((resolve) => {
      const s = netConnect(port, '127.0.0.1', () => s.write(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f])));
      const t = setTimeout(() => resolve(false), 3000);
      s.on('close', () => {
        clearTimeout(t);
        resolve(true);
      });
      s.on('error', () => {});
    });
    expect(closed).toBe(true);
  });

  it('never keeps a retained message for a device', async () => {
    const c = await device(a);
    await c.publishAsync('flotilla/v1/devices/TEST-ONLY-dev-a/state', JSON.stringify(stateMessage(50)), {
      qos: 1,
      retain: true,
    });
    const retained: unknown[] = [];
    for await (const p of retainedStream(server.broker!.aedes, ['#'])) retained.push(p);
    expect(retained).toEqual([]);
    expect((await server.ctx.store.devices.get(a.id))?.stateSeq).toBe(50);
    await c.endAsync();
  });

  it('marks a device offline when its connection drops', async () => {
    const c = await device(b);
    await waitFor(async () => (await server.ctx.store.devices.get(b.id))?.online === true, 3000, 'online');
    c.stream.destroy();
    await waitFor(async () => (await server.ctx.store.devices.get(b.id))?.online === false, 3000, 'offline');
  });

  it("lets a dead node's device will through without a connection, refuses any other such publish, and survives aedes' background errors", async () => {
    // Sharing Redis, a surviving node publishes a dead node's wills with no client: refusing one
    // used to surface as an unhandled aedes 'error' event that ended the node's process.
    const aedes = server.broker!.aedes as unknown as {
      authorizePublish: (c: null, p: object, done: (e?: Error | null) => void) => void;
      emit: (e: string, err: Error) => boolean;
    };
    const authorize = (topic: string) =>
      new Promise<Error | null>((resolve) =>
        aedes.authorizePublish(
          null,
          {
            cmd: 'publish',
            topic,
            payload: Buffer.from('{"online":false}'),
            qos: 1,
            retain: false,
            dup: false,
          },
          (e) => resolve(e ?? null),
        ),
      );
    expect(await authorize(`flotilla/v1/devices/${a.id}/status`)).toBeNull();
    expect((await authorize(`flotilla/v1/devices/${a.id}/events`))?.message).toMatch(/not allowed/);
    expect(() => aedes.emit('error', new Error('TEST-ONLY background failure'))).not.toThrow();
    const h = await fetch(`${server.addresses.api}/healthz`);
    expect(h.status).toBe(200);
  });

  it('joins a new device with a one-time provisioning token, and only once', async () => {
    const t = await server.ctx.store.provisioning.create('TEST-ONLY line', 60_000, true, Date.now());
    const n = testDevice('TEST-ONLY-new');
    const c = await connect(url, {
      clientId: n.id,
      username: n.id,
      password: `flp1.${t.secret}.${n.publicKeyHex}`,
    });
    expect((await server.ctx.store.devices.get(n.id))?.status).toBe('accepted');
    await c.endAsync();
    const m = testDevice('TEST-ONLY-other');
    await expect(
      connect(url, { clientId: m.id, username: m.id, password: `flp1.${t.secret}.${m.publicKeyHex}` }),
    ).rejects.toThrow(/Not authorized/);
    // The registered key works from then on.
    const again = await connectDevice(url, n);
    await again.endAsync();
  });
});

describe('replay protection across a restart', () => {
  it('refuses a password captured before a crash and replayed after the restart', async () => {
    const dataDir = tempDir();
    const d = testDevice('TEST-ONLY-restart');
    let s = await startTestServer({ dataDir });
    try {
      await enroll(s, d);
      const captured = d.password();
      const c = await connect(s.addresses.mqtt!, { clientId: d.id, username: d.id, password: captured });
      await c.endAsync();
      // Killed, not closed: the nonce must already be on disk when the login was accepted.
      await s.crash();
      s = await startTestServer({ dataDir });
      await expect(
        connect(s.addresses.mqtt!, { clientId: d.id, username: d.id, password: captured }),
      ).rejects.toThrow(/Bad username or password/);
      const fresh = await connectDevice(s.addresses.mqtt!, d);
      await fresh.endAsync();
    } finally {
      await s.close();
    }
  });
});
