import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyDelta, readDeltaHeader } from '../src/index.js';
import { makeDelta, memoryBase, memorySink, roundTrip, seeded, sha256, trickle } from './helpers.js';

/** Edits that real image updates make: overwrite, insert, delete, move a block elsewhere. */
const edit = fc.oneof(
  fc.record({
    kind: fc.constant('replace' as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ maxLength: 300 }),
  }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ maxLength: 300 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), length: fc.nat({ max: 500 }) }),
  fc.record({
    kind: fc.constant('move' as const),
    from: fc.nat(),
    to: fc.nat(),
    length: fc.nat({ max: 2000 }),
  }),
  fc.record({ kind: fc.constant('shift' as const), at: fc.nat(), delta: fc.integer({ min: 1, max: 255 }) }),
);
type Edit = typeof edit extends fc.Arbitrary<infer T> ? T : never;

function applyEdits(base: Uint8Array, edits: Edit[]): Uint8Array {
  let t = Buffer.from(base);
  for (const e of edits) {
    const n = t.length;
    if (e.kind === 'replace') {
      const at = n ? e.at % n : 0;
      t = Buffer.concat([t.subarray(0, at), e.bytes, t.subarray(Math.min(n, at + e.bytes.length))]);
    } else if (e.kind === 'insert') {
      const at = n ? e.at % (n + 1) : 0;
      t = Buffer.concat([t.subarray(0, at), e.bytes, t.subarray(at)]);
    } else if (e.kind === 'delete') {
      const at = n ? e.at % n : 0;
      t = Buffer.concat([t.subarray(0, at), t.subarray(at + e.length)]);
    } else if (e.kind === 'move') {
      const from = n ? e.from % n : 0;
      const block = t.subarray(from, from + e.length);
      const rest = Buffer.concat([t.subarray(0, from), t.subarray(from + block.length)]);
      const to = rest.length ? e.to % (rest.length + 1) : 0;
      t = Buffer.concat([rest.subarray(0, to), block, rest.subarray(to)]);
    } else {
      // A relocated pointer: every 4th byte of a stretch grows by the same amount.
      const at = n ? e.at % n : 0;
      for (let i = at; i < Math.min(n, at + 4096); i += 4) t[i] = (t[i]! + e.delta) & 0xff;
    }
  }
  return t;
}

describe('round trip', () => {
  it('rebuilds any random target from any random base', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 3000 }),
        fc.uint8Array({ maxLength: 3000 }),
        async (base, target) => {
          const { out, stats } = await roundTrip(base, target);
          expect(out.equals(Buffer.from(target))).toBe(true);
          expect(stats.targetSha256).toBe(sha256(target));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('rebuilds targets made by inserts, deletes, moves, overwrites and pointer shifts of the base', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 40_000 }),
        fc.integer(),
        fc.array(edit, { maxLength: 12 }),
        async (size, seed, edits) => {
          const base = seeded(size, seed);
          const target = applyEdits(base, edits);
          const { out } = await roundTrip(base, target, { segmentSize: 64 * 1024 });
          expect(out.equals(Buffer.from(target))).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('handles empty base, empty target and both empty', async () => {
    const some = seeded(5000, 1);
    for (const [b, t] of [
      [Buffer.alloc(0), some],
      [some, Buffer.alloc(0)],
      [Buffer.alloc(0), Buffer.alloc(0)],
    ] as const) {
      const { out, sink } = await roundTrip(b, t);
      expect(out.equals(t)).toBe(true);
      expect(sink.committed).toBe(true);
    }
  });

  it('turns identical images into a delta of a few hundred bytes', async () => {
    const img = seeded(3 * 1024 * 1024 + 17, 7);
    const { out, delta } = await roundTrip(img, img, { segmentSize: 1024 * 1024 });
    expect(out.equals(img)).toBe(true);
    expect(delta.length).toBeLessThan(600);
  });

  it('carries a completely different target as literal bytes, barely larger than the target', async () => {
    const base = seeded(300_001, 1);
    const target = seeded(300_001, 2);
    const { out, delta } = await roundTrip(base, target, { segmentSize: 64 * 1024 });
    expect(out.equals(target)).toBe(true);
    expect(delta.length).toBeLessThan(target.length + 1024);
  });

  it('splits records across segments for sizes that are not a multiple of any block', async () => {
    const base = seeded(1_000_003, 3);
    const target = applyEdits(base, [
      { kind: 'insert', at: 65_535, bytes: seeded(1001, 4) },
      { kind: 'move', from: 300_007, to: 777_777, length: 99_991 },
      { kind: 'delete', at: 500_000, length: 13 },
    ]);
    const { out, delta } = await roundTrip(base, target, { segmentSize: 64 * 1024 });
    expect(out.equals(Buffer.from(target))).toBe(true);
    expect((await readDeltaHeader(delta)).segmentSize).toBe(64 * 1024);
    expect(delta.length).toBeLessThan(8000);
  });

  it('encodes relocated pointers as a sparse difference, far smaller than the change itself', async () => {
    const base = seeded(512 * 1024, 9);
    const target = Buffer.from(base);
    // Every 4th byte of the upper half moved by the same offset, as if a section was relocated.
    for (let i = 256 * 1024; i < target.length; i += 16) target[i] = (target[i]! + 0x20) & 0xff;
    const { out, delta } = await roundTrip(base, target, { quality: 11 });
    expect(out.equals(target)).toBe(true);
    expect(delta.length).toBeLessThan(2000);
  });

  it('streams the delta from tiny uneven chunks and hands the sink chunks of at most 1 MiB in order', async () => {
    const base = seeded(2_500_000, 5);
    const target = applyEdits(base, [{ kind: 'insert', at: 1_000_000, bytes: seeded(5000, 6) }]);
    const delta = await makeDelta(base, target, { segmentSize: 1024 * 1024 });
    const sink = memorySink();
    const phases = new Set<string>();
    await applyDelta({
      base: memoryBase(base),
      delta: trickle(delta, 13),
      target: sink,
      onProgress: (p) => phases.add(p.phase),
    });
    expect(sink.bytes().equals(Buffer.from(target))).toBe(true);
    expect(Math.max(...sink.chunks.map((c) => c.length))).toBeLessThanOrEqual(1024 * 1024);
    expect([...phases]).toEqual(['verify-base', 'apply']);
  });

  it('uses only the first baseSize bytes of a base that is larger (a slot bigger than its image)', async () => {
    const base = seeded(200_000, 11);
    const target = applyEdits(base, [{ kind: 'replace', at: 5, bytes: seeded(100, 12) }]);
    const delta = await makeDelta(base, target);
    const slot = Buffer.concat([base, seeded(50_000, 13)]);
    const sink = memorySink();
    await applyDelta({ base: memoryBase(slot), delta, target: sink });
    expect(sink.bytes().equals(Buffer.from(target))).toBe(true);
  });
});
