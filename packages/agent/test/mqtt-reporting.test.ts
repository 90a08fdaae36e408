import type { AddressInfo } from 'node:net';
import net from 'node:net';
import {
  type DeviceEventMessage,
  decodeDeviceMessage,
  generateKeyPair,
  makeDevicePassword,
  mayPublish,
  maySubscribe,
  toHex,
  verifyDevicePassword,
} from '@flotilla/protocol';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { AGENT_LIMITS, MqttTransport, systemClock } from '../src/index.js';
import { closeBroker, makeImage, publishCommand, Rig } from './helpers.js';

/**
 * A real aedes broker on loopback with the server's rules: a device logs in with its id and a
 * fresh signed password (nonces remembered: no replay), and may only touch its own topics.
 */
interface Broker {
  port: number;
  passwords: string[];
  received: { topic: string; payload: Buffer }[];
  close(): Promise<void>;
  publishCommand(deviceId: string, cmd: unknown): Promise<void>;
}

async function startBroker(devicePublicKey: string, port = 0): Promise<Broker> {
  const broker = await Aedes.createBroker();
  const seen = new Set<string>();
  const passwords: string[] = [];
  const received: Broker['received'] = [];
  broker.authenticate = (client, username, password, done) => {
    const pw = password?.toString() ?? '';
    passwords.push(pw);
    try {
      const claims = verifyDevicePassword(pw, username ?? '', devicePublicKey, new Date());
      if (seen.has(claims.nonce) || client.id !== username) throw new Error('replay');
      seen.add(claims.nonce);
      done(null, true);
    } catch {
      const err = Object.assign(new Error('bad auth'), { returnCode: 4 });
      done(err as never, false);
    }
  };
  broker.authorizePublish = (client, packet, done) =>
    done(
      client && mayPublish({ kind: 'device', deviceId: client.id }, packet.topic)
        ? null
        : new Error('denied'),
    );
  broker.authorizeSubscribe = (client, sub, done) =>
    done(null, client && maySubscribe({ kind: 'device', deviceId: client.id }, sub.topic) ? sub : null);
  broker.on('publish', (packet, client) => {
    if (client) received.push({ topic: packet.topic, payload: Buffer.from(packet.payload as Buffer) });
  });
  const server = net.createServer(broker.handle);
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    passwords,
    received,
    publishCommand: (deviceId, cmd) => publishCommand(broker, deviceId, cmd),
    close: () => closeBroker(broker, server),
  };
}

async function until(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const deviceKey = generateKeyPair();
const limits = { ...AGENT_LIMITS.mqtt, backoffBaseMs: 50, backoffMaxMs: 200, connectTimeoutMs: 2000 };

let broker: Broker | undefined;
let rig: Rig | undefined;
afterEach(async () => {
  await rig?.cleanup();
  await broker?.close();
  rig = undefined;
  broker = undefined;
});

function events(b: Broker) {
  return b.received
    .filter((m) => m.topic.endsWith('/events'))
    .map((m) => decodeDeviceMessage('events', m.payload) as typeof DeviceEventMessage.static);
}

describe('MQTT reporting against a real broker (aedes, MQTT 3.1.1)', () => {
  it('reports state, inventory and every milestone of an update; takes the offer from the commands topic', async () => {
    broker = await startBroker(toHex(deviceKey.publicKey));
    rig = await Rig.create();
    const port = broker.port;
    rig.transportFactory = () =>
      new MqttTransport({
        url: `mqtt://127.0.0.1:${port}`,
        deviceId: 'dev-1',
        auth: { kind: 'device-key', key: deviceKey },
        clock: systemClock,
        limits,
      });
    await rig.powerOn();
    await until(() => broker!.received.some((m) => m.topic.endsWith('/inventory')), 'inventory');
    const inv = decodeDeviceMessage(
      'inventory',
      broker.received.find((m) => m.topic.endsWith('/inventory'))!.payload,
    );
    expect(inv).toMatchObject({
      hardware: 'sim-board-v1',
      bootloader: 'file',
      slots: [
        { name: 'A', version: '1.0.0' },
        { name: 'B', version: null },
      ],
    });

    await broker.publishCommand('dev-1', rig.offer(makeImage(5, rig.factory.length), { version: '1.1.0' }));
    await until(
      () => rig!.agent?.record.deployment !== null || rig!.agent?.record.state !== 'Idle',
      'offer taken',
    );
    await rig.runToRest();
    await until(() => events(broker!).some((e) => e.kind === 'healthy'), 'healthy event');
    const kinds = events(broker)
      .filter((e) => e.kind !== 'log' && e.kind !== 'download-progress')
      .map((e) => e.kind);
    expect(kinds).toEqual(['offer-accepted', 'downloaded', 'installed', 'rebooting', 'healthy']);
    await until(
      () =>
        decodeDeviceMessage(
          'state',
          broker!.received.filter((m) => m.topic.endsWith('/state')).at(-1)!.payload,
        ).agentState === 'Idle',
      'Idle state',
    );
    const states = broker.received
      .filter((m) => m.topic.endsWith('/state'))
      .map((m) => decodeDeviceMessage('state', m.payload));
    expect(states.at(-1)).toMatchObject({
      agentState: 'Idle',
      activeSlot: 'B',
      version: '1.1.0',
      securityVersion: 2,
    });
    // Two lives (before and after the reboot), each with a fresh password: no replay.
    expect(new Set(broker.passwords).size).toBe(broker.passwords.length);
    expect(broker.passwords.length).toBeGreaterThanOrEqual(2);
  });

  it('buffers milestones on disk while the broker is down and delivers them, once each, after reconnecting', async () => {
    broker = await startBroker(toHex(deviceKey.publicKey));
    const port = broker.port;
    rig = await Rig.create();
    rig.transportFactory = () =>
      new MqttTransport({
        url: `mqtt://127.0.0.1:${port}`,
        deviceId: 'dev-1',
        auth: { kind: 'device-key', key: deviceKey },
        clock: systemClock,
        limits,
      });
    await rig.powerOn();
    await until(() => (rig!.deps!.transport as MqttTransport).connects > 0, 'connected and subscribed');
    const cmd = rig.offer(makeImage(6, rig.factory.length), { version: '1.1.0' });
    await broker.publishCommand('dev-1', cmd);
    await until(() => rig!.agent!.record.state !== 'Idle', 'offer taken');
    await broker.close(); // outage: the whole update happens offline
    broker = undefined;
    await rig.runToRest();
    const queued = await rig.deps!.outbox.list();
    expect(queued.map((q) => (JSON.parse(q.payload) as { kind: string }).kind)).toEqual(
      expect.arrayContaining(['installed', 'rebooting', 'healthy']),
    );
    broker = await startBroker(toHex(deviceKey.publicKey), port);
    await until(() => events(broker!).some((e) => e.kind === 'healthy'), 'healthy after reconnect');
    const ids = events(broker).map((e) => e.eventId);
    expect(new Set(ids).size).toBe(ids.length);
    expect(events(broker).map((e) => e.kind)).toEqual(
      expect.arrayContaining(['installed', 'rebooting', 'healthy']),
    );
    await rig.agent!.flushReports();
    expect(await rig.deps!.outbox.list()).toEqual([]);
  });

  it('refuses a replayed password and a publish on the topic of another device', async () => {
    broker = await startBroker(toHex(deviceKey.publicKey));
    const t = new MqttTransport({
      url: `mqtt://127.0.0.1:${broker.port}`,
      deviceId: 'dev-1',
      auth: { kind: 'device-key', key: deviceKey },
      clock: systemClock,
      limits,
    });
    t.start({ onCommand: () => undefined, onConnect: () => undefined, onDisconnect: () => undefined });
    await until(() => t.connects > 0, 'connected');
    const replay = mqtt.connect(`mqtt://127.0.0.1:${broker.port}`, {
      protocolVersion: 4,
      clientId: 'dev-1',
      username: 'dev-1',
      password: broker.passwords[0]!,
      reconnectPeriod: 0,
    });
    const refused = await new Promise<boolean>((resolve) => {
      replay.once('connect', () => resolve(false));
      replay.once('error', () => resolve(true));
      replay.once('close', () => resolve(true));
    });
    replay.end(true);
    expect(refused).toBe(true);
    await t.stop();

    const own = mqtt.connect(`mqtt://127.0.0.1:${broker.port}`, {
      protocolVersion: 4,
      clientId: 'dev-1',
      username: 'dev-1',
      password: makeDevicePassword('dev-1', deviceKey, new Date(), 'ab'.repeat(16)),
      reconnectPeriod: 0,
    });
    await new Promise((r) => own.once('connect', r));
    // aedes drops the connection on a denied publish (3.1.1 has no negative PUBACK).
    await Promise.race([
      own.publishAsync('flotilla/v1/devices/dev-2/events', '{}', { qos: 1 }).catch(() => undefined),
      new Promise<void>((r) => own.once('close', () => r())),
    ]);
    own.end(true);
    expect(broker.received.filter((m) => m.topic.includes('dev-2'))).toEqual([]);
  });
});
