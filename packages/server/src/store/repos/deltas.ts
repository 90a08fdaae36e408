import type { SignedDelta } from '@flotilla/protocol';
import type { Db } from '../db.js';

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
  private readonly s;

  constructor(db: Db) {
    this.s = {
      get: db.prepare<[string, string], Row>('SELECT * FROM deltas WHERE from_sha256 = ? AND to_sha256 = ?'),
      queue: db.prepare(
        `INSERT INTO deltas (from_sha256, to_sha256, status, created, updated) VALUES (?, ?, 'queued', ?, ?)
         ON CONFLICT DO NOTHING`,
      ),
      status: db.prepare(
        'UPDATE deltas SET status = ?, error = ?, updated = ? WHERE from_sha256 = ? AND to_sha256 = ?',
      ),
      ready: db.prepare(
        `UPDATE deltas SET status = 'ready', delta_sha256 = @deltaSha256, delta_size = @deltaSize, codec = @codec,
           descriptor = @descriptor, error = NULL, updated = @now WHERE from_sha256 = @from AND to_sha256 = @to`,
      ),
      descriptor: db.prepare(
        `UPDATE deltas SET descriptor = ?, updated = ? WHERE from_sha256 = ? AND to_sha256 = ? AND status = 'ready'`,
      ),
      pending: db.prepare<[], Row>(
        `SELECT * FROM deltas WHERE status IN ('queued','building') ORDER BY created`,
      ),
      list: db.prepare<[], Row>('SELECT * FROM deltas ORDER BY created DESC'),
      del: db.prepare('DELETE FROM deltas WHERE from_sha256 = ? AND to_sha256 = ?'),
      requeue: db.prepare(`UPDATE deltas SET status = 'queued' WHERE status = 'building'`),
    };
  }

  get(from: string, to: string): DeltaRow | undefined {
    const r = this.s.get.get(from, to);
    return r ? toDelta(r) : undefined;
  }

  /** True when newly queued. */
  queue(from: string, to: string, now: number): boolean {
    return this.s.queue.run(from, to, now, now).changes === 1;
  }

  setStatus(from: string, to: string, status: DeltaStatus, error: string | null, now: number): void {
    this.s.status.run(status, error, now, from, to);
  }

  setReady(
    from: string,
    to: string,
    d: { deltaSha256: string; deltaSize: number; codec: string; descriptor: SignedDelta },
    now: number,
  ): void {
    this.s.ready.run({ from, to, ...d, descriptor: JSON.stringify(d.descriptor), now });
  }

  /** Replaces the signed descriptor of a ready delta (a renewed expiry). */
  setDescriptor(from: string, to: string, descriptor: SignedDelta, now: number): void {
    this.s.descriptor.run(JSON.stringify(descriptor), now, from, to);
  }

  pending(): DeltaRow[] {
    return this.s.pending.all().map(toDelta);
  }

  list(): DeltaRow[] {
    return this.s.list.all().map(toDelta);
  }

  delete(from: string, to: string): void {
    this.s.del.run(from, to);
  }

  /** A build interrupted by a crash goes back to the queue. */
  requeueInterrupted(): number {
    return this.s.requeue.run().changes;
  }
}
