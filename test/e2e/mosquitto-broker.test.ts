import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { httpServerHandle, newToken, type World } from '@flotilla/fleet-simulator';
import { generateKeyPair, makeDevicePassword, SCHEMA_VERSION, toHex } from '@flotilla/protocol';
import { type RunningServer, startServer } from '@flotilla/server';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SqliteDriver } from '../../packages/server/src/store/sqlite-driver.js';
import { rollOut, smallWorld, stuckDevices } from './helpers.js';
import { hasMosquittoDynsec, type Mosquitto, startMosquitto } from './mosquitto.js';

/**
 * Mosquitto 2 as the external broker, end to end: real agents (the simulator's devices) log in
 * with the passwords the server issued, the server manages their broker clients through the
 * dynamic-security plugin, reports are acknowledged only once stored, and the agent's last will
 * makes offline immediate. offlineAfterMs is 10 minutes here, so nothing but the will can mark a
 * device offline within a test.
 */
const DEVICES = 24;

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  for (let i = 0; ; i++) {
    if (await check()) return;
    if (Date.now() > end || i > 10_000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function connect(url: string, o: mqtt.IClientOptions): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000, ...o });
    c.once('connect', () => resolve(c));
    c.once('error', (err) => {
      c.end(true);
      reject(err);
    });
  });
}

describe.skipIf(!hasMosquittoDynsec)('Mosquitto 2 as the external broker (dynamic security)', () => {
  let mosquitto: Mosquitto;
  let running: RunningServer;
  let world: World;

  /** A device registered like an agent would (own key, proof) that the test drives with a plain MQTT client. */
  async function registerDevice(id: string): Promise<{ username: string; password: string }> {
    const key = generateKeyPair();
    const res = await fetch(`${running.addresses.api}/api/v1/devices/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        deviceId: id,
        publicKey: toHex(key.publicKey),
        proof: makeDevicePassword(id, key, new Date(), randomBytes(16).toString('hex')),
        hardware: 'TEST-ONLY-board',
      }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { mqtt?: { username: string; password: string } };
    expect(body.mqtt?.username).toBe(id);
    return body.mqtt!;
  }

  beforeAll(async () => {
    world = await smallWorld(DEVICES, [], 11, async ({ dataDir, keysDir }) => {
      mosquitto = await startMosquitto();
      const token = newToken();
      try {
        running = await startServer({
          dataDir,
          importKeysFrom: keysDir,
          autoAccept: true,
          adminToken: token,
          port: 0,
          mqttPort: null,
          logLevel: 'warn',
          limits: {
            rolloutTickMs: 1000,
            deltaWaitMs: 60_000,
            offlineAfterMs: 600_000,
            brokerReconcileMs: 1000,
          },
          broker: {
            kind: 'external',
            connect: { url: mosquitto.url, username: mosquitto.user, password: mosquitto.password },
            mosquitto: 'dynsec',
          },
        });
      } catch (err) {
        await mosquitto.stop();
        throw err;
      }
      return httpServerHandle({
        apiUrl: running.addresses.api,
        dashboardUrl: running.addresses.dashboard,
        mqtt: { host: mosquitto.host, port: mosquitto.port },
        token,
        close: async () => {
          await running.close();
          await mosquitto.stop();
        },
      });
    });
  }, 180_000);

  afterAll(async () => {
    await world?.close();
  }, 60_000);

  it(`brings ${DEVICES} real agents online through Mosquitto with the passwords the server issued`, async () => {
    expect(await world.server.onlineCount()).toBe(DEVICES);
    const transport = running.ctx.transport();
    expect(transport?.kind).toBe('external');
    // Online by their own online messages, not only by reports.
    for (const d of world.fleet.devices) expect(transport?.isConnected(d.id)).toBe(true);
  });

  it('completes a rollout through Mosquitto', async () => {
    const { view } = await rollOut(world, { maxConcurrent: DEVICES });
    expect(view.status).toBe('completed');
    expect(view.totals.healthy).toBe(DEVICES);
    await world.fleet.waitFor('devices idle', () => stuckDevices(world).length === 0, 30_000);
    const versions = await world.server.deviceVersions();
    expect([...versions.values()].filter((v) => v === '1.1.0')).toHaveLength(DEVICES);
  }, 240_000);

  it("refuses a client-id takeover by another device's credential: the victim stays connected", async () => {
    const victim = await registerDevice('TEST-ONLY-victim');
    const thief = await registerDevice('TEST-ONLY-thief');
    const v = await connect(mosquitto.url, { clientId: victim.username, ...victim, clean: false });
    let victimClosed = false;
    v.on('close', () => {
      victimClosed = true;
    });
    try {
      // The thief's own valid password, but the victim's client id (and, below, a real agent's).
      await expect(connect(mosquitto.url, { clientId: 'TEST-ONLY-victim', ...thief })).rejects.toThrow(
        /Not authorized/,
      );
      const agent = world.fleet.devices[0]!.id;
      await expect(connect(mosquitto.url, { clientId: agent, ...thief })).rejects.toThrow(/Not authorized/);
      // Its own client id gets in: the refusals were about the client id alone. Its report
      // reaches the server after anything the refused logins could have caused.
      const t = await connect(mosquitto.url, { clientId: thief.username, ...thief });
      await t.publishAsync(
        'flotilla/v1/devices/TEST-ONLY-thief/status',
        JSON.stringify({ schemaVersion: SCHEMA_VERSION, type: 'status', online: true, session: 'probe' }),
        { qos: 1 },
      );
      await until('the thief online', () => running.ctx.transport()?.isConnected('TEST-ONLY-thief') === true);
      await t.endAsync();
      expect(victimClosed).toBe(false);
      expect(v.connected).toBe(true);
      expect(running.ctx.transport()?.isConnected(agent)).toBe(true);
      expect((await running.ctx.store.devices.get(agent))?.online).toBe(true);
    } finally {
      await v.endAsync();
    }
  });

  it('holds reports sent while the disk is full at the broker and stores each once the disk is back', async () => {
    const id = 'TEST-ONLY-disk-full';
    const creds = await registerDevice(id);
    const c = await connect(mosquitto.url, { clientId: id, ...creds, clean: false });
    const db = running.ctx.store.sql as SqliteDriver;
    const stored = async () =>
      (
        await running.ctx.store.sql.get<{ n: number }>(
          'SELECT COUNT(*) AS n FROM device_events WHERE device_id = ?',
          [id],
        )
      )?.n ?? 0;
    const refusedBefore = (await running.ctx.metrics.reportsRefused.get()).values[0]?.value ?? 0;
    const eventIds: string[] = [];
    const event = (i: number) => {
      const eventId = `full-${i}`;
      eventIds.push(eventId);
      return JSON.stringify({
        schemaVersion: SCHEMA_VERSION,
        type: 'event',
        eventId,
        seq: i,
        ts: new Date().toISOString(),
        kind: 'log',
        deploymentId: null,
        // Big enough that every few events need a new database page.
        detail: { text: `TEST-ONLY ${'x'.repeat(2000)}` },
      });
    };
    try {
      // The disk is full: SQLite may not grow the database by a single page (SQLITE_FULL).
      await db.exec('PRAGMA max_page_count = 1');
      const N = 30;
      for (let i = 0; i < N; i++)
        await c.publishAsync(`flotilla/v1/devices/${id}/events`, event(i), { qos: 1 });
      // Every publish was acknowledged by Mosquitto; the server refused to acknowledge at least one.
      await until(
        'the server to hold a report',
        async () => ((await running.ctx.metrics.reportsRefused.get()).values[0]?.value ?? 0) > refusedBefore,
      );
      expect(await stored()).toBeLessThan(N);
      // The disk is back: the broker redelivers what the server never acknowledged.
      await db.exec('PRAGMA max_page_count = 1073741823');
      await until(`all ${N} events stored`, async () => (await stored()) === N, 90_000);
      const rows = await db.all<{ e: string }>(
        'SELECT event_id AS e FROM device_events WHERE device_id = ? ORDER BY event_id',
        [id],
      );
      expect(rows.map((r) => r.e)).toEqual([...eventIds].sort());
    } finally {
      await db.exec('PRAGMA max_page_count = 1073741823');
      await c.endAsync();
    }
  }, 150_000);

  it('marks a device whose power was cut offline at once: its last will', async () => {
    const device = world.fleet.devices[1]!;
    const offline: string[] = [];
    const unsubscribe = running.ctx.bus.subscribe((e) => {
      if (e.type === 'device.connection' && e.data.online === false) offline.push(String(e.data.deviceId));
    });
    try {
      // Off for a while, then on again; no report during the cut, and offlineAfterMs is 10 min.
      const cut = device.powerCut(5000);
      await until('offline by the last will', () => offline.includes(device.id), 30_000);
      expect((await running.ctx.store.devices.get(device.id))?.online).toBe(false);
      await cut;
      await until(
        'online again after power-on',
        async () => (await running.ctx.store.devices.get(device.id))?.online === true,
        60_000,
      );
    } finally {
      unsubscribe();
    }
  }, 120_000);

  it('deletes a broker client the store does not accept (a revocation that never reached the broker), keeping every device', async () => {
    const ctl = (...args: string[]) =>
      execFileSync(
        'mosquitto_ctrl',
        [
          '-h',
          mosquitto.host,
          '-p',
          String(mosquitto.port),
          '-u',
          mosquitto.user,
          '-P',
          mosquitto.password,
          'dynsec',
          ...args,
        ],
        { encoding: 'utf8' },
      );
    const clients = () =>
      ctl('listClients')
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean);
    // What a revoke lost to an unreachable broker leaves behind: a device client with its role.
    const ghost = 'TEST-ONLY-revoked-device';
    ctl('createRole', `flotilla-device-${ghost}`);
    ctl('createClient', ghost, '-c', ghost, '-p', 'TEST-ONLY-ghost-password');
    ctl('addClientRole', ghost, `flotilla-device-${ghost}`);
    // A broker user that is not a Flotilla device (no device role) is not Flotilla's to delete.
    ctl('createClient', 'TEST-ONLY-monitoring', '-p', 'TEST-ONLY-monitoring-password');
    expect(clients()).toContain(ghost);
    await until('the reconcile deleted the ghost', () => !clients().includes(ghost), 30_000);
    const left = clients();
    expect(left).toContain('TEST-ONLY-monitoring');
    for (const d of world.fleet.devices) expect(left).toContain(d.id);
    const refused = await connect(mosquitto.url, {
      clientId: ghost,
      username: ghost,
      password: 'TEST-ONLY-ghost-password',
    }).then(
      (c) => {
        c.end(true);
        return false;
      },
      () => true,
    );
    expect(refused).toBe(true);
  }, 90_000);
});
