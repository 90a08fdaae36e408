import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NonceCache } from '../src/mqtt/device-auth.js';
import { MIGRATIONS } from '../src/store/migrations.js';
import type { SqliteDriver } from '../src/store/sqlite-driver.js';
import { Store } from '../src/store/store.js';

const dirs: string[] = [];
async function tempStore(): Promise<{ store: Store; file: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-store-'));
  dirs.push(dir);
  const file = join(dir, 'server.db');
  return { store: await Store.open(file), file };
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const event = (eventId: string, seq: number) => ({
  schemaVersion: 1 as const,
  type: 'event' as const,
  eventId,
  seq,
  ts: '2026-01-01T00:00:00Z',
  kind: 'healthy' as const,
  deploymentId: null,
});

describe('store', () => {
  it('applies every migration once and reopens an existing database unchanged', async () => {
    const { store, file } = await tempStore();
    expect(await (store.sql as SqliteDriver).schemaVersion()).toBe(MIGRATIONS.at(-1)!.version);
    expect((await store.sql.get<{ journal_mode: string }>('PRAGMA journal_mode'))?.journal_mode).toBe('wal');
    await store.devices.insert({ id: 'd1', publicKey: 'ab'.repeat(32), status: 'accepted', now: 1 });
    await store.close();
    const again = await Store.open(file);
    expect((await again.devices.get('d1'))?.status).toBe('accepted');
    await again.close();
  });

  it('records an event id once per device, so a resent event is not double-counted', async () => {
    const { store } = await tempStore();
    await store.devices.insert({ id: 'd1', publicKey: 'ab'.repeat(32), status: 'accepted', now: 1 });
    await store.devices.insert({ id: 'd2', publicKey: 'cd'.repeat(32), status: 'accepted', now: 1 });
    expect(await store.events.insert('d1', event('e1', 1), 2)).toBe(true);
    expect(await store.events.insert('d1', event('e1', 1), 3)).toBe(false);
    expect(await store.events.insert('d2', event('e1', 1), 3)).toBe(true);
    expect(await store.events.count()).toBe(2);
    await store.close();
  });

  it('ignores a state report older than the one already stored', async () => {
    const { store } = await tempStore();
    await store.devices.insert({ id: 'd1', publicKey: 'ab'.repeat(32), status: 'accepted', now: 1 });
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
    await store.devices.applyState('d1', state(5, '1.1.0', '2026-01-01T00:00:05Z'), 10);
    expect(await store.devices.applyState('d1', state(4, '1.0.0', '2026-01-01T00:00:04Z'), 11)).toBe(false);
    expect((await store.devices.get('d1'))?.version).toBe('1.1.0');
    await store.close();
  });

  it('consumes a provisioning token only once and never after it expires', async () => {
    const { store } = await tempStore();
    const t = await store.provisioning.create('line 3', 1000, true, 100);
    expect((await store.provisioning.consume(t.secret, 'd1', 200))?.usedBy).toBe('d1');
    expect(await store.provisioning.consume(t.secret, 'd2', 201)).toBeUndefined();
    const late = await store.provisioning.create('late', 1000, true, 100);
    expect(await store.provisioning.consume(late.secret, 'd3', 1200)).toBeUndefined();
    await store.close();
  });

  it('rolls back every write of a transaction that throws', async () => {
    const { store } = await tempStore();
    await expect(() =>
      store.tx(async (tx) => {
        await tx.devices.insert({ id: 'd1', publicKey: 'ab'.repeat(32), status: 'accepted', now: 1 });
        await tx.audit.record('test', 'device.create', 'd1', {}, 1);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await store.devices.get('d1')).toBeUndefined();
    expect(await store.audit.list(Number.MAX_SAFE_INTEGER, 10)).toHaveLength(0);
    await store.close();
  });

  it('stores only the hash of an API token and finds it by the token', async () => {
    const { store } = await tempStore();
    const { token, secret } = await store.tokens.create('ci', 'viewer', 1);
    const raw = (await store.sql.get('SELECT hash FROM api_tokens WHERE id = ?', [token.id])) as {
      hash: string;
    };
    expect(raw.hash).not.toContain(secret);
    expect((await store.tokens.authenticate(secret, 2))?.role).toBe('viewer');
    expect(await store.tokens.authenticate(`${secret}x`, 2)).toBeUndefined();
    await store.tokens.revoke(token.id, 3);
    expect(await store.tokens.authenticate(secret, 4)).toBeUndefined();
    await store.close();
  });
});

describe('accepted device-password nonces', () => {
  it('survive reopening the store, expire after twice the auth window and are pruned', async () => {
    const { store, file } = await tempStore();
    const window = 5 * 60_000;
    const t0 = 1_800_000_000_000;
    const first = new NonceCache(window, 100, store.nonces);
    await first.load(t0);
    expect(await first.add('TEST-ONLY-dev:nonce-1', t0)).toBe('ok');
    expect(await first.add('TEST-ONLY-dev:nonce-1', t0 + 1000)).toBe('replay');
    await store.close();

    // A restarted server: a fresh cache over the reopened file still knows the nonce.
    const reopened = await Store.open(file);
    const second = new NonceCache(window, 100, reopened.nonces);
    await second.load(t0 + 60_000);
    expect(second.size).toBe(1);
    expect(await second.add('TEST-ONLY-dev:nonce-1', t0 + 60_000)).toBe('replay');
    // Once no password carrying it can verify any more, the nonce is forgotten, in memory and on disk.
    const later = t0 + 2 * window + 1;
    expect(await second.add('TEST-ONLY-dev:nonce-2', later)).toBe('ok');
    expect(second.size).toBe(1);
    expect(await reopened.nonces.count()).toBe(1);
    await reopened.close();
  });

  it('refuses a nonce another process recorded (the table is checked, not only memory)', async () => {
    const { store } = await tempStore();
    const now = 1_800_000_000_000;
    const a = new NonceCache(60_000, 100, store.nonces);
    await a.load(now);
    const b = new NonceCache(60_000, 100, store.nonces);
    await b.load(now);
    expect(await a.add('TEST-ONLY-dev:n', now)).toBe('ok');
    expect(await b.add('TEST-ONLY-dev:n', now)).toBe('replay');
  });

  it('records a burst of logins in one transaction; the same nonce twice in it is a replay', async () => {
    const { store } = await tempStore();
    const now = 1_800_000_000_000;
    const cache = new NonceCache(60_000, 1000, store.nonces);
    await cache.load(now);
    const batches: number[] = [];
    const persist = {
      addMany: (e: { key: string; until: number }[], t: number) => {
        batches.push(e.length);
        return store.nonces.addMany(e, t);
      },
      live: async () => [],
      prune: async () => 0,
    };
    const grouped = new NonceCache(60_000, 1000, persist);
    await grouped.load(now);
    const verdicts = await Promise.all([
      ...Array.from({ length: 50 }, (_, i) => grouped.add(`TEST-ONLY-dev:${i}`, now)),
      grouped.add('TEST-ONLY-dev:7', now),
    ]);
    expect(batches).toEqual([50]);
    expect(verdicts.filter((v) => v === 'ok')).toHaveLength(50);
    expect(verdicts[50]).toBe('replay');
    expect(await store.nonces.count()).toBe(50);
    expect(await cache.add('TEST-ONLY-dev:7', now)).toBe('replay'); // on disk: another cache sees it
  });

  it('a nonce that could not be written is refused as busy and not kept (a retry may pass)', async () => {
    const now = 1_800_000_000_000;
    let failing = true;
    const persist = {
      addMany: async (e: { key: string; until: number }[]) => {
        if (failing) throw new Error('SQLITE_FULL: database or disk is full');
        return e.map(() => true);
      },
      live: async () => [],
      prune: async () => 0,
    };
    const cache = new NonceCache(60_000, 1000, persist);
    await cache.load(now);
    expect(await cache.add('TEST-ONLY-dev:n', now)).toBe('busy');
    expect(cache.size).toBe(0);
    failing = false;
    expect(await cache.add('TEST-ONLY-dev:n', now)).toBe('ok');
  });
});
