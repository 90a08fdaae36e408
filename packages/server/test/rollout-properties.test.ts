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
  type RolloutPolicy,
  type RolloutSnapshot,
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

type Check = (
  p: RolloutPolicy,
  before: RolloutSnapshot,
  d: Decision[],
  after: RolloutSnapshot,
  now: number,
) => void;

/** Drives a random rollout for a few steps and runs `check` on every engine tick. */
function simulate(check: Check, runs = 150) {
  fc.assert(
    fc.property(
      policyArb,
      fc.integer({ min: 1, max: 24 }),
      fc.array(fc.boolean(), { minLength: 24, maxLength: 24 }),
      fc.array(STEP, { minLength: 1, maxLength: 25 }),
      (p, n, online, steps) => {
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
      },
    ),
    { numRuns: runs, seed: 20260302 },
  );
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
});
