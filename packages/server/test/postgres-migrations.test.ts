import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../src/store/migrations.js';
import { PostgresDriver } from '../src/store/postgres/driver.js';
import { PG_MIGRATIONS } from '../src/store/postgres/migrations.js';
import { CLUSTER_MIGRATION } from '../src/store/sql-cluster-migration.js';
import { SqliteDriver } from '../src/store/sqlite-driver.js';
import { POSTGRES_MISSING, postgresBin, startTestPostgres, type TestPostgres } from './helpers/postgres.js';

/** One engine's schema, reduced to what both engines must agree on. */
interface Schema {
  tables: string[];
  /** table.column → "type null|not null" */
  columns: Record<string, string>;
  /** "table(col,...) unique" for every unique rule and primary key; "name: table(cols)" for a named index. */
  indexes: string[];
  triggers: string[];
}

const SQLITE_TYPES: Record<string, string> = { INTEGER: 'bigint', TEXT: 'text', REAL: 'double precision' };

/** The SQLite migrations the server applies, with migration 6 until it is appended to migrations.ts. */
function sqliteMigrationVersions(): number[] {
  const v = MIGRATIONS.map((m) => m.version);
  return v.includes(CLUSTER_MIGRATION.version) ? v : [...v, CLUSTER_MIGRATION.version];
}

/** The schema the SQLite driver's migrations make, read from a fresh file. */
async function sqliteSchema(): Promise<Schema> {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-schema-'));
  const file = join(dir, 'server.db');
  const driver = SqliteDriver.open(file);
  await driver.migrate();
  await driver.close();
  const db = new Database(file, { readonly: true });
  try {
    if ((db.pragma('user_version', { simple: true }) as number) < CLUSTER_MIGRATION.version)
      db.exec(CLUSTER_MIGRATION.sqlite);
    const tables = db
      .prepare<[], { name: string }>(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
      )
      .all()
      .map((r) => r.name);
    const columns: Record<string, string> = {};
    const indexes: string[] = [];
    for (const t of tables) {
      const info = db.pragma(`table_info(${t})`) as {
        name: string;
        type: string;
        notnull: number;
        pk: number;
      }[];
      for (const c of info)
        columns[`${t}.${c.name}`] =
          `${SQLITE_TYPES[c.type] ?? c.type} ${c.notnull || c.pk ? 'not null' : 'null'}`;
      const pk = info
        .filter((c) => c.pk > 0)
        .sort((a, b) => a.pk - b.pk)
        .map((c) => c.name);
      if (pk.length) indexes.push(`${t}(${pk.join(',')}) unique`);
      const list = db.pragma(`index_list(${t})`) as { name: string; unique: number; origin: string }[];
      for (const ix of list) {
        if (ix.origin === 'pk') continue; // counted above, from the table's columns
        const cols = (db.pragma(`index_info(${ix.name})`) as { seqno: number; name: string }[])
          .sort((a, b) => a.seqno - b.seqno)
          .map((c) => c.name)
          .join(',');
        indexes.push(
          ix.origin === 'c'
            ? `${ix.name}: ${t}(${cols})${ix.unique ? ' unique' : ''}`
            : `${t}(${cols}) unique`,
        );
      }
    }
    const triggers = db
      .prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
      .all()
      .map((r) => r.name);
    return { tables, columns, indexes: indexes.sort(), triggers };
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function postgresSchema(db: PostgresDriver): Promise<Schema> {
  const tables = (
    await db.all<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables
       WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> 'schema_version' ORDER BY table_name`,
    )
  ).map((r) => r.table_name);
  const columns: Record<string, string> = {};
  for (const c of await db.all<{
    table_name: string;
    column_name: string;
    data_type: string;
    is_nullable: string;
  }>(
    `SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
     WHERE table_schema = 'public' AND table_name <> 'schema_version'`,
  ))
    columns[`${c.table_name}.${c.column_name}`] =
      `${c.data_type} ${c.is_nullable === 'YES' ? 'null' : 'not null'}`;
  const indexes = (
    await db.all<{ tbl: string; name: string; cols: string; uniq: boolean; constraint_backed: boolean }>(
      `SELECT t.relname AS tbl, i.relname AS name, ix.indisunique AS uniq,
              EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid) AS constraint_backed,
              (SELECT string_agg(a.attname, ',' ORDER BY k.ord) FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum) AS cols
       FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_class t ON t.oid = ix.indrelid
       JOIN pg_namespace n ON n.oid = t.relnamespace
       WHERE n.nspname = 'public' AND t.relname <> 'schema_version'`,
    )
  )
    .map((r) =>
      r.constraint_backed
        ? `${r.tbl}(${r.cols}) unique`
        : `${r.name}: ${r.tbl}(${r.cols})${r.uniq ? ' unique' : ''}`,
    )
    .sort();
  const triggers = (
    await db.all<{ trigger_name: string }>(
      "SELECT DISTINCT trigger_name FROM information_schema.triggers WHERE trigger_schema = 'public' ORDER BY trigger_name",
    )
  ).map((r) => r.trigger_name);
  return { tables, columns, indexes, triggers };
}

if (!postgresBin) console.warn(POSTGRES_MISSING);

describe.skipIf(!postgresBin)('PostgreSQL migrations (a real PostgreSQL)', () => {
  let pgsrv: TestPostgres;

  beforeAll(async () => {
    pgsrv = await startTestPostgres();
  });
  afterAll(async () => {
    await pgsrv?.destroy();
  });

  it('gives every SQLite migration a PostgreSQL twin of the same number and name', () => {
    expect(PG_MIGRATIONS.map((m) => m.version)).toEqual(sqliteMigrationVersions());
    for (const m of MIGRATIONS) expect(PG_MIGRATIONS.find((p) => p.version === m.version)?.name).toBe(m.name);
  });

  it('builds the same tables, columns, nullability, unique rules, indexes and triggers as SQLite', async () => {
    const db = new PostgresDriver(await pgsrv.createDatabase('parity'), { max: 2 });
    try {
      expect(await db.migrate()).toBe(PG_MIGRATIONS.at(-1)!.version);
      expect(await db.schemaVersion()).toBe(PG_MIGRATIONS.at(-1)!.version);
      const pgSchema = await postgresSchema(db);
      const liteSchema = await sqliteSchema();
      expect(pgSchema.tables).toEqual(liteSchema.tables);
      expect(pgSchema.columns).toEqual(liteSchema.columns);
      expect(pgSchema.indexes).toEqual(liteSchema.indexes);
      expect(pgSchema.triggers).toEqual(liteSchema.triggers);
      // The exactly-once rule for reports, across every node.
      expect(pgSchema.indexes).toContain('device_events(device_id,event_id) unique');
    } finally {
      await db.close();
    }
  });

  it('keeps device_tags equal to devices.tags through the triggers, as SQLite does', async () => {
    const db = new PostgresDriver(await pgsrv.createDatabase('tags'), { max: 2 });
    try {
      await db.migrate();
      const insert = `INSERT INTO devices (id, public_key, status, tags, created, updated) VALUES (?, 'k', 'accepted', ?, 1, 1)`;
      await db.run(insert, ['d1', '["lab","eu"]']);
      await db.run(insert, ['d2', '["eu"]']);
      const tags = async () =>
        (
          await db.all<{ t: string }>(
            "SELECT tag || ':' || device_id AS t FROM device_tags ORDER BY tag, device_id",
          )
        ).map((r) => r.t);
      expect(await tags()).toEqual(['eu:d1', 'eu:d2', 'lab:d1']);
      await db.run('UPDATE devices SET tags = ? WHERE id = ?', ['["us"]', 'd1']);
      expect(await tags()).toEqual(['eu:d2', 'us:d1']);
      await db.run('DELETE FROM devices WHERE id = ?', ['d2']);
      expect(await tags()).toEqual(['us:d1']);
    } finally {
      await db.close();
    }
  });

  it('lets two nodes migrate one database at once: each migration applied exactly once', async () => {
    const url = await pgsrv.createDatabase('race');
    const a = new PostgresDriver(url, { max: 2, applicationName: 'node-a' });
    const b = new PostgresDriver(url, { max: 2, applicationName: 'node-b' });
    try {
      const [va, vb] = await Promise.all([a.migrate(), b.migrate()]);
      expect(va).toBe(PG_MIGRATIONS.at(-1)!.version);
      expect(vb).toBe(va);
      const rows = await a.all<{ version: number }>('SELECT version FROM schema_version ORDER BY version');
      expect(rows.map((r) => r.version)).toEqual(PG_MIGRATIONS.map((m) => m.version));
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('refuses a database whose schema is newer than this server with FLOTILLA_ERR_STORE_SCHEMA_NEWER', async () => {
    const url = await pgsrv.createDatabase('newer');
    const db = new PostgresDriver(url, { max: 2 });
    try {
      await db.migrate();
      const newer = PG_MIGRATIONS.at(-1)!.version + 1;
      await db.run('INSERT INTO schema_version (version, name, applied) VALUES (?, ?, ?)', [
        newer,
        'from the future',
        1,
      ]);
      const err = await db.migrate().catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'FLOTILLA_ERR_STORE_SCHEMA_NEWER' });
      expect((err as Error).message).toContain(`database schema ${newer} is newer than this server`);
      expect((err as { hint: string }).hint.length).toBeGreaterThan(10);
      // Nothing was changed by the refused start.
      expect(await db.schemaVersion()).toBe(newer);
    } finally {
      await db.close();
    }
  });
});
