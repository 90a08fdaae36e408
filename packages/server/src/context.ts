import type { Logger } from 'pino';
import type { ArtifactDelivery } from './artifacts/artifact-delivery.js';
import type { ArtifactStore } from './artifacts/artifact-store.js';
import type { UrlSigner } from './artifacts/url-signer.js';
import type { EngineStatus } from './cluster/engine-role.js';
import type { DeltaService } from './deltas/delta-service.js';
import type { RolloutRunner } from './deploy/rollout-runner.js';
import type { DeviceRegistry } from './devices/registry.js';
import type { VersionHistory } from './devices/version-history.js';
import type { EventBus } from './events/bus.js';
import type { ServerKeys } from './keys/server-keys.js';
import type { ServerLimits } from './limits.js';
import type { Metrics } from './metrics.js';
import type { DeviceTransport } from './mqtt/transport.js';
import type { PolicyService } from './policy/policy-service.js';
import type { ReleaseService } from './releases/release-service.js';
import type { Retention } from './retention/retention.js';
import type { FailedLoginLimiter } from './security/failed-logins.js';
import type { FleetStats } from './store/fleet-stats.js';
import type { Store } from './store/store.js';
import type { VulnService } from './vulns/vuln-service.js';

/** Everything the API routes use; built once by `createServer`. */
export interface ServerContext {
  store: Store;
  artifacts: ArtifactStore;
  /** Signs and checks the short-lived artifact URLs put into offers. */
  urlSigner: UrlSigner;
  /** Who sends artifact bytes: the server itself, or nginx after an `X-Accel-Redirect` (accelPrefix). */
  artifactDelivery: ArtifactDelivery;
  keys: ServerKeys;
  bus: EventBus;
  log: Logger;
  metrics: Metrics;
  /** Whole-fleet counts in SQL (fleet summary route, scrape-time gauges). */
  fleet: FleetStats;
  limits: ServerLimits;
  /** Accepted devices per version, sampled into the store on a timer. */
  versionHistory: VersionHistory;
  registry: DeviceRegistry;
  releases: ReleaseService;
  rollouts: RolloutRunner;
  deltas: DeltaService;
  retention: Retention;
  vulns: VulnService;
  policy: PolicyService;
  transport: () => DeviceTransport | null;
  /** Where the dashboard's static files are (served at / when the directory exists). */
  dashboardDir: string | null;
  /** Addresses shown by GET /api/v1/server (filled in once listening). */
  endpoints: { api?: string; mqtt?: string; mqtts?: string; ws?: string };
  clock: () => number;
  /** The scrape token GET /metrics needs (null: /metrics is public, for a scraper on a private network). */
  metricsToken: string | null;
  /** Failed API-token and MQTT logins per source address (rate limit). */
  failedLogins: FailedLoginLimiter;
  /** This node among those sharing the store, and who runs the rollout engine (GET /api/v1/cluster). */
  cluster: { node: string; store: 'sqlite' | 'postgres'; engine: () => Promise<EngineStatus> };
}
