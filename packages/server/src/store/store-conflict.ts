import { StoreError } from '../errors.js';

/**
 * A duplicate key or a row still referred to, as either engine reports it (SQLite's extended
 * result codes, PostgreSQL's SQLSTATE 23505 / 23503). Both become FLOTILLA_ERR_STORE_CONFLICT, so
 * callers and the API answer the same on either engine. Engine messages name the constraint, never
 * the key's value (a token's hash stays out of error bodies).
 */
const CONFLICT_CODES = new Set([
  'SQLITE_CONSTRAINT_UNIQUE',
  'SQLITE_CONSTRAINT_PRIMARYKEY',
  'SQLITE_CONSTRAINT_FOREIGNKEY',
  '23505', // unique_violation
  '23503', // foreign_key_violation
]);

export function asStoreConflict(err: unknown): unknown {
  const e = err as { code?: unknown; message?: unknown } | null;
  if (typeof e?.code !== 'string' || !CONFLICT_CODES.has(e.code)) return err;
  return new StoreError('FLOTILLA_ERR_STORE_CONFLICT', String(e.message), { cause: err });
}
