import { createHash, randomBytes } from 'node:crypto';
import type { Db } from '../db.js';

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
  private readonly s;

  constructor(db: Db) {
    this.s = {
      insert: db.prepare(
        'INSERT INTO api_tokens (id, name, role, hash, created) VALUES (@id, @name, @role, @hash, @now)',
      ),
      byHash: db.prepare<[string], Row>('SELECT * FROM api_tokens WHERE hash = ? AND revoked IS NULL'),
      get: db.prepare<[string], Row>('SELECT * FROM api_tokens WHERE id = ?'),
      list: db.prepare<[], Row>('SELECT * FROM api_tokens ORDER BY created'),
      used: db.prepare('UPDATE api_tokens SET last_used = ? WHERE id = ?'),
      revoke: db.prepare('UPDATE api_tokens SET revoked = ? WHERE id = ? AND revoked IS NULL'),
      count: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM api_tokens WHERE revoked IS NULL'),
    };
  }

  create(name: string, role: TokenRole, now: number): { token: ApiToken; secret: string } {
    const id = `tok_${randomBytes(8).toString('hex')}`;
    const secret = newSecret('flt');
    this.s.insert.run({ id, name, role, hash: hashSecret(secret), now });
    return { token: this.get(id)!, secret };
  }

  /** Adds a token whose secret the caller chose (bootstrap from FLOTILLA_ADMIN_TOKEN, tests). */
  createWithSecret(name: string, role: TokenRole, secret: string, now: number): ApiToken {
    const id = `tok_${randomBytes(8).toString('hex')}`;
    this.s.insert.run({ id, name, role, hash: hashSecret(secret), now });
    return this.get(id)!;
  }

  authenticate(secret: string, now: number): ApiToken | undefined {
    const row = this.s.byHash.get(hashSecret(secret));
    if (!row) return undefined;
    // last-used is informative: write it at most once a minute per token.
    if (!row.last_used || now - row.last_used > 60_000) this.s.used.run(now, row.id);
    return toToken(row);
  }

  get(id: string): ApiToken | undefined {
    const r = this.s.get.get(id);
    return r ? toToken(r) : undefined;
  }

  list(): ApiToken[] {
    return this.s.list.all().map(toToken);
  }

  revoke(id: string, now: number): boolean {
    return this.s.revoke.run(now, id).changes === 1;
  }

  activeCount(): number {
    return this.s.count.get()?.n ?? 0;
  }
}
