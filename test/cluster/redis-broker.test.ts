import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import {
  createAgentLauncher,
  defaultTransport,
  Fleet,
  isTerminalRollout,
  prepareWorld,
  type SimServer,
  startSimServer,
  type TransportFactory,
  type WorldBase,
  watchRollout,
} from '@flotilla/fleet-simulator';
import { generateKeyPair, makeDevicePassword, toHex } from '@flotilla/protocol';
import { createServer, type RunningServer, startServer } from '@flotilla/server';
import mqtt from 'mqtt';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, type NginxStream, nginxStreamMissing, startNginxStream } from './nginx.js';
import { type LocalRedis, redisMissing, startRedis } from './redis.js';

const DEVICES = 6;
/** Short heartbeats: a killed node counts as dead within seconds here (15 s by default). */
const HEARTBEAT_TTL_MS = 3_000;
const missing = redisMissing() ?? nginxStreamMissing();
if (missing) console.warn(`skipping the Redis broker tests: ${missing}`);

/** Polls `cond` until true; bounded in time, fails naming what it waited for. */
async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 60_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** An MQTT session straight to one node, as nginx would open it (the PROXY line first): the client, or the CONNACK code that refused it. */
function openSession(url: string, id: string, password: string): Promise<mqtt.MqttClient | number> {
  return new Promise((resolve) => {
    const { hostname, port } = new URL(url);
    const stream = () => {
      const s = connect({ host: hostname, port: Number(port) });
      s.write('PROXY TCP4 192.0.2.7 127.0.0.1 40000 1883\r\n');
      return s;
    };
    const c = new mqtt.MqttClient(stream, {
      clientId: id,
      username: id,
      password,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    });
    c.once('connect', () => resolve(c));
    c.once('error', (err) => {
      resolve((err as { code?: number }).code ?? -1);
      c.end(true);
    });
  });
}

/** What each device itself did: events it tried to send, those the broker acknowledged, commands it got. */
const tried = new Map<string, Set<string>>();
const acked = new Map<string, Set<string>>();
const commands = new Map<string, number>();
const add = (m: Map<string, Set<string>>, id: string, v: string) =>
  m.set(id, (m.get(id) ?? new Set()).add(v));

/** The agent's own MQTT transport, recording what goes through it. */
const recording: TransportFactory = (ctx) => {
  const t = defaultTransport(ctx);
  const publish = t.publish.bind(t);
  t.publish = async (channel, payload, qos) => {
    const eventId = channel === 'events' ? (JSON.parse(payload) as { eventId: string }).eventId : null;
    if (eventId) add(tried, ctx.deviceId, eventId);
    await publish(channel, payload, qos);
    if (eventId) add(acked, ctx.deviceId, eventId);
  };
  const start = t.start.bind(t);
  t.start = (h) =>
    start({
      ...h,
      onCommand: (p) => {
        commands.set(ctx.deviceId, (commands.get(ctx.deviceId) ?? 0) + 1);
        h.onCommand(p);
      },
    });
  return t;
};

describe.skipIf(missing !== null)('aedes on two nodes sharing Redis, devices through nginx stream', () => {
  let redis: LocalRedis;
  let base: WorldBase;
  let fleet: Fleet;
  let a: SimServer;
  let b: RunningServer;
  let lb: NginxStream;
  const logA: string[] = [];
  /** Commands node B published, per device. */
  const publishedByB = new Map<string, number>();
  let onB: string[] = [];
  let killedAt = 0;

  const startRollout = (release: string) =>
    base.server.startRollout({
      name: `cluster ${release}`,
      release,
      devices: fleet.devices.map((d) => d.id),
      phases: [{ name: 'all', percent: 100, errorThreshold: 100 }],
      maxConcurrent: 20,
      deviceTimeoutSeconds: 300,
    });
  /** Waits for the rollout to end; says what is stuck when it does not. */
  const finished = async (rolloutId: string, status?: string) => {
    const view = await watchRollout(base.server, fleet, rolloutId, {
      until: isTerminalRollout,
      timeoutMs: 240_000,
    });
    if (!isTerminalRollout(view) || (status && view.status !== status))
      console.error(
        'rollout did not end as expected',
        JSON.stringify({
          view,
          deployments: await base.server.deployments(rolloutId),
          devices: fleet.devices.map((d) => `${d.id}:${d.phase}/${d.agentState}/${d.current?.release}`),
          log: fleet.log.slice(-30),
        }),
      );
    expect(isTerminalRollout(view)).toBe(true);
    if (status) expect(view.status).toBe(status);
  };

  beforeAll(async () => {
    redis = await startRedis();
    base = await prepareWorld({
      size: 'light',
      seed: 11,
      server: async (x) => {
        const common = {
          dataDir: x.dataDir,
          importKeysFrom: x.keysDir,
          autoAccept: true,
          logLevel: 'warn',
          redis: redis.url,
          // The shipped nginx file sends PROXY protocol v1: the nodes read the devices' addresses.
          mqttProxyProtocol: true,
        };
        const limits = { nodeHeartbeatTtlMs: HEARTBEAT_TTL_MS };
        a = await startSimServer({
          ...x,
          serverOptions: {
            redis: redis.url,
            mqttProxyProtocol: true,
            limits,
            logger: pino(
              { level: 'info' },
              new Writable({
                write(line, _enc, done) {
                  if (/redis/i.test(String(line))) logA.push(String(line));
                  done();
                },
              }),
            ),
          },
        });
        // Node B shares the store and Redis; it runs no rollout engine (one node does: issue 16).
        b = await startServer({
          ...common,
          port: 0,
          mqttPort: 0,
          limits: { ...limits, deltaWaitMs: 60_000 },
        });
        b.ctx.rollouts.stop();
        const bBroker = b.broker!;
        const publish = bBroker.publishCommand.bind(bBroker);
        bBroker.publishCommand = (id, c) => {
          publishedByB.set(id, (publishedByB.get(id) ?? 0) + 1);
          return publish(id, c);
        };
        const node = (url: string | null) => new URL(url!).host;
        lb = await startNginxStream({ nodes: [node(a.running.addresses.mqtt), node(b.addresses.mqtt)] });
        return {
          ...a,
          mqtt: { host: lb.host, port: lb.port },
          close: async () => {
            await lb.close();
            await b.close().catch(() => undefined);
            await a.close();
          },
        };
      },
    });
    const release = base.firmware.releases.get('1.0.0')!;
    fleet = await Fleet.create({
      dir: join(base.workDir, 'fleet'),
      count: DEVICES,
      hardware: base.hardware,
      baseImage: release.imagePath,
      format: base.firmware.format,
      slotSize: base.firmware.partitionSize,
      trustRoot: base.trust.root,
      launcher: createAgentLauncher({ factoryRelease: release.manifestPath, transport: recording }),
      mqtt: base.server.mqtt,
      artifactOrigin: base.server.artifactOrigin,
      seed: 11,
      timeScale: 0.05,
      register: (devices) => base.server.registerDevices(devices),
    });
    base.onClose(() => fleet.close());
    await fleet.powerOn();
    await until(`${DEVICES} devices online`, async () => (await base.server.onlineCount()) >= DEVICES);
  }, 240_000);

  afterAll(async () => {
    await base?.close();
    await redis?.close();
  }, 120_000);

  it('spreads the devices over both nodes through nginx', async () => {
    await until(
      'every device connected to a node',
      () => a.running.broker!.connectedCount + b.broker!.connectedCount === DEVICES,
    );
    expect(a.running.broker!.connectedCount).toBeGreaterThan(0);
    expect(b.broker!.connectedCount).toBeGreaterThan(0);
    onB = fleet.devices.map((d) => d.id).filter((id) => b.broker!.isConnected(id));
  });

  /** A device registered with the fleet, and its passwords (signed at `at`, a fresh nonce each). */
  async function registeredDevice(prefix: string) {
    const key = generateKeyPair();
    const id = `${prefix}-${randomBytes(4).toString('hex')}`;
    const password = (at = Date.now()) =>
      makeDevicePassword(id, key, new Date(at), randomBytes(16).toString('hex'));
    await base.server.registerDevices([
      { id, publicKeyHex: toHex(key.publicKey), proof: password(), hardware: base.hardware, tags: [] },
    ]);
    return { id, password };
  }

  it('refuses a device password replayed on the other node, and accepts one of two racing uses', async () => {
    const { id, password } = await registeredDevice('replay');
    const login = async (url: string, pw: string) => {
      const r = await openSession(url, id, pw);
      if (typeof r !== 'number') r.end(true);
      return typeof r === 'number' ? r : 'ok';
    };
    const urlA = a.running.addresses.mqtt!;
    const urlB = b.addresses.mqtt!;
    const captured = password();
    expect(await login(urlA, captured)).toBe('ok');
    // CONNACK 4: bad user name or password (the server logs `replay`).
    expect(await login(urlB, captured)).toBe(4);
    expect(await login(urlA, captured)).toBe(4);
    const racing = password();
    const both = await Promise.all([login(urlA, racing), login(urlB, racing)]);
    expect(both.filter((r) => r === 'ok')).toHaveLength(1);
  });

  it('refuses a stale login on either node while the session of a newer password is open on the other', async () => {
    const { id, password } = await registeredDevice('stale');
    const urlA = a.running.addresses.mqtt!;
    const urlB = b.addresses.mqtt!;
    const now = Date.now();
    const open = await openSession(urlA, id, password(now));
    if (typeof open === 'number') throw new Error(`the first login was refused: CONNACK ${open}`);
    // Logins that finish after their device gave up on them carry older passwords: CONNACK 3
    // (retry later) on the other node and on the same one, and the open session stays.
    expect(await openSession(urlB, id, password(now - 10_000))).toBe(3);
    expect(await openSession(urlA, id, password(now - 5_000))).toBe(3);
    expect(open.connected).toBe(true);
    // A newer password on the other node takes the session over, as a reconnect does.
    const newer = await openSession(urlB, id, password(now + 1_000));
    if (typeof newer === 'number') throw new Error(`the newer login was refused: CONNACK ${newer}`);
    await until('the older connection closed by the newer login', () => !open.connected, 20_000);
    open.end(true);
    // Once the newest session ended, an older password (a clock stepped back) gets in again.
    newer.end(true);
    let again: mqtt.MqttClient | number = 3;
    await until(
      'an older password admitted after the session ended',
      async () => {
        again = await openSession(urlA, id, password(now - 2_000));
        return typeof again !== 'number';
      },
      20_000,
    );
    (again as unknown as mqtt.MqttClient).end(true);
  });

  it('delivers offers published by node A to devices on node B, which finish the rollout', async () => {
    expect(onB.length).toBeGreaterThan(0);
    await base.publish('1.1.0');
    const rolloutId = await startRollout('1.1.0');
    await until('an offer reached every device on node B', () =>
      onB.every((id) => (commands.get(id) ?? 0) > 0),
    );
    // Node A's engine sent them; node B published none of them.
    for (const id of onB) expect(publishedByB.get(id) ?? 0).toBe(0);
    await finished(rolloutId, 'completed');
    for (const d of fleet.devices) expect(d.current?.release).toBe('1.1.0');
  }, 300_000);

  it('marks the devices of a killed node offline from a survivor, and they come back online through nginx', async () => {
    onB = fleet.devices.map((d) => d.id).filter((id) => b.broker!.isConnected(id));
    expect(onB.length).toBeGreaterThan(0);
    const store = a.running.ctx.store;
    const deadNode = b.broker!.aedes.id;
    expect((await store.devices.onlineOn(deadNode)).sort()).toEqual([...onB].sort());
    const heard: { deviceId: string; online: boolean }[] = [];
    const unsubscribe = a.running.ctx.bus.subscribe((e) => {
      if (e.type === 'device.connection') heard.push(e.data as { deviceId: string; online: boolean });
    });
    try {
      // Killed: no goodbye, nothing flushed (its queued writes are dropped at once). nginx stops
      // too, so the devices cannot reconnect before the survivor acts: with nginx up they would
      // be online on node A within seconds, and rightly never marked offline.
      killedAt = Date.now();
      const crashed = b.crash();
      const lbPort = lb.port;
      await lb.close();
      await crashed;
      await until(
        "node B's devices offline in the store, marked by node A",
        async () =>
          (await Promise.all(onB.map((id) => store.devices.get(id)))).every((d) => d?.online === false),
        60_000,
      );
      // The same live events a disconnect emits, once per device.
      for (const id of onB)
        expect(
          heard.filter((e) => e.deviceId === id && !e.online),
          id,
        ).toHaveLength(1);
      expect(await store.devices.onlineOn(deadNode)).toEqual([]);
      // nginx back (node B still dead): every device logs in on node A, online there.
      const node = (url: string | null) => new URL(url!).host;
      lb = await startNginxStream({
        nodes: [node(a.running.addresses.mqtt), node(b.addresses.mqtt)],
        port: lbPort,
      });
      await until(
        'every device online again',
        async () => (await base.server.onlineCount()) === DEVICES,
        90_000,
      );
      for (const id of onB)
        expect(
          heard.some((e) => e.deviceId === id && e.online),
          id,
        ).toBe(true);
    } finally {
      unsubscribe();
    }
  }, 200_000);

  it('moves the devices of a killed node to the other one through nginx, where they keep reporting', async () => {
    await until(
      'every device connected to node A',
      () => a.running.broker!.connectedCount === DEVICES,
      90_000,
    ).catch((err) => {
      console.error(
        JSON.stringify({
          connected: fleet.devices.map((d) => [d.id, a.running.broker!.isConnected(d.id)]),
          log: fleet.log.slice(-30),
        }),
      );
      throw err;
    });
    // An update that fails its health check: every device reports `rolled-back`, now through node A.
    await base.publish('1.2.0-bad');
    await startRollout('1.2.0-bad');
    const store = a.running.ctx.store;
    await until(
      'every device reported its roll-back after the kill',
      async () =>
        (
          await Promise.all(
            fleet.devices.map((d) => store.events.timeline(d.id, Number.MAX_SAFE_INTEGER, 50)),
          )
        ).every((timeline) => timeline.some((e) => e.kind === 'rolled-back' && e.received > killedAt)),
      240_000,
    );
  }, 400_000);

  /** Every event a device saw acknowledged is stored, nothing it never sent is, no (device, eventId) twice. */
  const expectStoredOnce = async () => {
    const store = a.running.ctx.store;
    let total = 0;
    for (const d of fleet.devices) {
      await until(
        `${d.id} has nothing left in its outbox`,
        () => acked.get(d.id)?.size === tried.get(d.id)?.size,
      );
      const stored = (await store.events.timeline(d.id, Number.MAX_SAFE_INTEGER, 10_000)).map(
        (e) => e.eventId,
      );
      total += stored.length;
      expect(new Set(stored).size, d.id).toBe(stored.length);
      expect(new Set(stored), d.id).toEqual(acked.get(d.id));
    }
    return total;
  };

  it('stored every report exactly once: device histories against the store', async () => {
    expect(await expectStoredOnce()).toBeGreaterThanOrEqual(DEVICES * 6);
  });

  it('logs a coded error when Redis stops mid-run, refuses logins meanwhile, and recovers when it is back', async () => {
    const target = fleet.devices[0]!.id;
    await redis.stop();
    await until('redis loss logged', () => logA.some((l) => l.includes('FLOTILLA_ERR_SERVER_REDIS')));
    // The device's connection is cut: its logins are refused ('busy') while Redis is down.
    const busy = async () =>
      (await a.running.ctx.metrics.mqttAuth.get()).values.find((v) => v.labels.result === 'busy')?.value ?? 0;
    const busyBefore = await busy();
    a.running.broker!.disconnect(target);
    await until('device disconnected', () => !a.running.broker!.isConnected(target));
    await until('a login refused while Redis is down', async () => (await busy()) > busyBefore);
    expect(a.running.broker!.isConnected(target)).toBe(false);
    // The refusal says why, with the code.
    expect(logA.some((l) => l.includes('mqtt auth refused') && l.includes('FLOTILLA_ERR_SERVER_REDIS'))).toBe(
      true,
    );
    await redis.start();
    await until('redis back logged', () => logA.some((l) => l.includes('redis connection back')));
    await until('device reconnected', () => a.running.broker!.isConnected(target), 90_000);
    // A command published now reaches it.
    const before = commands.get(target) ?? 0;
    await until(
      'a command reaches the device after the Redis restart',
      async () => {
        await a.running
          .broker!.publishCommand(target, {
            schemaVersion: 1,
            type: 'cancel',
            commandId: `c-${randomBytes(6).toString('hex')}`,
            deploymentId: 'dep-none',
          } as never)
          .catch(() => undefined);
        await new Promise((r) => setTimeout(r, 200));
        return (commands.get(target) ?? 0) > before;
      },
      30_000,
    );
    // Nothing the devices sent around the outage was lost or stored twice.
    await expectStoredOnce();
  }, 200_000);
});

describe.skipIf(redisMissing() !== null)('a node whose Redis is unreachable', () => {
  it('does not start: FLOTILLA_ERR_SERVER_REDIS with a hint', async () => {
    const port = await freePort();
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(join(tmpdir(), 'flotilla-redis-down-'));
    try {
      const err = await createServer({
        dataDir: join(dir, 'server'),
        devKeys: true,
        redis: `redis://127.0.0.1:${port}`,
        logLevel: 'silent',
      }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: 'FLOTILLA_ERR_SERVER_REDIS' });
      expect((err as { hint: string }).hint).toMatch(/--redis/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
