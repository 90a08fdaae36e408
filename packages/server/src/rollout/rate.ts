import type { RolloutPolicy } from './policy.js';
import type { RolloutRuntime } from './types.js';

export const RATE_WINDOW_MS = 60_000;

/**
 * Offers allowed per minute now, or null without a rate limit. Exponential (AWS IoT Jobs):
 * base × factor^k where k counts how many times the criterion (devices notified, or devices
 * healthy) reached another multiple of N; capped by maxPerMinute.
 */
export function ratePerMinute(
  policy: RolloutPolicy,
  counts: { notified: number; succeeded: number },
): number | null {
  const rate = policy.rate;
  if (!rate) return null;
  if (rate.kind === 'constant') return rate.perMinute;
  const criterion = rate.increaseAfter;
  const k =
    'notified' in criterion
      ? Math.floor(counts.notified / criterion.notified)
      : Math.floor(counts.succeeded / criterion.succeeded);
  const max = rate.maxPerMinute ?? 1000;
  // log-space check keeps factor^k from overflowing on huge k
  if (k * Math.log(rate.incrementFactor) >= Math.log(max / rate.basePerMinute)) return max;
  // the epsilon keeps 10 × 1.1² = 12.100000000000001 and 11.999999999 from rounding the wrong way
  return Math.min(max, Math.floor(rate.basePerMinute * rate.incrementFactor ** k + 1e-9));
}

/** Offers still allowed in the current one-minute window. */
export function rateAllowance(
  perMinute: number | null,
  window: RolloutRuntime['rateWindow'],
  now: number,
): number {
  if (perMinute === null) return Number.POSITIVE_INFINITY;
  if (!window || now - window.start >= RATE_WINDOW_MS || now < window.start) return perMinute;
  return Math.max(0, perMinute - window.count);
}

/** The window after one more offer at `now`. */
export function countOffer(window: RolloutRuntime['rateWindow'], now: number): RolloutRuntime['rateWindow'] {
  if (!window || now - window.start >= RATE_WINDOW_MS || now < window.start) return { start: now, count: 1 };
  return { start: window.start, count: window.count + 1 };
}
