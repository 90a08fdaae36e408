import type { Db } from '../db.js';

export interface AuditEntry {
  id: number;
  ts: number;
  actor: string;
  action: string;
  target: string | null;
  detail: Record<string, unknown>;
}

interface Row {
  id: number;
  ts: number;
  actor: string;
  action: string;
  target: string | null;
  detail: string;
}

/** Append-only record of every change (who, what, on which object); written in the change's transaction. */
export class AuditRepo {
  private readonly s;

  constructor(db: Db) {
    this.s = {
      insert: db.prepare('INSERT INTO audit_log (ts, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)'),
      lastOf: db.prepare<[string, string], Row>(
        `SELECT * FROM audit_log WHERE actor = ? AND action IN (SELECT value FROM json_each(?))
         ORDER BY id DESC LIMIT 1`,
      ),
      list: db.prepare<[number, number], Row>(
        'SELECT * FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?',
      ),
    };
  }

  record(actor: string, action: string, target: string | null, detail: Record<string, unknown>, now: number) {
    this.s.insert.run(now, actor, action, target, JSON.stringify(detail));
  }

  /** The newest entry of `actor` with one of these actions. */
  lastOf(actor: string, actions: readonly string[]): AuditEntry | undefined {
    const r = this.s.lastOf.get(actor, JSON.stringify(actions));
    return r ? { ...r, detail: JSON.parse(r.detail) as Record<string, unknown> } : undefined;
  }

  list(beforeId: number, limit: number): AuditEntry[] {
    return this.s.list.all(beforeId, limit).map((r) => ({
      ...r,
      detail: JSON.parse(r.detail) as Record<string, unknown>,
    }));
  }
}
