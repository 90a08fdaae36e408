import { applyDecision, WorkingState } from './apply.js';
import { canRetry, countPhases, isInFlight, judgePhase, retriesAllowed } from './counting.js';
import type { RolloutPolicy } from './policy.js';
import { rateAllowance, ratePerMinute } from './rate.js';
import { compareDevices, matchesTarget, mayDeliver, phaseSizes } from './selection.js';
import type { Decision, DeploymentRecord, DeviceSnapshot, RolloutSnapshot } from './types.js';
import { inMaintenanceWindow } from './window.js';

const ACTIVE = new Set(['running', 'waiting', 'soaking', 'waiting-approval']);

/**
 * The rollout engine: what to do now, given the policy and the fleet as the store sees it.
 * Pure and deterministic. Each decision is applied to a private working copy as it is made, so
 * one pass is self-consistent and `decide(apply(s, decide(s)))` returns nothing new until an
 * event arrives or time passes (a killed and restarted server decides the same thing again).
 */
export function decide(policy: RolloutPolicy, snapshot: RolloutSnapshot, now: number): Decision[] {
  const w = new WorkingState(snapshot);
  const rt = w.runtime;
  const out: Decision[] = [];
  const emit = (d: Decision): void => {
    out.push(d);
    applyDecision(w, d, now);
  };
  if (rt.status === 'completed' || rt.status === 'failed') return out;

  const devices = new Map<string, DeviceSnapshot>(snapshot.devices.map((d) => [d.id, d]));
  const order = compareDevices(snapshot.rolloutId);

  // 1. Start, and take the target set (static: once; dynamic: new matching devices keep joining).
  if (rt.status === 'scheduled') {
    if (policy.startAt !== undefined && now < Date.parse(policy.startAt)) return out;
    emit({ type: 'rollout-started' });
    assignInitial(policy, snapshot, w, order, emit);
  } else if (policy.target.membership === 'dynamic' && rt.status !== 'aborted') {
    assignJoiners(policy, snapshot, w, order, emit);
  }

  // 2. Per-device housekeeping: timeouts (whatever the status: in-flight devices carry on), retries,
  //    devices that already run the release, and cancellation after an abort.
  const timeoutMs = policy.deviceTimeoutSeconds * 1000;
  const retry = retriesAllowed(rt);
  for (const deviceId of [...w.records.keys()]) {
    const device = devices.get(deviceId);
    if (!device) continue;
    let r = w.records.get(deviceId) as DeploymentRecord;
    const phase = r.phase;
    if (isInFlight(r.state) && r.offeredAt !== null && now - r.offeredAt >= timeoutMs) {
      emit({ type: 'timed-out', deviceId, phase, attempt: r.attempts });
      r = w.records.get(deviceId) as DeploymentRecord;
    }
    if (r.rollback && isInFlight(r.rollback.state) && now - r.rollback.offeredAt >= timeoutMs) {
      emit({ type: 'rollback-timed-out', deviceId, phase });
      r = w.records.get(deviceId) as DeploymentRecord;
    }
    if (rt.status === 'aborted') {
      if (r.state === 'pending') emit({ type: 'cancel', deviceId, phase, notify: false });
      // Offered or downloading devices can still stop cleanly; installing ones finish.
      if (r.state === 'offered' || r.state === 'downloading')
        emit({ type: 'cancel', deviceId, phase, notify: true });
      continue;
    }
    if (
      retry &&
      (r.state === 'failed' || r.state === 'rolled-back' || r.state === 'timed-out') &&
      canRetry(policy, r)
    ) {
      emit({ type: 'retry', deviceId, phase, nextAttempt: r.attempts + 1, after: r.state });
      r = w.records.get(deviceId) as DeploymentRecord;
    }
    if (r.state === 'pending' && device.currentVersion === snapshot.release.version) {
      emit({ type: 'already-installed', deviceId, phase });
    }
  }

  const present = (id: string) => devices.has(id);

  // 3. Errors pause the whole rollout (hawkBit's "emergency shutdown"), in every started phase.
  if (ACTIVE.has(rt.status)) {
    const counts = countPhases(policy, rt, w.records.values(), present);
    for (let i = 0; i <= rt.currentPhase; i++) {
      const spec = policy.phases[i]!;
      const c = counts[i]!;
      const j = judgePhase(spec, w.phase(i), c);
      if (j.errorExceeded) {
        emit({
          type: 'pause',
          reason: {
            kind: 'error-threshold',
            at: now,
            phase: i,
            failed: j.judgedFailures,
            total: c.total,
            threshold: spec.errorThreshold,
          },
          rollback: policy.autoRollback,
        });
        break;
      }
    }
  }

  // 4. The phase frontier: judge the current phase, soak it, then start (or wait to approve) the next.
  advancePhases(policy, w, present, now, emit);

  // 5. A static rollout whose current phase can no longer succeed ends `failed` instead of running
  //    for ever: every device of the phase is final, none will be retried, and it fell short.
  if (ACTIVE.has(rt.status) && policy.target.membership === 'static') {
    const failure = phaseStuck(policy, w, present);
    if (failure) emit({ type: 'fail', failure });
  }

  // 6. Done when every phase succeeded and every device finished (a static rollout only: a dynamic
  //    one keeps taking joiners until an operator ends it).
  if (
    ACTIVE.has(rt.status) &&
    policy.target.membership === 'static' &&
    rt.phases.every((p) => p.succeededAt !== null) &&
    [...w.records.values()].every((r) => !present(r.deviceId) || isTerminal(r))
  ) {
    emit({ type: 'complete' });
  }

  // 7. Offers, within maxConcurrent, the rate and the maintenance windows (status `waiting` while
  //    devices wait for a window to open).
  followWindow(policy, w, now, emit);
  makeOffers(policy, snapshot, w, devices, order, now, emit);
  return out;
}

/** The current phase, when it started, has not succeeded and nothing in it can still change. */
function phaseStuck(
  policy: RolloutPolicy,
  w: WorkingState,
  present: (id: string) => boolean,
): Extract<Decision, { type: 'fail' }>['failure'] | null {
  const rt = w.runtime;
  const p = rt.currentPhase;
  if (p < 0 || w.phase(p).succeededAt !== null) return null;
  const spec = policy.phases[p]!;
  const c = countPhases(policy, rt, w.records.values(), present)[p]!;
  if (c.total === 0 || c.notStarted > 0 || c.inFlight > 0 || c.retrying > 0) return null;
  if (judgePhase(spec, w.phase(p), c).successMet) return null;
  return { phase: p, healthy: c.healthy, total: c.total, successThreshold: spec.successThreshold };
}

/**
 * `waiting` while a started phase has devices to offer and no maintenance window is open;
 * `running` again once one opens (or nothing waits any more).
 */
function followWindow(policy: RolloutPolicy, w: WorkingState, now: number, emit: Emit): void {
  const rt = w.runtime;
  if (rt.status !== 'running' && rt.status !== 'waiting') return;
  let waiting = false;
  if (!inMaintenanceWindow(policy.maintenanceWindows, now))
    for (const r of w.records.values())
      if (r.state === 'pending' && w.phase(r.phase).startedAt !== null) {
        waiting = true;
        break;
      }
  if (waiting && rt.status === 'running') emit({ type: 'wait-window' });
  else if (!waiting && rt.status === 'waiting') emit({ type: 'stop-waiting' });
}

function isTerminal(r: DeploymentRecord): boolean {
  return r.state !== 'pending' && !isInFlight(r.state) && !(r.rollback && isInFlight(r.rollback.state));
}

type Emit = (d: Decision) => void;

function assignInitial(
  policy: RolloutPolicy,
  snapshot: RolloutSnapshot,
  w: WorkingState,
  order: (a: string, b: string) => number,
  emit: Emit,
): void {
  const matching = snapshot.devices
    .filter(
      (d) =>
        !w.records.has(d.id) &&
        matchesTarget(policy.target, snapshot.release, d) &&
        mayDeliver(policy, snapshot.release, d),
    )
    .sort((a, b) => order(a.id, b.id));
  const sizes = phaseSizes(policy, matching.length);
  let next = 0;
  sizes.forEach((size, phase) => {
    for (const d of matching.slice(next, next + size)) {
      emit({ type: 'assign', deviceId: d.id, phase, fromVersion: d.currentVersion });
    }
    next += size;
  });
}

function assignJoiners(
  policy: RolloutPolicy,
  snapshot: RolloutSnapshot,
  w: WorkingState,
  order: (a: string, b: string) => number,
  emit: Emit,
): void {
  const last = policy.phases.length - 1;
  const rt = w.runtime;
  // The phase in progress: the latest started one (or the first before any started).
  const phase = policy.target.joinPhase === 'last' ? last : Math.max(0, rt.currentPhase);
  const joiners = snapshot.devices
    .filter(
      (d) =>
        !w.records.has(d.id) &&
        matchesTarget(policy.target, snapshot.release, d) &&
        mayDeliver(policy, snapshot.release, d),
    )
    .sort((a, b) => order(a.id, b.id));
  for (const d of joiners) emit({ type: 'assign', deviceId: d.id, phase, fromVersion: d.currentVersion });
}

function advancePhases(
  policy: RolloutPolicy,
  w: WorkingState,
  present: (id: string) => boolean,
  now: number,
  emit: Emit,
): void {
  const rt = w.runtime;
  let counts: ReturnType<typeof countPhases> | undefined;
  // Bounded: each turn starts or finishes a phase, or stops.
  for (let guard = 0; guard <= 2 * policy.phases.length + 1 && ACTIVE.has(rt.status); guard++) {
    const p = rt.currentPhase;
    const current = p >= 0 ? w.phase(p) : null;
    if (current === null || current.succeededAt !== null) {
      const next = p + 1;
      if (next >= policy.phases.length) return;
      const spec = policy.phases[next]!;
      if (spec.requireApproval && w.phase(next).approvedAt === null) {
        if (rt.status !== 'waiting-approval') emit({ type: 'wait-approval', phase: next });
        return;
      }
      emit({ type: 'phase-started', phase: next });
      continue;
    }
    const spec = policy.phases[p]!;
    // Phase moves do not change records, so one count serves every turn of this loop.
    counts ??= countPhases(policy, rt, w.records.values(), present);
    const j = judgePhase(spec, current, counts[p]!);
    if (!j.successMet) {
      if (current.soakStartedAt !== null) emit({ type: 'soak-reset', phase: p });
      return;
    }
    if (current.soakStartedAt === null && spec.soakSeconds > 0) {
      emit({ type: 'soak-started', phase: p });
      return;
    }
    if (spec.soakSeconds > 0 && now - (current.soakStartedAt ?? now) < spec.soakSeconds * 1000) return;
    emit({ type: 'phase-succeeded', phase: p });
  }
}

function makeOffers(
  policy: RolloutPolicy,
  snapshot: RolloutSnapshot,
  w: WorkingState,
  devices: Map<string, DeviceSnapshot>,
  order: (a: string, b: string) => number,
  now: number,
  emit: Emit,
): void {
  const rt = w.runtime;
  const forward = ACTIVE.has(rt.status);
  if (!forward && !rt.rollingBack) return;
  if (!inMaintenanceWindow(policy.maintenanceWindows, now)) return;

  let inFlight = 0;
  let notified = 0;
  let succeeded = 0;
  const candidates: DeploymentRecord[] = [];
  for (const r of w.records.values()) {
    const device = devices.get(r.deviceId);
    if (!device) continue;
    if (isInFlight(r.state) || (r.rollback && isInFlight(r.rollback.state))) inFlight++;
    if (r.attempts > 0) notified++;
    if (r.state === 'healthy') succeeded++;
    if (!device.online || device.busy) continue;
    if (rt.rollingBack) {
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
    } else if (forward && r.state === 'pending' && w.phase(r.phase).startedAt !== null) {
      candidates.push(r);
    }
  }
  if (candidates.length === 0 || inFlight >= policy.maxConcurrent) return;
  candidates.sort((a, b) => a.phase - b.phase || order(a.deviceId, b.deviceId));

  for (const r of candidates) {
    if (inFlight >= policy.maxConcurrent) return;
    // Recomputed per offer: an exponential rate grows as devices are notified within the pass.
    if (rateAllowance(ratePerMinute(policy, { notified, succeeded }), rt.rateWindow, now) < 1) return;
    if (rt.rollingBack) {
      emit({ type: 'rollback-offer', deviceId: r.deviceId, phase: r.phase, toVersion: r.fromVersion! });
    } else {
      emit({ type: 'offer', deviceId: r.deviceId, phase: r.phase, attempt: r.attempts + 1 });
      if (r.attempts === 0) notified++;
    }
    inFlight++;
  }
}
