import {
  postgresBin as bin,
  type LocalPostgres,
  POSTGRES_MISSING as MISSING,
  startPostgres,
} from '../../../../test/cluster/postgres.mjs';

/**
 * A real PostgreSQL for one test file, as a local process (test/cluster/postgres.mjs, which
 * `cluster-test` uses too): stopped and removed on teardown, killed at exit otherwise.
 */
export const postgresBin: string | undefined = bin;

export const POSTGRES_MISSING = `PostgreSQL tests skipped: ${MISSING}`;

export type TestPostgres = LocalPostgres;

/** `durable: true` keeps PostgreSQL's fsync on (for measurements); tests leave it off. */
export function startTestPostgres(
  database = 'flotilla',
  opts: { durable?: boolean } = {},
): Promise<TestPostgres> {
  return startPostgres(database, opts);
}
