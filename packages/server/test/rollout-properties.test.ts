import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  applyDecisions,
  applyDeviceEvent,
  approvePhase,
  type Decision,
  type DeploymentState,
  decide,
  IN_FLIGHT_STATES,
  inMaintenanceWindow,
  normalizePolicy,
  RATE_WINDOW_MS,
  type RolloutPolicy,
  type RolloutSnapshot,
  ratePerMinute,
  summarize,
} from '../src/rollout/index.js';
import { device, MIN, snapshot, T0 } from './rollout-fixtures.js';

// Random policies, fleets and device behaviour, driven through time like the server drives the
// engine (decide → apply → device events → decide ...). Bounded: few runs, few steps.

const phaseArb = fc.record({
  count: fc.integer({ min: 1, max: 6 }),
  successThreshold: fc.constantFrom(0, 50, 66.67, 100),
  errorThreshold: fc.constantFrom(0, 20, 50, 100),
  minExecuted: fc.integer({ min: 1, max: 4 }),
  soakSeconds: fc.constantFrom(0, 0, 300),
  requireApproval: fc.boolean(),
});

const policyArb = fc
  .record({
    phases: fc.array(phaseArb, { minLength: 1, maxLength: 4 }),
    maxConcurrent: fc.integer({ min: 1, max: 8 }),
    rate: fc.option(
      fc.oneof(
        fc.record({ kind: fc.constant('constant'), perMinute: fc.integer({ min: 1, max: 10 }) }),
        fc.record({
          kind: fc.constant('exponential'),
          basePerMinute: fc.integer({ min: 1, max: 4 }),
          incrementFactor: fc.constantFrom(1.5, 2),
          increaseAfter: fc.oneof(
            fc.record({ notified: fc.integer({ min: 1, max: 5 }) }),
            fc.record({ succeeded: fc.integer({ min: 1, max: 5 }) }),
          ),
        }),
      ),
      { nil: undefined },
    ),
    windows: fc.option(
      fc.array(
        fc.record({
          days: fc.uniqueArray(fc.constantFrom('mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'), {
            minLength: 1,
          }),
          start: fc.constantFrom('00:00', '06:30', '10:15', '22:00'),
          durationMinutes: fc.integer({ min: 10, max: 600 }),
          utcOffset: fc.constantFrom('+00:00', '+05:30', '-08:00'),
        }),
        { minLength: 1, maxLength: 2 },
      ),
      { nil: undefined },
    ),
    retries: fc.record({
      failed: fc.integer({ min: 0, max: 2 }),
      rolledBack: fc.integer({ min: 0, max: 1 }),
      timedOut: fc.integer({ min: 0, max: 1 }),
    }),
    autoRollback: fc.boolean(),
    membership: fc.constantFrom('static', 'dynamic'),
  })
  .map(({ phases, windows, membership, ...rest }) =>
    normalizePolicy({
      target: { membership },
      phases: phases.map((ph, i) => (i === phases.length - 1 ? { ...ph, count: undefined } : ph)),
      deviceTimeoutSeconds: 1800,
      maintenanceWindows: windows ?? [],
      ...rest,
      rate: rest.rate ?? undefined,
    }),
  );

const STEP = fc.record({
  advanceMinutes: fc.integer({ min: 0, max: 90 }),
  // What each in-flight device does this step, by position.
  moves: fc.array(fc.constantFrom('progress', 'progress', 'healthy', 'failed', 'rolled-back', 'nothing'), {
    maxLength: 12,
  }),
  toggleOnline: fc.option(fc.integer({ min: 0, max: 30 }), { nil: undefined }),
  approve: fc.boolean(),
  join: fc.boolean(),
});

const NEXT_KIND: Partial<Record<DeploymentState, string>> = {
  offered: 'download-progress',
  downloading: 'install-progress',
  installing: 'installed',
  installed: 'rebooting',
  rebooting: 'healthy',
};

const inFlight = (s: RolloutSnapshot) =>
  s.deployments.filter(
    (r) =>
      IN_FLIGHT_STATES.includes(r.state) ||
      (r.rollback !== null && IN_FLIGHT_STATES.includes(r.rollback.state)),
  ).length;

const isOffer = (d: Decision) => d.type === 'offer' || d.type === 'rollback-offer';

function deviceEvents(s: RolloutSnapshot, moves: string[], now: number): RolloutSnapshot {
  let i = 0;
  const deployments = s.deployments.map((r) => {
    const state = r.rollback ? r.rollback.state : r.state;
    if (!IN_FLIGHT_STATES.includes(state)) return r;
    const move = moves[i++ % Math.max(1, moves.length)] ?? 'nothing';
    const kind = move === 'progress' ? NEXT_KIND[state] : move === 'nothing' ? undefined : move;
    // Like the agent, the device names the version it is being given.
    const version = r.rollback ? r.rollback.toVersion : s.release.version;
    return kind ? (applyDeviceEvent(r, { kind, at: now, version }, s.release.version) ?? r) : r;
  });
  return { ...s, deployments };
}

/** Every device in flight reports its way to healthy, as a good release on a good device does. */
function everyOfferGoesHealthy(s: RolloutSnapshot, now: number): RolloutSnapshot {
  const deployments = s.deployments.map((r) => {
    let next = r;
    for (let kind = NEXT_KIND[next.state]; kind !== undefined; kind = NEXT_KIND[next.state]) {
      const moved = applyDeviceEvent(next, { kind, at: now, version: s.release.version }, s.release.version);
      if (moved === null) break;
      next = moved;
    }
    return next;
  });
  const healthy = new Set(deployments.filter((r) => r.state === 'healthy').map((r) => r.deviceId));
  const devices = s.devices.map((dv) =>
    healthy.has(dv.id) ? { ...dv, currentVersion: s.release.version } : dv,
  );
  return { ...s, devices, deployments };
}

type Check = (
  p: RolloutPolicy,
  before: RolloutSnapshot,
  d: Decision[],
  after: RolloutSnapshot,
  now: number,
) => void;

const scenarioArb = fc.record({
  policy: policyArb,
  devices: fc.integer({ min: 1, max: 24 }),
  online: fc.array(fc.boolean(), { minLength: 24, maxLength: 24 }),
  steps: fc.array(STEP, { minLength: 1, maxLength: 25 }),
});
type Scenario = typeof scenarioArb extends fc.Arbitrary<infer T> ? T : never;

/** Drives one random rollout for a few steps and runs `check` on every engine tick. */
function runScenario({ policy: p, devices: n, online, steps }: Scenario, check: Check): void {
  const devices = Array.from({ length: n }, (_, i) => device(`d${i}`, { online: online[i] ?? true }));
  let s = snapshot(p, devices);
  let now = T0;
  let joined = 0;
  for (const step of steps) {
    now += step.advanceMinutes * MIN;
    const d = decide(p, s, now);
    const after = applyDecisions(s, d, now);
    check(p, s, d, after, now);
    s = deviceEvents(after, step.moves, now + 1000);
    if (step.toggleOnline !== undefined && s.devices.length > 0) {
      const k = step.toggleOnline % s.devices.length;
      s = { ...s, devices: s.devices.map((dv, i) => (i === k ? { ...dv, online: !dv.online } : dv)) };
    }
    if (step.join) s = { ...s, devices: [...s.devices, device(`j${joined++}`)] };
    if (step.approve && s.runtime.status === 'waiting-approval') {
      s = { ...s, runtime: approvePhase(p, s.runtime, s.runtime.currentPhase + 1, now, 'prop') };
    }
  }
}

const SEED = 20260302;

/** Drives random rollouts and runs `check` on every engine tick. */
function simulate(check: Check, runs = 150) {
  fc.assert(
    fc.property(scenarioArb, (scenario) => runScenario(scenario, check)),
    { numRuns: runs, seed: SEED },
  );
}

// 'waiting': held outside a maintenance window (still a live rollout).
const ACTIVE = ['running', 'soaking', 'waiting-approval', 'waiting'];

/** Offers the engine may still make at `now` under the rate limit (its documented meaning). */
function rateRoom(p: RolloutPolicy, s: RolloutSnapshot, now: number): number {
  const notified = s.deployments.filter((r) => r.attempts > 0).length;
  const succeeded = s.deployments.filter((r) => r.state === 'healthy').length;
  const perMinute = ratePerMinute(p, { notified, succeeded });
  if (perMinute === null) return Number.POSITIVE_INFINITY;
  const w = s.runtime.rateWindow;
  const current = w !== null && now >= w.start && now - w.start < RATE_WINDOW_MS;
  return perMinute - (current ? w.count : 0);
}

/** Online, idle, pending devices of a started phase: the ones the engine owes an offer. */
function waitingForOffer(s: RolloutSnapshot): string[] {
  const ready = new Set(s.devices.filter((dv) => dv.online && !dv.busy).map((dv) => dv.id));
  return s.deployments
    .filter(
      (r) => r.state === 'pending' && ready.has(r.deviceId) && s.runtime.phases[r.phase]!.startedAt !== null,
    )
    .map((r) => r.deviceId);
}

/** What a tick shows about a scenario, for fc.statistics. */
function classify(scenario: Scenario): string[] {
  const seen = new Set<string>();
  runScenario(scenario, (p, before, d, after, now) => {
    if (d.some((x) => x.type === 'pause')) seen.add('paused on errors');
    if (d.some((x) => x.type === 'wait-approval')) seen.add('waited for an approval');
    if (before.runtime.phases.some((ph) => ph.approvedAt !== null)) seen.add('approved a phase');
    if (p.maintenanceWindows.length > 0) {
      const open = inMaintenanceWindow(p.maintenanceWindows, now);
      if (!open && ACTIVE.includes(after.runtime.status) && waitingForOffer(after).length > 0)
        seen.add('held offers outside a window');
      if (open && d.some(isOffer)) seen.add('offered inside a window');
    }
    if (d.some((x) => x.type === 'soak-started')) seen.add('soaked a phase');
    if (d.some((x) => x.type === 'retry')) seen.add('retried a device');
    if (d.some((x) => x.type === 'rollback-offer')) seen.add('rolled back');
    if (d.some((x) => x.type === 'complete')) seen.add('completed');
  });
  return seen.size > 0 ? [...seen] : ['nothing happened'];
}

describe('rollout engine properties', () => {
  it('never more devices in flight than maxConcurrent', () => {
    simulate((p, _b, _d, after) => {
      expect(inFlight(after)).toBeLessThanOrEqual(p.maxConcurrent);
    });
  });

  it('never offers outside a maintenance window', () => {
    simulate((p, _b, d, _a, now) => {
      if (d.some(isOffer)) expect(inMaintenanceWindow(p.maintenanceWindows, now)).toBe(true);
    });
  });

  it('never offers to a device of a later phase before every earlier phase succeeded', () => {
    simulate((p, _b, d, after) => {
      for (const x of d) {
        if (x.type === 'phase-succeeded') {
          // Recount from the records, independently of the engine's own judgement.
          const mine = after.deployments.filter((r) => r.phase === x.phase);
          const healthy = mine.filter((r) => r.state === 'healthy').length;
          const failed = mine.filter((r) => ['failed', 'rolled-back', 'timed-out'].includes(r.state)).length;
          const spec = p.phases[x.phase]!;
          if (mine.length > 0) {
            expect(healthy * 10_000).toBeGreaterThanOrEqual(
              Math.round(spec.successThreshold * 100) * mine.length,
            );
            expect(healthy + failed).toBeGreaterThanOrEqual(Math.min(spec.minExecuted, mine.length));
          }
        }
        if (x.type !== 'offer') continue;
        for (let j = 0; j < x.phase; j++) expect(after.runtime.phases[j]!.succeededAt).not.toBeNull();
      }
    });
  });

  it('never offers to an offline device', () => {
    simulate((_p, before, d) => {
      const online = new Map(before.devices.map((dv) => [dv.id, dv.online]));
      for (const x of d) if (isOffer(x)) expect(online.get((x as { deviceId: string }).deviceId)).toBe(true);
    });
  });

  it('is idempotent: deciding again on the applied snapshot at the same time decides nothing', () => {
    simulate((p, before, d, after, now) => {
      expect(decide(p, after, now)).toEqual([]);
      // and deterministic: the same input gives the same output
      expect(decide(p, before, now)).toEqual(d);
    });
  });

  it('never counts installed as success: without a healthy device no non-empty phase succeeds', () => {
    const notHealthy = fc.constantFrom<DeploymentState>(
      'pending',
      'offered',
      'downloading',
      'installing',
      'installed',
      'rebooting',
      'failed',
      'rolled-back',
      'timed-out',
      'cancelled',
    );
    fc.assert(
      fc.property(policyArb, fc.array(notHealthy, { minLength: 1, maxLength: 30 }), (p, states) => {
        const devices = states.map((_, i) => device(`d${i}`));
        let s = applyDecisions(snapshot(p, devices), decide(p, snapshot(p, devices), T0), T0);
        s = { ...s, deployments: s.deployments.map((r, i) => ({ ...r, state: states[i]!, attempts: 9 })) };
        const sum = summarize(p, s, T0);
        const d = decide(p, s, T0 + 1);
        for (const ph of sum.phases) {
          expect(ph.healthy).toBe(0);
          if (ph.total > 0 && ph.successThreshold > 0) {
            expect(ph.successMet).toBe(false);
            expect(d).not.toContainEqual({ type: 'phase-succeeded', phase: ph.index });
          }
        }
      }),
      { numRuns: 200, seed: 7 },
    );
  });

  it('offers happen: a tick never leaves a rollout unstarted or an owed offer unmade', () => {
    simulate((p, _b, _d, after, now) => {
      // These policies have no start time: the first tick starts them.
      expect(after.runtime.status).not.toBe('scheduled');
      if (!ACTIVE.includes(after.runtime.status) || after.runtime.rollingBack) return;
      if (!inMaintenanceWindow(p.maintenanceWindows, now)) return;
      if (inFlight(after) >= p.maxConcurrent || rateRoom(p, after, now) < 1) return;
      expect(waitingForOffer(after)).toEqual([]);
    });
  });

  it('a rollout whose devices all become healthy advances through every phase and completes', () => {
    const TICK = 5 * MIN;
    const LIMIT = 42 * 1440 * MIN; // six weeks: a 10-minute weekly window at one offer a minute is enough
    fc.assert(
      fc.property(policyArb, fc.integer({ min: 1, max: 24 }), (p, n) => {
        let s = snapshot(
          p,
          Array.from({ length: n }, (_, i) => device(`d${i}`)),
        );
        const finished = (x: RolloutSnapshot) =>
          p.target.membership === 'static'
            ? x.runtime.status === 'completed'
            : x.runtime.phases.every((ph) => ph.succeededAt !== null) &&
              x.deployments.length === n &&
              x.deployments.every((r) => r.state === 'healthy');
        for (let now = T0; now < T0 + LIMIT && !finished(s); now += TICK) {
          s = applyDecisions(s, decide(p, s, now), now);
          s = everyOfferGoesHealthy(s, now + 1000);
          if (s.runtime.status === 'waiting-approval') {
            s = { ...s, runtime: approvePhase(p, s.runtime, s.runtime.currentPhase + 1, now, 'prop') };
          }
        }
        expect(s.runtime.phases.every((ph) => ph.succeededAt !== null)).toBe(true);
        expect(s.deployments.map((r) => r.state)).toEqual(Array.from({ length: n }, () => 'healthy'));
        if (p.target.membership === 'static') expect(s.runtime.status).toBe('completed');
      }),
      { numRuns: 100, seed: SEED },
    );
  });

  // Soaks, completions and rollbacks are rare in these short random runs (an error pauses for good):
  // the statistics print them, and the progress property above drives soaks to completion.
  it('covers pauses, approvals, maintenance windows and retries (fc.statistics)', () => {
    const lines: string[] = [];
    fc.statistics(scenarioArb, classify, { numRuns: 150, seed: SEED, logger: (line) => lines.push(line) });
    console.log(`generated rollout scenarios:\n${lines.join('\n')}`);
    const share = new Map(
      lines.map((line) => {
        const m = /^(.+?)\.+(\d+(?:\.\d+)?)%$/.exec(line);
        return [m?.[1] ?? line, Number(m?.[2] ?? 0)] as const;
      }),
    );
    for (const label of [
      'paused on errors',
      'waited for an approval',
      'approved a phase',
      'held offers outside a window',
      'offered inside a window',
      'retried a device',
    ]) {
      expect(share.get(label) ?? 0, label).toBeGreaterThanOrEqual(3);
    }
  });
});
