/** One minute: the window registration attempts per source are counted in. */
export const REGISTRATION_WINDOW_MS = 60_000;

/**
 * Counts, per source address, the registration attempts that leave an unproven trace (a new
 * pending claim) or fail, in fixed one-minute windows. Registrations that end accepted (a valid
 * provisioning token, auto-accept, an operator's earlier decision) are not counted, so a factory
 * line behind one address onboarding with tokens is never slowed down. Bounded: past `maxSources`
 * tracked addresses the oldest windows are dropped first.
 */
export class RegistrationLimiter {
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly perMinute: number,
    private readonly maxSources: number,
  ) {}

  /** True when the source used up its attempts for the current window. */
  exhausted(source: string, now: number): boolean {
    const w = this.windows.get(source);
    return w !== undefined && now - w.start < REGISTRATION_WINDOW_MS && w.count >= this.perMinute;
  }

  charge(source: string, now: number): void {
    const w = this.windows.get(source);
    if (w && now - w.start < REGISTRATION_WINDOW_MS) {
      w.count++;
      return;
    }
    // Re-inserted: the map stays ordered by window start, oldest first.
    this.windows.delete(source);
    if (this.windows.size >= this.maxSources) this.evict(now);
    this.windows.set(source, { start: now, count: 1 });
  }

  private evict(now: number): void {
    for (const [source, w] of this.windows) {
      if (this.windows.size < this.maxSources && now - w.start < REGISTRATION_WINDOW_MS) return;
      this.windows.delete(source);
    }
  }

  get size(): number {
    return this.windows.size;
  }
}
