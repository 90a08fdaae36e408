import { randomBytes } from 'node:crypto';
import type { DeploymentRecord, DeploymentState, RollbackRecord } from '../../rollout/index.js';
import type { Db } from '../db.js';

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

/** Offers to a device name the deployment; a rollback offer of the same deployment adds this suffix. */
export const ROLLBACK_SUFFIX = '-rb';

/** One device's part in one rollout (the engine's DeploymentRecord plus ids). */
export class DeploymentsRepo {
  private readonly s;

  constructor(db: Db) {
    this.s = {
      insert: db.prepare(
        `INSERT INTO deployments (id, rollout_id, device_id, phase, state, attempts, from_version, created, updated)
         VALUES (@id, @rolloutId, @deviceId, @phase, 'pending', 0, @fromVersion, @now, @now)
         ON CONFLICT (rollout_id, device_id) DO NOTHING`,
      ),
      get: db.prepare<[string], Row>('SELECT * FROM deployments WHERE id = ?'),
      byDevice: db.prepare<[string, string], Row>(
        'SELECT * FROM deployments WHERE rollout_id = ? AND device_id = ?',
      ),
      forRollout: db.prepare<[string], Row>(
        'SELECT * FROM deployments WHERE rollout_id = ? ORDER BY phase, device_id',
      ),
      forDevice: db.prepare<[string], Row>(
        'SELECT * FROM deployments WHERE device_id = ? ORDER BY created DESC',
      ),
      update: db.prepare(
        `UPDATE deployments SET phase = @phase, state = @state, attempts = @attempts, offered_at = @offeredAt,
           failure_reason = @failureReason, from_version = @fromVersion, rollback = @rollback, updated = @updatedAt
         WHERE id = @id`,
      ),
      busyDevices: db.prepare<[string], { device_id: string }>(
        `SELECT DISTINCT d.device_id FROM deployments d JOIN rollouts r ON r.id = d.rollout_id
         WHERE d.rollout_id != ? AND r.status IN ('scheduled','running','waiting','waiting-approval','soaking','paused')
           AND d.state IN ('offered','downloading','installing','installed','rebooting')`,
      ),
      releasesOnDevices: db.prepare<[], { release_id: string }>(
        `SELECT DISTINCT r.release_id FROM deployments d JOIN rollouts r ON r.id = d.rollout_id
         WHERE d.state IN ('offered','downloading','installing','installed','rebooting')`,
      ),
    };
  }

  assign(
    rolloutId: string,
    deviceId: string,
    phase: number,
    fromVersion: string | null,
    now: number,
  ): string {
    const id = `dep_${randomBytes(8).toString('hex')}`;
    this.s.insert.run({ id, rolloutId, deviceId, phase, fromVersion, now });
    return this.s.byDevice.get(rolloutId, deviceId)!.id;
  }

  get(id: string): DeploymentRow | undefined {
    const r = this.s.get.get(id);
    return r ? toDeployment(r) : undefined;
  }

  find(rolloutId: string, deviceId: string): DeploymentRow | undefined {
    const r = this.s.byDevice.get(rolloutId, deviceId);
    return r ? toDeployment(r) : undefined;
  }

  forRollout(rolloutId: string): DeploymentRow[] {
    return this.s.forRollout.all(rolloutId).map(toDeployment);
  }

  forDevice(deviceId: string): DeploymentRow[] {
    return this.s.forDevice.all(deviceId).map(toDeployment);
  }

  save(d: DeploymentRow): void {
    this.s.update.run({
      id: d.id,
      phase: d.phase,
      state: d.state,
      attempts: d.attempts,
      offeredAt: d.offeredAt,
      failureReason: d.failureReason,
      fromVersion: d.fromVersion,
      rollback: d.rollback ? JSON.stringify(d.rollback) : null,
      updatedAt: d.updatedAt,
    });
  }

  /** Devices in flight in another active rollout (the engine does not offer them meanwhile). */
  busyDevices(exceptRolloutId: string): Set<string> {
    return new Set(this.s.busyDevices.all(exceptRolloutId).map((r) => r.device_id));
  }

  /** Releases being delivered right now. */
  inFlightReleaseIds(): string[] {
    return this.s.releasesOnDevices.all().map((r) => r.release_id);
  }
}
