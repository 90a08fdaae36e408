/**
 * @flotilla/server — the control plane: fastify API, embedded aedes broker (or an external one),
 * SQLite store, artifact store, delta workers, rollout integration and retention.
 */
export { buildApp } from './api/app.js';
export type { ServerContext } from './context.js';
export { SERVER_ERRORS, ServerError, type ServerErrorCode } from './errors.js';
export { importKeys, loadOrCreateServerKeys, type ServerKeys } from './keys/server-keys.js';
export { DEFAULT_LIMITS, type ServerLimits } from './limits.js';
export { mosquittoHash } from './mqtt/mosquitto-credentials.js';
export {
  createServer,
  DEFAULT_DATA_DIR,
  type FlotillaServer,
  type ListenOptions,
  type RunningServer,
  type ServerOptions,
  startServer,
} from './server.js';
// Vulnerability matching, for the bench and tools (the server uses it through VulnService).
export { type Finding, VulnIndex } from './vulns/match.js';
export { parseOsvRecord, type VulnRecord } from './vulns/osv-record.js';
export { type InstalledPackage, sbomPackages } from './vulns/sbom-packages.js';
