import { describe, expect, it } from 'vitest';
import { VulnIndex } from '../../src/vulns/match.js';
import { parseOsvRecord } from '../../src/vulns/osv-record.js';
import type { InstalledPackage } from '../../src/vulns/sbom-packages.js';
import { sbomPackages } from '../../src/vulns/sbom-packages.js';
import { CRITICAL, type OsvOptions, osvRecord } from './fixtures.js';

const record = (o: OsvOptions) =>
  parseOsvRecord(`${o.id}.json`, Buffer.from(JSON.stringify(osvRecord(o))), { skipUnknownEcosystems: false })
    .record;

const deb = (
  name: string,
  version: string,
  source = name,
  release: string | null = '12',
): InstalledPackage => ({
  family: 'deb',
  name,
  version,
  purl: `pkg:deb/debian/${name}@${version}`,
  sourceName: source,
  sourceVersion: version,
  distro: 'debian',
  distroRelease: release,
});

const ids = (index: VulnIndex, pkgs: InstalledPackage[]) =>
  index.match(pkgs).map((f) => `${f.id}:${f.package}`);

describe('matching SBOM packages against OSV records', () => {
  it('matches a binary package through its source package (Debian records name sources)', () => {
    const index = new VulnIndex([
      record({ id: 'DSA-1', name: 'openssl', fixed: '3.0.13-1~deb12u1', cvss: CRITICAL }),
    ]);
    const found = index.match([
      deb('libssl3', '3.0.11-1~deb12u2', 'openssl'),
      deb('openssl', '3.0.11-1~deb12u2'),
    ]);
    expect(found.map((f) => [f.package, f.sourcePackage, f.fixed, f.severity])).toEqual([
      ['libssl3', 'openssl', '3.0.13-1~deb12u1', 'critical'],
      ['openssl', 'openssl', '3.0.13-1~deb12u1', 'critical'],
    ]);
  });

  it('does not flag the fixed version, nor a newer one', () => {
    const index = new VulnIndex([record({ id: 'DSA-1', name: 'openssl', fixed: '3.0.13-1~deb12u1' })]);
    expect(ids(index, [deb('openssl', '3.0.13-1~deb12u1')])).toEqual([]);
    expect(ids(index, [deb('openssl', '3.0.15-1~deb12u1')])).toEqual([]);
    // The backport-style ~ sorts before the plain revision: 3.0.13-1~deb12u1 < 3.0.13-1.
    expect(ids(index, [deb('openssl', '3.0.13-1~deb12u0')])).toEqual(['DSA-1:openssl']);
  });

  it('honours epochs: 1:1.0 is newer than a fix at 2.0', () => {
    const index = new VulnIndex([record({ id: 'DSA-2', name: 'busybox', fixed: '2.0' })]);
    expect(ids(index, [deb('busybox', '1:1.0-1')])).toEqual([]);
    expect(ids(index, [deb('busybox', '1.36.1-3')])).toEqual(['DSA-2:busybox']);
  });

  it('evaluates introduced / last_affected and explicit versions lists', () => {
    const index = new VulnIndex([
      record({ id: 'R-1', name: 'curl', introduced: '7.50.0', lastAffected: '7.88.1-10' }),
      record({ id: 'R-2', name: 'zlib', introduced: '9.9', versions: ['1.2.13.dfsg-1'] }),
    ]);
    expect(ids(index, [deb('curl', '7.49.0-1')])).toEqual([]);
    expect(ids(index, [deb('curl', '7.88.1-10')])).toEqual(['R-1:curl']);
    expect(ids(index, [deb('curl', '7.88.1-10+deb12u1')])).toEqual([]);
    expect(ids(index, [deb('zlib', '1.2.13.dfsg-1')])).toEqual(['R-2:zlib']);
    expect(ids(index, [deb('zlib', '1.2.13.dfsg-2')])).toEqual([]);
  });

  it('keeps Debian 11 records off a Debian 12 image, and Ubuntu records off Debian', () => {
    const index = new VulnIndex([
      record({ id: 'D11', name: 'bash', ecosystem: 'Debian:11', fixed: '9.9' }),
      record({ id: 'U22', name: 'bash', ecosystem: 'Ubuntu:22.04:LTS', fixed: '9.9' }),
      record({ id: 'DANY', name: 'bash', ecosystem: 'Debian', fixed: '9.9' }),
    ]);
    expect(ids(index, [deb('bash', '5.2.15-2')])).toEqual(['DANY:bash']);
  });

  it('matches npm packages with semver ranges, pre-releases before their release', () => {
    const index = new VulnIndex([
      record({
        id: 'GHSA-1',
        ecosystem: 'npm',
        rangeType: 'SEMVER',
        name: 'ws',
        introduced: '8.0.0',
        fixed: '8.17.1',
      }),
    ]);
    const npm = (version: string): InstalledPackage => ({
      family: 'npm',
      name: 'ws',
      version,
      purl: `pkg:npm/ws@${version}`,
      sourceName: 'ws',
      sourceVersion: version,
      distro: null,
      distroRelease: null,
    });
    expect(ids(index, [npm('8.17.0')])).toEqual(['GHSA-1:ws']);
    expect(ids(index, [npm('8.17.1-rc.1')])).toEqual(['GHSA-1:ws']);
    expect(ids(index, [npm('8.17.1')])).toEqual([]);
    expect(ids(index, [npm('7.5.10')])).toEqual([]);
  });

  it('ignores withdrawn records', () => {
    const index = new VulnIndex([
      record({ id: 'W', name: 'bash', fixed: '9', withdrawn: '2026-01-02T00:00:00Z' }),
    ]);
    expect(ids(index, [deb('bash', '5.2')])).toEqual([]);
  });

  it('reads source package, source version and release from a Flotilla SBOM', () => {
    const sbom = {
      bomFormat: 'CycloneDX',
      components: [
        {
          type: 'library',
          name: 'libc6',
          version: '2.36-9+deb12u4+b1',
          purl: 'pkg:deb/debian/libc6@2.36-9%2Bdeb12u4%2Bb1?arch=amd64&upstream=glibc',
          properties: [
            { name: 'flotilla:package-manager', value: 'deb' },
            { name: 'flotilla:source-package', value: 'glibc' },
            { name: 'flotilla:source-version', value: '2.36-9+deb12u4' },
            { name: 'flotilla:distro', value: 'debian-12' },
          ],
        },
        { type: 'file', name: '/etc/passwd' },
      ],
    };
    const [p] = sbomPackages(Buffer.from(JSON.stringify(sbom)));
    expect(p).toMatchObject({
      family: 'deb',
      name: 'libc6',
      sourceName: 'glibc',
      sourceVersion: '2.36-9+deb12u4',
      distroRelease: '12',
    });
  });
});
