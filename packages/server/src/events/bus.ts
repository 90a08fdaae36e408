import { EventEmitter } from 'node:events';

/** What the server tells live listeners (the SSE stream, the dashboard) after a change committed. */
export interface ServerEvent {
  /** e.g. device.state, device.event, device.registered, release.created, rollout.updated, delta.ready */
  type: string;
  ts: number;
  data: Record<string, unknown>;
}

export class EventBus {
  private readonly emitter = new EventEmitter();
  private readonly forwarders = new Set<(e: ServerEvent) => void>();

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  /** An event of this node: its listeners hear it, and it is forwarded to the other nodes (if any). */
  emit(type: string, data: Record<string, unknown>): void {
    const event: ServerEvent = { type, ts: Date.now(), data };
    this.emitter.emit('event', event);
    for (const forward of this.forwarders) forward(event);
  }

  /** An event another node emitted: heard here, never forwarded again. */
  deliverRemote(event: ServerEvent): void {
    this.emitter.emit('event', event);
    this.emitter.emit('remote', event);
  }

  /** Hears only what other nodes emitted (the rollout engine reacts to their reports and actions). */
  subscribeRemote(listener: (e: ServerEvent) => void): () => void {
    this.emitter.on('remote', listener);
    return () => this.emitter.off('remote', listener);
  }

  subscribe(listener: (e: ServerEvent) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }

  /** Sends every event this node emits to `forward` as well (a relay to other nodes). */
  forwardLocal(forward: (e: ServerEvent) => void): () => void {
    this.forwarders.add(forward);
    return () => this.forwarders.delete(forward);
  }
}
