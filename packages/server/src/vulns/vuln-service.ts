import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import type { EventBus } from '../events/bus.js';
import type { ServerLimits } from '../limits.js';
import type { ReleaseScan } from '../store/repos/vulns.js';
import type { Store } from '../store/store.js';
import { VulnsError } from './errors.js';
import { VulnIndex } from './match.js';
import { readOsvZip } from './osv-archive.js';
import { parseOsvRecord, type VulnRecord } from './osv-record.js';
import { sbomPackages } from './sbom-packages.js';

export interface ImportResult {
  importId: number;
  files: number;
  added: number;
  replaced: number;
  unchanged: number;
  skipped: number;
  ecosystems: string[];
  rescanned: number;
}

/**
 * Vulnerability data and matching: imports OSV archives all-or-nothing, keeps one index of the
 * records in memory (rebuilt after an import), and scans release SBOMs on upload, after every
 * import and on demand. Scans are stored so gates and metrics read them without re-matching.
 */
export class VulnService {
  private index: VulnIndex | null = null;

  constructor(
    private readonly store: Store,
    private readonly artifacts: ArtifactStore,
    private readonly limits: ServerLimits,
    private readonly bus: EventBus,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Scans each new release as it lands (the upload has committed by then). */
  watch(): () => void {
    return this.bus.subscribe((e) => {
      if (e.type !== 'release.created') return;
      const version = String(e.data.version);
      this.scanRelease(version).catch((err: unknown) =>
        this.log.warn({ err, version }, 'vulnerability scan of a new release failed'),
      );
    });
  }

  async importArchive(
    path: string,
    actor: string,
    opts: { skipUnknownEcosystems: boolean },
  ): Promise<ImportResult> {
    const entries = await readOsvZip(path, this.limits);
    // Parse and check everything before writing anything: one bad file refuses the whole import.
    const byId = new Map<string, VulnRecord>();
    let skipped = 0;
    for (const e of entries) {
      const { record, skipped: s } = parseOsvRecord(e.name, e.bytes, opts);
      skipped += s;
      const prior = byId.get(record.id);
      if (!prior || prior.modified < record.modified) byId.set(record.id, record);
    }
    const ecosystems = [
      ...new Set([...byId.values()].flatMap((r) => r.affected.map((a) => a.ecosystem))),
    ].sort();
    const now = this.clock();
    const result = await this.store.tx(async (tx) => {
      let added = 0;
      let replaced = 0;
      let unchanged = 0;
      const fresh: VulnRecord[] = [];
      for (const r of byId.values()) {
        const stored = await tx.vulns.modifiedOf(r.id);
        if (stored === undefined) added++;
        else if (stored < r.modified) replaced++;
        else {
          unchanged++; // an older or equal copy never replaces a newer one
          continue;
        }
        fresh.push(r);
      }
      const importId = await tx.vulns.addImport({
        ts: now,
        actor,
        files: entries.length,
        added,
        replaced,
        unchanged,
        skipped,
        ecosystems,
      });
      for (const r of fresh) await tx.vulns.upsert(r, importId);
      await tx.audit.record(
        actor,
        'vulns.import',
        null,
        { importId, added, replaced, unchanged, skipped },
        now,
      );
      return { importId, files: entries.length, added, replaced, unchanged, skipped, ecosystems };
    });
    this.index = null;
    const rescanned = await this.scanAll();
    this.bus.emit('vulns.imported', { ...result, rescanned });
    return { ...result, rescanned };
  }

  async status() {
    const imports = await this.store.vulns.imports(1);
    const last = imports[0] ?? null;
    return {
      ...(await this.store.vulns.counts()),
      lastImport: last,
      ageMs: last ? this.clock() - last.ts : null,
    };
  }

  /** Every loaded record (withdrawn ones too), in id order: what `vulns list|show` read. */
  records(): Promise<VulnRecord[]> {
    return this.store.vulns.all();
  }

  private async currentIndex(): Promise<VulnIndex> {
    this.index ??= new VulnIndex(await this.store.vulns.all());
    return this.index;
  }

  /** Matches one release's SBOM against the records now loaded and stores the result. */
  async scanRelease(version: string): Promise<ReleaseScan> {
    const release = await this.store.releases.get(version);
    if (!release) throw new VulnsError('FLOTILLA_ERR_VULNS_SBOM_UNREADABLE', `no release ${version}`);
    if (!release.sbomSha256 || !this.artifacts.has(release.sbomSha256))
      throw new VulnsError('FLOTILLA_ERR_VULNS_SBOM_UNREADABLE', `release ${version} has no stored SBOM`);
    const packages = sbomPackages(await readFile(this.artifacts.pathOf(release.sbomSha256)));
    const findings = (await this.currentIndex()).match(packages);
    const scan: ReleaseScan = {
      releaseId: release.id,
      ts: this.clock(),
      importId: (await this.store.vulns.imports(1))[0]?.id ?? null,
      packages: packages.length,
      findings,
    };
    await this.store.vulns.saveScan(scan);
    return scan;
  }

  /** Re-scans every release (after an import); a release whose SBOM is unreadable is logged and skipped. */
  async scanAll(): Promise<number> {
    let n = 0;
    for (const r of await this.store.releases.list()) {
      try {
        await this.scanRelease(r.version);
        n++;
      } catch (err) {
        this.log.warn({ err, version: r.version }, 'vulnerability scan failed');
      }
    }
    return n;
  }

  /**
   * Findings across the images devices actually run, weighted by device count (from the stored
   * scans: an image no release describes is counted under `unknownImages`).
   */
  async fleetExposure() {
    const images = new Map<
      string,
      {
        version: string | null;
        devices: number;
        channels: Record<string, number>;
        bySeverity: Record<string, number>;
      }
    >();
    for (const row of await this.store.vulns.devicesByImage()) {
      let entry = images.get(row.image);
      if (!entry) {
        const release = await this.store.releases.byImage(row.image);
        const scan = release ? await this.store.vulns.scan(release.id) : undefined;
        const bySeverity: Record<string, number> = {};
        for (const f of scan?.findings ?? []) bySeverity[f.severity] = (bySeverity[f.severity] ?? 0) + 1;
        entry = { version: release?.version ?? null, devices: 0, channels: {}, bySeverity };
        images.set(row.image, entry);
      }
      entry.devices += row.n;
      entry.channels[row.channel] = (entry.channels[row.channel] ?? 0) + row.n;
    }
    const exposed: Record<string, Record<string, number>> = {};
    for (const e of images.values())
      for (const severity of Object.keys(e.bySeverity))
        for (const [channel, n] of Object.entries(e.channels)) {
          exposed[severity] ??= {};
          exposed[severity][channel] = (exposed[severity][channel] ?? 0) + n;
        }
    return {
      images: [...images.entries()]
        .map(([image, e]) => ({ image, ...e }))
        .sort(
          (a, b) =>
            (b.bySeverity.critical ?? 0) * b.devices - (a.bySeverity.critical ?? 0) * a.devices ||
            b.devices - a.devices,
        ),
      /** Devices running an image with at least one finding of the severity, by device channel. */
      devicesExposed: exposed,
    };
  }

  /** The release's findings against the records loaded now: the stored scan when current, else a fresh one. */
  async findings(version: string): Promise<ReleaseScan> {
    const scan = await this.store.vulns.scan(version);
    const latest = (await this.store.vulns.imports(1))[0]?.id ?? null;
    if (scan && scan.importId === latest) return scan;
    return this.scanRelease(version);
  }
}
