import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { ServerError } from '../errors.js';
import { MIGRATIONS } from './migrations.js';
import type { Sql, SqlDriver, SqlParams, SqlRunResult } from './sql.js';
import { checkParams } from './sql-params.js';
import { asStoreConflict } from './store-conflict.js';

type Statement = Database.Statement<unknown[]>;

/**
 * First come, first served: who holds it runs; the others wait in order. `acquire` resolves at
 * once (no queueing, no timer) when nobody holds it.
 */
class Turn {
  private held = false;
  private readonly waiting: (() => void)[] = [];

  get busy(): boolean {
    return this.held;
  }

  acquire(): Promise<void> | undefined {
    if (!this.held) {
      this.held = true;
      return undefined;
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Hands the turn to the next waiter (still held) or frees it. */
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.held = false;
  }
}

/**
 * The embedded store's driver: one better-sqlite3 connection. WAL (readers never block the single
 * writer), synchronous=NORMAL (durable at each checkpoint: a power cut may lose only the last
 * commits, never corrupt), foreign keys on. Statements are prepared once per SQL text.
 *
 * better-sqlite3 is synchronous on one connection, so a transaction is the whole connection's:
 * while `tx(fn)` awaits inside fn, no other statement of this process may run, or it would land
 * in (and be rolled back with) that transaction. A turn serializes them: with no transaction open
 * a statement runs at once (the fast path); while one is open, statements and transactions from
 * outside it wait their turn in order, and statements through the transaction's own `Sql` run
 * directly. Inside fn use only that `Sql` — the root one would wait for fn itself.
 */
export class SqliteDriver implements SqlDriver {
  readonly dialect = 'sqlite' as const;
  private readonly statements = new Map<string, Statement>();
  private readonly turn = new Turn();
  // Which transaction the running async code was started in, and which one is open now: a root
  // statement from inside the open one would wait for that transaction to end, that is for ever.
  private readonly inside = new AsyncLocalStorage<number>();
  private openTx = 0;
  private txCount = 0;

  private constructor(private readonly db: Database.Database) {}

  /** Opens (creating when missing) the database file; `migrate()` brings its schema up to date. */
  static open(file: string): SqliteDriver {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    return new SqliteDriver(db);
  }

  /** The database file (`:memory:` for an in-memory one). */
  get file(): string {
    return this.db.name;
  }

  /** How many distinct statements are prepared (each SQL text once). */
  get preparedCount(): number {
    return this.statements.size;
  }

  /** Runs a multi-statement script as is (migrations, maintenance such as ANALYZE). */
  async exec(script: string): Promise<void> {
    this.checkNotInsideOpenTx();
    await this.turn.acquire();
    try {
      this.db.exec(script);
    } finally {
      this.turn.release();
    }
  }

  prepare(sql: string): Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  allNow<Row>(sql: string, params: SqlParams = []): Row[] {
    checkParams(params);
    try {
      return this.prepare(sql).all(...params) as Row[];
    } catch (err) {
      throw asStoreConflict(err);
    }
  }

  getNow<Row>(sql: string, params: SqlParams = []): Row | undefined {
    checkParams(params);
    try {
      return this.prepare(sql).get(...params) as Row | undefined;
    } catch (err) {
      throw asStoreConflict(err);
    }
  }

  runNow(sql: string, params: SqlParams = []): SqlRunResult {
    checkParams(params);
    try {
      const s = this.prepare(sql);
      // A statement that returns rows (… RETURNING) is run for its rows; changes = rows returned.
      if (s.reader) return { changes: s.all(...params).length };
      return { changes: s.run(...params).changes };
    } catch (err) {
      throw asStoreConflict(err);
    }
  }

  /** Undoes a savepoint, unless the error already ended the whole transaction (SQLite does on a full disk). */
  rollbackTo(savepoint: string): void {
    if (!this.db.inTransaction) return;
    this.db.exec(`ROLLBACK TO ${savepoint}`);
    this.db.exec(`RELEASE ${savepoint}`);
  }

  /** Refuses to queue behind the transaction the caller runs inside (it would wait for itself). */
  private checkNotInsideOpenTx(): void {
    if (this.openTx !== 0 && this.inside.getStore() === this.openTx)
      throw new ServerError(
        'FLOTILLA_ERR_SERVER_STORE',
        "a statement inside a transaction went to the root store and would wait for that transaction for ever: use the transaction's store inside tx() (store.tx(async (tx) => tx.devices.get(…)))",
      );
  }

  /** Runs `now` at once when no transaction is open, else after the ones queued before it. */
  private async inTurn<T>(now: () => T): Promise<T> {
    if (!this.turn.busy) return now();
    this.checkNotInsideOpenTx();
    await this.turn.acquire();
    try {
      return now();
    } finally {
      this.turn.release();
    }
  }

  all<Row>(sql: string, params?: SqlParams): Promise<Row[]> {
    return this.inTurn(() => this.allNow<Row>(sql, params));
  }

  get<Row>(sql: string, params?: SqlParams): Promise<Row | undefined> {
    return this.inTurn(() => this.getNow<Row>(sql, params));
  }

  run(sql: string, params?: SqlParams): Promise<SqlRunResult> {
    return this.inTurn(() => this.runNow(sql, params));
  }

  async tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    this.checkNotInsideOpenTx();
    await this.turn.acquire();
    const id = ++this.txCount;
    this.openTx = id;
    try {
      this.db.exec('BEGIN IMMEDIATE');
      const tx = new SqliteTx(this, 0);
      try {
        const out = await this.inside.run(id, () => fn(tx));
        tx.end();
        this.db.exec('COMMIT');
        return out;
      } catch (err) {
        tx.end();
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw err;
      }
    } finally {
      this.openTx = 0;
      this.turn.release();
    }
  }

  async schemaVersion(): Promise<number> {
    return this.inTurn(() => this.db.pragma('user_version', { simple: true }) as number);
  }

  /** Applies every pending migration, each in its own transaction; refuses a newer schema. */
  async migrate(): Promise<number> {
    return this.inTurn(() => {
      const current = this.db.pragma('user_version', { simple: true }) as number;
      const latest = MIGRATIONS.at(-1)?.version ?? 0;
      if (current > latest)
        throw new ServerError(
          'FLOTILLA_ERR_SERVER_STORE',
          `database schema ${current} is newer than this server (${latest}); upgrade the server`,
        );
      for (const m of MIGRATIONS) {
        if (m.version <= current) continue;
        this.db.transaction(() => {
          this.db.exec(m.sql);
          this.db.pragma(`user_version = ${m.version}`);
        })();
      }
      return latest;
    });
  }

  async close(): Promise<void> {
    this.checkNotInsideOpenTx();
    await this.turn.acquire();
    try {
      this.statements.clear();
      if (this.db.open) this.db.close();
    } finally {
      this.turn.release();
    }
  }
}

/** A transaction (depth 0) or a savepoint in one: statements run directly on the connection. */
class SqliteTx implements Sql {
  readonly dialect = 'sqlite' as const;
  private open = true;
  // Savepoints opened through this one nest strictly, so siblings take turns.
  private readonly turn = new Turn();

  constructor(
    private readonly driver: SqliteDriver,
    private readonly depth: number,
  ) {}

  end(): void {
    this.open = false;
  }

  private check(): void {
    if (!this.open)
      throw new ServerError(
        'FLOTILLA_ERR_SERVER_STORE',
        'a statement used a transaction that has ended: use the store outside the transaction',
      );
  }

  async all<Row>(sql: string, params?: SqlParams): Promise<Row[]> {
    this.check();
    return this.driver.allNow<Row>(sql, params);
  }

  async get<Row>(sql: string, params?: SqlParams): Promise<Row | undefined> {
    this.check();
    return this.driver.getNow<Row>(sql, params);
  }

  async run(sql: string, params?: SqlParams): Promise<SqlRunResult> {
    this.check();
    return this.driver.runNow(sql, params);
  }

  async tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    this.check();
    await this.turn.acquire();
    const name = `sp${this.depth + 1}`;
    try {
      this.driver.runNow(`SAVEPOINT ${name}`);
      const inner = new SqliteTx(this.driver, this.depth + 1);
      try {
        const out = await fn(inner);
        inner.end();
        this.driver.runNow(`RELEASE ${name}`);
        return out;
      } catch (err) {
        inner.end();
        this.driver.rollbackTo(name);
        throw err;
      }
    } finally {
      this.turn.release();
    }
  }
}
