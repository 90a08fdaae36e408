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
 * The next state when a device reports `kind`, or null when nothing changes. Progress never goes
 * backwards (a late download-progress after `installing` is ignored); `healthy` is believed from
 * any state (the device runs and committed the release); a device that fell back after `healthy`
 * becomes `rolled-back`. Progress after a terminal state is ignored.
 */
export function nextDeploymentState(current: DeploymentState, kind: string): DeploymentState | null {
  const target = EVENT_STATE[kind];
  if (!target || target === current) return null;
  const curRank = RANK[current];
  switch (target) {
    case 'healthy':
      return target;
    case 'rolled-back':
      return curRank !== undefined || ['healthy', 'timed-out', 'cancelled', 'failed'].includes(current)
        ? target
        : null;
    case 'failed':
      return curRank !== undefined || current === 'timed-out' || current === 'cancelled' ? target : null;
    default: {
      const targetRank = RANK[target] ?? 0;
      return curRank !== undefined && targetRank > curRank ? target : null;
    }
  }
}

/**
 * Applies a device event to its deployment record (to the rollback deployment once the rollout
 * offered one). Returns the new record, or null when the event changes nothing.
 */
export function applyDeviceEvent(
  record: DeploymentRecord,
  kind: string,
  at: number,
  reason: string | null = null,
): DeploymentRecord | null {
  const failing = (s: DeploymentState) => s === 'failed' || s === 'rolled-back';
  if (record.rollback) {
    const next = nextDeploymentState(record.rollback.state, kind);
    if (!next) return null;
    return {
      ...record,
      rollback: {
        ...record.rollback,
        state: next,
        updatedAt: at,
        failureReason: failing(next) ? reason : null,
      },
    };
  }
  const next = nextDeploymentState(record.state, kind);
  if (!next) return null;
  const failureReason = failing(next) ? reason : next === 'healthy' ? null : record.failureReason;
  return { ...record, state: next, updatedAt: at, failureReason };
}
