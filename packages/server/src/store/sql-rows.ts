import type { SqlValue } from './sql.js';

/**
 * Multi-row statements (one round trip for a whole batch of reports) in the subset both engines
 * share: `VALUES (…), (…)`, whose columns both name column1, column2, … Rows per statement stay
 * well under PostgreSQL's 65,535 parameters.
 */
export const ROWS_PER_STATEMENT = 1000;

/** Splits list into runs of at most ROWS_PER_STATEMENT. */
export function* inChunks<T>(list: readonly T[]): Generator<T[]> {
  for (let i = 0; i < list.length; i += ROWS_PER_STATEMENT) yield list.slice(i, i + ROWS_PER_STATEMENT);
}

/** The SQL type of a `VALUES` column: PostgreSQL types an untyped parameter there as text. */
export type ColumnType = 'TEXT' | 'BIGINT';

/**
 * `VALUES` of rows.length rows with one placeholder per column, each cast to its type (an UPDATE
 * … FROM compares them with typed columns), and the parameters in order.
 */
export function valuesOf(
  types: readonly ColumnType[],
  rows: readonly (readonly SqlValue[])[],
): { sql: string; params: SqlValue[] } {
  const row = `(${types.map((t) => `CAST(? AS ${t})`).join(', ')})`;
  return { sql: `VALUES ${rows.map(() => row).join(', ')}`, params: rows.flat() };
}

/** The placeholders of `IN (…)` for these values. */
export const placeholdersFor = (values: readonly unknown[]): string => values.map(() => '?').join(', ');

/** Rows in id order: concurrent batches then lock the rows they share in the same order. */
export const sortedById = <T extends { id: string }>(list: readonly T[]): T[] =>
  [...list].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
