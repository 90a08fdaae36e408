import type { DeviceEventMessage } from '@flotilla/protocol';
import type { Logger } from 'pino';
import type { ServerLimits } from '../limits.js';
import type { Metrics } from '../metrics.js';
import type { Store } from '../store/store.js';
import type { Report } from './report.js';
import { commutingRuns, precheck, writeRun } from './report-batch.js';

export type { Report } from './report.js';

/** An event newly recorded in this transaction that names a deployment. */
export interface DeploymentEvent {
  deviceId: string;
  event: DeviceEventMessage;
}

/** Work for after the commit of the transaction that did it (metrics, scheduling). */
export type AfterCommit = () => void;

/**
 * The rollout bookkeeping, called inside the transaction (`tx`) with newly recorded events that
 * name a deployment, in arrival order: on PostgreSQL a whole run of a batch at once, several of
 * one device included (the hook applies them in that order), elsewhere one at a time. A throw
 * undoes what the call wrote together with its events. Returns what to do once `tx` committed:
 * it runs only for work that committed (not for a run undone, nor twice for a run applied again
 * report by report).
 */
export type EventHook = (
  tx: Store,
  events: readonly DeploymentEvent[],
  now: number,
) => Promise<AfterCommit | undefined>;
/** Called after a batch committed (SSE, rollout re-evaluation); `fresh`: the report changed something. */
export type AppliedHook = (applied: { report: Report; fresh: boolean }[]) => void;

/** SQLite result codes that say the store cannot write now (not that the report is bad). */
const UNWRITABLE = /^SQLITE_(FULL|IOERR|READONLY|BUSY|LOCKED|CANTOPEN|NOMEM)/;
/**
 * PostgreSQL's: out of disk or memory (53), I/O (58), shut down or cancelled (57), connection
 * (08), a read-only server (25006), and a serialization failure or deadlock (40001, 40P01: the
 * driver runs the whole transaction again).
 */
const PG_UNWRITABLE = /^(5[378]|08)[0-9A-Z]{3}$|^(25006|40001|40P01)$/;

function storeUnwritable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return (
    typeof code === 'string' &&
    (UNWRITABLE.test(code) ||
      PG_UNWRITABLE.test(code) ||
      code === 'ENOSPC' ||
      code === 'FLOTILLA_ERR_STORE_UNAVAILABLE')
  );
}

const namesDeployment = (r: Report): r is Report & { channel: 'events'; message: { deploymentId: string } } =>
  r.channel === 'events' && r.message.deploymentId !== null;

interface Pending {
  report: Report;
  done?: (err?: Error | null) => void;
}

/**
 * Takes device reports inside the server process (never through an MQTT subscriber) and writes
 * them in batched transactions where one bad report is dropped alone and cannot sink the batch
 * (on SQLite report by report; on PostgreSQL a few multi-row statements per batch, see
 * applyBatched). The broker's acknowledgement waits for the commit: a report a device saw acknowledged
 * is on disk, and one it did not see acknowledged is resent (event ids make resends harmless).
 * Callbacks run from the flush timer, never synchronously from submit (a deep synchronous chain
 * under backlog overflowed the stack in measurements).
 */
export class ReportIngestor {
  private queue: Pending[] = [];
  private timer: NodeJS.Timeout | null = null;
  /** The batch being written: one at a time, so batches commit in the order they were taken. */
  private flushing: Promise<void> | null = null;
  private closed = false;
  private readonly eventHooks: EventHook[] = [];
  private readonly appliedHooks: AppliedHook[] = [];

  constructor(
    private readonly store: Store,
    private readonly limits: ServerLimits,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly clock: () => number = Date.now,
  ) {}

  onEvent(hook: EventHook): void {
    this.eventHooks.push(hook);
  }

  onApplied(hook: AppliedHook): void {
    this.appliedHooks.push(hook);
  }

  get depth(): number {
    return this.queue.length;
  }

  /** Queues a report; false when the queue is full (the caller refuses it and the device retries). */
  submit(report: Report, done?: (err?: Error | null) => void): boolean {
    if (this.closed || this.queue.length >= this.limits.ingestMaxQueue) {
      this.metrics.reportsRefused.inc();
      return false;
    }
    this.queue.push(done ? { report, done } : { report });
    this.metrics.ingestQueue.set(this.queue.length);
    if (!this.timer && !this.flushing)
      this.timer = setTimeout(() => this.flushSoon(), this.limits.ingestFlushMs);
    return true;
  }

  /**
   * Applies one report now, in its own transaction (used where the transport delivers one at a
   * time). No savepoint: the report is the whole transaction, so a report the store refuses rolls
   * it back and is dropped alone, as in a batch.
   */
  async applyNow(report: Report): Promise<void> {
    const now = this.clock();
    let fresh = false;
    let after: AfterCommit[] = [];
    try {
      [fresh, after] = await this.store.tx(async (tx) => {
        const done: AfterCommit[] = [];
        return [await this.applyUnsafe(tx, report, now, done), done] as const;
      });
    } catch (err) {
      if (storeUnwritable(err)) throw err;
      this.dropped(report, err);
    }
    this.committed(after);
    this.notify([{ report, fresh }]);
  }

  private flushSoon(): void {
    this.timer = null;
    const flushing: Promise<void> = this.flush().finally(() => {
      this.flushing = null;
      if (this.queue.length > 0 && !this.closed && !this.timer)
        this.timer = setTimeout(
          () => this.flushSoon(),
          this.queue.length > this.limits.ingestMaxBatch ? 0 : this.limits.ingestFlushMs,
        );
    });
    this.flushing = flushing;
  }

  /** Writes up to one batch in one transaction, then acknowledges it. Never rejects. */
  async flush(): Promise<void> {
    if (this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.limits.ingestMaxBatch);
    this.metrics.ingestQueue.set(this.queue.length);
    const now = this.clock();
    const end = this.metrics.ingestFlushSeconds.startTimer();
    let applied: { report: Report; fresh: boolean }[];
    let after: AfterCommit[];
    try {
      // Collected per attempt: the driver may run the whole transaction again.
      [applied, after] = await this.store.tx(async (tx) => {
        const reports = batch.map((p) => p.report);
        const done: AfterCommit[] = [];
        const fresh =
          tx.sql.dialect === 'postgres'
            ? await this.applyBatched(tx, reports, now, done)
            : await this.applyInTurn(tx, reports, now, done);
        return [reports.map((report, i) => ({ report, fresh: fresh[i]! })), done] as const;
      });
    } catch (err) {
      // The whole batch rolled back: nobody is acknowledged, devices resend.
      this.log.error({ err, size: batch.length }, 'report batch failed; devices will resend');
      for (const p of batch) p.done?.(new Error('report not stored'));
      end();
      return;
    }
    end();
    this.metrics.reportsStored.inc(batch.length);
    for (const p of batch) p.done?.(null);
    this.committed(after);
    this.notify(applied);
  }

  /** Runs the event hooks' after-commit work (before the applied hooks, which act on it). */
  private committed(after: readonly AfterCommit[]): void {
    for (const fn of after) {
      try {
        fn();
      } catch (err) {
        this.log.error({ err }, 'event hook after commit failed');
      }
    }
  }

  private notify(applied: { report: Report; fresh: boolean }[]): void {
    for (const hook of this.appliedHooks) {
      try {
        hook(applied);
      } catch (err) {
        this.log.error({ err }, 'report hook failed');
      }
    }
  }

  private async applyInTurn(
    tx: Store,
    reports: readonly Report[],
    now: number,
    after: AfterCommit[],
  ): Promise<boolean[]> {
    const fresh: boolean[] = [];
    for (const r of reports) fresh.push(await this.applyOne(tx, r, now, after));
    return fresh;
  }

  /** Hands newly recorded deployment events to the event hooks; their after-commit work to `after`. */
  private async hook(
    tx: Store,
    events: readonly DeploymentEvent[],
    now: number,
    after: AfterCommit[],
  ): Promise<void> {
    if (events.length === 0) return;
    for (const hook of this.eventHooks) {
      const then = await hook(tx, events, now);
      if (then) after.push(then);
    }
  }

  /**
   * PostgreSQL: a statement per kind of report for a whole run of them (a round trip each,
   * instead of three or four per report), and one event hook call for the run's new events that
   * name a deployment. A report whose values the store would refuse is dropped first, alone. A run
   * whose statements (or hook) fail anyway is undone, its after-commit work dropped, and applied
   * report by report, each in its savepoint (the same outcome as without batching).
   */
  private async applyBatched(
    tx: Store,
    reports: readonly Report[],
    now: number,
    after: AfterCommit[],
  ): Promise<boolean[]> {
    const fresh = reports.map(() => false);
    const valid: number[] = [];
    reports.forEach((r, i) => {
      try {
        precheck(r, now);
        valid.push(i);
      } catch (err) {
        this.dropped(r, err);
      }
    });
    for (const run of commutingRuns(valid.map((i) => reports[i]!))) {
      const at = run.map((k) => valid[k]!);
      const runReports = at.map((i) => reports[i]!);
      let out: boolean[];
      try {
        const done: AfterCommit[] = [];
        out = await tx.tx(async (sp) => {
          const written = await writeRun(sp, runReports, now);
          const events: DeploymentEvent[] = [];
          runReports.forEach((r, k) => {
            if (written[k] && namesDeployment(r)) events.push({ deviceId: r.deviceId, event: r.message });
          });
          await this.hook(sp, events, now, done);
          return written;
        });
        after.push(...done);
        this.metrics.reportsDuplicate.inc(
          runReports.filter((r, k) => r.channel === 'events' && !out[k]).length,
        );
      } catch (err) {
        if (storeUnwritable(err)) throw err;
        this.log.debug({ err, size: at.length }, 'batched reports failed; applying them one by one');
        out = await this.applyInTurn(tx, runReports, now, after);
      }
      at.forEach((i, k) => {
        fresh[i] = out[k]!;
      });
    }
    return fresh;
  }

  private dropped(report: Report, err: unknown): void {
    this.metrics.reportsDropped.inc({ reason: 'store' });
    this.log.warn({ err, deviceId: report.deviceId, channel: report.channel }, 'report not applied');
  }

  /**
   * One report; a failure is logged and that report alone is dropped — unless the store itself
   * cannot write (disk full, read-only, I/O error): that fails the whole transaction, so nobody
   * is acknowledged and every report of it is delivered again. An event (several
   * statements) gets a savepoint; the other reports are one UPDATE each, which SQLite already
   * undoes by itself on failure (a savepoint there cost a third of a storm's ingest time).
   * PostgreSQL instead aborts the whole transaction on any failed statement: there every report
   * gets its savepoint.
   */
  private async applyOne(tx: Store, report: Report, now: number, after: AfterCommit[]): Promise<boolean> {
    try {
      if (report.channel !== 'events' && tx.sql.dialect === 'sqlite')
        return await this.applyUnsafe(tx, report, now, after);
      const done: AfterCommit[] = [];
      const fresh = await tx.tx((sp) => this.applyUnsafe(sp, report, now, done));
      after.push(...done);
      return fresh;
    } catch (err) {
      if (storeUnwritable(err)) throw err;
      this.dropped(report, err);
      return false;
    }
  }

  /** `after` gets the event hooks' after-commit work (only once the caller's write succeeded). */
  private async applyUnsafe(tx: Store, report: Report, now: number, after: AfterCommit[]): Promise<boolean> {
    const { devices, events } = tx;
    switch (report.channel) {
      case 'state':
        await devices.applyState(report.deviceId, report.message, now);
        return true;
      case 'inventory':
        await devices.applyInventory(report.deviceId, report.message, now);
        return true;
      case 'connection':
        // Not fresh: an offline from a node the device had already left (nothing changed).
        return await devices.setOnline(report.deviceId, report.online, now, report.node);
      case 'events': {
        await devices.seen(report.deviceId, now);
        const fresh = await events.insert(report.deviceId, report.message, now);
        if (!fresh) {
          this.metrics.reportsDuplicate.inc();
          return false;
        }
        if (namesDeployment(report))
          await this.hook(tx, [{ deviceId: report.deviceId, event: report.message }], now, after);
        return true;
      }
    }
  }

  /** Writes what is queued and stops taking reports. */
  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.closed = true;
    await this.flushing;
    while (this.queue.length > 0) await this.flush();
  }

  /** Drops the queue without writing (a crash, for tests): queued reports were never acknowledged. */
  abandon(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.queue = [];
    this.closed = true;
  }
}
