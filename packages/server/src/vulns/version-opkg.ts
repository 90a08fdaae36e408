import { compareParsedDebian, type DebianVersion, VersionSyntaxError } from './version-dpkg.js';

/**
 * opkg's ordering (libopkg pkg.c, `pkg_compare_versions`): the same epoch / `verrevcmp(version)` /
 * `verrevcmp(revision)` chain as dpkg, and the same character weights (`~` first, letters before
 * other characters). What differs is parsing: opkg reads the epoch with `strtoul`, so an epoch that
 * is not a number counts as 0 instead of being refused, and it accepts an empty upstream part.
 */
export function parseOpkgVersion(text: string): DebianVersion {
  const version = text.trim();
  if (version === '') throw new VersionSyntaxError(text, 'empty');
  const colon = version.indexOf(':');
  let epoch = 0;
  let rest = version;
  if (colon >= 0) {
    const digits = /^[0-9]*/.exec(version.slice(0, colon))![0];
    epoch = digits === '' ? 0 : Math.min(Number(digits), 2 ** 32 - 1);
    rest = version.slice(colon + 1);
  }
  const hyphen = rest.lastIndexOf('-');
  return hyphen >= 0
    ? { epoch, upstream: rest.slice(0, hyphen), revision: rest.slice(hyphen + 1) }
    : { epoch, upstream: rest, revision: '' };
}

export function compareOpkgVersions(a: string, b: string): number {
  return compareParsedDebian(parseOpkgVersion(a), parseOpkgVersion(b));
}
