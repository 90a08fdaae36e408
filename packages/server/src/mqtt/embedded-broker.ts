import type { IncomingMessage } from 'node:http';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer } from 'node:tls';
import {
  type DeviceCommand,
  decodeDeviceMessage,
  deviceTopic,
  type Identity,
  isFlotillaError,
  mayPublish,
  maySubscribe,
  parseDeviceTopic,
} from '@flotilla/protocol';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from 'pino';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { Report, ReportIngestor } from '../ingest/report-ingestor.js';
import type { ServerLimits } from '../limits.js';
import type { Metrics } from '../metrics.js';
import type { FailedLoginLimiter } from '../security/failed-logins.js';
import { inBackground } from '../store/background.js';
import type { AuthResult, DeviceAuthenticator } from './device-auth.js';
import { guardFrames } from './frame-guard.js';
import type { NodeLivenessHandlers } from './node-liveness.js';
import { acceptProxied } from './proxy-protocol.js';
import type { DeviceTransport } from './transport.js';

type FlotillaClient = Client & {
  flotilla?: Identity;
  revocationsAtAuth?: number;
  /** The timestamp of the password this device session logged in with (login-order.ts). */
  passwordTs?: number;
};
type BusListener = {
  on(topic: string, fn: (packet: { topic: string; payload: Buffer }, done: () => void) => void): void;
};

/**
 * CONNACK return code per refusal: 3 (server unavailable: retry) when the server is busy or the
 * login was stale, 5 (not authorized) for a device not accepted, 4 (bad user name or password).
 */
const CONNACK_CODE = {
  busy: 3,
  superseded: 3,
  'not-authorized': 5,
  'bad-credentials': 4,
  replay: 4,
} as const;

/** Room for the topic and headers around the largest payload a device may publish. */
const FRAME_OVERHEAD = 1024;
/** Connection reports handed to the ingestor at once when a whole node's devices change. */
const NODE_REPORTS_CHUNK = 1000;

export interface EmbeddedBrokerDeps {
  auth: DeviceAuthenticator;
  /** Failed CONNECTs per source address; a blocked address is refused before any signature check. */
  failedLogins?: FailedLoginLimiter;
  clock?: () => number;
  ingestor: ReportIngestor;
  limits: ServerLimits;
  log: Logger;
  metrics: Metrics;
  /**
   * Called once per connection when commands can reach the device: it subscribed to its commands
   * topic, or its restored session already holds that subscription (e.g. to re-send a pending offer).
   */
  onDeviceReachable?: (deviceId: string) => void;
  /**
   * Several nodes: aedes' message bus and persistence shared through Redis (redis-sharing.ts),
   * and node heartbeats. Without it: in-process bus and memory persistence.
   */
  shared?: {
    mq: unknown;
    persistence: unknown;
    watchNodes?(nodeId: string, ttlMs: number, handlers: NodeLivenessHandlers): Promise<void>;
    close(): Promise<void>;
  };
  /** Several nodes: the devices the store has online on a broker node (DevicesRepo.onlineOn). */
  onlineOn?: (nodeId: string) => Promise<string[]>;
}

/**
 * The embedded aedes broker. Policy lives in aedes' hooks: `authenticate` (device key or
 * provisioning token), `authorizePublish` (ACL from protocol, size, schema, then in-process
 * ingestion whose commit releases the PUBACK), `authorizeSubscribe` (ACL; denied filters are
 * negated, not granted), `authorizeForward` (a device only ever receives its own commands).
 * Nothing is retained per device: retain flags from devices are cleared.
 */
export class EmbeddedBroker implements DeviceTransport {
  readonly kind = 'embedded' as const;
  /** With `shared`, devices are spread over nodes: isConnected knows only this node's. */
  readonly sharedPresence: boolean;
  private readonly connected = new Map<string, Client>();
  /** Connections already told to onDeviceReachable (once per connection). */
  private readonly reachable = new WeakSet<Client>();
  /** Connections closed because the device logged in on another node: not an offline. */
  private readonly movedAway = new WeakSet<Client>();
  private readonly servers: NetServer[] = [];
  /** Counts revocations: a login that saw none while it was checked needs no second look-up. */
  private revocations = 0;
  private wss: WebSocketServer | null = null;

  private constructor(
    readonly aedes: Aedes,
    private readonly deps: EmbeddedBrokerDeps,
  ) {
    this.sharedPresence = deps.shared !== undefined;
  }

  static async create(deps: EmbeddedBrokerDeps): Promise<EmbeddedBroker> {
    let self: EmbeddedBroker | null = null;
    const aedes = await Aedes.createBroker({
      // Keep the per-client queue before CONNACK small: unauthenticated clients get nothing buffered.
      queueLimit: 42,
      drainTimeout: 30_000,
      maxTopicLevels: 8,
      maxClientsIdLength: 64,
      ...(deps.shared
        ? {
            mq: deps.shared.mq,
            persistence: deps.shared.persistence,
            // aedes' own node heartbeat: a dead node's stored wills are cleared within seconds
            // (default a minute), paced like the node sweep (nodeHeartbeatTtlMs).
            heartbeatInterval: Math.max(1000, Math.floor(deps.limits.nodeHeartbeatTtlMs / 3)),
          }
        : {}),
      authenticate: (client, username, password, done) =>
        self!.authenticate(client as FlotillaClient, username, password, done),
      authorizePublish: (client, packet, done) =>
        self!.authorizePublish(client as FlotillaClient | null, packet, done),
      authorizeSubscribe: (client, sub, done) => {
        const id = (client as FlotillaClient).flotilla;
        if (id && maySubscribe(id, sub.topic)) {
          // Lowered in place: the SUBACK, the live subscription and the persisted one all say ≤ 1.
          sub.qos = Math.min(sub.qos, 1) as 0 | 1;
          done(null, sub);
          return;
        }
        deps.metrics.mqttDenied.inc({ kind: 'subscribe' });
        deps.log.warn({ clientId: client.id, filter: sub.topic }, 'mqtt subscribe denied');
        done(null, null);
      },
      authorizeForward: (client, packet) => {
        const id = (client as FlotillaClient).flotilla;
        if (!id || id.kind !== 'device') return null;
        const t = parseDeviceTopic(packet.topic);
        return t && t.deviceId === id.deviceId && t.channel === 'commands' ? packet : null;
      },
    });
    self = new EmbeddedBroker(aedes, deps);
    aedes.on('clientReady', (c) => self!.onReady(c as FlotillaClient));
    aedes.on('clientDisconnect', (c) => self!.onGone(c as FlotillaClient));
    aedes.on('subscribe', (subs, c) => {
      const id = (c as FlotillaClient).flotilla;
      if (id?.kind !== 'device') return;
      const topic = deviceTopic(id.deviceId, 'commands');
      if (subs.some((s) => s.topic === topic && (s.qos as number) !== 128)) self!.onReachable(c, id.deviceId);
    });
    // aedes announces each login to every node and closes the device's older connection on
    // the node that held it; that node must not then report the device offline.
    if (deps.shared)
      (aedes as unknown as { mq: BusListener }).mq.on('$SYS/+/new/clients', (packet, done) => {
        const old = self!.connected.get(packet.payload.toString());
        if (old && packet.topic.split('/')[1] !== aedes.id) self!.movedAway.add(old);
        done();
      });
    // A node that dies tells nobody: its devices are marked offline by a survivor.
    const onlineOn = deps.onlineOn;
    if (deps.shared?.watchNodes && onlineOn)
      await deps.shared.watchNodes(aedes.id, deps.limits.nodeHeartbeatTtlMs, {
        nodeGone: (node) => self!.nodeGone(node, onlineOn),
        revived: () => self!.recordAgain(),
      });
    // aedes reports its own background failures here (e.g. publishing a dead node's wills);
    // without a listener an 'error' event would end the whole server process.
    (aedes as unknown as NodeJS.EventEmitter).on('error', (err: Error) =>
      deps.log.error({ err, code: 'FLOTILLA_ERR_SERVER_BROKER' }, 'mqtt broker background task failed'),
    );
    aedes.on('clientError', (c, err) =>
      deps.log.debug({ clientId: c?.id, err: err.message }, 'mqtt client error'),
    );
    aedes.on('connectionError', (c, err) =>
      deps.log.debug({ clientId: c?.id, err: err.message }, 'mqtt connection error'),
    );
    return self;
  }

  private authenticate(
    client: FlotillaClient,
    username: string | undefined,
    password: Buffer | undefined,
    done: (error: AuthenticateError | null, success: boolean | null) => void,
  ): void {
    client.revocationsAtAuth = this.revocations;
    const source = sourceAddress(client);
    const now = (this.deps.clock ?? Date.now)();
    if (this.deps.failedLogins && this.deps.failedLogins.blockedFor(source, now) > 0) {
      this.deps.metrics.mqttAuth.inc({ result: 'rate-limited' });
      this.deps.log.warn({ clientId: client.id, source }, 'mqtt login refused: too many failed logins');
      done(authError(5, 'too many failed logins from this address; retry later'), false);
      return;
    }
    this.deps.auth.authenticate(username, password).then(
      (result) => this.authenticated(client, username, result, done),
      (err: unknown) => {
        const { code, message } = err as { code?: string; message?: string };
        this.deps.log.error({ clientId: client.id, code, err: message }, 'mqtt auth failed');
        done(authError(3, 'server unavailable'), false);
      },
    );
  }

  private authenticated(
    client: FlotillaClient,
    username: string | undefined,
    result: AuthResult,
    done: (error: AuthenticateError | null, success: boolean | null) => void,
  ): void {
    // The client id must be the device id, else one device could take over another's session.
    if (result.ok && client.id !== result.deviceId) {
      this.deps.metrics.mqttAuth.inc({ result: 'client-id-mismatch' });
      done(authError(2, 'client id must equal the device id'), false);
      return;
    }
    if (!result.ok) {
      // A server too busy to check is not the client's fault, nor is a stale login; the rest counts.
      if (result.reason !== 'busy' && result.reason !== 'superseded')
        this.deps.failedLogins?.fail(sourceAddress(client), (this.deps.clock ?? Date.now)());
      this.deps.metrics.mqttAuth.inc({ result: result.reason });
      this.deps.log.warn(
        { clientId: client.id, username, reason: result.reason, detail: result.detail },
        'mqtt auth refused',
      );
      done(authError(CONNACK_CODE[result.reason], result.detail), false);
      return;
    }
    this.deps.metrics.mqttAuth.inc({ result: 'ok' });
    client.flotilla = { kind: 'device', deviceId: result.deviceId };
    client.passwordTs = result.passwordTs;
    done(null, true);
  }

  private authorizePublish(
    client: FlotillaClient | null,
    packet: { topic: string; payload: Buffer | string; retain: boolean; qos: number },
    done: (error?: Error | null) => void,
  ): void {
    const id = client?.flotilla;
    const { metrics, log, limits } = this.deps;
    if (client === null) {
      this.publishOrphanWill(packet, done);
      return;
    }
    if (!id || !mayPublish(id, packet.topic)) {
      metrics.mqttDenied.inc({ kind: 'publish' });
      log.warn({ clientId: client?.id, topic: packet.topic }, 'mqtt publish denied: closing connection');
      done(new Error('publish not allowed on this topic'));
      return;
    }
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    if (payload.length > limits.maxMqttPayloadBytes) {
      metrics.mqttDenied.inc({ kind: 'oversize' });
      done(new Error('payload too large'));
      return;
    }
    // Per-device state lives in the store, never in retained messages (aedes scans them on every subscribe).
    packet.retain = false;
    const topic = parseDeviceTopic(packet.topic)!;
    if (topic.channel === 'status') {
      // The online message and last will: here the broker's own connects and disconnects decide
      // (clientReady, clientDisconnect), so a well-formed one is acknowledged and goes no further.
      try {
        decodeDeviceMessage('status', payload);
      } catch {
        metrics.reportsDropped.inc({ reason: 'invalid' });
      }
      done(null);
      return;
    }
    let report: Report;
    try {
      const channel = topic.channel as 'state' | 'events' | 'inventory';
      report = {
        deviceId: topic.deviceId,
        channel,
        message: decodeDeviceMessage(channel, payload),
      } as Report;
    } catch (err) {
      // Logged and dropped; the publish is acknowledged so a buggy device does not resend it forever.
      metrics.reportsDropped.inc({ reason: 'invalid' });
      log.warn(
        {
          deviceId: topic.deviceId,
          channel: topic.channel,
          reason: isFlotillaError(err) ? err.code : String(err),
        },
        `dropped invalid device message: ${(err as Error).message}`,
      );
      packet.payload = Buffer.alloc(0);
      done(null);
      return;
    }
    if (!this.deps.ingestor.submit(report, (err) => done(err ?? null))) done(new Error('server busy'));
  }

  /**
   * Sharing Redis, a surviving node publishes the last wills of a dead node's devices, with no
   * connection to check them against (aedes passes no client). A device's will is its offline
   * status, stored when it logged in; whether the device is offline is decided by the node
   * sweep (a device may already be back on another node), so the will is let through and goes
   * no further. Anything else without a connection is refused; refusing never closes anything.
   */
  private publishOrphanWill(packet: { topic: string }, done: (error?: Error | null) => void): void {
    if (parseDeviceTopic(packet.topic)?.channel === 'status') {
      done(null);
      return;
    }
    this.deps.metrics.mqttDenied.inc({ kind: 'publish' });
    this.deps.log.warn({ topic: packet.topic }, 'mqtt will of a gone connection denied');
    done(new Error('publish not allowed on this topic'));
  }

  private onReady(client: FlotillaClient): void {
    const id = client.flotilla;
    if (id?.kind !== 'device') return;
    // Gone between its CONNACK and now (the session's queue is read in between: a Redis round trip
    // with several nodes): its disconnect came first, so it must not be counted as connected.
    if ((client as { closed?: boolean }).closed) return;
    if (this.revocations === client.revocationsAtAuth) {
      this.admit(client, id.deviceId);
      return;
    }
    // Revoked between authentication and now: the revocation may have missed this connection.
    const check = this.deps.auth.isAccepted(id.deviceId).then((accepted) => {
      if (!accepted) client.close();
      else if (!(client as unknown as { closed?: boolean }).closed) this.admit(client, id.deviceId);
    });
    inBackground(this.deps.log, 'revocation check', check);
  }

  private admit(client: FlotillaClient, deviceId: string): void {
    const id = { deviceId };
    this.connected.set(id.deviceId, client);
    this.deps.metrics.devicesConnected.set(this.connected.size);
    this.deps.ingestor.submit({
      deviceId: id.deviceId,
      channel: 'connection',
      online: true,
      node: this.aedes.id,
    });
    // A message published before the device's subscription exists goes nowhere (after a restart
    // aedes holds no sessions and the device subscribes only after CONNACK): only a restored
    // subscription makes the device reachable now; otherwise its SUBSCRIBE does.
    const subs = (client as unknown as { subscriptions?: Record<string, unknown> }).subscriptions;
    if (subs?.[deviceTopic(id.deviceId, 'commands')]) this.onReachable(client, id.deviceId);
  }

  private onReachable(client: Client, deviceId: string): void {
    if (this.reachable.has(client)) return;
    this.reachable.add(client);
    this.deps.onDeviceReachable?.(deviceId);
  }

  private onGone(client: FlotillaClient): void {
    const id = client.flotilla;
    if (id?.kind !== 'device') return;
    if (client.passwordTs !== undefined)
      inBackground(
        this.deps.log,
        'login order release',
        this.deps.auth.sessionEnded(id.deviceId, client.passwordTs),
      );
    // A reconnect may replace the client before the old one's disconnect arrives.
    if (this.connected.get(id.deviceId) !== client) return;
    this.connected.delete(id.deviceId);
    this.deps.metrics.devicesConnected.set(this.connected.size);
    if (this.movedAway.has(client)) return;
    this.deps.ingestor.submit({
      deviceId: id.deviceId,
      channel: 'connection',
      online: false,
      node: this.aedes.id,
    });
  }

  /**
   * Another node died: its devices that the store still has online there go offline (the same
   * `device.connection` events as a disconnect). One that already reconnected is recorded on its
   * new node and is left alone (DevicesRepo.setOnline).
   */
  private async nodeGone(node: string, onlineOn: (nodeId: string) => Promise<string[]>): Promise<void> {
    const ids = await onlineOn(node);
    this.deps.log.warn({ node, devices: ids.length }, 'broker node gone: its devices marked offline');
    await this.submitAll(ids.map((deviceId) => ({ deviceId, channel: 'connection', online: false, node })));
  }

  /** This node was taken for dead: its connected devices are recorded online here again. */
  private async recordAgain(): Promise<void> {
    const node = this.aedes.id;
    await this.submitAll(
      [...this.connected.keys()].map((deviceId) => ({ deviceId, channel: 'connection', online: true, node })),
    );
  }

  /** Hands reports to the ingestor a chunk at a time; resolves once all are written, rejects if one is not. */
  private async submitAll(reports: Report[]): Promise<void> {
    for (let i = 0; i < reports.length; i += NODE_REPORTS_CHUNK) {
      await Promise.all(
        reports.slice(i, i + NODE_REPORTS_CHUNK).map(
          (r) =>
            new Promise<void>((resolve, reject) => {
              const taken = this.deps.ingestor.submit(r, (err) => (err ? reject(err) : resolve()));
              if (!taken) reject(new Error('report queue full'));
            }),
        ),
      );
    }
  }

  /** Closes a device's connection now (its key was revoked: rejected or decommissioned). */
  disconnect(deviceId: string): boolean {
    this.revocations++;
    // aedes registers a client before it sends CONNACK and emits clientReady after: look in both.
    const registered = (this.aedes as unknown as { clients: Record<string, Client | undefined> }).clients;
    const client = this.connected.get(deviceId) ?? registered[deviceId];
    if (!client) return false;
    this.deps.log.info({ deviceId }, 'mqtt connection closed: device no longer accepted');
    client.close();
    return true;
  }

  isConnected(deviceId: string): boolean {
    return this.connected.has(deviceId);
  }

  get connectedCount(): number {
    return this.connected.size;
  }

  publishCommand(deviceId: string, command: DeviceCommand): Promise<void> {
    return new Promise((resolve, reject) => {
      this.aedes.publish(
        {
          cmd: 'publish',
          topic: deviceTopic(deviceId, 'commands'),
          payload: Buffer.from(JSON.stringify(command)),
          qos: 1,
          retain: false,
          dup: false,
        },
        (err) => (err ? reject(err) : resolve()),
      );
    });
  }

  /** Hands a raw stream to aedes behind the frame-size guard. */
  handle(stream: Duplex, req?: IncomingMessage): void {
    guardFrames(stream, this.deps.limits.maxMqttPayloadBytes + FRAME_OVERHEAD, () => {
      this.deps.metrics.mqttDenied.inc({ kind: 'oversize' });
      this.deps.log.warn('mqtt frame over the size limit: connection closed');
    });
    this.aedes.handle(stream, req);
  }

  /**
   * Plain TCP (tls given: MQTT over TLS). Resolves with the bound port. `proxyProtocol` (plain
   * TCP only): every connection starts with a PROXY protocol v1 line from a load balancer.
   */
  listenTcp(
    port: number,
    host: string,
    tls?: { cert: string | Buffer; key: string | Buffer; ca?: string | Buffer },
    proxyProtocol = false,
  ): Promise<number> {
    const server = tls
      ? createTlsServer({ cert: tls.cert, key: tls.key, ...(tls.ca ? { ca: tls.ca } : {}) }, (s) =>
          this.handle(s),
        )
      : createNetServer((s) => (proxyProtocol ? acceptProxied(s, (p) => this.handle(p)) : this.handle(s)));
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host, backlog: this.deps.limits.listenBacklog }, () => {
        server.off('error', reject);
        const a = server.address();
        resolve(typeof a === 'object' && a ? a.port : port);
      });
    });
  }

  /** A WebSocket endpoint (MQTT over `ws://host/mqtt`) on an existing HTTP server. */
  attachWebSocket(httpServer: import('node:http').Server, path: string): void {
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.deps.limits.maxMqttPayloadBytes + FRAME_OVERHEAD,
      handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : false),
    });
    httpServer.on('upgrade', (req, socket, head) => {
      if (new URL(req.url ?? '/', 'http://x').pathname !== path) return socket.destroy();
      this.wss!.handleUpgrade(req, socket, head, (ws) => {
        const stream = createWebSocketStream(ws);
        stream.on('error', () => ws.terminate());
        this.handle(stream, req);
      });
    });
  }

  async close(): Promise<void> {
    for (const s of this.servers) s.close();
    for (const c of this.wss?.clients ?? []) c.terminate();
    this.wss?.close();
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
    await this.deps.shared?.close();
    await this.deps.auth.close();
  }
}

/** The client's IP address (TCP, TLS or WebSocket), for the failed-login limit. */
function sourceAddress(client: Client): string {
  const c = client as unknown as {
    conn?: { remoteAddress?: string; socket?: { remoteAddress?: string } };
    req?: IncomingMessage;
  };
  return c.conn?.remoteAddress ?? c.req?.socket.remoteAddress ?? c.conn?.socket?.remoteAddress ?? 'unknown';
}

function authError(code: 2 | 3 | 4 | 5, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode: code }) as AuthenticateError;
}
