import type { Logger } from 'pino';
import { inBackground } from '../store/background.js';
import type { Sql } from '../store/sql.js';
import { type Lease, readLease } from '../store/sql-lease.js';

/** The lease whose holder runs the rollout engine and the fleet-wide timers. */
export const ENGINE_LEASE = 'rollout-engine';

/** Work that must run on exactly one node at a time. */
export interface EngineDuty {
  readonly name: string;
  start(): void | Promise<void>;
  stop(): void;
}

export interface EngineStatus {
  /** The node the lease table names (after a crash: the dead node, until another takes over). */
  holder: string | null;
  epoch: number | null;
  /** True when this node holds the lease now. */
  here: boolean;
}

/**
 * Starts the engine's duties (rollout passes, retention, version samples) when this node takes
 * the engine lease and stops them the moment it loses it. Alone on SQLite the node holds the
 * lease from start to stop; sharing PostgreSQL, another node takes over within seconds of this
 * one's death, and a write this one still attempts is fenced off by the lease's epoch.
 */
export class EngineRole {
  private lease: Lease | null = null;

  constructor(
    private readonly sql: Sql,
    private readonly duties: readonly EngineDuty[],
    private readonly log: Logger,
  ) {}

  private starting: Promise<void> | null = null;

  /**
   * Wires the lease (made with `acquired` and `lost` as its callbacks) and starts contending. A
   * lease taken at once (the embedded default's) has its duties started when this resolves.
   */
  async run(lease: Lease): Promise<void> {
    this.lease = lease;
    await lease.start();
    await this.starting;
  }

  readonly acquired = (epoch: number): void => {
    this.log.info({ lease: ENGINE_LEASE, epoch }, 'this node runs the rollout engine');
    this.starting = this.startDuties();
  };

  private async startDuties(): Promise<void> {
    for (const duty of this.duties)
      await Promise.resolve(duty.start()).catch((err: unknown) =>
        inBackground(this.log, `${duty.name} start`, Promise.reject(err)),
      );
  }

  readonly lost = (reason: string): void => {
    for (const duty of this.duties) duty.stop();
    if (reason !== 'stopped')
      this.log.warn({ lease: ENGINE_LEASE, reason }, 'this node stopped the rollout engine');
  };

  /** The epoch while this node holds the lease (fences the engine's writes). */
  get epoch(): number | undefined {
    return this.lease?.epoch;
  }

  async status(): Promise<EngineStatus> {
    const row = await readLease(this.sql, ENGINE_LEASE);
    return { holder: row?.holder ?? null, epoch: row?.epoch ?? null, here: this.epoch !== undefined };
  }

  async stop(): Promise<void> {
    await this.lease?.stop();
  }
}
