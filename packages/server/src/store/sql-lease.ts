import { StoreError } from '../errors.js';
import type { Sql } from './sql.js';

/**
 * A named lease ("rollout-engine"): among all server nodes at most one holds it, and work done
 * under it is fenced by an epoch that grows with every change of holder. The holder learns when
 * it lost the lease (onLost) and must stop; a write it still attempts through `fenced` is refused.
 */
export interface Lease {
  readonly name: string;
  /** The fencing epoch while this node holds the lease; undefined otherwise. */
  readonly epoch: number | undefined;
  /** Starts trying to acquire (and then keeps holding) the lease. */
  start(): void;
  /** Gives the lease up (another node may take it at once) and stops trying. */
  stop(): Promise<void>;
}

export interface LeaseOptions {
  name: string;
  /** This node's name, recorded as the holder (shown to operators). */
  node: string;
  onAcquired?: (epoch: number) => void;
  onLost?: (reason: string) => void;
  /** Clock for the `acquired` column (tests). */
  clock?: () => number;
}

/** Records `holder` as the lease's new holder under the next epoch, and returns that epoch. */
export async function takeLeaseEpoch(sql: Sql, name: string, holder: string, now: number): Promise<number> {
  const row = await sql.get<{ epoch: number }>(
    `INSERT INTO cluster_leases (name, holder, epoch, acquired) VALUES (?, ?, 1, ?)
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, epoch = cluster_leases.epoch + 1,
       acquired = excluded.acquired
     RETURNING epoch`,
    [name, holder, now],
  );
  return row!.epoch;
}

/** Who holds the lease now, as the table says (null: nobody ever took it). */
export async function readLease(sql: Sql, name: string): Promise<{ holder: string; epoch: number } | null> {
  const row = await sql.get<{ holder: string; epoch: number }>(
    'SELECT holder, epoch FROM cluster_leases WHERE name = ?',
    [name],
  );
  return row ?? null;
}

/**
 * Runs fn in one transaction only while `epoch` is still the lease's epoch; otherwise writes
 * nothing and throws FLOTILLA_ERR_STORE_LEASE_LOST. On PostgreSQL the lease row is read FOR SHARE,
 * so a new holder's epoch change waits for this transaction, and every write made under the old
 * epoch lands before any made under the new one.
 */
export async function fenced<T>(
  sql: Sql,
  name: string,
  epoch: number | undefined,
  fn: (tx: Sql) => Promise<T>,
): Promise<T> {
  if (epoch === undefined) throw new StoreError('FLOTILLA_ERR_STORE_LEASE_LOST', `lease ${name} is not held`);
  return sql.tx(async (tx) => {
    const lock = tx.dialect === 'postgres' ? 'FOR SHARE' : '';
    const row = await tx.get<{ epoch: number }>(`SELECT epoch FROM cluster_leases WHERE name = ? ${lock}`, [
      name,
    ]);
    if (row?.epoch !== epoch)
      throw new StoreError(
        'FLOTILLA_ERR_STORE_LEASE_LOST',
        `lease ${name}: epoch ${epoch} ended (now ${row?.epoch ?? 'none'})`,
      );
    return fn(tx);
  });
}

/**
 * The lease of the embedded default: one server process owns its SQLite file, so it holds every
 * lease from start to stop (the epoch still grows on each start, like a cluster's).
 */
export class LocalLease implements Lease {
  epoch: number | undefined;
  private starting: Promise<void> | undefined;

  constructor(
    private readonly sql: Sql,
    private readonly opts: LeaseOptions,
  ) {}

  get name(): string {
    return this.opts.name;
  }

  /** Resolves once the epoch is taken (and onAcquired ran), so a start can wait for it. */
  start(): Promise<void> {
    const now = (this.opts.clock ?? Date.now)();
    this.starting ??= takeLeaseEpoch(this.sql, this.opts.name, this.opts.node, now).then(
      (epoch) => {
        this.epoch = epoch;
        this.opts.onAcquired?.(epoch);
      },
      (err: Error) => this.opts.onLost?.(err.message),
    );
    return this.starting;
  }

  async stop(): Promise<void> {
    await this.starting;
    if (this.epoch !== undefined) this.opts.onLost?.('stopped');
    this.epoch = undefined;
    this.starting = undefined;
  }
}
