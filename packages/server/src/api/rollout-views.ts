import { Type } from '@sinclair/typebox';
import { OrNull } from './views.js';

/**
 * Response schemas of a rollout's engine documents (rollout/types.ts: RolloutRuntime,
 * RolloutSummary). The serialiser drops what is not declared here: a field added to those types
 * must be added here too (packages/server/test/api-schemas.test.ts compares a served rollout with
 * the engine's objects). Properties are listed in the order the engine builds them.
 */

/** Engine times are numbers from its clock (ms since the epoch); not forced to integers. */
const Ms = Type.Number({ description: 'ms since the epoch' });
const Count = Type.Integer({ minimum: 0 });
const Percent = Type.Number({ description: 'percent, 0-100' });

const RolloutStatus = Type.String({
  description:
    'scheduled | running | waiting | waiting-approval | soaking | paused | completed | failed | aborted',
});

const PauseReason = Type.Union(
  [
    Type.Object({
      kind: Type.Literal('operator'),
      at: Ms,
      by: OrNull(Type.String()),
      note: OrNull(Type.String()),
    }),
    Type.Object({
      kind: Type.Literal('error-threshold'),
      at: Ms,
      phase: Type.Integer(),
      failed: Count,
      total: Count,
      threshold: Percent,
    }),
  ],
  { description: 'why the rollout is paused: by an operator, or a phase over its error threshold' },
);

const RolloutFailure = Type.Object(
  { at: Ms, phase: Type.Integer(), healthy: Count, total: Count, successThreshold: Percent },
  { description: 'the phase that could no longer reach its success threshold' },
);

const PhaseRuntime = Type.Object({
  startedAt: OrNull(Ms),
  soakStartedAt: OrNull(Ms),
  succeededAt: OrNull(Ms),
  approvedAt: OrNull(Ms),
  approvedBy: OrNull(Type.String()),
  acknowledgedFailures: Count,
});

export const RolloutRuntimeView = Type.Object(
  {
    status: RolloutStatus,
    currentPhase: Type.Integer({ description: 'latest phase that started; -1 before the first' }),
    phases: Type.Array(PhaseRuntime),
    pause: OrNull(PauseReason),
    rollingBack: Type.Boolean(),
    rateWindow: OrNull(Type.Object({ start: Ms, count: Count })),
    startedAt: OrNull(Ms),
    finishedAt: OrNull(Ms),
    // absent in runtimes stored before it existed
    failure: Type.Optional(OrNull(RolloutFailure)),
  },
  { description: "the engine's state of the rollout" },
);

const PhaseSummaryView = Type.Object({
  index: Type.Integer(),
  name: Type.String(),
  total: Count,
  healthy: Count,
  failed: Count,
  rolledBack: Count,
  timedOut: Count,
  retrying: Count,
  inFlight: Count,
  notStarted: Count,
  cancelled: Count,
  aborted: Count,
  reverted: Count,
  executed: Count,
  minExecuted: Count,
  successThreshold: Percent,
  errorThreshold: Percent,
  successPercent: Percent,
  errorPercent: Percent,
  successMet: Type.Boolean(),
  errorExceeded: Type.Boolean(),
  status: Type.String({ description: 'not-started | waiting-approval | running | soaking | succeeded' }),
  startedAt: OrNull(Ms),
  soakEndsAt: OrNull(Ms),
  succeededAt: OrNull(Ms),
  requireApproval: Type.Boolean(),
  approved: Type.Boolean(),
});

export const RolloutSummaryView = Type.Object(
  {
    rolloutId: Type.String(),
    release: Type.String({ description: 'release version' }),
    status: RolloutStatus,
    currentPhase: Type.Integer(),
    pause: OrNull(PauseReason),
    rollingBack: Type.Boolean(),
    ratePerMinute: OrNull(Type.Number({ description: 'offers allowed per minute now; null: no limit' })),
    inMaintenanceWindow: Type.Boolean(),
    phases: Type.Array(PhaseSummaryView),
    totals: Type.Object({
      devices: Count,
      healthy: Count,
      failed: Count,
      inFlight: Count,
      notStarted: Count,
      cancelled: Count,
      aborted: Count,
      reverted: Count,
    }),
    failure: OrNull(RolloutFailure),
  },
  { description: 'per-phase and total device counts, pause reason, failure' },
);
