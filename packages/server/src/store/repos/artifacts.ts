import type { Sql } from '../sql.js';

export type ArtifactKind = 'image' | 'delta' | 'sbom' | 'bundle';

export interface ArtifactRow {
  sha256: string;
  size: number;
  kind: ArtifactKind;
  created: number;
}

/** Content-addressed artifacts (the bytes live in the artifact directory under their sha256). */
export class ArtifactsRepo {
  constructor(private readonly sql: Sql) {}

  async add(sha256: string, size: number, kind: ArtifactKind, now: number): Promise<void> {
    await this.sql.run(
      'INSERT INTO artifacts (sha256, size, kind, created) VALUES (?, ?, ?, ?) ON CONFLICT(sha256) DO NOTHING',
      [sha256, size, kind, now],
    );
  }

  get(sha256: string): Promise<ArtifactRow | undefined> {
    return this.sql.get<ArtifactRow>('SELECT * FROM artifacts WHERE sha256 = ?', [sha256]);
  }

  async delete(sha256: string): Promise<void> {
    await this.sql.run('DELETE FROM artifacts WHERE sha256 = ?', [sha256]);
  }

  list(): Promise<ArtifactRow[]> {
    return this.sql.all<ArtifactRow>('SELECT * FROM artifacts ORDER BY created, sha256');
  }

  async totals(): Promise<{ kind: string; count: number; bytes: number }[]> {
    const rows = await this.sql.all<{ kind: string; n: number; bytes: number }>(
      'SELECT kind, COUNT(*) AS n, SUM(size) AS bytes FROM artifacts GROUP BY kind',
    );
    return rows.map((r) => ({ kind: r.kind, count: r.n, bytes: Number(r.bytes) }));
  }
}
