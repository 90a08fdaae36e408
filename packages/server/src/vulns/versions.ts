import { compareDebianVersions } from './version-dpkg.js';
import { compareNpmVersions } from './version-npm.js';
import { compareOpkgVersions } from './version-opkg.js';

/** The package families an SBOM names (`flotilla:package-manager`) and their version orderings. */
export type PackageFamily = 'deb' | 'opkg' | 'npm';

export const COMPARATORS: Record<PackageFamily, (a: string, b: string) => number> = {
  deb: compareDebianVersions,
  opkg: compareOpkgVersions,
  npm: compareNpmVersions,
};
