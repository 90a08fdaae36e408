import { randomBytes } from 'node:crypto';
import type { Sql } from '../sql.js';
import { hashSecret, newSecret } from './tokens.js';

export interface ProvisioningToken {
  id: string;
  label: string;
  autoAccept: boolean;
  expires: number;
  usedBy: string | null;
  usedAt: number | null;
  created: number;
}

interface Row {
  id: string;
  label: string;
  auto_accept: number;
  expires: number;
  used_by: string | null;
  used_at: number | null;
  created: number;
}

const toToken = (r: Row): ProvisioningToken => ({
  id: r.id,
  label: r.label,
  autoAccept: r.auto_accept === 1,
  expires: r.expires,
  usedBy: r.used_by,
  usedAt: r.used_at,
  created: r.created,
});

/** One-time device provisioning tokens: stored hashed, consumed atomically by the first device. */
export class ProvisioningRepo {
  constructor(private readonly sql: Sql) {}

  async create(label: string, ttlMs: number, autoAccept: boolean, now: number) {
    const id = `prov_${randomBytes(8).toString('hex')}`;
    const secret = newSecret('flp');
    await this.sql.run(
      `INSERT INTO provisioning_tokens (id, hash, label, auto_accept, expires, created)
       VALUES (?, ?, ?, ?, ?, ?)`,
      [id, hashSecret(secret), label, autoAccept ? 1 : 0, now + ttlMs, now],
    );
    return { id, secret, expires: now + ttlMs };
  }

  /** Marks the token used by this device; undefined when unknown, expired or used. */
  async consume(secret: string, deviceId: string, now: number): Promise<ProvisioningToken | undefined> {
    const r = await this.sql.get<Row>(
      `UPDATE provisioning_tokens SET used_by = ?, used_at = ?
       WHERE hash = ? AND used_by IS NULL AND expires > ? RETURNING *`,
      [deviceId, now, hashSecret(secret), now],
    );
    return r ? toToken(r) : undefined;
  }

  async list(): Promise<ProvisioningToken[]> {
    return (await this.sql.all<Row>('SELECT * FROM provisioning_tokens ORDER BY created DESC, id DESC')).map(
      toToken,
    );
  }
}
