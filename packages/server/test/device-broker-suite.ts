import { missingTools } from '@flotilla/image';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/index.js';
import { auth, connect, endClients, eventMessage, stateMessage, waitFor } from './helpers.js';

/** A device as the suite sees it: fresh credentials per connection and some that must not work. */
export interface BrokerDevice {
  id: string;
  credentials(): { username: string; password: string };
  wrongCredentials(): { username: string; password: string };
}

/** One broker set-up the same device checks run against (embedded aedes over TCP/TLS/WS, Mosquitto). */
export interface DeviceBroker {
  server: RunningServer;
  /** Where devices connect. */
  url: string;
  /** What every client needs on top (e.g. the test CA for mqtts). */
  clientOptions: IClientOptions;
  /** Enrols an accepted device that can connect from now on. */
  addDevice(id: string): Promise<BrokerDevice>;
  /** What the broker does to a publish its ACL forbids: aedes closes the connection, Mosquitto drops the message. */
  deniedPublish: 'disconnect' | 'drop';
  close(): Promise<void>;
}

const topic = (id: string, channel: string) => `flotilla/v1/devices/${id}/${channel}`;

/** Resolves true when the connection closes within ms, false otherwise. */
function closedWithin(c: MqttClient, ms: number): Promise<boolean> {
  if (c.disconnected || c.disconnecting) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    c.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/**
 * The device-facing contract every broker set-up must keep (after MQTT.js's abstract test
 * suites): authentication, the per-device ACL, payload limits and validation, storage of
 * reports, QoS 1 commands to persistent sessions, and revocation. Cases that only make sense
 * for one broker live in that broker's own test file.
 */
export function deviceBrokerSuite(
  name: string,
  setup: () => Promise<DeviceBroker>,
  opts: { needs?: string[] } = {},
): void {
  describe.skipIf(missingTools(opts.needs ?? []).length > 0)(`device contract: ${name}`, () => {
    let broker: DeviceBroker;
    let a: BrokerDevice;
    let b: BrokerDevice;
    const clients: MqttClient[] = [];
    let n = 0;
    const uid = (p: string) => `${p}-${++n}-${Math.random().toString(36).slice(2, 8)}`;

    beforeAll(async () => {
      broker = await setup();
      a = await broker.addDevice('TEST-ONLY-suite-a');
      b = await broker.addDevice('TEST-ONLY-suite-b');
    }, 30_000);
    afterAll(async () => {
      await endClients(clients);
      await broker?.close();
    });

    const open = (o: IClientOptions) => connect(broker.url, { ...broker.clientOptions, ...o });
    async function device(d: BrokerDevice, o: IClientOptions = {}): Promise<MqttClient> {
      const c = await open({ clientId: d.id, clean: false, ...d.credentials(), ...o });
      clients.push(c);
      return c;
    }
    const storedEvents = async (id: string, eventId: string) =>
      (
        (await broker.server.ctx.store.sql.get(
          'SELECT COUNT(*) AS n FROM device_events WHERE device_id = ? AND event_id = ?',
          [id, eventId],
        )) as { n: number }
      ).n;
    /** The server is unharmed: a fresh connection's report is stored. */
    async function stillWorks(d: BrokerDevice): Promise<void> {
      const c = await device(d);
      const marker = uid('alive');
      await c.publishAsync(topic(d.id, 'events'), JSON.stringify(eventMessage(marker, 1, 'log')), { qos: 1 });
      await waitFor(async () => (await storedEvents(d.id, marker)) === 1, 5000, `marker ${marker} stored`);
      await c.endAsync();
    }

    it('refuses a client without credentials', async () => {
      await expect(open({ clientId: a.id })).rejects.toThrow(/Not authorized|Bad username or password/);
    });

    it('refuses wrong credentials for a real device', async () => {
      await expect(open({ clientId: a.id, ...a.wrongCredentials() })).rejects.toThrow(
        /Not authorized|Bad username or password/,
      );
    });

    it('stores state and events, and an event only once when the device resends it', async () => {
      const c = await device(a);
      await c.publishAsync(topic(a.id, 'state'), JSON.stringify(stateMessage(3, { version: '2.0.0' })), {
        qos: 1,
      });
      const eventId = uid('ev');
      const e = JSON.stringify(eventMessage(eventId, 4, 'log'));
      await c.publishAsync(topic(a.id, 'events'), e, { qos: 1 });
      await c.publishAsync(topic(a.id, 'events'), e, { qos: 1 });
      await waitFor(
        async () => (await broker.server.ctx.store.devices.get(a.id))?.version === '2.0.0',
        5000,
        'state stored',
      );
      await waitFor(async () => (await storedEvents(a.id, eventId)) === 1, 5000, 'event stored');
      // A marker after the resend: once it is stored, the resend has been handled too.
      const marker = uid('after-resend');
      await c.publishAsync(topic(a.id, 'events'), JSON.stringify(eventMessage(marker, 5, 'log')), { qos: 1 });
      await waitFor(async () => (await storedEvents(a.id, marker)) === 1, 5000, 'marker stored');
      expect(await storedEvents(a.id, eventId)).toBe(1);
      await c.endAsync();
    });

    it('never lets device A publish as device B', async () => {
      const c = await device(a);
      const closed = closedWithin(c, 3000);
      const forged = uid('forged');
      c.publish(topic(b.id, 'state'), JSON.stringify(stateMessage(99, { version: '6.6.6' })), { qos: 1 });
      c.publish(topic(b.id, 'events'), JSON.stringify(eventMessage(forged, 99, 'healthy')), { qos: 1 });
      if (broker.deniedPublish === 'disconnect') expect(await closed).toBe(true);
      else c.end(); // Mosquitto drops the message silently and keeps the connection.
      await stillWorks(a);
      expect((await broker.server.ctx.store.devices.get(b.id))?.version).not.toBe('6.6.6');
      expect(await storedEvents(b.id, forged)).toBe(0);
    });

    it("delivers nothing of B's commands, B's reports, # or $SYS to A", async () => {
      const ca = await device(a);
      const got: string[] = [];
      ca.on('message', (t) => got.push(t));
      for (const f of [topic(b.id, 'commands'), 'flotilla/v1/devices/+/commands', '#', '$SYS/#'])
        await ca.subscribeAsync(f, { qos: 1 }).catch(() => {}); // aedes answers 0x80, Mosquitto may grant and deliver nothing
      await ca.subscribeAsync(topic(a.id, 'commands'), { qos: 1 });
      const cb = await device(b);
      const gotB: string[] = [];
      cb.on('message', (t) => gotB.push(t));
      await cb.subscribeAsync(topic(b.id, 'commands'), { qos: 1 });
      await cb.publishAsync(topic(b.id, 'events'), JSON.stringify(eventMessage(uid('b'), 1, 'log')), {
        qos: 1,
      });
      const transport = broker.server.ctx.transport()!;
      await transport.publishCommand(b.id, {
        schemaVersion: 1,
        type: 'reboot-request',
        commandId: uid('cb'),
      });
      await waitFor(() => gotB.length === 1, 5000, 'command to B');
      // A's own command goes last: once it arrives, anything misrouted to A would have arrived first.
      await transport.publishCommand(a.id, {
        schemaVersion: 1,
        type: 'reboot-request',
        commandId: uid('ca'),
      });
      await waitFor(() => got.length >= 1, 5000, 'command to A');
      expect(got).toEqual([topic(a.id, 'commands')]);
      await ca.endAsync();
      await cb.endAsync();
    });

    it('closes a connection that sends an oversized payload, and stores nothing of it', async () => {
      const c = await device(a);
      const closed = closedWithin(c, 5000);
      const big = JSON.stringify({
        ...stateMessage(7, { version: '7.7.7' }),
        lastError: 'x'.repeat(200 * 1024),
      });
      c.publish(topic(a.id, 'state'), big, { qos: 1 });
      expect(await closed).toBe(true);
      await stillWorks(a);
      expect((await broker.server.ctx.store.devices.get(a.id))?.version).not.toBe('7.7.7');
    });

    it('drops malformed JSON and wrong-schema messages without disconnecting the device', async () => {
      const c = await device(a);
      const dropped = async () =>
        (await broker.server.ctx.metrics.reportsDropped.get()).values.find(
          (v) => v.labels.reason === 'invalid',
        )?.value ?? 0;
      const before = await dropped();
      const bad = [uid('bad-kind'), uid('bad-extra')];
      const ev = topic(a.id, 'events');
      await c.publishAsync(ev, '{"schemaVersion":1,', { qos: 1 });
      await c.publishAsync(ev, JSON.stringify({ ...eventMessage(bad[0]!, 1, 'log'), kind: 'pwned' }), {
        qos: 1,
      });
      await c.publishAsync(ev, JSON.stringify({ ...eventMessage(bad[1]!, 1, 'log'), extra: true }), {
        qos: 1,
      });
      await c.publishAsync(ev, '{"a":1,"a":2}', { qos: 1 });
      await c.publishAsync(topic(a.id, 'state'), JSON.stringify({ ...stateMessage(8), schemaVersion: 99 }), {
        qos: 1,
      });
      const marker = uid('good-after-bad');
      await c.publishAsync(ev, JSON.stringify(eventMessage(marker, 2, 'log')), { qos: 1 });
      await waitFor(
        async () => (await storedEvents(a.id, marker)) === 1,
        5000,
        'good event after the bad ones',
      );
      expect(c.connected).toBe(true);
      for (const id of bad) expect(await storedEvents(a.id, id)).toBe(0);
      expect((await dropped()) - before).toBe(5);
      await c.endAsync();
    });

    it('delivers a QoS 1 command sent while the device was away once its persistent session reconnects', async () => {
      const first = await device(a);
      await first.subscribeAsync(topic(a.id, 'commands'), { qos: 1 });
      await first.endAsync();
      const commandId = uid('while-away');
      await broker.server.ctx
        .transport()!
        .publishCommand(a.id, { schemaVersion: 1, type: 'reboot-request', commandId });
      const got: { qos: number; commandId: string }[] = [];
      // The handler is attached before CONNACK: the queued message may follow it in the same read.
      const again = mqtt.connect(broker.url, {
        ...broker.clientOptions,
        protocolVersion: 4,
        reconnectPeriod: 0,
        connectTimeout: 5000,
        clientId: a.id,
        clean: false,
        ...a.credentials(),
      });
      clients.push(again);
      again.on('message', (_t, payload, packet) =>
        got.push({ qos: packet.qos, commandId: JSON.parse(payload.toString()).commandId }),
      );
      await waitFor(() => got.some((g) => g.commandId === commandId), 5000, 'queued command');
      expect(got.find((g) => g.commandId === commandId)?.qos).toBe(1);
      await again.endAsync();
    });

    it('closes the connection of a decommissioned device and refuses it from then on', async () => {
      const c3 = await broker.addDevice(`TEST-ONLY-suite-${Math.random().toString(36).slice(2, 8)}`);
      const live = await device(c3);
      const closed = closedWithin(live, 5000);
      const res = await broker.server.app.inject({
        method: 'POST',
        url: `/api/v1/devices/${c3.id}/decommission`,
        headers: auth(),
      });
      expect(res.statusCode, res.body).toBe(200);
      expect(await closed).toBe(true);
      // Mosquitto reloads asynchronously: the refusal must come within a bounded time.
      let refused = false;
      for (let i = 0; i < 50 && !refused; i++) {
        refused = await open({ clientId: c3.id, ...c3.credentials() }).then(
          (c) => {
            c.end(true);
            return false;
          },
          () => true,
        );
        if (!refused) await new Promise((r) => setTimeout(r, 100));
      }
      expect(refused).toBe(true);
    });
  });
}
