import { createHash, randomBytes } from 'node:crypto';
import type { Sql } from '../sql.js';

export type TokenRole = 'viewer' | 'operator' | 'admin';
export const TOKEN_ROLES: readonly TokenRole[] = ['viewer', 'operator', 'admin'];

export interface ApiToken {
  id: string;
  name: string;
  role: TokenRole;
  created: number;
  lastUsed: number | null;
  revoked: number | null;
}

interface Row {
  id: string;
  name: string;
  role: TokenRole;
  hash: string;
  created: number;
  last_used: number | null;
  revoked: number | null;
}

const toToken = (r: Row): ApiToken => ({
  id: r.id,
  name: r.name,
  role: r.role,
  created: r.created,
  lastUsed: r.last_used,
  revoked: r.revoked,
});

/** Secrets are 32 random bytes: a fast hash is enough (no password to brute-force), and lookups stay O(1). */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export function newSecret(prefix: string): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}

/** Operator API tokens; only the hash of a token is stored, the token itself is shown once. */
export class TokensRepo {
  constructor(private readonly sql: Sql) {}

  private async insert(name: string, role: TokenRole, secret: string, now: number): Promise<ApiToken> {
    const id = `tok_${randomBytes(8).toString('hex')}`;
    const r = await this.sql.get<Row>(
      'INSERT INTO api_tokens (id, name, role, hash, created) VALUES (?, ?, ?, ?, ?) RETURNING *',
      [id, name, role, hashSecret(secret), now],
    );
    return toToken(r!);
  }

  async create(name: string, role: TokenRole, now: number): Promise<{ token: ApiToken; secret: string }> {
    const secret = newSecret('flt');
    return { token: await this.insert(name, role, secret, now), secret };
  }

  /** Adds a token whose secret the caller chose (bootstrap from FLOTILLA_ADMIN_TOKEN, tests). */
  createWithSecret(name: string, role: TokenRole, secret: string, now: number): Promise<ApiToken> {
    return this.insert(name, role, secret, now);
  }

  async authenticate(secret: string, now: number): Promise<ApiToken | undefined> {
    const row = await this.sql.get<Row>('SELECT * FROM api_tokens WHERE hash = ? AND revoked IS NULL', [
      hashSecret(secret),
    ]);
    if (!row) return undefined;
    // last-used is informative: write it at most once a minute per token.
    if (!row.last_used || now - row.last_used > 60_000)
      await this.sql.run('UPDATE api_tokens SET last_used = ? WHERE id = ?', [now, row.id]);
    return toToken(row);
  }

  async get(id: string): Promise<ApiToken | undefined> {
    const r = await this.sql.get<Row>('SELECT * FROM api_tokens WHERE id = ?', [id]);
    return r ? toToken(r) : undefined;
  }

  async list(): Promise<ApiToken[]> {
    return (await this.sql.all<Row>('SELECT * FROM api_tokens ORDER BY created, id')).map(toToken);
  }

  async revoke(id: string, now: number): Promise<boolean> {
    const r = await this.sql.run('UPDATE api_tokens SET revoked = ? WHERE id = ? AND revoked IS NULL', [
      now,
      id,
    ]);
    return r.changes === 1;
  }

  async activeCount(): Promise<number> {
    return (
      (await this.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM api_tokens WHERE revoked IS NULL'))?.n ??
      0
    );
  }
}
