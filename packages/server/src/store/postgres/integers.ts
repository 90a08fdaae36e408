import pg from 'pg';
import { StoreError } from '../../errors.js';

/**
 * PostgreSQL sends BIGINT (counts, millisecond times) and NUMERIC (sum, avg) as text, because they
 * may exceed JavaScript's exact integers. The store's values never do, so they arrive as numbers;
 * one that would lose precision is refused with a coded error instead of silently rounded.
 */
const INT8 = 20;
const NUMERIC = 1700;

function toSafeNumber(text: string): number {
  const n = Number(text);
  if (Number.isInteger(n) && !Number.isSafeInteger(n))
    throw new StoreError('FLOTILLA_ERR_STORE_INTEGER', `${text} cannot be read as an exact number`);
  return n;
}

/** Type parsers for one pool (the process-wide pg defaults stay untouched). */
export const storeTypes: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === INT8 || oid === NUMERIC) return toSafeNumber;
    return pg.types.getTypeParser(oid, format);
  }) as pg.CustomTypesConfig['getTypeParser'],
};
