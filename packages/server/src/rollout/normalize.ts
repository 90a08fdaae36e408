import { Value } from '@sinclair/typebox/value';
import { RolloutError } from './errors.js';
import { type RolloutPolicy, RolloutPolicy as RolloutPolicySchema, TargetSelector } from './policy.js';

const DEFAULT_RETRIES = { failed: 0, rolledBack: 0, timedOut: 0 } as const;

/**
 * Validates an operator's policy and fills in every default. Throws
 * FLOTILLA_ERR_ROLLOUT_POLICY_INVALID naming the first bad field; never mutates its input.
 */
export function normalizePolicy(input: unknown): RolloutPolicy {
  const value = Value.Default(RolloutPolicySchema, Value.Clone(input ?? {}));
  if (!Value.Check(RolloutPolicySchema, value)) {
    const first = Value.Errors(RolloutPolicySchema, value).First();
    throw new RolloutError(
      'FLOTILLA_ERR_ROLLOUT_POLICY_INVALID',
      first ? `at '${first.path || '/'}': ${first.message}` : 'does not match the schema',
    );
  }
  const policy = value as RolloutPolicy;
  // No target: every device (docs/rollouts.md), with the selector's own defaults.
  policy.target ??= Value.Default(TargetSelector, {}) as RolloutPolicy['target'];
  policy.retries = { ...DEFAULT_RETRIES, ...(policy.retries ?? {}) };
  if (policy.rate?.kind === 'exponential' && policy.rate.maxPerMinute === undefined) {
    policy.rate.maxPerMinute = 1000;
  }
  checkPhases(policy);
  if (policy.startAt !== undefined && Number.isNaN(Date.parse(policy.startAt))) {
    throw new RolloutError('FLOTILLA_ERR_ROLLOUT_POLICY_INVALID', `at '/startAt': not a valid time`);
  }
  return policy;
}

function checkPhases(policy: RolloutPolicy): void {
  let percentSum = 0;
  policy.phases.forEach((phase, i) => {
    const last = i === policy.phases.length - 1;
    const sized = Number(phase.count !== undefined) + Number(phase.percent !== undefined);
    if (sized > 1) {
      throw new RolloutError(
        'FLOTILLA_ERR_ROLLOUT_POLICY_INVALID',
        `at '/phases/${i}': give count or percent, not both`,
      );
    }
    if (sized === 0 && !last) {
      throw new RolloutError(
        'FLOTILLA_ERR_ROLLOUT_POLICY_INVALID',
        `at '/phases/${i}': only the last phase may leave out its size (it takes the rest)`,
      );
    }
    if (!last) percentSum += phase.percent ?? 0;
  });
  if (percentSum > 100) {
    throw new RolloutError(
      'FLOTILLA_ERR_ROLLOUT_POLICY_INVALID',
      `at '/phases': percentages before the last phase add up to ${percentSum} (more than 100)`,
    );
  }
}

/** Percent (0–100, two decimals) as an integer number of basis points, so comparisons are exact. */
export function basisPoints(percent: number): number {
  return Math.round(percent * 100);
}
