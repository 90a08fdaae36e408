/**
 * Semantic-version precedence (semver.org §11): major.minor.patch numerically, a pre-release
 * sorts before its release, pre-release identifiers compare numerically when both are numbers,
 * build metadata is ignored. Release versions on a server are SemVer (the manifest schema says so).
 */
export function compareVersions(a: string, b: string): number {
  const [coreA, preA] = split(a);
  const [coreB, preB] = split(b);
  for (let i = 0; i < 3; i++) {
    const d = (coreA[i] ?? 0) - (coreB[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  if (preA === null || preB === null) return preA === preB ? 0 : preA === null ? 1 : -1;
  const idsA = preA.split('.');
  const idsB = preB.split('.');
  for (let i = 0; i < Math.max(idsA.length, idsB.length); i++) {
    const x = idsA[i];
    const y = idsB[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const nx = /^\d+$/.test(x);
    const ny = /^\d+$/.test(y);
    if (nx && ny) {
      const d = Number(x) - Number(y);
      if (d !== 0) return Math.sign(d);
    } else if (nx !== ny) return nx ? -1 : 1;
    else if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

function split(v: string): [number[], string | null] {
  const noBuild = v.split('+', 1)[0] ?? '';
  const dash = noBuild.indexOf('-');
  const core = dash < 0 ? noBuild : noBuild.slice(0, dash);
  return [core.split('.').map((n) => Number(n) || 0), dash < 0 ? null : noBuild.slice(dash + 1)];
}
