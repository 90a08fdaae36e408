import type { Sql } from '../sql.js';

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
  constructor(private readonly sql: Sql) {}

  /** False when the key is already recorded and still live (a replay). */
  add(key: string, until: number, now: number): Promise<boolean> {
    return NoncesRepo.addOn(this.sql, key, until, now);
  }

  // A live row wins (0 changes = replay); an expired one is reused.
  private static async addOn(sql: Sql, key: string, until: number, now: number): Promise<boolean> {
    const r = await sql.run(
      `INSERT INTO auth_nonces (key, until) VALUES (?, ?)
       ON CONFLICT(key) DO UPDATE SET until = excluded.until WHERE auth_nonces.until <= ?`,
      [key, until, now],
    );
    return r.changes === 1;
  }

  /** add() for many keys in one transaction (one commit for a whole burst of logins). */
  addMany(entries: { key: string; until: number }[], now: number): Promise<boolean[]> {
    return this.sql.tx(async (tx) => {
      const out: boolean[] = [];
      for (const e of entries) out.push(await NoncesRepo.addOn(tx, e.key, e.until, now));
      return out;
    });
  }

  /** The live entries, newest first, at most `max`. */
  live(now: number, max: number): Promise<{ key: string; until: number }[]> {
    return this.sql.all('SELECT key, until FROM auth_nonces WHERE until > ? ORDER BY until DESC LIMIT ?', [
      now,
      max,
    ]);
  }

  async prune(now: number): Promise<number> {
    return (await this.sql.run('DELETE FROM auth_nonces WHERE until <= ?', [now])).changes;
  }

  async count(): Promise<number> {
    return (await this.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM auth_nonces'))?.n ?? 0;
  }
}
