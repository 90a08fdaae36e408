import {
  type DeviceCommand,
  decodeDeviceMessage,
  deviceTopic,
  isFlotillaError,
  parseDeviceTopic,
} from '@flotilla/protocol';
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { ServerError } from '../errors.js';
import type { Report, ReportIngestor } from '../ingest/report-ingestor.js';
import type { ServerLimits } from '../limits.js';
import type { Metrics } from '../metrics.js';
import type { DeviceTransport } from './transport.js';

export interface ExternalBrokerOptions {
  url: string;
  username: string;
  password: string;
  clientId?: string;
  ca?: string | Buffer;
}

/**
 * The server as a privileged client of an external broker (Mosquitto, EMQX, ...): a persistent
 * session (clean: false) subscribed QoS 1 to every device's reports. Each report is applied in
 * its own transaction before mqtt.js sends the PUBACK, so a crash loses nothing the broker has
 * not still queued for the session.
 */
export class ExternalBroker implements DeviceTransport {
  readonly kind = 'external' as const;

  private constructor(private readonly client: MqttClient) {}

  static async connect(
    o: ExternalBrokerOptions,
    deps: { ingestor: ReportIngestor; log: Logger; metrics: Metrics; limits: ServerLimits },
  ): Promise<ExternalBroker> {
    const client = mqtt.connect(o.url, {
      protocolVersion: 4,
      clientId: o.clientId ?? 'flotilla-server',
      username: o.username,
      password: o.password,
      clean: false,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      ...(o.ca ? { ca: o.ca } : {}),
    });
    client.handleMessage = (packet, done) => {
      try {
        const t = parseDeviceTopic(packet.topic);
        if (!t || t.channel === 'commands')
          throw new ServerError('FLOTILLA_ERR_SERVER_VALIDATION', `unexpected topic ${packet.topic}`);
        const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
        if (payload.length > deps.limits.maxMqttPayloadBytes)
          throw new ServerError('FLOTILLA_ERR_SERVER_VALIDATION', 'payload too large');
        const channel = t.channel as 'state' | 'events' | 'inventory';
        deps.ingestor.applyNow({
          deviceId: t.deviceId,
          channel,
          message: decodeDeviceMessage(channel, payload),
        } as Report);
        deps.metrics.reportsStored.inc();
      } catch (err) {
        deps.metrics.reportsDropped.inc({ reason: 'invalid' });
        deps.log.warn(
          { topic: packet.topic, reason: isFlotillaError(err) ? err.code : undefined },
          `dropped device message: ${(err as Error).message}`,
        );
      }
      done();
    };
    client.on('error', (err) => deps.log.warn({ err: err.message }, 'external broker error'));
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    const topics = ['state', 'events', 'inventory'].map((c) => `flotilla/v1/devices/+/${c}`);
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
        `the broker refused the server's subscriptions to flotilla/v1/devices/+/state, events and inventory (allow them in the broker ACL): ${(refused as Error).message}`,
        { cause: refused },
      );
    }
    return new ExternalBroker(client);
  }

  async publishCommand(deviceId: string, command: DeviceCommand): Promise<void> {
    await this.client.publishAsync(deviceTopic(deviceId, 'commands'), JSON.stringify(command), { qos: 1 });
  }

  isConnected(): boolean {
    return false;
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}
