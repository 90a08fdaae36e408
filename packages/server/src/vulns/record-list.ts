import type { VulnRecord } from './osv-record.js';
import type { Severity } from './severity.js';

export interface RecordFilter {
  /** Records that affect a package of this name (any ecosystem). */
  package?: string;
  severity?: Severity;
}

/** The loaded records a filter keeps, in id order (the store's order). */
export function filterRecords(records: readonly VulnRecord[], filter: RecordFilter): VulnRecord[] {
  return records.filter(
    (r) =>
      (filter.severity === undefined || r.severity === filter.severity) &&
      (filter.package === undefined || r.affected.some((a) => a.name === filter.package)),
  );
}

/** One row of `GET /vulnerabilities`: what a list shows of a record. */
export function recordRow(r: VulnRecord) {
  return {
    id: r.id,
    severity: r.severity,
    score: r.score,
    modified: new Date(r.modified).toISOString(),
    withdrawn: r.withdrawn,
    packages: uniquePackages(r),
    summary: r.summary,
  };
}

/** The record as stored, with its time in the API's form (ISO 8601). */
export function recordDocument(r: VulnRecord) {
  return { ...r, modified: new Date(r.modified).toISOString() };
}

function uniquePackages(r: VulnRecord): { ecosystem: string; name: string }[] {
  const seen = new Map<string, { ecosystem: string; name: string }>();
  for (const a of r.affected) seen.set(`${a.ecosystem}\0${a.name}`, { ecosystem: a.ecosystem, name: a.name });
  return [...seen.values()];
}
