import { Gauge, type Registry } from 'prom-client';
import type { FleetStats } from '../store/fleet-stats.js';

export type FleetReader = Pick<
  FleetStats,
  'byStatus' | 'online' | 'byVersion' | 'releaseCreated' | 'imageAges'
>;

/**
 * Fleet gauges computed from the store when Prometheus scrapes (prom-client `collect`): a few
 * GROUP BY queries, so the cost does not grow with scrape frequency and nothing has to keep the
 * gauges in step with every device change. Each collect resets its gauge first, so a version
 * no device runs any more disappears instead of keeping its last value.
 */
export function registerFleetGauges(registry: Registry, fleet: FleetReader): void {
  const gauge = (name: string, help: string, labelNames: string[], collect: (g: Gauge) => Promise<void>) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      // prom-client awaits an async collect: the scrape waits for the store.
      async collect() {
        this.reset();
        await collect(this);
      },
    });
  gauge('flotilla_devices', 'devices by status', ['status'], async (g) => {
    for (const [status, n] of Object.entries(await fleet.byStatus())) g.set({ status }, n);
  });
  gauge('flotilla_devices_online', 'accepted devices online', [], async (g) => g.set(await fleet.online()));
  gauge('flotilla_devices_by_version', 'accepted devices by the version they run', ['version'], async (g) => {
    for (const r of await fleet.byVersion()) g.set({ version: r.version ?? 'none' }, r.count);
  });
  gauge(
    'flotilla_release_created_timestamp_seconds',
    'created time of each release manifest the server holds',
    ['version'],
    async (g) => {
      for (const r of await fleet.releaseCreated()) g.set({ version: r.version }, r.created / 1000);
    },
  );
  gauge(
    'flotilla_fleet_oldest_image_age_seconds',
    'age of the oldest release image an accepted device runs (0 when none is known)',
    [],
    async (g) => g.set((await fleet.imageAges())?.oldest ?? 0),
  );
  gauge(
    'flotilla_fleet_mean_image_age_seconds',
    'mean age over accepted devices of the release image each runs (0 when none is known)',
    [],
    async (g) => g.set((await fleet.imageAges())?.mean ?? 0),
  );
}
