import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';

/**
 * QEMU's arm64 `virt` board as a Flotilla device: our U-Boot as its firmware, the factory disk
 * as an SD card on `sdhci-pci` (U-Boot's MMC driver and Linux's mmcblk0 reach the same bytes,
 * environment included), an i6300esb watchdog that resets the board, the serial console on a
 * pipe and kept in a log file. No KVM here: TCG.
 */
export interface Aarch64VmOptions {
  ubootBin: string;
  /** Raw disk image; its size must be a power of two (QEMU's SD card model requires it). */
  disk: string;
  serialLog: string;
  /** Exit instead of resetting when the guest resets (default: reset, as a board does). */
  exitOnReset?: boolean;
}

export function qemuAarch64Args(opts: Aarch64VmOptions): string[] {
  // biome-ignore format: one QEMU option and its value per line
  return [
    '-M', 'virt',
    '-cpu', 'cortex-a57',
    '-m', '512',
    '-smp', '1',
    '-display', 'none',
    '-monitor', 'none',
    '-serial', 'stdio',
    '-bios', opts.ubootBin,
    '-device', 'sdhci-pci',
    '-device', 'sd-card,drive=sd',
    // writethrough: what the guest flushed is on the host file when QEMU is killed
    '-drive', `if=none,id=sd,file=${opts.disk},format=raw,cache=writethrough`,
    '-device', 'i6300esb',
    '-action', 'watchdog=reset',
    ...(opts.exitOnReset ? ['-no-reboot'] : []),
  ];
}

export class Aarch64Vm {
  private child: ChildProcess | null = null;
  private output = '';
  private waiters = new Set<() => void>();
  private exitCode: number | null = null;
  private exited: Promise<void> = Promise.resolve();
  readonly startedAt = Date.now();

  constructor(readonly opts: Aarch64VmOptions) {}

  start(): this {
    writeFileSync(this.opts.serialLog, '');
    const child = spawn('qemu-system-aarch64', qemuAarch64Args(this.opts), {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child = child;
    const onData = (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      this.output += text;
      appendFileSync(this.opts.serialLog, chunk);
      for (const wake of this.waiters) wake();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    this.exited = new Promise((resolve) => {
      child.on('exit', (code) => {
        this.exitCode = code ?? -1;
        for (const wake of this.waiters) wake();
        resolve();
      });
    });
    return this;
  }

  /** Everything the serial console printed so far. */
  get serial(): string {
    return this.output;
  }

  get running(): boolean {
    return this.child !== null && this.exitCode === null;
  }

  /**
   * Waits until `pattern` appears in the console output after position `from`; resolves with the
   * position just after the match. Rejects when QEMU exits first or the budget runs out.
   */
  waitFor(pattern: RegExp, opts: { from?: number; timeoutMs: number }): Promise<number> {
    const from = opts.from ?? 0;
    return new Promise((resolve, reject) => {
      const check = () => {
        const rest = this.output.slice(from);
        const m = pattern.exec(rest);
        if (m) return done(() => resolve(from + m.index + m[0].length));
        if (this.exitCode !== null)
          return done(() => reject(new Error(`QEMU exited (${this.exitCode}) before ${pattern}`)));
      };
      const timer = setTimeout(
        () =>
          done(() =>
            reject(new Error(`no ${pattern} within ${opts.timeoutMs} ms (log: ${this.opts.serialLog})`)),
          ),
        opts.timeoutMs,
      );
      const done = (settle: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        settle();
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Types on the serial console (U-Boot's prompt reads it). */
  send(text: string): void {
    this.child?.stdin?.write(text);
  }

  /** Waits for QEMU to exit by itself (the guest powered off). */
  async waitExit(timeoutMs: number): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.exited,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`QEMU still running after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    return this.exitCode ?? -1;
  }

  /** Ends QEMU (SIGKILL: a power cut) and waits for it to be gone. */
  async kill(): Promise<void> {
    if (this.running) this.child?.kill('SIGKILL');
    await this.exited;
  }
}
