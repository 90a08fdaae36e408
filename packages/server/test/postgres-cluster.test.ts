import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../../test/e2e/mosquitto.js';
import { StoreError } from '../src/errors.js';
import { openPostgresDriver, type PostgresDriver } from '../src/store/postgres/driver.js';
import { PostgresLease } from '../src/store/postgres/lease.js';
import { claimNextDelta, completeDeltaClaim, renewDeltaClaim } from '../src/store/sql-delta-claims.js';
import { fenced, LocalLease } from '../src/store/sql-lease.js';
import { POSTGRES_MISSING, postgresBin, startTestPostgres, type TestPostgres } from './helpers/postgres.js';
import { waitFor } from './helpers.js';

// Several server nodes on one PostgreSQL: each node is a driver with its own pool here (and, for
// the lease, a process of its own that the test SIGKILLs).

const LEASE_CHILD = fileURLToPath(new URL('./fixtures/lease-child.mjs', import.meta.url));
const LEASE_CHILD_DIST = fileURLToPath(new URL('../dist/store/postgres/lease.js', import.meta.url));

if (!postgresBin) console.warn(POSTGRES_MISSING);

describe.skipIf(!postgresBin)('PostgreSQL shared by several nodes (a real PostgreSQL)', () => {
  let pgsrv: TestPostgres;
  let a: PostgresDriver;
  let b: PostgresDriver;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    pgsrv = await startTestPostgres();
    [a, b] = await Promise.all([
      openPostgresDriver(pgsrv.url, { max: 8, applicationName: 'node-a' }),
      openPostgresDriver(pgsrv.url, { max: 8, applicationName: 'node-b' }),
    ]);
    await a.run(
      'CREATE TABLE fence_log (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, node TEXT, epoch BIGINT)',
    );
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await Promise.allSettled([a?.close(), b?.close()]);
    await pgsrv?.destroy();
  });

  it('stores a report sent to two nodes at once exactly once: the (device, eventId) rule', async () => {
    const insert = `INSERT INTO device_events (device_id, event_id, seq, ts, kind, body, received)
      VALUES (?, ?, ?, ?, 'state', '{}', ?) ON CONFLICT DO NOTHING`;
    const ids = Array.from({ length: 100 }, (_, i) => `ev-${i}`);
    const results = await Promise.all(
      ids.flatMap((id, i) => [a, b].map((node) => node.run(insert, ['dev-1', id, i, i, i]))),
    );
    expect(results.reduce((n, r) => n + r.changes, 0)).toBe(ids.length);
    expect(await a.get('SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM device_events')).toEqual({
      n: ids.length,
      d: ids.length,
    });
  });

  it('lets two nodes claim delta jobs at once without ever claiming the same job', async () => {
    const jobs = 40;
    for (let i = 0; i < jobs; i++)
      await a.run(
        `INSERT INTO deltas (from_sha256, to_sha256, status, created, updated) VALUES (?, ?, 'queued', ?, ?)`,
        [`from-${i}`, 'to', i, i],
      );
    const claimAll = async (node: PostgresDriver, name: string) => {
      const got: string[] = [];
      for (let i = 0; i <= jobs; i++) {
        const c = await claimNextDelta(node, name, 1000, 60_000);
        if (!c) break;
        got.push(c.fromSha256);
      }
      return got;
    };
    // Four claimers on two pools, all at once.
    const claimed = await Promise.all([
      claimAll(a, 'node-a'),
      claimAll(b, 'node-b'),
      claimAll(a, 'node-a'),
      claimAll(b, 'node-b'),
    ]);
    const all = claimed.flat();
    expect(new Set(all).size).toBe(all.length);
    expect(all.length).toBe(jobs);
    expect(await a.get(`SELECT count(*) AS n FROM deltas WHERE status = 'queued'`)).toEqual({ n: 0 });
  });

  it('hands a delta job over when its node stops renewing, and fences the old node off', async () => {
    await a.run(`DELETE FROM deltas`);
    await a.run(
      `INSERT INTO deltas (from_sha256, to_sha256, status, created, updated) VALUES ('f', 't', 'queued', 1, 1)`,
    );
    const ttl = 30_000;
    const first = await claimNextDelta(a, 'node-a', 1000, ttl);
    expect(first).toMatchObject({ fromSha256: 'f', toSha256: 't', claimedUntil: 1000 + ttl });
    expect(await claimNextDelta(b, 'node-b', 1000 + ttl - 1, ttl)).toBeUndefined(); // still node-a's
    expect(await renewDeltaClaim(a, first!, 'node-a', 2000, ttl)).toBe(true);
    // node-a dies: no more renewals; once the claim ran out node-b takes the job.
    const second = await claimNextDelta(b, 'node-b', 2000 + ttl + 1, ttl);
    expect(second).toMatchObject({ fromSha256: 'f', toSha256: 't' });
    // node-a comes back from a long pause: it may neither renew nor write its result.
    expect(await renewDeltaClaim(a, first!, 'node-a', 2000 + ttl + 2, ttl)).toBe(false);
    const ready = (tx: Parameters<Parameters<typeof completeDeltaClaim>[3]>[0], who: string) =>
      tx.run(`UPDATE deltas SET status = 'ready', codec = ? WHERE from_sha256 = 'f' AND to_sha256 = 't'`, [
        who,
      ]);
    expect(await completeDeltaClaim(a, first!, 'node-a', (tx) => ready(tx, 'node-a'))).toBe(false);
    expect(await completeDeltaClaim(b, second!, 'node-b', (tx) => ready(tx, 'node-b'))).toBe(true);
    expect(await a.get(`SELECT status, codec, claimed_by FROM deltas WHERE from_sha256 = 'f'`)).toEqual({
      status: 'ready',
      codec: 'node-b',
      claimed_by: null,
    });
  });

  /** A node's lease plus a worker that writes fenced rows while it believes it holds the lease. */
  function contender(node: string, db: PostgresDriver) {
    const events: string[] = [];
    let acquiredAt = 0;
    const lease = new PostgresLease(pgsrv.url, db, {
      name: 'rollout-engine',
      node,
      pollMs: 100,
      checkMs: 300,
      onAcquired: (epoch) => {
        acquiredAt = Date.now();
        events.push(`acquired ${epoch}`);
      },
      onLost: (why) => events.push(`lost: ${why}`),
    });
    let running = true;
    let refused = 0;
    const worker = (async () => {
      for (let i = 0; running && i < 100_000; i++) {
        const epoch = lease.epoch;
        if (epoch !== undefined)
          await fenced(db, 'rollout-engine', epoch, (tx) =>
            tx.run('INSERT INTO fence_log (node, epoch) VALUES (?, ?)', [node, epoch]),
          ).catch((err: unknown) => {
            if (!(err instanceof StoreError) || err.code !== 'FLOTILLA_ERR_STORE_LEASE_LOST') throw err;
            refused++;
          });
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    lease.start();
    return {
      lease,
      events,
      acquiredAt: () => acquiredAt,
      refused: () => refused,
      async stop() {
        running = false;
        await worker;
        await lease.stop();
      },
    };
  }

  /** Every fenced write is in epoch order, and each epoch belongs to one node: never two holders. */
  async function expectOneHolderAtATime(): Promise<{ node: string; epoch: number }[]> {
    const rows = await a.all<{ node: string; epoch: number }>(
      'SELECT node, epoch FROM fence_log ORDER BY id',
    );
    const owner = new Map<number, string>();
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      if (i > 0) expect(r.epoch).toBeGreaterThanOrEqual(rows[i - 1]!.epoch);
      expect(owner.get(r.epoch) ?? r.node).toBe(r.node);
      owner.set(r.epoch, r.node);
    }
    return rows;
  }

  it('moves the lease to the other node when the holder’s connection is terminated; never two holders', async () => {
    const x = contender('node-x', a);
    await waitFor(() => x.lease.epoch !== undefined, 20_000, 'node-x to acquire');
    const y = contender('node-y', b);
    try {
      await waitFor(
        async () => (await a.get<{ n: number }>('SELECT count(*) AS n FROM fence_log'))!.n >= 20,
        20_000,
      );
      expect(y.lease.epoch).toBeUndefined();
      const killedAt = Date.now();
      await a.run(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'flotilla-lease:node-x'`,
      );
      await waitFor(() => y.lease.epoch !== undefined, 20_000, 'node-y to take the lease over');
      console.log(
        `lease takeover after pg_terminate_backend: ${((y.acquiredAt() - killedAt) / 1000).toFixed(2)} s`,
      );
      expect(x.events.some((e) => e.startsWith('lost: '))).toBe(true);
      const yEpoch = y.lease.epoch!;
      await waitFor(
        async () =>
          (await a.get<{ n: number }>('SELECT count(*) AS n FROM fence_log WHERE epoch = ?', [yEpoch]))!.n >=
          20,
        20_000,
      );
      // node-x reconnects and waits; when node-y stops, node-x holds the lease again.
      await y.stop();
      await waitFor(() => x.lease.epoch !== undefined, 20_000, 'node-x to acquire again');
      expect(x.lease.epoch).toBeGreaterThan(yEpoch);
    } finally {
      await Promise.all([x.stop(), y.stop()]);
    }
    const rows = await expectOneHolderAtATime();
    expect(new Set(rows.map((r) => r.node))).toEqual(new Set(['node-x', 'node-y']));
  });

  it.skipIf(!existsSync(LEASE_CHILD_DIST))(
    'moves the lease within seconds when the holder’s process is SIGKILLed',
    async () => {
      const child = spawn(process.execPath, [LEASE_CHILD, pgsrv.url, 'node-child'], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      children.push(child);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
      });
      await waitFor(() => out.includes('acquired'), 30_000, 'the child node to acquire');
      const z = contender('node-z', b);
      try {
        await waitFor(
          async () =>
            (await a.get<{ n: number }>(`SELECT count(*) AS n FROM fence_log WHERE node = 'node-child'`))!
              .n >= 20,
          20_000,
        );
        expect(z.lease.epoch).toBeUndefined();
        const killedAt = Date.now();
        child.kill('SIGKILL');
        await waitFor(() => z.lease.epoch !== undefined, 20_000, 'node-z to take the lease over');
        console.log(
          `lease takeover after SIGKILL of the holder: ${((z.acquiredAt() - killedAt) / 1000).toFixed(2)} s`,
        );
        const zEpoch = z.lease.epoch!;
        await waitFor(
          async () =>
            (await a.get<{ n: number }>('SELECT count(*) AS n FROM fence_log WHERE epoch = ?', [zEpoch]))!
              .n >= 5,
          20_000,
        );
      } finally {
        await z.stop();
      }
      await expectOneHolderAtATime();
    },
  );

  it('holds a local lease (the one-process default) from start to stop, a new epoch each start', async () => {
    const events: string[] = [];
    const opts = {
      name: 'local-engine',
      node: 'solo',
      onAcquired: (e: number) => events.push(`acquired ${e}`),
      onLost: (why: string) => events.push(`lost: ${why}`),
    };
    const first = new LocalLease(a, opts);
    first.start();
    await waitFor(() => first.epoch !== undefined, 10_000, 'the local lease');
    const epoch = first.epoch!;
    expect(await fenced(a, 'local-engine', epoch, (tx) => tx.get('SELECT 1 AS ok'))).toEqual({ ok: 1 });
    await first.stop();
    const second = new LocalLease(a, opts);
    second.start();
    await waitFor(() => second.epoch !== undefined, 10_000, 'the local lease again');
    expect(second.epoch).toBe(epoch + 1);
    // A write under the first run's epoch is refused.
    await expect(fenced(a, 'local-engine', epoch, (tx) => tx.get('SELECT 1'))).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_STORE_LEASE_LOST',
    });
    await second.stop();
    expect(events).toEqual([`acquired ${epoch}`, 'lost: stopped', `acquired ${epoch + 1}`, 'lost: stopped']);
  });

  it('reports PostgreSQL down at start as FLOTILLA_ERR_STORE_UNAVAILABLE with a hint', async () => {
    const port = await freePort(); // nothing listens there
    const err = await openPostgresDriver(`postgres://flotilla@127.0.0.1:${port}/flotilla`, {
      connectTimeoutMs: 3000,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect(err).toMatchObject({ code: 'FLOTILLA_ERR_STORE_UNAVAILABLE' });
    expect((err as StoreError).message).toContain(`127.0.0.1:${port}`);
    expect((err as StoreError).hint).toMatch(/PostgreSQL running/);
  });

  it('answers FLOTILLA_ERR_STORE_UNAVAILABLE while PostgreSQL is stopped, and works again once it is back', async () => {
    expect(await a.get('SELECT count(*) AS n FROM devices')).toEqual({ n: 0 });
    await pgsrv.stop();
    try {
      await expect(a.get('SELECT count(*) AS n FROM devices')).rejects.toMatchObject({
        code: 'FLOTILLA_ERR_STORE_UNAVAILABLE',
      });
      await expect(a.tx((t) => t.run('DELETE FROM fence_log'))).rejects.toMatchObject({
        code: 'FLOTILLA_ERR_STORE_UNAVAILABLE',
      });
    } finally {
      await pgsrv.start();
    }
    // Connections that the restart broke are dropped; the next statements reconnect.
    let answer: unknown;
    await waitFor(
      async () => {
        answer = await a.get('SELECT count(*) AS n FROM devices').catch((e: unknown) => e);
        return !(answer instanceof Error);
      },
      20_000,
      'the store to answer again',
    );
    expect(answer).toEqual({ n: 0 });
    await a.tx((t) => t.run('INSERT INTO fence_log (node, epoch) VALUES (?, ?)', ['after-restart', 0]));
    expect(await b.get(`SELECT count(*) AS n FROM fence_log WHERE node = 'after-restart'`)).toEqual({ n: 1 });
  });
});
