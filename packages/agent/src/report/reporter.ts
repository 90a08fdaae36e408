import { randomBytes } from 'node:crypto';
import {
  DeviceEventMessage,
  type DeviceStateMessage,
  type EventKind,
  type InventoryMessage,
  SCHEMA_VERSION,
  validate,
} from '@flotilla/protocol';
import type { Clock } from '../clock.js';
import type { ErrorReport } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Transport } from '../transport/types.js';
import type { Outbox } from './outbox.js';

export interface EventFields {
  deploymentId: string | null;
  version?: string;
  progress?: { done: number; total: number; bytesDownloaded?: number };
  reason?: ErrorReport;
  detail?: Record<string, string | number | boolean | null>;
}

/**
 * Builds the MQTT reports (docs/agent.md#reports-mqtt) and gets them to the server: durable events go through
 * the on-disk outbox first and are removed only after the broker's PUBACK, so nothing is lost
 * offline; a resend carries the same eventId and the server counts it once. Progress and state
 * are best-effort: only the latest matters.
 */
export class Reporter {
  private seq: number;
  private readonly bootNonce = randomBytes(4).toString('hex');
  private counter = 0;
  private flushing: Promise<void> | null = null;
  /** A flush was asked for since the running pass began reading the outbox. */
  private flushAgain = false;
  private latestState: DeviceStateMessage | null = null;
  private latestInventory: InventoryMessage | null = null;

  constructor(
    private readonly transport: Transport,
    private readonly outbox: Outbox,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    // Monotonic across restarts without persisting a counter: wall time in µs-ish resolution.
    this.seq = clock.now().getTime() * 1000;
  }

  private ts(): string {
    return this.clock.now().toISOString();
  }

  nextSeq(): number {
    return ++this.seq;
  }

  /**
   * `eventId` should be deterministic for milestones (deployment + attempt + kind) so that a
   * repeat after a power cut is the same event to the server.
   */
  async event(kind: EventKind, f: EventFields, opts: { durable: boolean; eventId?: string }): Promise<void> {
    const msg: DeviceEventMessage = {
      schemaVersion: SCHEMA_VERSION,
      type: 'event',
      eventId: opts.eventId ?? `${this.bootNonce}.${this.counter++}`,
      seq: this.nextSeq(),
      ts: this.ts(),
      kind,
      deploymentId: f.deploymentId,
      ...(f.version ? { version: f.version } : {}),
      ...(f.progress ? { progress: f.progress } : {}),
      ...(f.reason
        ? { reason: { code: f.reason.code.slice(0, 64), message: f.reason.message.slice(0, 1024) } }
        : {}),
      ...(f.detail ? { detail: truncateDetail(f.detail) } : {}),
    };
    validate(DeviceEventMessage, msg, 'event');
    const text = JSON.stringify(msg);
    if (opts.durable) {
      await this.outbox.add(text);
      void this.flush();
    } else if (this.transport.connected()) {
      await this.transport.publish('events', text, 0).catch(() => undefined);
    }
  }

  state(msg: Omit<DeviceStateMessage, 'schemaVersion' | 'type' | 'seq' | 'ts'>): void {
    this.latestState = {
      schemaVersion: SCHEMA_VERSION,
      type: 'state',
      seq: this.nextSeq(),
      ts: this.ts(),
      ...msg,
    };
    this.sendLatest();
  }

  inventory(msg: Omit<InventoryMessage, 'schemaVersion' | 'type' | 'ts'>): void {
    this.latestInventory = { schemaVersion: SCHEMA_VERSION, type: 'inventory', ts: this.ts(), ...msg };
    this.sendLatest();
  }

  private sendLatest(): void {
    if (!this.transport.connected()) return;
    if (this.latestState)
      this.transport.publish('state', JSON.stringify(this.latestState), 1).catch(() => undefined);
    if (this.latestInventory) {
      this.transport.publish('inventory', JSON.stringify(this.latestInventory), 1).catch(() => undefined);
      this.latestInventory = null;
    }
  }

  /** Called on every (re)connect: latest state, inventory, then the outbox in order. */
  onConnect(): void {
    this.sendLatest();
    void this.flush();
  }

  /**
   * Sends the outbox oldest first; stops at the first failure (offline) and tries again later.
   * A flush asked for while one runs makes that one pass over the outbox again: the running pass
   * may already have read an empty outbox before the new event was written, and the event —
   * often an update's last, `healthy` — would otherwise wait for the next reconnect.
   */
  flush(): Promise<void> {
    this.flushAgain = true;
    if (this.flushing) return this.flushing;
    // `.finally` runs after the assignment even when the body finishes synchronously (offline).
    this.flushing = this.flushPasses().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  private async flushPasses(): Promise<void> {
    while (this.flushAgain) {
      this.flushAgain = false;
      if (!(await this.sendOutbox())) return; // offline: the next connect flushes
    }
  }

  /** One pass; false when it stopped on a failure (offline). */
  private async sendOutbox(): Promise<boolean> {
    try {
      while (this.transport.connected()) {
        const items = await this.outbox.list();
        if (items.length === 0) break;
        for (const item of items) {
          await this.transport.publish('events', item.payload, 1);
          await this.outbox.remove(item.id);
        }
      }
      const dropped = this.outbox.takeDropped();
      if (dropped > 0) this.log.warn({ dropped }, 'outbox overflowed: oldest events dropped');
      return this.transport.connected();
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'outbox flush stopped');
      return false;
    }
  }
}

function truncateDetail(d: Record<string, string | number | boolean | null>) {
  const out: Record<string, string | number | boolean | null> = {};
  for (const [k, v] of Object.entries(d).slice(0, 32)) {
    out[k.slice(0, 64)] =
      typeof v === 'string' ? v.slice(0, 4096) : typeof v === 'number' ? Math.max(0, Math.floor(v)) : v;
  }
  return out;
}
