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
} as const;

export type RolloutErrorCode = keyof typeof ROLLOUT_ERRORS;

export class RolloutError extends Error {
  readonly code: RolloutErrorCode;
  readonly status: number;
  readonly hint: string;
  readonly component = 'rollout';

  constructor(code: RolloutErrorCode, detail?: string) {
    const entry = ROLLOUT_ERRORS[code];
    super(detail ? `${entry.message}: ${detail}` : entry.message);
    this.name = 'RolloutError';
    this.code = code;
    this.status = entry.status;
    this.hint = entry.hint;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, hint: this.hint };
  }
}
