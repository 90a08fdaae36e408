import type { ReleaseManifest, RootMetadata, Slot } from '@flotilla/protocol';
import type { ErrorReport } from '../errors.js';
import type { HookPoint } from '../hooks/hooks.js';
import type { AgentLimits } from '../limits.js';
import type { Logger } from '../logger.js';
import type { EventFields, Reporter } from '../report/reporter.js';
import type { AgentState, StepEvent } from '../state/machine.js';
import type { AgentRecord, Deployment } from '../state/record.js';
import type { AgentDeps } from './deps.js';

/** What a state's work ends with: an event for the table, or "halt" (a reboot is under way). */
export type StepOutcome =
  | { event: StepEvent; error?: ErrorReport; patch?: (record: AgentRecord) => void }
  | { halt: true };

export type EventKind = Parameters<Reporter['event']>[0];

/** The devices and services a step drives (a subset of the agent's I/O boundary). */
export type StepIo = Pick<
  AgentDeps,
  'slots' | 'bootloader' | 'clock' | 'fetcher' | 'reboot' | 'health' | 'faults' | 'random'
>;

/**
 * Everything a state's work may read and do, nothing more (the agent passes one to each step).
 * The record is read-only here: a step changes it only through the `patch` of its outcome (applied
 * by the transition) or through `checkpoint` (download progress inside a state).
 */
export interface StepContext {
  /** The deployment under way (every state but Idle has one). */
  readonly deployment: Deployment;
  readonly bootedSlot: Slot;
  readonly committedSlot: Slot;
  readonly securityVersion: number;
  /** Why the deployment is failing or rolling back, when a step recorded it. */
  readonly lastError: ErrorReport | null;
  /** The state a power cut or reboot interrupted, when this start resumed one. */
  readonly resumedFrom: AgentState | null;
  readonly root: RootMetadata;
  readonly device: { readonly deviceId: string; readonly hardware: string };
  readonly limits: AgentLimits;
  readonly log: Logger;
  /** Aborted when the deployment is cancelled or the agent stops. */
  readonly signal: AbortSignal;
  readonly io: StepIo;
  /** Raises the anti-rollback floor's own durable copy. */
  raiseFloor(floor: number): Promise<void>;
  event(kind: EventKind, fields: EventFields, durable: boolean): Promise<void>;
  /** A durable report of the deployment's progress, sent once per (deployment, attempt, kind). */
  milestone(kind: EventKind, fields?: Omit<EventFields, 'deploymentId'>): Promise<void>;
  flushReports(): Promise<void>;
  /** Saves progress inside a state (download checkpoints) without changing it. */
  checkpoint(patch: (deployment: Deployment) => void): Promise<void>;
  loadRelease(relativePath: string): Promise<ReleaseManifest>;
  loadEnvelope(relativePath: string): Promise<unknown>;
  spoolPath(deployment: Deployment): string;
  runHooks(point: HookPoint): Promise<void>;
  waitForUpdateLock(): Promise<void>;
  waitOnline(ms: number): Promise<boolean>;
  /** Asks the server for fresh artifact URLs (a signed URL expired mid-download). */
  refreshArtifactUrl(which: 'full' | 'delta'): Promise<string>;
}
