/**
 * The data the rollout engine reads (snapshot) and writes (decisions). All times are epoch
 * milliseconds (UTC); the engine never reads a clock, `now` is always passed in.
 */

export type RolloutStatus =
  | 'scheduled'
  | 'running'
  /** Devices wait for an offer but no maintenance window is open (running again when one opens). */
  | 'waiting'
  | 'waiting-approval'
  | 'soaking'
  | 'paused'
  | 'completed'
  /**
   * Ended (static rollouts): every device of the current phase finished, none can be retried, and
   * the phase is below its success threshold without crossing its error threshold — nothing could
   * change any more. `runtime.failure` says which phase and by how much.
   */
  | 'failed'
  | 'aborted';

export type DeploymentState =
  | 'pending'
  | 'offered'
  | 'downloading'
  | 'installing'
  | 'installed'
  | 'rebooting'
  | 'healthy'
  | 'failed'
  | 'rolled-back'
  | 'timed-out'
  /** Never offered: the rollout was aborted before this device's turn. */
  | 'cancelled'
  /** In flight when the rollout was aborted and told to stop: not a failure of the release. */
  | 'aborted';

/** Devices the server is waiting on: they hold a concurrency slot. `installed` is NOT success. */
export const IN_FLIGHT_STATES: readonly DeploymentState[] = [
  'offered',
  'downloading',
  'installing',
  'installed',
  'rebooting',
];
/** Failures: only `healthy` (committed after reboot) ever counts as success. */
export const FAILURE_STATES: readonly DeploymentState[] = ['failed', 'rolled-back', 'timed-out'];
export const TERMINAL_STATES: readonly DeploymentState[] = [
  'healthy',
  'failed',
  'rolled-back',
  'timed-out',
  'cancelled',
  'aborted',
];
/**
 * Final for the deployment attempt: no later device event of the attempt changes them (a device
 * cannot turn its own failure into success). Only the engine's retry starts a new attempt.
 */
export const FINAL_STATES: readonly DeploymentState[] = ['failed', 'rolled-back', 'cancelled', 'aborted'];

export interface DeviceSnapshot {
  id: string;
  hardware: string;
  tags: readonly string[];
  group: string | null;
  channel: string | null;
  currentVersion: string | null;
  currentImageSha256: string | null;
  /** Connected to the broker now. Offline devices are never offered (they stay pending). */
  online: boolean;
  lastSeen: number | null;
  /** The device has an unfinished deployment of another rollout: it is not offered meanwhile. */
  busy?: boolean;
  /** The anti-rollback floor the device reported (it refuses releases below it); absent = 0. */
  securityVersion?: number;
}

/** The second deployment a device gets when the rollout rolls back: the previous release. */
export interface RollbackRecord {
  toVersion: string;
  state: DeploymentState;
  offeredAt: number;
  updatedAt: number;
  failureReason: string | null;
}

/** One device's part in one rollout. */
export interface DeploymentRecord {
  deviceId: string;
  phase: number;
  state: DeploymentState;
  /** Offers of the release made so far (1 after the first offer). */
  attempts: number;
  /** When the latest offer was made (the per-device timeout runs from here). */
  offeredAt: number | null;
  updatedAt: number;
  failureReason: string | null;
  /** The version the device ran when it joined: what an automatic rollback goes back to. */
  fromVersion: string | null;
  /** Set once the rollout offered the previous release back to this device. */
  rollback: RollbackRecord | null;
}

export type PauseReason =
  | { kind: 'operator'; at: number; by: string | null; note: string | null }
  | {
      kind: 'error-threshold';
      at: number;
      phase: number;
      failed: number;
      total: number;
      /** Percent the failures exceeded (strictly). */
      threshold: number;
    };

export interface PhaseRuntime {
  startedAt: number | null;
  /** When the phase first met its success condition in the current stretch (soak timer). */
  soakStartedAt: number | null;
  succeededAt: number | null;
  approvedAt: number | null;
  approvedBy: string | null;
  /** Failures the operator accepted by resuming after an error pause: only new ones are judged. */
  acknowledgedFailures: number;
}

/** The rollout's own state; the server stores it as one JSON document next to the rollout row. */
export interface RolloutRuntime {
  status: RolloutStatus;
  /** Index of the latest phase that started; -1 before the first one. */
  currentPhase: number;
  phases: PhaseRuntime[];
  pause: PauseReason | null;
  /** True once the rollout offers the previous release back (after an error pause or abort). */
  rollingBack: boolean;
  /** Fixed one-minute window counting offers, for the rate limit. */
  rateWindow: { start: number; count: number } | null;
  startedAt: number | null;
  finishedAt: number | null;
  /** Why the rollout ended `failed` (absent otherwise, and in runtimes stored before it existed). */
  failure?: RolloutFailure | null;
}

/** The phase that could no longer reach its success threshold. */
export interface RolloutFailure {
  at: number;
  phase: number;
  healthy: number;
  total: number;
  /** The phase's success threshold (percent) that was not met. */
  successThreshold: number;
}

export interface ReleaseRef {
  version: string;
  /** Hardware ids the release is built for (empty = any). Devices of other hardware never join. */
  compatible: readonly string[];
  /** Devices whose security floor is above this never join (absent = 0). */
  securityVersion?: number;
}

export interface RolloutSnapshot {
  rolloutId: string;
  release: ReleaseRef;
  runtime: RolloutRuntime;
  /**
   * Candidate devices: at least every accepted device that may match the target selector, plus
   * every device that has a deployment record. Records of devices missing here are left out of
   * all counts (a deleted device leaves the rollout).
   */
  devices: readonly DeviceSnapshot[];
  deployments: readonly DeploymentRecord[];
}

/** What the engine asks the server to do; applied in order, in one transaction. */
export type Decision =
  | { type: 'rollout-started' }
  | { type: 'assign'; deviceId: string; phase: number; fromVersion: string | null }
  | { type: 'phase-started'; phase: number }
  | { type: 'wait-approval'; phase: number }
  | { type: 'offer'; deviceId: string; phase: number; attempt: number }
  /** The device already runs the release (e.g. installed by hand): counts as healthy, no offer. */
  | { type: 'already-installed'; deviceId: string; phase: number }
  | { type: 'timed-out'; deviceId: string; phase: number; attempt: number }
  /** Back to pending for another offer (the offer itself comes when limits allow). */
  | { type: 'retry'; deviceId: string; phase: number; nextAttempt: number; after: DeploymentState }
  | { type: 'soak-started'; phase: number }
  | { type: 'soak-reset'; phase: number }
  | { type: 'phase-succeeded'; phase: number }
  | { type: 'pause'; reason: PauseReason; rollback: boolean }
  | { type: 'complete' }
  /** Static rollout: every device of the phase is final and it fell short of its success threshold. */
  | { type: 'fail'; failure: Omit<RolloutFailure, 'at'> }
  /** Devices wait for an offer and no maintenance window is open: status `waiting`. */
  | { type: 'wait-window' }
  /** A window opened (or nothing waits any more): back to `running`. */
  | { type: 'stop-waiting' }
  /** notify: send a cancel command (the device was offered or is downloading; it ends `aborted`). */
  | { type: 'cancel'; deviceId: string; phase: number; notify: boolean }
  | { type: 'rollback-offer'; deviceId: string; phase: number; toVersion: string }
  | { type: 'rollback-timed-out'; deviceId: string; phase: number };

export type DecisionType = Decision['type'];

/** Devices of one phase by where their deployment stands. */
export interface PhaseCounts {
  total: number;
  healthy: number;
  /** Failed for good (no retry left): failed + rolledBack + timedOut. */
  failed: number;
  rolledBack: number;
  timedOut: number;
  /** Failed but will be offered again. */
  retrying: number;
  inFlight: number;
  /** Pending and never offered (offline devices stay here). */
  notStarted: number;
  cancelled: number;
  /** In flight when the rollout was aborted (stopped, not failed): never counted as failures. */
  aborted: number;
  /** Devices the rollout took back to their previous release. */
  reverted: number;
}

export interface PhaseSummary extends PhaseCounts {
  index: number;
  name: string;
  executed: number;
  minExecuted: number;
  successThreshold: number;
  errorThreshold: number;
  /** healthy ÷ total in percent (100 for an empty phase). */
  successPercent: number;
  /** failed ÷ total in percent, minus failures acknowledged by a resume. */
  errorPercent: number;
  successMet: boolean;
  errorExceeded: boolean;
  status: 'not-started' | 'waiting-approval' | 'running' | 'soaking' | 'succeeded';
  startedAt: number | null;
  soakEndsAt: number | null;
  succeededAt: number | null;
  requireApproval: boolean;
  approved: boolean;
}

export interface RolloutSummary {
  rolloutId: string;
  release: string;
  status: RolloutStatus;
  currentPhase: number;
  pause: PauseReason | null;
  rollingBack: boolean;
  /** Offers allowed per minute now (null = no rate limit). */
  ratePerMinute: number | null;
  inMaintenanceWindow: boolean;
  phases: PhaseSummary[];
  totals: {
    devices: number;
    healthy: number;
    failed: number;
    inFlight: number;
    notStarted: number;
    cancelled: number;
    aborted: number;
    reverted: number;
  };
  /** Why a `failed` rollout ended (null otherwise). */
  failure: RolloutFailure | null;
}
