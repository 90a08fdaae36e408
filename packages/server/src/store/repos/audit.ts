import type { Db } from '../db.js';

export interface AuditEntry {
  id: number;
  ts: number;
  actor: string;
  action: string;
  target: string | null;
  detail: Record<string, unknown>;
}

/** What `GET /audit` filters on; every field is optional and they combine with AND. */
export interface AuditFilter {
  /** Entries older than this id (paging). */
  before?: number;
  /** The actor as recorded, a token's name, or a token's id. */
  actor?: string;
  /** An action (`token.create`), or every action under a prefix (`token.*`). */
  action?: string;
  target?: string;
  /** ms since the epoch: since inclusive, until exclusive. */
  since?: number;
  until?: number;
}

interface Row {
  id: number;
  ts: number;
  actor: string;
  action: string;
  target: string | null;
  detail: string;
}

const toEntry = (r: Row): AuditEntry => ({ ...r, detail: JSON.parse(r.detail) as Record<string, unknown> });

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
      // One statement for every filter: an absent one is NULL and matches all.
      query: db.prepare<[Record<string, string | number | null>], Row>(
        `SELECT * FROM audit_log WHERE id < @before
           AND (@actor IS NULL OR actor = @actor OR actor = 'token:' || @actor
                OR substr(actor, 1, length(@actor) + 7) = 'token:' || @actor || '('
                OR substr(actor, -(length(@actor) + 2)) = '(' || @actor || ')')
           AND (@action IS NULL OR action = @action
                OR (@actionPrefix IS NOT NULL AND substr(action, 1, length(@actionPrefix)) = @actionPrefix))
           AND (@target IS NULL OR target = @target)
           AND ts >= @since AND ts < @until
         ORDER BY id DESC LIMIT @limit`,
      ),
      aboutDevice: db.prepare<[string, string, number, number], Row>(
        `SELECT * FROM audit_log WHERE (target = ? OR actor = ?) AND ts < ? ORDER BY id DESC LIMIT ?`,
      ),
    };
  }

  record(actor: string, action: string, target: string | null, detail: Record<string, unknown>, now: number) {
    this.s.insert.run(now, actor, action, target, JSON.stringify(detail));
  }

  /** The newest entry of `actor` with one of these actions. */
  lastOf(actor: string, actions: readonly string[]): AuditEntry | undefined {
    const r = this.s.lastOf.get(actor, JSON.stringify(actions));
    return r ? toEntry(r) : undefined;
  }

  list(beforeId: number, limit: number): AuditEntry[] {
    return this.query({ before: beforeId }, limit);
  }

  /** Entries matching `filter`, newest first. */
  query(filter: AuditFilter, limit: number): AuditEntry[] {
    const action = filter.action ?? null;
    return this.s.query
      .all({
        before: filter.before ?? Number.MAX_SAFE_INTEGER,
        actor: filter.actor ?? null,
        action,
        actionPrefix: action?.endsWith('*') ? action.slice(0, -1) : null,
        target: filter.target ?? null,
        since: filter.since ?? 0,
        until: filter.until ?? Number.MAX_SAFE_INTEGER,
        limit,
      })
      .map(toEntry);
  }

  /** What was recorded about a device (its target) or by it (`device:<id>`) before `until`. */
  aboutDevice(deviceId: string, until: number, limit: number): AuditEntry[] {
    return this.s.aboutDevice.all(deviceId, `device:${deviceId}`, until, limit).map(toEntry);
  }
}
