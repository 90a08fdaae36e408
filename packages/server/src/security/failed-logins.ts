/**
 * Counts FAILED logins per source address (API tokens, MQTT CONNECT) in a fixed window; past the
 * limit that address is refused until its window ends. Successful logins are never counted and
 * cost one Map lookup, so a reconnect storm of valid devices is not slowed. Bounded: past
 * `maxSources` tracked addresses the oldest entries are dropped (an attacker with that many
 * addresses is beyond what a per-address limit can stop anyway).
 */
export class FailedLoginLimiter {
  private readonly sources = new Map<string, { failures: number; windowEnd: number }>();

  constructor(
    private readonly maxFailures: number,
    private readonly windowMs: number,
    private readonly maxSources = 100_000,
  ) {}

  /** Milliseconds until `source` may try again, or 0 when it is not blocked. */
  blockedFor(source: string, now: number): number {
    const e = this.sources.get(source);
    if (!e) return 0;
    if (e.windowEnd <= now) {
      this.sources.delete(source);
      return 0;
    }
    return e.failures >= this.maxFailures ? e.windowEnd - now : 0;
  }

  fail(source: string, now: number): void {
    let e = this.sources.get(source);
    if (!e || e.windowEnd <= now) {
      if (e) this.sources.delete(source);
      if (this.sources.size >= this.maxSources) {
        const oldest = this.sources.keys().next().value;
        if (oldest !== undefined) this.sources.delete(oldest);
      }
      e = { failures: 0, windowEnd: now + this.windowMs };
      this.sources.set(source, e);
    }
    e.failures++;
  }
}
