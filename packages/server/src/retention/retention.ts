import type { Logger } from 'pino';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import type { EventBus } from '../events/bus.js';
import { CHANNELS } from '../store/repos/releases.js';
import type { Store } from '../store/store.js';

export interface RetentionPolicy {
  /** Newest releases kept in each channel (by promotion time). */
  keepPerChannel: number;
}

/** The timer functions the schedule uses (tests pass fakes). */
export interface Timers {
  setInterval(fn: () => void, ms: number): { unref?: () => unknown };
  clearInterval(handle: unknown): void;
}

export interface PruneResult {
  releases: string[];
  deltas: { from: string; to: string }[];
  artifacts: string[];
  bytes: number;
  kept: { release: string; why: string[] }[];
}

/**
 * Prunes what nothing needs: a release is kept while any device runs it or is being moved to or
 * from it, an unfinished rollout names it, or it is among the newest N of a channel. Artifacts
 * and deltas go with the releases they belong to. Rows go in one transaction, files after it
 * commits, so a crash can leave an orphan file (swept next time) but never a row without bytes.
 */
export class Retention {
  private timer: { handle: unknown; timers: Timers } | null = null;

  constructor(
    private readonly store: Store,
    private readonly artifacts: ArtifactStore,
    private readonly bus: EventBus,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
  ) {}

  /** `store`: the caller's transaction when inside one. */
  async plan(
    policy: RetentionPolicy,
    store: Store = this.store,
  ): Promise<{ keep: Map<string, string[]>; drop: string[] }> {
    const keep = new Map<string, string[]>();
    const why = (id: string, reason: string) => keep.set(id, [...(keep.get(id) ?? []), reason]);
    const byImage = new Map((await store.releases.list()).map((r) => [r.imageSha256, r.id]));
    for (const sha of await store.devices.runningImages()) {
      const id = byImage.get(sha);
      if (id) why(id, 'running on devices');
    }
    for (const id of await store.rollouts.activeReleaseIds()) why(id, 'unfinished rollout');
    for (const id of await store.deployments.inFlightReleaseIds()) why(id, 'being installed');
    for (const r of await store.rollouts.active())
      for (const d of await store.deployments.forRollout(r.id)) {
        if (d.fromVersion) why(d.fromVersion, 'rollback target of an unfinished rollout');
        if (d.rollback) why(d.rollback.toVersion, 'rollback in progress');
      }
    for (const c of CHANNELS)
      for (const r of (await store.releases.list(c)).slice(0, policy.keepPerChannel))
        why(r.id, `newest in ${c}`);
    const drop = (await store.releases.list()).map((r) => r.id).filter((id) => !keep.has(id));
    return { keep, drop };
  }

  async prune(policy: RetentionPolicy, actor: string, dryRun = false): Promise<PruneResult> {
    const now = this.clock();
    const result: PruneResult = { releases: [], deltas: [], artifacts: [], bytes: 0, kept: [] };
    await this.store.tx(async (tx) => {
      const { keep, drop } = await this.plan(policy, tx);
      result.kept = [...keep].map(([release, why]) => ({ release, why }));
      const releases = await tx.releases.list();
      const liveImages = new Set(releases.filter((r) => !drop.includes(r.id)).map((r) => r.imageSha256));
      const liveSboms = new Set(releases.filter((r) => !drop.includes(r.id)).map((r) => r.sbomSha256));
      for (const d of await tx.deltas.list()) {
        if (liveImages.has(d.fromSha256) && liveImages.has(d.toSha256)) continue;
        result.deltas.push({ from: d.fromSha256, to: d.toSha256 });
        if (!dryRun) await tx.deltas.delete(d.fromSha256, d.toSha256);
      }
      for (const id of drop) {
        result.releases.push(id);
        if (!dryRun) await tx.releases.delete(id);
      }
      const liveDeltas = new Set(
        (await tx.deltas.list())
          .filter((d) => !result.deltas.some((x) => x.from === d.fromSha256 && x.to === d.toSha256))
          .map((d) => d.deltaSha256),
      );
      for (const a of await tx.artifacts.list()) {
        const live =
          a.kind === 'image'
            ? liveImages.has(a.sha256)
            : a.kind === 'sbom'
              ? liveSboms.has(a.sha256)
              : a.kind === 'delta'
                ? liveDeltas.has(a.sha256)
                : true;
        if (live) continue;
        result.artifacts.push(a.sha256);
        result.bytes += a.size;
        if (!dryRun) await tx.artifacts.delete(a.sha256);
      }
      if (!dryRun && (result.releases.length || result.artifacts.length))
        await tx.audit.record(
          actor,
          'retention.prune',
          null,
          { ...policy, releases: result.releases, artifacts: result.artifacts.length, bytes: result.bytes },
          now,
        );
    });
    if (!dryRun) {
      for (const sha of result.artifacts) this.artifacts.remove(sha);
      if (result.releases.length) {
        this.log.info({ releases: result.releases, bytes: result.bytes }, 'retention pruned');
        this.bus.emit('retention.pruned', { releases: result.releases, bytes: result.bytes });
      }
    }
    return result;
  }

  /**
   * Prunes every `intervalMs` (0 = never) with `policy`, as the actor `retention-timer`. A failed
   * run is logged and the next one tries again; the runs are synchronous, so they never overlap.
   */
  schedule(intervalMs: number, policy: RetentionPolicy, timers: Timers = globalThis): void {
    this.unschedule();
    if (!(intervalMs > 0)) return;
    const handle = timers.setInterval(async () => {
      try {
        await this.prune(policy, 'retention-timer');
      } catch (err) {
        this.log.error({ err }, 'timed retention failed; it runs again next interval');
      }
    }, intervalMs);
    handle.unref?.();
    this.timer = { handle, timers };
  }

  unschedule(): void {
    if (this.timer) this.timer.timers.clearInterval(this.timer.handle);
    this.timer = null;
  }
}
