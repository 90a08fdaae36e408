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
    for (const r of snapshot.deployments) this.records.set(r.deviceId, r);
  }

  update(deviceId: string, patch: Partial<DeploymentRecord>): void {
    const r = this.records.get(deviceId);
    if (r) this.records.set(deviceId, { ...r, ...patch });
  }

  phase(index: number): PhaseRuntime {
    const p = this.runtime.phases[index];
    if (!p) throw new Error(`rollout engine: phase ${index} out of range`);
    return p;
  }
}

export function cloneRuntime(rt: RolloutRuntime): RolloutRuntime {
  return {
    ...rt,
    phases: rt.phases.map((p) => ({ ...p })),
    pause: rt.pause ? { ...rt.pause } : null,
    failure: rt.failure ? { ...rt.failure } : null,
    rateWindow: rt.rateWindow ? { ...rt.rateWindow } : null,
  };
}

/**
 * The reference meaning of every decision. The server applies the same changes in SQL (or calls
 * this and stores the result); `decide` runs its rules on the snapshot it leaves, so a pass is consistent.
 */
export function applyDecision(w: WorkingState, d: Decision, now: number): void {
  const rt = w.runtime;
  switch (d.type) {
    case 'rollout-started':
      rt.status = 'running';
      rt.startedAt = now;
      return;
    case 'assign':
      w.records.set(d.deviceId, {
        deviceId: d.deviceId,
        phase: d.phase,
        state: 'pending',
        attempts: 0,
        offeredAt: null,
        updatedAt: now,
        failureReason: null,
        fromVersion: d.fromVersion,
        rollback: null,
      });
      return;
    case 'phase-started':
      w.phase(d.phase).startedAt = now;
      rt.currentPhase = d.phase;
      rt.status = 'running';
      return;
    case 'wait-approval':
      rt.status = 'waiting-approval';
      return;
    case 'offer':
      w.update(d.deviceId, {
        state: 'offered',
        attempts: d.attempt,
        offeredAt: now,
        updatedAt: now,
        failureReason: null,
      });
      rt.rateWindow = countOffer(rt.rateWindow, now);
      return;
    case 'already-installed':
      w.update(d.deviceId, { state: 'healthy', updatedAt: now });
      return;
    case 'timed-out':
      w.update(d.deviceId, {
        state: 'timed-out',
        updatedAt: now,
        failureReason: 'no result within the per-device timeout',
      });
      return;
    case 'retry':
      w.update(d.deviceId, { state: 'pending', updatedAt: now });
      return;
    case 'soak-started':
      w.phase(d.phase).soakStartedAt = now;
      rt.status = 'soaking';
      return;
    case 'soak-reset':
      w.phase(d.phase).soakStartedAt = null;
      rt.status = 'running';
      return;
    case 'phase-succeeded':
      w.phase(d.phase).succeededAt = now;
      rt.status = 'running';
      return;
    case 'pause':
      rt.status = 'paused';
      rt.pause = d.reason;
      rt.rollingBack = rt.rollingBack || d.rollback;
      return;
    case 'complete':
      rt.status = 'completed';
      rt.finishedAt = now;
      return;
    case 'fail':
      rt.status = 'failed';
      rt.finishedAt = now;
      rt.failure = { at: now, ...d.failure };
      return;
    case 'wait-window':
      rt.status = 'waiting';
      return;
    case 'stop-waiting':
      rt.status = 'running';
      return;
    case 'cancel':
      // Told to stop mid-flight: aborted (not a failure); never offered: cancelled.
      w.update(d.deviceId, { state: d.notify ? 'aborted' : 'cancelled', updatedAt: now });
      return;
    case 'rollback-offer':
      w.update(d.deviceId, {
        rollback: {
          toVersion: d.toVersion,
          state: 'offered',
          offeredAt: now,
          updatedAt: now,
          failureReason: null,
        },
      });
      rt.rateWindow = countOffer(rt.rateWindow, now);
      return;
    case 'rollback-timed-out': {
      const r = w.records.get(d.deviceId);
      if (r?.rollback) {
        w.update(d.deviceId, {
          rollback: {
            ...r.rollback,
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
  const w = new WorkingState(snapshot);
  for (const d of decisions) applyDecision(w, d, now);
  return { ...snapshot, runtime: w.runtime, deployments: [...w.records.values()] };
}
