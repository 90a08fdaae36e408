import { type FileHandle, open } from 'node:fs/promises';
import { DeltaError, ioError } from './errors.js';
import { DELTA_LIMITS } from './limits.js';

/**
 * Random-access source of the base image (the active slot). Only the first `baseSize` bytes (from
 * the delta header) are used, so a slot partition larger than its image works as a base.
 */
export interface BaseReader {
  /** Reads up to `length` bytes at `position` into `buffer` at `offset`; returns the count read. */
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  close?(): Promise<void>;
}

/** A base read with positional reads from a file or block device. */
export async function openFileBase(path: string): Promise<BaseReader & { close(): Promise<void> }> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw ioError(`cannot open base ${path}`, err);
  }
  return {
    async read(buffer, offset, length, position) {
      try {
        return (await fh.read(buffer, offset, length, position)).bytesRead;
      } catch (err) {
        throw ioError('cannot read base', err);
      }
    },
    close: () => fh.close(),
  };
}

/** Reads exactly `length` bytes unless the base ends first; returns the count read. */
export async function readFully(
  base: BaseReader,
  buffer: Uint8Array,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  let done = 0;
  while (done < length) {
    const n = await base.read(buffer, offset + done, length - done, position + done);
    if (n <= 0) break;
    done += n;
  }
  return done;
}

/**
 * A small cache of aligned base blocks: records mostly read the base in order with short jumps,
 * so a handful of 256 KiB blocks turns thousands of tiny reads into a few large ones.
 */
export class BaseCache {
  private readonly blocks = new Map<number, Buffer>();

  constructor(
    private readonly base: BaseReader,
    private readonly baseSize: number,
  ) {}

  /** Returns block number `block` if cached, or undefined (then call `load`). */
  cached(block: number): Buffer | undefined {
    const b = this.blocks.get(block);
    if (b) {
      this.blocks.delete(block);
      this.blocks.set(block, b);
    }
    return b;
  }

  async load(block: number): Promise<Buffer> {
    const size = DELTA_LIMITS.baseBlockSize;
    const start = block * size;
    const length = Math.min(size, this.baseSize - start);
    let buf: Buffer;
    if (this.blocks.size >= DELTA_LIMITS.baseCacheBlocks) {
      const oldest = this.blocks.keys().next().value as number;
      buf = this.blocks.get(oldest)!;
      this.blocks.delete(oldest);
    } else {
      buf = Buffer.allocUnsafe(size);
    }
    const n = await readFully(this.base, buf, 0, length, start);
    if (n !== length)
      throw new DeltaError('FLOTILLA_ERR_DELTA_BASE_MISMATCH', 'base is shorter than the delta says');
    this.blocks.set(block, buf);
    return buf;
  }
}
