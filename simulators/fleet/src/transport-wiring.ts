import { randomBytes } from 'node:crypto';
import type { Transport, TransportHandlers } from '@flotilla/agent';
import { deviceTopic, makeDevicePassword } from '@flotilla/protocol';
import mqtt, { type MqttClient } from 'mqtt';
import type { LaunchContext } from './ports.js';

/**
 * The device's MQTT link (DESIGN.md §5), in the agent's `Transport` shape: MQTT 3.1.1 (aedes
 * speaks nothing newer), username = device id, a fresh signed time-bound password on every
 * (re)connect, a persistent session with the commands topic at QoS 1, reconnect with jittered
 * backoff. `kill()` drops the socket without DISCONNECT, as a power cut does.
 *
 * The agent package has no MQTT transport yet; when it ships one, `defaultTransport` switches to it.
 */
export class SimMqttTransport implements Transport {
  private client: MqttClient | null = null;
  private handlers: TransportHandlers | null = null;
  private up = false;
  private attempts = 0;
  private dead = false;

  constructor(private readonly ctx: LaunchContext) {}

  start(handlers: TransportHandlers): void {
    this.handlers = handlers;
    this.connect();
  }

  private connect(): void {
    if (this.dead) return;
    const { deviceId, key } = this.ctx;
    const commands = deviceTopic(deviceId, 'commands');
    const client = mqtt.connect({
      host: this.ctx.mqtt.host,
      port: this.ctx.mqtt.port,
      protocol: 'mqtt',
      protocolVersion: 4,
      clientId: deviceId,
      clean: false,
      username: deviceId,
      password: makeDevicePassword(deviceId, key, new Date(), randomBytes(16).toString('hex')),
      keepalive: 60,
      reconnectPeriod: 0, // reconnects are ours: each needs a fresh password
      connectTimeout: 20_000,
    });
    this.client = client;
    client.on('connect', (ack) => {
      this.attempts = 0;
      const subscribed = ack.sessionPresent
        ? Promise.resolve()
        : client.subscribeAsync(commands, { qos: 1 }).then(() => undefined);
      subscribed.then(
        () => {
          if (this.client !== client || this.dead) return;
          this.up = true;
          this.handlers?.onConnect();
        },
        () => client.end(true),
      );
    });
    client.on('message', (topic, payload) => {
      if (topic === commands && this.client === client) this.handlers?.onCommand(payload);
    });
    client.on('error', () => undefined);
    client.on('close', () => {
      if (this.client !== client) return;
      const was = this.up;
      this.up = false;
      this.client = null;
      client.removeAllListeners('message');
      client.end(true);
      if (was) this.handlers?.onDisconnect();
      if (this.dead || !this.handlers) return;
      const base = 200 * this.ctx.timeScale * 20;
      const cap = Math.min(120_000 * this.ctx.timeScale, base * 2 ** Math.min(this.attempts++, 10));
      const delay = Math.max(50, cap / 2 + (Math.random() * cap) / 2);
      setTimeout(() => this.connect(), delay).unref();
    });
  }

  connected(): boolean {
    return this.up;
  }

  async publish(channel: 'state' | 'events' | 'inventory', payload: string, qos: 0 | 1): Promise<void> {
    const c = this.client;
    if (!c || !this.up || this.dead) throw new Error('offline');
    await c.publishAsync(deviceTopic(this.ctx.deviceId, channel), payload, { qos });
  }

  async stop(): Promise<void> {
    this.handlers = null;
    this.dead = true;
    const c = this.client;
    this.client = null;
    this.up = false;
    if (c) await c.endAsync(false).catch(() => undefined);
  }

  kill(): void {
    this.handlers = null;
    this.dead = true;
    const c = this.client;
    this.client = null;
    this.up = false;
    if (c) {
      c.stream?.destroy();
      c.end(true);
    }
  }
}

export const defaultTransport = (ctx: LaunchContext): SimMqttTransport => new SimMqttTransport(ctx);
