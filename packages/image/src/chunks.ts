import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { ImageError, ioError } from './errors.js';
import { IMAGE_LIMITS } from './limits.js';

export interface ChunkedDigest {
  size: number;
  sha256: string;
  chunkSize: number;
  /** sha256 of each `chunkSize` slice, the last one possibly shorter. */
  chunkHashes: string[];
}

/** One pass over the image: whole-file hash and per-chunk hashes (what the agent verifies before writing). */
export async function hashChunks(
  path: string,
  chunkSize: number = IMAGE_LIMITS.defaultChunkSize,
): Promise<ChunkedDigest> {
  if (
    !Number.isSafeInteger(chunkSize) ||
    chunkSize < 4096 ||
    chunkSize > IMAGE_LIMITS.maxChunkSize ||
    chunkSize % 4096 !== 0
  )
    throw new ImageError(
      'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT',
      `chunk size ${chunkSize}: a multiple of 4096 up to ${IMAGE_LIMITS.maxChunkSize}`,
    );
  const whole = createHash('sha256');
  const chunkHashes: string[] = [];
  let chunk = createHash('sha256');
  let inChunk = 0;
  let size = 0;
  try {
    for await (const data of createReadStream(path, { highWaterMark: Math.min(chunkSize, 1024 * 1024) })) {
      const buf = data as Buffer;
      whole.update(buf);
      size += buf.length;
      let off = 0;
      while (off < buf.length) {
        const take = Math.min(chunkSize - inChunk, buf.length - off);
        chunk.update(buf.subarray(off, off + take));
        inChunk += take;
        off += take;
        if (inChunk === chunkSize) {
          chunkHashes.push(chunk.digest('hex'));
          chunk = createHash('sha256');
          inChunk = 0;
        }
      }
    }
  } catch (err) {
    throw ioError(`cannot read ${path}`, err);
  }
  if (inChunk > 0) chunkHashes.push(chunk.digest('hex'));
  return { size, sha256: whole.digest('hex'), chunkSize, chunkHashes };
}
