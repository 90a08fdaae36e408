import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalize, parseJson } from '../src/index.js';

const canonicalValue = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    fc.maxSafeInteger().filter((n) => !Object.is(n, -0)),
    fc.string({ unit: 'grapheme' }),
    fc.array(tie('value'), { maxLength: 5 }),
    fc.dictionary(fc.string({ unit: 'grapheme', maxLength: 8 }), tie('value'), { maxKeys: 5 }),
  ),
})).value;

describe('canonical JSON', () => {
  it('round-trips: parse(canonicalize(v)) canonicalizes to the same text', () => {
    fc.assert(
      fc.property(canonicalValue, (v) => {
        const text = canonicalize(v);
        expect(canonicalize(parseJson(text))).toBe(text);
        expect(parseJson(text)).toEqual(JSON.parse(text));
      }),
      { numRuns: 500 },
    );
  });

  it('sorts keys and ignores insertion order', () => {
    expect(canonicalize({ b: 1, a: [true, null, 'x'] })).toBe('{"a":[true,null,"x"],"b":1}');
    expect(canonicalize({ a: 1, b: 2 })).toBe(canonicalize({ b: 2, a: 1 }));
  });

  it('refuses floats, NaN, -0 and unsafe integers so no two implementations can disagree', () => {
    for (const bad of [1.5, Number.NaN, Number.POSITIVE_INFINITY, -0, 2 ** 60]) {
      expect(() => canonicalize({ n: bad })).toThrow(
        expect.objectContaining({ code: 'FLOTILLA_ERR_NOT_CANONICAL' }),
      );
    }
  });

  it('refuses lone surrogates and non-plain objects', () => {
    expect(() => canonicalize('\ud800')).toThrow(
      expect.objectContaining({ code: 'FLOTILLA_ERR_NOT_CANONICAL' }),
    );
    expect(() => canonicalize(new Date())).toThrow(
      expect.objectContaining({ code: 'FLOTILLA_ERR_NOT_CANONICAL' }),
    );
  });

  it('encodes non-ASCII as UTF-8 text, not escapes', () => {
    expect(canonicalize({ name: 'Zürich ✓' })).toBe('{"name":"Zürich ✓"}');
  });
});

describe('strict JSON parser', () => {
  it('rejects duplicate keys (two parsers could read different values from one signature)', () => {
    expect(() => parseJson('{"version":"1.0.0","version":"9.9.9"}')).toThrow(
      expect.objectContaining({ code: 'FLOTILLA_ERR_JSON_DUPLICATE_KEY' }),
    );
  });

  it('rejects oversized documents before parsing them', () => {
    const big = `"${'a'.repeat(2000)}"`;
    expect(() => parseJson(big, { maxBytes: 1000 })).toThrow(
      expect.objectContaining({ code: 'FLOTILLA_ERR_JSON_TOO_LARGE' }),
    );
    expect(() => parseJson(new TextEncoder().encode(big), { maxBytes: 1000 })).toThrow(
      expect.objectContaining({ code: 'FLOTILLA_ERR_JSON_TOO_LARGE' }),
    );
  });

  it('rejects deeply nested JSON without overflowing the stack', () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    expect(() => parseJson(deep, { maxBytes: 1_000_000 })).toThrow(
      expect.objectContaining({ code: 'FLOTILLA_ERR_JSON_TOO_DEEP' }),
    );
  });

  it('rejects malformed input with an offset', () => {
    for (const bad of ['', '{', '{"a":}', '[1,]', '01', '"\\x"', 'nul', '{"a":1}x', '"\u0001"']) {
      expect(() => parseJson(bad)).toThrow(expect.objectContaining({ code: 'FLOTILLA_ERR_JSON_MALFORMED' }));
    }
  });

  it('rejects invalid UTF-8 bytes', () => {
    expect(() => parseJson(new Uint8Array([0x22, 0xff, 0x22]))).toThrow(
      expect.objectContaining({ code: 'FLOTILLA_ERR_JSON_MALFORMED' }),
    );
  });

  it('keeps __proto__ as plain data, never as a prototype', () => {
    const v = parseJson('{"__proto__":{"polluted":true}}') as Record<string, unknown>;
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(Object.keys(v)).toEqual(['__proto__']);
  });
});
