import { parseJson } from '@flotilla/protocol';
import { AgentError } from '../errors.js';
import { atomicWriteFile, readBounded } from '../fs-util.js';

/**
 * The anti-rollback floor (highest securityVersion ever committed), kept apart from the state
 * record: a corrupt or lost state file must not reopen a downgrade. The agent takes the maximum
 * of this store, the state record and the bootloader environment's copy, and only ever raises it.
 */
export interface SecurityFloorStore {
  /** The stored floor, null when none was ever stored; throws STATE_CORRUPT when unreadable. */
  load(): Promise<number | null>;
  /** Stores max(stored, value) durably and returns it: the floor never goes down. */
  raise(value: number): Promise<number>;
}

const MAX_BYTES = 4096;

function decode(bytes: Uint8Array | string, where: string): number {
  let v: unknown;
  try {
    v = parseJson(bytes, { maxBytes: MAX_BYTES });
  } catch (cause) {
    throw new AgentError('FLOTILLA_ERR_AGENT_STATE_CORRUPT', `${where}: not JSON`, { cause });
  }
  const f = v as { schemaVersion?: unknown; securityVersion?: unknown };
  if (
    f?.schemaVersion !== 1 ||
    typeof f.securityVersion !== 'number' ||
    !Number.isSafeInteger(f.securityVersion) ||
    f.securityVersion < 0
  )
    throw new AgentError('FLOTILLA_ERR_AGENT_STATE_CORRUPT', `${where}: unexpected shape`);
  return f.securityVersion;
}

function checkValue(value: number): void {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new RangeError(`securityVersion floor must be a non-negative integer, got ${value}`);
}

/** `{"schemaVersion":1,"securityVersion":N}` in its own small file, written atomically. */
export class FileSecurityFloor implements SecurityFloorStore {
  constructor(readonly path: string) {}

  async load(): Promise<number | null> {
    let bytes: Buffer | null;
    try {
      bytes = await readBounded(this.path, MAX_BYTES);
    } catch (cause) {
      throw new AgentError('FLOTILLA_ERR_AGENT_STATE_CORRUPT', this.path, { cause });
    }
    return bytes === null ? null : decode(bytes, this.path);
  }

  async raise(value: number): Promise<number> {
    checkValue(value);
    // An unreadable file is replaced: the caller passes the maximum of every other source.
    const cur = await this.load().catch(() => null);
    if (cur !== null && cur >= value) return cur;
    await atomicWriteFile(this.path, JSON.stringify({ schemaVersion: 1, securityVersion: value }));
    return value;
  }
}

/** The same contract in memory (tests). `initial` is the raw stored text, to model corruption. */
export class MemorySecurityFloor implements SecurityFloorStore {
  constructor(private text: string | null = null) {}

  async load(): Promise<number | null> {
    return this.text === null ? null : decode(this.text, 'memory');
  }

  async raise(value: number): Promise<number> {
    checkValue(value);
    const cur = await this.load().catch(() => null);
    if (cur !== null && cur >= value) return cur;
    this.text = JSON.stringify({ schemaVersion: 1, securityVersion: value });
    return value;
  }
}
