import { StoreError } from '../errors.js';
import type { SqlParams } from './sql.js';

/**
 * What either engine would store but the other could not, refused on both, coded, before the
 * statement runs (so a value is stored everywhere or nowhere):
 * - an integer beyond 2^53: PostgreSQL stores it but JavaScript cannot read it back exactly, and
 *   SQLite would hand it back rounded;
 * - a NUL character: PostgreSQL text holds none (SQLSTATE 22021) where SQLite stores it. JSON
 *   columns never carry one (JSON.stringify writes it as the escape \u0000).
 */
export function checkParams(params: SqlParams): void {
  for (const p of params) {
    if (typeof p === 'number' && Number.isInteger(p) && !Number.isSafeInteger(p))
      throw new StoreError('FLOTILLA_ERR_STORE_INTEGER', `parameter ${p} is not an exact integer`);
    if (typeof p === 'string' && p.includes('\0'))
      throw new StoreError(
        'FLOTILLA_ERR_STORE_TEXT',
        `a value of ${p.length} characters holds NUL at index ${p.indexOf('\0')}`,
      );
  }
}
