import { DeltaError } from './errors.js';

/*
 * The diff stream (target − base, byte-wise) is mostly zeros with short non-zero runs where
 * embedded addresses changed. It is stored as two streams, which brotli compresses ~15 % better
 * than the raw bytes and ~10× faster:
 *   gaps:  for each non-zero run, the length of the zero run before it (big-endian base-128
 *          varint: high groups first, continuation bit 0x80 on all but the last byte), plus one
 *          for the trailing zero run when the stream ends in zeros;
 *   bytes: each non-zero run's bytes followed by a 0 terminator.
 */

export function encodeSparse(diff: Uint8Array): { gaps: Buffer; bytes: Buffer } {
  // First pass sizes both streams exactly, so a 2 MiB segment does not allocate 9 MiB of scratch.
  let runs = 0;
  let nonZero = 0;
  let gapBytes = 0;
  const gapLength = (run: number) =>
    run < 0x80 ? 1 : run < 0x4000 ? 2 : run < 0x200000 ? 3 : run < 0x10000000 ? 4 : 5;
  for (let i = 0; i < diff.length; ) {
    let j = i;
    while (j < diff.length && diff[j] === 0) j++;
    gapBytes += gapLength(j - i);
    i = j;
    if (i === diff.length) break;
    runs++;
    while (i < diff.length && diff[i] !== 0) {
      i++;
      nonZero++;
    }
  }
  const gaps = Buffer.allocUnsafe(gapBytes);
  const bytes = Buffer.allocUnsafe(nonZero + runs);
  let g = 0;
  let b = 0;
  const tmp = [0, 0, 0, 0, 0];
  let i = 0;
  while (i < diff.length) {
    let j = i;
    while (j < diff.length && diff[j] === 0) j++;
    let run = j - i;
    let n = 0;
    tmp[n++] = run & 0x7f;
    run = Math.floor(run / 128);
    while (run > 0) {
      tmp[n++] = (run & 0x7f) | 0x80;
      run = Math.floor(run / 128);
    }
    while (n > 0) gaps[g++] = tmp[--n]!;
    i = j;
    if (i === diff.length) break;
    while (i < diff.length && diff[i] !== 0) bytes[b++] = diff[i++]!;
    bytes[b++] = 0;
  }
  return { gaps, bytes };
}

const corrupt = (why: string) => new DeltaError('FLOTILLA_ERR_DELTA_PAYLOAD_CORRUPT', `diff stream: ${why}`);

/** Rebuilds exactly `length` diff bytes into `into`; both streams must be used up exactly. */
export function decodeSparse(gaps: Uint8Array, bytes: Uint8Array, length: number, into: Buffer): Buffer {
  if (length > into.length) throw corrupt('longer than a segment');
  const out = into.subarray(0, length).fill(0);
  let g = 0;
  let b = 0;
  let i = 0;
  while (i < length) {
    let run = 0;
    for (let k = 0; ; k++) {
      if (g >= gaps.length) throw corrupt('gaps end early');
      if (k >= 4) throw corrupt('gap too long');
      const v = gaps[g++]!;
      run = run * 128 + (v & 0x7f);
      if (v < 0x80) break;
    }
    i += run;
    if (i > length) throw corrupt('gap runs past the end');
    if (i === length) break;
    const start = i;
    for (;;) {
      if (b >= bytes.length) throw corrupt('bytes end early');
      const v = bytes[b++]!;
      if (v === 0) break;
      if (i >= length) throw corrupt('non-zero run past the end');
      out[i++] = v;
    }
    if (i === start) throw corrupt('empty non-zero run');
  }
  if (g !== gaps.length || b !== bytes.length) throw corrupt('unused bytes');
  return out;
}
