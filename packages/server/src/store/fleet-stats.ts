import type { DeviceStatus } from './repos/devices.js';
import type { Sql } from './sql.js';

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
    private readonly sql: Sql,
    private readonly onlineSince: () => number | null,
    readonly now: () => number,
  ) {
    const accepted = `FROM devices WHERE status = 'accepted'`;
    // The manifest's `created` (JSON text) is read differently per engine.
    const created = (col: string) =>
      sql.dialect === 'postgres'
        ? `(${col}::jsonb #>> '{signed,created}')`
        : `json_extract(${col}, '$.signed.created')`;
    // NULLS FIRST: SQLite's default; PostgreSQL's own puts NULL last.
    this.s = {
      status: 'SELECT status AS k, COUNT(*) AS n FROM devices GROUP BY status',
      online: `SELECT COUNT(*) AS n ${accepted} AND online = 1`,
      onlineSince: `SELECT COUNT(*) AS n ${accepted} AND online = 1 AND last_seen >= ?`,
      version: `SELECT version AS k, COUNT(*) AS n ${accepted} GROUP BY version ORDER BY n DESC, k NULLS FIRST`,
      agentState: `SELECT agent_state AS k, COUNT(*) AS n ${accepted} GROUP BY agent_state ORDER BY n DESC, k NULLS FIRST`,
      hardware: `SELECT hardware AS k, COUNT(*) AS n ${accepted} GROUP BY hardware ORDER BY n DESC, k NULLS FIRST`,
      // One row per image the accepted devices run, with the manifest `created` of its release
      // (the newest release of that image when several share it; null when no release has it).
      images: `SELECT (SELECT ${created('r.manifest')} FROM releases r
                  WHERE r.image_sha256 = d.image_sha256 ORDER BY r.created DESC LIMIT 1) AS created,
                COUNT(*) AS n
           FROM devices d WHERE d.status = 'accepted' AND d.image_sha256 IS NOT NULL GROUP BY d.image_sha256`,
      releases: `SELECT version, ${created('manifest')} AS created FROM releases`,
    };
  }

  private counts(sql: string): Promise<{ k: string | null; n: number }[]> {
    return this.sql.all(sql);
  }

  async byStatus(): Promise<Record<DeviceStatus, number>> {
    const out = Object.fromEntries(DEVICE_STATUSES.map((s) => [s, 0])) as Record<DeviceStatus, number>;
    for (const r of await this.counts(this.s.status)) out[r.k as DeviceStatus] = r.n;
    return out;
  }

  async online(): Promise<number> {
    const since = this.onlineSince();
    const r =
      since === null
        ? await this.sql.get<{ n: number }>(this.s.online)
        : await this.sql.get<{ n: number }>(this.s.onlineSince, [since]);
    return r?.n ?? 0;
  }

  async byVersion(): Promise<{ version: string | null; count: number }[]> {
    return (await this.counts(this.s.version)).map((r) => ({ version: r.k, count: r.n }));
  }

  /** Manifest `created` (epoch ms) of every release the server holds. */
  async releaseCreated(): Promise<{ version: string; created: number }[]> {
    return (await this.sql.all<{ version: string; created: string | null }>(this.s.releases))
      .map((r) => ({ version: r.version, created: r.created ? Date.parse(r.created) : Number.NaN }))
      .filter((r) => Number.isFinite(r.created));
  }

  /** Age in seconds of the image each accepted device runs (devices on unknown images are left out). */
  async imageAges(): Promise<{ oldest: number; mean: number; devices: number } | null> {
    const rows = await this.sql.all<{ created: string | null; n: number }>(this.s.images);
    const now = this.now();
    let devices = 0;
    let sum = 0;
    let oldest = 0;
    for (const r of rows) {
      const created = r.created ? Date.parse(r.created) : Number.NaN;
      if (!Number.isFinite(created)) continue;
      const age = Math.max(0, (now - created) / 1000);
      devices += r.n;
      sum += age * r.n;
      oldest = Math.max(oldest, age);
    }
    return devices === 0 ? null : { oldest, mean: sum / devices, devices };
  }

  async summary(): Promise<FleetSummary> {
    const byStatus = await this.byStatus();
    const online = await this.online();
    return {
      accepted: byStatus.accepted,
      online,
      offline: byStatus.accepted - online,
      pending: byStatus.pending,
      byStatus,
      byVersion: await this.byVersion(),
      byAgentState: (await this.counts(this.s.agentState)).map((r) => ({ state: r.k, count: r.n })),
      byHardware: (await this.counts(this.s.hardware)).map((r) => ({ hardware: r.k, count: r.n })),
    };
  }
}
