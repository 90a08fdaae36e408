import { describe, expect, it } from 'vitest';
import { initialRuntime, normalizePolicy, type RolloutRuntime } from '../../src/rollout/index.js';
import { claimNextDelta, completeDeltaClaim, renewDeltaClaim } from '../../src/store/sql-delta-claims.js';
import type { Store } from '../../src/store/store.js';
import {
  addDevice,
  addRelease,
  BIG_SIZE,
  CONFLICT,
  deltaDescriptor,
  envelope,
  manifest,
  type OpenStore,
  sha,
} from './fixtures.js';

// The store contract for what the server delivers: artifacts, releases and their channels, the
// delta cache and its build claims, rollouts and the deployments of each device.

const policy = () => normalizePolicy({ target: {}, phases: [{ percent: 10 }, {}], maxConcurrent: 10 });

async function addRollout(s: Store, id: string, releaseId: string, now: number, runtime?: RolloutRuntime) {
  const p = policy();
  await s.rollouts.insert({
    id,
    name: `TEST-ONLY ${id}`,
    releaseId,
    policy: p,
    runtime: runtime ?? initialRuntime(p),
    createdBy: 'token:ci(t1)',
    now,
  });
}

export function deliveryCases(open: OpenStore): void {
  describe('artifacts', () => {
    it('adds an artifact once, lists the oldest first and totals sizes above 2^32 exactly', async () => {
      const { store: s } = await open();
      await s.artifacts.add(sha('a1'), BIG_SIZE, 'image', 20);
      await s.artifacts.add(sha('a1'), 1, 'delta', 30); // the same bytes again: the first row stays
      await s.artifacts.add(sha('a2'), BIG_SIZE, 'image', 10);
      await s.artifacts.add(sha('a3'), 7, 'sbom', 15);
      expect(await s.artifacts.get(sha('a1'))).toEqual({
        sha256: sha('a1'),
        size: BIG_SIZE,
        kind: 'image',
        created: 20,
      });
      expect((await s.artifacts.list()).map((a) => a.sha256)).toEqual([sha('a2'), sha('a3'), sha('a1')]);
      const totals = (await s.artifacts.totals()).sort((a, b) => a.kind.localeCompare(b.kind));
      expect(totals).toEqual([
        { kind: 'image', count: 2, bytes: 2 * BIG_SIZE },
        { kind: 'sbom', count: 1, bytes: 7 },
      ]);
      await s.artifacts.delete(sha('a3'));
      expect(await s.artifacts.get(sha('a3'))).toBeUndefined();
    });

    it('refuses to delete an artifact a release still names', async () => {
      const { store: s } = await open();
      await addRelease(s, '1.0.0', sha('a1'), 1);
      await expect(s.artifacts.delete(sha('a1'))).rejects.toMatchObject(CONFLICT);
      expect(await s.artifacts.get(sha('a1'))).toBeDefined();
    });
  });

  describe('releases', () => {
    it('reads a release back as stored: numbers, the compatible list and the signed manifest', async () => {
      const { store: s } = await open();
      const m = await addRelease(s, '1.0.0', sha('a1'), 100);
      const r = await s.releases.get('1.0.0');
      expect(r).toEqual({
        id: '1.0.0',
        name: m.name,
        version: '1.0.0',
        kind: 'release',
        securityVersion: 3,
        compatible: ['rpi4', 'rpi5'],
        imageSha256: sha('a1'),
        imageSize: BIG_SIZE,
        sbomSha256: sha('5b'),
        manifest: envelope(m),
        channels: [],
        created: 100,
      });
      expect(await s.releases.get('1.0.1')).toBeUndefined();
      expect((await s.releases.byVersion('1.0.0'))?.id).toBe('1.0.0');
    });

    it('finds the newest release of an image, and lists every release newest first', async () => {
      const { store: s } = await open();
      await addRelease(s, '1.0.0', sha('a1'), 100);
      await addRelease(s, '1.0.1', sha('a1'), 300); // rebuilt under a new version, same bytes
      await addRelease(s, '1.1.0', sha('a2'), 200);
      expect((await s.releases.byImage(sha('a1')))?.version).toBe('1.0.1');
      expect(await s.releases.byImage(sha('ff'))).toBeUndefined();
      expect((await s.releases.list()).map((r) => r.version)).toEqual(['1.0.1', '1.1.0', '1.0.0']);
    });

    it('puts a release in a channel once, lists its channels in promotion order and a channel newest promotion first', async () => {
      const { store: s } = await open();
      await addRelease(s, '1.0.0', sha('a1'), 1);
      await addRelease(s, '1.1.0', sha('a2'), 2);
      // Promoted to prod before dev was recorded: the channels still read dev → staging → prod.
      await s.releases.addToChannel('1.0.0', 'prod', 30);
      await s.releases.addToChannel('1.0.0', 'staging', 20);
      await s.releases.addToChannel('1.0.0', 'dev', 10);
      await s.releases.addToChannel('1.0.0', 'dev', 40); // again: kept once, first time kept
      await s.releases.addToChannel('1.1.0', 'dev', 15);
      expect((await s.releases.get('1.0.0'))?.channels).toEqual(['dev', 'staging', 'prod']);
      expect((await s.releases.list('dev')).map((r) => r.version)).toEqual(['1.1.0', '1.0.0']);
      expect((await s.releases.list('prod')).map((r) => [r.version, r.channels])).toEqual([
        ['1.0.0', ['dev', 'staging', 'prod']],
      ]);
      expect(await s.releases.list('staging')).toHaveLength(1);
    });

    it('refuses a second release of one version; the transaction that tried writes nothing', async () => {
      const { store: s } = await open();
      await addRelease(s, '1.0.0', sha('a1'), 1);
      await expect(
        s.tx(async (tx) => {
          await tx.artifacts.add(sha('a2'), 10, 'image', 2);
          const m = manifest('1.0.0', sha('a2'));
          await tx.releases.insert(m, envelope(m), 2);
        }),
      ).rejects.toMatchObject(CONFLICT);
      expect(await s.artifacts.get(sha('a2'))).toBeUndefined();
      expect((await s.releases.get('1.0.0'))?.imageSha256).toBe(sha('a1'));
    });

    it('prunes a release with its channel entries, leaving the others', async () => {
      const { store: s } = await open();
      await addRelease(s, '1.0.0', sha('a1'), 1);
      await addRelease(s, '1.1.0', sha('a2'), 2);
      await s.releases.addToChannel('1.0.0', 'dev', 3);
      await s.releases.addToChannel('1.1.0', 'dev', 4);
      await s.releases.delete('1.0.0');
      expect(await s.releases.get('1.0.0')).toBeUndefined();
      expect((await s.releases.list('dev')).map((r) => r.version)).toEqual(['1.1.0']);
      await s.artifacts.delete(sha('a1')); // nothing names it any more
      expect(await s.artifacts.get(sha('a1'))).toBeUndefined();
    });
  });

  describe('deltas', () => {
    const [a, b, c] = [sha('aa'), sha('bb'), sha('cc')];

    it('marks a delta ready with its descriptor, renews the descriptor only while ready, lists newest first', async () => {
      const { store: s } = await open();
      await s.artifacts.add(sha('de'), BIG_SIZE, 'delta', 1);
      await s.deltas.queue(a, b, 10);
      await s.deltas.queue(b, c, 20);
      await s.deltas.setStatus(a, b, 'failed', 'TEST-ONLY first try', 11);
      const d = deltaDescriptor(a, b, '2026-02-01T00:00:00Z');
      await s.deltas.setReady(
        a,
        b,
        { deltaSha256: sha('de'), deltaSize: BIG_SIZE, codec: 'zstd-patch', descriptor: d },
        12,
      );
      expect(await s.deltas.get(a, b)).toEqual({
        fromSha256: a,
        toSha256: b,
        status: 'ready',
        deltaSha256: sha('de'),
        deltaSize: BIG_SIZE,
        codec: 'zstd-patch',
        descriptor: d,
        error: null,
        created: 10,
        updated: 12,
      });
      const renewed = deltaDescriptor(a, b, '2026-03-01T00:00:00Z');
      await s.deltas.setDescriptor(a, b, renewed, 13);
      await s.deltas.setDescriptor(b, c, renewed, 13); // still queued: no descriptor to renew
      expect((await s.deltas.get(a, b))?.descriptor).toEqual(renewed);
      expect(await s.deltas.get(b, c)).toMatchObject({ descriptor: null, deltaSize: null, codec: null });
      expect((await s.deltas.list()).map((x) => x.fromSha256)).toEqual([b, a]);
      await s.deltas.delete(a, b);
      expect(await s.deltas.get(a, b)).toBeUndefined();
      expect(await s.deltas.pending()).toHaveLength(1);
    });

    it('claims the oldest queued job once per node, renews only its own claim, takes over one that ran out', async () => {
      const { store: s } = await open();
      await s.deltas.queue(b, c, 20);
      await s.deltas.queue(a, b, 10);
      const ttl = 30_000;
      const first = await claimNextDelta(s.sql, 'node-a', 1000, ttl);
      expect(first).toEqual({ fromSha256: a, toSha256: b, claimedUntil: 1000 + ttl });
      expect(await s.deltas.get(a, b)).toMatchObject({ status: 'building', updated: 1000 });
      const second = await claimNextDelta(s.sql, 'node-b', 1001, ttl);
      expect(second).toMatchObject({ fromSha256: b, toSha256: c });
      expect(await claimNextDelta(s.sql, 'node-b', 1002, ttl)).toBeUndefined();
      expect(await renewDeltaClaim(s.sql, first!, 'node-b', 2000, ttl)).toBe(false); // not node-b's
      expect(await renewDeltaClaim(s.sql, first!, 'node-a', 2000, ttl)).toBe(true);
      expect(await renewDeltaClaim(s.sql, second!, 'node-b', 2000, ttl)).toBe(true);
      expect(first!.claimedUntil).toBe(2000 + ttl);
      // node-a stops renewing; once its claim ran out node-b takes the job over.
      expect(await claimNextDelta(s.sql, 'node-b', 2000 + ttl, ttl)).toBeUndefined();
      const takeover = await claimNextDelta(s.sql, 'node-b', 2001 + ttl, ttl);
      expect(takeover).toMatchObject({ fromSha256: a, toSha256: b });
      expect(await renewDeltaClaim(s.sql, first!, 'node-a', 2002 + ttl, ttl)).toBe(false);
    });

    it('writes a build result only while the claim is its own, in one transaction with the release of the claim', async () => {
      const { store: s } = await open();
      await s.deltas.queue(a, b, 10);
      const ttl = 1000;
      const lost = (await claimNextDelta(s.sql, 'node-a', 0, ttl))!;
      const held = (await claimNextDelta(s.sql, 'node-b', ttl + 1, ttl))!;
      let ran = false;
      expect(
        await completeDeltaClaim(s.sql, lost, 'node-a', async () => {
          ran = true;
        }),
      ).toBe(false);
      expect(ran).toBe(false);
      // A result that fails half-way leaves the claim in place (nothing of it written).
      await expect(
        completeDeltaClaim(s.sql, held, 'node-b', async (tx) => {
          await tx.run(`UPDATE deltas SET codec = 'half' WHERE from_sha256 = ?`, [a]);
          throw new Error('TEST-ONLY build result lost');
        }),
      ).rejects.toThrow('TEST-ONLY build result lost');
      expect(await s.sql.get('SELECT codec, claimed_by FROM deltas')).toEqual({
        codec: null,
        claimed_by: 'node-b',
      });
      expect(
        await completeDeltaClaim(s.sql, held, 'node-b', (tx) =>
          tx.run(`UPDATE deltas SET status = 'failed', error = 'TEST-ONLY' WHERE from_sha256 = ?`, [a]),
        ),
      ).toBe(true);
      expect(await s.sql.get('SELECT status, claimed_by, claimed_until FROM deltas')).toEqual({
        status: 'failed',
        claimed_by: null,
        claimed_until: null,
      });
    });
  });

  describe('rollouts', () => {
    it('reads policy and runtime back as written, pages newest first', async () => {
      const { store: s } = await open();
      for (const [id, t] of [
        ['r1', 10],
        ['r2', 30],
        ['r3', 20],
      ] as const)
        await addRollout(s, id, '1.1.0', t);
      const r1 = (await s.rollouts.get('r1'))!;
      expect(r1).toEqual({
        id: 'r1',
        name: 'TEST-ONLY r1',
        releaseId: '1.1.0',
        policy: policy(),
        status: 'scheduled',
        runtime: initialRuntime(policy()),
        createdBy: 'token:ci(t1)',
        created: 10,
        updated: 10,
      });
      expect((await s.rollouts.list(2, 0)).map((r) => r.id)).toEqual(['r2', 'r3']);
      expect((await s.rollouts.list(2, 2)).map((r) => r.id)).toEqual(['r1']);
      expect(await s.rollouts.get('r9')).toBeUndefined();
    });

    it('orders rollouts and a device’s deployments made in the same millisecond by id, on every engine', async () => {
      const { store: s } = await open();
      // Inserted out of id order: an engine falling back to its scan order would differ.
      for (const id of ['r-b', 'r-c', 'r-a']) await addRollout(s, id, '1.1.0', 5);
      expect((await s.rollouts.list(10, 0)).map((r) => r.id)).toEqual(['r-c', 'r-b', 'r-a']);
      expect((await s.rollouts.active()).map((r) => r.id)).toEqual(['r-a', 'r-b', 'r-c']);
      await addDevice(s, 'd-1');
      for (const r of ['r-b', 'r-c', 'r-a']) await s.deployments.assign(r, 'd-1', 0, null, 7);
      const ids = (await s.deployments.forDevice('d-1')).map((d) => d.id);
      expect(ids).toEqual([...ids].sort().reverse());
    });

    it('moves status with the runtime; active ones are unfinished or rolling back after an abort', async () => {
      const { store: s } = await open();
      const base = initialRuntime(policy());
      await addRollout(s, 'done', '1.0.0', 1);
      await addRollout(s, 'aborted', '1.0.0', 2);
      await addRollout(s, 'rolling-back', '1.0.1', 3);
      await addRollout(s, 'paused', '1.1.0', 4);
      await addRollout(s, 'running', '1.1.0', 5);
      await s.rollouts.setRuntime('done', { ...base, status: 'completed', finishedAt: 9 }, 9);
      await s.rollouts.setRuntime('aborted', { ...base, status: 'aborted', rollingBack: false }, 9);
      await s.rollouts.setRuntime('rolling-back', { ...base, status: 'aborted', rollingBack: true }, 9);
      await s.rollouts.setRuntime(
        'paused',
        { ...base, status: 'paused', pause: { kind: 'operator', at: 8, by: 'ops', note: null } },
        9,
      );
      await s.rollouts.setRuntime(
        'running',
        { ...base, status: 'running', currentPhase: 0, startedAt: 7 },
        10,
      );
      expect((await s.rollouts.active()).map((r) => r.id)).toEqual(['rolling-back', 'paused', 'running']);
      expect(await s.rollouts.get('done')).toMatchObject({
        status: 'completed',
        updated: 9,
        runtime: { finishedAt: 9 },
      });
      expect((await s.rollouts.activeReleaseIds()).sort()).toEqual(['1.1.0']);
    });
  });

  describe('deployments', () => {
    it('assigns a device once per rollout and keeps the first assignment', async () => {
      const { store: s } = await open();
      await addRollout(s, 'r1', '1.1.0', 1);
      await addDevice(s, 'd1');
      const id = await s.deployments.assign('r1', 'd1', 0, '1.0.0', 5);
      expect(await s.deployments.assign('r1', 'd1', 1, null, 6)).toBe(id);
      expect(await s.deployments.get(id)).toEqual({
        id,
        rolloutId: 'r1',
        deviceId: 'd1',
        phase: 0,
        state: 'pending',
        attempts: 0,
        offeredAt: null,
        updatedAt: 5,
        failureReason: null,
        fromVersion: '1.0.0',
        rollback: null,
        created: 5,
      });
      expect(await s.deployments.find('r1', 'd2')).toBeUndefined();
      await expect(s.deployments.assign('r1', 'no-such-device', 0, null, 7)).rejects.toMatchObject(CONFLICT);
    });

    it('saves state transitions with the rollback record, and clears it again to NULL', async () => {
      const { store: s } = await open();
      await addRollout(s, 'r1', '1.1.0', 1);
      await addDevice(s, 'd1');
      const d = (await s.deployments.get(await s.deployments.assign('r1', 'd1', 0, null, 5)))!;
      const failed = {
        ...d,
        state: 'failed' as const,
        attempts: 3,
        offeredAt: 6,
        updatedAt: 9,
        failureReason: 'TEST-ONLY “hash mismatch”',
        rollback: {
          toVersion: '1.0.0',
          state: 'offered' as const,
          offeredAt: 9,
          updatedAt: 9,
          failureReason: null,
        },
      };
      await s.deployments.save(failed);
      expect(await s.deployments.get(d.id)).toEqual(failed);
      const cleared = {
        ...failed,
        state: 'healthy' as const,
        failureReason: null,
        rollback: null,
        updatedAt: 10,
      };
      await s.deployments.save(cleared);
      expect(await s.deployments.get(d.id)).toEqual(cleared);
    });

    it('lists a rollout by phase then device, a device newest first', async () => {
      const { store: s } = await open();
      await addRollout(s, 'r1', '1.1.0', 1);
      await addRollout(s, 'r2', '1.2.0', 2);
      for (const id of ['d-b', 'd-a', 'd-c']) await addDevice(s, id);
      await s.deployments.assign('r1', 'd-b', 1, null, 10);
      await s.deployments.assign('r1', 'd-c', 0, null, 11);
      await s.deployments.assign('r1', 'd-a', 1, null, 12);
      await s.deployments.assign('r2', 'd-a', 0, null, 20);
      expect((await s.deployments.forRollout('r1')).map((x) => `${x.phase}:${x.deviceId}`)).toEqual([
        '0:d-c',
        '1:d-a',
        '1:d-b',
      ]);
      expect((await s.deployments.forDevice('d-a')).map((x) => x.rolloutId)).toEqual(['r2', 'r1']);
    });

    it('counts devices busy in another active rollout and the releases in flight', async () => {
      const { store: s } = await open();
      const running = { ...initialRuntime(policy()), status: 'running' as const };
      await addRollout(s, 'r1', '1.1.0', 1, running);
      await addRollout(s, 'r2', '1.2.0', 2, running);
      await addRollout(s, 'old', '1.0.0', 3, { ...running, status: 'completed' });
      for (const id of ['d1', 'd2', 'd3']) await addDevice(s, id);
      const set = async (
        rollout: string,
        device: string,
        state: 'installing' | 'pending' | 'healthy' | 'rebooting',
      ) => {
        const d = (await s.deployments.get(await s.deployments.assign(rollout, device, 0, null, 5)))!;
        await s.deployments.save({ ...d, state });
      };
      await set('r1', 'd1', 'installing');
      await set('r1', 'd2', 'pending');
      await set('r2', 'd3', 'healthy');
      await set('old', 'd2', 'rebooting'); // in flight, but its rollout has finished
      expect([...(await s.deployments.busyDevices('r2'))]).toEqual(['d1']);
      expect([...(await s.deployments.busyDevices('r1'))]).toEqual([]);
      expect((await s.deployments.inFlightReleaseIds()).sort()).toEqual(['1.0.0', '1.1.0']);
    });
  });
}
