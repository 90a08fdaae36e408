/**
 * A login never takes over a device's session that was opened with a newer password. Under
 * overload a login can finish after its device gave up on it and logged in again: aedes pauses a
 * connection while it authenticates, so it sees the device's goodbye only afterwards, and by then
 * the stale login has closed the device's newer connection (on this node or, through the shared
 * bus, on another). The password's timestamp orders a device's logins: each attempt signs a new
 * one. A session's record is dropped when it ends, so a device whose clock stepped back is only
 * held off while its older session is still open.
 */
export interface LoginOrder {
  /**
   * False when an open session of the device was opened with a password newer than `ts`;
   * otherwise records `ts` as the device's newest login for `ttlMs`.
   */
  claim(deviceId: string, ts: number, ttlMs: number, now: number): Promise<boolean>;
  /** The session opened with `ts` ended; a newer session's record stays. */
  release(deviceId: string, ts: number): Promise<void>;
}

/** One node: the order in memory (one entry per device with an open session, at most). */
export class LocalLoginOrder implements LoginOrder {
  private readonly newest = new Map<string, { ts: number; until: number }>();

  async claim(deviceId: string, ts: number, ttlMs: number, now: number): Promise<boolean> {
    const held = this.newest.get(deviceId);
    if (held && held.until > now && held.ts > ts) return false;
    this.newest.set(deviceId, { ts, until: now + ttlMs });
    return true;
  }

  async release(deviceId: string, ts: number): Promise<void> {
    if (this.newest.get(deviceId)?.ts === ts) this.newest.delete(deviceId);
  }
}
