/** The CLI's own error registry (protocol and package errors pass through with their codes). */
export const CLI_ERRORS = {
  FLOTILLA_ERR_CLI_KEY_FILE: {
    message: 'cannot read the key file',
    hint: 'pass --key with a file written by `flotilla keys init`',
  },
  FLOTILLA_ERR_CLI_ROOT_FILE: {
    message: 'cannot read the root metadata',
    hint: 'pass --root with the root.json made by `flotilla keys init`',
  },
  FLOTILLA_ERR_CLI_KEYS_EXIST: {
    message: 'the keys directory already holds keys',
    hint: 'choose another --dir, or pass --force to add to it (existing keys are never overwritten)',
  },
  FLOTILLA_ERR_CLI_INPUT: { message: 'cannot read the input file', hint: 'check the path' },
  FLOTILLA_ERR_CLI_USAGE: { message: 'invalid arguments', hint: 'see --help' },
} as const;

export type CliErrorCode = keyof typeof CLI_ERRORS;

export class CliError extends Error {
  readonly code: CliErrorCode;
  readonly hint: string;
  constructor(code: CliErrorCode, detail?: string, cause?: unknown) {
    const entry = CLI_ERRORS[code];
    super(detail ? `${entry.message}: ${detail}` : entry.message, { cause });
    this.name = 'CliError';
    this.code = code;
    this.hint = entry.hint;
  }
}
