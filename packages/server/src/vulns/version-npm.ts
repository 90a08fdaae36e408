import semver from 'semver';
import { VersionSyntaxError } from './version-dpkg.js';

/**
 * npm versions are SemVer 2.0 (node-semver, the library npm itself uses): pre-releases sort before
 * their release (`1.0.0-rc.1 < 1.0.0`), build metadata is ignored. A leading `v` or `=` is
 * accepted as npm does (loose parsing); anything else that is not SemVer is a syntax error.
 */
export function compareNpmVersions(a: string, b: string): number {
  const pa = semver.parse(a, { loose: true });
  const pb = semver.parse(b, { loose: true });
  if (!pa) throw new VersionSyntaxError(a, 'not a semver version');
  if (!pb) throw new VersionSyntaxError(b, 'not a semver version');
  return semver.compare(pa, pb);
}
