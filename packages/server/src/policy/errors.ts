import { type ErrorEntry, errorClass } from '@flotilla/protocol';

/** Errors of policy as code and of the gates that enforce it. */
export const POLICY_ERRORS = {
  FLOTILLA_ERR_POLICY_VIOLATION: {
    status: 409,
    message: 'the release fails the policy of the target channel',
    hint: 'fix the listed violations (update the package, add a waiver with `flotilla policy set`), or as admin override with --override-reason',
  },
  FLOTILLA_ERR_POLICY_INVALID: {
    status: 400,
    message: 'policy document is invalid',
    hint: 'fix the field named in the message (see docs/vulnerabilities.md, "Policy")',
  },
  FLOTILLA_ERR_POLICY_OVERRIDE_FORBIDDEN: {
    status: 403,
    message: 'only an admin token may override a policy gate',
    hint: 'ask an admin, or fix the violations',
  },
} as const satisfies Record<string, ErrorEntry>;

export class PolicyError extends errorClass(POLICY_ERRORS, 'policy', 'PolicyError') {}
