import { describe, expect, it } from 'vitest';
import { systemClock } from '../src/index.js';
import { silentLogger } from '../src/logger.js';
import type { OutboxItem } from '../src/report/outbox.js';
import { Reporter } from '../src/report/reporter.js';
import { MemoryHub, MemoryOutbox } from '../src/testing.js';

/**
 * An outbox whose reads can be held: `list()` takes its snapshot when called and answers when
 * released — as a readdir that started before a new event's file was renamed into place and
 * completed after it (a busy machine's thread pool reorders them).
 */
class HeldOutbox extends MemoryOutbox {
  private gate: (() => void) | null = null;
  hold = false;
  reading: Promise<void> | null = null;
  override async list(): Promise<OutboxItem[]> {
    const snapshot = await super.list();
    if (this.hold) {
      this.hold = false;
      let started!: () => void;
      this.reading = new Promise<void>((r) => {
        started = r;
      });
      await new Promise<void>((release) => {
        this.gate = release;
        started();
      });
    }
    return snapshot;
  }
  release(): void {
    this.gate?.();
  }
}

describe('report outbox flush', () => {
  it('sends an event written while a flush was reading an empty outbox (the last report of an update left behind until the next reconnect)', async () => {
    const hub = new MemoryHub();
    const transport = hub.transport('dev-1');
    transport.start({
      onCommand: () => undefined,
      onConnect: () => undefined,
      onDisconnect: () => undefined,
    });
    await new Promise<void>((r) => queueMicrotask(r));
    expect(transport.connected()).toBe(true);
    const outbox = new HeldOutbox({ maxEvents: 100, maxBytes: 1 << 20 });
    const reporter = new Reporter(transport, outbox, systemClock, silentLogger);

    // A flush starts and reads the (empty) outbox; the read is held open.
    outbox.hold = true;
    const running = reporter.flush();
    await outbox.reading;
    // Meanwhile the update's last milestone is written and asks for a flush.
    await reporter.event(
      'healthy',
      { deploymentId: 'dep-1', version: '1.1.0' },
      { durable: true, eventId: 'e1' },
    );
    outbox.release();
    await running;
    // Sent by the flush that was running — not left for a reconnect that may never come.
    expect(hub.events('dev-1').map((e) => e.kind)).toEqual(['healthy']);
    expect(await outbox.list()).toEqual([]);
  });
});
