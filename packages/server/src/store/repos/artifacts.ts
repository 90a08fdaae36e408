import type { Db } from '../db.js';

export type ArtifactKind = 'image' | 'delta' | 'sbom' | 'bundle';

export interface ArtifactRow {
  sha256: string;
  size: number;
  kind: ArtifactKind;
  created: number;
}

/** Content-addressed artifacts (the bytes live in the artifact directory under their sha256). */
export class ArtifactsRepo {
  private readonly s;

  constructor(db: Db) {
    this.s = {
      upsert: db.prepare(
        'INSERT INTO artifacts (sha256, size, kind, created) VALUES (?, ?, ?, ?) ON CONFLICT(sha256) DO NOTHING',
      ),
      get: db.prepare<[string], ArtifactRow>('SELECT * FROM artifacts WHERE sha256 = ?'),
      del: db.prepare('DELETE FROM artifacts WHERE sha256 = ?'),
      list: db.prepare<[], ArtifactRow>('SELECT * FROM artifacts ORDER BY created'),
      totals: db.prepare<[], { kind: string; n: number; bytes: number }>(
        'SELECT kind, COUNT(*) AS n, SUM(size) AS bytes FROM artifacts GROUP BY kind',
      ),
    };
  }

  add(sha256: string, size: number, kind: ArtifactKind, now: number): void {
    this.s.upsert.run(sha256, size, kind, now);
  }

  get(sha256: string): ArtifactRow | undefined {
    return this.s.get.get(sha256);
  }

  delete(sha256: string): void {
    this.s.del.run(sha256);
  }

  list(): ArtifactRow[] {
    return this.s.list.all();
  }

  totals(): { kind: string; count: number; bytes: number }[] {
    return this.s.totals.all().map((r) => ({ kind: r.kind, count: r.n, bytes: r.bytes }));
  }
}
