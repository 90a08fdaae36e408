import { createHash } from 'node:crypto';
import type { ImageDescriptor } from '@flotilla/protocol';
import type { SlotDevice } from './slot-device.js';

export interface SlotHashResult {
  sha256: string;
  /** Index of the first chunk whose hash differs from the manifest, or null when all match. */
  firstBadChunk: number | null;
  badChunks: number;
}

/**
 * Hashes the first `image.size` bytes of a slot in bounded reads, chunk by chunk against the
 * manifest: the whole-image hash after an install, the resume probe, and drift detection.
 */
export async function hashSlot(
  dev: SlotDevice,
  image: Pick<ImageDescriptor, 'size' | 'chunkSize' | 'chunkHashes'>,
  readBlock: number,
  opts: { signal?: AbortSignal } = {},
): Promise<SlotHashResult> {
  const whole = createHash('sha256');
  // the page cache of the write must not answer for the medium
  await dev.dropCache?.();
  const reader = await dev.openRead();
  const buf = Buffer.allocUnsafe(Math.min(readBlock, image.chunkSize));
  let firstBadChunk: number | null = null;
  let badChunks = 0;
  try {
    const chunks = Math.ceil(image.size / image.chunkSize);
    for (let i = 0; i < chunks; i++) {
      opts.signal?.throwIfAborted();
      const start = i * image.chunkSize;
      const end = Math.min(image.size, start + image.chunkSize);
      const h = createHash('sha256');
      for (let pos = start; pos < end; ) {
        const n = await reader.read(buf, pos, Math.min(buf.length, end - pos));
        if (n <= 0) break; // short slot: the chunk hash will not match
        const part = buf.subarray(0, n);
        h.update(part);
        whole.update(part);
        pos += n;
      }
      if (h.digest('hex') !== image.chunkHashes[i]) {
        badChunks++;
        if (firstBadChunk === null) firstBadChunk = i;
      }
    }
  } finally {
    await reader.close();
  }
  return { sha256: whole.digest('hex'), firstBadChunk, badChunks };
}
