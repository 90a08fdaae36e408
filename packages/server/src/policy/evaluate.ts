import type { Finding } from '../vulns/match.js';
import { type Severity, severityRank } from '../vulns/severity.js';
import type { PolicyDocument, Waiver } from './policy-schema.js';

export interface ReleaseFacts {
  version: string;
  /** Manifest `created`, ms since the epoch. */
  created: number;
  provenance: { builder: string; sourceRevision: string } | null;
}

export interface Evaluation {
  channel: string;
  pass: boolean;
  /** One sentence per violation, naming the record and the package. */
  violations: string[];
  /** Findings a valid waiver covers (shown with the waiver). */
  waived: { finding: Finding; waiver: Waiver }[];
}

const DAY_MS = 24 * 60 * 60 * 1000;

function waiverFor(f: Finding, channel: string, waivers: readonly Waiver[], now: number): Waiver | undefined {
  return waivers.find(
    (w) =>
      (w.id === f.id || f.aliases.includes(w.id)) &&
      (w.package === f.package || w.package === f.sourcePackage) &&
      Date.parse(w.expires) > now &&
      (!w.channels || w.channels.includes(channel)),
  );
}

/** Pure: does a release with these findings meet a channel's policy at `now`? */
export function evaluatePolicy(
  doc: PolicyDocument,
  channel: 'dev' | 'staging' | 'prod',
  release: ReleaseFacts,
  findings: readonly Finding[],
  now: number,
): Evaluation {
  const rules = doc.channels[channel] ?? {};
  const violations: string[] = [];
  const waived: Evaluation['waived'] = [];
  const maxRank =
    rules.maxSeverity === undefined
      ? Number.POSITIVE_INFINITY
      : rules.maxSeverity === 'none'
        ? -1
        : severityRank(rules.maxSeverity as Severity);
  for (const f of findings) {
    const reasons: string[] = [];
    const rank = severityRank(f.severity);
    if (rank > maxRank) reasons.push(`${f.severity} exceeds ${channel}'s maximum ${rules.maxSeverity}`);
    if (rules.noHighWithFix && f.severity === 'high' && f.fixed)
      reasons.push(`high with a fix available (${f.fixed})`);
    if (rules.failOnUnknownSeverity && f.severity === 'unknown')
      reasons.push(`unknown severity (${channel}'s failOnUnknownSeverity)`);
    if (!reasons.length) continue;
    const waiver = waiverFor(f, channel, doc.waivers ?? [], now);
    if (waiver) waived.push({ finding: f, waiver });
    else violations.push(`${f.id} in ${f.package} ${f.installed}: ${reasons.join('; ')}`);
  }
  if (rules.maxImageAgeDays !== undefined && now - release.created > rules.maxImageAgeDays * DAY_MS) {
    const days = Math.floor((now - release.created) / DAY_MS);
    violations.push(
      `image is ${days} day${days === 1 ? '' : 's'} old: over ${channel}'s maxImageAgeDays ${rules.maxImageAgeDays}`,
    );
  }
  const wantsProvenance = rules.requiredAttestations?.includes('provenance') || rules.provenance;
  if (wantsProvenance) {
    const p = release.provenance;
    if (!p || !p.builder)
      violations.push(`no signed provenance naming a builder (${channel} requires provenance)`);
    else {
      if (rules.provenance?.builderId && p.builder !== rules.provenance.builderId)
        violations.push(`provenance builder '${p.builder}' is not '${rules.provenance.builderId}'`);
      if (
        rules.provenance?.sourceRepository &&
        !p.sourceRevision.startsWith(rules.provenance.sourceRepository)
      )
        violations.push(
          `provenance source '${p.sourceRevision}' is not from '${rules.provenance.sourceRepository}'`,
        );
    }
  }
  return { channel, pass: violations.length === 0, violations, waived };
}
