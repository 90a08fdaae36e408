import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Sql } from '../sql.js';
import { type Lease, type LeaseOptions, takeLeaseEpoch } from '../sql-lease.js';
import { describeTarget, poolConfig } from './connection.js';
import { mapPgError } from './pg-errors.js';

/** The first key of every lease's advisory lock ('flot'); the second is hashtext(name). */
const LEASE_LOCK_NAMESPACE = 1718382452;

export interface PostgresLeaseOptions extends LeaseOptions {
  /** How often a waiting node tries the lock (and how soon it takes over once it is free). */
  pollMs?: number;
  /** How often the holder checks its connection; a check that fails or hangs ends its hold. */
  checkMs?: number;
}

/**
 * A lease held as a session-level advisory lock on a connection of its own. PostgreSQL releases
 * the lock the moment that session ends — the node's process died (its socket closed), the
 * connection was terminated, or the node stopped — so a waiting node takes over on its next try,
 * without waiting out a TTL. The holder learns of the loss from the connection's error, or from
 * its periodic check when the network went silent, and stops acting (onLost). Each acquisition
 * bumps the lease's epoch (cluster_leases) so writes made under an old holder can be fenced off.
 */
export class PostgresLease implements Lease {
  epoch: number | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wake = new AbortController();
  private readonly config: pg.ClientConfig;
  private readonly target: string;
  private readonly pollMs: number;
  private readonly checkMs: number;

  constructor(
    url: string,
    private readonly sql: Sql,
    private readonly opts: PostgresLeaseOptions,
  ) {
    const config = poolConfig(url, { applicationName: `flotilla-lease:${opts.node}` });
    this.config = { ...config, connectionTimeoutMillis: config.connectionTimeoutMillis };
    this.target = describeTarget(config);
    this.pollMs = opts.pollMs ?? 500;
    this.checkMs = opts.checkMs ?? 1000;
  }

  get name(): string {
    return this.opts.name;
  }

  start(): void {
    this.stopped = false;
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake.abort();
    await this.loop;
    this.loop = undefined;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const reason = await this.session().catch(
        (err: unknown) => (mapPgError(err, this.target) as Error).message,
      );
      this.lose(reason);
      await this.pause(this.pollMs);
    }
  }

  /** One connection: wait for the lock, hold it while the connection lives; returns why it ended. */
  private async session(): Promise<string> {
    const client = new pg.Client(this.config);
    let dead: string | undefined;
    const die = (why: string) => {
      dead ??= why;
      this.lose(why); // at once: the lock may already be someone else's
      this.wake.abort();
    };
    client.on('error', (err) => die(`lease connection failed: ${err.message}`));
    client.on('end', () => die('lease connection closed'));
    try {
      await client.connect();
      const lock = [LEASE_LOCK_NAMESPACE, this.opts.name];
      while (!this.stopped && !dead) {
        const r = await withTimeout(
          client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', lock),
          this.checkMs * 2,
          'lease lock attempt timed out',
        );
        if (r.rows[0]?.ok) break;
        await this.pause(this.pollMs);
      }
      if (this.stopped || dead) return dead ?? 'stopped';
      const now = (this.opts.clock ?? Date.now)();
      this.epoch = await takeLeaseEpoch(this.sql, this.opts.name, this.opts.node, now);
      this.opts.onAcquired?.(this.epoch);
      while (!this.stopped && !dead) {
        await this.pause(this.checkMs);
        if (this.stopped || dead) break;
        await withTimeout(client.query('SELECT 1'), this.checkMs * 2, 'lease connection check timed out');
      }
      return dead ?? 'stopped';
    } finally {
      // Ending the session releases the advisory lock; a broken socket is simply dropped.
      await withTimeout(client.end(), 2000, 'close').catch(() => {});
    }
  }

  private lose(reason: string): void {
    if (this.epoch === undefined) return;
    this.epoch = undefined;
    this.opts.onLost?.(reason);
  }

  /** Sleeps, unless the connection dies or the lease is stopped meanwhile. */
  private async pause(ms: number): Promise<void> {
    if (this.wake.signal.aborted) this.wake = new AbortController();
    await sleep(ms, undefined, { signal: this.wake.signal }).catch(() => {});
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(what)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
