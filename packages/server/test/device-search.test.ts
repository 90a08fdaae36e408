import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VersionHistory } from '../src/devices/version-history.js';
import type { RunningServer } from '../src/index.js';
import { MIGRATIONS } from '../src/store/migrations.js';
import type { DeviceFilter } from '../src/store/repos/devices.js';
import type { SqliteDriver } from '../src/store/sqlite-driver.js';
import { Store } from '../src/store/store.js';
import { testImage, uploadRelease } from './fleet.js';
import { auth, cleanupDirs, silent, startTestServer, tempDir } from './helpers.js';

/**
 * Device search at 10,000 devices (issue 18): every filter walks an index in id order, pages
 * continue with a cursor, tags are kept in their own indexed table; the rollout preview uses the
 * engine's own selection; the versions-over-time history is kept by the server, bounded.
 */
const N = 10_000;
const id = (i: number) => `TEST-ONLY-s-${String(i).padStart(5, '0')}`;
let server: RunningServer;

beforeAll(async () => {
  server = await startTestServer();
  await uploadRelease(server, '1.0.0', testImage(0, 256 * 1024));
  await uploadRelease(server, '1.1.0', testImage(1, 256 * 1024));
  const { store } = server.ctx;
  const SET_VERSION = 'UPDATE devices SET version = ? WHERE id = ?';
  await store.tx(async (tx) => {
    for (let i = 0; i < N; i++) {
      await tx.devices.insert({
        id: id(i),
        publicKey: i.toString(16).padStart(64, '0'),
        status: i % 500 === 3 ? 'pending' : 'accepted',
        hardware: i % 2 === 0 ? 'TEST-ONLY-board' : 'TEST-ONLY-other',
        tags: [`site-${i % 50}`, ...(i === 7342 ? ['needle'] : [])],
        group: `g${i % 10}`,
        now: Date.now(),
      });
      await tx.sql.run(SET_VERSION, [i % 4 === 0 ? '1.1.0' : '1.0.0', id(i)]);
    }
  });
}, 120_000);
afterAll(async () => {
  await server?.close();
  cleanupDirs();
});

const get = (url: string) => server.app.inject({ method: 'GET', url, headers: auth() });
const post = (url: string, payload: object) =>
  server.app.inject({ method: 'POST', url, headers: auth(), payload });

describe('device search', () => {
  it('finds one device among 10,000 by the start of its id, and says what the query cost on the server', async () => {
    const res = await get(`/api/v1/devices?q=${id(7342)}`);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().total).toBe(1);
    expect(res.json().items.map((d: { id: string }) => d.id)).toEqual([id(7342)]);
    // Server-Timing carries the store's own time for the search (read by the browser tests too).
    const timing = /^db;dur=(\d+(?:\.\d+)?);desc="device search"$/.exec(String(res.headers['server-timing']));
    expect(timing, String(res.headers['server-timing'])).not.toBeNull();
    process.stdout.write(`device search at ${N} devices: ${timing![1]} ms server time\n`);

    const prefix = await get(`/api/v1/devices?q=${id(7342).slice(0, -1)}&limit=100`);
    expect(prefix.json().total).toBe(10);
    expect(prefix.json().items[0].id).toBe(id(7340));
  });

  it('filters by tag, group, version, hardware and status, alone and together', async () => {
    expect((await get('/api/v1/devices?tag=needle')).json().items.map((d: { id: string }) => d.id)).toEqual([
      id(7342),
    ]);
    const all = await get(
      '/api/v1/devices?tag=site-42&group=g2&version=1.0.0&hardware=TEST-ONLY-board&status=accepted',
    );
    // i % 50 = 42 → i even, i % 10 = 2; version 1.0.0 excludes i % 4 = 0.
    const expected = Array.from({ length: N }, (_, i) => i)
      .filter((i) => i % 50 === 42 && i % 4 !== 0 && i % 500 !== 3)
      .map(id);
    expect(all.json().total).toBe(expected.length);
    expect(all.json().items.map((d: { id: string }) => d.id)).toEqual(expected);
    expect((await get('/api/v1/devices?status=pending')).json().total).toBe(N / 500);
  });

  it('walks every page with the cursor: each device once, in id order, the total on every page', async () => {
    const seen: string[] = [];
    let after: string | null = null;
    for (let pages = 0; pages < 100; pages++) {
      const res = await get(`/api/v1/devices?tag=site-7&limit=37${after ? `&after=${after}` : ''}`);
      const body = res.json() as { items: { id: string }[]; total: number; next: string | null };
      expect(body.total).toBe(N / 50);
      seen.push(...body.items.map((d) => d.id));
      after = body.next;
      if (!after) break;
    }
    expect(after).toBeNull();
    expect(seen).toEqual(
      Array.from({ length: N / 50 }, (_, k) => k * 50 + 7)
        .map(id)
        .sort(),
    );
  });

  it('every filter is answered from an index, never by scanning the devices table', async () => {
    const filters: Omit<DeviceFilter, 'limit' | 'offset'>[] = [
      {},
      { q: 'TEST-ONLY-s-07' },
      { tag: 'site-1' },
      { group: 'g1' },
      { version: '1.0.0' },
      { hardware: 'TEST-ONLY-board' },
      { status: 'accepted' },
      { channel: 'prod' },
      { after: id(5000) },
      { tag: 'site-1', group: 'g1', status: 'accepted' },
    ];
    for (const f of filters) {
      const plan = await server.ctx.store.devices.explainList({ ...f, limit: 50, offset: 0 });
      // "SCAN devices" alone is a full table scan; index walks read "USING (COVERING) INDEX" or the primary key.
      expect(
        plan.filter((line) => /^SCAN devices$/.test(line)),
        `${JSON.stringify(f)}: ${plan.join(' | ')}`,
      ).toEqual([]);
      expect(plan.some((line) => /INDEX|PRIMARY KEY/.test(line))).toBe(true);
    }
  });

  it('keeps the tags table equal to the tags a device has, through placement changes', async () => {
    const put = await server.app.inject({
      method: 'PUT',
      url: `/api/v1/devices/${id(11)}/placement`,
      headers: auth(),
      payload: { tags: ['moved', 'site-11'], group: 'lab' },
    });
    expect(put.statusCode, put.body).toBe(200);
    expect((await get('/api/v1/devices?tag=moved')).json().items.map((d: { id: string }) => d.id)).toEqual([
      id(11),
    ]);
    expect((await get('/api/v1/devices?group=lab')).json().total).toBe(1);
    const rows = (await server.ctx.store.sql.all(
      'SELECT tag FROM device_tags WHERE device_id = ? ORDER BY tag',
      [id(11)],
    )) as { tag: string }[];
    expect(rows.map((r) => r.tag)).toEqual(['moved', 'site-11']);
  });

  it('an existing database gains the tags table from its devices when migration 4 runs', async () => {
    const file = join(tempDir(), 'v3.db');
    const old = new Database(file);
    for (const m of MIGRATIONS.filter((m) => m.version <= 3)) old.exec(m.sql);
    old.pragma('user_version = 3');
    const insert = old.prepare(
      "INSERT INTO devices (id, public_key, status, tags, created, updated) VALUES (?, 'k', 'accepted', ?, 1, 1)",
    );
    insert.run('old-1', '["north","lab"]');
    insert.run('old-2', '[]');
    old.close();
    const store = await Store.open(file);
    try {
      expect(await (store.sql as SqliteDriver).schemaVersion()).toBe(MIGRATIONS.at(-1)!.version);
      expect((await store.devices.list({ tag: 'lab', limit: 10, offset: 0 })).items.map((d) => d.id)).toEqual(
        ['old-1'],
      );
      expect((await store.devices.list({ tag: 'north', limit: 10, offset: 0 })).total).toBe(1);
    } finally {
      await store.close();
    }
  });

  it('refuses a malformed cursor or id prefix with a coded error', async () => {
    for (const q of ['q=has%20space', 'after=%2F..%2F', `q=${'x'.repeat(65)}`]) {
      const res = await get(`/api/v1/devices?${q}`);
      expect(res.statusCode, q).toBe(400);
      expect(res.json().error.code).toBe('FLOTILLA_ERR_SERVER_VALIDATION');
    }
  });
});

describe('rollout preview', () => {
  const policy = {
    target: { groups: ['g3'], versions: ['1.0.0'] },
    phases: [{ name: 'canary', count: 5 }, { percent: 10 }, { name: 'rest', percent: 100 }],
  };

  it('counts the devices each phase takes with the engine’s own selection, and create assigns exactly that', async () => {
    const res = await post('/api/v1/rollouts/preview', { release: '1.1.0', policy });
    expect(res.statusCode, res.body).toBe(200);
    // g3: i % 10 = 3 (odd → TEST-ONLY-other hardware, which 1.1.0 is not built for)… none match.
    expect(res.json().devices).toBe(0);

    const evenGroup = { ...policy, target: { groups: ['g4'], versions: ['1.0.0'] } };
    const preview = (await post('/api/v1/rollouts/preview', { release: '1.1.0', policy: evenGroup })).json();
    // g4, compatible hardware (even), on 1.0.0 (i % 4 ≠ 0 → i % 20 = 14), accepted (none of i % 500 = 3).
    const matching = Array.from({ length: N }, (_, i) => i).filter((i) => i % 20 === 14).length;
    expect(preview.devices).toBe(matching);
    expect(preview.phases).toEqual([
      { name: 'canary', devices: 5 },
      { name: 'phase 2', devices: Math.ceil(matching / 10) },
      { name: 'rest', devices: matching - 5 - Math.ceil(matching / 10) },
    ]);
    expect(await server.ctx.store.rollouts.list(10, 0)).toEqual([]);

    const created = await post('/api/v1/rollouts', {
      release: '1.1.0',
      policy: { ...evenGroup, phases: evenGroup.phases.map((p) => ({ ...p, requireApproval: true })) },
    });
    expect(created.statusCode, created.body).toBe(201);
    await server.ctx.rollouts.tick(created.json().id);
    const byPhase = [0, 0, 0];
    for (const d of await server.ctx.store.deployments.forRollout(created.json().id)) byPhase[d.phase]!++;
    expect(byPhase).toEqual(preview.phases.map((p: { devices: number }) => p.devices));
    await post(`/api/v1/rollouts/${created.json().id}/abort`, {});
  });

  it('refuses what create would refuse, with the same code', async () => {
    const res = await post('/api/v1/rollouts/preview', { release: '9.9.9', policy });
    expect(res.statusCode).toBe(404);
    expect(res.json().error.code).toBe('FLOTILLA_ERR_SERVER_NOT_FOUND');
  });
});

describe('versions over time, kept by the server', () => {
  it('samples accepted devices per version into the store and serves them oldest first', async () => {
    await server.ctx.versionHistory.sample();
    const res = await get('/api/v1/fleet/versions/history?hours=1');
    expect(res.statusCode, res.body).toBe(200);
    const items = res.json().items as { ts: string; counts: Record<string, number> }[];
    expect(items.length).toBeGreaterThanOrEqual(1);
    const last = items.at(-1)!;
    const accepted = N - N / 500;
    expect(Object.values(last.counts).reduce((a, b) => a + b, 0)).toBe(accepted);
    expect(last.counts['1.1.0']).toBe(
      Array.from({ length: N }, (_, i) => i).filter((i) => i % 4 === 0 && i % 500 !== 3).length,
    );
    expect([...items].sort((a, b) => a.ts.localeCompare(b.ts))).toEqual(items);
  });

  it('stays bounded by age and by count, and thins long histories to the points asked for', async () => {
    const store = await Store.open(join(tempDir(), 'history.db'));
    try {
      const t0 = 1_700_000_000_000;
      for (let i = 0; i < 20; i++)
        await store.versionSamples.add({ ts: t0 + i * 1000, counts: { '1.0.0': i } }, t0 + 5000, 10);
      // Older than t0 + 5 s went; of the rest only the newest 10 stayed.
      expect((await store.versionSamples.since(0)).map((s) => s.counts['1.0.0'])).toEqual([
        10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
      ]);
      const history = new VersionHistory(
        store,
        { versionSampleIntervalMs: 0, versionHistoryDays: 1, versionHistoryMaxSamples: 10 },
        silent,
        () => t0 + 20_000,
      );
      const thinned = await history.history(0, 4);
      expect(thinned.map((s) => s.counts['1.0.0'])).toEqual([10, 13, 16, 19]);
      // A sample now: counts of an empty fleet; the oldest sample beyond the bound goes.
      await history.sample();
      expect(await store.versionSamples.count()).toBe(10);
      expect((await store.versionSamples.since(0)).at(-1)).toEqual({ ts: t0 + 20_000, counts: {} });
    } finally {
      await store.close();
    }
  });
});
