import type { Sql } from './sql.js';

/**
 * Delta builds shared among server nodes without building one twice. A node claims a job (the
 * oldest queued one, or one whose claim ran out because its node died), renews the claim while it
 * builds, and writes the result only while the claim is still its own. Runs on either engine
 * (columns from migration 6); on PostgreSQL, SKIP LOCKED lets nodes that claim at the same moment
 * take different jobs instead of queueing behind one another.
 */
export interface DeltaClaim {
  fromSha256: string;
  toSha256: string;
  /** The claim holds until this time (ms); renew before it. */
  claimedUntil: number;
}

interface ClaimRow {
  from_sha256: string;
  to_sha256: string;
  claimed_until: number;
}

/** Claims the next delta job for `node`, or returns undefined when there is none to claim. */
export async function claimNextDelta(
  sql: Sql,
  node: string,
  now: number,
  ttlMs: number,
): Promise<DeltaClaim | undefined> {
  const lock = sql.dialect === 'postgres' ? 'FOR UPDATE SKIP LOCKED' : '';
  const row = await sql.get<ClaimRow>(
    `UPDATE deltas SET status = 'building', claimed_by = ?, claimed_until = ?, updated = ?
     WHERE (from_sha256, to_sha256) = (
       SELECT from_sha256, to_sha256 FROM deltas
       WHERE status = 'queued' OR (status = 'building' AND COALESCE(claimed_until, 0) < ?)
       ORDER BY created, from_sha256, to_sha256 LIMIT 1 ${lock})
     RETURNING from_sha256, to_sha256, claimed_until`,
    [node, now + ttlMs, now, now],
  );
  return row && { fromSha256: row.from_sha256, toSha256: row.to_sha256, claimedUntil: row.claimed_until };
}

/**
 * Extends `node`'s claim; false when the claim is no longer its own (stop building). A claim that
 * ran out but that no other node took yet is still its own: ownership is `claimed_by`.
 */
export async function renewDeltaClaim(
  sql: Sql,
  claim: DeltaClaim,
  node: string,
  now: number,
  ttlMs: number,
): Promise<boolean> {
  const r = await sql.run(
    `UPDATE deltas SET claimed_until = ? WHERE from_sha256 = ? AND to_sha256 = ?
     AND status = 'building' AND claimed_by = ?`,
    [now + ttlMs, claim.fromSha256, claim.toSha256, node],
  );
  if (r.changes === 1) claim.claimedUntil = now + ttlMs;
  return r.changes === 1;
}

/**
 * Ends `node`'s claim with the job's outcome written by `finish` in the same transaction, only if
 * the claim is still its own (a node that lost it must not overwrite the new holder's work).
 * Returns false, and writes nothing, when the claim was lost.
 */
export async function completeDeltaClaim(
  sql: Sql,
  claim: DeltaClaim,
  node: string,
  finish: (tx: Sql) => Promise<unknown>,
): Promise<boolean> {
  return sql.tx(async (tx) => {
    const r = await tx.run(
      `UPDATE deltas SET claimed_by = NULL, claimed_until = NULL
       WHERE from_sha256 = ? AND to_sha256 = ? AND status = 'building' AND claimed_by = ?`,
      [claim.fromSha256, claim.toSha256, node],
    );
    if (r.changes !== 1) return false;
    await finish(tx);
    return true;
  });
}
