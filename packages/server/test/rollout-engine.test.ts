import { describe, expect, it } from 'vitest';
import {
  abortRollout,
  approvePhase,
  decide,
  inMaintenanceWindow,
  matchesTarget,
  normalizePolicy,
  pauseRollout,
  phaseSizes,
  type RolloutSnapshot,
  resumeRollout,
  summarize,
} from '../src/rollout/index.js';
import {
  device,
  finish,
  fleet,
  inPhase,
  MIN,
  ofType,
  policy,
  report,
  setDevices,
  setState,
  snapshot,
  T0,
  tick,
} from './rollout-fixtures.js';

describe('policy validation', () => {
  it('fills every default', () => {
    const p = normalizePolicy({ target: {}, phases: [{ count: 1 }, {}] });
    expect(p.maxConcurrent).toBe(50);
    expect(p.deviceTimeoutSeconds).toBe(7200);
    expect(p.retries).toEqual({ failed: 0, rolledBack: 0, timedOut: 0 });
    expect(p.target.membership).toBe('static');
    expect(p.phases[0]).toMatchObject({
      successThreshold: 100,
      errorThreshold: 0,
      minExecuted: 1,
      soakSeconds: 0,
      requireApproval: false,
    });
    expect(p.maintenanceWindows).toEqual([]);
    expect(p.autoRollback).toBe(false);
  });

  it('does not mutate its input', () => {
    const input = { target: {}, phases: [{}] };
    normalizePolicy(input);
    expect(input).toEqual({ target: {}, phases: [{}] });
  });

  it.each([
    ['a phase with both count and percent', { phases: [{ count: 1, percent: 5 }, {}] }, '/phases/0'],
    ['a non-last phase without a size', { phases: [{}, {}] }, '/phases/0'],
    ['percentages over 100', { phases: [{ percent: 60 }, { percent: 50 }, {}] }, '/phases'],
    ['a success threshold over 100', { phases: [{ successThreshold: 101 }] }, '/phases/0/successThreshold'],
    ['a negative error threshold', { phases: [{ errorThreshold: -1 }] }, '/phases/0/errorThreshold'],
    ['no phases', { phases: [] }, '/phases'],
    ['an unknown field', { phases: [{}], colour: 'red' }, ''],
    [
      'a window start of 24:00',
      { phases: [{}], maintenanceWindows: [{ days: ['mon'], start: '24:00', durationMinutes: 5 }] },
      '/maintenanceWindows/0/start',
    ],
    [
      'a window with no days',
      { phases: [{}], maintenanceWindows: [{ days: [], start: '01:00', durationMinutes: 5 }] },
      '/maintenanceWindows/0/days',
    ],
    ['a rate of 0 per minute', { phases: [{}], rate: { kind: 'constant', perMinute: 0 } }, '/rate'],
    [
      'an exponential factor below 1.1',
      {
        phases: [{}],
        rate: { kind: 'exponential', basePerMinute: 5, incrementFactor: 1, increaseAfter: { notified: 5 } },
      },
      '/rate',
    ],
    ['more than 10 retries', { phases: [{}], retries: { failed: 11 } }, '/retries/failed'],
    ['a timeout under 10 s', { phases: [{}], deviceTimeoutSeconds: 5 }, '/deviceTimeoutSeconds'],
  ])('rejects %s with FLOTILLA_ERR_ROLLOUT_POLICY_INVALID', (_name, over, path) => {
    expect(() => normalizePolicy({ target: {}, ...over })).toThrow(
      expect.objectContaining({
        code: 'FLOTILLA_ERR_ROLLOUT_POLICY_INVALID',
        message: expect.stringContaining(path),
      }),
    );
  });
});

describe('target selection', () => {
  const release = { version: '1.1.0', compatible: ['rpi4', 'imx8'] };
  it.each([
    ['any device with an empty selector', {}, {}, true],
    ['hardware in the list', { hardware: ['rpi4'] }, {}, true],
    ['hardware not in the list', { hardware: ['imx8'] }, {}, false],
    ['hardware the release is not built for', {}, { hardware: 'x86' }, false],
    ['all tags present', { tags: ['lab', 'eu'] }, { tags: ['eu', 'lab', 'x'] }, true],
    ['one tag missing', { tags: ['lab', 'eu'] }, { tags: ['lab'] }, false],
    ['group in the list', { groups: ['g1', 'g2'] }, { group: 'g2' }, true],
    ['no group when groups are required', { groups: ['g1'] }, { group: null }, false],
    ['current version in the list', { versions: ['1.0.0'] }, {}, true],
    ['current version not in the list', { versions: ['0.9.0'] }, {}, false],
    ['device already on the release', {}, { currentVersion: '1.1.0' }, false],
    ['channel in the list', { channels: ['prod'] }, {}, true],
    ['channel not in the list', { channels: ['dev'] }, {}, false],
    ['explicit device id', { devices: ['a'] }, {}, true],
    ['another device id', { devices: ['b'] }, {}, false],
  ])('%s', (_name, target, over, expected) => {
    const t = policy({ target }).target;
    expect(matchesTarget(t, release, device('a', over))).toBe(expected);
  });

  it('a static rollout takes its target set once, at start', () => {
    const p = policy({ target: { tags: ['eu'] } });
    const devices = [
      device('a', { tags: ['eu'] }),
      device('b', { tags: ['us'] }),
      device('c', { tags: ['eu'] }),
    ];
    const { s, d } = tick(p, snapshot(p, devices), T0);
    expect(
      ofType(d, 'assign')
        .map((x) => x.deviceId)
        .sort(),
    ).toEqual(['a', 'c']);
    const later = setDevices({ ...s, devices: [...s.devices, device('z', { tags: ['eu'] })] }, (x) => x);
    expect(ofType(decide(p, later, T0 + MIN), 'assign')).toEqual([]);
  });
});

describe('phase sizes', () => {
  it.each([
    [[{ count: 1 }, {}], 10, [1, 9]],
    [[{ percent: 10 }, { percent: 40 }, {}], 10, [1, 4, 5]],
    [[{ percent: 1 }, {}], 50, [1, 49]], // rounded up: a canary is never empty
    [[{ percent: 33.33 }, {}], 3, [1, 2]],
    [[{ count: 5 }, { count: 5 }, {}], 7, [5, 2, 0]],
    [[{ count: 1 }, { percent: 100 }, {}], 4, [1, 3, 0]],
    [[{ count: 2 }], 7, [7]], // the last phase always takes the rest
    [[{ percent: 50 }, {}], 0, [0, 0]],
  ])('phases %j over %i devices → %j', (phases, total, sizes) => {
    expect(phaseSizes(policy({ phases }), total)).toEqual(sizes);
  });
});

/** A started one-phase rollout over `n` devices, all offered; then `states` applied by count. */
function judged(phase: Record<string, unknown>, n: number, counts: Record<string, number>): RolloutSnapshot {
  const p = policy({ phases: [phase] });
  let { s } = tick(p, snapshot(p, fleet(n)), T0);
  let i = 0;
  for (const [state, k] of Object.entries(counts)) {
    const ids = s.deployments.slice(i, i + k).map((r) => r.deviceId);
    s = setState(s, ids, state as never);
    i += k;
  }
  return s;
}

describe('success threshold: healthy ÷ phase ≥ threshold', () => {
  it.each([
    ['4 of 10 healthy at 50 %: below', { successThreshold: 50 }, 10, { healthy: 4 }, false],
    [
      '5 of 10 healthy at 50 %: exactly at the threshold succeeds',
      { successThreshold: 50 },
      10,
      { healthy: 5 },
      true,
    ],
    ['6 of 10 healthy at 50 %: above', { successThreshold: 50 }, 10, { healthy: 6 }, true],
    [
      '1 of 3 healthy at 33.33 %: exact in basis points',
      { successThreshold: 33.33 },
      3,
      { healthy: 1 },
      true,
    ],
    ['1 of 3 healthy at 33.34 %', { successThreshold: 33.34 }, 3, { healthy: 1 }, false],
    ['10 of 10 installed is not success', { successThreshold: 50 }, 10, { installed: 10 }, false],
    ['10 of 10 rebooting is not success', { successThreshold: 10 }, 10, { rebooting: 10 }, false],
    ['9 healthy + 1 installed at 100 %', { successThreshold: 100 }, 10, { healthy: 9, installed: 1 }, false],
    ['0 % threshold still needs min executed', { successThreshold: 0, minExecuted: 1 }, 10, {}, false],
    [
      '5 healthy at 50 % but 6 must execute first',
      { successThreshold: 50, minExecuted: 6 },
      10,
      { healthy: 5 },
      false,
    ],
    [
      '5 healthy + 1 failed at 50 %, min 6, error 20',
      { successThreshold: 50, minExecuted: 6, errorThreshold: 20 },
      10,
      { healthy: 5, failed: 1 },
      true,
    ],
  ])('%s', (_name, phase, n, counts, met) => {
    const p = policy({ phases: [phase] });
    const s = judged(phase, n, counts);
    expect(summarize(p, s, T0).phases[0]!.successMet).toBe(met);
    expect(ofType(decide(p, s, T0), 'phase-succeeded').length).toBe(met ? 1 : 0);
  });

  it('an empty phase succeeds (hawkBit), so the next starts', () => {
    const p = policy({ phases: [{ count: 2 }, { count: 5 }, {}] });
    // 2 devices: phase 0 gets both, phases 1 and 2 are empty.
    let { s } = tick(p, snapshot(p, fleet(2)), T0);
    s = finish(s, 'healthy');
    const d = decide(p, s, T0 + 1);
    expect(ofType(d, 'phase-succeeded').map((x) => x.phase)).toEqual([0, 1, 2]);
    expect(ofType(d, 'complete')).toHaveLength(1);
  });
});

describe('error threshold: failed ÷ phase > threshold (strictly)', () => {
  it.each([
    [
      '2 of 10 failed at 20 %: exactly at the threshold does not pause',
      { errorThreshold: 20 },
      { failed: 2 },
      false,
    ],
    ['3 of 10 failed at 20 %: above pauses', { errorThreshold: 20 }, { failed: 3 }, true],
    ['1 of 10 failed at 20 %: below', { errorThreshold: 20 }, { failed: 1 }, false],
    ['1 failure at the 0 % default pauses', {}, { failed: 1 }, true],
    ['rolled-back counts as a failure', { errorThreshold: 10 }, { 'rolled-back': 2 }, true],
    ['timed-out counts as a failure', { errorThreshold: 10 }, { 'timed-out': 2 }, true],
    [
      'mixed failure kinds add up',
      { errorThreshold: 20 },
      { failed: 1, 'rolled-back': 1, 'timed-out': 1 },
      true,
    ],
    [
      '3 failures before min executed 5 are not judged yet',
      { errorThreshold: 20, minExecuted: 5 },
      { failed: 3 },
      false,
    ],
    [
      '3 failures + 2 healthy reach min executed 5',
      { errorThreshold: 20, minExecuted: 5 },
      { failed: 3, healthy: 2 },
      true,
    ],
    [
      'installed devices are not executed',
      { errorThreshold: 20, minExecuted: 5 },
      { failed: 3, installed: 5 },
      false,
    ],
    ['cancelled is neither success nor failure', {}, { cancelled: 3 }, false],
  ])('%s', (_name, phase, counts, pauses) => {
    const p = policy({ phases: [phase] });
    const s = judged(phase, 10, counts);
    const pause = ofType(decide(p, s, T0 + 1), 'pause');
    expect(pause.length).toBe(pauses ? 1 : 0);
    if (pauses) {
      const failed = Object.entries(counts)
        .filter(([k]) => ['failed', 'rolled-back', 'timed-out'].includes(k))
        .reduce((a, [, v]) => a + v, 0);
      expect(pause[0]!.reason).toMatchObject({ kind: 'error-threshold', phase: 0, failed, total: 10 });
    }
  });

  it('errors in an earlier, already succeeded phase still pause the whole rollout', () => {
    const p = policy({ phases: [{ count: 2, successThreshold: 50, errorThreshold: 50 }, {}] });
    let { s } = tick(p, snapshot(p, fleet(6)), T0);
    const canary = inPhase(s, 0);
    s = setState(s, [canary[0]!], 'healthy');
    ({ s } = tick(p, s, T0 + 1));
    expect(s.runtime.currentPhase).toBe(1);
    s = setState(s, canary, 'failed'); // 2 of 2 > 50 %
    const d = decide(p, s, T0 + 2);
    expect(ofType(d, 'pause')[0]!.reason).toMatchObject({ phase: 0, failed: 2, total: 2, threshold: 50 });
    expect(ofType(d, 'offer')).toEqual([]);
  });
});

describe('offline devices', () => {
  it('are never offered, stay pending and count in the phase denominator', () => {
    const p = policy({ phases: [{ successThreshold: 100 }] });
    const devices = [...fleet(3), device('off', { online: false })];
    let { s, d } = tick(p, snapshot(p, devices), T0);
    expect(ofType(d, 'offer').map((x) => x.deviceId)).not.toContain('off');
    s = finish(s, 'healthy');
    const sum = summarize(p, s, T0).phases[0]!;
    expect(sum).toMatchObject({ total: 4, healthy: 3, notStarted: 1, successMet: false });
    expect(ofType(decide(p, s, T0 + 1), 'complete')).toEqual([]);
    // It comes back online: offered now.
    s = setDevices(s, (x) => ({ ...x, online: true }));
    ({ s, d } = tick(p, s, T0 + 2));
    expect(ofType(d, 'offer').map((x) => x.deviceId)).toEqual(['off']);
  });

  it('busy devices (deployment of another rollout) wait', () => {
    const p = policy();
    const { d } = tick(p, snapshot(p, [device('a', { busy: true }), device('b')]), T0);
    expect(ofType(d, 'offer').map((x) => x.deviceId)).toEqual(['b']);
  });
});

describe('per-device timeout', () => {
  it.each([
    ['offered', 0, false],
    ['downloading', 1, false],
    ['installing', 1, true],
    ['installed', 1, true],
    ['rebooting', 2, true],
  ])('a device %s for timeout%+d s is timed out: %s', (state, delta, out) => {
    const p = policy({ deviceTimeoutSeconds: 600, phases: [{ errorThreshold: 100 }] });
    let { s } = tick(p, snapshot(p, fleet(1)), T0);
    s = setState(s, () => true, state as never);
    const at = T0 + 600_000 + (out ? delta * 1000 : -1000);
    const d = decide(p, s, at);
    expect(ofType(d, 'timed-out').length).toBe(out ? 1 : 0);
  });

  it('healthy and failed devices never time out', () => {
    const p = policy({ deviceTimeoutSeconds: 60, phases: [{ errorThreshold: 100 }] });
    let { s } = tick(p, snapshot(p, fleet(2)), T0);
    s = setState(s, ['d000'], 'healthy');
    s = setState(s, ['d001'], 'failed');
    expect(ofType(decide(p, s, T0 + 3_600_000), 'timed-out')).toEqual([]);
  });
});

describe('retries (per failure type)', () => {
  it.each([
    ['failed', { failed: 1 }, 1, true],
    ['failed', { failed: 1 }, 2, false],
    ['failed', { rolledBack: 3, timedOut: 3 }, 1, false],
    ['rolled-back', { rolledBack: 2 }, 2, true],
    ['rolled-back', { failed: 5 }, 1, false],
    ['timed-out', { timedOut: 1 }, 1, true],
    ['timed-out', { timedOut: 0 }, 1, false],
  ])('after %s with retries %j and %i attempts, retry: %s', (state, retries, attempts, again) => {
    const p = policy({ retries, phases: [{ errorThreshold: 100 }] });
    let { s } = tick(p, snapshot(p, fleet(1)), T0);
    s = setState(s, () => true, state as never, { attempts });
    const d = decide(p, s, T0 + 1000);
    expect(ofType(d, 'retry').length).toBe(again ? 1 : 0);
    expect(ofType(d, 'offer').map((x) => x.attempt)).toEqual(again ? [attempts + 1] : []);
  });

  it('a failure with a retry left does not count against the error threshold', () => {
    const p = policy({ retries: { failed: 1 } });
    let { s } = tick(p, snapshot(p, fleet(2)), T0);
    s = setState(s, ['d000'], 'failed');
    const d = decide(p, s, T0 + 1);
    expect(ofType(d, 'pause')).toEqual([]);
    s = setState(s, ['d000'], 'failed', { attempts: 2 });
    expect(ofType(decide(p, s, T0 + 2), 'pause')).toHaveLength(1);
  });

  it('timed-out then retried in one tick, within the limits', () => {
    const p = policy({
      deviceTimeoutSeconds: 60,
      retries: { timedOut: 1 },
      phases: [{ errorThreshold: 100 }],
    });
    const { s } = tick(p, snapshot(p, fleet(1)), T0);
    const d = decide(p, s, T0 + 61_000);
    expect(d.map((x) => x.type)).toEqual(['timed-out', 'retry', 'offer']);
  });
});

describe('dynamic membership', () => {
  const phases = [{ count: 2 }, {}];
  it.each([
    ['static: a new matching device never joins', 'static', 'current', null],
    ['dynamic/current: joins the phase in progress', 'dynamic', 'current', 0],
    ['dynamic/last: joins the last phase', 'dynamic', 'last', 1],
  ])('%s', (_name, membership, joinPhase, expected) => {
    const p = policy({ phases, target: { membership, joinPhase } });
    let { s } = tick(p, snapshot(p, fleet(4)), T0);
    s = { ...s, devices: [...s.devices, device('new'), device('other-hw', { hardware: 'x86' })] };
    s = { ...s, release: { ...s.release, compatible: ['rpi4'] } };
    const { s: s2, d } = tick(p, s, T0 + 1);
    const assigned = ofType(d, 'assign');
    expect(assigned.map((x) => x.phase)).toEqual(expected === null ? [] : [expected]);
    if (expected === 0) expect(ofType(d, 'offer').map((x) => x.deviceId)).toContain('new');
    if (expected === 1) expect(s2.deployments.find((r) => r.deviceId === 'new')!.state).toBe('pending');
  });

  it('joiners keep stop-on-error semantics: a paused rollout assigns but does not offer', () => {
    const p = policy({ target: { membership: 'dynamic' } });
    let { s } = tick(p, snapshot(p, fleet(2)), T0);
    s = setState(s, ['d000'], 'failed');
    ({ s } = tick(p, s, T0 + 1));
    expect(s.runtime.status).toBe('paused');
    s = { ...s, devices: [...s.devices, device('late')] };
    const d = decide(p, s, T0 + 2);
    expect(ofType(d, 'assign').map((x) => x.deviceId)).toEqual(['late']);
    expect(ofType(d, 'offer')).toEqual([]);
  });

  it('a dynamic rollout never completes by itself', () => {
    const p = policy({ target: { membership: 'dynamic' } });
    let { s } = tick(p, snapshot(p, fleet(2)), T0);
    s = finish(s, 'healthy');
    ({ s } = tick(p, s, T0 + 1));
    expect(s.runtime.status).toBe('running');
    expect(s.runtime.phases[0]!.succeededAt).toBe(T0 + 1);
  });
});

describe('maintenance windows', () => {
  const nightly = { days: ['mon', 'tue'], start: '22:00', durationMinutes: 240, utcOffset: '+00:00' };
  it.each([
    ['Monday 21:59 UTC', '2026-03-02T21:59:00Z', [nightly], false],
    ['Monday 22:00 UTC', '2026-03-02T22:00:00Z', [nightly], true],
    ['Tuesday 01:59 (past midnight)', '2026-03-03T01:59:00Z', [nightly], true],
    ['Tuesday 02:00 (closed)', '2026-03-03T02:00:00Z', [nightly], false],
    ['Sunday 23:00', '2026-03-08T23:00:00Z', [nightly], false],
    ['Wednesday 00:30 (Tuesday window)', '2026-03-04T00:30:00Z', [nightly], true],
    [
      'Sunday 22:30 window reaching into Monday, Monday 00:10',
      '2026-03-02T00:10:00Z',
      [{ ...nightly, days: ['sun'] }],
      true,
    ],
    [
      '+02:00: Monday 20:00 UTC is 22:00 local',
      '2026-03-02T20:00:00Z',
      [{ ...nightly, utcOffset: '+02:00' }],
      true,
    ],
    [
      '-05:00: Tuesday 03:00 UTC is Monday 22:00 local',
      '2026-03-03T03:00:00Z',
      [{ ...nightly, utcOffset: '-05:00' }],
      true,
    ],
    [
      '-05:00: Monday 22:00 UTC is 17:00 local',
      '2026-03-02T22:00:00Z',
      [{ ...nightly, utcOffset: '-05:00' }],
      false,
    ],
    ['no windows: always open', '2026-03-05T12:00:00Z', [], true],
    [
      'a whole-week window',
      '2026-03-05T12:00:00Z',
      [{ ...nightly, days: ['thu'], durationMinutes: 10080 }],
      true,
    ],
  ])('%s → open: %s', (_name, at, windows, open) => {
    const p = policy({ maintenanceWindows: windows });
    expect(inMaintenanceWindow(p.maintenanceWindows, Date.parse(at))).toBe(open);
  });

  it('no new offers outside a window; devices in flight carry on; offers resume when it opens', () => {
    const p = policy({ maxConcurrent: 1, maintenanceWindows: [nightly] });
    const open = Date.parse('2026-03-02T22:00:00Z');
    let { s, d } = tick(p, snapshot(p, fleet(2)), open);
    expect(ofType(d, 'offer')).toHaveLength(1);
    s = report(s, d.find((x) => x.type === 'offer')!.deviceId!, 'downloaded', open + MIN);
    s = finish(
      setState(s, (r) => r.state === 'downloading', 'healthy'),
      'healthy',
    );
    const closed = Date.parse('2026-03-03T03:00:00Z');
    ({ s, d } = tick(p, s, closed));
    expect(ofType(d, 'offer')).toEqual([]);
    ({ d } = tick(p, s, Date.parse('2026-03-03T22:30:00Z')));
    expect(ofType(d, 'offer')).toHaveLength(1);
  });
});

describe('max concurrent and rate', () => {
  it('never more than maxConcurrent devices in flight', () => {
    const p = policy({ maxConcurrent: 3 });
    let { s, d } = tick(p, snapshot(p, fleet(10)), T0);
    expect(ofType(d, 'offer')).toHaveLength(3);
    s = setState(s, [ofType(d, 'offer')[0]!.deviceId], 'installed'); // still in flight
    expect(ofType(decide(p, s, T0 + 1), 'offer')).toEqual([]);
    s = setState(s, [ofType(d, 'offer')[1]!.deviceId], 'healthy');
    ({ d } = tick(p, s, T0 + 2));
    expect(ofType(d, 'offer')).toHaveLength(1);
  });

  it('a constant rate gives at most N offers per minute', () => {
    const p = policy({ rate: { kind: 'constant', perMinute: 4 } });
    let { s, d } = tick(p, snapshot(p, fleet(20)), T0);
    expect(ofType(d, 'offer')).toHaveLength(4);
    s = finish(s, 'healthy');
    ({ s, d } = tick(p, s, T0 + 59_999));
    expect(ofType(d, 'offer')).toHaveLength(0);
    ({ s, d } = tick(p, s, T0 + MIN));
    expect(ofType(d, 'offer')).toHaveLength(4);
  });

  it('an exponential rate grows with devices notified (AWS numberOfNotifiedThings)', () => {
    const p = policy({
      rate: { kind: 'exponential', basePerMinute: 4, incrementFactor: 2, increaseAfter: { notified: 8 } },
    });
    let { s, d } = tick(p, snapshot(p, fleet(100)), T0);
    expect(ofType(d, 'offer')).toHaveLength(4); // 4 notified < 8: still 4/min
    expect(decide(p, s, T0 + 59_999)).toEqual([]);
    // Next minute: 4 more reach 8 notified, the rate doubles to 8 within the same minute.
    ({ s, d } = tick(p, s, T0 + MIN));
    expect(ofType(d, 'offer')).toHaveLength(8);
    expect(summarize(p, s, T0 + MIN).ratePerMinute).toBe(8);
    expect(s.runtime.rateWindow).toEqual({ start: T0 + MIN, count: 8 });
  });

  it('an exponential rate on succeeded devices grows only as devices turn healthy', () => {
    const p = policy({
      rate: { kind: 'exponential', basePerMinute: 2, incrementFactor: 2, increaseAfter: { succeeded: 4 } },
    });
    let { s, d } = tick(p, snapshot(p, fleet(40)), T0);
    expect(ofType(d, 'offer')).toHaveLength(2);
    s = finish(s, 'healthy');
    ({ s, d } = tick(p, s, T0 + MIN));
    expect(ofType(d, 'offer')).toHaveLength(2);
    s = finish(s, 'healthy'); // 4 healthy → rate 4
    ({ d } = tick(p, s, T0 + 2 * MIN));
    expect(ofType(d, 'offer')).toHaveLength(4);
  });

  it('AWS example: base 50, ×2 per 1000 notified → 50, 100, 200, 400 (capped at max)', async () => {
    const { ratePerMinute } = await import('../src/rollout/index.js');
    const p = policy({
      rate: {
        kind: 'exponential',
        basePerMinute: 50,
        incrementFactor: 2,
        increaseAfter: { notified: 1000 },
        maxPerMinute: 300,
      },
    });
    expect([0, 999, 1000, 2500, 3000].map((n) => ratePerMinute(p, { notified: n, succeeded: 0 }))).toEqual([
      50, 50, 100, 200, 300,
    ]);
  });
});

describe('approvals and soak time', () => {
  it('waits for approval before a phase starts, then starts it', () => {
    const p = policy({ phases: [{ count: 1 }, { requireApproval: true }] });
    let { s } = tick(p, snapshot(p, fleet(3)), T0);
    s = finish(s, 'healthy');
    let d: ReturnType<typeof decide>;
    ({ s, d } = tick(p, s, T0 + 1));
    expect(d.map((x) => x.type)).toEqual(['phase-succeeded', 'wait-approval']);
    expect(s.runtime.status).toBe('waiting-approval');
    expect(decide(p, s, T0 + 2)).toEqual([]); // waiting is stable
    s = { ...s, runtime: approvePhase(p, s.runtime, 1, T0 + 3, 'alice') };
    ({ s, d } = tick(p, s, T0 + 4));
    expect(d.map((x) => x.type)).toEqual(['phase-started', 'offer', 'offer']);
    expect(s.runtime.phases[1]!.approvedBy).toBe('alice');
  });

  it('the first phase may need approval too', () => {
    const p = policy({ phases: [{ requireApproval: true }] });
    const { s, d } = tick(p, snapshot(p, fleet(2)), T0);
    expect(d.filter((x) => x.type !== 'assign').map((x) => x.type)).toEqual([
      'rollout-started',
      'wait-approval',
    ]);
    expect(s.deployments.every((r) => r.state === 'pending')).toBe(true);
  });

  it.each([
    ['a phase that does not exist', 5, 'FLOTILLA_ERR_ROLLOUT_PHASE'],
    ['a phase without requireApproval', 0, 'FLOTILLA_ERR_ROLLOUT_PHASE'],
  ])('refuses to approve %s', (_name, phase, code) => {
    const p = policy({ phases: [{ count: 1 }, { requireApproval: true }] });
    const { s } = tick(p, snapshot(p, fleet(3)), T0);
    expect(() => approvePhase(p, s.runtime, phase, T0)).toThrow(expect.objectContaining({ code }));
  });

  it('a phase must stay successful for its soak time; a relapse restarts the soak', () => {
    // A retry keeps the relapse from being final (a final shortfall ends the rollout `failed`).
    const p = policy({
      phases: [{ count: 2, successThreshold: 100, errorThreshold: 100 }, {}],
      retries: { rolledBack: 1 },
    });
    p.phases[0]!.soakSeconds = 600;
    let { s } = tick(p, snapshot(p, fleet(4)), T0);
    s = finish(s, 'healthy');
    let d: ReturnType<typeof decide>;
    ({ s, d } = tick(p, s, T0 + 1000));
    expect(d.map((x) => x.type)).toEqual(['soak-started']);
    expect(s.runtime.status).toBe('soaking');
    expect(decide(p, s, T0 + 1000 + 599_999)).toEqual([]);
    // One canary falls back during the soak: success is lost, the soak starts over later.
    const canary = inPhase(s, 0)[0]!;
    const relapsed = setDevices(setState(s, [canary], 'rolled-back'), (x) =>
      x.id === canary ? { ...x, currentVersion: '1.0.0' } : x,
    );
    ({ d } = tick(p, relapsed, T0 + 2000));
    expect(d.map((x) => x.type)).toEqual(['retry', 'soak-reset', 'offer']);
    ({ s, d } = tick(p, s, T0 + 1000 + 600_000));
    expect(d.map((x) => x.type)).toEqual(['phase-succeeded', 'phase-started', 'offer', 'offer']);
  });
});

describe('pause, resume, abort', () => {
  it('an operator pause stops new offers; in-flight devices carry on; resume continues', () => {
    const p = policy({ maxConcurrent: 1 });
    let { s } = tick(p, snapshot(p, fleet(3)), T0);
    s = { ...s, runtime: pauseRollout(s.runtime, T0 + 1, 'bob', 'night shift') };
    s = finish(s, 'healthy');
    expect(ofType(decide(p, s, T0 + 2), 'offer')).toEqual([]);
    expect(summarize(p, s, T0 + 2).pause).toMatchObject({ kind: 'operator', by: 'bob' });
    s = { ...s, runtime: resumeRollout(p, s) };
    expect(s.runtime.status).toBe('running');
    expect(ofType(decide(p, s, T0 + 3), 'offer')).toHaveLength(1);
  });

  it.each([
    ['pause a paused rollout', (s: RolloutSnapshot) => pauseRollout(pauseRollout(s.runtime, T0), T0)],
    ['resume a running rollout', (s: RolloutSnapshot) => resumeRollout(policy(), s)],
    [
      'abort an aborted rollout',
      (s: RolloutSnapshot) => abortRollout(policy(), abortRollout(policy(), s.runtime, T0), T0),
    ],
  ])('refuses to %s with FLOTILLA_ERR_ROLLOUT_STATE, in correct grammar', (name, act) => {
    const p = policy();
    const { s } = tick(p, snapshot(p, fleet(1)), T0);
    expect(() => act(s)).toThrow(
      expect.objectContaining({
        code: 'FLOTILLA_ERR_ROLLOUT_STATE',
        message: expect.stringContaining(`cannot ${name}`),
      }),
    );
  });

  it('resuming after an error pause acknowledges the failures seen: only new ones are judged', () => {
    const p = policy({ phases: [{ errorThreshold: 10 }] });
    let { s } = tick(p, snapshot(p, fleet(10)), T0);
    s = setState(s, ['d000', 'd001'], 'failed');
    ({ s } = tick(p, s, T0 + 1));
    expect(s.runtime.pause).toMatchObject({ kind: 'error-threshold', failed: 2, total: 10, threshold: 10 });
    s = { ...s, runtime: resumeRollout(p, s) };
    expect(ofType(decide(p, s, T0 + 2), 'pause')).toEqual([]);
    s = setState(s, ['d002'], 'failed'); // 1 new ÷ 10 = 10 %: at the threshold, fine
    expect(ofType(decide(p, s, T0 + 3), 'pause')).toEqual([]);
    s = setState(s, ['d003'], 'failed'); // 2 new: 20 % > 10 %
    expect(ofType(decide(p, s, T0 + 4), 'pause')).toHaveLength(1);
  });

  it('abort cancels pending devices, tells offered/downloading ones to stop, lets installing ones finish', () => {
    const p = policy({ maxConcurrent: 3 });
    let { s } = tick(p, snapshot(p, fleet(5)), T0);
    const offered = s.deployments.filter((r) => r.state === 'offered').map((r) => r.deviceId);
    s = report(s, offered[1]!, 'download-progress', T0 + 1);
    s = report(s, offered[2]!, 'install-progress', T0 + 1);
    s = { ...s, runtime: abortRollout(p, s.runtime, T0 + 2) };
    const d = decide(p, s, T0 + 3);
    const cancels = ofType(d, 'cancel');
    expect(
      cancels
        .filter((c) => c.notify)
        .map((c) => c.deviceId)
        .sort(),
    ).toEqual([offered[0], offered[1]].sort());
    expect(cancels.filter((c) => !c.notify)).toHaveLength(2);
    expect(cancels.map((c) => c.deviceId)).not.toContain(offered[2]);
    expect(ofType(d, 'offer')).toEqual([]);
    expect(decide(p, applyAll(p, s, T0 + 3), T0 + 4)).toEqual([]);
  });
});

function applyAll(p: ReturnType<typeof policy>, s: RolloutSnapshot, now: number): RolloutSnapshot {
  return tick(p, s, now).s;
}

describe('automatic rollback', () => {
  it('pausing on errors with autoRollback offers the previous release to devices this rollout made healthy', () => {
    const p = policy({ autoRollback: true, phases: [{ count: 4, errorThreshold: 25 }, {}] });
    const devices = fleet(8).map((d, i) => ({ ...d, currentVersion: i % 2 ? '1.0.0' : '0.9.0' }));
    let { s } = tick(p, snapshot(p, devices), T0);
    const canary = inPhase(s, 0);
    s = setState(s, canary.slice(0, 2), 'healthy');
    s = setDevices(s, (d) => (canary.slice(0, 2).includes(d.id) ? { ...d, currentVersion: '1.1.0' } : d));
    s = setState(s, canary.slice(2, 4), 'rolled-back');
    const d = decide(p, s, T0 + 1);
    expect(d[0]).toMatchObject({ type: 'pause', rollback: true });
    const rb = ofType(d, 'rollback-offer');
    expect(rb.map((x) => x.deviceId).sort()).toEqual(canary.slice(0, 2).sort());
    for (const x of rb) expect(x.toVersion).toBe(devices.find((dv) => dv.id === x.deviceId)!.currentVersion);
    const after = applyAll(p, s, T0 + 1);
    expect(decide(p, after, T0 + 2)).toEqual([]);
    expect(() => resumeRollout(p, after)).toThrow(
      expect.objectContaining({ code: 'FLOTILLA_ERR_ROLLOUT_STATE' }),
    );
    // The rollback deployment follows device events; summary counts reverted devices.
    const done = canary.slice(0, 2).reduce((acc, id) => report(acc, id, 'healthy', T0 + 3), after);
    expect(summarize(p, done, T0 + 3).totals.reverted).toBe(2);
  });

  it('without autoRollback an error pause rolls nothing back', () => {
    const p = policy({ phases: [{ errorThreshold: 25 }] });
    let { s } = tick(p, snapshot(p, fleet(4)), T0);
    s = setState(s, ['d000', 'd001'], 'healthy');
    s = setState(s, ['d002', 'd003'], 'failed');
    expect(ofType(decide(p, s, T0 + 1), 'rollback-offer')).toEqual([]);
  });

  it('abort with rollback reverts healthy devices; in-flight ones are reverted once healthy', () => {
    const p = policy({ phases: [{ errorThreshold: 100 }] });
    let { s } = tick(p, snapshot(p, fleet(3)), T0);
    s = setState(s, ['d000'], 'healthy');
    s = setState(s, ['d001'], 'rebooting');
    s = { ...s, runtime: abortRollout(p, s.runtime, T0 + 1, { rollback: true }) };
    let d: ReturnType<typeof decide>;
    ({ s, d } = tick(p, s, T0 + 2));
    expect(ofType(d, 'rollback-offer').map((x) => x.deviceId)).toEqual(['d000']);
    s = report(s, 'd001', 'healthy', T0 + 3);
    ({ d } = tick(p, s, T0 + 4));
    expect(ofType(d, 'rollback-offer').map((x) => x.deviceId)).toEqual(['d001']);
  });

  it('rollback offers respect maxConcurrent, windows and time out like any offer', () => {
    const p = policy({ maxConcurrent: 1, deviceTimeoutSeconds: 60, phases: [{ errorThreshold: 100 }] });
    let { s } = tick(p, snapshot(p, fleet(3)), T0);
    s = setState(s, () => true, 'healthy'); // as if all three had gone through one by one
    s = { ...s, runtime: abortRollout(p, s.runtime, T0 + 1, { rollback: true }) };
    let d: ReturnType<typeof decide>;
    ({ s, d } = tick(p, s, T0 + 2));
    expect(ofType(d, 'rollback-offer')).toHaveLength(1);
    ({ s, d } = tick(p, s, T0 + 2 + 60_000));
    expect(d.map((x) => x.type)).toEqual(['rollback-timed-out', 'rollback-offer']);
  });
});

describe('start, completion, restart', () => {
  it('a scheduled rollout waits for startAt', () => {
    const p = policy({ startAt: '2026-03-02T12:00:00Z' });
    const s = snapshot(p, fleet(2));
    expect(decide(p, s, Date.parse('2026-03-02T11:59:59Z'))).toEqual([]);
    expect(decide(p, s, Date.parse('2026-03-02T12:00:00Z'))[0]).toEqual({ type: 'rollout-started' });
  });

  it('completes once every phase succeeded and every device finished', () => {
    const p = policy({ phases: [{ count: 1 }, { successThreshold: 50, errorThreshold: 50 }] });
    let { s } = tick(p, snapshot(p, fleet(5)), T0);
    s = finish(s, 'healthy');
    let d: ReturnType<typeof decide>;
    ({ s } = tick(p, s, T0 + 1));
    s = setState(s, (r) => r.phase === 1 && r.deviceId !== inPhase(s, 1)[0], 'healthy');
    ({ s, d } = tick(p, s, T0 + 2));
    expect(ofType(d, 'phase-succeeded')).toHaveLength(1);
    expect(s.runtime.status).toBe('running'); // one device still in flight
    s = setState(s, [inPhase(s, 1)[0]!], 'failed');
    ({ s, d } = tick(p, s, T0 + 3));
    expect(d).toEqual([{ type: 'complete' }]);
    expect(decide(p, s, T0 + 4)).toEqual([]);
  });

  it('a rollout killed and resumed: the stored snapshot gives the same decisions, and re-deciding gives none', () => {
    const p = policy({
      phases: [{ count: 2, soakSeconds: 60 }, { percent: 50, requireApproval: false }, {}],
      maxConcurrent: 3,
      rate: { kind: 'constant', perMinute: 5 },
      retries: { failed: 1 },
    });
    let { s } = tick(p, snapshot(p, fleet(12)), T0);
    s = finish(s, 'healthy', [0]);
    ({ s } = tick(p, s, T0 + 1000));
    // Persist as the server would (JSON), "crash", load, decide again at the same time.
    const stored = JSON.parse(JSON.stringify(s)) as RolloutSnapshot;
    const now = T0 + 70_000;
    expect(decide(p, stored, now)).toEqual(decide(p, s, now));
    const d = decide(p, stored, now);
    expect(d.length).toBeGreaterThan(0);
    expect(decide(p, applyAll(p, stored, now), now)).toEqual([]);
    expect(decide(p, applyAll(p, stored, now), now + 1)).toEqual([]);
  });
});

describe('device events', () => {
  it.each([
    ['offered', 'download-progress', 'downloading'],
    ['downloading', 'install-progress', 'installing'],
    ['installing', 'installed', 'installed'],
    ['installed', 'rebooting', 'rebooting'],
    ['rebooting', 'healthy', 'healthy'],
    ['rebooting', 'rolled-back', 'rolled-back'],
    ['offered', 'offer-rejected', 'failed'],
    ['installing', 'failed', 'failed'],
    ['healthy', 'rolled-back', 'rolled-back'], // fell back after reporting healthy
    ['timed-out', 'healthy', 'healthy'], // a late success is believed
    ['installing', 'download-progress', null], // progress never goes backwards
    ['failed', 'install-progress', null],
    ['healthy', 'failed', null],
    ['offered', 'log', null],
    ['pending', 'downloaded', null],
  ])('%s + %s → %s', (from, kind, to) => {
    const p = policy();
    let { s } = tick(p, snapshot(p, fleet(1)), T0);
    s = setState(s, () => true, from as never);
    const after = report(s, 'd000', kind, T0 + 5).deployments[0]!;
    expect(after.state).toBe(to ?? from);
  });
});

describe('summary', () => {
  it('counts per phase with threshold status', () => {
    const p = policy({ phases: [{ count: 4, successThreshold: 50, errorThreshold: 25 }, {}] });
    let { s } = tick(p, snapshot(p, fleet(10)), T0);
    const c = inPhase(s, 0);
    s = setState(s, [c[0]!], 'healthy');
    s = setState(s, [c[1]!], 'installed');
    s = setState(s, [c[2]!], 'rolled-back');
    const sum = summarize(p, s, T0);
    expect(sum.phases[0]).toMatchObject({
      total: 4,
      healthy: 1,
      failed: 1,
      rolledBack: 1,
      inFlight: 2,
      notStarted: 0,
      successPercent: 25,
      errorPercent: 25,
      successMet: false,
      errorExceeded: false,
      status: 'running',
    });
    expect(sum.phases[1]).toMatchObject({ total: 6, notStarted: 6, status: 'not-started' });
    expect(sum.totals).toMatchObject({ devices: 10, healthy: 1, failed: 1, inFlight: 2, notStarted: 6 });
  });
});

describe('final states: a device cannot turn its own failure into success', () => {
  const offeredOne = () => {
    const p = policy({ phases: [{ count: 1, errorThreshold: 100 }, {}] });
    const { s } = tick(p, snapshot(p, fleet(3)), T0);
    return { p, s, id: inPhase(s, 0)[0]! };
  };

  it('ignores healthy after failed (failed → healthy was accepted)', () => {
    const { s: s0, id } = offeredOne();
    let s = report(s0, id, 'failed', T0 + 1);
    s = report(s, id, 'healthy', T0 + 2);
    expect(s.deployments.find((r) => r.deviceId === id)!.state).toBe('failed');
  });

  it.each([
    ['failed', 'rolled-back'],
    ['rolled-back', 'healthy'],
    ['rolled-back', 'failed'],
  ])('keeps a %s deployment %s-proof', (final, kind) => {
    const { s: s0, id } = offeredOne();
    const s = report(report(s0, id, final, T0 + 1), id, kind, T0 + 2);
    expect(s.deployments.find((r) => r.deviceId === id)!.state).toBe(final);
  });

  it('a paused rollout does not count a failed device that later claims healthy', () => {
    const { p, s: s0, id } = offeredOne();
    let s = report(s0, id, 'failed', T0 + 1);
    s = { ...s, runtime: pauseRollout(s.runtime, T0 + 2, 'op') };
    s = report(s, id, 'healthy', T0 + 3);
    expect(summarize(p, s, T0 + 3).totals).toMatchObject({ healthy: 0, failed: 1 });
  });

  it('believes healthy only when the device names the deployment release (not its old version)', () => {
    const { p, s: s0, id } = offeredOne();
    const s = report(s0, id, 'healthy', T0 + 1, '1.0.0');
    expect(s.deployments.find((r) => r.deviceId === id)!.state).toBe('offered');
    expect(summarize(p, s, T0 + 1).totals.healthy).toBe(0);
    expect(report(s, id, 'healthy', T0 + 2).deployments.find((r) => r.deviceId === id)!.state).toBe(
      'healthy',
    );
  });

  it('a retry is a new attempt: the device may then succeed', () => {
    const p = policy({ retries: { failed: 1 } });
    let { s } = tick(p, snapshot(p, fleet(1)), T0);
    s = report(s, 'd000', 'failed', T0 + 1);
    const retried = tick(p, s, T0 + 2);
    s = retried.s;
    expect(retried.d.map((x) => x.type)).toEqual(['retry', 'offer']);
    s = report(s, 'd000', 'healthy', T0 + 3);
    expect(s.deployments[0]).toMatchObject({ state: 'healthy', attempts: 2 });
  });
});

describe('abort: devices stopped in flight are aborted, not failed', () => {
  it('the cancellation a stopped device reports does not inflate the failure count', () => {
    const p = policy({ maxConcurrent: 2, phases: [{ errorThreshold: 100 }] });
    let { s } = tick(p, snapshot(p, fleet(4)), T0);
    const offered = s.deployments.filter((r) => r.state === 'offered').map((r) => r.deviceId);
    s = report(s, offered[1]!, 'download-progress', T0 + 1);
    s = { ...s, runtime: abortRollout(p, s.runtime, T0 + 2) };
    ({ s } = tick(p, s, T0 + 3));
    // The agents stop and say why: FLOTILLA_ERR_AGENT_CANCELLED arrives as `failed`.
    for (const id of offered) s = report(s, id, 'failed', T0 + 4);
    expect(offered.map((id) => s.deployments.find((r) => r.deviceId === id)!.state)).toEqual([
      'aborted',
      'aborted',
    ]);
    expect(summarize(p, s, T0 + 4).totals).toMatchObject({ failed: 0, aborted: 2, cancelled: 2 });
  });

  it('a device past the point of no return when the cancel came is believed healthy on the release', () => {
    const p = policy();
    let { s } = tick(p, snapshot(p, fleet(1)), T0);
    s = { ...s, runtime: abortRollout(p, s.runtime, T0 + 1) };
    ({ s } = tick(p, s, T0 + 2));
    expect(s.deployments[0]!.state).toBe('aborted');
    expect(report(s, 'd000', 'healthy', T0 + 3, '1.0.0').deployments[0]!.state).toBe('aborted');
    expect(report(s, 'd000', 'healthy', T0 + 3).deployments[0]!.state).toBe('healthy');
  });
});

describe('a static rollout that can no longer succeed ends failed', () => {
  it('ends failed when every device failed under the error threshold (it stayed running for ever)', () => {
    const p = policy({ phases: [{ errorThreshold: 100 }] });
    let { s } = tick(p, snapshot(p, fleet(3)), T0);
    for (const id of inPhase(s, 0)) s = report(s, id, 'failed', T0 + 1);
    const ended = tick(p, s, T0 + 2);
    s = ended.s;
    expect(ended.d).toEqual([
      { type: 'fail', failure: { phase: 0, healthy: 0, total: 3, successThreshold: 100 } },
    ]);
    expect(s.runtime).toMatchObject({ status: 'failed', finishedAt: T0 + 2 });
    expect(summarize(p, s, T0 + 2)).toMatchObject({
      status: 'failed',
      failure: { at: T0 + 2, phase: 0, healthy: 0, total: 3 },
    });
    expect(decide(p, s, T0 + 3)).toEqual([]);
    expect(() => pauseRollout(s.runtime, T0 + 3)).toThrow(
      expect.objectContaining({ code: 'FLOTILLA_ERR_ROLLOUT_STATE' }),
    );
  });

  it('a short-fallen canary phase ends it too: later phases never start', () => {
    const p = policy({ phases: [{ count: 2, successThreshold: 100, errorThreshold: 50 }, {}] });
    let { s } = tick(p, snapshot(p, fleet(6)), T0);
    const [a, b] = inPhase(s, 0) as [string, string];
    s = report(report(s, a, 'healthy', T0 + 1), b, 'rolled-back', T0 + 1);
    const { d } = tick(p, s, T0 + 2);
    expect(ofType(d, 'fail')).toHaveLength(1);
    expect(ofType(d, 'phase-started')).toEqual([]);
  });

  it('keeps running while a failure can still be retried or a device has not been offered', () => {
    const retrying = policy({ phases: [{ errorThreshold: 100 }], retries: { failed: 1 } });
    let { s } = tick(retrying, snapshot(retrying, fleet(2)), T0);
    for (const id of inPhase(s, 0)) s = report(s, id, 'failed', T0 + 1);
    expect(ofType(decide(retrying, s, T0 + 2), 'fail')).toEqual([]);

    const p = policy({ phases: [{ errorThreshold: 100 }] });
    ({ s } = tick(p, snapshot(p, fleet(2, { online: false })), T0));
    expect(s.deployments.every((r) => r.state === 'pending')).toBe(true);
    expect(decide(p, s, T0 + 1)).toEqual([]);
  });

  it('a dynamic rollout keeps taking joiners instead', () => {
    const p = policy({ target: { membership: 'dynamic' }, phases: [{ errorThreshold: 100 }] });
    let { s } = tick(p, snapshot(p, fleet(2)), T0);
    for (const id of inPhase(s, 0)) s = report(s, id, 'failed', T0 + 1);
    expect(ofType(decide(p, s, T0 + 2), 'fail')).toEqual([]);
  });
});

describe('policy.target defaults to every device', () => {
  it('accepts a policy without target (the docs say it defaults to any) and targets the whole fleet', () => {
    const p = normalizePolicy({ phases: [{}] });
    expect(p.target).toEqual({ membership: 'static', joinPhase: 'current' });
    const { s } = tick(p, snapshot(p, fleet(4)), T0);
    expect(s.deployments).toHaveLength(4);
  });
});

describe('maintenance-window wait is visible', () => {
  // T0 is Monday 10:00 UTC; the only window opens Tuesday 02:00 for an hour.
  const windows = [{ days: ['tue'], start: '02:00', durationMinutes: 60 }];

  it('shows waiting (not running) while devices wait for a window, running again when it opens', () => {
    const p = policy({ maintenanceWindows: windows });
    let { s, d } = tick(p, snapshot(p, fleet(2)), T0);
    expect(d.map((x) => x.type)).toContain('wait-window');
    expect(s.runtime.status).toBe('waiting');
    expect(summarize(p, s, T0).status).toBe('waiting');
    expect(decide(p, s, T0 + MIN)).toEqual([]);
    const tuesday = T0 + 16.5 * 60 * MIN;
    ({ s, d } = tick(p, s, tuesday));
    expect(d.map((x) => x.type)).toEqual(['stop-waiting', 'offer', 'offer']);
    expect(s.runtime.status).toBe('running');
  });

  it('an operator can pause a waiting rollout and resume it', () => {
    const p = policy({ maintenanceWindows: windows });
    let { s } = tick(p, snapshot(p, fleet(1)), T0);
    s = { ...s, runtime: pauseRollout(s.runtime, T0 + 1) };
    s = { ...s, runtime: resumeRollout(p, s) };
    ({ s } = tick(p, s, T0 + 2));
    expect(s.runtime.status).toBe('waiting');
  });
});

describe('downgrades and security floors', () => {
  const mixed = () => [
    device('old', { currentVersion: '1.0.0' }),
    device('newer', { currentVersion: '1.2.0' }),
    device('pre', { currentVersion: '1.1.0-rc.1' }),
    device('floor', { currentVersion: '1.0.0', securityVersion: 5 }),
  ];
  const at = (p: ReturnType<typeof policy>) => {
    const s = snapshot(p, mixed());
    return tick(p, { ...s, release: { ...s.release, securityVersion: 3 } }, T0).s;
  };

  it('never takes a device running a newer version down to the release (1.1.0 onto 1.2.0)', () => {
    const s = at(policy());
    expect(s.deployments.map((r) => r.deviceId).sort()).toEqual(['old', 'pre']);
  });

  it('downgrades with allowDowngrade, but never below a device security floor', () => {
    const s = at(policy({ allowDowngrade: { reason: 'TEST-ONLY 1.2.0 bricks the modem' } }));
    expect(s.deployments.map((r) => r.deviceId).sort()).toEqual(['newer', 'old', 'pre']);
  });

  it('refuses allowDowngrade without a reason', () => {
    expect(() => policy({ allowDowngrade: {} })).toThrow(
      expect.objectContaining({ code: 'FLOTILLA_ERR_ROLLOUT_POLICY_INVALID' }),
    );
    expect(() => policy({ allowDowngrade: { reason: '   ' } })).toThrow(
      expect.objectContaining({ code: 'FLOTILLA_ERR_ROLLOUT_POLICY_INVALID' }),
    );
  });
});

describe('a rollout over a large fleet', () => {
  it('starts over 300,000 devices in one pass (the decisions of a pass are not one argument list)', () => {
    const p = policy({ phases: [{ percent: 1 }, {}] });
    const decisions = decide(p, snapshot(p, fleet(300_000)), T0);
    expect(ofType(decisions, 'rollout-started')).toHaveLength(1);
    expect(ofType(decisions, 'assign')).toHaveLength(300_000);
  }, 120_000);
});
