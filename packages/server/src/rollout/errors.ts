import { type ErrorEntry, errorClass } from '@flotilla/protocol';

/**
 * Errors of the rollout engine and operator actions. Same shape as the protocol registry
 * (stable code, message, HTTP status, hint) so the API can answer `{error:{code,message,hint}}`.
 */
export const ROLLOUT_ERRORS = {
  FLOTILLA_ERR_ROLLOUT_POLICY_INVALID: {
    status: 400,
    message: 'rollout policy is invalid',
    hint: 'fix the field named in the message (see docs/rollouts.md)',
  },
  FLOTILLA_ERR_ROLLOUT_STATE: {
    status: 409,
    message: 'the rollout cannot do this in its current state',
    hint: 'check the rollout status with `flotilla rollout status <id>`',
  },
  FLOTILLA_ERR_ROLLOUT_PHASE: {
    status: 409,
    message: 'no such phase, or it needs no approval',
    hint: 'approve a phase that has requireApproval and has not started',
  },
} as const satisfies Record<string, ErrorEntry>;

export type RolloutErrorCode = keyof typeof ROLLOUT_ERRORS;

export class RolloutError extends errorClass(ROLLOUT_ERRORS, 'rollout', 'RolloutError') {}
