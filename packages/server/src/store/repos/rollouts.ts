import type { RolloutPolicy, RolloutRuntime, RolloutStatus } from '../../rollout/index.js';
import type { Db } from '../db.js';

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
  private readonly s;

  constructor(db: Db) {
    this.s = {
      insert: db.prepare(
        `INSERT INTO rollouts (id, name, release_id, policy, status, runtime, created_by, created, updated)
         VALUES (@id, @name, @releaseId, @policy, @status, @runtime, @createdBy, @now, @now)`,
      ),
      get: db.prepare<[string], Row>('SELECT * FROM rollouts WHERE id = ?'),
      list: db.prepare<[number, number], Row>(
        'SELECT * FROM rollouts ORDER BY created DESC LIMIT ? OFFSET ?',
      ),
      // An aborted rollout that rolls devices back still needs engine passes.
      active: db.prepare<[], Row>(
        `SELECT * FROM rollouts WHERE status IN ${ACTIVE}
           OR (status = 'aborted' AND json_extract(runtime, '$.rollingBack') = 1) ORDER BY created`,
      ),
      setRuntime: db.prepare('UPDATE rollouts SET runtime = ?, status = ?, updated = ? WHERE id = ?'),
      activeReleases: db.prepare<[], { release_id: string }>(
        `SELECT DISTINCT release_id FROM rollouts WHERE status IN ${ACTIVE}`,
      ),
      anyForRelease: db.prepare<[string], { n: number }>(
        `SELECT COUNT(*) AS n FROM rollouts WHERE release_id = ? AND status IN ${ACTIVE}`,
      ),
    };
  }

  insert(r: {
    id: string;
    name: string;
    releaseId: string;
    policy: RolloutPolicy;
    runtime: RolloutRuntime;
    createdBy: string;
    now: number;
  }): void {
    this.s.insert.run({
      ...r,
      policy: JSON.stringify(r.policy),
      runtime: JSON.stringify(r.runtime),
      status: r.runtime.status,
    });
  }

  get(id: string): RolloutRow | undefined {
    const r = this.s.get.get(id);
    return r ? toRollout(r) : undefined;
  }

  list(limit: number, offset: number): RolloutRow[] {
    return this.s.list.all(limit, offset).map(toRollout);
  }

  active(): RolloutRow[] {
    return this.s.active.all().map(toRollout);
  }

  setRuntime(id: string, runtime: RolloutRuntime, now: number): void {
    this.s.setRuntime.run(JSON.stringify(runtime), runtime.status, now, id);
  }

  /** Releases an unfinished rollout still needs (retention must keep them). */
  activeReleaseIds(): string[] {
    return this.s.activeReleases.all().map((r) => r.release_id);
  }
}
