import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { Aedes } from 'aedes';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { endClients } from './helpers.js';

// patches/aedes*.patch: a reconnecting persistent session with nothing queued skips aedes' per-connect
// stream pipeline, and a SUBSCRIBE skips the retained-message stream while no retained message
// exists (the two largest costs of a reconnect storm). These pin that the patches are applied and
// that both paths still deliver when there is something to deliver.

interface CountingPersistence {
  outgoingCount(client: { id: string }): number;
  retainedCount(): number;
}

let broker: Aedes | undefined;
let server: Server | undefined;
const clients: MqttClient[] = [];

afterEach(async () => {
  await endClients(clients);
  server?.close();
  await new Promise<void>((r) => (broker ? broker.close(() => r()) : r()));
  broker = undefined;
});

async function start(): Promise<{ url: string; persistence: CountingPersistence }> {
  broker = await Aedes.createBroker();
  server = createServer(broker.handle);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return {
    url: `mqtt://127.0.0.1:${port}`,
    persistence: (broker as unknown as { persistence: CountingPersistence }).persistence,
  };
}

async function client(url: string, clientId: string, clean: boolean): Promise<MqttClient> {
  const c = await mqtt.connectAsync(url, { clientId, clean, reconnectPeriod: 0 });
  clients.push(c);
  return c;
}

const nextMessage = (c: MqttClient) =>
  new Promise<{ topic: string; payload: string; retain: boolean }>((resolve) =>
    c.once('message', (topic, payload, packet) =>
      resolve({ topic, payload: payload.toString(), retain: packet.retain }),
    ),
  );

describe('the aedes patches', () => {
  it('are applied: the memory persistence counts queued and retained messages synchronously', async () => {
    const { persistence } = await start();
    expect(typeof persistence.outgoingCount).toBe('function');
    expect(typeof persistence.retainedCount).toBe('function');
    expect(persistence.outgoingCount({ id: 'nobody' })).toBe(0);
    expect(persistence.retainedCount()).toBe(0);
  });

  it('a persistent session with a queued QoS 1 message still gets it on reconnect', async () => {
    const { url, persistence } = await start();
    const device = await client(url, 'TEST-ONLY-queued', false);
    await device.subscribeAsync('q/TEST-ONLY', { qos: 1 });
    await device.endAsync();
    const sender = await client(url, 'TEST-ONLY-sender', true);
    await sender.publishAsync('q/TEST-ONLY', 'while-away', { qos: 1 });
    expect(persistence.outgoingCount({ id: 'TEST-ONLY-queued' })).toBe(1);

    const back = mqtt.connect(url, { clientId: 'TEST-ONLY-queued', clean: false, reconnectPeriod: 0 });
    clients.push(back);
    const got = await nextMessage(back);
    expect(got).toEqual({ topic: 'q/TEST-ONLY', payload: 'while-away', retain: false });
  });

  it('a persistent session with nothing queued reconnects and receives new messages', async () => {
    const { url, persistence } = await start();
    const device = await client(url, 'TEST-ONLY-empty', false);
    await device.subscribeAsync('e/TEST-ONLY', { qos: 1 });
    await device.endAsync();
    expect(persistence.outgoingCount({ id: 'TEST-ONLY-empty' })).toBe(0);
    const back = await client(url, 'TEST-ONLY-empty', false);
    const sender = await client(url, 'TEST-ONLY-sender', true);
    const got = nextMessage(back);
    await sender.publishAsync('e/TEST-ONLY', 'after', { qos: 1 });
    expect(await got).toEqual({ topic: 'e/TEST-ONLY', payload: 'after', retain: false });
  });

  it('a SUBSCRIBE still gets a retained message once one exists', async () => {
    const { url, persistence } = await start();
    const sender = await client(url, 'TEST-ONLY-sender', true);
    await sender.publishAsync('r/TEST-ONLY', 'kept', { qos: 1, retain: true });
    expect(persistence.retainedCount()).toBe(1);
    const late = await client(url, 'TEST-ONLY-late', true);
    const got = nextMessage(late);
    await late.subscribeAsync('r/+', { qos: 1 });
    expect(await got).toEqual({ topic: 'r/TEST-ONLY', payload: 'kept', retain: true });
  });
});
