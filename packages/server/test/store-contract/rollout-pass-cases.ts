import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DeviceCommand, Offer } from '@flotilla/protocol';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { UrlSigner } from '../../src/artifacts/url-signer.js';
import { OfferBuilder } from '../../src/deploy/offers.js';
import { AUDITED, RolloutRunner } from '../../src/deploy/rollout-runner.js';
import { EventBus } from '../../src/events/bus.js';
import { loadOrCreateServerKeys } from '../../src/keys/server-keys.js';
import { resolveLimits } from '../../src/limits.js';
import { createMetrics } from '../../src/metrics.js';
import type { DeviceTransport } from '../../src/mqtt/transport.js';
import {
  applyDecisions,
  type DeploymentRecord,
  decide,
  initialRuntime,
  normalizePolicy,
} from '../../src/rollout/index.js';
import { type DeploymentRow, ROLLBACK_SUFFIX } from '../../src/store/repos/deployments.js';
import type { Store } from '../../src/store/store.js';
import { addRelease, BIG_SIZE, deltaDescriptor, type OpenStore, sha, stateReport } from './fixtures.js';

// A rollout pass writes its records in multi-row statements, chunked under PostgreSQL's 65,535
// parameters per statement. These cases hold them to what one statement per row stores.

/** More rows than one statement may bind on PostgreSQL (12 parameters a created row, 9 a saved one). */
const OVER_LIMIT = 7_500;
const T0 = Date.parse('2026-03-02T10:00:00Z');
const ROLLOUT = 'ro_pass';

const dir = mkdtempSync(join(tmpdir(), 'flotilla-pass-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
// TEST-ONLY keys and URL secret, shared by both stores of a comparison (same signatures).
const keys = loadOrCreateServerKeys(join(dir, 'keys'), { devKeys: true });
const signer = UrlSigner.fromSecret(Buffer.alloc(32, 7));
const limits = resolveLimits();

/** Accepted devices `dev-00000`…, on rpi4, in one transaction. */
async function addDevices(s: Store, n: number): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => `dev-${String(i).padStart(5, '0')}`);
  await s.tx(async (tx) => {
    for (const id of ids)
      await tx.devices.insert({
        id,
        publicKey: 'ab'.repeat(32),
        status: 'accepted',
        hardware: 'rpi4',
        now: 1,
      });
  });
  return ids;
}

/** A rollout of release 1.1.0 to every device, not started. */
async function addRollout(s: Store, id: string, over: Record<string, unknown>, now: number): Promise<void> {
  const policy = normalizePolicy({ target: {}, phases: [{}], ...over });
  await s.rollouts.insert({
    id,
    name: id,
    releaseId: '1.1.0',
    policy,
    runtime: initialRuntime(policy),
    createdBy: 'TEST-ONLY',
    now,
  });
}

/** A stored row as compared across stores and rollouts: without its ids. */
const content = ({ id: _id, rolloutId: _r, ...rest }: DeploymentRow) => rest;

/** Records of every shape a pass stores: nulls, an offer, a failure, a rollback as JSON. */
function records(ids: string[], now: number): DeploymentRecord[] {
  return ids.map((deviceId, i) => ({
    deviceId,
    phase: i % 3,
    state: (['pending', 'offered', 'failed', 'healthy'] as const)[i % 4]!,
    attempts: i % 5,
    offeredAt: i % 2 === 0 ? null : now - i,
    updatedAt: now + (i % 7),
    failureReason: i % 4 === 2 ? `TEST-ONLY failed ünïcode ${i}` : null,
    fromVersion: i % 6 === 0 ? null : '1.0.0',
    rollback:
      i % 9 === 0
        ? { toVersion: '1.0.0', state: 'offered', offeredAt: now, updatedAt: now, failureReason: null }
        : null,
  }));
}

/** A transport that records the commands sent; `online` devices count as connected. */
function recordingTransport(online: Set<string>) {
  const sent: { deviceId: string; command: DeviceCommand }[] = [];
  const transport: DeviceTransport = {
    kind: 'embedded',
    publishCommand: async (deviceId, command) => {
      sent.push({ deviceId, command });
    },
    isConnected: (id) => online.has(id),
    close: async () => undefined,
  };
  return { transport, sent };
}

/**
 * A store with `n` devices on release 1.0.0 (two images of it: only the first has a delta to
 * 1.1.0, its descriptor due for renewal), every third one online, and a runner over it.
 */
async function passSetup(open: OpenStore, n: number, clock: () => number) {
  const { store: s } = await open();
  await addRelease(s, '1.0.0', sha('a1'), 1);
  await addRelease(s, '1.1.0', sha('b2'), 1);
  const ids = await addDevices(s, n);
  await s.devices.applyStates(
    ids.map((id, i) => ({
      id,
      message: stateReport(1, { imageSha256: i % 2 === 0 ? sha('a1') : sha('c3') }),
    })),
    1,
  );
  await s.artifacts.add(sha('de'), BIG_SIZE, 'delta', 1);
  await s.deltas.queue(sha('a1'), sha('b2'), 1);
  await s.deltas.setReady(
    sha('a1'),
    sha('b2'),
    {
      deltaSha256: sha('de'),
      deltaSize: BIG_SIZE,
      codec: 'zstd-patch',
      descriptor: deltaDescriptor(sha('a1'), sha('b2'), '2026-03-03T00:00:00Z'),
    },
    1,
  );
  const online = new Set(ids.filter((_, i) => i % 3 === 0));
  const { transport, sent } = recordingTransport(online);
  const offers = new OfferBuilder(
    s,
    keys,
    limits,
    { publicUrl: () => 'http://127.0.0.1:1', artifactBaseUrl: () => 'http://127.0.0.1:1' },
    signer,
  );
  const log = pino({ level: process.env.TEST_LOG ?? 'silent' });
  const runner = new RolloutRunner(
    s,
    () => transport,
    offers,
    new EventBus(),
    log,
    createMetrics(),
    limits,
    clock,
  );
  // Stored directly: `create` would also schedule a pass of its own.
  await addRollout(
    s,
    ROLLOUT,
    {
      phases: [{ percent: 10 }, { percent: 30 }, {}],
      maxConcurrent: 1000,
      deviceTimeoutSeconds: 60,
      retries: { timedOut: 1 },
    },
    clock(),
  );
  return { s, runner, offers, sent };
}

/**
 * The pass as it was written before batching, one statement per row: the reference the
 * batched pass must match. Returns the offers' signed documents it built.
 */
async function passOneByOne(
  s: Store,
  runner: RolloutRunner,
  offers: OfferBuilder,
  now: number,
): Promise<Offer[]> {
  const built: Offer[] = [];
  await s.tx(async (tx) => {
    const row = (await tx.rollouts.get(ROLLOUT))!;
    const snap = await runner.snapshot(tx, row);
    const decisions = decide(row.policy, snap, now);
    const next = applyDecisions(snap, decisions, now);
    await tx.rollouts.setRuntime(row.id, next.runtime, now);
    const existing = new Map((await tx.deployments.forRollout(row.id)).map((d) => [d.deviceId, d]));
    const prev = new Map(snap.deployments.map((d) => [d.deviceId, d]));
    for (const rec of next.deployments) {
      let dep = existing.get(rec.deviceId);
      if (!dep) {
        const depId = await tx.deployments.assign(row.id, rec.deviceId, rec.phase, rec.fromVersion, now);
        dep = (await tx.deployments.get(depId))!;
        existing.set(rec.deviceId, dep);
      }
      if (prev.get(rec.deviceId) !== rec) await tx.deployments.save({ ...dep, ...rec });
    }
    const release = (await tx.releases.get(row.releaseId))!;
    for (const d of decisions) {
      if (d.type === 'offer' || d.type === 'rollback-offer') {
        const dep = existing.get(d.deviceId)!;
        const rel = d.type === 'offer' ? release : await tx.releases.get(d.toVersion);
        const device = await tx.devices.get(d.deviceId);
        const offer = await offers.build(
          {
            deploymentId: d.type === 'offer' ? dep.id : `${dep.id}${ROLLBACK_SUFFIX}`,
            ...(d.type === 'offer' ? { attempt: d.attempt } : {}),
            deviceId: d.deviceId,
            release: rel!,
            deviceImageSha256: device?.imageSha256 ?? null,
            now,
          },
          tx,
        );
        built.push(offer.signed);
      } else if (AUDITED.has(d.type)) {
        await tx.audit.record('rollout-engine', `rollout.${d.type}`, row.id, { ...d }, now);
      }
    }
  });
  return built;
}

/** What a store holds after passes, without ids: records by device, engine audit, runtime, delta. */
async function outcome(s: Store) {
  const deployments = await s.deployments.forRollout(ROLLOUT);
  const audit = (await s.audit.query({ actor: 'rollout-engine' }, 1000)).reverse();
  return {
    deployments: deployments.map(content),
    audit: audit.map(({ id: _id, ...rest }) => rest),
    runtime: (await s.rollouts.get(ROLLOUT))!.runtime,
    delta: (await s.deltas.get(sha('a1'), sha('b2')))!.descriptor,
    ids: new Map(deployments.map((d) => [d.id, d.deviceId])),
  };
}

/** An offer without its deployment id (random per store), with the device that id names. */
const offerContent = (o: Offer, ids: Map<string, string>) => {
  const { deploymentId, ...rest } = o;
  const rollback = deploymentId.endsWith(ROLLBACK_SUFFIX);
  return {
    ...rest,
    device: ids.get(rollback ? deploymentId.slice(0, -ROLLBACK_SUFFIX.length) : deploymentId),
  };
};
const byDevice = <T extends { deviceId: string }>(list: T[]) =>
  [...list].sort((a, b) => (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0));

export function rolloutPassCases(open: OpenStore): void {
  describe('rollout pass writes', () => {
    it('creates deployments in batches past the parameter limit, each as assign then save would store it', async () => {
      const { store: s } = await open();
      const ids = await addDevices(s, OVER_LIMIT);
      await addRelease(s, '1.1.0', sha('b2'), 1);
      await addRollout(s, 'ro_batch', {}, 1);
      const recs = records(ids, T0);
      // One device already has a deployment in the rollout: it stays as it was.
      await s.deployments.assign('ro_batch', ids[5]!, 0, null, 1);
      const before = (await s.deployments.find('ro_batch', ids[5]!))!;
      const created = await s.deployments.createMany('ro_batch', recs, T0);
      expect(created).toHaveLength(OVER_LIMIT - 1);
      const stored = await s.deployments.forRollout('ro_batch');
      expect(stored.find((d) => d.deviceId === ids[5])).toEqual(before);
      const others = stored.filter((d) => d.deviceId !== ids[5]);
      expect(byDevice(others.map(content))).toEqual(
        recs.filter((r) => r.deviceId !== ids[5]).map((r) => ({ ...r, created: T0 })),
      );
      expect(byDevice(created)).toEqual(byDevice(others));
      expect(new Set(others.map((d) => d.id)).size).toBe(OVER_LIMIT - 1);
    }, 240_000);

    it('saves deployments in batches past the parameter limit, each as save would', async () => {
      const { store: s } = await open();
      const ids = await addDevices(s, OVER_LIMIT);
      await addRelease(s, '1.1.0', sha('b2'), 1);
      await addRollout(s, 'ro_batch', {}, 1);
      const first = new Map(
        (await s.deployments.createMany('ro_batch', records(ids, 1), 1)).map((d) => [d.deviceId, d]),
      );
      // New values for every device but the last, given in reverse order (saveMany sorts itself).
      const later = records([...ids].reverse(), T0).slice(0, -1);
      await s.deployments.saveMany(later.map((rec) => ({ ...first.get(rec.deviceId)!, ...rec })));
      const expected = byDevice([
        ...later.map((rec) => ({ ...first.get(rec.deviceId)!, ...rec })),
        first.get(ids[0]!)!,
      ]);
      expect(byDevice(await s.deployments.forRollout('ro_batch'))).toEqual(expected);
    }, 240_000);

    it('records audit entries in batches, in their order', async () => {
      const { store: s } = await open();
      const notes = Array.from({ length: 2_500 }, (_, i) => ({
        actor: 'rollout-engine',
        action: `rollout.step-${i % 4}`,
        target: i % 10 === 0 ? null : `ro_${i}`,
        detail: { i, text: 'TEST-ONLY “quoted”' },
      }));
      await s.audit.recordMany(notes, T0);
      await s.audit.recordMany([], T0);
      const stored = (await s.audit.query({ actor: 'rollout-engine' }, 5_000)).reverse();
      expect(stored.map(({ id: _id, ...rest }) => rest)).toEqual(notes.map((n) => ({ ts: T0, ...n })));
    }, 120_000);

    it('stores a pass of thousands of devices as the one-statement-per-row pass did, offers included', async () => {
      let now = T0;
      const clock = () => now;
      const n = 3_000;
      const batched = await passSetup(open, n, clock);
      const reference = await passSetup(open, n, clock);
      const sentOffers = () =>
        byDevice(batched.sent.splice(0)).flatMap((c) =>
          c.command.type === 'offer' ? [c.command.offer.signed] : [],
        );
      // First pass: every device assigned, the first phase's online devices offered (half with a
      // delta whose descriptor is renewed once). Then, after the per-device timeout, the offered
      // ones time out and are offered again (records saved, not created).
      for (const at of [T0, T0 + 61_000]) {
        now = at;
        const decisions = await batched.runner.tick(ROLLOUT);
        expect(decisions.length).toBeGreaterThan(0);
        const offered = decisions.filter((d) => d.type === 'offer' || d.type === 'rollback-offer').length;
        const deadline = Date.now() + 60_000;
        while (batched.sent.length < offered && Date.now() < deadline)
          await new Promise((r) => setImmediate(r));
        const mine = await outcome(batched.s);
        const built = await passOneByOne(reference.s, reference.runner, reference.offers, at);
        const theirs = await outcome(reference.s);
        expect(mine.deployments).toEqual(theirs.deployments);
        expect(mine.audit).toEqual(theirs.audit);
        expect(mine.runtime).toEqual(theirs.runtime);
        expect(mine.delta).toEqual(theirs.delta);
        const sent = sentOffers();
        expect(sent).toHaveLength(offered);
        // Both kinds of offer: from the image with a delta, and from the one without.
        expect(sent.filter((o) => o.delta).length).toBeGreaterThan(0);
        expect(sent.filter((o) => !o.delta).length).toBeGreaterThan(0);
        expect(sent.map((o) => offerContent(o, mine.ids))).toEqual(
          byDevice(built).map((o) => offerContent(o, theirs.ids)),
        );
      }
      const last = await outcome(batched.s);
      expect(last.deployments).toHaveLength(n);
      expect(
        last.deployments.filter((d) => d.state === 'offered' && d.attempts === 2).length,
      ).toBeGreaterThan(0);
      expect(last.audit.length).toBeGreaterThan(1);
    }, 300_000);
  });
}
