import type { RolloutPolicy, RolloutRuntime, RolloutStatus } from '../../rollout/index.js';
import type { Sql } from '../sql.js';

export interface RolloutRow {
  id: string;
  name: string;
  releaseId: string;
  policy: RolloutPolicy;
  status: RolloutStatus;
  runtime: RolloutRuntime;
  createdBy: string;
  created: number;
  updated: number;
}

interface Row {
  id: string;
  name: string;
  release_id: string;
  policy: string;
  status: RolloutStatus;
  runtime: string;
  created_by: string;
  created: number;
  updated: number;
}

const toRollout = (r: Row): RolloutRow => ({
  id: r.id,
  name: r.name,
  releaseId: r.release_id,
  policy: JSON.parse(r.policy) as RolloutPolicy,
  status: r.status,
  runtime: JSON.parse(r.runtime) as RolloutRuntime,
  createdBy: r.created_by,
  created: r.created,
  updated: r.updated,
});

const ACTIVE = `('scheduled','running','waiting','waiting-approval','soaking','paused')`;

/** Rollouts: the policy as created and the engine's runtime document (one JSON column, written atomically). */
export class RolloutsRepo {
  constructor(private readonly sql: Sql) {}

  async insert(r: {
    id: string;
    name: string;
    releaseId: string;
    policy: RolloutPolicy;
    runtime: RolloutRuntime;
    createdBy: string;
    now: number;
  }): Promise<void> {
    await this.sql.run(
      `INSERT INTO rollouts (id, name, release_id, policy, status, runtime, created_by, created, updated)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        r.id,
        r.name,
        r.releaseId,
        JSON.stringify(r.policy),
        r.runtime.status,
        JSON.stringify(r.runtime),
        r.createdBy,
        r.now,
        r.now,
      ],
    );
  }

  async get(id: string): Promise<RolloutRow | undefined> {
    const r = await this.sql.get<Row>('SELECT * FROM rollouts WHERE id = ?', [id]);
    return r ? toRollout(r) : undefined;
  }

  async list(limit: number, offset: number): Promise<RolloutRow[]> {
    const rows = await this.sql.all<Row>(
      'SELECT * FROM rollouts ORDER BY created DESC, id DESC LIMIT ? OFFSET ?',
      [limit, offset],
    );
    return rows.map(toRollout);
  }

  /** Unfinished rollouts; an aborted one that rolls devices back still needs engine passes. */
  async active(): Promise<RolloutRow[]> {
    // The JSON path is read differently per engine (runtime is JSON text in both).
    const rollingBack =
      this.sql.dialect === 'postgres'
        ? "(runtime::jsonb ->> 'rollingBack') = 'true'"
        : "json_extract(runtime, '$.rollingBack') = 1";
    const rows = await this.sql.all<Row>(
      `SELECT * FROM rollouts WHERE status IN ${ACTIVE} OR (status = 'aborted' AND ${rollingBack}) ORDER BY created, id`,
    );
    return rows.map(toRollout);
  }

  async setRuntime(id: string, runtime: RolloutRuntime, now: number): Promise<void> {
    await this.sql.run('UPDATE rollouts SET runtime = ?, status = ?, updated = ? WHERE id = ?', [
      JSON.stringify(runtime),
      runtime.status,
      now,
      id,
    ]);
  }

  /** Releases an unfinished rollout still needs (retention must keep them). */
  async activeReleaseIds(): Promise<string[]> {
    const rows = await this.sql.all<{ release_id: string }>(
      `SELECT DISTINCT release_id FROM rollouts WHERE status IN ${ACTIVE}`,
    );
    return rows.map((r) => r.release_id);
  }
}
