import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { zipSync } from 'fflate';

/**
 * TEST-ONLY vulnerability fixtures made in code (no file downloaded from a feed): OSV records in
 * the shapes osv.dev publishes for Debian and npm, zips of them, and a rootfs tarball whose dpkg
 * database names binary packages with their `Source:`.
 */

export interface OsvOptions {
  id: string;
  modified?: string;
  ecosystem?: string;
  name: string;
  introduced?: string;
  fixed?: string;
  lastAffected?: string;
  versions?: string[];
  cvss?: string;
  aliases?: string[];
  withdrawn?: string;
  rangeType?: 'ECOSYSTEM' | 'SEMVER';
}

export function osvRecord(o: OsvOptions): Record<string, unknown> {
  const events: Record<string, string>[] = [{ introduced: o.introduced ?? '0' }];
  if (o.fixed) events.push({ fixed: o.fixed });
  if (o.lastAffected) events.push({ last_affected: o.lastAffected });
  return {
    schema_version: '1.6.0',
    id: o.id,
    modified: o.modified ?? '2026-01-01T00:00:00Z',
    ...(o.withdrawn ? { withdrawn: o.withdrawn } : {}),
    aliases: o.aliases ?? [],
    summary: `TEST-ONLY ${o.id}`,
    ...(o.cvss ? { severity: [{ type: 'CVSS_V3', score: o.cvss }] } : {}),
    affected: [
      {
        package: { ecosystem: o.ecosystem ?? 'Debian:12', name: o.name },
        ranges: [{ type: o.rangeType ?? 'ECOSYSTEM', events }],
        ...(o.versions ? { versions: o.versions } : {}),
      },
    ],
  };
}

export const CRITICAL = 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H'; // 9.8
export const HIGH = 'CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H'; // 7.8
export const MEDIUM = 'CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N'; // 6.1

/** A zip of files: name → JSON value, or raw bytes / text for broken entries. */
export function osvZip(files: Record<string, unknown>): Buffer {
  const entries: Record<string, Uint8Array> = {};
  for (const [name, v] of Object.entries(files))
    entries[name] =
      v instanceof Uint8Array ? v : Buffer.from(typeof v === 'string' ? v : JSON.stringify(v), 'utf8');
  return Buffer.from(zipSync(entries, { level: 6 }));
}

export interface DpkgEntry {
  name: string;
  version: string;
  source?: string;
}

export function dpkgStatus(pkgs: DpkgEntry[]): string {
  return pkgs
    .map(
      (p) =>
        `Package: ${p.name}\nStatus: install ok installed\nArchitecture: amd64\n${p.source ? `Source: ${p.source}\n` : ''}Version: ${p.version}\nDescription: TEST-ONLY\n`,
    )
    .join('\n');
}

/** A rootfs tarball (Debian 12 os-release + dpkg status) for POST /releases/build?input=tar. */
export function rootfsTar(dir: string, pkgs: DpkgEntry[]): Buffer {
  const root = join(dir, 'rootfs');
  mkdirSync(join(root, 'var/lib/dpkg'), { recursive: true });
  mkdirSync(join(root, 'etc'), { recursive: true });
  writeFileSync(join(root, 'etc/os-release'), 'ID=debian\nVERSION_ID="12"\n');
  writeFileSync(join(root, 'var/lib/dpkg/status'), dpkgStatus(pkgs));
  const tar = join(dir, 'rootfs.tar');
  execFileSync('tar', ['-cf', tar, '-C', root, '--owner=0', '--group=0', '.']);
  return execFileSync('cat', [tar]);
}
