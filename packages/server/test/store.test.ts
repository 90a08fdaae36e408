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

// The repositories' rules, the same on every engine, are in store-contract/; here what is SQLite's.
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
});

describe('accepted device-password nonces', () => {
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
