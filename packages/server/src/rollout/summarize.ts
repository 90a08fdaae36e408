import { countPhases, isInFlight, judgePhase } from './counting.js';
import type { RolloutPolicy } from './policy.js';
import { ratePerMinute } from './rate.js';
import type { PhaseSummary, RolloutSnapshot, RolloutSummary } from './types.js';
import { inMaintenanceWindow } from './window.js';

const pct = (n: number, total: number) => (total === 0 ? 0 : Math.round((n * 10_000) / total) / 100);

/** Per-phase progress for the API, the CLI and the dashboard (the same counts `decide` judges by). */
export function summarize(policy: RolloutPolicy, snapshot: RolloutSnapshot, now: number): RolloutSummary {
  const rt = snapshot.runtime;
  const present = new Set(snapshot.devices.map((d) => d.id));
  const counts = countPhases(policy, rt, snapshot.deployments, (id) => present.has(id));
  let notified = 0;
  let rollbackInFlight = 0;
  for (const r of snapshot.deployments) {
    if (!present.has(r.deviceId)) continue;
    if (r.attempts > 0) notified++;
    if (r.rollback && isInFlight(r.rollback.state)) rollbackInFlight++;
  }

  const phases: PhaseSummary[] = policy.phases.map((spec, index) => {
    const c = counts[index]!;
    const p = rt.phases[index]!;
    const j = judgePhase(spec, p, c);
    const status: PhaseSummary['status'] =
      p.succeededAt !== null
        ? 'succeeded'
        : p.startedAt === null
          ? rt.status === 'waiting-approval' && index === rt.currentPhase + 1
            ? 'waiting-approval'
            : 'not-started'
          : p.soakStartedAt !== null
            ? 'soaking'
            : 'running';
    return {
      index,
      name: spec.name ?? `phase ${index + 1}`,
      total: c.total,
      healthy: c.healthy,
      failed: c.failed,
      rolledBack: c.rolledBack,
      timedOut: c.timedOut,
      retrying: c.retrying,
      inFlight: c.inFlight,
      notStarted: c.notStarted,
      cancelled: c.cancelled,
      aborted: c.aborted,
      reverted: c.reverted,
      executed: j.executed,
      minExecuted: j.minExecuted,
      successThreshold: spec.successThreshold,
      errorThreshold: spec.errorThreshold,
      successPercent: c.total === 0 ? 100 : pct(c.healthy, c.total),
      errorPercent: pct(j.judgedFailures, c.total),
      successMet: j.successMet,
      errorExceeded: j.errorExceeded,
      status,
      startedAt: p.startedAt,
      soakEndsAt:
        p.soakStartedAt !== null && p.succeededAt === null ? p.soakStartedAt + spec.soakSeconds * 1000 : null,
      succeededAt: p.succeededAt,
      requireApproval: spec.requireApproval,
      approved: p.approvedAt !== null,
    };
  });

  const sum = (
    k: 'total' | 'healthy' | 'failed' | 'inFlight' | 'notStarted' | 'cancelled' | 'aborted' | 'reverted',
  ) => counts.reduce((a, c) => a + c[k], 0);
  return {
    rolloutId: snapshot.rolloutId,
    release: snapshot.release.version,
    status: rt.status,
    currentPhase: rt.currentPhase,
    pause: rt.pause,
    rollingBack: rt.rollingBack,
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
    failure: rt.failure ?? null,
  };
}
