import { chmodSync, writeFileSync } from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { buildApp } from './api/app.js';
import { artifactDelivery } from './artifacts/artifact-delivery.js';
import type { ArtifactFs } from './artifacts/artifact-fs.js';
import { ArtifactStore } from './artifacts/artifact-store.js';
import { UrlSigner } from './artifacts/url-signer.js';
import { ENGINE_LEASE, EngineRole } from './cluster/engine-role.js';
import { checkNodeId } from './cluster/node-id.js';
import { kickOnRemoteEvents } from './cluster/remote-kicks.js';
import { sharedUrlSigner } from './cluster/shared-url-key.js';
import type { ServerContext } from './context.js';
import { DeltaService } from './deltas/delta-service.js';
import { OfferBuilder } from './deploy/offers.js';
import { RolloutRunner } from './deploy/rollout-runner.js';
import { DeviceRegistry } from './devices/registry.js';
import { VersionHistory } from './devices/version-history.js';
import { EventBus } from './events/bus.js';
import { PgEventRelay } from './events/pg-event-relay.js';
import { ReportIngestor } from './ingest/report-ingestor.js';
import { checkImportTarget } from './keys/import-check.js';
import { loadOrCreateServerKeys } from './keys/server-keys.js';
import { resolveLimits, type ServerLimits } from './limits.js';
import { createMetrics } from './metrics.js';
import { DeviceAuthenticator } from './mqtt/device-auth.js';
import { EmbeddedBroker } from './mqtt/embedded-broker.js';
import { ExternalBroker, type ExternalBrokerOptions } from './mqtt/external-broker.js';
import { MosquittoCredentials, type MosquittoFiles } from './mqtt/mosquitto-credentials.js';
import { DynsecControl, DynsecCredentials, prepareDynsecServerRole } from './mqtt/mosquitto-dynsec.js';
import { PasswordVerifier } from './mqtt/password-verifier.js';
import { connectRedisSharing } from './mqtt/redis-sharing.js';
import type { DeviceTransport } from './mqtt/transport.js';
import { PolicyService } from './policy/policy-service.js';
import { ReleaseService } from './releases/release-service.js';
import { Retention } from './retention/retention.js';
import { FailedLoginLimiter } from './security/failed-logins.js';
import { inBackground } from './store/background.js';
import { openServerStore, openSharedStore } from './store/data-dir.js';
import { FleetStats } from './store/fleet-stats.js';
import { PostgresLease } from './store/postgres/lease.js';
import { fenced, LocalLease } from './store/sql-lease.js';
import { registerVulnGauges } from './vulns/vuln-metrics.js';
import { VulnService } from './vulns/vuln-service.js';

export const DEFAULT_DATA_DIR = join('.flotilla', 'server');

export interface ServerOptions {
  /** Everything the server keeps: server.db, artifacts/, keys/ (default ./.flotilla/server). */
  dataDir?: string;
  /** Import root.json and online role keys made by `flotilla keys init` (first start only). */
  importKeysFrom?: string;
  /**
   * TEST-ONLY dev keys (first start without importKeysFrom): a whole set, root key included,
   * kept in the data directory and logged as such. Never for a real fleet. Without it (and
   * without importKeysFrom) a first start makes the root keys in `offlineKeysDir` to be moved offline.
   */
  devKeys?: boolean;
  /** Where a plain first start writes the new root keys (default `<dataDir>.offline-keys`, beside the data dir). */
  offlineKeysDir?: string;
  /** Accept new devices without an operator (default false: they wait in `pending`). */
  autoAccept?: boolean;
  /** Base URL devices download artifacts from (default: the API address once listening). */
  publicUrl?: string;
  /** Base URL signed into offers for images and deltas, e.g. nginx in front of the artifact store (default publicUrl). */
  artifactBaseUrl?: string;
  /**
   * nginx `internal` location aliased to `<dataDir>/artifacts/` (e.g. `/_flotilla/artifacts/`): an
   * authorised download forwarded by nginx is answered with `X-Accel-Redirect` and nginx sends the
   * bytes (docs/cluster.md). Requests straight to the server are still served by the server.
   */
  artifactAccelRedirect?: string;
  /**
   * Addresses or CIDR ranges of reverse proxies (nginx) whose `X-Forwarded-For` names the real
   * client: failed-login limits and logged sources then key on the device or operator, not on the
   * proxy. Off by default: a client could otherwise claim any address to dodge the limiter.
   */
  trustProxy?: string[];
  limits?: Partial<ServerLimits> & { deltaWaitMs?: number };
  /** Embedded aedes (default) or an external broker the server joins as a privileged client. */
  broker?:
    | { kind: 'embedded' }
    | {
        kind: 'external';
        connect: ExternalBrokerOptions;
        /**
         * How devices get broker credentials: Mosquitto's dynamic-security plugin managed over
         * MQTT (`dynsec`: client id bound to the device), or password and ACL files on this host.
         */
        mosquitto?: MosquittoFiles | 'dynsec';
      };
  /**
   * `redis://host:port`: this node is one of several sharing the embedded broker's sessions,
   * message bus and login nonces through this Redis (docs/server.md, "Several nodes").
   */
  redis?: string;
  /**
   * `postgres://…`: the store is this PostgreSQL database, shared by every node that names it
   * (default: SQLite, `server.db` in the data directory). Nodes sharing it elect one rollout engine.
   */
  database?: string;
  /** This node's name among nodes sharing a database (default `<hostname>-<pid>`). */
  nodeId?: string;
  /** Secret of the first admin token when the store has none (else one is generated and written to dataDir/admin-token). */
  adminToken?: string;
  dashboardDir?: string;
  /** When set, GET /metrics needs `Authorization: Bearer <metricsToken>` (or any API token). */
  metricsToken?: string;
  /** PEM certificate and key: the API is served over HTTPS (and MQTT over TLS is offered by startServer). */
  tls?: { cert: string | Buffer; key: string | Buffer; ca?: string | Buffer };
  logger?: Logger;
  logLevel?: string;
  /** Logs to stderr instead of stdout (a `--json` start keeps stdout for its one summary line). */
  logToStderr?: boolean;
  clock?: () => number;
  /** The file system artifacts are written through (default the real one; tests inject a full disk). */
  artifactFs?: ArtifactFs;
}

export interface FlotillaServer {
  ctx: ServerContext;
  app: FastifyInstance;
  ingestor: ReportIngestor;
  broker: EmbeddedBroker | null;
  /** The bootstrap admin token, when this start created it. */
  bootstrapToken: string | null;
  /** Starts the broker connection, the rollout timer and the delta workers. */
  start(): Promise<void>;
  close(): Promise<void>;
  /** Stops everything without flushing or cleanup, as a crash would (tests). */
  crash(): Promise<void>;
}

/** Builds the whole server without opening any port (`startServer` listens). */
export async function createServer(opts: ServerOptions = {}): Promise<FlotillaServer> {
  const dataDir = resolve(opts.dataDir ?? DEFAULT_DATA_DIR);
  const clock = opts.clock ?? Date.now;
  const limits = { ...resolveLimits(opts.limits), deltaWaitMs: opts.limits?.deltaWaitMs ?? 0 };
  const logOptions = { level: opts.logLevel ?? 'info', base: { component: 'flotilla-server' } };
  const log = opts.logger ?? (opts.logToStderr ? pino(logOptions, pino.destination(2)) : pino(logOptions));
  const artifactDeliveryOptions = artifactDelivery(opts);
  const nodeId = checkNodeId(opts.nodeId ?? `${hostname()}-${process.pid}`);
  const shared = opts.database !== undefined;
  // First: a lost database must stop the start before anything in the data dir is (re)created.
  const store = shared
    ? await openSharedStore(dataDir, opts.database!, nodeId)
    : await openServerStore(dataDir);
  let keys: ReturnType<typeof loadOrCreateServerKeys>;
  try {
    if (opts.importKeysFrom) checkImportTarget(opts.importKeysFrom, join(dataDir, 'keys'));
    keys = loadOrCreateServerKeys(join(dataDir, 'keys'), {
      ...(opts.importKeysFrom ? { importFrom: opts.importKeysFrom } : {}),
      ...(opts.devKeys ? { devKeys: true } : {}),
      ...(opts.offlineKeysDir ? { offlineKeysDir: opts.offlineKeysDir } : {}),
    });
  } catch (err) {
    await store.close();
    throw err;
  }
  if (keys.holdsRootKeys)
    log.warn(
      { keysDir: keys.dir },
      'TEST-ONLY dev keys: the root private key is online in the data directory',
    );
  if (keys.offlineKeysDir)
    log.warn(
      { offlineKeysDir: keys.offlineKeysDir },
      'new root keys written outside the data directory: move them offline now',
    );
  const urlSignerFile = join(dataDir, 'url-signing.key');
  const urlSigner = shared
    ? await sharedUrlSigner(urlSignerFile, store.sql, log, clock()).catch(async (err) => {
        await store.close();
        throw err;
      })
    : UrlSigner.open(urlSignerFile);
  // Several nodes: aedes' bus, sessions and login nonces in Redis; unreachable → no start.
  const sharing =
    opts.redis && (opts.broker?.kind ?? 'embedded') === 'embedded'
      ? await connectRedisSharing(opts.redis, log.child({ component: 'redis' })).catch(async (err) => {
          await store.close();
          throw err;
        })
      : null;
  // Alone, no device is connected before the start; in a cluster the other nodes (or the
  // external broker) hold some. Sharing the database with the embedded broker not shared, this
  // node is taken to be the only one: its broker could not reach another node's devices.
  const external = opts.broker?.kind === 'external';
  if (shared && !sharing && !external)
    log.warn(
      'sharing the database without --redis: run one node only (several nodes need --redis or --broker to reach each other’s devices)',
    );
  if (!sharing && !(shared && external)) await store.devices.markAllOffline();
  const artifacts = new ArtifactStore(
    join(dataDir, 'artifacts'),
    opts.artifactFs,
    shared ? nodeId : undefined,
  );
  const bus = new EventBus();
  // External brokers report no disconnects: there a device is online only if seen recently.
  const onlineSince = () => (opts.broker?.kind === 'external' ? clock() - limits.offlineAfterMs : null);
  const fleet = new FleetStats(store.sql, onlineSince, clock);
  const metrics = createMetrics(fleet);
  const registry = new DeviceRegistry(
    store,
    bus,
    {
      autoAccept: opts.autoAccept ?? false,
      authWindowMs: limits.authWindowMs,
      maxPendingDevices: limits.maxPendingDevices,
      registerPerSourcePerMinute: limits.registerPerSourcePerMinute,
      registerTrackedSources: limits.registerTrackedSources,
    },
    clock,
  );
  const ingestor = new ReportIngestor(store, limits, log.child({ component: 'ingest' }), metrics, clock);
  const endpoints: ServerContext['endpoints'] = {};
  const publicUrl = () => opts.publicUrl ?? endpoints.api ?? 'http://127.0.0.1:8080';
  const artifactBaseUrl = () => artifactDeliveryOptions.baseUrl ?? publicUrl();
  const offers = new OfferBuilder(store, keys, limits, { publicUrl, artifactBaseUrl }, urlSigner, metrics);
  let transport: DeviceTransport | null = null;
  const runner = new RolloutRunner(
    store,
    () => transport,
    offers,
    bus,
    log.child({ component: 'rollout' }),
    metrics,
    limits,
    clock,
  );
  const deltas = new DeltaService(
    store,
    artifacts,
    keys,
    bus,
    log.child({ component: 'delta' }),
    metrics,
    limits,
    { node: nodeId, shared },
    clock,
  );
  runner.wantDeltas = (from, to, store) => deltas.want(from, to, store);
  runner.startDeltas = () => deltas.pump();
  runner.deltasPending = (tx, from, to) => deltas.pending(from, to, tx);
  ingestor.onEvent((tx, events, now) => runner.applyEvents(tx, events, now));
  ingestor.onApplied((applied) => {
    runner.afterReports();
    for (const { report, fresh } of applied) {
      if (report.channel === 'events' && fresh && report.message.kind === 'offer-refresh')
        if (report.message.deploymentId)
          inBackground(
            log,
            'offer refresh',
            runner.refreshOffer(report.deviceId, report.message.deploymentId),
          );
      if (report.channel === 'events' && fresh && report.message.kind === 'rolled-back')
        metrics.countRollback(report.message.reason?.code);
      if (report.channel === 'events' && fresh)
        bus.emit('device.event', {
          deviceId: report.deviceId,
          kind: report.message.kind,
          deploymentId: report.message.deploymentId,
          reason: report.message.reason ?? null,
        });
      else if (report.channel === 'state')
        bus.emit('device.state', {
          deviceId: report.deviceId,
          version: report.message.version,
          agentState: report.message.agentState,
        });
      else if (report.channel === 'connection' && fresh)
        bus.emit('device.connection', { deviceId: report.deviceId, online: report.online });
    }
  });

  const vulns = new VulnService(store, artifacts, limits, bus, log.child({ component: 'vulns' }), clock);
  vulns.watch();
  const policy = new PolicyService(store, vulns, keys.delta, clock);
  registerVulnGauges(metrics.registry, {
    releases: async () =>
      Promise.all(
        (await store.releases.list()).map(async (r) => {
          const bySeverity: Record<string, number> = {};
          for (const f of (await store.vulns.scan(r.id))?.findings ?? [])
            bySeverity[f.severity] = (bySeverity[f.severity] ?? 0) + 1;
          const channel = ['prod', 'staging', 'dev'].find((c) => r.channels.includes(c as 'prod')) ?? 'none';
          return { version: r.version, channel, bySeverity };
        }),
      ),
    devicesExposed: async () => (await vulns.fleetExposure()).devicesExposed,
    prodFailures: async () => (await policy.prodFailures()).length,
    records: async () => ({
      records: (await store.vulns.counts()).records,
      lastImportTs: (await store.vulns.imports(1))[0]?.ts ?? null,
    }),
    clock,
  });

  const versionHistory = new VersionHistory(
    store,
    limits,
    log.child({ component: 'version-history' }),
    clock,
  );
  const retention = new Retention(store, artifacts, bus, log.child({ component: 'retention' }), clock);
  // What runs on one node only: alone, this one from start to stop; sharing a database, the
  // holder of the engine lease.
  const engine = new EngineRole(
    store.sql,
    [
      { name: 'rollout engine', start: () => runner.start(), stop: () => runner.stop() },
      {
        name: 'retention',
        start: () =>
          retention.schedule(limits.retentionIntervalMs, { keepPerChannel: limits.retentionKeepPerChannel }),
        stop: () => retention.unschedule(),
      },
      { name: 'version samples', start: () => versionHistory.start(), stop: () => versionHistory.stop() },
    ],
    log.child({ component: 'engine' }),
  );
  if (shared) {
    runner.stop(); // until this node takes the lease
    runner.fence = (tx) => fenced(tx.sql, ENGINE_LEASE, engine.epoch, async () => undefined);
  }

  const ctx: ServerContext = {
    store,
    artifacts,
    urlSigner,
    artifactDelivery: artifactDeliveryOptions,
    keys,
    bus,
    log,
    metrics,
    fleet,
    limits,
    versionHistory,
    registry,
    releases: new ReleaseService(store, artifacts, keys, bus, limits, clock, metrics),
    rollouts: runner,
    deltas,
    retention,
    vulns,
    policy,
    transport: () => transport,
    dashboardDir: opts.dashboardDir ?? resolve(new URL('../dashboard', import.meta.url).pathname),
    endpoints,
    clock,
    metricsToken: opts.metricsToken ?? null,
    failedLogins: new FailedLoginLimiter(limits.maxFailedLogins, limits.failedLoginWindowMs),
    cluster: { node: nodeId, store: shared ? 'postgres' : 'sqlite', engine: () => engine.status() },
  };

  let bootstrapToken: string | null = null;
  if ((await store.tokens.activeCount()) === 0) {
    const secret = opts.adminToken;
    if (secret) await store.tokens.createWithSecret('bootstrap admin', 'admin', secret, clock());
    else {
      const { secret: s } = await store.tokens.create('bootstrap admin', 'admin', clock());
      const file = join(dataDir, 'admin-token');
      writeFileSync(file, `${s}\n`, { mode: 0o600 });
      chmodSync(file, 0o600);
      bootstrapToken = s;
    }
    await store.audit.record('server', 'token.bootstrap', null, {}, clock());
  }

  const app = await buildApp(ctx, {
    ...(opts.tls ? { https: opts.tls } : {}),
    ...(opts.trustProxy?.length ? { trustProxy: opts.trustProxy } : {}),
  });
  let broker: EmbeddedBroker | null = null;
  const brokerOpts = opts.broker ?? { kind: 'embedded' as const };
  if (brokerOpts.kind === 'embedded') {
    // Signatures are checked in a worker thread: a storm's ed25519 checks leave the broker's loop.
    const verifier = new PasswordVerifier(log.child({ component: 'mqtt' }));
    const auth = new DeviceAuthenticator(
      registry,
      limits,
      clock,
      store.nonces,
      verifier,
      sharing?.nonces,
      sharing?.loginOrder,
    );
    await auth.load();
    // The fleet's keys are parsed now, not during the reconnect storm that follows this start;
    // a bulk-registered fleet usually comes online together, so its keys too.
    await verifier.preload(await store.devices.acceptedKeys(50_000));
    registry.onKeysAccepted = (keys) => void verifier.preload(keys);
    broker = await EmbeddedBroker.create({
      auth,
      ingestor,
      limits,
      log: log.child({ component: 'mqtt' }),
      metrics,
      onDeviceReachable: (id) => inBackground(log, 'offer resend', runner.resendFor(id)),
      failedLogins: ctx.failedLogins,
      clock,
      ...(sharing ? { shared: sharing, onlineOn: (node: string) => store.devices.onlineOn(node) } : {}),
    });
    transport = broker;
    // A revoked key must not keep a connection it opened while it was accepted.
    registry.onRevoked = (id) => broker?.disconnect(id);
  }
  let offlineSweep: NodeJS.Timeout | null = null;
  let relay: PgEventRelay | null = null;
  let stopKicks: (() => void) | null = null;
  let brokerReconcile: NodeJS.Timeout | null = null;
  let started = false;
  // Every start is audited; a restart says whether the run before it ended cleanly (a
  // `server.stop`) or not (killed, crashed, power lost: its last entry is its `server.start`).
  // Sharing a database, each node's starts and stops are its own (`server:<node>`).
  const actor = shared ? `server:${nodeId}` : 'server';
  const recordStart = async () => {
    const last = await store.audit.lastOf(actor, ['server.start', 'server.restart', 'server.stop']);
    await store.audit.record(
      actor,
      last ? 'server.restart' : 'server.start',
      null,
      {
        pid: process.pid,
        node: nodeId,
        store: ctx.cluster.store,
        broker: brokerOpts.kind,
        ...(sharing ? { redis: true } : {}),
        autoAccept: opts.autoAccept ?? false,
        ...(last ? { previousRun: last.action === 'server.stop' ? 'stopped' : 'ended-unclean' } : {}),
      },
      clock(),
    );
  };

  const server: FlotillaServer = {
    ctx,
    app,
    ingestor,
    broker,
    bootstrapToken,
    async start() {
      if (started) return;
      started = true;
      if (brokerOpts.kind === 'external') {
        const dynsec = brokerOpts.mosquitto === 'dynsec';
        if (brokerOpts.mosquitto && brokerOpts.mosquitto !== 'dynsec') {
          const creds = new MosquittoCredentials(store, brokerOpts.mosquitto, clock);
          registry.credentials = creds;
          await creds.render();
        }
        if (dynsec) await prepareDynsecServerRole(brokerOpts.connect);
        const external = await ExternalBroker.connect(brokerOpts.connect, {
          ingestor,
          log: log.child({ component: 'mqtt' }),
          metrics,
          limits,
          onDeviceReachable: (id) => inBackground(log, 'offer resend', runner.resendFor(id)),
        });
        transport = external;
        if (dynsec) {
          const control = new DynsecControl(external.client);
          await control.attach((topic, handler) => external.listen(topic, handler));
          const dynsecCredentials = new DynsecCredentials(control);
          registry.credentials = dynsecCredentials;
          const reconcile = () =>
            dynsecCredentials
              .reconcile(async () => (await store.devices.allAccepted()).map((d) => d.id))
              .then(({ removed, withoutClient }) => {
                if (removed.length > 0)
                  log.warn({ removed }, 'deleted broker clients of devices the store does not accept');
                if (withoutClient.length > 0)
                  log.warn(
                    { count: withoutClient.length, sample: withoutClient.slice(0, 20) },
                    'accepted devices without a broker client: they must register again for a password',
                  );
              })
              .catch((err: unknown) => log.error({ err }, 'broker client reconcile failed; retried later'));
          registry.onRevokeFailed = (deviceId, err) => {
            log.error({ err, deviceId }, 'broker did not take the revocation; reconciling in 10 s');
            setTimeout(reconcile, 10_000).unref();
          };
          await reconcile();
          brokerReconcile = setInterval(reconcile, limits.brokerReconcileMs);
          brokerReconcile.unref();
        }
        // Devices' last wills make offline immediate; a device whose will was lost (a broker
        // restart) is marked offline once silent for offlineAfterMs, checked a few times per window.
        offlineSweep = setInterval(
          () =>
            inBackground(
              log,
              'offline sweep',
              store.devices.markStaleOffline(clock() - limits.offlineAfterMs).then((ids) => {
                for (const deviceId of ids) bus.emit('device.connection', { deviceId, online: false });
              }),
            ),
          Math.max(50, Math.min(30_000, Math.floor(limits.offlineAfterMs / 4))),
        );
        offlineSweep.unref();
      }
      if (shared) {
        relay = await PgEventRelay.start({
          url: opts.database!,
          bus,
          node: nodeId,
          log: log.child({ component: 'event-relay' }),
        });
        stopKicks = kickOnRemoteEvents(bus, runner);
      }
      await deltas.start();
      await recordStart();
      const lease = {
        name: ENGINE_LEASE,
        node: nodeId,
        onAcquired: engine.acquired,
        onLost: engine.lost,
        clock,
      };
      await engine.run(
        shared ? new PostgresLease(opts.database!, store.sql, lease) : new LocalLease(store.sql, lease),
      );
    },
    async close() {
      if (started) await store.audit.record(actor, 'server.stop', null, { pid: process.pid }, clock());
      await engine.stop();
      stopKicks?.();
      await relay?.close();
      if (offlineSweep) clearInterval(offlineSweep);
      if (brokerReconcile) clearInterval(brokerReconcile);
      await transport?.close();
      await ingestor.close();
      await deltas.close();
      await app.close();
      await store.close();
    },
    async crash() {
      // The lease's connection goes with the process: its lock is free for another node at once.
      await engine.stop();
      stopKicks?.();
      await relay?.close().catch(() => undefined);
      if (offlineSweep) clearInterval(offlineSweep);
      if (brokerReconcile) clearInterval(brokerReconcile);
      ingestor.abandon();
      await deltas.close();
      await transport?.close().catch(() => {});
      await app.close().catch(() => {});
      await store.close();
    },
  };
  return server;
}

export interface ListenOptions extends ServerOptions {
  host?: string;
  /** HTTP API port (0 = any free port). Default 8080. */
  port?: number;
  /** MQTT over TCP (embedded broker). Default 1883; null disables it. */
  mqttPort?: number | null;
  /** MQTT over TLS; needs `tls`. */
  mqttsPort?: number | null;
  /** The MQTT TCP port is behind a load balancer sending PROXY protocol v1 (nginx `proxy_protocol on`). */
  mqttProxyProtocol?: boolean;
  /** Path of MQTT over WebSocket on the API port. Default /mqtt. */
  wsPath?: string;
}

export interface RunningServer extends FlotillaServer {
  addresses: { api: string; mqtt: string | null; mqtts: string | null; ws: string | null; dashboard: string };
}

/** Creates the server and listens: API (+ MQTT over WebSocket on it), MQTT TCP, optionally MQTT over TLS. */
export async function startServer(opts: ListenOptions = {}): Promise<RunningServer> {
  const host = opts.host ?? '127.0.0.1';
  const server = await createServer(opts);
  const { app, broker, ctx } = server;
  if (broker) broker.attachWebSocket(app.server as HttpServer, opts.wsPath ?? '/mqtt');
  await app.listen({ host, port: opts.port ?? 8080, backlog: ctx.limits.listenBacklog });
  const addr = app.server.address();
  const apiPort = typeof addr === 'object' && addr ? addr.port : (opts.port ?? 8080);
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  const api = `${opts.tls ? 'https' : 'http'}://${shown}:${apiPort}`;
  let mqtt: string | null = null;
  let mqtts: string | null = null;
  if (broker && opts.mqttPort !== null)
    mqtt = `mqtt://${shown}:${await broker.listenTcp(opts.mqttPort ?? 1883, host, undefined, opts.mqttProxyProtocol)}`;
  if (broker && opts.tls && opts.mqttsPort !== null)
    mqtts = `mqtts://${shown}:${await broker.listenTcp(opts.mqttsPort ?? 8883, host, opts.tls)}`;
  const ws = broker ? `${opts.tls ? 'wss' : 'ws'}://${shown}:${apiPort}${opts.wsPath ?? '/mqtt'}` : null;
  Object.assign(ctx.endpoints, {
    api,
    ...(mqtt ? { mqtt } : {}),
    ...(mqtts ? { mqtts } : {}),
    ...(ws ? { ws } : {}),
  });
  try {
    await server.start();
  } catch (err) {
    // A broker that refuses the server (or a store that cannot start) must not leave the API listening.
    await server.close().catch(() => undefined);
    throw err;
  }
  return { ...server, addresses: { api, mqtt, mqtts, ws, dashboard: `${api}/` } };
}
