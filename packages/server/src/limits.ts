import { LIMITS as PROTOCOL_LIMITS } from '@flotilla/protocol';

/** Every bound and timing of the server in one place; `ServerOptions.limits` overrides any of them. */
export const DEFAULT_LIMITS = {
  /** Largest upload (rootfs tarball, image or bundle). */
  maxUploadBytes: 4 * 1024 * 1024 * 1024,
  /** Uploads (bundles and builds) received at once; more are refused with 503, not queued. */
  maxConcurrentUploads: 2,
  /**
   * Temporary bytes all running uploads may hold together: the bytes received plus, for a
   * build, the partition image it writes. Past it an upload is refused with 507.
   */
  maxUploadTempBytes: 16 * 1024 * 1024 * 1024,
  /** Largest JSON request body. */
  maxJsonBodyBytes: 1024 * 1024,
  /** Largest MQTT payload a device may publish (the frame guard allows the topic on top). */
  maxMqttPayloadBytes: PROTOCOL_LIMITS.maxMqttPayloadBytes,
  /** Device passwords are accepted this far from the server clock; nonces are kept as long. */
  authWindowMs: 5 * 60 * 1000,
  /** Most nonces remembered; past it new connections are refused rather than memory growing. */
  maxNonces: 1_000_000,
  /** Device reports are written in one transaction at most this often (batches keep up at 20k/s). */
  ingestFlushMs: 50,
  /** A batch never holds more reports than this; the rest wait for the next flush. */
  ingestMaxBatch: 5000,
  /** Reports waiting for a flush before the broker stops acking (back-pressure on devices). */
  ingestMaxQueue: 200_000,
  /** Offers are short-lived: a device must start on them quickly or get a fresh one. */
  offerTtlMs: 60 * 60 * 1000,
  /**
   * Artifact URLs in offers are signed for one device and expire after this long; an agent whose
   * URL expired mid-download asks for a fresh offer and resumes with Range.
   */
  artifactUrlTtlMs: 15 * 60 * 1000,
  /** Failed logins (API tokens, MQTT CONNECT) one source address may make per window… */
  maxFailedLogins: 20,
  /** …before its further attempts are refused with 429 / a CONNACK refusal until the window ends. */
  failedLoginWindowMs: 60 * 1000,
  /** Delta descriptors live as long as their cache entry is trusted. */
  deltaTtlDays: 30,
  /** A delta descriptor with less validity left than this (or the offer TTL) is re-issued when offered. */
  deltaRenewBeforeMs: 24 * 60 * 60 * 1000,
  /** The rollout engine re-runs on this timer (and on every device event). */
  rolloutTickMs: 5000,
  /** Worker threads building deltas at once. */
  deltaWorkers: 1,
  /** Retention runs on its own this often (0 = only through the API). The first run is one interval after start. */
  retentionIntervalMs: 6 * 60 * 60 * 1000,
  /** Newest releases per channel the timed retention keeps (the API call names its own). */
  retentionKeepPerChannel: 3,
  /**
   * External broker only: a device with no report for this long counts as offline (the broker
   * tells the server of no disconnects). Checked every quarter window (at most every 30 s).
   * The agent reports on connect and on every change but sends no periodic heartbeat yet, so an
   * idle device behind an external broker shows offline after this window (docs/server.md).
   */
  offlineAfterMs: 5 * 60 * 1000,
  /**
   * Several nodes (`--redis`): each node's heartbeat in Redis lives this long and is renewed every
   * third of it. A node silent for longer counts as dead, and a survivor marks the devices it held
   * offline (docs/cluster.md, "Broker tier"); a node that was only stalled records them again.
   */
  nodeHeartbeatTtlMs: 15_000,
  /** External broker (Mosquitto dynsec): how often broker clients are checked against the store. */
  brokerReconcileMs: 5 * 60 * 1000,
  /**
   * Pending-connection queue of the API and MQTT listeners. The kernel caps it at
   * net.core.somaxconn (4096 on Debian 12), so asking for the most makes that sysctl the one knob
   * (docs/server.md, "Reconnect storms"). Node's default, 511, overflowed by the hundreds of
   * thousands when 10,000 devices connected or downloaded at once: dropped SYNs are retried after
   * 1, 3, 7 s… and downloads timed out.
   */
  listenBacklog: 65535,
  /**
   * Most devices waiting in `pending` for an operator. Past it, registrations without a
   * provisioning token are refused (FLOTILLA_ERR_SERVER_PENDING_FULL) until some are accepted or
   * rejected: unproven claims cannot grow the table without bound.
   */
  maxPendingDevices: 1000,
  /**
   * Registration attempts per source address and minute that leave a pending claim or fail
   * (FLOTILLA_ERR_SERVER_REGISTER_RATE_LIMITED past it). Registrations that end accepted do not count.
   */
  registerPerSourcePerMinute: 30,
  /** Source addresses the registration limit tracks at once (oldest dropped first). */
  registerTrackedSources: 10_000,
  /** The server samples accepted devices per version this often (the dashboard's versions over time). */
  versionSampleIntervalMs: 5 * 60 * 1000,
  /** Version samples are kept this long… */
  versionHistoryDays: 14,
  /** …and never more than this many (14 days at 5 min is 4,032). */
  versionHistoryMaxSamples: 5000,
  /** Most devices one bulk pre-registration request may carry (~150 KiB of JSON at 1,000). */
  maxBulkRegister: 1000,
  /** Most items a list route returns. */
  maxPageSize: 1000,
  /** SSE clients at once. */
  maxSseClients: 256,
  /** Vulnerability imports (OSV zips): largest upload, largest record and sum once inflated, most records. */
  maxOsvImportBytes: 512 * 1024 * 1024,
  maxOsvRecordBytes: 4 * 1024 * 1024,
  maxOsvInflatedBytes: 2 * 1024 * 1024 * 1024,
  maxOsvRecords: 500_000,
} as const;

export type ServerLimits = { -readonly [K in keyof typeof DEFAULT_LIMITS]: number };

export function resolveLimits(overrides: Partial<ServerLimits> = {}): ServerLimits {
  return { ...DEFAULT_LIMITS, ...overrides };
}
