/** Every bound and default the agent applies, in one place; config `limits` may override them. */
export const AGENT_LIMITS = {
  /** Largest state file the agent reads back. */
  maxStateFileBytes: 1024 * 1024,
  /** Times one state may start within one deployment (crash-restart loops included). */
  maxStateRuns: 8,
  /** Largest image accepted at all (the slot size is the tighter bound in practice). */
  maxImageBytes: 64 * 1024 * 1024 * 1024,
  /** Largest delta spooled on the data partition. */
  maxSpoolBytes: 2 * 1024 * 1024 * 1024,
  /** Free space kept on the data partition while spooling. */
  spoolReserveBytes: 16 * 1024 * 1024,
  /** Largest chunk a manifest may use (one chunk is buffered to verify it before writing). */
  maxChunkBytes: 16 * 1024 * 1024,
  /** Slot reads (hashing, drift) use blocks of this size. */
  readBlockBytes: 1024 * 1024,
  /** Persist a download checkpoint (after fsync of the slot) every this many bytes. */
  checkpointBytes: 16 * 1024 * 1024,
  download: {
    /** Consecutive failed attempts without progress before giving up. */
    maxRetries: 6,
    /** Attempts in total, progress or not (bounds a server that drips and cuts forever). */
    maxAttempts: 30,
    backoffBaseMs: 1000,
    backoffMaxMs: 60_000,
    /** Connection + response-header timeout. */
    connectTimeoutMs: 15_000,
    /** No byte for this long aborts the attempt. */
    idleTimeoutMs: 30_000,
    /** Slow-retrieval defence: the rate over each window must reach this. */
    minBytesPerSecond: 4 * 1024,
    rateWindowMs: 30_000,
    /** Progress events at most this often. */
    progressEveryMs: 2000,
    /** A signed URL expired: how long to wait for the fresh offer asked for. */
    urlRefreshTimeoutMs: 60_000,
  },
  hooks: {
    timeoutMs: 5 * 60_000,
    /** Output kept per hook run (stdout + stderr) and sent as hook-output events. */
    maxOutputBytes: 10 * 1024,
    /** Exit code 21 = retry later: how often, and how long between. */
    maxRetries: 5,
    retryIntervalMs: 60_000,
  },
  updateLock: { pollMs: 5000, maxWaitMs: 24 * 3600_000 },
  health: { deadlineMs: 5 * 60_000, retryIntervalMs: 5000, checkTimeoutMs: 30_000 },
  outbox: { maxEvents: 1000, maxBytes: 4 * 1024 * 1024 },
  mqtt: { backoffBaseMs: 1000, backoffMaxMs: 120_000, connectTimeoutMs: 20_000, keepaliveSeconds: 60 },
  drift: { intervalMs: 24 * 3600_000 },
  /** Root metadata fetched from the server (TUF root update): size, count per update, wait. */
  trust: { maxRootBytes: 1024 * 1024, maxRootsPerUpdate: 64, fetchTimeoutMs: 15_000 },
} as const;

/**
 * The periodic state report (heartbeat). Fixed bounds, not a `limits` override: the server's
 * `offlineAfterMs` (default 5 min) must stay above the interval, and a device must never flood.
 */
export const STATE_REPORT = {
  defaultIntervalMs: 120_000,
  minIntervalMs: 5000,
  maxIntervalMs: 24 * 3600_000,
  /** Each wait is the interval ±10 %: a fleet restarted at once does not report in lockstep. */
  jitter: 0.1,
} as const;

type Widen<T> = T extends number ? number : { [K in keyof T]: Widen<T[K]> };
export type AgentLimits = Widen<typeof AGENT_LIMITS>;
type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };
export type AgentLimitsOverride = DeepPartial<AgentLimits>;

export function resolveLimits(override: AgentLimitsOverride = {}): AgentLimits {
  const out = structuredClone(AGENT_LIMITS) as AgentLimits;
  for (const [k, v] of Object.entries(override)) {
    if (v === undefined) continue;
    const cur = (out as Record<string, unknown>)[k];
    if (cur && typeof cur === 'object') Object.assign(cur, v);
    else (out as Record<string, unknown>)[k] = v;
  }
  return out;
}
