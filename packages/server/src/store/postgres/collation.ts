import type pg from 'pg';
import { StoreError } from '../../errors.js';

/**
 * The store compares and sorts text as SQLite does, byte by byte: device ids page in id order,
 * an id-prefix search is the range [q, q + '~'), and lists sorted by id or name must read the
 * same on either engine. A database created with a language collation (en_US, ICU) sorts
 * 'devZ' after 'dev~' and ignores case and punctuation at first, which silently breaks those
 * searches; it is refused, before anything is created in it. The probe compares with the
 * database's own default collation, whatever its provider or PostgreSQL version.
 */
const PROBE = `SELECT ('B' < 'a' AND 'Z' < '_' AND '_' < 'a' AND '-' < '.' AND '9' < 'A'
    AND 'devZ' < 'dev~' AND 'dev-10' < 'dev-9') AS byte_order,
  (SELECT datcollate FROM pg_database WHERE datname = current_database()) AS collation,
  current_database() AS database`;

export async function checkByteOrder(on: Pick<pg.PoolClient, 'query'>): Promise<void> {
  const r = await on.query<{ byte_order: boolean; collation: string; database: string }>(PROBE);
  const row = r.rows[0];
  if (row?.byte_order) return;
  throw new StoreError(
    'FLOTILLA_ERR_STORE_COLLATION',
    `database ${row?.database} sorts text by a language collation (LC_COLLATE ${row?.collation}, or an ICU locale), not byte by byte`,
  );
}
