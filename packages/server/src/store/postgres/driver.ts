import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { ServerError } from '../../errors.js';
import type { Sql, SqlDriver, SqlParams, SqlRunResult } from '../sql.js';
import { checkParams } from '../sql-params.js';
import { asStoreConflict } from '../store-conflict.js';
import { describeTarget, type PostgresConnectionOptions, poolConfig } from './connection.js';
import { migratePostgres, postgresSchemaVersion } from './migrate.js';
import { isRetryable, mapPgError } from './pg-errors.js';
import { toPgPlaceholders } from './placeholders.js';

export interface PostgresDriverOptions extends PostgresConnectionOptions {
  /** Runs of a transaction that hit a serialization failure or deadlock, before giving up. */
  txAttempts?: number;
}

type Queryable = Pick<pg.PoolClient, 'query'>;

/** One statement of the shared subset on a pool or a client; connection failures come back coded. */
async function query(on: Queryable, target: string, sql: string, params: SqlParams = []) {
  checkParams(params);
  try {
    return await on.query({ text: toPgPlaceholders(sql), values: params as unknown[] });
  } catch (err) {
    throw asStoreConflict(mapPgError(err, target));
  }
}

/** The calls of `Sql` over one way of running a statement (the pool, or a transaction's client). */
abstract class PgSql implements Sql {
  readonly dialect = 'postgres' as const;
  protected abstract on(): Queryable;
  protected abstract readonly target: string;

  async all<Row>(sql: string, params?: SqlParams): Promise<Row[]> {
    return (await query(this.on(), this.target, sql, params)).rows as Row[];
  }

  async get<Row>(sql: string, params?: SqlParams): Promise<Row | undefined> {
    return (await query(this.on(), this.target, sql, params)).rows[0] as Row | undefined;
  }

  async run(sql: string, params?: SqlParams): Promise<SqlRunResult> {
    return { changes: (await query(this.on(), this.target, sql, params)).rowCount ?? 0 };
  }

  abstract tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T>;
}

/** Statements inside a transaction: one checked-out client; a nested tx is a savepoint. */
class PgTxSql extends PgSql {
  private savepoints = 0;

  constructor(
    private readonly client: pg.PoolClient,
    protected readonly target: string,
  ) {
    super();
  }

  protected on(): Queryable {
    return this.client;
  }

  async tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    const name = `flotilla_sp_${++this.savepoints}`;
    await this.run(`SAVEPOINT ${name}`);
    try {
      const out = await fn(this);
      await this.run(`RELEASE SAVEPOINT ${name}`);
      return out;
    } catch (err) {
      await this.run(`ROLLBACK TO SAVEPOINT ${name}`);
      throw err;
    }
  }
}

/**
 * The PostgreSQL store driver: a pool of connections to one database shared by every server node.
 * A transaction holds one client from BEGIN to COMMIT; one that PostgreSQL aborts for a
 * serialization failure or a deadlock runs again (a bounded number of times, after a random
 * pause so the two runs that collided do not collide again).
 */
export class PostgresDriver extends PgSql implements SqlDriver {
  readonly pool: pg.Pool;
  protected readonly target: string;
  private readonly txAttempts: number;

  constructor(url: string, opts: PostgresDriverOptions = {}) {
    super();
    const config = poolConfig(url, opts);
    this.target = describeTarget(config);
    this.txAttempts = opts.txAttempts ?? 5;
    this.pool = new pg.Pool(config);
    // An idle connection whose server went away: the pool drops it; the next query reconnects.
    this.pool.on('error', () => {});
  }

  protected on(): Queryable {
    return this.pool;
  }

  async tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.txOnce(fn);
      } catch (err) {
        if (!isRetryable(err) || attempt >= this.txAttempts) throw err;
        await sleep(Math.random() * 20 * 2 ** attempt);
      }
    }
  }

  private async txOnce<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw mapPgError(err, this.target);
    }
    // A checked-out client has no listener of its own: a server gone between statements must
    // fail the next statement, not crash the process.
    let broken: unknown;
    const onError = (err: unknown) => {
      broken = err;
    };
    client.on('error', onError);
    const sql = new PgTxSql(client, this.target);
    try {
      await sql.run('BEGIN');
      const out = await fn(sql);
      // COMMIT of a transaction a failed statement aborted answers ROLLBACK, not an error: fn
      // caught that failure without a savepoint (SQLite would have kept the rest). Never report
      // such a transaction as committed.
      if ((await query(client, this.target, 'COMMIT')).command === 'ROLLBACK')
        throw new ServerError(
          'FLOTILLA_ERR_SERVER_STORE',
          'PostgreSQL rolled the transaction back: a statement in it failed and the error was caught without a savepoint (contain a write that may fail in tx.tx())',
        );
      return out;
    } catch (err) {
      if (!broken)
        await sql.run('ROLLBACK').catch((e: unknown) => {
          broken = e; // the connection is unusable: the pool must not hand it out again
        });
      throw err;
    } finally {
      client.off('error', onError);
      client.release(broken ? (broken as Error) : undefined);
    }
  }

  migrate(): Promise<number> {
    return migratePostgres(this.pool, this.target);
  }

  schemaVersion(): Promise<number> {
    return postgresSchemaVersion(this.pool, this.target);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** Opens the PostgreSQL store at url and applies pending migrations (serialized across nodes). */
export async function openPostgresDriver(
  url: string,
  opts: PostgresDriverOptions = {},
): Promise<PostgresDriver> {
  const driver = new PostgresDriver(url, opts);
  try {
    await driver.migrate();
    return driver;
  } catch (err) {
    await driver.close().catch(() => {});
    throw err;
  }
}
