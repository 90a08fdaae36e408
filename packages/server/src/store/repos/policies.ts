import type { PolicyDocument } from '../../policy/policy-schema.js';
import type { Db } from '../db.js';

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

/** Policy documents (every version kept: history) and promotion records (metadata shown per release). */
export class PoliciesRepo {
  private readonly s;

  constructor(db: Db) {
    this.s = {
      insert: db.prepare('INSERT INTO policies (version, document, actor, created) VALUES (?, ?, ?, ?)'),
      latest: db.prepare<[], { version: number; document: string; actor: string; created: number }>(
        'SELECT * FROM policies ORDER BY version DESC LIMIT 1',
      ),
      history: db.prepare<[number], { version: number; document: string; actor: string; created: number }>(
        'SELECT * FROM policies ORDER BY version DESC LIMIT ?',
      ),
      promote: db.prepare(
        `INSERT INTO promotions (release_id, from_channel, to_channel, actor, ts, policy_version, scan, violations, override_reason)
         VALUES (@releaseId, @from, @to, @actor, @ts, @policyVersion, @scan, @violations, @overrideReason)`,
      ),
      promotions: db.prepare<[string], PromotionRow>(
        'SELECT * FROM promotions WHERE release_id = ? ORDER BY id',
      ),
    };
  }

  insert(version: number, document: PolicyDocument, actor: string, now: number): void {
    this.s.insert.run(version, JSON.stringify(document), actor, now);
  }

  latest(): StoredPolicy | undefined {
    const r = this.s.latest.get();
    return r ? { ...r, document: JSON.parse(r.document) as PolicyDocument } : undefined;
  }

  history(limit: number): StoredPolicy[] {
    return this.s.history
      .all(limit)
      .map((r) => ({ ...r, document: JSON.parse(r.document) as PolicyDocument }));
  }

  recordPromotion(p: Omit<Promotion, 'id'>): void {
    this.s.promote.run({
      ...p,
      scan: JSON.stringify(p.scan),
      violations: JSON.stringify(p.violations),
    });
  }

  promotions(releaseId: string): Promotion[] {
    return this.s.promotions.all(releaseId).map((r) => ({
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
