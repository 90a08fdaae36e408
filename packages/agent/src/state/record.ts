import type { Slot } from '@flotilla/protocol';
import type { ErrorReport } from '../errors.js';
import type { AgentState } from './machine.js';

/** What the agent knows about the contents of one slot. */
export interface SlotContent {
  version: string | null;
  imageSha256: string | null;
  /** Stored signed release (relative to the data dir), for drift checks and status. */
  releaseFile: string | null;
}

export interface PayloadSource {
  url: string;
  size: number;
  sha256: string;
  /** Where the payload starts inside the resource (a section of a local bundle file). */
  offset?: number;
}

/** One update in flight, from offer to its terminal state. */
export interface Deployment {
  id: string;
  /** Counts re-offers of the same deployment id; part of the event ids of its milestones. */
  attempt: number;
  origin: 'server' | 'local';
  version: string;
  kind: 'release' | 'recovery';
  imageSha256: string;
  securityVersion: number;
  fromSlot: Slot;
  targetSlot: Slot;
  /** The signed release (relative to the data dir); the offer, when there is one. */
  releaseFile: string;
  offerFile: string | null;
  method: 'full' | 'delta' | null;
  full: PayloadSource;
  delta: (PayloadSource & { fromImageSha256: string; codec: string }) | null;
  /** A delta the agent refused and why (it then took the full image). */
  deltaRefused: ErrorReport | null;
  /** Verified chunks already fsynced into the target slot (resume point after a power cut). */
  verifiedChunks: number;
  /** Delta bytes fsynced into the spool (its resume point after a power cut). */
  spoolBytes?: number;
  /** The server's attempt number of this deployment, from its offer (absent: local or older server). */
  offerAttempt?: number;
}

export interface AgentRecord {
  schemaVersion: 1;
  state: AgentState;
  /** The slot that is known good; the bootloader falls back to it. */
  committedSlot: Slot;
  slots: { A: SlotContent | null; B: SlotContent | null };
  /** Anti-rollback floor: the highest securityVersion ever committed. */
  securityVersion: number;
  deployment: Deployment | null;
  /** Loop breaker: how many times each state started in this deployment. */
  runs: Partial<Record<AgentState, number>>;
  lastError: ErrorReport | null;
  /** The last deployment seen and how it ended: re-offers of it count attempts. */
  lastDeployment: { id: string; attempt: number; outcome: AgentState; offerAttempt?: number } | null;
  /** Recent command ids: a QoS 1 redelivery of an old command is ignored (bounded list). */
  recentCommands: string[];
}

export function otherSlot(s: Slot): Slot {
  return s === 'A' ? 'B' : 'A';
}

export function initialRecord(
  booted: Slot,
  content: SlotContent | null,
  securityVersion: number,
): AgentRecord {
  return {
    schemaVersion: 1,
    state: 'Idle',
    committedSlot: booted,
    slots: { A: null, B: null, [booted]: content } as AgentRecord['slots'],
    securityVersion,
    deployment: null,
    runs: {},
    lastError: null,
    lastDeployment: null,
    recentCommands: [],
  };
}
