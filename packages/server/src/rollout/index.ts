// Public surface of the rollout engine: pure functions of (policy, snapshot, now), no I/O.
export { applyDecisions } from './apply.js';
export { canRetry, isInFlight, judgePhase } from './counting.js';
export { decide } from './decide.js';
export { applyDeviceEvent, nextDeploymentState } from './device-events.js';
export * from './errors.js';
export { basisPoints, normalizePolicy } from './normalize.js';
export {
  abortRollout,
  approvePhase,
  initialRuntime,
  pauseRollout,
  phaseAwaitingApproval,
  resumeRollout,
} from './operator.js';
export * from './policy.js';
export { RATE_WINDOW_MS, ratePerMinute } from './rate.js';
export { deliverableTargets, matchesTarget, orderKey, phaseSizes } from './selection.js';
export { summarize } from './summarize.js';
export * from './types.js';
export { compareVersions } from './version-order.js';
export { inMaintenanceWindow } from './window.js';
