import { randomBytes } from 'node:crypto';
import type { DeploymentRecord, DeploymentState, RollbackRecord } from '../../rollout/index.js';
import type { Sql, SqlValue } from '../sql.js';
import { type ColumnType, inChunks, placeholdersFor, sortedById, valuesOf } from '../sql-rows.js';

export interface DeploymentRow extends DeploymentRecord {
  id: string;
  rolloutId: string;
  created: number;
}

interface Row {
  id: string;
  rollout_id: string;
  device_id: string;
  phase: number;
  state: DeploymentState;
  attempts: number;
  offered_at: number | null;
  failure_reason: string | null;
  from_version: string | null;
  rollback: string | null;
  created: number;
  updated: number;
}

const toDeployment = (r: Row): DeploymentRow => ({
  id: r.id,
  rolloutId: r.rollout_id,
  deviceId: r.device_id,
  phase: r.phase,
  state: r.state,
  attempts: r.attempts,
  offeredAt: r.offered_at,
  updatedAt: r.updated,
  failureReason: r.failure_reason,
  fromVersion: r.from_version,
  rollback: r.rollback ? (JSON.parse(r.rollback) as RollbackRecord) : null,
  created: r.created,
});

/** A record's stored columns after its id: phase … updated (a `rollback` as JSON). */
const recordRow = (d: DeploymentRecord): SqlValue[] => [
  d.phase,
  d.state,
  d.attempts,
  d.offeredAt,
  d.failureReason,
  d.fromVersion,
  d.rollback ? JSON.stringify(d.rollback) : null,
  d.updatedAt,
];
const RECORD_TYPES: ColumnType[] = ['BIGINT', 'TEXT', 'BIGINT', 'BIGINT', 'TEXT', 'TEXT', 'TEXT', 'BIGINT'];

/** Offers to a device name the deployment; a rollback offer of the same deployment adds this suffix. */
export const ROLLBACK_SUFFIX = '-rb';

/** One device's part in one rollout (the engine's DeploymentRecord plus ids). */
export class DeploymentsRepo {
  constructor(private readonly sql: Sql) {}

  /** The deployment of this device in this rollout, created when missing; returns its id. */
  async assign(
    rolloutId: string,
    deviceId: string,
    phase: number,
    fromVersion: string | null,
    now: number,
  ): Promise<string> {
    const id = `dep_${randomBytes(8).toString('hex')}`;
    await this.sql.run(
      `INSERT INTO deployments (id, rollout_id, device_id, phase, state, attempts, from_version, created, updated)
       VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?) ON CONFLICT (rollout_id, device_id) DO NOTHING`,
      [id, rolloutId, deviceId, phase, fromVersion, now, now],
    );
    return (await this.find(rolloutId, deviceId))!.id;
  }

  async get(id: string): Promise<DeploymentRow | undefined> {
    const r = await this.sql.get<Row>('SELECT * FROM deployments WHERE id = ?', [id]);
    return r ? toDeployment(r) : undefined;
  }

  async find(rolloutId: string, deviceId: string): Promise<DeploymentRow | undefined> {
    const r = await this.sql.get<Row>('SELECT * FROM deployments WHERE rollout_id = ? AND device_id = ?', [
      rolloutId,
      deviceId,
    ]);
    return r ? toDeployment(r) : undefined;
  }

  async forRollout(rolloutId: string): Promise<DeploymentRow[]> {
    const rows = await this.sql.all<Row>(
      'SELECT * FROM deployments WHERE rollout_id = ? ORDER BY phase, device_id',
      [rolloutId],
    );
    return rows.map(toDeployment);
  }

  async forDevice(deviceId: string): Promise<DeploymentRow[]> {
    const rows = await this.sql.all<Row>(
      'SELECT * FROM deployments WHERE device_id = ? ORDER BY created DESC, id DESC',
      [deviceId],
    );
    return rows.map(toDeployment);
  }

  /** The deployments with these ids that exist, by id; one statement per chunk. */
  async getMany(ids: readonly string[]): Promise<Map<string, DeploymentRow>> {
    const out = new Map<string, DeploymentRow>();
    if (ids.length === 1) {
      // One deployment (SQLite's per-report path): the plain read, without the list's work.
      const one = await this.get(ids[0]!);
      if (one) out.set(one.id, one);
      return out;
    }
    for (const chunk of inChunks([...new Set(ids)])) {
      const rows = await this.sql.all<Row>(
        `SELECT * FROM deployments WHERE id IN (${placeholdersFor(chunk)})`,
        chunk,
      );
      for (const r of rows) out.set(r.id, toDeployment(r));
    }
    return out;
  }

  async save(d: DeploymentRow): Promise<void> {
    await this.sql.run(
      `UPDATE deployments SET phase = ?, state = ?, attempts = ?, offered_at = ?,
         failure_reason = ?, from_version = ?, rollback = ?, updated = ?
       WHERE id = ?`,
      [...recordRow(d), d.id],
    );
  }

  /**
   * Stores each record as a new deployment of this rollout (created now), one statement per
   * chunk: what `assign` then `save` with the record would store. A device that already has a
   * deployment in the rollout keeps it untouched; returns the rows this call created.
   */
  async createMany(
    rolloutId: string,
    records: readonly DeploymentRecord[],
    now: number,
  ): Promise<DeploymentRow[]> {
    const created: DeploymentRow[] = [];
    for (const chunk of inChunks(records)) {
      const v = valuesOf(
        ['TEXT', 'TEXT', 'TEXT', ...RECORD_TYPES, 'BIGINT'],
        chunk.map((d) => [
          `dep_${randomBytes(8).toString('hex')}`,
          rolloutId,
          d.deviceId,
          ...recordRow(d),
          now,
        ]),
      );
      const rows = await this.sql.all<Row>(
        `INSERT INTO deployments (id, rollout_id, device_id, phase, state, attempts, offered_at,
           failure_reason, from_version, rollback, updated, created)
         ${v.sql} ON CONFLICT (rollout_id, device_id) DO NOTHING RETURNING *`,
        v.params,
      );
      for (const r of rows) created.push(toDeployment(r));
    }
    return created;
  }

  /**
   * `save` for several deployments (each at most once), one statement per chunk, in id order:
   * concurrent writers then lock the rows they share in the same order. One deployment is one
   * plain `save` (SQLite's `UPDATE … FROM` measured at twice its cost per row).
   */
  async saveMany(list: readonly DeploymentRow[]): Promise<void> {
    if (list.length === 1) return this.save(list[0]!);
    for (const chunk of inChunks(sortedById(list))) {
      const v = valuesOf(
        ['TEXT', ...RECORD_TYPES],
        chunk.map((d) => [d.id, ...recordRow(d)]),
      );
      await this.sql.run(
        `UPDATE deployments SET phase = v.column2, state = v.column3, attempts = v.column4,
           offered_at = v.column5, failure_reason = v.column6, from_version = v.column7,
           rollback = v.column8, updated = v.column9
         FROM (${v.sql}) AS v WHERE deployments.id = v.column1`,
        v.params,
      );
    }
  }

  /** Devices in flight in another active rollout (the engine does not offer them meanwhile). */
  async busyDevices(exceptRolloutId: string): Promise<Set<string>> {
    const rows = await this.sql.all<{ device_id: string }>(
      `SELECT DISTINCT d.device_id FROM deployments d JOIN rollouts r ON r.id = d.rollout_id
       WHERE d.rollout_id != ? AND r.status IN ('scheduled','running','waiting','waiting-approval','soaking','paused')
         AND d.state IN ('offered','downloading','installing','installed','rebooting')`,
      [exceptRolloutId],
    );
    return new Set(rows.map((r) => r.device_id));
  }

  /** Releases being delivered right now. */
  async inFlightReleaseIds(): Promise<string[]> {
    const rows = await this.sql.all<{ release_id: string }>(
      `SELECT DISTINCT r.release_id FROM deployments d JOIN rollouts r ON r.id = d.rollout_id
       WHERE d.state IN ('offered','downloading','installing','installed','rebooting')`,
    );
    return rows.map((r) => r.release_id);
  }
}
