import { afterEach, describe, expect, it } from 'vitest';
import { NonceCache } from '../../src/mqtt/device-auth.js';
import type { SqlDriver } from '../../src/store/sql.js';
import { Store } from '../../src/store/store.js';
import { adminCases } from './admin-cases.js';
import { deliveryCases } from './delivery-cases.js';
import { deploymentEventCases } from './deployment-event-cases.js';
import { deviceCases } from './device-cases.js';
import { CONFLICT, type OpenStore } from './fixtures.js';
import { ingestCases } from './ingest-cases.js';
import { rolloutPassCases } from './rollout-pass-cases.js';

/**
 * Opens a driver on the named database, migrated: a name not used before is a fresh, empty
 * database; the same name again reaches the same data (a restarted server).
 */
export type OpenDriver = (database: string) => Promise<SqlDriver>;

const event = (eventId: string, seq: number) => ({
  schemaVersion: 1 as const,
  type: 'event' as const,
  eventId,
  seq,
  ts: '2026-01-01T00:00:00Z',
  kind: 'healthy' as const,
  deploymentId: null,
});

const state = (seq: number, version: string, ts: string) => ({
  schemaVersion: 1 as const,
  type: 'state' as const,
  seq,
  ts,
  version,
  imageSha256: null,
  securityVersion: 1,
  activeSlot: 'A' as const,
  agentState: 'Idle' as const,
  deploymentId: null,
  lastError: null,
});

/**
 * The store's contract, the same for every engine: each repository rule that callers rely on,
 * run through `Store` over `openDriver`'s driver. Engine-specific checks (SQLite's WAL, the
 * PostgreSQL pool) stay in each driver's own test.
 */
export function describeStoreContract(
  name: string,
  openDriver: OpenDriver,
  opts: { skip?: boolean } = {},
): void {
  let used = 0;
  const open: Store[] = [];
  /** A fresh database (or `database` again), as a migrated store closed after the test. */
  const store: OpenStore = async (database = `contract_${process.pid}_${++used}`) => {
    const s = await Store.fromDriver(await openDriver(database));
    open.push(s);
    return { store: s, database };
  };
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close().catch(() => {});
  });

  describe.skipIf(opts.skip)(`store contract: ${name}`, () => {
    it('keeps what was written when the database is opened again', async () => {
      const { store: s, database } = await store();
      await s.devices.insert({ id: 'd1', publicKey: 'ab'.repeat(32), status: 'accepted', now: 1 });
      await s.close();
      const { store: again } = await store(database);
      expect((await again.devices.get('d1'))?.status).toBe('accepted');
    });

    it('records an event id once per device, so a resent event is not double-counted', async () => {
      const { store: s } = await store();
      await s.devices.insert({ id: 'd1', publicKey: 'ab'.repeat(32), status: 'accepted', now: 1 });
      await s.devices.insert({ id: 'd2', publicKey: 'cd'.repeat(32), status: 'accepted', now: 1 });
      expect(await s.events.insert('d1', event('e1', 1), 2)).toBe(true);
      expect(await s.events.insert('d1', event('e1', 1), 3)).toBe(false);
      expect(await s.events.insert('d2', event('e1', 1), 3)).toBe(true);
      expect(await s.events.count()).toBe(2);
    });

    it('ignores a state report older than the one already stored', async () => {
      const { store: s } = await store();
      await s.devices.insert({ id: 'd1', publicKey: 'ab'.repeat(32), status: 'accepted', now: 1 });
      await s.devices.applyState('d1', state(5, '1.1.0', '2026-01-01T00:00:05Z'), 10);
      expect(await s.devices.applyState('d1', state(4, '1.0.0', '2026-01-01T00:00:04Z'), 11)).toBe(false);
      expect((await s.devices.get('d1'))?.version).toBe('1.1.0');
    });

    it('consumes a provisioning token only once and never after it expires', async () => {
      const { store: s } = await store();
      const t = await s.provisioning.create('line 3', 1000, true, 100);
      expect((await s.provisioning.consume(t.secret, 'd1', 200))?.usedBy).toBe('d1');
      expect(await s.provisioning.consume(t.secret, 'd2', 201)).toBeUndefined();
      const late = await s.provisioning.create('late', 1000, true, 100);
      expect(await s.provisioning.consume(late.secret, 'd3', 1200)).toBeUndefined();
    });

    it('rolls back every write of a transaction that throws, and a savepoint alone', async () => {
      const { store: s } = await store();
      await expect(
        s.tx(async (tx) => {
          await tx.devices.insert({ id: 'd1', publicKey: 'ab'.repeat(32), status: 'accepted', now: 1 });
          await tx.audit.record('test', 'device.create', 'd1', {}, 1);
          throw new Error('TEST-ONLY boom');
        }),
      ).rejects.toThrow('TEST-ONLY boom');
      expect(await s.devices.get('d1')).toBeUndefined();
      expect(await s.audit.list(Number.MAX_SAFE_INTEGER, 10)).toHaveLength(0);
      await s.tx(async (tx) => {
        await tx.devices.insert({ id: 'd2', publicKey: 'ab'.repeat(32), status: 'accepted', now: 1 });
        await expect(
          tx.tx(async (inner) => {
            await inner.devices.insert({ id: 'd3', publicKey: 'cd'.repeat(32), status: 'accepted', now: 1 });
            throw new Error('TEST-ONLY inner');
          }),
        ).rejects.toThrow('TEST-ONLY inner');
      });
      expect((await s.devices.get('d2'))?.status).toBe('accepted');
      expect(await s.devices.get('d3')).toBeUndefined();
    });

    it('contains a write the store refuses in a savepoint: the transaction goes on and commits the rest', async () => {
      const { store: s } = await store();
      await s.tx(async (tx) => {
        await tx.tokens.createWithSecret('one', 'admin', 'TEST-ONLY-a', 1);
        await expect(
          tx.tx((sp) => sp.tokens.createWithSecret('dup', 'viewer', 'TEST-ONLY-a', 2)),
        ).rejects.toMatchObject(CONFLICT);
        await tx.tokens.createWithSecret('two', 'viewer', 'TEST-ONLY-b', 3);
      });
      expect((await s.tokens.list()).map((t) => t.name)).toEqual(['one', 'two']);
    });

    it('never reports a transaction committed that the engine rolled back (a refused write caught without a savepoint)', async () => {
      const { store: s } = await store();
      await s.tokens.createWithSecret('first', 'admin', 'TEST-ONLY-a', 1);
      const outcome = await s
        .tx(async (tx) => {
          await tx.tokens.createWithSecret('kept?', 'viewer', 'TEST-ONLY-b', 2);
          await tx.tokens.createWithSecret('dup', 'viewer', 'TEST-ONLY-a', 3).catch(() => {});
        })
        .then(
          () => 'committed',
          (err: { code?: string }) => err.code,
        );
      // SQLite undoes the refused statement alone and commits; PostgreSQL aborts the whole
      // transaction, and then the commit must fail rather than look like it succeeded.
      expect(['committed', 'FLOTILLA_ERR_SERVER_STORE']).toContain(outcome);
      expect((await s.tokens.list()).some((t) => t.name === 'kept?')).toBe(outcome === 'committed');
    });

    it('queues a delta once, and puts a build a crash interrupted back in the queue', async () => {
      const { store: s } = await store();
      const [a, b] = ['aa'.repeat(32), 'bb'.repeat(32)];
      expect(await s.deltas.queue(a, b, 10)).toBe(true);
      expect(await s.deltas.queue(a, b, 11)).toBe(false);
      await s.deltas.setStatus(a, b, 'building', null, 12);
      expect((await s.deltas.pending()).map((d) => d.status)).toEqual(['building']);
      expect(await s.deltas.requeueInterrupted()).toBe(1);
      expect((await s.deltas.get(a, b))?.status).toBe('queued');
      await s.deltas.setStatus(a, b, 'failed', 'TEST-ONLY no space', 13);
      expect(await s.deltas.pending()).toEqual([]);
      expect((await s.deltas.get(a, b))?.error).toBe('TEST-ONLY no space');
    });

    it('answers audit queries by actor, action prefix, target and time, newest first', async () => {
      const { store: s } = await store();
      await s.audit.record('token:ci(t1)', 'token.create', 't2', { n: 1 }, 100);
      await s.audit.record('server', 'server.start', null, {}, 200);
      await s.audit.record('token:ci(t1)', 'device.accept', 'd1', { big: 2 ** 40 }, 300);
      const actions = async (f: Parameters<typeof s.audit.query>[0]) =>
        (await s.audit.query(f, 10)).map((e) => e.action);
      expect(await actions({ actor: 'ci' })).toEqual(['device.accept', 'token.create']);
      expect(await actions({ actor: 't1' })).toEqual(['device.accept', 'token.create']);
      expect(await actions({ action: 'token.*' })).toEqual(['token.create']);
      expect(await actions({ target: 'd1' })).toEqual(['device.accept']);
      expect(await actions({ since: 200, until: 300 })).toEqual(['server.start']);
      const [newest] = await s.audit.list(Number.MAX_SAFE_INTEGER, 1);
      expect(newest).toMatchObject({
        ts: 300,
        actor: 'token:ci(t1)',
        target: 'd1',
        detail: { big: 2 ** 40 },
      });
      expect((await s.audit.lastOf('server', ['server.start']))?.ts).toBe(200);
    });

    it('searches devices by id start, status, tag, group and online, in id pages, tags kept on change', async () => {
      const { store: s } = await store();
      for (let i = 0; i < 5; i++) {
        const id = `TEST-ONLY-${i}`;
        await s.devices.insert({
          id,
          publicKey: `${i}`.repeat(64),
          status: i < 4 ? 'accepted' : 'pending',
          now: 1,
        });
        await s.devices.setPlacement(
          id,
          { tags: i % 2 ? ['odd', 'lab'] : ['lab'], group: `g${i % 2}`, channel: 'prod' },
          2,
        );
      }
      await s.devices.setOnline('TEST-ONLY-1', true, 3);
      await s.devices.setOnline('TEST-ONLY-2', true, 3);
      const ids = async (f: Partial<Parameters<typeof s.devices.list>[0]>) =>
        (await s.devices.list({ limit: 10, offset: 0, ...f })).items.map((d) => d.id);
      expect(await ids({ tag: 'odd' })).toEqual(['TEST-ONLY-1', 'TEST-ONLY-3']);
      expect(await ids({ status: 'pending' })).toEqual(['TEST-ONLY-4']);
      expect(await ids({ group: 'g0', online: true })).toEqual(['TEST-ONLY-2']);
      expect(await ids({ q: 'TEST-ONLY-3' })).toEqual(['TEST-ONLY-3']);
      const first = await s.devices.list({ limit: 2, offset: 0, tag: 'lab' });
      expect(first.total).toBe(5);
      expect(await ids({ tag: 'lab', after: first.next!, limit: 2 })).toEqual(['TEST-ONLY-2', 'TEST-ONLY-3']);
      // The tag index follows a placement change (triggers on SQLite, a function on PostgreSQL).
      await s.devices.setPlacement('TEST-ONLY-1', { tags: [], group: null, channel: 'prod' }, 4);
      expect(await ids({ tag: 'odd' })).toEqual(['TEST-ONLY-3']);
      expect((await s.devices.markStaleOffline(10)).sort()).toEqual(['TEST-ONLY-1', 'TEST-ONLY-2']);
      expect(await ids({ online: true })).toEqual([]);
    });

    it('stores only the hash of an API token and finds it by the token', async () => {
      const { store: s } = await store();
      const { token, secret } = await s.tokens.create('ci', 'viewer', 1);
      const raw = await s.sql.get<{ hash: string }>('SELECT hash FROM api_tokens WHERE id = ?', [token.id]);
      expect(raw?.hash).not.toContain(secret);
      expect((await s.tokens.authenticate(secret, 2))?.role).toBe('viewer');
      expect(await s.tokens.authenticate(`${secret}x`, 2)).toBeUndefined();
      await s.tokens.revoke(token.id, 3);
      expect(await s.tokens.authenticate(secret, 4)).toBeUndefined();
    });

    it('keeps accepted login nonces across a reopen, forgets them after twice the auth window', async () => {
      const { store: s, database } = await store();
      const window = 5 * 60_000;
      const t0 = 1_800_000_000_000;
      const first = new NonceCache(window, 100, s.nonces);
      await first.load(t0);
      expect(await first.add('TEST-ONLY-dev:nonce-1', t0)).toBe('ok');
      expect(await first.add('TEST-ONLY-dev:nonce-1', t0 + 1000)).toBe('replay');
      await s.close();
      // A restarted server: a fresh cache over the reopened database still knows the nonce.
      const { store: reopened } = await store(database);
      const second = new NonceCache(window, 100, reopened.nonces);
      await second.load(t0 + 60_000);
      expect(second.size).toBe(1);
      expect(await second.add('TEST-ONLY-dev:nonce-1', t0 + 60_000)).toBe('replay');
      const later = t0 + 2 * window + 1;
      expect(await second.add('TEST-ONLY-dev:nonce-2', later)).toBe('ok');
      expect(second.size).toBe(1);
      expect(await reopened.nonces.count()).toBe(1);
    });

    it('refuses a nonce another cache recorded, and records a burst of logins in one batch', async () => {
      const { store: s } = await store();
      const now = 1_800_000_000_000;
      const a = new NonceCache(60_000, 1000, s.nonces);
      await a.load(now);
      const b = new NonceCache(60_000, 1000, s.nonces);
      await b.load(now);
      expect(await a.add('TEST-ONLY-dev:n', now)).toBe('ok');
      expect(await b.add('TEST-ONLY-dev:n', now)).toBe('replay');
      const verdicts = await Promise.all([
        ...Array.from({ length: 50 }, (_, i) => a.add(`TEST-ONLY-dev:${i}`, now)),
        a.add('TEST-ONLY-dev:7', now),
      ]);
      expect(verdicts.filter((v) => v === 'ok')).toHaveLength(50);
      expect(verdicts[50]).toBe('replay');
      expect(await s.nonces.count()).toBe(51);
    });

    deviceCases(store);
    deliveryCases(store);
    ingestCases(store);
    deploymentEventCases(store);
    adminCases(store);
    rolloutPassCases(store);
  });
}
