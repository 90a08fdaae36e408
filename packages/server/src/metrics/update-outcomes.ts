import type { Metrics } from '../metrics.js';
import type { Decision, DeploymentState } from '../rollout/index.js';
import type { DeploymentRow } from '../store/repos/deployments.js';
import type { Store } from '../store/store.js';

/** Forward-deployment states an update ends in that the SLI counts (`timed-out` comes from decisions). */
const FINISHED: ReadonlySet<DeploymentState> = new Set(['healthy', 'failed', 'rolled-back']);

/** An update that ended, to be counted once its transaction committed. */
export interface Finished {
  deploymentId: string;
  rolloutId: string;
  attempts: number;
  result: DeploymentState;
  offeredAt: number | null;
  at: number;
}

/**
 * Counts update outcomes (`flotilla_updates_total`, `flotilla_offer_to_healthy_seconds`) and
 * automatic pauses only once the transaction that made them committed. Device events move
 * deployments inside the ingestor's batch transaction, so those are held until `flush()` (called
 * after the batch committed) and re-read from the store: a batch that rolled back leaves its
 * deployment unchanged and is not counted, and the resend that repeats it is counted once
 * (held outcomes are keyed by deployment, attempt and result).
 */
export class UpdateOutcomes {
  private readonly held = new Map<string, Finished>();

  constructor(
    private readonly store: Store,
    private readonly metrics: Metrics,
  ) {}

  /** The update a forward deployment's move from `before` to `after` ended, if it ended one. */
  static finished(before: DeploymentRow, after: { state: DeploymentState }, at: number): Finished | null {
    if (after.state === before.state || !FINISHED.has(after.state)) return null;
    return {
      deploymentId: before.id,
      rolloutId: before.rolloutId,
      attempts: before.attempts,
      result: after.state,
      offeredAt: before.offeredAt,
      at,
    };
  }

  /** Holds an ended update until `flush()` (after the commit of the transaction that ended it). */
  hold(f: Finished): void {
    this.held.set(`${f.deploymentId}:${f.attempts}:${f.result}`, f);
  }

  /** After the report transaction committed: counts what the store confirms. */
  async flush(): Promise<void> {
    if (this.held.size === 0) return;
    const held = [...this.held.values()];
    this.held.clear();
    for (const f of held) {
      const dep = await this.store.deployments.get(f.deploymentId);
      if (!dep || dep.state !== f.result || dep.attempts !== f.attempts) continue;
      const release = (await this.store.rollouts.get(f.rolloutId))?.releaseId ?? 'unknown';
      this.metrics.updates.inc({ release, result: f.result });
      if (f.result === 'healthy' && f.offeredAt !== null)
        this.metrics.offerToHealthy.observe(Math.max(0, (f.at - f.offeredAt) / 1000));
    }
  }

  /** After a rollout pass committed: its timeouts and automatic pauses. */
  async decided(rolloutId: string, decisions: readonly Decision[]): Promise<void> {
    for (const d of decisions) {
      if (d.type === 'timed-out') {
        const release = (await this.store.rollouts.get(rolloutId))?.releaseId ?? 'unknown';
        this.metrics.updates.inc({ release, result: 'timed-out' });
      } else if (d.type === 'pause') {
        this.metrics.rolloutPauses.inc({ reason: d.reason.kind });
      }
    }
  }
}
