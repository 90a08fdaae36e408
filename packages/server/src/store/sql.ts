/**
 * The one seam between the store's repositories and a database engine. Repositories write their
 * SQL once, in the subset SQLite and PostgreSQL share (`?` placeholders, `ON CONFLICT`,
 * `RETURNING`, `COALESCE`); a driver runs it on its engine. Two drivers implement it: SQLite
 * (better-sqlite3, the embedded default, one process) and PostgreSQL (several server nodes).
 *
 * Every call is asynchronous, because PostgreSQL's are; the SQLite driver answers at once.
 */

/** What a placeholder may bind: integers are safe JavaScript numbers (milliseconds, counters). */
export type SqlValue = string | number | null;

export type SqlParams = readonly SqlValue[];

export type SqlDialect = 'sqlite' | 'postgres';

export interface SqlRunResult {
  /** Rows inserted, updated or deleted. */
  changes: number;
}

/** A connection, or a transaction on one: the same calls either way. */
export interface Sql {
  readonly dialect: SqlDialect;
  /** Every row the statement returns (columns as named in the SQL, integers as numbers). */
  all<Row>(sql: string, params?: SqlParams): Promise<Row[]>;
  /** The first row, or undefined. */
  get<Row>(sql: string, params?: SqlParams): Promise<Row | undefined>;
  run(sql: string, params?: SqlParams): Promise<SqlRunResult>;
  /**
   * Runs fn in one transaction on one connection: all of it or nothing. Inside fn use only the
   * `Sql` it is given; a nested call becomes a savepoint. No other statement of this process
   * runs inside it.
   */
  tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T>;
}

/** A driver: a `Sql` that owns its connection(s) and the schema's migrations. */
export interface SqlDriver extends Sql {
  /** Applies every pending migration; refuses a schema newer than this server. Returns the version. */
  migrate(): Promise<number>;
  /** The schema version the database holds now. */
  schemaVersion(): Promise<number>;
  close(): Promise<void>;
}
