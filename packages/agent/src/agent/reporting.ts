import { createHash } from 'node:crypto';
import { statfs } from 'node:fs/promises';
import type { Slot } from '@flotilla/protocol';
import type { BootState } from '../bootloader/types.js';
import type { ErrorReport } from '../errors.js';
import type { HookPoint, HookRun } from '../hooks/hooks.js';
import type { EventFields, Reporter } from '../report/reporter.js';
import type { AgentState } from '../state/machine.js';
import type { AgentRecord, Deployment } from '../state/record.js';
import type { AgentConfig, AgentDeps } from './deps.js';
import type { EventKind } from './step-context.js';

export const AGENT_VERSION = '0.1.0';

/** What `flotilla-agent status` prints. */
export interface AgentStatus {
  deviceId: string;
  state: AgentState;
  bootedSlot: Slot;
  committedSlot: Slot;
  slots: AgentRecord['slots'];
  securityVersion: number;
  bootloader: (BootState & { kind: string }) | { kind: string; error: string };
  deployment: Pick<
    Deployment,
    'id' | 'version' | 'targetSlot' | 'method' | 'origin' | 'verifiedChunks'
  > | null;
  lastError: ErrorReport | null;
  lastDeployment: AgentRecord['lastDeployment'];
  halted: boolean;
}

/** Milestones get an id from (deployment, attempt, kind): a repeat after a crash is one event. */
export function milestoneId(deployment: Deployment, kind: string): string {
  const idHash = createHash('sha256').update(deployment.id).digest('hex').slice(0, 16);
  return `${idHash}.${deployment.attempt}.${kind}`;
}

/** Schema bound of one detail string: longer hook output goes in ordered parts. */
const HOOK_OUTPUT_PART = 4096;

/** Turns the agent's record into the reports the server sees (events, state, inventory). */
export class AgentReporting {
  constructor(
    readonly reporter: Reporter,
    private readonly config: AgentConfig,
    private readonly deps: Pick<AgentDeps, 'bootloader' | 'slots'>,
  ) {}

  async event(kind: EventKind, fields: EventFields, durable: boolean, eventId?: string): Promise<void> {
    await this.reporter.event(kind, fields, { durable, ...(eventId ? { eventId } : {}) });
  }

  async milestone(
    deployment: Deployment,
    kind: EventKind,
    fields: Omit<EventFields, 'deploymentId'> = {},
  ): Promise<void> {
    await this.event(
      kind,
      { deploymentId: deployment.id, version: deployment.version, ...fields },
      true,
      milestoneId(deployment, kind),
    );
  }

  publishState(record: Readonly<AgentRecord>, bootedSlot: Slot): void {
    const content = record.slots[bootedSlot];
    this.reporter.state({
      version: content?.version ?? null,
      imageSha256: content?.imageSha256 ?? null,
      securityVersion: record.securityVersion,
      activeSlot: bootedSlot,
      agentState: record.state,
      deploymentId: record.deployment?.id ?? null,
      lastError: record.lastError,
    });
  }

  async publishInventory(record: Readonly<AgentRecord>): Promise<void> {
    const slotInfo = async (name: Slot) => {
      const content = record.slots[name];
      const size = await this.deps.slots
        .device(name)
        .size()
        .catch(() => 0);
      return { name, size, version: content?.version ?? null, imageSha256: content?.imageSha256 ?? null };
    };
    const free = await statfs(this.config.dataDir).then(
      (stats) => stats.bavail * stats.bsize,
      () => undefined,
    );
    this.reporter.inventory({
      hardware: this.config.hardware,
      bootloader: this.deps.bootloader.kind,
      agentVersion: this.config.agentVersion ?? AGENT_VERSION,
      slots: [await slotInfo('A'), await slotInfo('B')],
      ...(free !== undefined ? { freeSpaceBytes: free } : {}),
      ...(this.config.tags ? { tags: this.config.tags } : {}),
    });
  }

  /** A hook's output, its last `maxOutputBytes` in ordered parts of at most 4 KiB. */
  async hookOutput(deploymentId: string | null, point: HookPoint, run: HookRun, maxOutputBytes: number) {
    const text = run.output.slice(-maxOutputBytes);
    const parts = Math.max(1, Math.ceil(text.length / HOOK_OUTPUT_PART));
    for (let part = 0; part < parts; part++) {
      await this.event(
        'hook-output',
        {
          deploymentId,
          detail: {
            point,
            hook: run.name,
            exitCode: run.exitCode,
            part: part + 1,
            parts,
            truncated: run.truncated,
            output: text.slice(part * HOOK_OUTPUT_PART, (part + 1) * HOOK_OUTPUT_PART),
          },
        },
        true,
      );
    }
  }

  /** The agent's status for `flotilla-agent status` (the bootloader is read fresh). */
  async status(record: Readonly<AgentRecord>, bootedSlot: Slot, halted: boolean): Promise<AgentStatus> {
    const kind = this.deps.bootloader.kind;
    const bootloader = await this.deps.bootloader.read().then(
      (state) => ({ kind, ...state }),
      (err: Error) => ({ kind, error: err.message }),
    );
    const deployment = record.deployment;
    return {
      deviceId: this.config.deviceId,
      state: record.state,
      bootedSlot,
      committedSlot: record.committedSlot,
      slots: record.slots,
      securityVersion: record.securityVersion,
      bootloader,
      deployment: deployment
        ? {
            id: deployment.id,
            version: deployment.version,
            targetSlot: deployment.targetSlot,
            method: deployment.method,
            origin: deployment.origin,
            verifiedChunks: deployment.verifiedChunks,
          }
        : null,
      lastError: record.lastError,
      lastDeployment: record.lastDeployment,
      halted,
    };
  }
}
