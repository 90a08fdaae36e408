import type { PolicyDocument } from '../../policy/policy-schema.js';
import type { Sql } from '../sql.js';

export interface StoredPolicy {
  version: number;
  document: PolicyDocument;
  actor: string;
  created: number;
}

export interface Promotion {
  id: number;
  releaseId: string;
  from: string | null;
  to: string;
  actor: string;
  ts: number;
  policyVersion: number | null;
  /** The scan attestation's summary at promotion: which records, when, result. */
  scan: Record<string, unknown>;
  violations: string[];
  overrideReason: string | null;
}

interface PromotionRow {
  id: number;
  release_id: string;
  from_channel: string | null;
  to_channel: string;
  actor: string;
  ts: number;
  policy_version: number | null;
  scan: string;
  violations: string;
  override_reason: string | null;
}

type PolicyRow = { version: number; document: string; actor: string; created: number };

const toPolicy = (r: PolicyRow): StoredPolicy => ({
  ...r,
  document: JSON.parse(r.document) as PolicyDocument,
});

/** Policy documents (every version kept: history) and promotion records (metadata shown per release). */
export class PoliciesRepo {
  constructor(private readonly sql: Sql) {}

  async insert(version: number, document: PolicyDocument, actor: string, now: number): Promise<void> {
    await this.sql.run('INSERT INTO policies (version, document, actor, created) VALUES (?, ?, ?, ?)', [
      version,
      JSON.stringify(document),
      actor,
      now,
    ]);
  }

  async latest(): Promise<StoredPolicy | undefined> {
    const r = await this.sql.get<PolicyRow>('SELECT * FROM policies ORDER BY version DESC LIMIT 1');
    return r ? toPolicy(r) : undefined;
  }

  async history(limit: number): Promise<StoredPolicy[]> {
    return (
      await this.sql.all<PolicyRow>('SELECT * FROM policies ORDER BY version DESC LIMIT ?', [limit])
    ).map(toPolicy);
  }

  async recordPromotion(p: Omit<Promotion, 'id'>): Promise<void> {
    await this.sql.run(
      `INSERT INTO promotions (release_id, from_channel, to_channel, actor, ts, policy_version, scan, violations, override_reason)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        p.releaseId,
        p.from,
        p.to,
        p.actor,
        p.ts,
        p.policyVersion,
        JSON.stringify(p.scan),
        JSON.stringify(p.violations),
        p.overrideReason,
      ],
    );
  }

  async promotions(releaseId: string): Promise<Promotion[]> {
    const rows = await this.sql.all<PromotionRow>(
      'SELECT * FROM promotions WHERE release_id = ? ORDER BY id',
      [releaseId],
    );
    return rows.map((r) => ({
      id: r.id,
      releaseId: r.release_id,
      from: r.from_channel,
      to: r.to_channel,
      actor: r.actor,
      ts: r.ts,
      policyVersion: r.policy_version,
      scan: JSON.parse(r.scan) as Record<string, unknown>,
      violations: JSON.parse(r.violations) as string[],
      overrideReason: r.override_reason,
    }));
  }
}
