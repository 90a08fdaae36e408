import type { SignedDelta } from '@flotilla/protocol';
import type { Sql } from '../sql.js';

export type DeltaStatus = 'queued' | 'building' | 'ready' | 'failed';

export interface DeltaRow {
  fromSha256: string;
  toSha256: string;
  status: DeltaStatus;
  deltaSha256: string | null;
  deltaSize: number | null;
  codec: string | null;
  descriptor: SignedDelta | null;
  error: string | null;
  created: number;
  updated: number;
}

interface Row {
  from_sha256: string;
  to_sha256: string;
  status: DeltaStatus;
  delta_sha256: string | null;
  delta_size: number | null;
  codec: string | null;
  descriptor: string | null;
  error: string | null;
  created: number;
  updated: number;
}

const toDelta = (r: Row): DeltaRow => ({
  fromSha256: r.from_sha256,
  toSha256: r.to_sha256,
  status: r.status,
  deltaSha256: r.delta_sha256,
  deltaSize: r.delta_size,
  codec: r.codec,
  descriptor: r.descriptor ? (JSON.parse(r.descriptor) as SignedDelta) : null,
  error: r.error,
  created: r.created,
  updated: r.updated,
});

/** The delta cache, keyed by (from image, to image); a failed entry is remembered so it is not retried in a loop. */
export class DeltasRepo {
  constructor(private readonly sql: Sql) {}

  async get(from: string, to: string): Promise<DeltaRow | undefined> {
    const r = await this.sql.get<Row>('SELECT * FROM deltas WHERE from_sha256 = ? AND to_sha256 = ?', [
      from,
      to,
    ]);
    return r ? toDelta(r) : undefined;
  }

  /** True when newly queued. */
  async queue(from: string, to: string, now: number): Promise<boolean> {
    const r = await this.sql.run(
      `INSERT INTO deltas (from_sha256, to_sha256, status, created, updated) VALUES (?, ?, 'queued', ?, ?)
       ON CONFLICT DO NOTHING`,
      [from, to, now, now],
    );
    return r.changes === 1;
  }

  async setStatus(
    from: string,
    to: string,
    status: DeltaStatus,
    error: string | null,
    now: number,
  ): Promise<void> {
    await this.sql.run(
      'UPDATE deltas SET status = ?, error = ?, updated = ? WHERE from_sha256 = ? AND to_sha256 = ?',
      [status, error, now, from, to],
    );
  }

  async setReady(
    from: string,
    to: string,
    d: { deltaSha256: string; deltaSize: number; codec: string; descriptor: SignedDelta },
    now: number,
  ): Promise<void> {
    await this.sql.run(
      `UPDATE deltas SET status = 'ready', delta_sha256 = ?, delta_size = ?, codec = ?,
         descriptor = ?, error = NULL, updated = ? WHERE from_sha256 = ? AND to_sha256 = ?`,
      [d.deltaSha256, d.deltaSize, d.codec, JSON.stringify(d.descriptor), now, from, to],
    );
  }

  /** Replaces the signed descriptor of a ready delta (a renewed expiry). */
  async setDescriptor(from: string, to: string, descriptor: SignedDelta, now: number): Promise<void> {
    await this.sql.run(
      `UPDATE deltas SET descriptor = ?, updated = ? WHERE from_sha256 = ? AND to_sha256 = ? AND status = 'ready'`,
      [JSON.stringify(descriptor), now, from, to],
    );
  }

  async pending(): Promise<DeltaRow[]> {
    return (
      await this.sql.all<Row>(
        `SELECT * FROM deltas WHERE status IN ('queued','building') ORDER BY created, from_sha256, to_sha256`,
      )
    ).map(toDelta);
  }

  async list(): Promise<DeltaRow[]> {
    return (
      await this.sql.all<Row>('SELECT * FROM deltas ORDER BY created DESC, from_sha256, to_sha256')
    ).map(toDelta);
  }

  async delete(from: string, to: string): Promise<void> {
    await this.sql.run('DELETE FROM deltas WHERE from_sha256 = ? AND to_sha256 = ?', [from, to]);
  }

  /** A build interrupted by a crash goes back to the queue. */
  async requeueInterrupted(): Promise<number> {
    return (await this.sql.run(`UPDATE deltas SET status = 'queued' WHERE status = 'building'`)).changes;
  }
}
