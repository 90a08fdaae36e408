// Public surface of the rollout engine: pure functions of (policy, snapshot, now), no I/O.
//
// Coming in the next commits (signatures fixed now so the server can code against them):
//   normalizePolicy(input: unknown): RolloutPolicy                       throws RolloutError
//   initialRuntime(policy: RolloutPolicy): RolloutRuntime                 status 'scheduled'
//   decide(policy, snapshot, now: number): Decision[]
//   applyDecisions(snapshot, decisions, now): RolloutSnapshot            the reference reducer
//   applyDeviceEvent(record, kind: EventKind, at: number, reason?): DeploymentRecord | null
//   summarize(policy, snapshot, now): RolloutSummary
//   pauseRollout / resumeRollout / abortRollout / approvePhase → new RolloutRuntime (throw RolloutError)
export * from './errors.js';
export * from './policy.js';
export * from './types.js';
