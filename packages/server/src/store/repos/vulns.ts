import type { Finding } from '../../vulns/match.js';
import type { VulnRecord } from '../../vulns/osv-record.js';
import type { Db } from '../db.js';

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

/** OSV records (newest `modified` wins per id), import history, and each release's latest scan. */
export class VulnsRepo {
  private readonly s;

  constructor(db: Db) {
    this.s = {
      modified: db.prepare<[string], { modified: number }>('SELECT modified FROM vuln_records WHERE id = ?'),
      upsert: db.prepare(
        `INSERT INTO vuln_records (id, modified, withdrawn, severity, score, record, import_id)
         VALUES (@id, @modified, @withdrawn, @severity, @score, @record, @importId)
         ON CONFLICT (id) DO UPDATE SET modified = excluded.modified, withdrawn = excluded.withdrawn,
           severity = excluded.severity, score = excluded.score, record = excluded.record, import_id = excluded.import_id`,
      ),
      all: db.prepare<[], { record: string }>('SELECT record FROM vuln_records ORDER BY id'),
      count: db.prepare<[], { n: number; withdrawn: number; newest: number | null }>(
        'SELECT count(*) AS n, coalesce(sum(withdrawn), 0) AS withdrawn, max(modified) AS newest FROM vuln_records',
      ),
      bySeverity: db.prepare<[], { severity: string; n: number }>(
        'SELECT severity, count(*) AS n FROM vuln_records WHERE withdrawn = 0 GROUP BY severity',
      ),
      addImport: db.prepare(
        `INSERT INTO vuln_imports (ts, actor, files, added, replaced, unchanged, skipped, ecosystems)
         VALUES (@ts, @actor, @files, @added, @replaced, @unchanged, @skipped, @ecosystems)`,
      ),
      imports: db.prepare<[number], Omit<VulnImport, 'ecosystems'> & { ecosystems: string }>(
        'SELECT * FROM vuln_imports ORDER BY id DESC LIMIT ?',
      ),
      saveScan: db.prepare(
        `INSERT INTO release_scans (release_id, ts, import_id, packages, findings) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (release_id) DO UPDATE SET ts = excluded.ts, import_id = excluded.import_id,
           packages = excluded.packages, findings = excluded.findings`,
      ),
      scan: db.prepare<
        [string],
        { release_id: string; ts: number; import_id: number | null; packages: number; findings: string }
      >('SELECT * FROM release_scans WHERE release_id = ?'),
      delScan: db.prepare('DELETE FROM release_scans WHERE release_id = ?'),
      devicesByImage: db.prepare<[], { image: string; channel: string; n: number }>(
        `SELECT image_sha256 AS image, channel, count(*) AS n FROM devices
         WHERE status = 'accepted' AND image_sha256 IS NOT NULL GROUP BY image_sha256, channel`,
      ),
    };
  }

  modifiedOf(id: string): number | undefined {
    return this.s.modified.get(id)?.modified;
  }

  upsert(r: VulnRecord, importId: number): void {
    this.s.upsert.run({
      id: r.id,
      modified: r.modified,
      withdrawn: r.withdrawn ? 1 : 0,
      severity: r.severity,
      score: r.score,
      record: JSON.stringify(r),
      importId,
    });
  }

  all(): VulnRecord[] {
    return this.s.all.all().map((row) => JSON.parse(row.record) as VulnRecord);
  }

  counts(): {
    records: number;
    withdrawn: number;
    newestModified: number | null;
    bySeverity: Record<string, number>;
  } {
    const c = this.s.count.get()!;
    return {
      records: c.n,
      withdrawn: c.withdrawn,
      newestModified: c.newest,
      bySeverity: Object.fromEntries(this.s.bySeverity.all().map((r) => [r.severity, r.n])),
    };
  }

  addImport(i: Omit<VulnImport, 'id'>): number {
    return Number(this.s.addImport.run({ ...i, ecosystems: JSON.stringify(i.ecosystems) }).lastInsertRowid);
  }

  imports(limit: number): VulnImport[] {
    return this.s.imports.all(limit).map((r) => ({ ...r, ecosystems: JSON.parse(r.ecosystems) as string[] }));
  }

  saveScan(scan: ReleaseScan): void {
    this.s.saveScan.run(scan.releaseId, scan.ts, scan.importId, scan.packages, JSON.stringify(scan.findings));
  }

  scan(releaseId: string): ReleaseScan | undefined {
    const r = this.s.scan.get(releaseId);
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
  devicesByImage(): { image: string; channel: string; n: number }[] {
    return this.s.devicesByImage.all();
  }

  deleteScan(releaseId: string): void {
    this.s.delScan.run(releaseId);
  }
}
