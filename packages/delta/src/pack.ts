import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { DeltaError } from './errors.js';
import { MODE_BROTLI, MODE_EMPTY, MODE_STORED, type StreamInfo } from './format.js';

const brotliCompress = promisify(zlib.brotliCompress);
const C = zlib.constants;

export interface PackedStream {
  info: StreamInfo;
  data: Buffer;
}

function windowBits(size: number): number {
  return Math.min(24, Math.max(16, Math.ceil(Math.log2(size + 1))));
}

function brotli(raw: Buffer, quality: number): Promise<Buffer> {
  return brotliCompress(raw, {
    // One thread-pool job compresses the whole stream (the default 16 KiB output chunk would
    // bounce back to the busy main thread for every chunk).
    chunkSize: Math.max(64 * 1024, raw.length + 1024),
    params: {
      [C.BROTLI_PARAM_QUALITY]: quality,
      [C.BROTLI_PARAM_LGWIN]: windowBits(raw.length),
      [C.BROTLI_PARAM_SIZE_HINT]: raw.length,
    },
  });
}

/**
 * Compresses one stream of one segment with brotli, or stores it when that does not pay.
 * Already-compressed content (squashfs blocks, jpegs) is recognised with a cheap quality-1 probe
 * and gets quality 9 instead of quality 11's ~0.3 MB/s.
 */
export async function packStream(raw: Buffer, quality: number): Promise<PackedStream> {
  const stored = (): PackedStream => ({
    info: { mode: MODE_STORED, raw: raw.length, packed: raw.length },
    data: raw,
  });
  if (raw.length === 0) return { info: { mode: MODE_EMPTY, raw: 0, packed: 0 }, data: raw };
  let best = raw;
  let q = quality;
  if (raw.length >= 64 * 1024 && quality > 9) {
    // Nearly incompressible: quality 9 gets within 0.2 % of 11 there, 20× faster.
    const probe = await brotli(raw, 1);
    if (probe.length > raw.length * 0.9) {
      q = 9;
      if (probe.length < best.length) best = probe;
    }
  }
  const full = await brotli(raw, q);
  if (full.length < best.length) best = full;
  if (best === raw) return stored();
  return { info: { mode: MODE_BROTLI, raw: raw.length, packed: best.length }, data: best };
}

/** Brotli over several small streams at once: saves per-stream overhead on tiny segments. */
export async function packShared(raws: Buffer[], quality: number): Promise<Buffer> {
  return brotli(Buffer.concat(raws), quality);
}

/** Decompresses a stream (or a shared body), refusing to produce more than it declared. */
export function unpackStream(info: StreamInfo, data: Buffer, name: string): Buffer {
  if (info.mode !== MODE_BROTLI) return data;
  let out: Buffer;
  try {
    out = zlib.brotliDecompressSync(data, { maxOutputLength: Math.max(1, info.raw), chunkSize: 64 * 1024 });
  } catch (err) {
    throw new DeltaError('FLOTILLA_ERR_DELTA_PAYLOAD_CORRUPT', `${name} stream does not decompress`, {
      cause: err,
    });
  }
  if (out.length !== info.raw) {
    throw new DeltaError(
      'FLOTILLA_ERR_DELTA_PAYLOAD_CORRUPT',
      `${name} stream decompresses to the wrong size`,
    );
  }
  return out;
}
