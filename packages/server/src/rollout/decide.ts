import { applyDecisions } from './apply.js';
import { canRetry, countPhases, isInFlight, judgePhase, retriesAllowed } from './counting.js';
import type { RolloutPolicy } from './policy.js';
import { countOffer, rateAllowance, ratePerMinute } from './rate.js';
import { compareDevices, deliverableTargets, phaseSizes } from './selection.js';
import type {
  Decision,
  DeploymentRecord,
  DeploymentState,
  DeviceSnapshot,
  RolloutSnapshot,
} from './types.js';
import { inMaintenanceWindow } from './window.js';

const ACTIVE = new Set(['running', 'waiting', 'soaking', 'waiting-approval']);
const RETRYABLE = new Set<DeploymentState>(['failed', 'rolled-back', 'timed-out']);

/** What one rule reads: the snapshot as the decisions of the earlier rules left it. */
interface RuleInput {
  policy: RolloutPolicy;
  snapshot: RolloutSnapshot;
  devices: ReadonlyMap<string, DeviceSnapshot>;
  order: (a: string, b: string) => number;
  now: number;
}

/** A rule reads a snapshot and says what to do; it never changes anything. */
type Rule = (input: RuleInput) => Decision[];

/**
 * The rollout engine: what to do now, given the policy and the fleet as the store sees it.
 * Pure and deterministic. The rules below run in order; each sees the snapshot as the earlier
 * rules' decisions leave it (`applyDecisions`, the one meaning of a decision), so one pass is
 * self-consistent and `decide(apply(s, decide(s)))` returns nothing new until an event arrives or
 * time passes (a killed and restarted server decides the same thing again).
 */
export function decide(policy: RolloutPolicy, snapshot: RolloutSnapshot, now: number): Decision[] {
  const status = snapshot.runtime.status;
  if (status === 'completed' || status === 'failed') return [];
  if (status === 'scheduled' && policy.startAt !== undefined && now < Date.parse(policy.startAt)) return [];

  const decisions: Decision[] = [];
  let input: RuleInput = {
    policy,
    snapshot,
    devices: new Map(snapshot.devices.map((d) => [d.id, d])),
    order: compareDevices(snapshot.rolloutId),
    now,
  };
  const take = (made: Decision[]): void => {
    if (made.length === 0) return;
    // Not push(...made): a spread passes every element as an argument, and a rollout starting
    // over ~150,000 devices or more (one assign each) overflowed the call stack.
    for (const d of made) decisions.push(d);
    input = { ...input, snapshot: applyDecisions(input.snapshot, made, now) };
  };

  take(startAndAssign(input));
  take(housekeeping(input));
  take(errorPause(input));
  // The phase frontier moves one step at a time (start, soak, succeed, start the next...).
  // Bounded: each step starts or finishes a phase, or the rule says nothing and the loop stops.
  for (let guard = 0; guard <= 2 * policy.phases.length + 1; guard++) {
    const move = nextPhaseMove(input);
    if (move.length === 0) break;
    take(move);
    if (move[0]!.type !== 'phase-started' && move[0]!.type !== 'phase-succeeded') break;
  }
  take(stuckPhase(input));
  take(completion(input));
  take(followWindow(input));
  take(offers(input));
  return decisions;
}

/** 1. Start, and take the target set (static: once; dynamic: new matching devices keep joining). */
const startAndAssign: Rule = ({ policy, snapshot, order }) => {
  const status = snapshot.runtime.status;
  const dynamic = policy.target.membership === 'dynamic';
  if (status !== 'scheduled' && (!dynamic || status === 'aborted')) return [];
  const assigned = new Set(snapshot.deployments.map((r) => r.deviceId));
  const newcomers = deliverableTargets(
    policy,
    snapshot.release,
    snapshot.devices.filter((d) => !assigned.has(d.id)),
  ).sort((a, b) => order(a.id, b.id));
  if (status !== 'scheduled') {
    // Joiners go to the phase in progress: the latest started one (or the first before any started).
    const last = policy.phases.length - 1;
    const phase = policy.target.joinPhase === 'last' ? last : Math.max(0, snapshot.runtime.currentPhase);
    return newcomers.map((d) => ({ type: 'assign', deviceId: d.id, phase, fromVersion: d.currentVersion }));
  }
  const out: Decision[] = [{ type: 'rollout-started' }];
  let next = 0;
  phaseSizes(policy, newcomers.length).forEach((size, phase) => {
    for (const d of newcomers.slice(next, next + size)) {
      out.push({ type: 'assign', deviceId: d.id, phase, fromVersion: d.currentVersion });
    }
    next += size;
  });
  return out;
};

/**
 * 2. Per-device housekeeping: timeouts (whatever the status: in-flight devices carry on), retries,
 *    devices that already run the release, and cancellation after an abort. One device's decisions
 *    follow each other (timed out → retried → already runs it), so its state is carried along.
 */
const housekeeping: Rule = ({ policy, snapshot, devices, now }) => {
  const runtime = snapshot.runtime;
  const timeoutMs = policy.deviceTimeoutSeconds * 1000;
  const retry = retriesAllowed(runtime);
  const out: Decision[] = [];
  for (const record of snapshot.deployments) {
    const device = devices.get(record.deviceId);
    if (!device) continue;
    const { deviceId, phase } = record;
    let state = record.state;
    if (isInFlight(state) && record.offeredAt !== null && now - record.offeredAt >= timeoutMs) {
      out.push({ type: 'timed-out', deviceId, phase, attempt: record.attempts });
      state = 'timed-out';
    }
    const rollback = record.rollback;
    if (rollback && isInFlight(rollback.state) && now - rollback.offeredAt >= timeoutMs) {
      out.push({ type: 'rollback-timed-out', deviceId, phase });
    }
    if (runtime.status === 'aborted') {
      if (state === 'pending') out.push({ type: 'cancel', deviceId, phase, notify: false });
      // Offered or downloading devices can still stop cleanly; installing ones finish.
      if (state === 'offered' || state === 'downloading')
        out.push({ type: 'cancel', deviceId, phase, notify: true });
      continue;
    }
    if (retry && RETRYABLE.has(state) && canRetry(policy, { ...record, state })) {
      out.push({ type: 'retry', deviceId, phase, nextAttempt: record.attempts + 1, after: state });
      state = 'pending';
    }
    if (state === 'pending' && device.currentVersion === snapshot.release.version) {
      out.push({ type: 'already-installed', deviceId, phase });
    }
  }
  return out;
};

/** 3. Errors pause the whole rollout (hawkBit's "emergency shutdown"), in every started phase. */
const errorPause: Rule = ({ policy, snapshot, devices, now }) => {
  const runtime = snapshot.runtime;
  if (!ACTIVE.has(runtime.status)) return [];
  const counts = countPhases(policy, runtime, snapshot.deployments, (id) => devices.has(id));
  for (let i = 0; i <= runtime.currentPhase; i++) {
    const spec = policy.phases[i]!;
    const count = counts[i]!;
    const judgement = judgePhase(spec, runtime.phases[i]!, count);
    if (!judgement.errorExceeded) continue;
    const reason = {
      kind: 'error-threshold' as const,
      at: now,
      phase: i,
      failed: judgement.judgedFailures,
      total: count.total,
      threshold: spec.errorThreshold,
    };
    return [{ type: 'pause', reason, rollback: policy.autoRollback }];
  }
  return [];
};

/** 4. The phase frontier's next step: judge the current phase, soak it, then start (or wait to approve) the next. */
const nextPhaseMove: Rule = ({ policy, snapshot, devices, now }) => {
  const runtime = snapshot.runtime;
  if (!ACTIVE.has(runtime.status)) return [];
  const phase = runtime.currentPhase;
  const current = phase >= 0 ? runtime.phases[phase]! : null;
  if (current === null || current.succeededAt !== null) {
    const next = phase + 1;
    if (next >= policy.phases.length) return [];
    if (policy.phases[next]!.requireApproval && runtime.phases[next]!.approvedAt === null) {
      return runtime.status === 'waiting-approval' ? [] : [{ type: 'wait-approval', phase: next }];
    }
    return [{ type: 'phase-started', phase: next }];
  }
  const spec = policy.phases[phase]!;
  const counts = countPhases(policy, runtime, snapshot.deployments, (id) => devices.has(id));
  if (!judgePhase(spec, current, counts[phase]!).successMet) {
    return current.soakStartedAt !== null ? [{ type: 'soak-reset', phase }] : [];
  }
  if (current.soakStartedAt === null && spec.soakSeconds > 0) return [{ type: 'soak-started', phase }];
  if (spec.soakSeconds > 0 && now - (current.soakStartedAt ?? now) < spec.soakSeconds * 1000) return [];
  return [{ type: 'phase-succeeded', phase }];
};

/**
 * 5. A static rollout whose current phase can no longer succeed ends `failed` instead of running
 *    for ever: every device of the phase is final, none will be retried, and it fell short.
 */
const stuckPhase: Rule = ({ policy, snapshot, devices }) => {
  const runtime = snapshot.runtime;
  if (!ACTIVE.has(runtime.status) || policy.target.membership !== 'static') return [];
  const phase = runtime.currentPhase;
  if (phase < 0 || runtime.phases[phase]!.succeededAt !== null) return [];
  const spec = policy.phases[phase]!;
  const count = countPhases(policy, runtime, snapshot.deployments, (id) => devices.has(id))[phase]!;
  if (count.total === 0 || count.notStarted > 0 || count.inFlight > 0 || count.retrying > 0) return [];
  if (judgePhase(spec, runtime.phases[phase]!, count).successMet) return [];
  const failure = {
    phase,
    healthy: count.healthy,
    total: count.total,
    successThreshold: spec.successThreshold,
  };
  return [{ type: 'fail', failure }];
};

/**
 * 6. Done when every phase succeeded and every device finished (a static rollout only: a dynamic
 *    one keeps taking joiners until an operator ends it).
 */
const completion: Rule = ({ policy, snapshot, devices }) => {
  const runtime = snapshot.runtime;
  const done =
    ACTIVE.has(runtime.status) &&
    policy.target.membership === 'static' &&
    runtime.phases.every((p) => p.succeededAt !== null) &&
    snapshot.deployments.every((r) => !devices.has(r.deviceId) || isTerminal(r));
  return done ? [{ type: 'complete' }] : [];
};

function isTerminal(r: DeploymentRecord): boolean {
  return r.state !== 'pending' && !isInFlight(r.state) && !(r.rollback && isInFlight(r.rollback.state));
}

/**
 * 7. `waiting` while a started phase has devices to offer and no maintenance window is open;
 *    `running` again once one opens (or nothing waits any more).
 */
const followWindow: Rule = ({ policy, snapshot, now }) => {
  const runtime = snapshot.runtime;
  if (runtime.status !== 'running' && runtime.status !== 'waiting') return [];
  const waiting =
    !inMaintenanceWindow(policy.maintenanceWindows, now) &&
    snapshot.deployments.some((r) => r.state === 'pending' && runtime.phases[r.phase]!.startedAt !== null);
  if (waiting && runtime.status === 'running') return [{ type: 'wait-window' }];
  if (!waiting && runtime.status === 'waiting') return [{ type: 'stop-waiting' }];
  return [];
};

/** 8. Offers, within maxConcurrent, the rate and the maintenance windows. */
const offers: Rule = ({ policy, snapshot, devices, order, now }) => {
  const runtime = snapshot.runtime;
  const forward = ACTIVE.has(runtime.status);
  if (!forward && !runtime.rollingBack) return [];
  if (!inMaintenanceWindow(policy.maintenanceWindows, now)) return [];

  let inFlight = 0;
  let notified = 0;
  let succeeded = 0;
  const candidates: DeploymentRecord[] = [];
  for (const r of snapshot.deployments) {
    const device = devices.get(r.deviceId);
    if (!device) continue;
    if (isInFlight(r.state) || (r.rollback && isInFlight(r.rollback.state))) inFlight++;
    if (r.attempts > 0) notified++;
    if (r.state === 'healthy') succeeded++;
    if (!device.online || device.busy) continue;
    if (runtime.rollingBack) {
      // Roll back devices this rollout made healthy, unless they already moved on.
      if (
        r.state === 'healthy' &&
        r.rollback === null &&
        r.fromVersion !== null &&
        r.fromVersion !== snapshot.release.version &&
        (device.currentVersion === null || device.currentVersion === snapshot.release.version)
      ) {
        candidates.push(r);
      }
    } else if (forward && r.state === 'pending' && runtime.phases[r.phase]!.startedAt !== null) {
      candidates.push(r);
    }
  }
  const out: Decision[] = [];
  if (candidates.length === 0 || inFlight >= policy.maxConcurrent) return out;
  candidates.sort((a, b) => a.phase - b.phase || order(a.deviceId, b.deviceId));

  // The offers of this pass fill the rate window as they are made.
  let rateWindow = runtime.rateWindow;
  for (const r of candidates) {
    if (inFlight >= policy.maxConcurrent) break;
    // Recomputed per offer: an exponential rate grows as devices are notified within the pass.
    if (rateAllowance(ratePerMinute(policy, { notified, succeeded }), rateWindow, now) < 1) break;
    if (runtime.rollingBack) {
      out.push({ type: 'rollback-offer', deviceId: r.deviceId, phase: r.phase, toVersion: r.fromVersion! });
    } else {
      out.push({ type: 'offer', deviceId: r.deviceId, phase: r.phase, attempt: r.attempts + 1 });
      if (r.attempts === 0) notified++;
    }
    rateWindow = countOffer(rateWindow, now);
    inFlight++;
  }
  return out;
};
