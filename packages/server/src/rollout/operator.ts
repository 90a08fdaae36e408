import { cloneRuntime } from './apply.js';
import { countPhases } from './counting.js';
import { RolloutError } from './errors.js';
import type { RolloutPolicy } from './policy.js';
import type { RolloutRuntime, RolloutSnapshot } from './types.js';

/** Operator actions: pure functions from the rollout's state to its next state. */

export function initialRuntime(policy: RolloutPolicy): RolloutRuntime {
  return {
    status: 'scheduled',
    currentPhase: -1,
    phases: policy.phases.map(() => ({
      startedAt: null,
      soakStartedAt: null,
      succeededAt: null,
      approvedAt: null,
      approvedBy: null,
      acknowledgedFailures: 0,
    })),
    pause: null,
    rollingBack: false,
    rateWindow: null,
    startedAt: null,
    finishedAt: null,
    failure: null,
  };
}

const FINISHED = new Set(['completed', 'failed', 'aborted']);

export function pauseRollout(
  runtime: RolloutRuntime,
  now: number,
  by: string | null = null,
  note: string | null = null,
): RolloutRuntime {
  if (FINISHED.has(runtime.status) || runtime.status === 'paused') {
    throw new RolloutError(
      'FLOTILLA_ERR_ROLLOUT_STATE',
      `cannot pause ${withArticle(runtime.status)} rollout`,
    );
  }
  const next = cloneRuntime(runtime);
  next.status = 'paused';
  next.pause = { kind: 'operator', at: now, by, note };
  return next;
}

/**
 * Resumes a paused rollout. After a pause on errors, resuming acknowledges the failures seen so
 * far: the error threshold then judges only new ones (otherwise it would pause again at once).
 * A rollout that started rolling back cannot resume: its devices went back; start a new rollout.
 */
export function resumeRollout(policy: RolloutPolicy, snapshot: RolloutSnapshot): RolloutRuntime {
  const runtime = snapshot.runtime;
  if (runtime.status !== 'paused') {
    throw new RolloutError(
      'FLOTILLA_ERR_ROLLOUT_STATE',
      `cannot resume ${withArticle(runtime.status)} rollout`,
    );
  }
  if (runtime.rollingBack) {
    throw new RolloutError(
      'FLOTILLA_ERR_ROLLOUT_STATE',
      'the rollout rolled devices back to their previous release; create a new rollout instead',
    );
  }
  const next = cloneRuntime(runtime);
  if (runtime.pause?.kind === 'error-threshold') {
    const present = new Set(snapshot.devices.map((device) => device.id));
    const counts = countPhases(policy, runtime, snapshot.deployments, (id) => present.has(id));
    next.phases.forEach((phaseRuntime, index) => {
      phaseRuntime.acknowledgedFailures = counts[index]?.failed ?? 0;
    });
  }
  const current = next.phases[next.currentPhase];
  next.status =
    next.startedAt === null
      ? 'scheduled'
      : current && current.soakStartedAt !== null && current.succeededAt === null
        ? 'soaking'
        : 'running';
  next.pause = null;
  return next;
}

/**
 * Aborts: no new offers; pending devices are cancelled and offered/downloading ones told to stop
 * (by `decide`). With `rollback` (or the policy's autoRollback) the devices this rollout made
 * healthy get their previous release back.
 */
export function abortRollout(
  policy: RolloutPolicy,
  runtime: RolloutRuntime,
  now: number,
  opts: { rollback?: boolean } = {},
): RolloutRuntime {
  if (FINISHED.has(runtime.status)) {
    throw new RolloutError(
      'FLOTILLA_ERR_ROLLOUT_STATE',
      `cannot abort ${withArticle(runtime.status)} rollout`,
    );
  }
  const next = cloneRuntime(runtime);
  next.status = 'aborted';
  next.finishedAt = now;
  next.rollingBack = next.rollingBack || policy.autoRollback || opts.rollback === true;
  return next;
}

/** Approves a phase that needs approval (ahead of time too); `decide` then starts it. */
export function approvePhase(
  policy: RolloutPolicy,
  runtime: RolloutRuntime,
  phase: number,
  now: number,
  by: string | null = null,
): RolloutRuntime {
  if (FINISHED.has(runtime.status)) {
    throw new RolloutError(
      'FLOTILLA_ERR_ROLLOUT_STATE',
      `cannot approve a phase of ${withArticle(runtime.status)} rollout`,
    );
  }
  const spec = policy.phases[phase];
  const state = runtime.phases[phase];
  if (!spec || !state || !Number.isInteger(phase)) {
    throw new RolloutError('FLOTILLA_ERR_ROLLOUT_PHASE', `phase ${phase} does not exist`);
  }
  if (!spec.requireApproval) {
    throw new RolloutError('FLOTILLA_ERR_ROLLOUT_PHASE', `phase ${phase} does not require approval`);
  }
  if (state.startedAt !== null) {
    throw new RolloutError('FLOTILLA_ERR_ROLLOUT_PHASE', `phase ${phase} has already started`);
  }
  const next = cloneRuntime(runtime);
  const approved = next.phases[phase]!;
  approved.approvedAt = now;
  approved.approvedBy = by;
  return next;
}

/** The phase waiting for approval now, if any (what `flotilla rollout approve <id>` approves by default). */
export function phaseAwaitingApproval(runtime: RolloutRuntime): number | null {
  return runtime.status === 'waiting-approval' ? runtime.currentPhase + 1 : null;
}

/** "a paused", "an aborted": statuses go into messages people read. */
function withArticle(word: string): string {
  return `${/^[aeiou]/i.test(word) ? 'an' : 'a'} ${word}`;
}
