import type { DeviceEventMessage } from '@flotilla/protocol';
import type { Logger } from 'pino';
import type { ServerLimits } from '../limits.js';
import type { Metrics } from '../metrics.js';
import type { Store } from '../store/store.js';
import type { Report } from './report.js';
import { commutingRuns, precheck, writeRun } from './report-batch.js';

export type { Report } from './report.js';

/**
 * Called inside the report's transaction (`tx`) for a newly recorded event that names a
 * deployment (the rollout bookkeeping); other events are written in bulk without it.
 */
export type EventHook = (
  tx: Store,
  deviceId: string,
  event: DeviceEventMessage,
  now: number,
) => Promise<void>;
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
    try {
      fresh = await this.store.tx((tx) => this.applyUnsafe(tx, report, now));
    } catch (err) {
      if (storeUnwritable(err)) throw err;
      this.dropped(report, err);
    }
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
    try {
      applied = await this.store.tx(async (tx) => {
        const reports = batch.map((p) => p.report);
        const fresh =
          tx.sql.dialect === 'postgres'
            ? await this.applyBatched(tx, reports, now)
            : await this.applyInTurn(tx, reports, now);
        return reports.map((report, i) => ({ report, fresh: fresh[i]! }));
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
    this.notify(applied);
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

  private async applyInTurn(tx: Store, reports: readonly Report[], now: number): Promise<boolean[]> {
    const fresh: boolean[] = [];
    for (const r of reports) fresh.push(await this.applyOne(tx, r, now));
    return fresh;
  }

  /**
   * PostgreSQL: a statement per kind of report for a whole run of them (a round trip each,
   * instead of three or four per report). A report whose values the store would refuse is dropped
   * first, alone; an event that names a deployment (the hooks read and move it) is applied alone,
   * in its turn. A run whose statements fail anyway is undone and applied report by report, each
   * in its savepoint (the same outcome as without batching).
   */
  private async applyBatched(tx: Store, reports: readonly Report[], now: number): Promise<boolean[]> {
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
    const alone = (r: Report) =>
      r.channel === 'events' && r.message.deploymentId !== null && this.eventHooks.length > 0;
    for (const run of commutingRuns(
      valid.map((i) => reports[i]!),
      alone,
    )) {
      const at = run.map((k) => valid[k]!);
      const runReports = at.map((i) => reports[i]!);
      let out: boolean[];
      if (at.length === 1 && alone(runReports[0]!)) out = [await this.applyOne(tx, runReports[0]!, now)];
      else
        try {
          out = await tx.tx((sp) => writeRun(sp, runReports, now));
          this.metrics.reportsDuplicate.inc(
            runReports.filter((r, k) => r.channel === 'events' && !out[k]).length,
          );
        } catch (err) {
          if (storeUnwritable(err)) throw err;
          this.log.debug({ err, size: at.length }, 'batched reports failed; applying them one by one');
          out = await this.applyInTurn(tx, runReports, now);
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
  private async applyOne(tx: Store, report: Report, now: number): Promise<boolean> {
    try {
      if (report.channel !== 'events' && tx.sql.dialect === 'sqlite')
        return await this.applyUnsafe(tx, report, now);
      return await tx.tx((sp) => this.applyUnsafe(sp, report, now));
    } catch (err) {
      if (storeUnwritable(err)) throw err;
      this.dropped(report, err);
      return false;
    }
  }

  private async applyUnsafe(tx: Store, report: Report, now: number): Promise<boolean> {
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
        if (report.message.deploymentId !== null)
          for (const hook of this.eventHooks) await hook(tx, report.deviceId, report.message, now);
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
