import { countPhases, isInFlight, judgePhase } from './counting.js';
import type { RolloutPolicy } from './policy.js';
import { ratePerMinute } from './rate.js';
import type { PhaseSummary, RolloutSnapshot, RolloutSummary } from './types.js';
import { inMaintenanceWindow } from './window.js';

const pct = (n: number, total: number) => (total === 0 ? 0 : Math.round((n * 10_000) / total) / 100);

/** Per-phase progress for the API, the CLI and the dashboard (the same counts `decide` judges by). */
export function summarize(policy: RolloutPolicy, snapshot: RolloutSnapshot, now: number): RolloutSummary {
  const runtime = snapshot.runtime;
  const present = new Set(snapshot.devices.map((device) => device.id));
  const counts = countPhases(policy, runtime, snapshot.deployments, (id) => present.has(id));
  let notified = 0;
  let rollbackInFlight = 0;
  for (const deployment of snapshot.deployments) {
    if (!present.has(deployment.deviceId)) continue;
    if (deployment.attempts > 0) notified++;
    if (deployment.rollback && isInFlight(deployment.rollback.state)) rollbackInFlight++;
  }

  const phases: PhaseSummary[] = policy.phases.map((spec, index) => {
    const count = counts[index]!;
    const phase = runtime.phases[index]!;
    const judged = judgePhase(spec, phase, count);
    const status: PhaseSummary['status'] =
      phase.succeededAt !== null
        ? 'succeeded'
        : phase.startedAt === null
          ? runtime.status === 'waiting-approval' && index === runtime.currentPhase + 1
            ? 'waiting-approval'
            : 'not-started'
          : phase.soakStartedAt !== null
            ? 'soaking'
            : 'running';
    return {
      index,
      name: spec.name ?? `phase ${index + 1}`,
      total: count.total,
      healthy: count.healthy,
      failed: count.failed,
      rolledBack: count.rolledBack,
      timedOut: count.timedOut,
      retrying: count.retrying,
      inFlight: count.inFlight,
      notStarted: count.notStarted,
      cancelled: count.cancelled,
      aborted: count.aborted,
      reverted: count.reverted,
      executed: judged.executed,
      minExecuted: judged.minExecuted,
      successThreshold: spec.successThreshold,
      errorThreshold: spec.errorThreshold,
      successPercent: count.total === 0 ? 100 : pct(count.healthy, count.total),
      errorPercent: pct(judged.judgedFailures, count.total),
      successMet: judged.successMet,
      errorExceeded: judged.errorExceeded,
      status,
      startedAt: phase.startedAt,
      soakEndsAt:
        phase.soakStartedAt !== null && phase.succeededAt === null
          ? phase.soakStartedAt + spec.soakSeconds * 1000
          : null,
      succeededAt: phase.succeededAt,
      requireApproval: spec.requireApproval,
      approved: phase.approvedAt !== null,
    };
  });

  const sum = (
    key: 'total' | 'healthy' | 'failed' | 'inFlight' | 'notStarted' | 'cancelled' | 'aborted' | 'reverted',
  ) => counts.reduce((total, count) => total + count[key], 0);
  return {
    rolloutId: snapshot.rolloutId,
    release: snapshot.release.version,
    status: runtime.status,
    currentPhase: runtime.currentPhase,
    pause: runtime.pause,
    rollingBack: runtime.rollingBack,
    ratePerMinute: ratePerMinute(policy, { notified, succeeded: sum('healthy') }),
    inMaintenanceWindow: inMaintenanceWindow(policy.maintenanceWindows, now),
    phases,
    totals: {
      devices: sum('total'),
      healthy: sum('healthy'),
      failed: sum('failed'),
      inFlight: sum('inFlight') + rollbackInFlight,
      notStarted: sum('notStarted'),
      cancelled: sum('cancelled'),
      aborted: sum('aborted'),
      reverted: sum('reverted'),
    },
    failure: runtime.failure ?? null,
  };
}
