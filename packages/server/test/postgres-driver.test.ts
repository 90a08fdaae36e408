import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreError } from '../src/errors.js';
import { PostgresDriver } from '../src/store/postgres/driver.js';
import { toPgPlaceholders } from '../src/store/postgres/placeholders.js';
import type { Sql } from '../src/store/sql.js';
import { POSTGRES_MISSING, postgresBin, startTestPostgres, type TestPostgres } from './helpers/postgres.js';

describe('PostgreSQL placeholders', () => {
  it('numbers each ? and leaves those in strings, identifiers, dollar quotes and comments alone', () => {
    expect(toPgPlaceholders('SELECT ?, ? FROM t WHERE a = ?')).toBe('SELECT $1, $2 FROM t WHERE a = $3');
    expect(toPgPlaceholders("SELECT 'what?', ? , 'it''s ?', ?")).toBe("SELECT 'what?', $1 , 'it''s ?', $2");
    expect(toPgPlaceholders('SELECT "odd?col", ? FROM t')).toBe('SELECT "odd?col", $1 FROM t');
    expect(toPgPlaceholders("SELECT E'a\\'?', ?")).toBe("SELECT E'a\\'?', $1");
    expect(toPgPlaceholders('SELECT $$ ? $$, $t$ ? $t$, ?')).toBe('SELECT $$ ? $$, $t$ ? $t$, $1');
    expect(toPgPlaceholders('SELECT ? -- why?\n, ? /* ? */')).toBe('SELECT $1 -- why?\n, $2 /* ? */');
  });

  it('numbers a long multi-row statement (not kept in the cache) the same every time', () => {
    const sql = `INSERT INTO t VALUES ${Array.from({ length: 2000 }, () => "(?, '?')").join(', ')}`;
    const want = `INSERT INTO t VALUES ${Array.from({ length: 2000 }, (_, i) => `($${i + 1}, '?')`).join(', ')}`;
    expect(toPgPlaceholders(sql)).toBe(want);
    expect(toPgPlaceholders(sql)).toBe(want);
  });
});

if (!postgresBin) console.warn(POSTGRES_MISSING);

describe.skipIf(!postgresBin)('PostgreSQL driver (a real PostgreSQL)', () => {
  let pgsrv: TestPostgres;
  let db: PostgresDriver;

  beforeAll(async () => {
    pgsrv = await startTestPostgres();
    db = new PostgresDriver(pgsrv.url, { max: 6 });
    await db.run('CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL, note TEXT)');
  });
  afterAll(async () => {
    await db?.close();
    await pgsrv?.destroy();
  });

  it('binds ? placeholders, keeps a ? inside a string literal, and returns counts as numbers', async () => {
    await db.run('INSERT INTO kv (k, v, note) VALUES (?, ?, ?), (?, ?, ?)', ['a', 1, 'x', 'b', 2, null]);
    const row = await db.get<{ q: string; k: string; n: number; total: number }>(
      "SELECT 'why?' AS q, k, (SELECT count(*) FROM kv) AS n, (SELECT sum(v) FROM kv) AS total FROM kv WHERE k = ?",
      ['b'],
    );
    expect(row).toEqual({ q: 'why?', k: 'b', n: 2, total: 3 });
    expect(typeof row?.n).toBe('number');
    expect(await db.get('SELECT * FROM kv WHERE k = ?', ['none'])).toBeUndefined();
    const upd = await db.run('UPDATE kv SET v = v + 1 WHERE k IN (?, ?)', ['a', 'b']);
    expect(upd.changes).toBe(2);
    const ret = await db.all<{ k: string; v: number }>(
      'INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = kv.v + excluded.v RETURNING k, v',
      ['a', 10],
    );
    expect(ret).toEqual([{ k: 'a', v: 12 }]);
  });

  it('refuses integers beyond 2^53 with FLOTILLA_ERR_STORE_INTEGER instead of rounding them', async () => {
    await db.run('CREATE TABLE big (n BIGINT)');
    await db.run('INSERT INTO big VALUES (9007199254740993)');
    await expect(db.get('SELECT n FROM big')).rejects.toMatchObject({ code: 'FLOTILLA_ERR_STORE_INTEGER' });
    await expect(db.run('INSERT INTO big VALUES (?)', [2 ** 60])).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_STORE_INTEGER',
    });
    expect(await db.get('SELECT max(n) - 1 AS m FROM big WHERE n < 9007199254740992')).toEqual({ m: null });
  });

  it('rolls a failed transaction back whole, and a failed savepoint back alone', async () => {
    await expect(
      db.tx(async (t) => {
        await t.run('INSERT INTO kv (k, v) VALUES (?, ?)', ['tx1', 1]);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await db.get('SELECT k FROM kv WHERE k = ?', ['tx1'])).toBeUndefined();

    const out = await db.tx(async (t) => {
      await t.run('INSERT INTO kv (k, v) VALUES (?, ?)', ['outer', 1]);
      await expect(
        t.tx(async (inner) => {
          await inner.run('INSERT INTO kv (k, v) VALUES (?, ?)', ['inner', 1]);
          await inner.run('INSERT INTO kv (k, v) VALUES (?, ?)', ['outer', 2]); // unique violation
        }),
      ).rejects.toMatchObject({ code: 'FLOTILLA_ERR_STORE_CONFLICT', cause: { code: '23505' } });
      await t.tx((inner) => inner.run('INSERT INTO kv (k, v) VALUES (?, ?)', ['kept', 1]));
      return 'done';
    });
    expect(out).toBe('done');
    const keys = (
      await db.all<{ k: string }>("SELECT k FROM kv WHERE k IN ('outer','inner','kept') ORDER BY k")
    ).map((r) => r.k);
    expect(keys).toEqual(['kept', 'outer']);
  });

  it('runs transactions on different clients at once, each seeing only its own writes until commit', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let seenByOther: unknown = 'not read';
    const a = db.tx(async (t) => {
      await t.run('INSERT INTO kv (k, v) VALUES (?, ?)', ['iso', 1]);
      await gate;
    });
    const b = db.tx(async (t: Sql) => {
      // a has inserted but not committed: b must not see it, and must not wait for it.
      for (
        let i = 0;
        i < 200 &&
        !(await t.get('SELECT 1 AS x FROM pg_locks WHERE granted AND mode = ?', ['RowExclusiveLock']));
        i++
      );
      seenByOther = await t.get('SELECT k FROM kv WHERE k = ?', ['iso']);
      release();
    });
    await Promise.all([a, b]);
    expect(seenByOther).toBeUndefined();
    expect(await db.get('SELECT v FROM kv WHERE k = ?', ['iso'])).toEqual({ v: 1 });
  });

  it('runs a transaction again after a serialization failure', async () => {
    await db.run('INSERT INTO kv (k, v) VALUES (?, ?)', ['ser', 0]);
    let runs = 0;
    // Two serializable read-modify-write transactions on one row: one of them fails with 40001.
    const bump = () =>
      db.tx(async (t) => {
        runs++;
        await t.run('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE');
        const r = await t.get<{ v: number }>('SELECT v FROM kv WHERE k = ?', ['ser']);
        await t.get('SELECT pg_sleep(0.2)');
        await t.run('UPDATE kv SET v = ? WHERE k = ?', [r!.v + 1, 'ser']);
      });
    await Promise.all([bump(), bump()]);
    expect(await db.get('SELECT v FROM kv WHERE k = ?', ['ser'])).toEqual({ v: 2 });
    expect(runs).toBeGreaterThan(2);
  });

  it('connects over the unix socket too', async () => {
    const viaSocket = new PostgresDriver(pgsrv.socketUrl, { max: 1 });
    try {
      expect(await viaSocket.get('SELECT count(*) AS n FROM kv WHERE k = ?', ['a'])).toEqual({ n: 1 });
    } finally {
      await viaSocket.close();
    }
  });

  it('refuses a URL that is not postgres:// with FLOTILLA_ERR_STORE_URL and a hint', () => {
    for (const bad of ['mysql://x@h/db', 'not a url', 'postgres:///db']) {
      let err: unknown;
      try {
        new PostgresDriver(bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(StoreError);
      expect(err).toMatchObject({ code: 'FLOTILLA_ERR_STORE_URL' });
      expect((err as StoreError).hint).toMatch(/postgres:\/\//);
    }
  });
});
