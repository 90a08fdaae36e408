import type { DeploymentRecord, DeploymentState } from './types.js';

/** Device event kinds (protocol EventKind) that move a deployment, and where to. */
const EVENT_STATE: Record<string, DeploymentState> = {
  'offer-accepted': 'offered',
  'offer-rejected': 'failed',
  'download-progress': 'downloading',
  downloaded: 'downloading',
  'install-progress': 'installing',
  installed: 'installed',
  rebooting: 'rebooting',
  healthy: 'healthy',
  'rolled-back': 'rolled-back',
  failed: 'failed',
};

const RANK: Partial<Record<DeploymentState, number>> = {
  offered: 1,
  downloading: 2,
  installing: 3,
  installed: 4,
  rebooting: 5,
};

/**
 * The next state when a device reports `kind`, or null when nothing changes:
 * - progress never goes backwards (a late download-progress after `installing` is ignored);
 * - `failed`, `rolled-back`, `cancelled` and `aborted` are final for the attempt: no later event
 *   of it changes them (a device cannot turn its own failure into success; the cancellation a
 *   stopped device reports does not become a failure). Only the engine's retry starts a new one;
 * - `healthy` ends an attempt in flight, a `timed-out` one (a late success) and an `aborted` one
 *   (the device was past the point of no return when the cancel reached it) — `applyDeviceEvent`
 *   believes it only when the device names the deployment's release;
 * - a device that fell back after `healthy`, or reports a late outcome after `timed-out`
 *   (the server's guess), becomes `rolled-back` or `failed`.
 */
export function nextDeploymentState(current: DeploymentState, kind: string): DeploymentState | null {
  const target = EVENT_STATE[kind];
  if (!target || target === current) return null;
  const inFlight = RANK[current] !== undefined || current === 'pending';
  switch (target) {
    case 'healthy':
      return inFlight || current === 'timed-out' || current === 'aborted' ? target : null;
    case 'rolled-back':
      return RANK[current] !== undefined || current === 'healthy' || current === 'timed-out' ? target : null;
    case 'failed':
      return RANK[current] !== undefined || current === 'timed-out' ? target : null;
    default: {
      const curRank = RANK[current];
      return curRank !== undefined && (RANK[target] ?? 0) > curRank ? target : null;
    }
  }
}

/** What a device event says, as far as the deployment record is concerned. */
export interface DeviceEventFacts {
  kind: string;
  at: number;
  /** `code: message` of a failure, kept on the record. */
  reason?: string | null;
  /** The release version the event names (agents send it with every milestone). */
  version?: string | null;
}

/**
 * Applies a device event to its deployment record (to the rollback deployment once the rollout
 * offered one). `release` is the version the deployment delivers; a `healthy` naming another
 * version (or none) is not believed: healthy counts only for the deployment's own image.
 * Returns the new record, or null when the event changes nothing.
 */
export function applyDeviceEvent(
  record: DeploymentRecord,
  event: DeviceEventFacts,
  release: string,
): DeploymentRecord | null {
  const failing = (s: DeploymentState) => s === 'failed' || s === 'rolled-back';
  const reason = event.reason ?? null;
  const expected = record.rollback ? record.rollback.toVersion : release;
  if (event.kind === 'healthy' && event.version !== expected) return null;
  if (record.rollback) {
    const next = nextDeploymentState(record.rollback.state, event.kind);
    if (!next) return null;
    return {
      ...record,
      rollback: {
        ...record.rollback,
        state: next,
        updatedAt: event.at,
        failureReason: failing(next) ? reason : null,
      },
    };
  }
  const next = nextDeploymentState(record.state, event.kind);
  if (!next) return null;
  const failureReason = failing(next) ? reason : next === 'healthy' ? null : record.failureReason;
  return { ...record, state: next, updatedAt: event.at, failureReason };
}
