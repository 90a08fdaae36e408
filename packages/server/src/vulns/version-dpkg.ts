/**
 * Debian version ordering (deb-version(7)), as libdpkg's vercmp.c does it: epoch, then upstream
 * version, then Debian revision, each compared by `verrevcmp`. Within a part, runs of non-digits
 * compare character by character where `~` sorts before everything (even the end of the string),
 * letters before all other characters, and runs of digits compare as numbers.
 */

export interface DebianVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

export class VersionSyntaxError extends Error {
  constructor(
    readonly version: string,
    reason: string,
  ) {
    super(`version '${version}' has bad syntax: ${reason}`);
  }
}

/** Splits `[epoch:]upstream[-revision]`; refuses what dpkg refuses as an error (not mere warnings). */
export function parseDebianVersion(text: string): DebianVersion {
  const version = text.trim();
  if (version === '') throw new VersionSyntaxError(text, 'empty');
  if (/\s/.test(version)) throw new VersionSyntaxError(text, 'embedded space');
  const colon = version.indexOf(':');
  let epoch = 0;
  let rest = version;
  if (colon >= 0) {
    const e = version.slice(0, colon);
    if (!/^[0-9]+$/.test(e)) throw new VersionSyntaxError(text, 'epoch is not a number');
    epoch = Number(e);
    if (!Number.isSafeInteger(epoch) || epoch > 2147483647)
      throw new VersionSyntaxError(text, 'epoch is too big');
    rest = version.slice(colon + 1);
  }
  const hyphen = rest.lastIndexOf('-');
  const upstream = hyphen >= 0 ? rest.slice(0, hyphen) : rest;
  const revision = hyphen >= 0 ? rest.slice(hyphen + 1) : '';
  if (upstream === '') throw new VersionSyntaxError(text, 'empty upstream version');
  if (hyphen >= 0 && revision === '') throw new VersionSyntaxError(text, 'empty revision');
  return { epoch, upstream, revision };
}

const isDigit = (c: number) => c >= 48 && c <= 57;
const isAlpha = (c: number) => (c >= 65 && c <= 90) || (c >= 97 && c <= 122);

/** A character's weight: `~` < end of string and digits < letters < everything else. */
function order(c: number): number {
  if (Number.isNaN(c) || isDigit(c)) return 0;
  if (isAlpha(c)) return c;
  if (c === 126) return -1; // '~'
  return c + 256;
}

/** libdpkg's verrevcmp: negative, zero or positive like a comparator. */
export function verrevcmp(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let firstDiff = 0;
    while ((i < a.length && !isDigit(a.charCodeAt(i))) || (j < b.length && !isDigit(b.charCodeAt(j)))) {
      const ac = order(a.charCodeAt(i));
      const bc = order(b.charCodeAt(j));
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (a.charCodeAt(i) === 48) i++;
    while (b.charCodeAt(j) === 48) j++;
    while (isDigit(a.charCodeAt(i)) && isDigit(b.charCodeAt(j))) {
      if (!firstDiff) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (isDigit(a.charCodeAt(i))) return 1;
    if (isDigit(b.charCodeAt(j))) return -1;
    if (firstDiff) return firstDiff;
  }
  return 0;
}

export function compareParsedDebian(a: DebianVersion, b: DebianVersion): number {
  if (a.epoch !== b.epoch) return a.epoch > b.epoch ? 1 : -1;
  return Math.sign(verrevcmp(a.upstream, b.upstream)) || Math.sign(verrevcmp(a.revision, b.revision));
}

/** -1, 0 or 1, like `dpkg --compare-versions A lt|eq|gt B`. Throws VersionSyntaxError on bad syntax. */
export function compareDebianVersions(a: string, b: string): number {
  return compareParsedDebian(parseDebianVersion(a), parseDebianVersion(b));
}
