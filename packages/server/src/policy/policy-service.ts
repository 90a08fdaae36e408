import type { KeyPair } from '@flotilla/protocol';
import { Value } from '@sinclair/typebox/value';
import { scanStatement, signStatement } from '../attestations/in-toto.js';
import type { Release } from '../store/repos/releases.js';
import type { Store } from '../store/store.js';
import type { Finding } from '../vulns/match.js';
import type { VulnService } from '../vulns/vuln-service.js';
import { PolicyError } from './errors.js';
import { type Evaluation, evaluatePolicy, type ReleaseFacts } from './evaluate.js';
import { DEFAULT_POLICY, PolicyDocument } from './policy-schema.js';

type ChannelName = 'dev' | 'staging' | 'prod';
const ALL_CHANNELS: readonly ChannelName[] = ['dev', 'staging', 'prod'];

export interface GateResult {
  evaluation: Evaluation;
  findings: Finding[];
  policyVersion: number;
  /** The scan attestation's summary: which records (import id), when, result. */
  scan: {
    importId: number | null;
    scannedAt: number;
    packages: number;
    findings: number;
    bySeverity: Record<string, number>;
  };
}

export function releaseFacts(r: Release): ReleaseFacts {
  const m = r.manifest.signed;
  const created = Date.parse(m.created);
  return {
    version: r.version,
    created: Number.isNaN(created) ? r.created : created,
    provenance: m.provenance
      ? { builder: m.provenance.builder, sourceRevision: m.provenance.sourceRevision }
      : null,
  };
}

/**
 * Policy as code: one JSON document, every version kept (history) and audited; the gates that
 * promotion and rollout creation pass through. With no document stored the default applies
 * (prod refuses critical findings, other channels only record them).
 */
export class PolicyService {
  constructor(
    private readonly store: Store,
    private readonly vulns: VulnService,
    /** Signs the scan attestation of each promotion (the server's online delta/offer key). */
    private readonly attestKey: KeyPair,
    private readonly clock: () => number = Date.now,
  ) {}

  /** `store`: the caller's transaction when inside one. */
  async current(
    store: Store = this.store,
  ): Promise<{ version: number; document: PolicyDocument; actor: string | null; created: number | null }> {
    const p = await store.policies.latest();
    return p ?? { version: 0, document: DEFAULT_POLICY, actor: null, created: null };
  }

  history(limit: number) {
    return this.store.policies.history(limit);
  }

  set(
    document: unknown,
    actor: string,
    source = 'policy',
  ): Promise<{ version: number; document: PolicyDocument }> {
    if (!Value.Check(PolicyDocument, document)) {
      const first = Value.Errors(PolicyDocument, document).First();
      throw new PolicyError(
        'FLOTILLA_ERR_POLICY_INVALID',
        `${source}: field ${first?.path || '/'}: ${first?.message}`,
      );
    }
    for (const [i, w] of (document.waivers ?? []).entries())
      if (Number.isNaN(Date.parse(w.expires)))
        throw new PolicyError(
          'FLOTILLA_ERR_POLICY_INVALID',
          `${source}: field /waivers/${i}/expires: not a time`,
        );
    const now = this.clock();
    return this.store.tx(async (tx) => {
      const version = (await this.current(tx)).version + 1;
      await tx.policies.insert(version, document, actor, now);
      await tx.audit.record(
        actor,
        'policy.set',
        `policy:${version}`,
        { version, waivers: document.waivers?.length ?? 0 },
        now,
      );
      return { version, document };
    });
  }

  async evaluate(release: Release, channel: ChannelName): Promise<GateResult> {
    const scan = await this.vulns.findings(release.version);
    const now = this.clock();
    const policy = await this.current();
    const bySeverity: Record<string, number> = {};
    for (const f of scan.findings) bySeverity[f.severity] = (bySeverity[f.severity] ?? 0) + 1;
    return {
      evaluation: evaluatePolicy(policy.document, channel, releaseFacts(release), scan.findings, now),
      findings: scan.findings,
      policyVersion: policy.version,
      scan: {
        importId: scan.importId,
        scannedAt: scan.ts,
        packages: scan.packages,
        findings: scan.findings.length,
        bySeverity,
      },
    };
  }

  /**
   * The promotion gate: refuses with FLOTILLA_ERR_POLICY_VIOLATION naming every violation, unless
   * an admin overrides with a reason (audited). Returns what the promotion record stores.
   */
  async gatePromotion(
    release: Release,
    to: ChannelName,
    caller: { actor: string; role: string },
    overrideReason?: string,
  ): Promise<GateResult & { overrideReason: string | null }> {
    const gate = await this.evaluate(release, to);
    if (gate.evaluation.pass) return { ...gate, overrideReason: null };
    if (!overrideReason)
      throw new PolicyError(
        'FLOTILLA_ERR_POLICY_VIOLATION',
        `${release.version} → ${to} (policy version ${gate.policyVersion}): ${gate.evaluation.violations.join(' | ')}`,
      );
    if (caller.role !== 'admin')
      throw new PolicyError('FLOTILLA_ERR_POLICY_OVERRIDE_FORBIDDEN', `${caller.role} token`);
    await this.store.audit.record(
      caller.actor,
      'policy.override',
      release.version,
      {
        to,
        reason: overrideReason,
        violations: gate.evaluation.violations,
        policyVersion: gate.policyVersion,
      },
      this.clock(),
    );
    return { ...gate, overrideReason };
  }

  async recordPromotion(
    release: Release,
    from: string | null,
    to: string,
    actor: string,
    gate: GateResult & { overrideReason: string | null },
  ): Promise<void> {
    const attestation = signStatement(
      scanStatement({
        imageName: `${release.name}-${release.version}.img`,
        imageSha256: release.imageSha256,
        importId: gate.scan.importId,
        recordsModified: (await this.store.vulns.counts()).newestModified,
        scannedAt: gate.scan.scannedAt,
        findings: gate.findings,
      }),
      this.attestKey,
    );
    await this.store.policies.recordPromotion({
      releaseId: release.id,
      from,
      to,
      actor,
      ts: this.clock(),
      policyVersion: gate.policyVersion,
      scan: {
        ...gate.scan,
        result: gate.evaluation.pass ? 'pass' : 'fail',
        waived: gate.evaluation.waived.length,
        attestation,
      },
      violations: gate.evaluation.violations,
      overrideReason: gate.overrideReason,
    });
  }

  /**
   * The rollout gate: the release must meet the policy of every channel the rollout targets (all
   * channels when it names none). An admin's override at promotion into a channel covers it.
   */
  async gateRollout(release: Release, channels: readonly string[] | undefined): Promise<void> {
    const targets = (channels?.length ? channels : ALL_CHANNELS).filter((c): c is ChannelName =>
      (ALL_CHANNELS as readonly string[]).includes(c),
    );
    const overridden = new Set(
      (await this.store.policies.promotions(release.id)).filter((p) => p.overrideReason).map((p) => p.to),
    );
    const violations: string[] = [];
    for (const channel of targets) {
      if (overridden.has(channel)) continue;
      const gate = await this.evaluate(release, channel);
      for (const v of gate.evaluation.violations) violations.push(`${channel}: ${v}`);
    }
    if (violations.length)
      throw new PolicyError(
        'FLOTILLA_ERR_POLICY_VIOLATION',
        `rollout of ${release.version}: ${violations.join(' | ')}`,
      );
  }

  /** Releases in prod that fail prod's policy now (from the stored scans): the alert's source. */
  async prodFailures(): Promise<{ version: string; violations: string[] }[]> {
    const now = this.clock();
    const doc = (await this.current()).document;
    const out: { version: string; violations: string[] }[] = [];
    for (const r of await this.store.releases.list('prod')) {
      const scan = await this.store.vulns.scan(r.id);
      const e = evaluatePolicy(doc, 'prod', releaseFacts(r), scan?.findings ?? [], now);
      if (!e.pass) out.push({ version: r.version, violations: e.violations });
    }
    return out;
  }
}
