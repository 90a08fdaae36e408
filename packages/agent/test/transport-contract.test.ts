import type { AddressInfo } from 'node:net';
import net from 'node:net';
import {
  decodeDeviceMessage,
  generateKeyPair,
  mayPublish,
  maySubscribe,
  parseDeviceTopic,
  toHex,
  verifyDevicePassword,
} from '@flotilla/protocol';
import { Aedes } from 'aedes';
import { afterEach, describe, expect, it } from 'vitest';
import { AGENT_LIMITS, MqttTransport, systemClock, type Transport } from '../src/index.js';
import { MemoryHub } from '../src/testing.js';
import { closeAllConnections, closeBroker, publishCommand } from './helpers.js';

/**
 * The server-link contract, run against MQTT (the real MqttTransport, a real aedes broker on
 * loopback, device-password auth and the ACL) and the in-memory link of the tests and simulator.
 * The MQTT link goes down and up through a TCP relay in front of the broker, so the broker (and
 * the device's persistent session) lives on while the device is cut off, as on a real network.
 */
interface Link {
  transport: Transport;
  /** What the server side received from the device, per channel. */
  received(): { channel: string; payload: unknown }[];
  /** The server sends a command (QoS 1). */
  sendCommand(cmd: unknown): Promise<void>;
  setOnline(online: boolean): Promise<void>;
  close(): Promise<void>;
}

const DEVICE = 'dev-9';

async function memoryLink(): Promise<Link> {
  const hub = new MemoryHub();
  return {
    transport: hub.transport(DEVICE),
    received: () => hub.delivered.map((m) => ({ channel: m.channel, payload: m.payload })),
    sendCommand: async (cmd) => hub.sendCommand(DEVICE, cmd),
    setOnline: async (online) => hub.setOnline(DEVICE, online),
    close: async () => undefined,
  };
}

/** Connection status messages (online message, last will) the MQTT link's broker saw: not reports. */
let statuses: { online: boolean; session: string }[] = [];

async function mqttLink(): Promise<Link> {
  statuses = [];
  const key = generateKeyPair();
  const broker = await Aedes.createBroker();
  const nonces = new Set<string>();
  broker.authenticate = (client, username, password, done) => {
    try {
      const c = verifyDevicePassword(
        password?.toString() ?? '',
        username ?? '',
        toHex(key.publicKey),
        new Date(),
      );
      if (nonces.has(c.nonce) || client.id !== username) throw new Error('replay');
      nonces.add(c.nonce);
      done(null, true);
    } catch {
      done(Object.assign(new Error('bad auth'), { returnCode: 4 }) as never, false);
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
  const received: { channel: string; payload: unknown }[] = [];
  broker.on('publish', (packet, client) => {
    if (!client) return;
    const t = parseDeviceTopic(packet.topic);
    if (t?.channel === 'status') statuses.push(decodeDeviceMessage('status', packet.payload));
    else if (t) received.push({ channel: t.channel, payload: JSON.parse(packet.payload.toString()) });
  });
  const brokerServer = net.createServer(broker.handle);
  await new Promise<void>((r) => brokerServer.listen(0, '127.0.0.1', r));
  const brokerPort = (brokerServer.address() as AddressInfo).port;

  // The device's network: a relay that can drop every connection and refuse new ones.
  let online = true;
  const pipes = new Set<net.Socket>();
  const relay = net.createServer((sock) => {
    if (!online) return sock.destroy();
    const up = net.connect(brokerPort, '127.0.0.1');
    for (const s of [sock, up]) {
      pipes.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        pipes.delete(s);
        sock.destroy();
        up.destroy();
      });
    }
    sock.pipe(up).pipe(sock);
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  const transport = new MqttTransport({
    url: `mqtt://127.0.0.1:${(relay.address() as AddressInfo).port}`,
    deviceId: DEVICE,
    auth: { kind: 'device-key', key },
    clock: systemClock,
    limits: { ...AGENT_LIMITS.mqtt, backoffBaseMs: 20, backoffMaxMs: 100, connectTimeoutMs: 2000 },
  });
  return {
    transport,
    received: () => received,
    sendCommand: (cmd) => publishCommand(broker, DEVICE, cmd),
    setOnline: async (v) => {
      online = v;
      if (!v) for (const s of pipes) s.destroy();
    },
    close: async () => {
      for (const s of pipes) s.destroy();
      closeAllConnections(relay);
      await new Promise<void>((r) => relay.close(() => r()));
      await closeBroker(broker, brokerServer);
    },
  };
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Starts the link and records what the transport reports to the agent. */
function observe(t: Transport) {
  const seen = { connects: 0, disconnects: 0, commands: [] as unknown[] };
  t.start({
    onCommand: (p) => seen.commands.push(JSON.parse(Buffer.from(p).toString())),
    onConnect: () => seen.connects++,
    onDisconnect: () => seen.disconnects++,
  });
  return seen;
}

const LINKS: Record<string, () => Promise<Link>> = { mqtt: mqttLink, memory: memoryLink };

for (const [name, make] of Object.entries(LINKS)) {
  describe(`transport contract: ${name}`, () => {
    let link: Link;
    afterEach(async () => {
      await link?.transport.stop();
      await link?.close();
    });

    it('connects and says so once; publishes reach the server on the named channel', async () => {
      link = await make();
      const seen = observe(link.transport);
      await until(() => seen.connects === 1, 'connect');
      expect(link.transport.connected()).toBe(true);
      await link.transport.publish('state', JSON.stringify({ n: 1 }), 1);
      await link.transport.publish('events', JSON.stringify({ n: 2 }), 0);
      await link.transport.publish('inventory', JSON.stringify({ n: 3 }), 1);
      await until(() => link.received().length === 3, 'three messages');
      expect(link.received()).toEqual([
        { channel: 'state', payload: { n: 1 } },
        { channel: 'events', payload: { n: 2 } },
        { channel: 'inventory', payload: { n: 3 } },
      ]);
      expect(seen.connects).toBe(1);
    });

    it('delivers server commands to onCommand as the raw payload', async () => {
      link = await make();
      const seen = observe(link.transport);
      await until(() => seen.connects === 1, 'connect');
      await link.sendCommand({ type: 'offer', commandId: 'c-1' });
      await until(() => seen.commands.length === 1, 'command');
      expect(seen.commands).toEqual([{ type: 'offer', commandId: 'c-1' }]);
    });

    it('offline: reports the disconnect and publish rejects (durable events wait in the outbox)', async () => {
      link = await make();
      const seen = observe(link.transport);
      await until(() => seen.connects === 1, 'connect');
      await link.setOnline(false);
      await until(() => seen.disconnects === 1, 'disconnect');
      expect(link.transport.connected()).toBe(false);
      await expect(link.transport.publish('events', '{"n":1}', 1)).rejects.toThrow();
      expect(link.received()).toEqual([]);
    });

    it('back online: connects again, and commands sent while offline arrive (persistent session)', async () => {
      link = await make();
      const seen = observe(link.transport);
      await until(() => seen.connects === 1, 'connect');
      await link.setOnline(false);
      await until(() => seen.disconnects === 1, 'disconnect');
      await link.sendCommand({ type: 'cancel', commandId: 'c-2' });
      await new Promise((r) => setTimeout(r, 50));
      expect(seen.commands).toEqual([]);
      await link.setOnline(true);
      await until(() => seen.connects === 2, 'reconnect');
      await until(() => seen.commands.length === 1, 'queued command');
      expect(seen.commands).toEqual([{ type: 'cancel', commandId: 'c-2' }]);
      await link.transport.publish('state', '{"n":4}', 1);
      await until(() => link.received().length === 1, 'publish after reconnect');
    });

    it('stop ends the link: not connected, publish rejects, no more callbacks', async () => {
      link = await make();
      const seen = observe(link.transport);
      await until(() => seen.connects === 1, 'connect');
      await link.transport.stop();
      expect(link.transport.connected()).toBe(false);
      await expect(link.transport.publish('state', '{}', 1)).rejects.toThrow();
      await link.sendCommand({ type: 'cancel', commandId: 'c-3' });
      await new Promise((r) => setTimeout(r, 50));
      expect(seen.commands).toEqual([]);
      expect(seen.connects).toBe(1);
    });
  });
}

describe('MQTT link: connection status for a server behind any broker', () => {
  let link: Link;
  afterEach(async () => {
    await link?.transport.stop();
    await link?.close();
  });

  it('announces each connection online and leaves a last will naming it, which the broker publishes when the link dies', async () => {
    link = await mqttLink();
    const seen = observe(link.transport);
    await until(() => seen.connects === 1 && statuses.length === 1, 'online message');
    const first = statuses[0]!;
    expect(first.online).toBe(true);
    // The link dies without a DISCONNECT: the broker publishes the will of that connection.
    await link.setOnline(false);
    await until(() => statuses.length === 2, 'last will');
    expect(statuses[1]).toEqual({ ...first, online: false });
    await link.setOnline(true);
    await until(() => seen.connects === 2 && statuses.length === 3, 'online again');
    expect(statuses[2]!.online).toBe(true);
    expect(statuses[2]!.session).not.toBe(first.session);
  });

  it('says offline itself on an orderly stop (the broker drops the will with the DISCONNECT)', async () => {
    link = await mqttLink();
    const seen = observe(link.transport);
    await until(() => seen.connects === 1 && statuses.length === 1, 'online message');
    await link.transport.stop();
    // The broker processed the DISCONNECT once the connection is gone from its client list.
    await link.close();
    expect(statuses.map((m) => m.online)).toEqual([true, false]);
    expect(statuses[1]!.session).toBe(statuses[0]!.session);
  });
});
