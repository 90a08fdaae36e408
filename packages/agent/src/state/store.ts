import { rename } from 'node:fs/promises';
import { parseJson } from '@flotilla/protocol';
import { AgentError } from '../errors.js';
import { atomicWriteFile, readBounded } from '../fs-util.js';
import { AGENT_LIMITS } from '../limits.js';
import { isAgentState } from './machine.js';
import type { AgentRecord } from './record.js';

/** Where the agent keeps its state record; every save is atomic and durable before it returns. */
export interface StateStore {
  load(): Promise<AgentRecord | null>;
  save(record: AgentRecord): Promise<void>;
}

function decode(bytes: Uint8Array | string, where: string): AgentRecord {
  let value: unknown;
  try {
    value = parseJson(bytes, { maxBytes: AGENT_LIMITS.maxStateFileBytes });
  } catch (cause) {
    throw new AgentError('FLOTILLA_ERR_AGENT_STATE_CORRUPT', where, { cause });
  }
  const r = value as Partial<AgentRecord>;
  if (
    !r ||
    r.schemaVersion !== 1 ||
    !isAgentState(r.state) ||
    (r.committedSlot !== 'A' && r.committedSlot !== 'B') ||
    typeof r.securityVersion !== 'number' ||
    typeof r.slots !== 'object' ||
    typeof r.runs !== 'object'
  ) {
    throw new AgentError('FLOTILLA_ERR_AGENT_STATE_CORRUPT', `${where}: unexpected shape`);
  }
  return r as AgentRecord;
}

/** State in one JSON file on the data partition (write temp, fsync, rename, fsync dir). */
export class FileStateStore implements StateStore {
  constructor(readonly path: string) {}

  async load(): Promise<AgentRecord | null> {
    let bytes: Buffer | null;
    try {
      bytes = await readBounded(this.path, AGENT_LIMITS.maxStateFileBytes);
    } catch (cause) {
      throw new AgentError('FLOTILLA_ERR_AGENT_STATE_CORRUPT', this.path, { cause });
    }
    return bytes === null ? null : decode(bytes, this.path);
  }

  async save(record: AgentRecord): Promise<void> {
    await atomicWriteFile(this.path, JSON.stringify(record));
  }

  /** Moves an unreadable state file aside so the agent can start fresh and the evidence stays. */
  async quarantine(suffix: string): Promise<void> {
    await rename(this.path, `${this.path}.corrupt-${suffix}`).catch(() => undefined);
  }
}

/**
 * The same contract in memory (serialised, so callers never share objects with the store).
 * `text` is the raw stored contents to start from (tests model a corrupt record with it).
 */
export class MemoryStateStore implements StateStore {
  constructor(private text: string | null = null) {}
  async load(): Promise<AgentRecord | null> {
    return this.text === null ? null : decode(this.text, 'memory');
  }
  async save(record: AgentRecord): Promise<void> {
    this.text = JSON.stringify(record);
  }
}
