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

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  emit(type: string, data: Record<string, unknown>): void {
    this.emitter.emit('event', { type, ts: Date.now(), data } satisfies ServerEvent);
  }

  subscribe(listener: (e: ServerEvent) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }
}
