import { AgentError } from '../errors.js';
import type { ReportChannel, Transport, TransportHandlers } from './types.js';

export interface DeliveredMessage {
  deviceId: string;
  channel: ReportChannel;
  payload: unknown;
}

const MAX_QUEUED_COMMANDS = 100;

/**
 * An in-process stand-in for the broker: collects what devices publish, lets a test or the
 * simulator push commands and cut or restore a device's link.
 */
export class MemoryHub {
  readonly delivered: DeliveredMessage[] = [];
  private readonly links = new Map<string, MemoryTransport>();
  private readonly offline = new Set<string>();
  /** Commands for devices whose link is down (like a broker's persistent session, QoS 1). */
  private readonly queued = new Map<string, Uint8Array[]>();

  transport(deviceId: string): MemoryTransport {
    const t = new MemoryTransport(this, deviceId);
    this.links.set(deviceId, t);
    return t;
  }

  /** @internal */
  isOnline(deviceId: string): boolean {
    return !this.offline.has(deviceId);
  }

  setOnline(deviceId: string, online: boolean): void {
    if (online) this.offline.delete(deviceId);
    else this.offline.add(deviceId);
    this.links.get(deviceId)?.linkChanged();
  }

  sendCommand(deviceId: string, command: unknown): void {
    const payload = new TextEncoder().encode(JSON.stringify(command));
    const link = this.links.get(deviceId);
    if (link?.connected()) {
      link.deliverCommand(payload);
      return;
    }
    const q = this.queued.get(deviceId) ?? [];
    if (q.length < MAX_QUEUED_COMMANDS) q.push(payload);
    this.queued.set(deviceId, q);
  }

  /** @internal Commands queued while the device was offline, oldest first. */
  takeQueued(deviceId: string): Uint8Array[] {
    const q = this.queued.get(deviceId) ?? [];
    this.queued.delete(deviceId);
    return q;
  }

  /** Events as the server records them: one per eventId. */
  events(deviceId: string): Record<string, unknown>[] {
    const seen = new Set<string>();
    const out: Record<string, unknown>[] = [];
    for (const m of this.delivered) {
      if (m.deviceId !== deviceId || m.channel !== 'events') continue;
      const e = m.payload as { eventId: string };
      if (seen.has(e.eventId)) continue;
      seen.add(e.eventId);
      out.push(m.payload as Record<string, unknown>);
    }
    return out;
  }
}

export class MemoryTransport implements Transport {
  private handlers: TransportHandlers | null = null;
  private up = false;

  constructor(
    private readonly hub: MemoryHub,
    readonly deviceId: string,
  ) {}

  start(handlers: TransportHandlers): void {
    this.handlers = handlers;
    this.linkChanged();
  }

  /** @internal */
  linkChanged(): void {
    if (!this.handlers) return;
    const want = this.hub.isOnline(this.deviceId);
    if (want === this.up) return;
    this.up = want;
    queueMicrotask(() => {
      if (!want) return this.handlers?.onDisconnect();
      if (!this.up) return;
      // Like MQTT with clean: false: QoS 1 commands sent while offline arrive on reconnect.
      for (const p of this.hub.takeQueued(this.deviceId)) this.handlers?.onCommand(p);
      this.handlers?.onConnect();
    });
  }

  /** @internal */
  deliverCommand(payload: Uint8Array): void {
    if (this.up) this.handlers?.onCommand(payload);
  }

  connected(): boolean {
    return this.up;
  }

  async publish(channel: ReportChannel, payload: string): Promise<void> {
    if (!this.up) throw new AgentError('FLOTILLA_ERR_AGENT_OFFLINE');
    this.hub.delivered.push({ deviceId: this.deviceId, channel, payload: JSON.parse(payload) });
  }

  async stop(): Promise<void> {
    this.handlers = null;
    this.up = false;
  }
}
