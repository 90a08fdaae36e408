import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import {
  type AcknowledgedReport,
  defaultTransport,
  type Fleet,
  isTerminalRollout,
  recordAcknowledged,
  type SimServer,
  startSimServer,
  startWorld,
  type TransportFactory,
  type World,
  watchRollout,
} from '@flotilla/fleet-simulator';
import { deviceTopic } from '@flotilla/protocol';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { POSTGRES_MISSING, postgresBin, startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import { connectDevice, enroll, eventMessage, testDevice, waitFor } from '../helpers.js';

// PostgreSQL stopped while devices report in the middle of a rollout, then started again on the
// same data and port: nothing a device saw acknowledged may be lost, and the rollout must finish.

const DEVICES = 8;
if (!postgresBin) console.warn(POSTGRES_MISSING);

/** The events each device tried to send (acknowledged or not); acknowledged ones go to a history file. */
const tried = new Map<string, Set<string>>();
const trying: TransportFactory = (ctx) => {
  const t = defaultTransport(ctx);
  const publish = t.publish.bind(t);
  t.publish = async (channel, payload, qos) => {
    if (channel === 'events' && qos === 1) {
      const { eventId } = JSON.parse(payload) as { eventId: string };
      tried.set(ctx.deviceId, (tried.get(ctx.deviceId) ?? new Set()).add(eventId));
    }
    await publish(channel, payload, qos);
  };
  return t;
};

describe.skipIf(!postgresBin)('PostgreSQL stopped mid-rollout (a real PostgreSQL, simulated agents)', () => {
  let pgsrv: TestPostgres;
  let world: World;
  let node: SimServer;
  let fleet: Fleet;
  let historyDir: string;
  let history: string;
  const logs: string[] = [];
  const acknowledged = () =>
    (existsSync(history) ? readFileSync(history, 'utf8') : '')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AcknowledgedReport);
  const healthz = async () => {
    const res = await fetch(`${node.running.addresses.api}/healthz`);
    return { status: res.status, body: (await res.json()) as { error?: { code: string; hint: string } } };
  };

  beforeAll(async () => {
    pgsrv = await startTestPostgres();
    historyDir = mkdtempSync(join(tmpdir(), 'flotilla-acked-'));
    history = join(historyDir, 'acknowledged.jsonl');
    world = await startWorld({
      devices: DEVICES,
      size: 'light',
      seed: 16,
      timeScale: 0.05,
      // Devices are still to reboot and report when PostgreSQL stops (the outage is mid-rollout).
      rebootDelayMs: 5_000,
      transport: recordAcknowledged(trying, history),
      server: async (x) => {
        node = await startSimServer({
          ...x,
          serverOptions: {
            database: pgsrv.url,
            nodeId: 'node-a',
            logger: pino(
              { level: 'info' },
              new Writable({
                write(line, _enc, done) {
                  logs.push(String(line));
                  done();
                },
              }),
            ),
          },
        });
        return node;
      },
    });
    fleet = world.fleet;
    await fleet.powerOn();
    await waitFor(async () => (await world.server.onlineCount()) >= DEVICES, 120_000, 'every device online');
  }, 240_000);

  afterAll(async () => {
    await world?.close();
    await pgsrv?.destroy();
    rmSync(historyDir, { recursive: true, force: true });
  }, 120_000);

  it('holds reports while PostgreSQL is down, stops and resumes the engine, and loses nothing', async () => {
    await world.publish('1.1.0');
    const before = acknowledged().length;
    const rolloutId = await world.server.startRollout({
      name: 'through a PostgreSQL outage',
      release: '1.1.0',
      devices: fleet.devices.map((d) => d.id),
      phases: [{ name: 'all', percent: 100, errorThreshold: 100 }],
      maxConcurrent: 20,
      deviceTimeoutSeconds: 600,
    });
    const engineTaken = () => logs.filter((l) => l.includes('this node runs the rollout engine')).length;
    expect(engineTaken()).toBe(1);
    // Mid-rollout: every device has begun reporting on the update (and has its reboot ahead).
    await waitFor(
      () =>
        new Set(
          acknowledged()
            .slice(before)
            .map((r) => r.deviceId),
        ).size === DEVICES,
      120_000,
      'every device acknowledged for reporting progress on the update',
    );
    // A device of the test's own beside the agents: it reports exactly when the test says.
    const probe = testDevice('probe-0');
    await enroll(node.running, probe);
    const mqttUrl = node.running.addresses.mqtt!;
    const probeEvent = JSON.stringify(eventMessage('probe-held', 1, 'log'));
    const before1 = await connectDevice(mqttUrl, probe);
    await pgsrv.stop();
    const ackedAtStop = new Set(acknowledged().map((r) => r.eventId));

    // While it is down: /healthz is 503 with the coded reason, the engine stops, and what devices
    // send is not acknowledged (they keep it and send it again).
    const down = await healthz();
    expect(down.status).toBe(503);
    expect(down.body.error?.code).toBe('FLOTILLA_ERR_STORE_UNAVAILABLE');
    expect(down.body.error?.hint).toMatch(/PostgreSQL/);
    await waitFor(
      () => logs.some((l) => l.includes('this node stopped the rollout engine')),
      30_000,
      'the engine stopped (lease lost)',
    );
    // Its report gets no PUBACK: the failed commit acknowledges nothing and the node drops it.
    let probeAcked = false;
    let probeClosed = false;
    before1.once('close', () => {
      probeClosed = true;
    });
    before1.publishAsync(deviceTopic(probe.id, 'events'), probeEvent, { qos: 1 }).then(
      () => {
        probeAcked = true;
      },
      () => undefined,
    );
    await waitFor(() => probeClosed || probeAcked, 60_000, 'the report refused (connection dropped)');
    expect(probeAcked).toBe(false);
    await before1.endAsync(true).catch(() => undefined);
    // Logging in again is refused (CONNACK 3, server unavailable), and the log says why.
    const relogin = await connectDevice(mqttUrl, probe).then(
      async (c) => {
        await c.endAsync(true);
        return null;
      },
      (err: { code?: number }) => err,
    );
    expect(relogin?.code).toBe(3);
    expect(
      logs.some((l) => l.includes('mqtt auth failed') && l.includes('FLOTILLA_ERR_STORE_UNAVAILABLE')),
    ).toBe(true);
    expect(logs.some((l) => l.includes('FLOTILLA_ERR_STORE_UNAVAILABLE'))).toBe(true);
    // Nothing was acknowledged while nothing could be committed.
    expect(acknowledged().filter((r) => !ackedAtStop.has(r.eventId))).toEqual([]);

    await pgsrv.start();
    await waitFor(async () => (await healthz()).status === 200, 60_000, '/healthz 200 again');
    await waitFor(() => engineTaken() === 2, 60_000, 'the engine taken again');
    // The probe resends its report (twice, as after a lost PUBACK): acknowledged now, stored once.
    const after = await connectDevice(mqttUrl, probe);
    await after.publishAsync(deviceTopic(probe.id, 'events'), probeEvent, { qos: 1 });
    await after.publishAsync(deviceTopic(probe.id, 'events'), probeEvent, { qos: 1 });
    await after.endAsync();

    const view = await watchRollout(world.server, fleet, rolloutId, {
      until: isTerminalRollout,
      timeoutMs: 300_000,
    });
    expect(view.status).toBe('completed');
    for (const d of fleet.devices) expect(d.current?.release, d.id).toBe('1.1.0');

    // Every report an agent saw acknowledged is stored, exactly once; and every one it tried is
    // acknowledged in the end (held, resent, stored).
    const store = node.running.ctx.store;
    for (const d of fleet.devices) {
      await waitFor(
        () => {
          const acked = new Set(
            acknowledged()
              .filter((r) => r.deviceId === d.id)
              .map((r) => r.eventId),
          );
          return [...(tried.get(d.id) ?? [])].every((id) => acked.has(id));
        },
        60_000,
        `${d.id}: every report it tried acknowledged`,
      );
      const acked = acknowledged()
        .filter((r) => r.deviceId === d.id)
        .map((r) => r.eventId);
      const stored = (await store.events.timeline(d.id, Number.MAX_SAFE_INTEGER, 10_000)).map(
        (e) => e.eventId,
      );
      expect(new Set(stored).size, `${d.id}: an event stored twice`).toBe(stored.length);
      for (const id of acked) expect(stored, `${d.id}: acknowledged ${id} lost`).toContain(id);
    }
    const probeStored = await store.events.timeline(probe.id, Number.MAX_SAFE_INTEGER, 100);
    expect(probeStored.filter((e) => e.eventId === 'probe-held')).toHaveLength(1);
  }, 600_000);
});
