/**
 * CVSS v3.0 / v3.1 base score from a vector (FIRST's specification, section 7 formulas). Only the
 * eight base metrics matter here; temporal and environmental metrics in the vector are ignored.
 * Returns null for anything that is not a complete, well-formed v3 base vector.
 */

const WEIGHTS = {
  AV: { N: 0.85, A: 0.62, L: 0.55, P: 0.2 },
  AC: { L: 0.77, H: 0.44 },
  UI: { N: 0.85, R: 0.62 },
  CIA: { H: 0.56, L: 0.22, N: 0 },
} as const;

const BASE = ['AV', 'AC', 'PR', 'UI', 'S', 'C', 'I', 'A'] as const;

/** v3.1's Roundup: the smallest one-decimal number ≥ x, computed on integers (no 4.000001 → 4.1). */
function roundUp31(x: number): number {
  const i = Math.round(x * 100000);
  return i % 10000 === 0 ? i / 100000 : (Math.floor(i / 10000) + 1) / 10;
}
const roundUp30 = (x: number) => Math.ceil(x * 10) / 10;

export function cvss3BaseScore(vector: string): number | null {
  const parts = vector.trim().split('/');
  const head = /^CVSS:3\.([01])$/.exec(parts.shift() ?? '');
  if (!head) return null;
  const m: Record<string, string> = {};
  for (const p of parts) {
    const kv = /^([A-Za-z]+):([A-Za-z])$/.exec(p);
    if (!kv) return null;
    if (m[kv[1]!] !== undefined) return null; // a metric given twice is malformed
    m[kv[1]!] = kv[2]!;
  }
  if (BASE.some((k) => m[k] === undefined)) return null;
  const av = WEIGHTS.AV[m.AV as keyof typeof WEIGHTS.AV];
  const ac = WEIGHTS.AC[m.AC as keyof typeof WEIGHTS.AC];
  const ui = WEIGHTS.UI[m.UI as keyof typeof WEIGHTS.UI];
  const scope = m.S;
  if (scope !== 'U' && scope !== 'C') return null;
  const changed = scope === 'C';
  const pr = { N: 0.85, L: changed ? 0.68 : 0.62, H: changed ? 0.5 : 0.27 }[m.PR as 'N'];
  const [c, i, a] = [m.C, m.I, m.A].map((v) => WEIGHTS.CIA[v as keyof typeof WEIGHTS.CIA]);
  if ([av, ac, ui, pr, c, i, a].some((w) => w === undefined)) return null;
  const iss = 1 - (1 - c!) * (1 - i!) * (1 - a!);
  const impact = changed ? 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 : 6.42 * iss;
  const exploitability = 8.22 * av * ac * pr! * ui;
  if (impact <= 0) return 0;
  const roundUp = head[1] === '1' ? roundUp31 : roundUp30;
  return roundUp(Math.min((changed ? 1.08 : 1) * (impact + exploitability), 10));
}
