import type { Db } from '../db.js';

/** Accepted devices per version at one instant (`null` version: not reported yet). */
export interface VersionSample {
  ts: number;
  counts: Record<string, number>;
}

/** The versions-over-time history: one row per sample, bounded by age and count on every write. */
export class VersionSamplesRepo {
  private readonly s;

  constructor(db: Db) {
    this.s = {
      insert: db.prepare('INSERT OR REPLACE INTO version_samples (ts, counts) VALUES (?, ?)'),
      pruneOlder: db.prepare('DELETE FROM version_samples WHERE ts < ?'),
      pruneBeyond: db.prepare(
        'DELETE FROM version_samples WHERE ts <= (SELECT ts FROM version_samples ORDER BY ts DESC LIMIT 1 OFFSET ?)',
      ),
      since: db.prepare<[number], { ts: number; counts: string }>(
        'SELECT ts, counts FROM version_samples WHERE ts >= ? ORDER BY ts',
      ),
      count: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM version_samples'),
    };
  }

  /** Adds a sample, then drops those older than `keepSince` and all but the newest `maxSamples`. */
  add(sample: VersionSample, keepSince: number, maxSamples: number): void {
    this.s.insert.run(sample.ts, JSON.stringify(sample.counts));
    this.s.pruneOlder.run(keepSince);
    this.s.pruneBeyond.run(maxSamples);
  }

  since(ts: number): VersionSample[] {
    return this.s.since
      .all(ts)
      .map((r) => ({ ts: r.ts, counts: JSON.parse(r.counts) as Record<string, number> }));
  }

  count(): number {
    return this.s.count.get()!.n;
  }
}
