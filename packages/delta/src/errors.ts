/**
 * The error registry of the delta codec. Codes are stable (the agent reports them to the server
 * and the CLI prints them); each has a message and a hint saying what to do about it. The HTTP
 * status is what a server should answer when the error comes from a client's upload.
 */
export const DELTA_ERRORS = {
  FLOTILLA_ERR_DELTA_NOT_A_DELTA: {
    status: 400,
    message: 'input is not a Flotilla delta (bad magic)',
    hint: 'pass a file made by `flotilla delta create`',
  },
  FLOTILLA_ERR_DELTA_UNSUPPORTED_VERSION: {
    status: 400,
    message: 'delta format version or codec not supported',
    hint: 'upgrade the agent or CLI, or make the delta with an older Flotilla',
  },
  FLOTILLA_ERR_DELTA_HEADER_CORRUPT: {
    status: 400,
    message: 'delta header is corrupt',
    hint: 'download the delta again and check its sha256 against the signed delta descriptor',
  },
  FLOTILLA_ERR_DELTA_TRUNCATED: {
    status: 400,
    message: 'delta ends before its end marker',
    hint: 'the download was cut short: resume or download it again',
  },
  FLOTILLA_ERR_DELTA_PAYLOAD_CORRUPT: {
    status: 400,
    message: 'delta payload is corrupt',
    hint: 'download the delta again and check its sha256 against the signed delta descriptor',
  },
  FLOTILLA_ERR_DELTA_TRAILING_DATA: {
    status: 400,
    message: 'delta has bytes after its end marker',
    hint: 'the file was altered or concatenated; download it again',
  },
  FLOTILLA_ERR_DELTA_SIZE_LIMIT: {
    status: 413,
    message: 'delta claims a size beyond the allowed limit',
    hint: 'raise maxTargetSize only if the image really is that large',
  },
  FLOTILLA_ERR_DELTA_BASE_MISMATCH: {
    status: 409,
    message: 'base image does not match the one the delta was made from',
    hint: 'apply the delta to the image it was created against, or download the full image',
  },
  FLOTILLA_ERR_DELTA_TARGET_MISMATCH: {
    status: 409,
    message: 'delta output does not match the expected target image',
    hint: 'the delta or its base is wrong; download the full image instead',
  },
  FLOTILLA_ERR_DELTA_INPUT_TOO_LARGE: {
    status: 413,
    message: 'image too large to diff',
    hint: 'ship the full image, or split the image into partitions',
  },
  FLOTILLA_ERR_DELTA_OUTPUT_IS_INPUT: {
    status: 400,
    message: 'output path is the same file as an input',
    hint: 'write the output to a different path (the inactive slot, never the active one)',
  },
  FLOTILLA_ERR_DELTA_IO: {
    status: 500,
    message: 'cannot read or write a delta file',
    hint: 'check the path exists and is readable (inputs) or its directory is writable (output)',
  },
  FLOTILLA_ERR_DELTA_ABORTED: {
    status: 499,
    message: 'delta operation was aborted',
    hint: 'run it again; no output was left behind',
  },
  FLOTILLA_ERR_DELTA_BAD_ARGUMENT: {
    status: 400,
    message: 'invalid argument to the delta codec',
    hint: 'check the option named in the message',
  },
} as const satisfies Record<string, { status: number; message: string; hint: string }>;

export type DeltaErrorCode = keyof typeof DELTA_ERRORS;

/** An error with a stable code, a hint, and the cause it wraps (e.g. the fs or zlib error). */
export class DeltaError extends Error {
  readonly code: DeltaErrorCode;
  readonly status: number;
  readonly hint: string;
  readonly component = 'delta';
  readonly details?: Record<string, unknown>;

  constructor(
    code: DeltaErrorCode,
    detail?: string,
    opts: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    const entry = DELTA_ERRORS[code];
    super(detail ? `${entry.message}: ${detail}` : entry.message, { cause: opts.cause });
    this.name = 'DeltaError';
    this.code = code;
    this.status = entry.status;
    this.hint = entry.hint;
    if (opts.details) this.details = opts.details;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, hint: this.hint, component: this.component };
  }
}

export function isDeltaError(err: unknown, code?: DeltaErrorCode): err is DeltaError {
  return err instanceof DeltaError && (code === undefined || err.code === code);
}

/** Wraps an fs error as FLOTILLA_ERR_DELTA_IO unless it already carries a delta code. */
export function ioError(what: string, err: unknown): DeltaError {
  if (err instanceof DeltaError) return err;
  const sys = err as { code?: unknown; message?: unknown };
  const why = typeof sys.code === 'string' ? sys.code : String(sys.message ?? err);
  return new DeltaError('FLOTILLA_ERR_DELTA_IO', `${what} (${why})`, { cause: err });
}
