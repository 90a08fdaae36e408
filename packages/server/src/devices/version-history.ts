import type { Logger } from 'pino';
import type { ServerLimits } from '../limits.js';
import type { VersionSample } from '../store/repos/version-samples.js';
import type { Store } from '../store/store.js';

const DAY_MS = 86_400_000;

/**
 * Versions over time, kept by the server: on a timer (and once at start) it stores how many
 * accepted devices run each version, so the dashboard's chart covers days, whoever was signed in.
 * The table stays bounded (`versionHistoryDays`, `versionHistoryMaxSamples`).
 */
export class VersionHistory {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly store: Store,
    private readonly limits: Pick<
      ServerLimits,
      'versionSampleIntervalMs' | 'versionHistoryDays' | 'versionHistoryMaxSamples'
    >,
    private readonly log: Logger,
    private readonly clock: () => number,
  ) {}

  async start(): Promise<void> {
    this.stop();
    await this.sample();
    if (!(this.limits.versionSampleIntervalMs > 0)) return;
    this.timer = setInterval(() => this.sample(), this.limits.versionSampleIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Stores the counts now (a failed write is logged; the next tick tries again). */
  async sample(): Promise<void> {
    const now = this.clock();
    try {
      const counts = Object.fromEntries(
        (await this.store.devices.countsByVersion()).map((r) => [r.version ?? 'unknown', r.count]),
      );
      await this.store.versionSamples.add(
        { ts: now, counts },
        now - this.limits.versionHistoryDays * DAY_MS,
        this.limits.versionHistoryMaxSamples,
      );
    } catch (err) {
      this.log.error({ err }, 'version sample not stored; the next interval tries again');
    }
  }

  /**
   * Samples since `since`, oldest first, thinned to at most `maxPoints` by keeping every n-th
   * (always the newest), so a week of history is one small answer.
   */
  async history(since: number, maxPoints: number): Promise<VersionSample[]> {
    const all = await this.store.versionSamples.since(since);
    if (all.length <= maxPoints) return all;
    const step = Math.ceil(all.length / maxPoints);
    const kept = all.filter((_, i) => (all.length - 1 - i) % step === 0);
    return kept;
  }
}
