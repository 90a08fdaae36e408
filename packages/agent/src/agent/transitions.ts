import type { Slot } from '@flotilla/protocol';
import { AgentError, type ErrorReport } from '../errors.js';
import { type AgentState, nextState, type StepEvent } from '../state/machine.js';
import type { AgentRecord, Deployment } from '../state/record.js';
import type { StateStore } from '../state/store.js';
import type { AgentDeps } from './deps.js';

/**
 * Owns the persisted record. State changes happen only in `transition` (table lookup, patch,
 * persist, then tell the observer); everything else reads it through `record`.
 */
export class RecordKeeper {
  private current: AgentRecord | null = null;

  constructor(
    private readonly store: StateStore,
    private readonly hooks: Pick<AgentDeps, 'faults' | 'onTransition'>,
  ) {}

  get record(): Readonly<AgentRecord> {
    if (!this.current) throw new AgentError('FLOTILLA_ERR_AGENT_INTERNAL', 'the record is read at start');
    return this.current;
  }

  private get mutable(): AgentRecord {
    return this.record as AgentRecord;
  }

  /** The deployment under way; every state but Idle has one. */
  get deployment(): Deployment {
    const deployment = this.record.deployment;
    if (!deployment)
      throw new AgentError('FLOTILLA_ERR_AGENT_INTERNAL', `state ${this.record.state} without a deployment`);
    return deployment;
  }

  /** Takes the record loaded (or made) at start. */
  adopt(record: AgentRecord): void {
    this.current = record;
  }

  /** Saves the record (after an optional change), then passes the `persisted:<state>` fault point. */
  async persist(patch?: (record: AgentRecord) => void): Promise<void> {
    patch?.(this.mutable);
    await this.store.save(this.mutable);
    this.hooks.faults?.(`persisted:${this.record.state}`);
  }

  /** Saves a change outside the state machine (the reconciled anti-rollback floor). */
  async save(patch: (record: AgentRecord) => void): Promise<void> {
    patch(this.mutable);
    await this.store.save(this.mutable);
  }

  /** Changes the record in memory only (command de-duplication: lost on a restart, by design). */
  remember(patch: (record: AgentRecord) => void): void {
    patch(this.mutable);
  }

  /** Saves progress inside a state (download checkpoints) without changing it. */
  async checkpoint(patch: (deployment: Deployment) => void): Promise<void> {
    const record = this.mutable;
    if (record.deployment) patch(record.deployment);
    await this.store.save(record);
    this.hooks.faults?.(`checkpoint:${record.state}`);
  }

  /** The only place the state changes: table lookup, patch, persist, then tell the observer. */
  async transition(
    event: StepEvent,
    bootedSlot: Slot,
    error?: ErrorReport,
    patch?: (record: AgentRecord) => void,
  ): Promise<{ from: AgentState; to: AgentState }> {
    const record = this.mutable;
    const from = record.state;
    // The widest window of a crash: the work of `from` is done, its successor not yet persisted.
    this.hooks.faults?.(`finished:${from}`);
    const to = nextState(from, event);
    patch?.(record);
    if (error) record.lastError = error;
    record.state = to;
    record.runs[to] = (record.runs[to] ?? 0) + 1;
    if (to === 'Idle') {
      const deployment = record.deployment;
      if (deployment)
        record.lastDeployment = {
          id: deployment.id,
          attempt: deployment.attempt,
          outcome: from,
          ...(deployment.offerAttempt !== undefined ? { offerAttempt: deployment.offerAttempt } : {}),
        };
      record.deployment = null;
      record.runs = {};
    }
    await this.store.save(record);
    this.hooks.onTransition?.({ from, event, to, slot: bootedSlot });
    this.hooks.faults?.(`persisted:${to}`);
    return { from, to };
  }
}
