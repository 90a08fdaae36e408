import type { Sql } from '../sql.js';

/** Accepted devices per version at one instant (`null` version: not reported yet). */
export interface VersionSample {
  ts: number;
  counts: Record<string, number>;
}

/** The versions-over-time history: one row per sample, bounded by age and count on every write. */
export class VersionSamplesRepo {
  constructor(private readonly sql: Sql) {}

  /** Adds a sample, then drops those older than `keepSince` and all but the newest `maxSamples`. */
  async add(sample: VersionSample, keepSince: number, maxSamples: number): Promise<void> {
    await this.sql.run(
      'INSERT INTO version_samples (ts, counts) VALUES (?, ?) ON CONFLICT(ts) DO UPDATE SET counts = excluded.counts',
      [sample.ts, JSON.stringify(sample.counts)],
    );
    await this.sql.run('DELETE FROM version_samples WHERE ts < ?', [keepSince]);
    await this.sql.run(
      'DELETE FROM version_samples WHERE ts <= (SELECT ts FROM version_samples ORDER BY ts DESC LIMIT 1 OFFSET ?)',
      [maxSamples],
    );
  }

  async since(ts: number): Promise<VersionSample[]> {
    const rows = await this.sql.all<{ ts: number; counts: string }>(
      'SELECT ts, counts FROM version_samples WHERE ts >= ? ORDER BY ts',
      [ts],
    );
    return rows.map((r) => ({ ts: r.ts, counts: JSON.parse(r.counts) as Record<string, number> }));
  }

  async count(): Promise<number> {
    return (await this.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM version_samples'))?.n ?? 0;
  }
}
