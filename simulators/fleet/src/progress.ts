import cliProgress from 'cli-progress';

/** A rollout's progress as the demo shows it. */
export interface ProgressCounts {
  release: string;
  status: string;
  phase: string;
  total: number;
  healthy: number;
  inFlight: number;
  failed: number;
  rolledBack: number;
  notStarted: number;
  bytesSent: number;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** What the progress line shows of a rollout, already formatted. */
function payloadOf(c: ProgressCounts): Record<string, string | number> {
  return {
    release: c.release.padEnd(10),
    status: c.status.padEnd(9),
    phase: c.phase.padEnd(14),
    inFlight: c.inFlight,
    failed: c.failed,
    rolledBack: c.rolledBack,
    healthy: c.healthy,
    devices: c.total,
    notStarted: c.notStarted,
    downloaded: formatBytes(c.bytesSent),
  };
}

/**
 * One rollout's progress line (cli-progress, like the CLI's bars): redrawn in place on a terminal;
 * on a pipe or a log, a line every few seconds so CI logs stay readable.
 */
export class ProgressLine {
  private readonly bar: cliProgress.SingleBar;
  private started = false;

  constructor(out: { write(s: string): unknown; isTTY?: boolean }, minIntervalMs = 3000) {
    this.bar = new cliProgress.SingleBar({
      format:
        '{release} {status} {phase} {bar} healthy {healthy}/{devices} · busy {inFlight} · failed {failed}' +
        ' · rolled back {rolledBack} · waiting {notStarted} · {downloaded} downloaded',
      barCompleteChar: '█',
      barIncompleteChar: '░',
      barsize: 24,
      stream: out as NodeJS.WritableStream,
      noTTYOutput: true,
      notTTYSchedule: minIntervalMs,
      // The demo stops its bars itself; cli-progress must not add signal handlers of its own.
      gracefulExit: false,
      // On a pipe every render already ends its line; the newline stop() adds would be a blank one.
      clearOnComplete: out.isTTY !== true,
    });
  }

  update(c: ProgressCounts): void {
    if (!this.started) {
      // An empty rollout has an empty bar (cli-progress would draw 0 of 0 as full).
      this.bar.start(Math.max(c.total, 1), c.healthy, payloadOf(c));
      this.started = true;
      return;
    }
    this.bar.setTotal(Math.max(c.total, 1));
    this.bar.update(c.healthy, payloadOf(c));
  }

  /** Prints the final state of the line and moves on to the next one. */
  done(c: ProgressCounts): void {
    this.update(c);
    this.bar.stop();
    this.started = false;
  }
}
