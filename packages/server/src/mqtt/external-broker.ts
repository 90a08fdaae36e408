import {
  type DeviceCommand,
  decodeDeviceMessage,
  deviceTopic,
  isFlotillaError,
  parseDeviceTopic,
} from '@flotilla/protocol';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { ServerError } from '../errors.js';
import type { Report, ReportIngestor } from '../ingest/report-ingestor.js';
import type { ServerLimits } from '../limits.js';
import type { Metrics } from '../metrics.js';
import { inBackground } from '../store/background.js';
import { ConnectionSessions } from './connection-sessions.js';
import type { DeviceTransport } from './transport.js';

export interface ExternalBrokerOptions {
  url: string;
  username: string;
  password: string;
  clientId?: string;
  ca?: string | Buffer;
}

export interface ExternalBrokerDeps {
  ingestor: ReportIngestor;
  log: Logger;
  metrics: Metrics;
  limits: ServerLimits;
  /** A device said it is online (after its SUBACK): commands reach it now. */
  onDeviceReachable?: (deviceId: string) => void;
}

/** Topics the server reads: every device's reports and connection status. */
const REPORT_CHANNELS = ['state', 'events', 'inventory', 'status'] as const;
/** Reconnect delay after a report could not be stored: doubles while the store keeps failing. */
const HOLD_MIN_MS = 1000;
const HOLD_MAX_MS = 30_000;

/**
 * The server as a privileged client of an external broker (Mosquitto, EMQX, ...): a persistent
 * session (clean: false) subscribed QoS 1 to every device's reports. The PUBACK of a report is
 * sent only once it is stored. A report the store cannot take (disk full) is not acknowledged:
 * the server holds every later message of that connection too (so order is kept), drops the
 * connection and reconnects, and the broker redelivers what was never acknowledged.
 */
export class ExternalBroker implements DeviceTransport {
  readonly kind = 'external' as const;
  /** Set on a store failure until the next connection: nothing more is acknowledged on this one. */
  private holding = false;
  private holdMs = HOLD_MIN_MS;
  private readonly sessions = new ConnectionSessions();
  /** Other topics the server reads on this connection (the broker's control API answers). */
  private readonly extraHandlers = new Map<string, (payload: Buffer) => void>();

  private constructor(
    readonly client: MqttClient,
    private readonly deps: ExternalBrokerDeps,
  ) {}

  static async connect(o: ExternalBrokerOptions, deps: ExternalBrokerDeps): Promise<ExternalBroker> {
    const client = mqtt.connect(o.url, {
      protocolVersion: 4,
      clientId: o.clientId ?? 'flotilla-server',
      username: o.username,
      password: o.password,
      clean: false,
      reconnectPeriod: HOLD_MIN_MS,
      connectTimeout: 10_000,
      ...(o.ca ? { ca: o.ca } : {}),
    });
    const self = new ExternalBroker(client, deps);
    // A report not stored is not acknowledged (held): the broker delivers it again.
    client.handleMessage = (packet, done) =>
      inBackground(
        deps.log,
        'report from the broker',
        self.onMessage(packet, done).catch((err: Error) => {
          done(err);
          throw err;
        }),
      );
    // A new connection takes reports again from its CONNACK on. Not from 'connect': mqtt.js emits
    // that only after re-sending the server's own queued publishes (offers, broker control), and
    // reports the broker redelivers before then would be refused on the new connection too, with
    // nothing left to drop it again: they would wait unacknowledged for ever.
    client.on('packetreceive', (packet) => {
      if (packet.cmd === 'connack') self.holding = false;
    });
    client.on('error', (err) => deps.log.warn({ err: err.message }, 'external broker error'));
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', (err) => {
        // A refused or unreachable broker at start: no endless reconnecting in the background.
        client.end(true);
        reject(
          new ServerError(
            'FLOTILLA_ERR_SERVER_BROKER',
            `cannot log in to the broker at ${o.url} as ${o.username}: ${err.message} (check --broker, --broker-username and --broker-password-file)`,
            { cause: err },
          ),
        );
      });
    });
    const topics = REPORT_CHANNELS.map((c) => `flotilla/v1/devices/+/${c}`);
    // mqtt.js rejects a SUBACK with a failure code (0x80); older brokers may still grant less.
    const refused = await client.subscribeAsync(topics, { qos: 1 }).then(
      (granted) => (granted.some((grant) => grant.qos === 128) ? new Error('SUBACK 0x80') : null),
      (err: unknown) => err,
    );
    if (refused) {
      // Without its subscriptions the client is useless: close it rather than leave it reconnecting.
      await client.endAsync(true);
      throw new ServerError(
        'FLOTILLA_ERR_SERVER_BROKER',
        `the broker refused the server's subscriptions to flotilla/v1/devices/+/${REPORT_CHANNELS.join(', ')} (allow them in the broker ACL): ${(refused as Error).message}`,
        { cause: refused },
      );
    }
    return self;
  }

  /** Reads `topic` on this connection too (QoS 0; its messages bypass the report path). */
  async listen(topic: string, handler: (payload: Buffer) => void): Promise<void> {
    this.extraHandlers.set(topic, handler);
    await this.client.subscribeAsync(topic, { qos: 0 });
  }

  /** Calls `done()` (sends the PUBACK) once the report is stored or known to be invalid; `done(err)` holds it. */
  private async onMessage(packet: IPublishPacket, done: (err?: Error) => void): Promise<void> {
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    const extra = this.extraHandlers.get(packet.topic);
    if (extra) {
      extra(payload);
      done();
      return;
    }
    if (this.holding) {
      done(new Error('holding: an earlier report of this connection was not stored'));
      return;
    }
    const { ingestor, metrics, log, limits } = this.deps;
    let report: Report;
    let status: { session: string; online: boolean } | null;
    try {
      ({ report, status } = decodeReport(packet.topic, payload, limits));
    } catch (err) {
      // Acknowledged and dropped: a buggy device must not get the same message redelivered forever.
      metrics.reportsDropped.inc({ reason: 'invalid' });
      log.warn(
        { topic: packet.topic, reason: isFlotillaError(err) ? err.code : undefined },
        `dropped device message: ${(err as Error).message}`,
      );
      done();
      return;
    }
    if (status && !this.sessions.apply(report.deviceId, status.session, status.online)) {
      done(); // a late last will of an older connection: the newer one is up
      return;
    }
    try {
      await ingestor.applyNow(report);
    } catch (err) {
      this.hold(err as Error);
      done(err as Error);
      return;
    }
    this.holdMs = HOLD_MIN_MS;
    this.client.options.reconnectPeriod = HOLD_MIN_MS;
    metrics.reportsStored.inc();
    done();
    if (report.channel === 'connection' && report.online) this.deps.onDeviceReachable?.(report.deviceId);
  }

  /**
   * Not stored (disk full, store unwritable): no PUBACK for this report or any later one on this
   * connection; the connection is dropped and made again after a growing delay, and the broker
   * then redelivers every unacknowledged report of the server's session in order.
   */
  private hold(err: Error): void {
    if (this.holding) return;
    this.holding = true;
    this.deps.metrics.reportsRefused.inc();
    this.deps.log.error(
      { err: err.message, retryInMs: this.holdMs },
      'report not stored: holding reports at the broker until the store takes them',
    );
    this.client.options.reconnectPeriod = this.holdMs;
    this.holdMs = Math.min(HOLD_MAX_MS, this.holdMs * 2);
    // Destroyed, not ended: a DISCONNECT is not needed, and mqtt.js then reconnects by itself.
    this.client.stream?.destroy();
  }

  async publishCommand(deviceId: string, command: DeviceCommand): Promise<void> {
    await this.client.publishAsync(deviceTopic(deviceId, 'commands'), JSON.stringify(command), { qos: 1 });
  }

  /** Online by the device's own status messages (its online message and its last will). */
  isConnected(deviceId: string): boolean {
    return this.sessions.isOnline(deviceId);
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}

/** A device message as a report (a status message is a connection report naming its session). */
function decodeReport(
  topic: string,
  payload: Buffer,
  limits: ServerLimits,
): { report: Report; status: { session: string; online: boolean } | null } {
  const t = parseDeviceTopic(topic);
  if (!t || t.channel === 'commands')
    throw new ServerError('FLOTILLA_ERR_SERVER_VALIDATION', `unexpected topic ${topic}`);
  if (payload.length > limits.maxMqttPayloadBytes)
    throw new ServerError('FLOTILLA_ERR_SERVER_VALIDATION', 'payload too large');
  if (t.channel === 'status') {
    const { session, online } = decodeDeviceMessage('status', payload);
    return { report: { deviceId: t.deviceId, channel: 'connection', online }, status: { session, online } };
  }
  const channel = t.channel as 'state' | 'events' | 'inventory';
  const report = { deviceId: t.deviceId, channel, message: decodeDeviceMessage(channel, payload) } as Report;
  return { report, status: null };
}
