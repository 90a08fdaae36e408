/**
 * Migration 6, written for both engines: what several server nodes need to share work.
 * - deltas.claimed_by / claimed_until: the node building a delta and until when its claim holds
 *   (renewed while it builds; a node that died leaves a claim that runs out, and another node
 *   takes the job over).
 * - cluster_leases: one row per named lease (e.g. the rollout engine) with the holder and an epoch
 *   that grows on every change of holder, so a holder that lost the lease is fenced off.
 *
 * The PostgreSQL list (postgres/migrations.ts) includes it; the SQLite list (migrations.ts) gets
 * `{ version: 6, name: CLUSTER_MIGRATION.name, sql: CLUSTER_MIGRATION.sqlite }` appended.
 */
export const CLUSTER_MIGRATION = {
  version: 6,
  name: 'cluster coordination: delta build claims and named leases with a fencing epoch',
  sqlite: `
ALTER TABLE deltas ADD COLUMN claimed_by TEXT;
ALTER TABLE deltas ADD COLUMN claimed_until INTEGER;
CREATE INDEX deltas_status_created ON deltas(status, created);
CREATE TABLE cluster_leases (
  name     TEXT PRIMARY KEY,
  holder   TEXT NOT NULL,
  epoch    INTEGER NOT NULL,
  acquired INTEGER NOT NULL
);
`,
  postgres: `
ALTER TABLE deltas ADD COLUMN claimed_by TEXT;
ALTER TABLE deltas ADD COLUMN claimed_until BIGINT;
CREATE INDEX deltas_status_created ON deltas(status, created);
CREATE TABLE cluster_leases (
  name     TEXT PRIMARY KEY,
  holder   TEXT NOT NULL,
  epoch    BIGINT NOT NULL,
  acquired BIGINT NOT NULL
);
`,
} as const;
