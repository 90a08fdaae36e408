/**
 * A small seeded PRNG (mulberry32): fault injection must be reproducible, so every random
 * choice of the simulator (which devices get a fault, when the power is cut) comes from a seed.
 */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Integer in [min, max]. */
  int(min: number, max: number): number;
  /** A new independent generator derived from this one and a label (stable per label). */
  fork(label: string): Rng;
}

export function createRng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    fork: (label) => createRng((seed ^ hashString(label)) >>> 0),
  };
}

/** FNV-1a: a stable 32-bit hash of a label. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Picks `count` distinct indices of [0, n) (Fisher–Yates prefix). */
export function pickIndices(rng: Rng, n: number, count: number): number[] {
  const idx = Array.from({ length: n }, (_, i) => i);
  const k = Math.min(Math.max(0, count), n);
  for (let i = 0; i < k; i++) {
    const j = rng.int(i, n - 1);
    [idx[i], idx[j]] = [idx[j] as number, idx[i] as number];
  }
  return idx.slice(0, k).sort((x, y) => x - y);
}
