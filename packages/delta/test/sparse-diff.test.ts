import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeSparse, encodeSparse } from '../src/sparse-diff.js';

/** Diff-like bytes: mostly zeros with short non-zero runs, and long runs past varint boundaries. */
const sparse = fc
  .array(
    fc.oneof(
      fc.nat({ max: 300 }).map((n) => new Uint8Array(n)),
      fc.constantFrom(0x7f, 0x80, 0x3fff, 0x4000, 0x200000).map((n) => new Uint8Array(n)),
      fc.uint8Array({ minLength: 1, maxLength: 6 }),
    ),
    { maxLength: 40 },
  )
  .map((parts) => Buffer.concat(parts));

describe('sparse diff streams', () => {
  it('rebuild exactly the diff they were made from', () => {
    fc.assert(
      fc.property(sparse, (diff) => {
        const { gaps, bytes } = encodeSparse(diff);
        const out = decodeSparse(gaps, bytes, diff.length, Buffer.alloc(diff.length + 5, 0xee));
        expect(out.equals(diff)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it('reject streams that are cut, padded or claim another length', () => {
    const diff = Buffer.from([0, 0, 5, 6, 0, 0, 0, 7, 0]);
    const { gaps, bytes } = encodeSparse(diff);
    const into = Buffer.alloc(64);
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        return (err as { code?: string }).code;
      }
      return 'no error';
    };
    const bad = 'FLOTILLA_ERR_DELTA_PAYLOAD_CORRUPT';
    expect(code(() => decodeSparse(gaps.subarray(1), bytes, diff.length, into))).toBe(bad);
    expect(code(() => decodeSparse(gaps, bytes.subarray(0, bytes.length - 1), diff.length, into))).toBe(bad);
    expect(code(() => decodeSparse(Buffer.concat([gaps, Buffer.from([1])]), bytes, diff.length, into))).toBe(
      bad,
    );
    expect(code(() => decodeSparse(gaps, bytes, diff.length - 1, into))).toBe(bad);
    expect(code(() => decodeSparse(gaps, bytes, diff.length + 1, into))).toBe(bad);
    expect(code(() => decodeSparse(gaps, bytes, 100, into))).toBe(bad);
  });
});
