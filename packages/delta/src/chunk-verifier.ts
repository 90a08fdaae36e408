import { createHash } from 'node:crypto';
import type { DeltaApplyTarget } from './apply-target.js';
import { DeltaError } from './errors.js';

/** Largest manifest chunk the verifier buffers (it holds one chunk at a time). */
const MAX_CHUNK = 16 * 1024 * 1024;

export interface ChunkList {
  /** Bytes per chunk of the release manifest (the last chunk may be shorter). */
  chunkSize: number;
  /** sha256 (hex) of each chunk, in order. */
  chunkHashes: readonly string[];
}

/**
 * Wraps a sink so every chunk of the signed release manifest is hashed and compared *before* it
 * reaches the slot: a bad delta or base fails at the first wrong chunk and never writes it.
 * The whole-image hash is still checked by `applyDelta` before `commit`.
 */
export function verifyChunks(inner: DeltaApplyTarget, chunks: ChunkList): DeltaApplyTarget {
  const { chunkSize, chunkHashes } = chunks;
  if (!Number.isInteger(chunkSize) || chunkSize <= 0 || chunkSize > MAX_CHUNK) {
    throw new DeltaError('FLOTILLA_ERR_DELTA_BAD_ARGUMENT', `chunkSize ${chunkSize}`);
  }
  const buf = Buffer.allocUnsafe(chunkSize);
  let used = 0;
  let index = 0;
  const emit = async (): Promise<void> => {
    const want = chunkHashes[index];
    const got = createHash('sha256').update(buf.subarray(0, used)).digest('hex');
    if (want === undefined || got !== want.toLowerCase()) {
      throw new DeltaError(
        'FLOTILLA_ERR_DELTA_TARGET_MISMATCH',
        want === undefined
          ? `output has more than ${chunkHashes.length} chunks`
          : `chunk ${index} sha256 ${got}, manifest says ${want}`,
        { details: { chunk: index } },
      );
    }
    // The inner sink may keep what it gets; `buf` is reused, so hand it a copy.
    await inner.write(Buffer.from(buf.subarray(0, used)));
    index++;
    used = 0;
  };
  return {
    async begin(info) {
      const expected = Math.ceil(info.targetSize / chunkSize);
      if (expected !== chunkHashes.length) {
        throw new DeltaError(
          'FLOTILLA_ERR_DELTA_TARGET_MISMATCH',
          `delta makes ${info.targetSize} bytes = ${expected} chunks, manifest lists ${chunkHashes.length}`,
        );
      }
      await inner.begin?.(info);
    },
    async write(chunk) {
      let at = 0;
      while (at < chunk.length) {
        const n = Math.min(chunk.length - at, chunkSize - used);
        chunk.copy(buf, used, at, at + n);
        used += n;
        at += n;
        if (used === chunkSize) await emit();
      }
    },
    async commit() {
      if (used > 0) await emit();
      if (index !== chunkHashes.length) {
        throw new DeltaError(
          'FLOTILLA_ERR_DELTA_TARGET_MISMATCH',
          `output has ${index} of ${chunkHashes.length} chunks`,
        );
      }
      await inner.commit();
    },
    abort: (reason) => inner.abort(reason),
  };
}
