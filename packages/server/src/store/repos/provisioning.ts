import { randomBytes } from 'node:crypto';
import type { Db } from '../db.js';
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
  private readonly s;

  constructor(db: Db) {
    this.s = {
      insert: db.prepare(
        `INSERT INTO provisioning_tokens (id, hash, label, auto_accept, expires, created)
         VALUES (@id, @hash, @label, @autoAccept, @expires, @now)`,
      ),
      consume: db.prepare(
        `UPDATE provisioning_tokens SET used_by = @deviceId, used_at = @now
         WHERE hash = @hash AND used_by IS NULL AND expires > @now RETURNING *`,
      ),
      list: db.prepare<[], Row>('SELECT * FROM provisioning_tokens ORDER BY created DESC'),
    };
  }

  create(label: string, ttlMs: number, autoAccept: boolean, now: number) {
    const id = `prov_${randomBytes(8).toString('hex')}`;
    const secret = newSecret('flp');
    this.s.insert.run({
      id,
      hash: hashSecret(secret),
      label,
      autoAccept: autoAccept ? 1 : 0,
      expires: now + ttlMs,
      now,
    });
    return { id, secret, expires: now + ttlMs };
  }

  /** Marks the token used by this device; undefined when unknown, expired or used. */
  consume(secret: string, deviceId: string, now: number): ProvisioningToken | undefined {
    const r = this.s.consume.get({ hash: hashSecret(secret), deviceId, now }) as Row | undefined;
    return r ? toToken(r) : undefined;
  }

  list(): ProvisioningToken[] {
    return this.s.list.all().map(toToken);
  }
}
