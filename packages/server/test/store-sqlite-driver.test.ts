import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../src/store/migrations.js';
import { SqliteDriver } from '../src/store/sqlite-driver.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function open(): Promise<{ driver: SqliteDriver; file: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-sqlite-driver-'));
  dirs.push(dir);
  const file = join(dir, 'server.db');
  const driver = SqliteDriver.open(file);
  await driver.migrate();
  await driver.run('CREATE TABLE t (v TEXT NOT NULL)');
  return { driver, file };
}

const values = async (d: SqliteDriver) =>
  (await d.all<{ v: string }>('SELECT v FROM t ORDER BY rowid')).map((r) => r.v);

describe('SqliteDriver', () => {
  it('runs a root statement issued while a transaction awaits after it, and does not roll it back with it', async () => {
    const { driver } = await open();
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const tx = driver.tx(async (sql) => {
      await sql.run('INSERT INTO t (v) VALUES (?)', ['in-tx']);
      await gate;
      throw new Error('TEST-ONLY rollback');
    });
    const outside = driver.run('INSERT INTO t (v) VALUES (?)', ['outside']);
    let outsideDone = false;
    void outside.then(() => {
      outsideDone = true;
    });
    await new Promise((r) => setImmediate(r));
    expect(outsideDone).toBe(false); // it waits for the transaction
    release();
    await expect(tx).rejects.toThrow('TEST-ONLY rollback');
    await outside;
    expect(await values(driver)).toEqual(['outside']);
    await driver.close();
  });

  it('refuses a root statement or transaction from inside an open transaction instead of waiting for ever', async () => {
    const { driver } = await open();
    const deadlock = {
      code: 'FLOTILLA_ERR_SERVER_STORE',
      message: expect.stringMatching(/transaction's store/),
    };
    await expect(
      driver.tx(async (sql) => {
        await sql.run('INSERT INTO t (v) VALUES (?)', ['undone']);
        await driver.get('SELECT v FROM t');
      }),
    ).rejects.toMatchObject(deadlock);
    await expect(driver.tx(async () => driver.tx(async () => 1))).rejects.toMatchObject(deadlock);
    await expect(driver.tx(async () => driver.exec('SELECT 1'))).rejects.toMatchObject(deadlock);
    await expect(driver.tx(async () => driver.close())).rejects.toMatchObject(deadlock);
    // Deeper in the async chain, after the transaction's own awaits, it is still caught.
    await expect(
      driver.tx(async (sql) => {
        await sql.tx(async () => new Promise((r) => setImmediate(r)));
        await Promise.resolve().then(() => driver.run('INSERT INTO t (v) VALUES (?)', ['undone']));
      }),
    ).rejects.toMatchObject(deadlock);
    expect(await values(driver)).toEqual([]);
    await driver.close();
  });

  it('lets work started inside an ended transaction wait for a later one, as any outside caller', async () => {
    const { driver } = await open();
    let later!: Promise<unknown>;
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    await driver.tx(async () => {
      // Started inside this transaction, runs after it ended, while another one is open.
      later = gate.then(() => driver.run('INSERT INTO t (v) VALUES (?)', ['after']));
    });
    const other = driver.tx(async (sql) => {
      release();
      await new Promise((r) => setImmediate(r));
      await sql.run('INSERT INTO t (v) VALUES (?)', ['other']);
    });
    await other;
    await later;
    expect(await values(driver)).toEqual(['other', 'after']);
    await driver.close();
  });

  it('rolls back a nested savepoint alone and commits the rest', async () => {
    const { driver } = await open();
    await driver.tx(async (sql) => {
      await sql.run('INSERT INTO t (v) VALUES (?)', ['kept']);
      await expect(
        sql.tx(async (sp) => {
          await sp.run('INSERT INTO t (v) VALUES (?)', ['undone']);
          throw new Error('TEST-ONLY inner');
        }),
      ).rejects.toThrow('TEST-ONLY inner');
      await sql.tx((sp) => sp.run('INSERT INTO t (v) VALUES (?)', ['nested']));
    });
    expect(await values(driver)).toEqual(['kept', 'nested']);
    await driver.close();
  });

  it('rolls the whole transaction back when fn throws', async () => {
    const { driver } = await open();
    await expect(
      driver.tx(async (sql) => {
        await sql.run('INSERT INTO t (v) VALUES (?)', ['a']);
        throw new Error('TEST-ONLY boom');
      }),
    ).rejects.toThrow('TEST-ONLY boom');
    expect(await values(driver)).toEqual([]);
    // The connection is usable afterwards.
    await driver.tx((sql) => sql.run('INSERT INTO t (v) VALUES (?)', ['b']));
    expect(await values(driver)).toEqual(['b']);
    await driver.close();
  });

  it('refuses a schema newer than this server with FLOTILLA_ERR_SERVER_STORE', async () => {
    const { driver, file } = await open();
    await driver.close();
    const raw = new Database(file);
    raw.pragma(`user_version = ${MIGRATIONS.at(-1)!.version + 1}`);
    raw.close();
    const again = SqliteDriver.open(file);
    await expect(again.migrate()).rejects.toMatchObject({ code: 'FLOTILLA_ERR_SERVER_STORE' });
    await again.close();
  });

  it('prepares each SQL text once', async () => {
    const { driver } = await open();
    const before = driver.preparedCount;
    for (let i = 0; i < 20; i++) await driver.run('INSERT INTO t (v) VALUES (?)', [`v${i}`]);
    expect(driver.preparedCount).toBe(before + 1);
    await driver.get('SELECT COUNT(*) AS n FROM t');
    expect(driver.preparedCount).toBe(before + 2);
    expect((await driver.get<{ n: number }>('SELECT COUNT(*) AS n FROM t'))?.n).toBe(20);
    expect(driver.preparedCount).toBe(before + 2);
    await driver.close();
  });
});
