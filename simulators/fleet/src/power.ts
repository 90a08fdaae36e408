/**
 * The power supply of one simulated device. Everything the agent does to its "hardware"
 * (slot writes, state saves, bootloader writes, network sends) goes through `guard`; when the
 * power is cut, guarded calls in flight and every later one never settle — the agent's code just
 * stops where it was, like a process that lost power, and whatever it had not written is lost.
 * A call already handed to the kernel completes (a disk finishes the sector it was writing).
 */
export class PowerGate {
  private on = true;
  private readonly cutHandlers: (() => void)[] = [];

  get powered(): boolean {
    return this.on;
  }

  /** Runs `fn` while powered; after a cut the returned promise never settles. */
  guard<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.on) return new Promise<T>(() => {});
    return fn().then(
      (v) => (this.on ? v : new Promise<T>(() => {})),
      (e) => (this.on ? Promise.reject(e) : new Promise<T>(() => {})),
    );
  }

  /** Same for synchronous side effects (a publish, a socket write). */
  guardSync(fn: () => void): void {
    if (this.on) fn();
  }

  /** `fn` runs at the cut; at once if the power is already off (a file opened as it went). */
  onCut(fn: () => void): void {
    if (this.on) this.cutHandlers.push(fn);
    else fn();
  }

  cut(): void {
    if (!this.on) return;
    this.on = false;
    for (const fn of this.cutHandlers.splice(0)) {
      try {
        fn();
      } catch {}
    }
  }
}
