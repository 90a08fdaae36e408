import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareDebianVersions, parseDebianVersion } from '../../src/vulns/version-dpkg.js';
import { compareNpmVersions } from '../../src/vulns/version-npm.js';
import { compareOpkgVersions } from '../../src/vulns/version-opkg.js';

const sign = (n: number) => Math.sign(n);

/** The reference: dpkg's own comparison, one process per pair (exit 0 = relation holds). */
function dpkgCompare(a: string, b: string): number {
  const run = (op: string) => spawnSync('dpkg', ['--compare-versions', a, op, b]).status === 0;
  if (run('lt')) return -1;
  if (run('eq')) return 0;
  if (!run('gt')) throw new Error(`dpkg says neither lt, eq nor gt for ${a} ${b}`);
  return 1;
}

const hasDpkg = spawnSync('dpkg', ['--version']).status === 0;

describe('dpkg version ordering', () => {
  it.each([
    ['1.0', '1.0', 0],
    ['1:1.0', '2.0', 1], // the epoch wins over everything
    ['0:1.0', '1.0', 0], // epoch 0 is the same as none
    ['1.0~rc1', '1.0', -1], // ~ sorts before the end of the string
    ['1.0~~', '1.0~', -1],
    ['1.0~', '1.0', -1],
    ['1.0-1', '1.0-1~bpo1', 1],
    ['1.0a', '1.0', 1], // a letter after the end
    ['1.0a', '1.0+', -1], // letters sort before non-letters
    ['1.0+dfsg', '1.0.1', -1], // '+' against '.': both non-letters, by code (+ < .)
    ['1.10', '1.9', 1], // digit runs compare as numbers
    ['1.010', '1.10', 0], // leading zeros do not count
    ['2.36-9', '2.36-9+deb12u4', -1], // a security update's revision is newer
    ['2.36-9+deb12u4', '2.36-10', -1],
    ['1.0', '1.0-0', 0], // a missing revision equals revision 0
    ['7.88.1-10+deb12u5', '7.88.1-10+deb12u12', -1],
  ])('%s vs %s → %d (and dpkg agrees)', (a, b, want) => {
    expect(compareDebianVersions(a, b)).toBe(want);
    expect(compareDebianVersions(b, a)).toBe(-want || 0);
    if (hasDpkg) expect(dpkgCompare(a, b)).toBe(want);
  });

  it('refuses versions dpkg refuses (bad epoch, empty upstream or revision)', () => {
    expect(() => parseDebianVersion('x:1.0')).toThrow(/epoch/);
    expect(() => parseDebianVersion('1:')).toThrow(/upstream/);
    expect(() => parseDebianVersion('1.0-')).toThrow(/revision/);
    expect(() => parseDebianVersion('')).toThrow(/empty/);
  });

  it.skipIf(!hasDpkg)('agrees with the real `dpkg --compare-versions` on random versions', () => {
    const part = (chars: string, max: number) =>
      fc.array(fc.constantFrom(...chars.split('')), { minLength: 0, maxLength: max }).map((a) => a.join(''));
    const version = fc
      .record({
        epoch: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
        lead: fc.constantFrom('0', '1', '2', '10'),
        upstream: part('0123456789..aAzZ+~', 6),
        revision: fc.option(
          part('0123456789.aZ+~', 4).map((r) => `1${r}`),
          { nil: undefined },
        ),
      })
      .map(
        (v) =>
          `${v.epoch === undefined ? '' : `${v.epoch}:`}${v.lead}${v.upstream}${v.revision === undefined ? '' : `-${v.revision}`}`,
      );
    fc.assert(
      fc.property(version, version, (a, b) => {
        expect(compareDebianVersions(a, b), `${a} vs ${b}`).toBe(dpkgCompare(a, b));
      }),
      { numRuns: 150, seed: 17 },
    );
  });

  it('is a total order: antisymmetric and transitive on random versions', () => {
    const v = fc.stringMatching(/^[0-9][0-9a-z.+~]{0,5}(-[0-9a-z.+~]{1,3})?$/);
    fc.assert(
      fc.property(v, v, v, (a, b, c) => {
        expect(sign(compareDebianVersions(a, b))).toBe(-sign(compareDebianVersions(b, a)));
        if (compareDebianVersions(a, b) <= 0 && compareDebianVersions(b, c) <= 0)
          expect(compareDebianVersions(a, c)).toBeLessThanOrEqual(0);
      }),
      { numRuns: 300, seed: 17 },
    );
  });
});

describe('opkg version ordering', () => {
  it('orders like dpkg on well-formed versions (same verrevcmp)', () => {
    for (const [a, b] of [
      ['1.0~rc1', '1.0'],
      ['1:0.9', '2.0'],
      ['2021-02-19-1', '2021-02-19-2'],
      ['1.2.3-r0', '1.2.3-r1'],
      ['1.0a', '1.0+'],
    ] as const)
      expect(compareOpkgVersions(a, b)).toBe(compareDebianVersions(a, b));
  });

  it('reads an epoch that is not a number as 0 like opkg (dpkg refuses it)', () => {
    expect(compareOpkgVersions('x:1.0', '1.0')).toBe(0);
    expect(() => compareDebianVersions('x:1.0', '1.0')).toThrow();
  });

  it('takes the revision after the last hyphen (OpenWrt date versions)', () => {
    expect(compareOpkgVersions('2023-01-01-abc-1', '2023-01-01-abc-2')).toBe(-1);
  });
});

describe('npm (semver) ordering', () => {
  it.each([
    ['1.0.0-rc.1', '1.0.0', -1], // a pre-release sorts before its release
    ['1.0.0-alpha', '1.0.0-alpha.1', -1],
    ['1.0.0-alpha.beta', '1.0.0-beta', -1],
    ['1.0.0-beta.2', '1.0.0-beta.11', -1], // numeric identifiers compare as numbers
    ['1.0.0-rc.1', '1.0.0-rc.1+build.5', 0], // build metadata is ignored
    ['v2.0.0', '2.0.0', 0],
    ['1.10.0', '1.9.0', 1],
  ])('%s vs %s → %d', (a, b, want) => {
    expect(compareNpmVersions(a, b)).toBe(want);
  });

  it('refuses a version that is not semver', () => {
    expect(() => compareNpmVersions('1.0', '1.0.0')).toThrow(/semver/);
  });
});
