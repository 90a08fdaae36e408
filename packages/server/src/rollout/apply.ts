import { countOffer } from './rate.js';
import type { Decision, DeploymentRecord, PhaseRuntime, RolloutRuntime, RolloutSnapshot } from './types.js';

/**
 * A snapshot being changed by decisions: the runtime is a private copy, records are replaced
 * (never mutated in place), so the caller's snapshot is never touched.
 */
export class WorkingState {
  readonly runtime: RolloutRuntime;
  readonly records = new Map<string, DeploymentRecord>();

  constructor(snapshot: RolloutSnapshot) {
    this.runtime = cloneRuntime(snapshot.runtime);
    for (const record of snapshot.deployments) this.records.set(record.deviceId, record);
  }

  update(deviceId: string, patch: Partial<DeploymentRecord>): void {
    const record = this.records.get(deviceId);
    if (record) this.records.set(deviceId, { ...record, ...patch });
  }

  phase(index: number): PhaseRuntime {
    const phase = this.runtime.phases[index];
    if (!phase) throw new Error(`rollout engine: phase ${index} out of range`);
    return phase;
  }
}

export function cloneRuntime(runtime: RolloutRuntime): RolloutRuntime {
  return {
    ...runtime,
    phases: runtime.phases.map((phase) => ({ ...phase })),
    pause: runtime.pause ? { ...runtime.pause } : null,
    failure: runtime.failure ? { ...runtime.failure } : null,
    rateWindow: runtime.rateWindow ? { ...runtime.rateWindow } : null,
  };
}

/**
 * The reference meaning of every decision. The server applies the same changes in SQL (or calls
 * this and stores the result); `decide` runs its rules on the snapshot it leaves, so a pass is consistent.
 */
export function applyDecision(working: WorkingState, decision: Decision, now: number): void {
  const runtime = working.runtime;
  switch (decision.type) {
    case 'rollout-started':
      runtime.status = 'running';
      runtime.startedAt = now;
      return;
    case 'assign':
      working.records.set(decision.deviceId, {
        deviceId: decision.deviceId,
        phase: decision.phase,
        state: 'pending',
        attempts: 0,
        offeredAt: null,
        updatedAt: now,
        failureReason: null,
        fromVersion: decision.fromVersion,
        rollback: null,
      });
      return;
    case 'phase-started':
      working.phase(decision.phase).startedAt = now;
      runtime.currentPhase = decision.phase;
      runtime.status = 'running';
      return;
    case 'wait-approval':
      runtime.status = 'waiting-approval';
      return;
    case 'offer':
      working.update(decision.deviceId, {
        state: 'offered',
        attempts: decision.attempt,
        offeredAt: now,
        updatedAt: now,
        failureReason: null,
      });
      runtime.rateWindow = countOffer(runtime.rateWindow, now);
      return;
    case 'already-installed':
      working.update(decision.deviceId, { state: 'healthy', updatedAt: now });
      return;
    case 'timed-out':
      working.update(decision.deviceId, {
        state: 'timed-out',
        updatedAt: now,
        failureReason: 'no result within the per-device timeout',
      });
      return;
    case 'retry':
      working.update(decision.deviceId, { state: 'pending', updatedAt: now });
      return;
    case 'soak-started':
      working.phase(decision.phase).soakStartedAt = now;
      runtime.status = 'soaking';
      return;
    case 'soak-reset':
      working.phase(decision.phase).soakStartedAt = null;
      runtime.status = 'running';
      return;
    case 'phase-succeeded':
      working.phase(decision.phase).succeededAt = now;
      runtime.status = 'running';
      return;
    case 'pause':
      runtime.status = 'paused';
      runtime.pause = decision.reason;
      runtime.rollingBack = runtime.rollingBack || decision.rollback;
      return;
    case 'complete':
      runtime.status = 'completed';
      runtime.finishedAt = now;
      return;
    case 'fail':
      runtime.status = 'failed';
      runtime.finishedAt = now;
      runtime.failure = { at: now, ...decision.failure };
      return;
    case 'wait-window':
      runtime.status = 'waiting';
      return;
    case 'stop-waiting':
      runtime.status = 'running';
      return;
    case 'cancel':
      // Told to stop mid-flight: aborted (not a failure); never offered: cancelled.
      working.update(decision.deviceId, { state: decision.notify ? 'aborted' : 'cancelled', updatedAt: now });
      return;
    case 'rollback-offer':
      working.update(decision.deviceId, {
        rollback: {
          toVersion: decision.toVersion,
          state: 'offered',
          offeredAt: now,
          updatedAt: now,
          failureReason: null,
        },
      });
      runtime.rateWindow = countOffer(runtime.rateWindow, now);
      return;
    case 'rollback-timed-out': {
      const record = working.records.get(decision.deviceId);
      if (record?.rollback) {
        working.update(decision.deviceId, {
          rollback: {
            ...record.rollback,
            state: 'timed-out',
            updatedAt: now,
            failureReason: 'no result within the per-device timeout',
          },
        });
      }
      return;
    }
  }
}

/** Applies decisions to a snapshot and returns the new one (records keep their order, new ones last). */
export function applyDecisions(
  snapshot: RolloutSnapshot,
  decisions: readonly Decision[],
  now: number,
): RolloutSnapshot {
  const working = new WorkingState(snapshot);
  for (const decision of decisions) applyDecision(working, decision, now);
  return { ...snapshot, runtime: working.runtime, deployments: [...working.records.values()] };
}
