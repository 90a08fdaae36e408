import { randomBytes } from 'node:crypto';
import {
  connectionStatus,
  deviceTopic,
  type KeyPair,
  makeDevicePassword,
  makeProvisioningPassword,
  toHex,
} from '@flotilla/protocol';
import type { MqttClient } from 'mqtt';
import { backoffMs, type Clock } from '../clock.js';
import { AgentError } from '../errors.js';
import type { AgentLimits } from '../limits.js';
import { type Logger, silentLogger } from '../logger.js';
import type { ReportChannel, Transport, TransportHandlers } from './types.js';

export type MqttAuth =
  | { kind: 'device-key'; key: KeyPair }
  /**
   * The static password the server issued at registration, for a broker that cannot check
   * signed passwords (an external broker such as Mosquitto; `server.mqttPasswordFile`).
   */
  | { kind: 'password'; password: string }
  /**
   * First contact before the server knows the device's key (docs/agent.md#reports-mqtt, "Provisioning"): the one-time token
   * and the device's own public key (`flp1.<token>.<publicKeyHex>`); the server registers the key
   * and burns the token. Once a login with it succeeded, every later connect signs with `key`.
   */
  | {
      kind: 'provisioning-token';
      token: string;
      key: KeyPair;
      /** Called once, after the first accepted login (the server holds the key): persist that. */
      onProvisioned?: () => void | Promise<void>;
    };

/** How long an orderly stop waits for the broker to take its offline message. */
const STOP_GOODBYE_MS = 1000;

/** CONNACK return codes 4 (bad user name or password) and 5 (not authorized). */
const REFUSED = new Set([4, 5]);

export interface MqttTransportOptions {
  url: string;
  deviceId: string;
  auth: MqttAuth;
  clock: Clock;
  limits: AgentLimits['mqtt'];
  ca?: string | Buffer;
  logger?: Logger;
  random?: () => number;
}

/**
 * MQTT 3.1.1 (aedes 1.x refuses v5) with a persistent session, so QoS 1 commands sent while the
 * device was offline arrive on reconnect. Reconnects are ours, not mqtt.js's: each attempt gets
 * a fresh signed password (new nonce, current time) and the delay grows with jitter, so a fleet
 * coming back after an outage does not reconnect in lockstep.
 */
export class MqttTransport implements Transport {
  private client: MqttClient | null = null;
  private handlers: TransportHandlers | null = null;
  private stopped = false;
  private readonly stopSignal = new AbortController();
  private loop: Promise<void> | null = null;
  private readonly log: Logger;
  /** Passwords are never logged; the count helps tests and operators see reconnects. */
  connects = 0;
  /**
   * With a provisioning token: whether a login was accepted yet (then the server holds our key).
   * Until then the token and the device key take turns after each refusal: the server burns the
   * token on first use even when it keeps the device pending, so only the key can get in later.
   */
  provisioned: boolean;
  private tokenTurn: boolean;
  private recording = false;
  /** The current connection's name in its status messages (online message and last will). */
  private session: string | null = null;

  constructor(private readonly options: MqttTransportOptions) {
    this.log = (options.logger ?? silentLogger).child({ component: 'mqtt' });
    this.provisioned = options.auth.kind !== 'provisioning-token';
    this.tokenTurn = options.auth.kind === 'provisioning-token';
  }

  start(handlers: TransportHandlers): void {
    this.handlers = handlers;
    this.loop ??= this.run();
  }

  connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** Provisioning password until the server holds our key, then a fresh signed one per connect. */
  private password(): string {
    const auth = this.options.auth;
    if (auth.kind === 'password') return auth.password;
    if (auth.kind === 'provisioning-token' && this.tokenTurn && !this.provisioned)
      return makeProvisioningPassword(auth.token, toHex(auth.key.publicKey));
    return makeDevicePassword(
      this.options.deviceId,
      auth.key,
      this.options.clock.now(),
      randomBytes(16).toString('hex'),
    );
  }

  /** Any accepted login proves the server holds our key: provisioning is over. */
  private async accepted(): Promise<void> {
    const auth = this.options.auth;
    if (this.provisioned || this.recording || auth.kind !== 'provisioning-token') return;
    this.recording = true;
    this.tokenTurn = false;
    this.log.info({ deviceId: this.options.deviceId }, 'provisioned: the server holds the device key');
    try {
      await auth.onProvisioned?.();
    } catch (err) {
      // Not fatal: the next start presents the (burned) token once, is refused, then uses the key.
      this.log.warn({ err: (err as Error).message }, 'could not record provisioning');
    }
    this.provisioned = true;
  }

  private async run(): Promise<void> {
    let failures = 0;
    const commands = deviceTopic(this.options.deviceId, 'commands');
    // Loaded on first use: an agent without a server link (local install, status) never pays for it.
    const { default: mqtt } = await import('mqtt');
    while (!this.stopped) {
      const password = this.password();
      let refused = false;
      // Each connection names itself: its last will (online: false) and its online message then
      // tell a server behind any broker at once, and a late will cannot hide a newer connection.
      const session = randomBytes(8).toString('hex');
      this.session = session;
      const will = connectionStatus(this.options.deviceId, session, false);
      const client = mqtt.connect(this.options.url, {
        protocolVersion: 4,
        clientId: this.options.deviceId,
        clean: false,
        username: this.options.deviceId,
        password,
        will: { topic: will.topic, payload: Buffer.from(will.payload), qos: will.qos, retain: will.retain },
        reconnectPeriod: 0,
        connectTimeout: this.options.limits.connectTimeoutMs,
        keepalive: this.options.limits.keepaliveSeconds,
        ...(this.options.ca ? { ca: this.options.ca } : {}),
      });
      this.client = client;
      client.on('message', (topic, payload) => {
        if (topic === commands) this.handlers?.onCommand(payload);
      });
      const wasUp = await new Promise<boolean>((resolve) => {
        let up = false;
        client.once('connect', () => {
          up = true;
          void this.accepted();
          // "Connected" for the agent means commands can reach it: after the SUBACK.
          client.subscribe(commands, { qos: 1 }, (err) => {
            if (err) {
              this.log.warn({ err: err.message }, 'subscribe failed');
              client.end(true);
              return;
            }
            this.connects++;
            failures = 0;
            // Before the reports onConnect sends (same connection, so the broker keeps the order).
            const online = connectionStatus(this.options.deviceId, session, true);
            client.publish(online.topic, online.payload, { qos: online.qos, retain: online.retain }, (e) => {
              if (e) this.log.debug({ err: e.message }, 'online message not sent');
            });
            this.handlers?.onConnect();
          });
        });
        client.on('error', (err) => {
          if (REFUSED.has((err as { code?: unknown }).code as number)) refused = true;
          this.log.debug({ err: err.message }, 'mqtt error');
        });
        client.once('close', () => resolve(up));
      });
      client.removeAllListeners('message');
      client.end(true);
      if (wasUp) this.handlers?.onDisconnect();
      if (refused && this.options.auth.kind === 'provisioning-token' && !this.recording)
        this.tokenTurn = !this.tokenTurn;
      if (this.stopped) break;
      failures++;
      const wait = backoffMs(
        failures - 1,
        this.options.limits.backoffBaseMs,
        this.options.limits.backoffMaxMs,
        this.options.random,
      );
      await this.options.clock.sleep(wait, this.stopSignal.signal).catch(() => undefined);
    }
  }

  async publish(channel: ReportChannel, payload: string, qos: 0 | 1): Promise<void> {
    const client = this.client;
    if (!client?.connected) throw new AgentError('FLOTILLA_ERR_AGENT_OFFLINE');
    // A connection that drops before the PUBACK must fail the publish, never leave it pending.
    await new Promise<void>((resolve, reject) => {
      const onClose = () =>
        reject(new AgentError('FLOTILLA_ERR_AGENT_OFFLINE', 'connection closed before PUBACK'));
      client.once('close', onClose);
      client
        .publishAsync(deviceTopic(this.options.deviceId, channel), payload, { qos })
        .then(() => resolve(), reject)
        .finally(() => client.off('close', onClose));
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopSignal.abort();
    this.handlers = null;
    // An orderly stop sends a DISCONNECT, which makes the broker drop the last will: say offline
    // ourselves (bounded: a stop must not wait on a dead link).
    const client = this.client;
    if (client?.connected && this.session) {
      const bye = connectionStatus(this.options.deviceId, this.session, false);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        client
          .publishAsync(bye.topic, bye.payload, { qos: bye.qos, retain: bye.retain })
          .catch(() => undefined),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, STOP_GOODBYE_MS);
        }),
      ]);
      clearTimeout(timer);
    }
    await this.client?.endAsync(true).catch(() => undefined);
    await this.loop;
  }
}
