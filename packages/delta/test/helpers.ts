import { createHash, randomBytes } from 'node:crypto';
import {
  type ApplyStats,
  applyDelta,
  type BaseReader,
  type DeltaApplyTarget,
  type EncodeOptions,
  encodeDelta,
} from '../src/index.js';

export const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Encodes in memory (quality 5 by default keeps property tests quick; the format is the same). */
export async function makeDelta(
  base: Uint8Array,
  target: Uint8Array,
  opts: EncodeOptions = {},
): Promise<Buffer> {
  const parts: Buffer[] = [];
  await encodeDelta(
    base,
    target,
    async (c) => {
      parts.push(Buffer.from(c));
    },
    { quality: 5, ...opts },
  );
  return Buffer.concat(parts);
}

/** A BaseReader over bytes, counting reads (the real one is a file or block device). */
export function memoryBase(bytes: Uint8Array): BaseReader & { reads: number } {
  const r = {
    reads: 0,
    async read(buffer: Uint8Array, offset: number, length: number, position: number) {
      r.reads++;
      const n = Math.max(0, Math.min(length, bytes.length - position));
      buffer.set(bytes.subarray(position, position + n), offset);
      return n;
    },
  };
  return r;
}

/** A sink that records what the decoder did to it. */
export function memorySink(): DeltaApplyTarget & {
  chunks: Buffer[];
  begun: boolean;
  committed: boolean;
  aborted: boolean;
  bytes(): Buffer;
} {
  const s = {
    chunks: [] as Buffer[],
    begun: false,
    committed: false,
    aborted: false,
    async begin() {
      s.begun = true;
    },
    async write(chunk: Buffer) {
      if (s.committed || s.aborted) throw new Error('write after the end');
      s.chunks.push(Buffer.from(chunk));
    },
    async commit() {
      s.committed = true;
    },
    async abort() {
      s.aborted = true;
    },
    bytes: () => Buffer.concat(s.chunks),
  };
  return s;
}

/** Yields the bytes in small uneven pieces, like a slow network. */
export async function* trickle(bytes: Uint8Array, maxPiece = 7): AsyncGenerator<Uint8Array> {
  let at = 0;
  let i = 0;
  while (at < bytes.length) {
    const n = 1 + (((i++ * 2654435761) >>> 0) % maxPiece);
    yield bytes.subarray(at, at + n);
    at += n;
  }
}

export async function roundTrip(
  base: Uint8Array,
  target: Uint8Array,
  opts: EncodeOptions = {},
): Promise<{ delta: Buffer; out: Buffer; stats: ApplyStats; sink: ReturnType<typeof memorySink> }> {
  const delta = await makeDelta(base, target, opts);
  const sink = memorySink();
  const stats = await applyDelta({ base: memoryBase(base), delta, target: sink });
  return { delta, out: sink.bytes(), stats, sink };
}

export const random = (n: number) => randomBytes(n);

/** A deterministic pseudo-random buffer (tests that compare sizes must not depend on luck). */
export function seeded(n: number, seed: number): Buffer<ArrayBuffer> {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}
