import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DeviceEventMessage, EventKind } from '@flotilla/protocol';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { UrlSigner } from '../../src/artifacts/url-signer.js';
import { OfferBuilder } from '../../src/deploy/offers.js';
import { RolloutRunner } from '../../src/deploy/rollout-runner.js';
import { EventBus } from '../../src/events/bus.js';
import { type Report, ReportIngestor } from '../../src/ingest/report-ingestor.js';
import { loadOrCreateServerKeys } from '../../src/keys/server-keys.js';
import { resolveLimits } from '../../src/limits.js';
import { createMetrics, type Metrics } from '../../src/metrics.js';
import { initialRuntime, normalizePolicy } from '../../src/rollout/index.js';
import type { DeploymentRow } from '../../src/store/repos/deployments.js';
import { addDevice, addRelease, type OpenStore, refuseUpdatesOf, sha } from './fixtures.js';

// Events that name a deployment move it through the rollout runner's event hook inside the
// report batch (on PostgreSQL a whole run of them at once, elsewhere one by one): the deployments
// must end exactly as events applied one at a time in arrival order would leave them, and the
// bookkeeping after the commit (outcome metrics) must count only what committed, once.

const RELEASE = '1.1.0';

/** A device's event for its deployment; `id` makes the event id (resends repeat it). */
const depEvent = (
  id: string,
  kind: EventKind,
  deploymentId: string | null,
  over: Partial<DeviceEventMessage> = {},
): DeviceEventMessage => ({
  schemaVersion: 1,
  type: 'event',
  eventId: id,
  seq: 1,
  ts: '2026-01-01T00:00:00Z',
  kind,
  deploymentId,
  ...(kind === 'healthy' ? { version: RELEASE } : {}),
  ...over,
});

/** What an agent reports from an accepted offer to a healthy boot (progress more than once). */
const INSTALL: EventKind[] = [
  'offer-accepted',
  'download-progress',
  'download-progress',
  'downloaded',
  'install-progress',
  'installed',
  'install-progress', // late: progress never goes backwards
  'rebooting',
  'healthy',
];

/**
 * A store with `devices` accepted devices, each with a deployment offered by one running rollout,
 * and the server's own rollout runner hooked to a report ingestor over it (the runner stopped: no
 * engine pass moves the deployments meanwhile). `clock` is the ingestor's time.
 */
async function rolloutStorm(open: OpenStore, devices: string[]) {
  const { store: s } = await open();
  await addRelease(s, RELEASE, sha('b1'), 1);
  const release = (await s.releases.get(RELEASE))!;
  const policy = normalizePolicy({ target: {}, phases: [{}] });
  await s.rollouts.insert({
    id: 'r1',
    name: 'TEST-ONLY r1',
    releaseId: release.id,
    policy,
    runtime: { ...initialRuntime(policy), status: 'running' },
    createdBy: 'token:ci(t1)',
    now: 1,
  });
  const deps = new Map<string, string>();
  for (const id of devices) {
    await addDevice(s, id);
    const dep = (await s.deployments.get(await s.deployments.assign('r1', id, 0, '1.0.0', 2)))!;
    await s.deployments.save({ ...dep, state: 'offered', attempts: 1, offeredAt: 10, updatedAt: 10 });
    deps.set(id, dep.id);
  }
  const keysDir = mkdtempSync(join(tmpdir(), 'flotilla-contract-keys-'));
  const metrics = createMetrics();
  const limits = resolveLimits();
  const log = pino({ level: 'silent' });
  const offers = new OfferBuilder(
    s,
    loadOrCreateServerKeys(keysDir, { devKeys: true }),
    limits,
    { publicUrl: () => 'http://127.0.0.1:1', artifactBaseUrl: () => 'http://127.0.0.1:1' },
    UrlSigner.fromSecret(randomBytes(32)),
  );
  const runner = new RolloutRunner(s, () => null, offers, new EventBus(), log, metrics, limits);
  runner.stop();
  const clock = { now: 100 };
  const ingestor = new ReportIngestor(s, limits, log, metrics, () => clock.now);
  /** Event ids whose after-commit work ran (a hook registered before the runner's). */
  const committed: string[] = [];
  ingestor.onEvent(async (_tx, events) => () => committed.push(...events.map((e) => e.event.eventId)));
  ingestor.onEvent((tx, events, now) => runner.applyEvents(tx, events, now));
  ingestor.onApplied(() => runner.afterReports());
  let fresh: boolean[] = [];
  ingestor.onApplied((applied) => fresh.push(...applied.map((a) => a.fresh)));
  /** Writes reports as one batch; returns whether each changed something. */
  const batch = async (reports: Report[]) => {
    fresh = [];
    const acks: (Error | null | undefined)[] = [];
    for (const r of reports) expect(ingestor.submit(r, (err) => acks.push(err))).toBe(true);
    await ingestor.flush();
    expect(acks).toEqual(reports.map(() => null));
    return fresh;
  };
  const dep = async (deviceId: string): Promise<DeploymentRow> =>
    (await s.deployments.get(deps.get(deviceId)!))!;
  const done = async () => {
    await ingestor.close();
    rmSync(keysDir, { recursive: true, force: true });
  };
  return { s, deps, dep, batch, clock, metrics, committed, done };
}

const count = async (metrics: Metrics, name: 'updates' | 'reportsDuplicate' | 'reportsDropped', label = {}) =>
  (await metrics[name].get()).values
    .filter((v) => Object.entries(label).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x))
    .reduce((n, v) => n + v.value, 0);

/** Waits (bounded) until the outcome metrics counted `n` healthy updates; they count after the commit. */
async function healthyCounted(metrics: Metrics, n: number): Promise<number> {
  const end = Date.now() + 20_000;
  let seen = await count(metrics, 'updates', { result: 'healthy' });
  while (seen < n && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 20));
    seen = await count(metrics, 'updates', { result: 'healthy' });
  }
  return seen;
}

export function deploymentEventCases(open: OpenStore): void {
  describe('deployment events in a report batch', () => {
    it("moves several devices' deployments through their whole install sequence in one batch, in arrival order", async () => {
      const devices = ['d1', 'd2', 'd3', 'fails-last', 'heals-last'];
      const t = await rolloutStorm(open, devices);
      const reports: Report[] = [];
      // Interleaved as a storm delivers them: every device's next event, device after device.
      for (const [k, kind] of INSTALL.entries())
        for (const id of ['d1', 'd2', 'd3'])
          reports.push({
            deviceId: id,
            channel: 'events',
            message: depEvent(`${id}-${k}-${kind}`, kind, t.deps.get(id)!),
          });
      // Order decides: a failure before `healthy` is final; `healthy` before a failure stays.
      const reason = { code: 'E_HOOK', message: 'TEST-ONLY post-install hook failed' };
      for (const [id, kinds] of [
        ['fails-last', ['installed', 'failed', 'healthy']],
        ['heals-last', ['installed', 'healthy', 'failed']],
      ] as const)
        for (const kind of kinds)
          reports.push({
            deviceId: id,
            channel: 'events',
            message: depEvent(`${id}-${kind}`, kind, t.deps.get(id)!, kind === 'failed' ? { reason } : {}),
          });
      expect(await t.batch(reports)).toEqual(reports.map(() => true));
      for (const id of ['d1', 'd2', 'd3', 'heals-last'])
        expect(await t.dep(id)).toMatchObject({ state: 'healthy', failureReason: null, updatedAt: 100 });
      expect(await t.dep('fails-last')).toMatchObject({
        state: 'failed',
        failureReason: 'E_HOOK: TEST-ONLY post-install hook failed',
      });
      expect(await t.s.events.count()).toBe(reports.length);
      expect(await healthyCounted(t.metrics, 4)).toBe(4);
      expect(await count(t.metrics, 'updates', { result: 'failed' })).toBe(1);
      expect(t.committed.sort()).toEqual(
        reports.map((r) => (r.channel === 'events' ? r.message.eventId : '')).sort(),
      );
      await t.done();
    });

    it('moves a deployment once for an event sent twice in one batch and again in the next', async () => {
      const t = await rolloutStorm(open, ['d1', 'd2']);
      const healthy = (id: string): Report => ({
        deviceId: id,
        channel: 'events',
        message: depEvent(`${id}-healthy`, 'healthy', t.deps.get(id)!),
      });
      expect(await t.batch([healthy('d1'), healthy('d2'), healthy('d1')])).toEqual([true, true, false]);
      t.clock.now = 200;
      expect(await t.batch([healthy('d1')])).toEqual([false]);
      expect(await t.dep('d1')).toMatchObject({ state: 'healthy', updatedAt: 100 });
      expect(await t.dep('d2')).toMatchObject({ state: 'healthy', updatedAt: 100 });
      expect(await t.s.events.count('d1')).toBe(1);
      expect(await count(t.metrics, 'reportsDuplicate')).toBe(2);
      expect(await healthyCounted(t.metrics, 2)).toBe(2);
      expect(t.committed.sort()).toEqual(['d1-healthy', 'd2-healthy']);
      await t.done();
    });

    it('stores events for unknown, finished or foreign deployments without moving any, next to good ones', async () => {
      const t = await rolloutStorm(open, ['good', 'finished', 'other']);
      const finished = await t.dep('finished');
      await t.s.deployments.save({
        ...finished,
        state: 'failed',
        failureReason: 'E: TEST-ONLY',
        updatedAt: 20,
      });
      const ev = (deviceId: string, eventId: string, kind: EventKind, deploymentId: string): Report => ({
        deviceId,
        channel: 'events',
        message: depEvent(eventId, kind, deploymentId),
      });
      const reports = [
        ev('good', 'g1', 'installed', t.deps.get('good')!),
        ev('good', 'g2', 'healthy', 'dep_no_such_deployment'),
        ev('finished', 'f1', 'healthy', t.deps.get('finished')!),
        // Another device's deployment, and the rollback offer of one that has none.
        ev('good', 'g3', 'healthy', t.deps.get('other')!),
        ev('other', 'o1', 'healthy', `${t.deps.get('other')!}-rb`),
        // A healthy naming another release is not believed.
        {
          deviceId: 'other',
          channel: 'events',
          message: depEvent('o2', 'healthy', t.deps.get('other')!, { version: '9.9.9' }),
        },
        ev('good', 'g4', 'healthy', t.deps.get('good')!),
      ] satisfies Report[];
      expect(await t.batch(reports)).toEqual(reports.map(() => true));
      expect(await t.dep('good')).toMatchObject({ state: 'healthy', updatedAt: 100 });
      expect(await t.dep('finished')).toMatchObject({
        state: 'failed',
        failureReason: 'E: TEST-ONLY',
        updatedAt: 20,
      });
      expect(await t.dep('other')).toMatchObject({ state: 'offered', updatedAt: 10 });
      expect(await t.s.events.count()).toBe(reports.length);
      expect(await healthyCounted(t.metrics, 1)).toBe(1);
      await t.done();
    });

    it('drops alone an event whose device or deployment the store refuses; the rest of the batch moves and counts once', async () => {
      const t = await rolloutStorm(open, ['good', 'bad-device', 'bad-dep', 'late']);
      await refuseUpdatesOf(t.s, 'bad-device');
      await refuseUpdatesOf(t.s, t.deps.get('bad-dep')!, 'deployments');
      // One batch per refusal: a refused device row fails the run before its deployments are
      // read, a refused deployment fails it in the event hook (after an earlier hook's turn).
      for (const [bad, good] of [
        ['bad-dep', 'good'],
        ['bad-device', 'late'],
      ]) {
        const reports: Report[] = [];
        const expected: boolean[] = [];
        for (const kind of ['offer-accepted', 'installed', 'healthy'] as const)
          for (const id of [good!, bad!]) {
            reports.push({
              deviceId: id,
              channel: 'events',
              message: depEvent(`${id}-${kind}`, kind, t.deps.get(id)!),
            });
            // bad-dep's offer-accepted moves nothing (already offered), so nothing refuses it.
            expected.push(id === good || (id === 'bad-dep' && kind === 'offer-accepted'));
          }
        expect(await t.batch(reports)).toEqual(expected);
      }
      for (const id of ['good', 'late']) expect(await t.dep(id)).toMatchObject({ state: 'healthy' });
      for (const id of ['bad-device', 'bad-dep'])
        expect(await t.dep(id)).toMatchObject({ state: 'offered', updatedAt: 10 });
      expect(await t.s.events.count('bad-dep')).toBe(1);
      expect(await t.s.events.count('bad-device')).toBe(0);
      expect(await count(t.metrics, 'reportsDropped')).toBe(5);
      expect(await healthyCounted(t.metrics, 2)).toBe(2);
      // After-commit work ran once for each event stored, none for a run undone.
      const stored = [];
      for (const id of ['good', 'bad-device', 'bad-dep', 'late'])
        stored.push(...(await t.s.events.byDeployment(t.deps.get(id)!)).map((e) => e.eventId));
      expect(t.committed.sort()).toEqual(stored.sort());
      await t.done();
    });
  });
}
