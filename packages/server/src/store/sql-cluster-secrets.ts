import type { Sql } from './sql.js';

/**
 * Migration 8, both engines: secrets every node sharing one database must agree on (today the
 * key that signs artifact URLs: a URL one node signs is checked by whichever node nginx asks).
 */
export const CLUSTER_SECRETS_MIGRATION = {
  version: 8,
  name: 'secrets shared by the nodes of one database',
  sqlite: `
CREATE TABLE cluster_secrets (
  name    TEXT PRIMARY KEY,
  value   TEXT NOT NULL,
  created INTEGER NOT NULL
);
`,
  postgres: `
CREATE TABLE cluster_secrets (
  name    TEXT PRIMARY KEY,
  value   TEXT NOT NULL,
  created BIGINT NOT NULL
);
`,
} as const;

/**
 * The cluster's value of secret `name`: the first node to ask stores its own `candidate`, every
 * later one gets that stored value back (one statement each, so two first nodes cannot differ).
 */
export async function agreeOnSecret(sql: Sql, name: string, candidate: string, now: number): Promise<string> {
  await sql.run(
    'INSERT INTO cluster_secrets (name, value, created) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING',
    [name, candidate, now],
  );
  const row = await sql.get<{ value: string }>('SELECT value FROM cluster_secrets WHERE name = ?', [name]);
  return row!.value;
}
