import type { Db } from './db.js';
import type { DeviceStatus } from './repos/devices.js';

export const DEVICE_STATUSES: readonly DeviceStatus[] = ['pending', 'accepted', 'rejected', 'decommissioned'];

export interface FleetSummary {
  accepted: number;
  online: number;
  offline: number;
  pending: number;
  byStatus: Record<DeviceStatus, number>;
  byVersion: { version: string | null; count: number }[];
  byAgentState: { state: string | null; count: number }[];
  byHardware: { hardware: string | null; count: number }[];
}

/**
 * Whole-fleet counts in SQL (GROUP BY over the devices table, never a page of rows): the fleet
 * summary route and the scrape-time gauges read them. Online = accepted and connected; on an
 * external broker also seen within `offlineAfterMs` (`onlineSince` gives that bound, or null).
 */
export class FleetStats {
  private readonly s;

  constructor(
    db: Db,
    private readonly onlineSince: () => number | null,
    readonly now: () => number,
  ) {
    const accepted = `FROM devices WHERE status = 'accepted'`;
    this.s = {
      status: db.prepare<[], { k: DeviceStatus; n: number }>(
        'SELECT status AS k, COUNT(*) AS n FROM devices GROUP BY status',
      ),
      online: db.prepare<[number | null, number | null], { n: number }>(
        `SELECT COUNT(*) AS n ${accepted} AND online = 1 AND (? IS NULL OR last_seen >= ?)`,
      ),
      version: db.prepare<[], { k: string | null; n: number }>(
        `SELECT version AS k, COUNT(*) AS n ${accepted} GROUP BY version ORDER BY n DESC, k`,
      ),
      agentState: db.prepare<[], { k: string | null; n: number }>(
        `SELECT agent_state AS k, COUNT(*) AS n ${accepted} GROUP BY agent_state ORDER BY n DESC, k`,
      ),
      hardware: db.prepare<[], { k: string | null; n: number }>(
        `SELECT hardware AS k, COUNT(*) AS n ${accepted} GROUP BY hardware ORDER BY n DESC, k`,
      ),
      // One row per image the accepted devices run, with the manifest `created` of its release
      // (the newest release of that image when several share it; null when no release has it).
      images: db.prepare<[], { created: string | null; n: number }>(
        `SELECT (SELECT json_extract(r.manifest, '$.signed.created') FROM releases r
                  WHERE r.image_sha256 = d.image_sha256 ORDER BY r.created DESC LIMIT 1) AS created,
                COUNT(*) AS n
           FROM devices d WHERE d.status = 'accepted' AND d.image_sha256 IS NOT NULL GROUP BY d.image_sha256`,
      ),
      releases: db.prepare<[], { version: string; created: string | null }>(
        `SELECT version, json_extract(manifest, '$.signed.created') AS created FROM releases`,
      ),
    };
  }

  byStatus(): Record<DeviceStatus, number> {
    const out = Object.fromEntries(DEVICE_STATUSES.map((s) => [s, 0])) as Record<DeviceStatus, number>;
    for (const r of this.s.status.all()) out[r.k] = r.n;
    return out;
  }

  online(): number {
    const since = this.onlineSince();
    return this.s.online.get(since, since)?.n ?? 0;
  }

  byVersion(): { version: string | null; count: number }[] {
    return this.s.version.all().map((r) => ({ version: r.k, count: r.n }));
  }

  /** Manifest `created` (epoch ms) of every release the server holds. */
  releaseCreated(): { version: string; created: number }[] {
    return this.s.releases
      .all()
      .map((r) => ({ version: r.version, created: r.created ? Date.parse(r.created) : Number.NaN }))
      .filter((r) => Number.isFinite(r.created));
  }

  /** Age in seconds of the image each accepted device runs (devices on unknown images are left out). */
  imageAges(): { oldest: number; mean: number; devices: number } | null {
    const now = this.now();
    let devices = 0;
    let sum = 0;
    let oldest = 0;
    for (const r of this.s.images.all()) {
      const created = r.created ? Date.parse(r.created) : Number.NaN;
      if (!Number.isFinite(created)) continue;
      const age = Math.max(0, (now - created) / 1000);
      devices += r.n;
      sum += age * r.n;
      oldest = Math.max(oldest, age);
    }
    return devices === 0 ? null : { oldest, mean: sum / devices, devices };
  }

  summary(): FleetSummary {
    const byStatus = this.byStatus();
    const online = this.online();
    return {
      accepted: byStatus.accepted,
      online,
      offline: byStatus.accepted - online,
      pending: byStatus.pending,
      byStatus,
      byVersion: this.byVersion(),
      byAgentState: this.s.agentState.all().map((r) => ({ state: r.k, count: r.n })),
      byHardware: this.s.hardware.all().map((r) => ({ hardware: r.k, count: r.n })),
    };
  }
}
