import type { Finding } from '../../vulns/match.js';
import type { VulnRecord } from '../../vulns/osv-record.js';
import type { Sql } from '../sql.js';

export interface VulnImport {
  id: number;
  ts: number;
  actor: string;
  files: number;
  added: number;
  replaced: number;
  unchanged: number;
  skipped: number;
  ecosystems: string[];
}

export interface ReleaseScan {
  releaseId: string;
  ts: number;
  /** The import the records came from (null: no records were loaded yet). */
  importId: number | null;
  packages: number;
  findings: Finding[];
}

type ScanRow = {
  release_id: string;
  ts: number;
  import_id: number | null;
  packages: number;
  findings: string;
};

/** OSV records (newest `modified` wins per id), import history, and each release's latest scan. */
export class VulnsRepo {
  constructor(private readonly sql: Sql) {}

  async modifiedOf(id: string): Promise<number | undefined> {
    return (await this.sql.get<{ modified: number }>('SELECT modified FROM vuln_records WHERE id = ?', [id]))
      ?.modified;
  }

  async upsert(r: VulnRecord, importId: number): Promise<void> {
    await this.sql.run(
      `INSERT INTO vuln_records (id, modified, withdrawn, severity, score, record, import_id)
       VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET modified = excluded.modified, withdrawn = excluded.withdrawn,
         severity = excluded.severity, score = excluded.score, record = excluded.record, import_id = excluded.import_id`,
      [r.id, r.modified, r.withdrawn ? 1 : 0, r.severity, r.score, JSON.stringify(r), importId],
    );
  }

  async all(): Promise<VulnRecord[]> {
    const rows = await this.sql.all<{ record: string }>('SELECT record FROM vuln_records ORDER BY id');
    return rows.map((row) => JSON.parse(row.record) as VulnRecord);
  }

  async counts(): Promise<{
    records: number;
    withdrawn: number;
    newestModified: number | null;
    bySeverity: Record<string, number>;
  }> {
    const c = (await this.sql.get<{ n: number; withdrawn: number; newest: number | null }>(
      'SELECT count(*) AS n, coalesce(sum(withdrawn), 0) AS withdrawn, max(modified) AS newest FROM vuln_records',
    ))!;
    const bySeverity = await this.sql.all<{ severity: string; n: number }>(
      'SELECT severity, count(*) AS n FROM vuln_records WHERE withdrawn = 0 GROUP BY severity',
    );
    return {
      records: c.n,
      withdrawn: Number(c.withdrawn),
      newestModified: c.newest,
      bySeverity: Object.fromEntries(bySeverity.map((r) => [r.severity, r.n])),
    };
  }

  async addImport(i: Omit<VulnImport, 'id'>): Promise<number> {
    const r = await this.sql.get<{ id: number }>(
      `INSERT INTO vuln_imports (ts, actor, files, added, replaced, unchanged, skipped, ecosystems)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
      [i.ts, i.actor, i.files, i.added, i.replaced, i.unchanged, i.skipped, JSON.stringify(i.ecosystems)],
    );
    return r!.id;
  }

  async imports(limit: number): Promise<VulnImport[]> {
    const rows = await this.sql.all<Omit<VulnImport, 'ecosystems'> & { ecosystems: string }>(
      'SELECT * FROM vuln_imports ORDER BY id DESC LIMIT ?',
      [limit],
    );
    return rows.map((r) => ({ ...r, ecosystems: JSON.parse(r.ecosystems) as string[] }));
  }

  async saveScan(scan: ReleaseScan): Promise<void> {
    await this.sql.run(
      `INSERT INTO release_scans (release_id, ts, import_id, packages, findings) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (release_id) DO UPDATE SET ts = excluded.ts, import_id = excluded.import_id,
         packages = excluded.packages, findings = excluded.findings`,
      [scan.releaseId, scan.ts, scan.importId, scan.packages, JSON.stringify(scan.findings)],
    );
  }

  async scan(releaseId: string): Promise<ReleaseScan | undefined> {
    const r = await this.sql.get<ScanRow>('SELECT * FROM release_scans WHERE release_id = ?', [releaseId]);
    return r
      ? {
          releaseId: r.release_id,
          ts: r.ts,
          importId: r.import_id,
          packages: r.packages,
          findings: JSON.parse(r.findings) as Finding[],
        }
      : undefined;
  }

  /** Accepted devices per running image and channel (the fleet view's weights). */
  devicesByImage(): Promise<{ image: string; channel: string; n: number }[]> {
    return this.sql.all(
      `SELECT image_sha256 AS image, channel, count(*) AS n FROM devices
       WHERE status = 'accepted' AND image_sha256 IS NOT NULL GROUP BY image_sha256, channel`,
    );
  }

  async deleteScan(releaseId: string): Promise<void> {
    await this.sql.run('DELETE FROM release_scans WHERE release_id = ?', [releaseId]);
  }
}
