import type pg from 'pg';
import { ServerError, StoreError } from '../../errors.js';
import { checkByteOrder } from './collation.js';
import { PG_MIGRATIONS } from './migrations.js';
import { mapPgError } from './pg-errors.js';

/**
 * The key of the transaction-level advisory lock that serializes migrations across nodes: two
 * nodes starting at once take turns, and the second finds the work done. ('flotmigr' in ASCII.)
 */
export const MIGRATION_LOCK_KEY = '7380689661189876082';

const SCHEMA_TABLE = `CREATE TABLE IF NOT EXISTS schema_version (
  version BIGINT PRIMARY KEY,
  name    TEXT NOT NULL,
  applied BIGINT NOT NULL
)`;

const latest = PG_MIGRATIONS.at(-1)?.version ?? 0;

/**
 * Applies every pending migration, each in its own transaction that first takes the migration
 * lock and reads the version again (another node may have just applied it). A database newer than
 * this server is refused, as SQLite's is, before anything is changed; so is one that does not sort
 * text byte by byte (collation.ts).
 */
export async function migratePostgres(pool: pg.Pool, target: string): Promise<number> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw mapPgError(err, target);
  }
  let broken: Error | undefined;
  const onError = (err: Error) => {
    broken = err;
  };
  client.on('error', onError);
  try {
    await checkByteOrder(client);
    for (let step = 0; step <= PG_MIGRATIONS.length; step++) {
      if (!(await applyNext(client))) return latest;
    }
    throw new ServerError('FLOTILLA_ERR_SERVER_STORE', 'migrations did not converge');
  } catch (err) {
    broken ??= err instanceof ServerError || err instanceof StoreError ? undefined : (err as Error);
    throw mapPgError(err, target);
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}

/** One migration in one transaction; false when there was nothing left to apply. */
async function applyNext(client: pg.PoolClient): Promise<boolean> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(SCHEMA_TABLE);
    const current = await readVersion(client);
    if (current > latest)
      throw new StoreError(
        'FLOTILLA_ERR_STORE_SCHEMA_NEWER',
        `database schema ${current} is newer than this server (${latest}): a newer Flotilla server migrated it; upgrade this node`,
      );
    const next = PG_MIGRATIONS.find((m) => m.version > current);
    if (!next) {
      await client.query('COMMIT');
      return false;
    }
    await client.query(next.sql);
    await client.query('INSERT INTO schema_version (version, name, applied) VALUES ($1, $2, $3)', [
      next.version,
      next.name,
      Date.now(),
    ]);
    await client.query('COMMIT');
    return true;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

async function readVersion(on: Pick<pg.PoolClient, 'query'>): Promise<number> {
  const r = await on.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_version');
  return r.rows[0]?.v ?? 0;
}

/** The version the database holds; 0 for a database no Flotilla server has migrated. */
export async function postgresSchemaVersion(pool: pg.Pool, target: string): Promise<number> {
  try {
    return await readVersion(pool);
  } catch (err) {
    if ((err as { code?: string }).code === '42P01') return 0; // no schema_version table yet
    throw mapPgError(err, target);
  }
}
