/**
 * The agent's error registry. Codes are stable: they travel to the server in `failed`,
 * `offer-rejected` and `rolled-back` events and the dashboard keys on them. Errors of the shared
 * layer (`@flotilla/protocol`) and of the delta codec keep their own codes and are reported as-is.
 */
export const AGENT_ERRORS = {
  FLOTILLA_ERR_AGENT_CONFIG: { message: 'agent configuration is invalid', hint: 'fix the named field' },
  FLOTILLA_ERR_AGENT_STATE_CORRUPT: {
    message: 'persisted agent state is unreadable',
    hint: 'the agent started from the booted slot; check the data partition',
  },
  FLOTILLA_ERR_AGENT_STATE_LOOP: {
    message: 'a state repeated too often (loop breaker)',
    hint: 'look at the earlier failures of this deployment',
  },
  FLOTILLA_ERR_AGENT_BUSY: {
    message: 'another update is in progress or another agent holds the lock',
    hint: 'wait for it to finish, or stop the agent service before a local install',
  },
  FLOTILLA_ERR_AGENT_ACTIVE_SLOT_WRITE: {
    message: 'refusing to write the active slot',
    hint: 'this is a bug: installs only ever target the inactive slot',
  },
  FLOTILLA_ERR_AGENT_SLOT_MOUNTED: {
    message: 'refusing to write a slot that is mounted or held open exclusively',
    hint: 'unmount the inactive slot (see /proc/self/mountinfo); nothing may use it during an update',
  },
  FLOTILLA_ERR_AGENT_SLOT_TOO_SMALL: {
    message: 'image does not fit the inactive slot',
    hint: 'build a smaller image or repartition',
  },
  FLOTILLA_ERR_AGENT_IO: { message: 'slot or data partition I/O failed', hint: 'check the storage' },
  FLOTILLA_ERR_AGENT_DOWNLOAD_HTTP: {
    message: 'download server answered with an error',
    hint: 'check the artifact URL and the server',
  },
  FLOTILLA_ERR_AGENT_DOWNLOAD_FAILED: {
    message: 'download failed after all retries',
    hint: 'check the network; the next attempt resumes where this one stopped',
  },
  FLOTILLA_ERR_AGENT_URL_EXPIRED: {
    message: 'the signed download URL expired and no fresh one came',
    hint: 'check that the server is reachable over MQTT and the device clock; the next try resumes',
  },
  FLOTILLA_ERR_AGENT_DOWNLOAD_TRUNCATED: {
    message: 'download ended before the signed size',
    hint: 'the object on the server, CDN or USB stick is cut short; replace it (the next try resumes)',
  },
  FLOTILLA_ERR_AGENT_DOWNLOAD_TOO_LARGE: {
    message: 'download is larger than the signed size',
    hint: 'the server sent more bytes than the manifest allows (endless-data attack?)',
  },
  FLOTILLA_ERR_AGENT_DOWNLOAD_TOO_SLOW: {
    message: 'download stayed below the minimum rate',
    hint: 'slow-retrieval attack or a bad link; raise download.minBytesPerSecond only if the link really is that slow',
  },
  FLOTILLA_ERR_AGENT_CHUNK_HASH_MISMATCH: {
    message: 'image chunk does not match the signed manifest',
    hint: 'the artifact was tampered with or corrupted; nothing unverified was written',
  },
  FLOTILLA_ERR_AGENT_IMAGE_HASH_MISMATCH: {
    message: 'written image does not match the signed image hash',
    hint: 'the inactive slot is faulty or was changed while installing',
  },
  FLOTILLA_ERR_AGENT_DELTA_HASH_MISMATCH: {
    message: 'downloaded delta does not match the signed delta descriptor',
    hint: 'the delta was tampered with or corrupted',
  },
  FLOTILLA_ERR_AGENT_SPOOL_FULL: {
    message: 'delta does not fit the spool limit or free space',
    hint: 'free space on the data partition or take the full image',
  },
  FLOTILLA_ERR_AGENT_HOOK_VETO: { message: 'a hook vetoed the update', hint: 'see the hook-output event' },
  FLOTILLA_ERR_AGENT_HOOK_RETRY_EXHAUSTED: {
    message: 'a hook asked to retry later too many times',
    hint: 'see the hook-output event; raise hooks.maxRetries if intended',
  },
  FLOTILLA_ERR_AGENT_UPDATE_LOCKED: {
    message: 'the update lock stayed held past the deadline',
    hint: 'an application holds the update lock; release it or raise updateLock.maxWaitMs',
  },
  FLOTILLA_ERR_AGENT_UPDATE_LOCK_PROBE: {
    message: 'the update lock could not be checked',
    hint: 'check updateLock (its path must be creatable by the agent) and that flock(1) is installed',
  },
  FLOTILLA_ERR_AGENT_BOOT_FALLBACK: {
    message: 'the new slot did not come up; the bootloader fell back to the old slot',
    hint: 'the image does not boot or the agent never started on it',
  },
  FLOTILLA_ERR_AGENT_HEALTH_CHECK_FAILED: {
    message: 'a health check failed after the reboot',
    hint: 'see the reason; the device rolled back',
  },
  FLOTILLA_ERR_AGENT_BOOTLOADER: {
    message: 'bootloader environment could not be read or written',
    hint: 'check fw_env.config / grubenv and the bootloader tools',
  },
  FLOTILLA_ERR_AGENT_BOOTENV_REPAIRED: {
    message: 'the bootloader environment was torn (a power cut while it was written) and was rebuilt',
    hint: 'nothing to do: the device runs its committed slot; the environment was rewritten from the committed copy',
  },
  FLOTILLA_ERR_AGENT_ROLLBACK_PENDING: {
    message: 'the device is still on the new, uncommitted slot: the hand-back to the old slot failed',
    hint: 'the trial stays armed, so the bootloader falls back after bootlimit boots; check the bootloader environment',
  },
  FLOTILLA_ERR_AGENT_BUNDLE: {
    message: 'bundle file is invalid',
    hint: 'use a .flot made by `flotilla bundle`',
  },
  FLOTILLA_ERR_AGENT_BUNDLE_UNREADABLE: {
    message: 'bundle file cannot be read',
    hint: 'check the path (is the USB stick mounted?) and that the agent may read it',
  },
  FLOTILLA_ERR_AGENT_TRUST_FETCH: {
    message: 'newer trust root metadata could not be fetched',
    hint: 'check the server address; the device keeps its current root and tries again with the next offer',
  },
  FLOTILLA_ERR_AGENT_CANCELLED: { message: 'deployment was cancelled', hint: 'none needed' },
  FLOTILLA_ERR_AGENT_ALREADY_INSTALLED: {
    message: 'this image is already the committed one',
    hint: 'nothing to do',
  },
  FLOTILLA_ERR_AGENT_REBOOT: { message: 'reboot command failed', hint: 'check reboot.command' },
  FLOTILLA_ERR_AGENT_USAGE: {
    message: 'invalid arguments',
    hint: 'see `flotilla-agent --help` (and `flotilla-agent init` without arguments)',
  },
  FLOTILLA_ERR_AGENT_INIT_EXISTS: {
    message: 'the config file already exists',
    hint: 'pass --force to write it again (the device key and bootloader variables already set are kept), or --config another path',
  },
  FLOTILLA_ERR_AGENT_CONFIG_NOT_FOUND: {
    message: 'agent config file not found',
    hint: '`flotilla-agent init` writes one; or pass --config FILE / set FLOTILLA_AGENT_CONFIG',
  },
  FLOTILLA_ERR_AGENT_BOOTENV_NOT_FOUND: {
    message: 'bootloader environment not found',
    hint: '`flotilla-agent init --bootloader file|grub|uboot` writes it; formats in docs/agent.md (Bootloader environment files)',
  },
  FLOTILLA_ERR_AGENT_DEVICE_KEY_NOT_FOUND: {
    message: 'device key not found',
    hint: '`flotilla-agent init` makes one at <dataDir>/device-key.json (the default of server.deviceKeyFile), or set server.provisioningTokenFile to have the agent make it on first login',
  },
  FLOTILLA_ERR_AGENT_FILE_NOT_FOUND: {
    message: 'a file the config names does not exist',
    hint: 'check the path named in the message (config fields: trustDir, slots, factoryReleaseFile, server.*File)',
  },
  FLOTILLA_ERR_AGENT_INTERNAL: {
    message: 'the agent broke one of its own invariants',
    hint: 'this is a bug: report it with the agent log and `flotilla-agent status`',
  },
  FLOTILLA_ERR_AGENT_OFFLINE: {
    message: 'not connected to the server',
    hint: 'the report waits in the outbox and is sent on the next connect; check the network and server address',
  },
  FLOTILLA_ERR_AGENT_KILLED: {
    message: 'agent was killed (fault injection)',
    hint: 'only tests and the simulator raise this',
  },
} as const satisfies Record<string, { message: string; hint: string }>;

export type AgentErrorCode = keyof typeof AGENT_ERRORS;

export class AgentError extends Error {
  readonly code: AgentErrorCode;
  readonly hint: string;
  readonly component: string;

  constructor(code: AgentErrorCode, detail?: string, opts: { component?: string; cause?: unknown } = {}) {
    const entry = AGENT_ERRORS[code];
    super(detail ? `${entry.message}: ${detail}` : entry.message, { cause: opts.cause });
    this.name = 'AgentError';
    this.code = code;
    this.hint = entry.hint;
    this.component = opts.component ?? 'agent';
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, hint: this.hint, component: this.component };
  }
}

/**
 * Thrown by fault injection to model a power cut or SIGKILL: nothing may catch and handle it as
 * an ordinary failure (no state write, no report), it only unwinds the agent.
 */
export class AgentKilled extends AgentError {
  constructor(where: string) {
    super('FLOTILLA_ERR_AGENT_KILLED', where);
  }
}

export function isKilled(err: unknown): err is AgentKilled {
  return err instanceof AgentKilled;
}

export interface ErrorReport {
  code: string;
  message: string;
}

/** What goes to the server: a stable code and a bounded message, from any error. */
export function toErrorReport(err: unknown): ErrorReport {
  const e = err as { code?: unknown; message?: unknown };
  const code =
    typeof e?.code === 'string' && e.code.startsWith('FLOTILLA_ERR_') ? e.code : 'FLOTILLA_ERR_INTERNAL';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  return { code: code.slice(0, 64), message: message.slice(0, 1024) };
}

export function errorCodeOf(err: unknown): string | undefined {
  const c = (err as { code?: unknown })?.code;
  return typeof c === 'string' ? c : undefined;
}
