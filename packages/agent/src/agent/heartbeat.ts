import type { Clock } from '../clock.js';
import { STATE_REPORT } from '../limits.js';

/**
 * The periodic state report. Behind an external broker a device counts as online only while
 * its last report is younger than the server's `offlineAfterMs` (the safety net for a last will
 * the broker lost); this keeps an idle, connected device online. Nothing is sent while offline:
 * the next connect reports anyway.
 */
export class Heartbeat {
  /** Ends the wait at stop, halt or death (its sleep must not outlive the agent). */
  private readonly abort = new AbortController();

  constructor(
    private readonly options: {
      clock: Clock;
      intervalMs: number;
      random: () => number;
      /** Sends the state report if the transport is connected. */
      beat: () => void;
    },
  ) {}

  async run(): Promise<void> {
    const { clock, intervalMs, random, beat } = this.options;
    const signal = this.abort.signal;
    while (!signal.aborted) {
      const jitter = STATE_REPORT.jitter;
      const ms = Math.round(intervalMs * (1 - jitter + 2 * jitter * random()));
      try {
        await clock.sleep(ms, signal);
      } catch {
        return; // stopped, halted or killed
      }
      if (signal.aborted) return;
      beat();
    }
  }

  stop(): void {
    this.abort.abort();
  }
}
