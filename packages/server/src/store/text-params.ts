import { StoreError } from '../errors.js';
import type { SqlParams } from './sql.js';

/**
 * PostgreSQL text holds no NUL character (it refuses one with SQLSTATE 22021) where SQLite stores
 * it, so a NUL is refused on both engines, coded, before the statement runs: a name or id with one
 * is stored nowhere rather than on one engine only. JSON columns never carry one (JSON.stringify
 * writes it as the escape \u0000).
 */
export function checkNoNul(params: SqlParams): void {
  for (const p of params)
    if (typeof p === 'string' && p.includes('\0'))
      throw new StoreError(
        'FLOTILLA_ERR_STORE_TEXT',
        `a value of ${p.length} characters holds NUL at index ${p.indexOf('\0')}`,
      );
}
