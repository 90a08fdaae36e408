import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyDelta, isDeltaError, readDeltaHeader } from '../src/index.js';
import { refreshChecksums } from './forge.js';
import { makeDelta, memoryBase, memorySink, seeded, sha256 } from './helpers.js';

const LONG = process.env.FLOTILLA_LONG === '1';

const base = seeded(200_000, 31);
const target = Buffer.concat([
  base.subarray(0, 70_000),
  seeded(3000, 32),
  base.subarray(60_000, 150_000),
  base.subarray(0, 20_000),
]);
for (let i = 100_000; i < 120_000; i += 8) target[i] = (target[i]! + 3) & 0xff;

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.nat({ max: 255 }) }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), bytes: fc.uint8Array({ maxLength: 64 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), length: fc.nat({ max: 200 }) }),
  fc.record({ kind: fc.constant('u32' as const), at: fc.nat(), value: fc.nat() }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

function mutate(delta: Buffer, ms: Mutation[], fix: boolean): Buffer {
  let d = Buffer.from(delta);
  for (const m of ms) {
    if (d.length === 0) break;
    const at = m.at % d.length;
    if (m.kind === 'flip') d[at] = d[at]! ^ (1 << m.bit);
    else if (m.kind === 'set') d[at] = m.value;
    else if (m.kind === 'splice') d = Buffer.concat([d.subarray(0, at), m.bytes, d.subarray(at)]);
    else if (m.kind === 'cut') d = Buffer.concat([d.subarray(0, at), d.subarray(at + m.length)]);
    else if (at + 4 <= d.length) d.writeUInt32LE(m.value >>> 0, at);
  }
  // Recomputing checksums lets mutations reach the parser, decompressor and record checks.
  return fix ? refreshChecksums(d) : d;
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`apply hung for ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

describe('fuzzing mutated deltas', () => {
  it(
    'never crashes, hangs or leaks: each mutated delta either rebuilds its promised target or fails with a delta error',
    async () => {
      const delta = await makeDelta(base, target, { segmentSize: 64 * 1024 });
      const before = process.memoryUsage();
      let peak = 0;
      let failures = 0;
      let successes = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(mutation, { minLength: 1, maxLength: 4 }),
          fc.boolean(),
          async (ms, fix) => {
            const d = mutate(delta, ms, fix);
            const sink = memorySink();
            try {
              await withTimeout(applyDelta({ base: memoryBase(base), delta: d, target: sink }), 10_000);
              // Success is only allowed when the output is exactly what the (mutated) header promises.
              expect(sha256(sink.bytes())).toBe((await readDeltaHeader(d)).targetSha256);
              expect(sink.committed).toBe(true);
              successes++;
            } catch (err) {
              if (!isDeltaError(err)) throw err;
              expect(sink.committed).toBe(false);
              failures++;
            }
            const m = process.memoryUsage();
            peak = Math.max(peak, m.arrayBuffers + m.heapUsed);
          },
        ),
        { numRuns: LONG ? 20_000 : 300 },
      );
      expect(failures).toBeGreaterThan(0);
      const grown = peak - (before.arrayBuffers + before.heapUsed);
      expect(grown).toBeLessThan(200 * 1024 * 1024);
      expect(successes + failures).toBe(LONG ? 20_000 : 300);
    },
    LONG ? 3_600_000 : 120_000,
  );
});
