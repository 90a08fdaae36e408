/**
 * Live progress for the demo: one redrawn line on a terminal, or a line per change (at most one
 * every few seconds) when the output is a pipe or a log, so CI logs stay readable.
 */
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

export function bar(done: number, total: number, width = 24): string {
  const full = total === 0 ? 0 : Math.round((done / total) * width);
  return `${'█'.repeat(full)}${'░'.repeat(width - full)}`;
}

export function formatProgress(c: ProgressCounts): string {
  return (
    `${c.release.padEnd(10)} ${c.status.padEnd(9)} ${c.phase.padEnd(14)} ${bar(c.healthy, c.total)} ` +
    `healthy ${c.healthy}/${c.total} · busy ${c.inFlight} · failed ${c.failed} · rolled back ${c.rolledBack}` +
    ` · waiting ${c.notStarted} · ${formatBytes(c.bytesSent)} downloaded`
  );
}

export class ProgressLine {
  private last = '';
  private lastAt = 0;
  private drawn = false;

  constructor(
    private readonly out: NodeJS.WriteStream | { write(s: string): unknown; isTTY?: boolean },
    private readonly minIntervalMs = 3000,
  ) {}

  update(text: string): void {
    if (text === this.last) return;
    if (this.out.isTTY) {
      this.out.write(`\r\x1b[2K${text}`);
      this.drawn = true;
    } else {
      const now = Date.now();
      if (now - this.lastAt < this.minIntervalMs) return;
      this.out.write(`${text}\n`);
      this.lastAt = now;
    }
    this.last = text;
  }

  /** Prints the final state of the line and moves on to the next one. */
  done(text: string): void {
    if (this.out.isTTY) this.out.write(`\r\x1b[2K${text}\n`);
    else this.out.write(`${text}\n`);
    this.drawn = false;
    this.last = '';
    this.lastAt = 0;
  }

  /** Ends a drawn line so that other output starts on a fresh line. */
  break(): void {
    if (this.drawn) this.out.write('\n');
    this.drawn = false;
  }
}
