import { Gauge, type Registry } from 'prom-client';

export interface VulnMetricsSource {
  /** Per release: its findings by severity and the highest channel it is in. */
  releases(): Promise<{ version: string; channel: string; bySeverity: Record<string, number> }[]>;
  devicesExposed(): Promise<Record<string, Record<string, number>>>;
  prodFailures(): Promise<number>;
  records(): Promise<{ records: number; lastImportTs: number | null }>;
  clock(): number;
}

/** Scrape-time gauges of vulnerability data (read from the stored scans, never re-matched on scrape). */
export function registerVulnGauges(registry: Registry, source: VulnMetricsSource): void {
  new Gauge({
    name: 'flotilla_release_vulnerabilities',
    help: 'findings per release by severity (channel = the highest channel the release is in)',
    labelNames: ['version', 'channel', 'severity'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const r of await source.releases())
        for (const [severity, n] of Object.entries(r.bySeverity))
          this.set({ version: r.version, channel: r.channel, severity }, n);
    },
  });
  new Gauge({
    name: 'flotilla_devices_exposed',
    help: 'accepted devices running an image with at least one finding of this severity, by device channel',
    labelNames: ['severity', 'channel'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const [severity, byChannel] of Object.entries(await source.devicesExposed()))
        for (const [channel, n] of Object.entries(byChannel)) this.set({ severity, channel }, n);
    },
  });
  new Gauge({
    name: 'flotilla_policy_prod_failures',
    help: 'releases in prod that fail the prod policy with the vulnerability data loaded now',
    registers: [registry],
    async collect() {
      this.set(await source.prodFailures());
    },
  });
  new Gauge({
    name: 'flotilla_vulns_records',
    help: 'OSV records loaded',
    registers: [registry],
    async collect() {
      this.set((await source.records()).records);
    },
  });
  new Gauge({
    name: 'flotilla_vulns_data_age_seconds',
    help: 'seconds since the last vulnerability import (absent before the first)',
    registers: [registry],
    async collect() {
      this.reset();
      const t = (await source.records()).lastImportTs;
      if (t !== null) this.set((source.clock() - t) / 1000);
    },
  });
}
