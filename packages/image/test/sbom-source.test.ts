import { describe, expect, it } from 'vitest';
import { parseControlDb } from '../src/index.js';

// Debian's security feeds name *source* packages: the SBOM must carry each binary's source.
const STATUS = `Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl
Version: 3.0.11-1~deb12u2
Description: TEST-ONLY

Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc (2.36-9+deb12u4)
Version: 2.36-9+deb12u4+b1
Description: TEST-ONLY

Package: bash
Status: install ok installed
Architecture: amd64
Version: 5.2.15-2+b2
Description: TEST-ONLY
`;

describe('SBOM source packages (dpkg Source: field)', () => {
  it('records the source package and, when it differs, the source version', () => {
    const pkgs = parseControlDb(STATUS, 'deb', '/var/lib/dpkg/status', 'debian', '12');
    expect(pkgs.map((p) => [p.name, p.sourceName, p.sourceVersion, p.distro, p.purl])).toEqual([
      [
        'libssl3',
        'openssl',
        undefined,
        'debian-12',
        'pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&upstream=openssl',
      ],
      [
        'libc6',
        'glibc',
        '2.36-9+deb12u4',
        'debian-12',
        'pkg:deb/debian/libc6@2.36-9%2Bdeb12u4%2Bb1?arch=amd64&upstream=glibc',
      ],
      ['bash', undefined, undefined, 'debian-12', 'pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64'],
    ]);
  });
});
