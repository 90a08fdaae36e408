import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { type DeltaDescriptor, isoAfter, SCHEMA_VERSION, signDocument } from '@flotilla/protocol';
import type { Logger } from 'pino';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import { ServerError } from '../errors.js';
import type { EventBus } from '../events/bus.js';
import type { ServerKeys } from '../keys/server-keys.js';
import type { ServerLimits } from '../limits.js';
import { countSigning, type Metrics } from '../metrics.js';
import { inBackground } from '../store/background.js';
import {
  claimNextDelta,
  completeDeltaClaim,
  type DeltaClaim,
  renewDeltaClaim,
} from '../store/sql-delta-claims.js';
import { Store } from '../store/store.js';
import { workerFile } from '../worker-file.js';

interface WorkerStats {
  codec: string;
  baseSha256: string;
  targetSha256: string;
  deltaSize: number;
  deltaSha256: string;
}

/** The delta worker's compiled file (see workerFile). */
export function deltaWorkerPath(): string {
  return workerFile(import.meta.url, './delta-worker.js');
}

/**
 * Builds deltas between releases in worker threads, one cache entry per (from image, to image),
 * signed by the delta role. Only images the server holds as a release can be a base. A failed
 * build is remembered (devices get the full image) and not retried in a loop.
 */
/** How long a node's claim on a build holds without renewal (a dead node's job is free after it). */
const CLAIM_TTL_MS = 60_000;
/** How often a node sharing the database looks for builds queued by others or left by a dead node. */
const SHARED_POLL_MS = 5_000;

/** Where this service runs: its node's name, and whether other nodes share the database. */
export interface DeltaPlacement {
  node: string;
  shared: boolean;
}

export class DeltaService {
  private running = 0;
  private readonly workers = new Set<Worker>();
  private closed = false;
  private poll: NodeJS.Timeout | null = null;

  constructor(
    private readonly store: Store,
    private readonly artifacts: ArtifactStore,
    private readonly keys: ServerKeys,
    private readonly bus: EventBus,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly limits: ServerLimits,
    private readonly placement: DeltaPlacement = { node: 'local', shared: false },
    private readonly clock: () => number = Date.now,
  ) {}

  async start(): Promise<void> {
    if (this.placement.shared) {
      // Builds of a node that died are claimed again once their claim runs out (never requeued
      // wholesale: another node may be building them right now).
      this.poll = setInterval(() => inBackground(this.log, 'delta queue', this.pump()), SHARED_POLL_MS);
      this.poll.unref();
    } else {
      const n = await this.store.deltas.requeueInterrupted();
      if (n > 0) this.log.info({ n }, 'requeued delta builds a restart interrupted');
    }
    await this.pump();
  }

  /**
   * Queues deltas from each base the server holds to `to`; returns how many were new. Through a
   * transaction's `store` the builds start only when the caller calls `pump()` after its commit
   * (a build reads and writes the store outside that transaction).
   */
  async want(from: readonly string[], to: string, store: Store = this.store): Promise<number> {
    let queued = 0;
    const now = this.clock();
    for (const f of from) {
      if (f === to || !(await store.releases.byImage(f)) || !this.artifacts.has(f) || !this.artifacts.has(to))
        continue;
      if (await store.deltas.queue(f, to, now)) queued++;
    }
    if (queued > 0 && store === this.store) await this.pump();
    return queued;
  }

  /** True while any of these deltas is queued or being built (`store`: the caller's transaction). */
  async pending(from: readonly string[], to: string, store: Store = this.store): Promise<boolean> {
    for (const f of from) {
      const d = await store.deltas.get(f, to);
      if (d?.status === 'queued' || d?.status === 'building') return true;
    }
    return false;
  }

  /** Claims queued builds (none another node holds), up to the worker limit, and starts them. */
  async pump(): Promise<void> {
    while (!this.closed && this.running < this.limits.deltaWorkers) {
      const claim = await claimNextDelta(this.store.sql, this.placement.node, this.clock(), CLAIM_TTL_MS);
      if (!claim) return;
      this.running++;
      const built = this.buildClaimed(claim).finally(() => {
        this.running--;
        inBackground(this.log, 'delta queue', this.pump());
      });
      inBackground(this.log, 'delta build', built);
    }
  }

  /** Builds while renewing the claim; the outcome is written only if the claim is still ours. */
  private async buildClaimed(claim: DeltaClaim): Promise<void> {
    const { node } = this.placement;
    let lost = false;
    const renew = setInterval(
      () =>
        inBackground(
          this.log,
          'delta claim renewal',
          renewDeltaClaim(this.store.sql, claim, node, this.clock(), CLAIM_TTL_MS).then((mine) => {
            lost ||= !mine;
          }),
        ),
      CLAIM_TTL_MS / 4,
    );
    renew.unref();
    try {
      await this.build(claim, () => lost);
    } finally {
      clearInterval(renew);
    }
  }

  /** Writes a build's outcome under the claim; false when another node took the job meanwhile. */
  private async finish(claim: DeltaClaim, write: (tx: Store) => Promise<unknown>): Promise<boolean> {
    const mine = await completeDeltaClaim(this.store.sql, claim, this.placement.node, (sql) =>
      write(new Store(sql)),
    );
    if (!mine)
      this.log.warn(
        { from: claim.fromSha256, to: claim.toSha256 },
        'delta build outcome dropped: another node claimed the build meanwhile',
      );
    return mine;
  }

  private async build(claim: DeltaClaim, claimLost: () => boolean): Promise<void> {
    const { fromSha256: from, toSha256: to } = claim;
    const outPath = this.artifacts.tempPath('.fdelta');
    try {
      const file = deltaWorkerPath();
      if (!existsSync(file))
        throw new ServerError('FLOTILLA_ERR_SERVER_DELTA', `worker ${file} is missing: run \`npx tsc -b\``);
      const stats = await this.runWorker(file, {
        basePath: this.artifacts.pathOf(from),
        targetPath: this.artifacts.pathOf(to),
        outPath,
      });
      if (this.closed || claimLost()) return;
      if (stats.baseSha256 !== from || stats.targetSha256 !== to)
        throw new ServerError('FLOTILLA_ERR_SERVER_DELTA', 'an artifact does not hash to its name');
      const fromRel = await this.store.releases.byImage(from);
      const toRel = await this.store.releases.byImage(to);
      if (!fromRel || !toRel)
        throw new ServerError('FLOTILLA_ERR_SERVER_DELTA', 'a release was pruned meanwhile');
      const now = this.clock();
      const descriptor: DeltaDescriptor = {
        _type: 'delta',
        schemaVersion: SCHEMA_VERSION,
        codec: stats.codec,
        fromImageSha256: from,
        toImageSha256: to,
        deltaSha256: stats.deltaSha256,
        deltaSize: stats.deltaSize,
        fromVersion: fromRel.version,
        toVersion: toRel.version,
        expires: isoAfter(new Date(now), this.limits.deltaTtlDays),
      };
      const signed = countSigning(this.metrics, 'delta', () => signDocument(descriptor, [this.keys.delta]));
      this.artifacts.commit(outPath, stats.deltaSha256);
      const mine = await this.finish(claim, async (tx) => {
        await tx.artifacts.add(stats.deltaSha256, stats.deltaSize, 'delta', now);
        await tx.deltas.setReady(from, to, { ...stats, descriptor: signed }, now);
      });
      if (!mine) return;
      this.metrics.deltasBuilt.inc({ result: 'ok' });
      this.log.info({ from: fromRel.version, to: toRel.version, size: stats.deltaSize }, 'delta ready');
      this.bus.emit('delta.ready', {
        from,
        to,
        fromVersion: fromRel.version,
        toVersion: toRel.version,
        size: stats.deltaSize,
      });
    } catch (err) {
      if (this.closed) return;
      const message = (err as Error).message;
      const failed = (tx: Store) =>
        tx.deltas.setStatus(from, to, 'failed', message.slice(0, 1000), this.clock());
      if (!(await this.finish(claim, failed))) return;
      this.metrics.deltasBuilt.inc({ result: 'failed' });
      this.log.warn({ from, to, err: message }, 'delta build failed; devices get the full image');
      this.bus.emit('delta.failed', { from, to, error: message });
    } finally {
      await rm(outPath, { force: true });
    }
  }

  private runWorker(
    file: string,
    job: { basePath: string; targetPath: string; outPath: string },
  ): Promise<WorkerStats> {
    return new Promise((resolve, reject) => {
      const worker = new Worker(file, { workerData: job });
      this.workers.add(worker);
      let settled = false;
      worker.once(
        'message',
        (m: { ok: true; stats: WorkerStats } | { ok: false; code: string; message: string }) => {
          settled = true;
          if (m.ok) resolve(m.stats);
          else reject(new ServerError('FLOTILLA_ERR_SERVER_DELTA', `${m.code}: ${m.message}`));
        },
      );
      worker.once('error', (err) => {
        settled = true;
        reject(err);
      });
      worker.once('exit', (code) => {
        this.workers.delete(worker);
        if (!settled) reject(new ServerError('FLOTILLA_ERR_SERVER_DELTA', `worker exited with code ${code}`));
      });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.poll) clearInterval(this.poll);
    await Promise.all([...this.workers].map((w) => w.terminate()));
  }
}
