import { cvss3BaseScore } from './cvss.js';

/** Ordered from least to most severe; `unknown` is kept apart (never read as low). */
export const SEVERITIES = ['low', 'medium', 'high', 'critical'] as const;
export type KnownSeverity = (typeof SEVERITIES)[number];
export type Severity = KnownSeverity | 'unknown';

export const severityRank = (s: Severity): number => (s === 'unknown' ? -1 : SEVERITIES.indexOf(s));

/** CVSS v3 qualitative rating. A score of 0.0 ("none") counts as low: it is a known, harmless rating. */
export function severityOfScore(score: number): KnownSeverity {
  if (score >= 9) return 'critical';
  if (score >= 7) return 'high';
  if (score >= 4) return 'medium';
  return 'low';
}

export interface SeverityInput {
  severity?: { type: string; score: string }[];
  database_specific?: unknown;
}

/**
 * A record's severity: a CVSS v3 vector (score computed from it) or a bare numeric v3 score first;
 * then the feed's own label (GitHub's `database_specific.severity`: LOW/MODERATE/HIGH/CRITICAL).
 * CVSS v4 and anything else without a v3 score or a label stays `unknown`.
 */
export function recordSeverity(rec: SeverityInput): { severity: Severity; score: number | null } {
  for (const s of rec.severity ?? []) {
    if (s.type !== 'CVSS_V3') continue;
    const score = /^\d+(\.\d+)?$/.test(s.score) ? Number(s.score) : cvss3BaseScore(s.score);
    if (score !== null && score >= 0 && score <= 10) return { severity: severityOfScore(score), score };
  }
  const label = (rec.database_specific as { severity?: unknown } | undefined)?.severity;
  if (typeof label === 'string') {
    const l = label.toLowerCase();
    const mapped = l === 'moderate' ? 'medium' : l;
    if ((SEVERITIES as readonly string[]).includes(mapped))
      return { severity: mapped as KnownSeverity, score: null };
  }
  return { severity: 'unknown', score: null };
}
