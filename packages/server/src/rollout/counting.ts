import { basisPoints } from './normalize.js';
import type { PhaseSpec, RolloutPolicy } from './policy.js';
import {
  type DeploymentRecord,
  type DeploymentState,
  IN_FLIGHT_STATES,
  type PhaseCounts,
  type PhaseRuntime,
  type RolloutRuntime,
} from './types.js';

export type Bucket = 'notStarted' | 'inFlight' | 'healthy' | 'failed' | 'retrying' | 'cancelled' | 'aborted';

const IN_FLIGHT = new Set<DeploymentState>(IN_FLIGHT_STATES);
export const isInFlight = (state: DeploymentState): boolean => IN_FLIGHT.has(state);

/** Retries stop once the rollout rolls back, is aborted or is done: never push a bad release. */
export function retriesAllowed(runtime: RolloutRuntime): boolean {
  return (
    !runtime.rollingBack &&
    runtime.status !== 'aborted' &&
    runtime.status !== 'completed' &&
    runtime.status !== 'failed'
  );
}

/** Is another offer allowed after this failure? `attempts` counts offers made so far. */
export function canRetry(policy: RolloutPolicy, record: DeploymentRecord): boolean {
  const budget =
    record.state === 'failed'
      ? policy.retries.failed
      : record.state === 'rolled-back'
        ? policy.retries.rolledBack
        : record.state === 'timed-out'
          ? policy.retries.timedOut
          : 0;
  return record.attempts <= budget;
}

export function bucketOf(policy: RolloutPolicy, runtime: RolloutRuntime, record: DeploymentRecord): Bucket {
  switch (record.state) {
    case 'pending':
      return 'notStarted';
    case 'healthy':
      return 'healthy';
    case 'cancelled':
      return 'cancelled';
    case 'aborted':
      return 'aborted';
    case 'failed':
    case 'rolled-back':
    case 'timed-out':
      return retriesAllowed(runtime) && canRetry(policy, record) ? 'retrying' : 'failed';
    default:
      return 'inFlight';
  }
}

export function emptyCounts(): PhaseCounts {
  return {
    total: 0,
    healthy: 0,
    failed: 0,
    rolledBack: 0,
    timedOut: 0,
    retrying: 0,
    inFlight: 0,
    notStarted: 0,
    cancelled: 0,
    aborted: 0,
    reverted: 0,
  };
}

export function addRecord(
  counts: PhaseCounts,
  policy: RolloutPolicy,
  runtime: RolloutRuntime,
  record: DeploymentRecord,
): void {
  counts.total++;
  const bucket = bucketOf(policy, runtime, record);
  counts[bucket]++;
  if (bucket === 'failed') {
    if (record.state === 'rolled-back') counts.rolledBack++;
    if (record.state === 'timed-out') counts.timedOut++;
  }
  if (record.rollback?.state === 'healthy') counts.reverted++;
}

/** Counts per phase over the records of devices present in the snapshot. */
export function countPhases(
  policy: RolloutPolicy,
  runtime: RolloutRuntime,
  records: Iterable<DeploymentRecord>,
  present: (deviceId: string) => boolean,
): PhaseCounts[] {
  const out = policy.phases.map(() => emptyCounts());
  for (const r of records) {
    const c = out[r.phase];
    if (c && present(r.deviceId)) addRecord(c, policy, runtime, r);
  }
  return out;
}

export interface Judgement {
  executed: number;
  minExecuted: number;
  successMet: boolean;
  errorExceeded: boolean;
  /** Failures that count against the error threshold (after a resume's acknowledgement). */
  judgedFailures: number;
}

/**
 * hawkBit semantics, exactly: success when healthy ÷ total ≥ threshold, error when
 * failed ÷ total > threshold (strictly); an empty phase succeeds and never errs. Neither is judged
 * before `minExecuted` devices (capped by the phase size) have finished, like AWS
 * `minNumberOfExecutedThings`. Integer arithmetic in basis points: no rounding at the boundary.
 */
export function judgePhase(spec: PhaseSpec, phase: PhaseRuntime, c: PhaseCounts): Judgement {
  const executed = c.healthy + c.failed;
  const minExecuted = Math.min(spec.minExecuted, c.total);
  const judgedFailures = Math.max(0, c.failed - phase.acknowledgedFailures);
  if (c.total === 0) return { executed, minExecuted, successMet: true, errorExceeded: false, judgedFailures };
  const enough = executed >= minExecuted;
  return {
    executed,
    minExecuted,
    judgedFailures,
    successMet: enough && c.healthy * 10_000 >= basisPoints(spec.successThreshold) * c.total,
    errorExceeded: enough && judgedFailures * 10_000 > basisPoints(spec.errorThreshold) * c.total,
  };
}
