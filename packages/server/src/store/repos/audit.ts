import type { Sql, SqlValue } from '../sql.js';
import { inChunks, placeholdersFor, valuesOf } from '../sql-rows.js';

export interface AuditEntry {
  id: number;
  ts: number;
  actor: string;
  action: string;
  target: string | null;
  detail: Record<string, unknown>;
}

/** An entry to record (its id and time are the store's). */
export type AuditNote = Pick<AuditEntry, 'actor' | 'action' | 'target' | 'detail'>;

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
  constructor(private readonly sql: Sql) {}

  async record(
    actor: string,
    action: string,
    target: string | null,
    detail: Record<string, unknown>,
    now: number,
  ): Promise<void> {
    await this.sql.run('INSERT INTO audit_log (ts, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)', [
      now,
      actor,
      action,
      target,
      JSON.stringify(detail),
    ]);
  }

  /** `record` for several entries, in this order (ids grow with it), one statement per chunk. */
  async recordMany(entries: readonly AuditNote[], now: number): Promise<void> {
    for (const chunk of inChunks(entries)) {
      const v = valuesOf(
        ['BIGINT', 'TEXT', 'TEXT', 'TEXT', 'TEXT'],
        chunk.map((e) => [now, e.actor, e.action, e.target, JSON.stringify(e.detail)]),
      );
      await this.sql.run(`INSERT INTO audit_log (ts, actor, action, target, detail) ${v.sql}`, v.params);
    }
  }

  /** The newest entry of `actor` with one of these actions. */
  async lastOf(actor: string, actions: readonly string[]): Promise<AuditEntry | undefined> {
    if (actions.length === 0) return undefined;
    const r = await this.sql.get<Row>(
      `SELECT * FROM audit_log WHERE actor = ? AND action IN (${placeholdersFor(actions)}) ORDER BY id DESC LIMIT 1`,
      [actor, ...actions],
    );
    return r ? toEntry(r) : undefined;
  }

  list(beforeId: number, limit: number): Promise<AuditEntry[]> {
    return this.query({ before: beforeId }, limit);
  }

  /**
   * Entries matching `filter`, newest first. Only the filters given become conditions (an
   * untyped `? IS NULL` is not portable). Suffix and prefix tests use substr from a positive
   * start, which both engines read the same way.
   */
  async query(filter: AuditFilter, limit: number): Promise<AuditEntry[]> {
    const where = ['id < ?', 'ts >= ?', 'ts < ?'];
    const args: SqlValue[] = [
      filter.before ?? Number.MAX_SAFE_INTEGER,
      filter.since ?? 0,
      filter.until ?? Number.MAX_SAFE_INTEGER,
    ];
    const { actor, action, target } = filter;
    if (actor !== undefined) {
      // As recorded, as `token:<name-or-id>`, or as `token:<name>(<id>)` by either part.
      where.push(`(actor = ? OR actor = ? OR substr(actor, 1, ?) = ?
        OR (length(actor) >= ? AND substr(actor, length(actor) - ?) = ?))`);
      const open = `token:${actor}(`;
      const close = `(${actor})`;
      args.push(actor, `token:${actor}`, open.length, open, close.length, close.length - 1, close);
    }
    if (action !== undefined) {
      if (action.endsWith('*')) {
        const prefix = action.slice(0, -1);
        where.push('(action = ? OR substr(action, 1, ?) = ?)');
        args.push(action, prefix.length, prefix);
      } else {
        where.push('action = ?');
        args.push(action);
      }
    }
    if (target !== undefined) {
      where.push('target = ?');
      args.push(target);
    }
    const rows = await this.sql.all<Row>(
      `SELECT * FROM audit_log WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ?`,
      [...args, limit],
    );
    return rows.map(toEntry);
  }

  /** What was recorded about a device (its target) or by it (`device:<id>`) before `until`. */
  async aboutDevice(deviceId: string, until: number, limit: number): Promise<AuditEntry[]> {
    const rows = await this.sql.all<Row>(
      'SELECT * FROM audit_log WHERE (target = ? OR actor = ?) AND ts < ? ORDER BY id DESC LIMIT ?',
      [deviceId, `device:${deviceId}`, until, limit],
    );
    return rows.map(toEntry);
  }
}
