/**
 * The one error registry of Flotilla's shared layer. Codes are stable: clients, logs and the
 * dashboard key on them. Each entry has a message template, an HTTP status where one applies,
 * and a hint that tells the user what to do.
 */
export const ERRORS = {
  // JSON and canonical form
  FLOTILLA_ERR_JSON_MALFORMED: { status: 400, message: 'malformed JSON', hint: 'send valid UTF-8 JSON' },
  FLOTILLA_ERR_JSON_TOO_LARGE: {
    status: 413,
    message: 'JSON document too large',
    hint: 'stay under the size limit',
  },
  FLOTILLA_ERR_JSON_TOO_DEEP: { status: 400, message: 'JSON nesting too deep', hint: 'flatten the document' },
  FLOTILLA_ERR_JSON_DUPLICATE_KEY: {
    status: 400,
    message: 'JSON object has a duplicate key',
    hint: 'remove the duplicate',
  },
  FLOTILLA_ERR_NOT_CANONICAL: {
    status: 400,
    message: 'value cannot be canonicalised',
    hint: 'use integers, strings, booleans, null, arrays and objects only',
  },
  FLOTILLA_ERR_SCHEMA: {
    status: 400,
    message: 'document does not match its schema',
    hint: 'check the field named in the message',
  },
  FLOTILLA_ERR_SCHEMA_VERSION: {
    status: 400,
    message: 'unsupported schemaVersion',
    hint: 'upgrade the sender or the receiver',
  },
  // signatures and trust
  FLOTILLA_ERR_SIGNATURE_MISSING: {
    status: 401,
    message: 'document is not signed',
    hint: 'sign it with `flotilla manifest sign`',
  },
  FLOTILLA_ERR_SIGNATURE_INVALID: {
    status: 401,
    message: 'signature does not verify',
    hint: 'the document was altered after signing, or signed with another key',
  },
  FLOTILLA_ERR_KEY_UNKNOWN: {
    status: 401,
    message: 'signed by a key the trust root does not know',
    hint: 'sign with a key listed in the keys metadata',
  },
  FLOTILLA_ERR_KEY_WRONG_ROLE: {
    status: 403,
    message: 'signed by a key that may not sign this role',
    hint: 'use the key of the right role (release, delta, recovery)',
  },
  FLOTILLA_ERR_THRESHOLD: {
    status: 401,
    message: 'not enough valid signatures for the role threshold',
    hint: 'collect more signatures from keys of this role',
  },
  FLOTILLA_ERR_EXPIRED: {
    status: 401,
    message: 'metadata has expired',
    hint: 're-sign with a later expiry (possible freeze attack otherwise)',
  },
  FLOTILLA_ERR_ROOT_ROTATION: {
    status: 401,
    message: 'root rotation is not signed by a threshold of the old and the new root keys',
    hint: 'sign the new root with both key sets',
  },
  FLOTILLA_ERR_ROOT_VERSION: {
    status: 401,
    message: 'root version must increase by exactly one',
    hint: 'rotate one version at a time',
  },
  FLOTILLA_ERR_DOWNGRADE: {
    status: 409,
    message: 'securityVersion is lower than the installed one',
    hint: 'build the release with a securityVersion at least the installed one',
  },
  FLOTILLA_ERR_INCOMPATIBLE_HARDWARE: {
    status: 409,
    message: 'release is not compatible with this hardware',
    hint: 'check the compatible list of the release',
  },
  FLOTILLA_ERR_WRONG_DOCUMENT_TYPE: {
    status: 400,
    message: 'document has the wrong type',
    hint: 'pass the document the command expects',
  },
  FLOTILLA_ERR_DELTA_BASE_MISMATCH: {
    status: 409,
    message: 'delta does not apply to this base',
    hint: 'request the full image or a delta from the running version',
  },
  FLOTILLA_ERR_DEVICE_AUTH: {
    status: 401,
    message: 'device authentication failed',
    hint: 'check the device key, its clock and that it is registered',
  },
  FLOTILLA_ERR_DEVICE_AUTH_REPLAY: {
    status: 401,
    message: 'device password was already used',
    hint: 'make a fresh password for every connection',
  },
  // MQTT topics and access control
  FLOTILLA_ERR_TOPIC_INVALID: {
    status: 400,
    message: 'topic does not follow the Flotilla grammar',
    hint: 'topics are flotilla/v1/devices/{id}/{channel}',
  },
  FLOTILLA_ERR_ACL_DENIED: {
    status: 403,
    message: 'not allowed on this topic',
    hint: 'a device may only use its own topics',
  },
  FLOTILLA_ERR_DEVICE_ID_INVALID: {
    status: 400,
    message: 'device id is invalid',
    hint: 'use 1-64 characters of [A-Za-z0-9._-]',
  },
  // release names and versions
  FLOTILLA_ERR_RELEASE_NAME: {
    status: 400,
    message: 'not a valid release name',
    hint: 'use 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit (no "/")',
  },
  FLOTILLA_ERR_RELEASE_VERSION: {
    status: 400,
    message: 'not a valid release version',
    hint: 'use a semantic version such as 1.2.3 or 1.2.3-rc.1 (at most 64 characters)',
  },
  // generic
  FLOTILLA_ERR_INTERNAL: { status: 500, message: 'internal error', hint: 'see the log for details' },
} as const satisfies Record<string, ErrorEntry>;

export type ErrorCode = keyof typeof ERRORS;

export interface ErrorEntry {
  status: number;
  message: string;
  hint: string;
}

export interface CodedErrorOptions {
  cause?: unknown;
  details?: Record<string, unknown>;
}

/**
 * The shape every Flotilla error has, whatever package raised it: a stable code from that
 * package's registry, a message, a hint on how to fix it, an HTTP status where one applies, the
 * component that raised it, and the cause it wraps.
 */
export class CodedError<C extends string = string> extends Error {
  readonly code: C;
  readonly status: number;
  readonly hint: string;
  readonly component: string;
  readonly details?: Record<string, unknown>;

  constructor(entry: ErrorEntry, code: C, component: string, detail?: string, opts: CodedErrorOptions = {}) {
    super(detail ? `${entry.message}: ${detail}` : entry.message, { cause: opts.cause });
    this.code = code;
    this.status = entry.status;
    this.hint = entry.hint;
    this.component = component;
    if (opts.details) this.details = opts.details;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, hint: this.hint, component: this.component };
  }
}

/**
 * Makes a package's error class from its registry:
 * `export class ServerError extends errorClass(SERVER_ERRORS, 'server', 'ServerError') {}`.
 */
export function errorClass<R extends Record<string, ErrorEntry>>(
  registry: R,
  component: string,
  name: string,
) {
  return class extends CodedError<keyof R & string> {
    constructor(code: keyof R & string, detail?: string, opts: CodedErrorOptions = {}) {
      super(registry[code] as ErrorEntry, code, component, detail, opts);
      this.name = name;
    }
  };
}

/** An error of the shared layer; callers may name the component that raised it. */
export class FlotillaError extends CodedError<ErrorCode> {
  constructor(code: ErrorCode, detail?: string, opts: CodedErrorOptions & { component?: string } = {}) {
    super(ERRORS[code], code, opts.component ?? 'protocol', detail, opts);
    this.name = 'FlotillaError';
  }
}

export function isFlotillaError(err: unknown, code?: string): err is FlotillaError & { code: string } {
  return (
    typeof err === 'object' &&
    err !== null &&
    typeof (err as { code?: unknown }).code === 'string' &&
    (err as { code: string }).code.startsWith('FLOTILLA_ERR_') &&
    (code === undefined || (err as { code: string }).code === code)
  );
}
