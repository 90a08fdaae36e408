import type { Db } from '../db.js';

/**
 * The key a device password's nonce is recorded under: the same for an MQTT login and for the
 * proof of a registration, so neither can be replayed as the other.
 */
export const authNonceKey = (deviceId: string, nonce: string): string => `${deviceId}:${nonce}`;

/**
 * Nonces of device passwords the server accepted, kept until a password carrying them can no
 * longer verify. Persisted so that a restart does not open a replay window (the in-memory cache
 * is the fast path; this table is what survives).
 */
export class NoncesRepo {
  private readonly s;

  constructor(db: Db) {
    this.s = {
      // A live row wins (0 changes = replay); an expired one is reused.
      add: db.prepare(
        `INSERT INTO auth_nonces (key, until) VALUES (?, ?)
         ON CONFLICT(key) DO UPDATE SET until = excluded.until WHERE auth_nonces.until <= ?`,
      ),
      live: db.prepare<[number, number], { key: string; until: number }>(
        'SELECT key, until FROM auth_nonces WHERE until > ? ORDER BY until DESC LIMIT ?',
      ),
      prune: db.prepare('DELETE FROM auth_nonces WHERE until <= ?'),
      count: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM auth_nonces'),
    };
    this.addAll = db.transaction((entries: { key: string; until: number }[], now: number) =>
      entries.map((e) => this.add(e.key, e.until, now)),
    );
  }

  /** False when the key is already recorded and still live (a replay). */
  add(key: string, until: number, now: number): boolean {
    return this.s.add.run(key, until, now).changes === 1;
  }

  /** add() for many keys in one transaction (one commit for a whole burst of logins). */
  addMany(entries: { key: string; until: number }[], now: number): boolean[] {
    return this.addAll(entries, now);
  }

  private readonly addAll;

  /** The live entries, newest first, at most `max`. */
  live(now: number, max: number): { key: string; until: number }[] {
    return this.s.live.all(now, max);
  }

  prune(now: number): number {
    return this.s.prune.run(now).changes;
  }

  count(): number {
    return this.s.count.get()!.n;
  }
}
