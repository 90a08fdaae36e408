import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { type DeltaApplyTarget, openFileTarget } from './apply-target.js';
import { BaseCache, type BaseReader, openFileBase, readFully } from './base-reader.js';
import { ByteSource, type DeltaInput } from './byte-source.js';
import { DeltaError } from './errors.js';
import {
  type DeltaHeader,
  decodeHeader,
  FRAME_END,
  FRAME_SEGMENT_SHARED,
  FRAME_STREAMS,
  type FrameHeader,
  frameBodyLength,
  HEADER_SIZE,
  MODE_BROTLI,
  readFrameHeader,
} from './format.js';
import { DELTA_LIMITS } from './limits.js';
import { unpackStream } from './pack.js';
import type { DeltaProgress } from './progress.js';
import { sameFile } from './same-file.js';
import { decodeSparse } from './sparse-diff.js';
import { VarintReader } from './varint.js';

export interface ApplyDeltaOptions {
  /** The base image: a path (file or block device) or a positional reader (the active slot). */
  base: string | BaseReader;
  /** The delta: a path, bytes, or a stream such as an HTTP response body. */
  delta: DeltaInput;
  /** Where the target goes: a path (written atomically) or a sink (the inactive slot). */
  target: string | DeltaApplyTarget;
  /** The target sha256 the caller trusts (from the signed release manifest); checked up front. */
  expectedTargetSha256?: string;
  expectedTargetSize?: number;
  /** Refuse deltas that claim a larger target (default 64 GiB). */
  maxTargetSize?: number;
  onProgress?: (p: DeltaProgress) => void;
  signal?: AbortSignal;
}

export interface ApplyStats {
  codec: string;
  baseSize: number;
  baseSha256: string;
  targetSize: number;
  targetSha256: string;
  deltaSize: number;
  segments: number;
}

const corrupt = (why: string) => new DeltaError('FLOTILLA_ERR_DELTA_PAYLOAD_CORRUPT', why);

/** Reads and checks a delta header (from a path, bytes or a stream) without applying anything. */
export async function readDeltaHeader(delta: DeltaInput): Promise<DeltaHeader> {
  const src = new ByteSource(delta);
  try {
    return decodeHeader(await src.readUpTo(HEADER_SIZE));
  } finally {
    await src.close();
  }
}

async function hashBase(base: BaseReader, header: DeltaHeader, opts: ApplyDeltaOptions): Promise<void> {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(Math.min(DELTA_LIMITS.hashReadSize, Math.max(header.baseSize, 1)));
  for (let at = 0; at < header.baseSize; ) {
    if (opts.signal?.aborted) throw new DeltaError('FLOTILLA_ERR_DELTA_ABORTED');
    const want = Math.min(buf.length, header.baseSize - at);
    const n = await readFully(base, buf, 0, want, at);
    if (n !== want) {
      throw new DeltaError(
        'FLOTILLA_ERR_DELTA_BASE_MISMATCH',
        `base has ${at + n} bytes, delta needs ${header.baseSize}`,
      );
    }
    hash.update(buf.subarray(0, n));
    at += n;
    opts.onProgress?.({ phase: 'verify-base', done: at, total: header.baseSize });
  }
  const got = hash.digest('hex');
  if (got !== header.baseSha256) {
    throw new DeltaError(
      'FLOTILLA_ERR_DELTA_BASE_MISMATCH',
      `base sha256 ${got}, delta wants ${header.baseSha256}`,
    );
  }
}

/** Splits a frame body into its four raw streams, decompressing as its header says. */
function unpackFrame(fh: FrameHeader, body: Buffer): [Buffer, Buffer, Buffer, Buffer] {
  const parts: Buffer[] = [];
  if (fh.kind === FRAME_SEGMENT_SHARED) {
    const raw = fh.streams.reduce((n, st) => n + st.raw, 0);
    const all = unpackStream({ mode: MODE_BROTLI, raw, packed: body.length }, body, 'shared');
    let at = 0;
    for (const st of fh.streams) {
      parts.push(all.subarray(at, at + st.raw));
      at += st.raw;
    }
  } else {
    let at = 0;
    for (const [i, st] of fh.streams.entries()) {
      parts.push(unpackStream(st, body.subarray(at, at + st.packed), FRAME_STREAMS[i]!));
      at += st.packed;
    }
  }
  return parts as [Buffer, Buffer, Buffer, Buffer];
}

/** Gathers target bytes into chunks, hashes them, and hands them to the sink in order. */
class TargetWriter {
  private chunk = Buffer.allocUnsafe(DELTA_LIMITS.outputChunkSize);
  private used = 0;
  readonly hash = createHash('sha256');
  written = 0;

  constructor(private readonly sink: DeltaApplyTarget) {}

  /** Room left in the current chunk (flush when it reaches 0). */
  get room(): number {
    return this.chunk.length - this.used;
  }

  get buffer(): Buffer {
    return this.chunk;
  }

  get at(): number {
    return this.used;
  }

  advance(n: number): void {
    this.used += n;
  }

  /** Hands the chunk to the sink; its memory is reused once `write` resolves (bounded RSS). */
  async flush(): Promise<void> {
    if (this.used === 0) return;
    const out = this.chunk.subarray(0, this.used);
    this.hash.update(out);
    this.written += out.length;
    await this.sink.write(out);
    this.used = 0;
  }
}

const ZEROS = Buffer.alloc(4096);

/** out = base + diff, byte-wise; 4 KiB stretches with an all-zero diff (most of them) are a memcpy. */
function addBytes(
  out: Buffer,
  at: number,
  base: Buffer,
  off: number,
  diff: Buffer,
  d: number,
  n: number,
): void {
  for (let k = 0; k < n; k += ZEROS.length) {
    const m = Math.min(ZEROS.length, n - k);
    if (ZEROS.compare(diff, d + k, d + k + m, 0, m) === 0) {
      base.copy(out, at + k, off + k, off + k + m);
    } else {
      for (let i = k; i < k + m; i++) out[at + i] = (base[off + i]! + diff[d + i]!) & 0xff;
    }
  }
}

/** Runs one segment's records: base bytes plus diff, then literal extra bytes. */
async function applySegment(
  ctrl: Buffer,
  diff: Buffer,
  extra: Buffer,
  cache: BaseCache,
  baseSize: number,
  state: { pos: number },
  out: TargetWriter,
): Promise<void> {
  const rd = new VarintReader(ctrl);
  let d = 0;
  let e = 0;
  const block = DELTA_LIMITS.baseBlockSize;
  while (!rd.done) {
    const seek = rd.int();
    const add = rd.uint();
    const lit = rd.uint();
    if (add + lit === 0) throw corrupt('empty record');
    let pos = state.pos + seek;
    if (pos < 0 || pos + add > baseSize)
      throw corrupt(`record reads base bytes ${pos}..${pos + add} outside the base`);
    if (d + add > diff.length || e + lit > extra.length) throw corrupt('record overruns its segment');
    let left = add;
    while (left > 0) {
      const idx = Math.floor(pos / block);
      const blk = cache.cached(idx) ?? (await cache.load(idx));
      const off = pos - idx * block;
      const n = Math.min(left, block - off, out.room);
      const buf = out.buffer;
      const at = out.at;
      addBytes(buf, at, blk, off, diff, d, n);
      out.advance(n);
      pos += n;
      d += n;
      left -= n;
      if (out.room === 0) await out.flush();
    }
    state.pos = pos;
    left = lit;
    while (left > 0) {
      const n = Math.min(left, out.room);
      extra.copy(out.buffer, out.at, e, e + n);
      out.advance(n);
      e += n;
      left -= n;
      if (out.room === 0) await out.flush();
    }
  }
  if (d !== diff.length || e !== extra.length) throw corrupt('segment leaves stream bytes unused');
}

/**
 * Applies a delta as a stream: the base is read by position, the delta front to back, the target
 * written strictly in order. Memory stays around one segment (2 MiB by default) whatever the
 * image size. The base hash is checked before anything is written; the target hash before
 * `commit`. On any failure the sink is aborted (a file target removes its partial output).
 */
export async function applyDelta(opts: ApplyDeltaOptions): Promise<ApplyStats> {
  const src = new ByteSource(opts.delta, opts.signal);
  let base: BaseReader | undefined;
  let ownBase = false;
  let sink: DeltaApplyTarget | undefined;
  try {
    if (
      typeof opts.base === 'string' &&
      typeof opts.target === 'string' &&
      (await sameFile(opts.base, opts.target))
    ) {
      throw new DeltaError('FLOTILLA_ERR_DELTA_OUTPUT_IS_INPUT', opts.target);
    }
    if (
      typeof opts.delta === 'string' &&
      typeof opts.target === 'string' &&
      (await sameFile(opts.delta, opts.target))
    ) {
      throw new DeltaError('FLOTILLA_ERR_DELTA_OUTPUT_IS_INPUT', opts.target);
    }
    const header = decodeHeader(await src.readUpTo(HEADER_SIZE));
    const maxTarget = opts.maxTargetSize ?? DELTA_LIMITS.defaultMaxTargetSize;
    if (header.targetSize > maxTarget) {
      throw new DeltaError(
        'FLOTILLA_ERR_DELTA_SIZE_LIMIT',
        `target ${header.targetSize} bytes > limit ${maxTarget}`,
      );
    }
    if (
      opts.expectedTargetSha256 !== undefined &&
      opts.expectedTargetSha256.toLowerCase() !== header.targetSha256
    ) {
      throw new DeltaError('FLOTILLA_ERR_DELTA_TARGET_MISMATCH', `delta makes ${header.targetSha256}`);
    }
    if (opts.expectedTargetSize !== undefined && opts.expectedTargetSize !== header.targetSize) {
      throw new DeltaError('FLOTILLA_ERR_DELTA_TARGET_MISMATCH', `delta makes ${header.targetSize} bytes`);
    }

    if (typeof opts.base === 'string') {
      base = await openFileBase(opts.base);
      ownBase = true;
    } else {
      base = opts.base;
    }
    await hashBase(base, header, opts);

    sink = typeof opts.target === 'string' ? await openFileTarget(opts.target) : opts.target;
    await sink.begin?.({ targetSize: header.targetSize, targetSha256: header.targetSha256 });
    const out = new TargetWriter(sink);
    const cache = new BaseCache(base, header.baseSize);
    const state = { pos: 0 };
    // One diff buffer for all segments: apply memory stays flat whatever the image size.
    const diffBuffer = Buffer.allocUnsafe(header.segmentSize);
    let bodyBuffer = Buffer.allocUnsafe(0);
    let produced = 0;
    let segments = 0;
    for (;;) {
      if (opts.signal?.aborted) throw new DeltaError('FLOTILLA_ERR_DELTA_ABORTED');
      const where = `at delta offset ${src.offset}`;
      const fh = await readFrameHeader((n) => src.readExact(n, where), header.segmentSize);
      if (fh.kind === FRAME_END) break;
      if (produced + fh.targetLength > header.targetSize)
        throw corrupt('segments produce more than the target size');
      const bodyLength = frameBodyLength(fh);
      if (bodyLength > bodyBuffer.length) bodyBuffer = Buffer.allocUnsafe(bodyLength);
      const body = await src.readExactInto(bodyBuffer, bodyLength, where);
      if (crc32(body, crc32(fh.headerBytes)) !== fh.crc) throw corrupt(`segment checksum mismatch ${where}`);
      const [ctrl, gaps, bytes, extra] = unpackFrame(fh, body);
      const diff = decodeSparse(gaps, bytes, fh.addLength, diffBuffer);
      await applySegment(ctrl, diff, extra, cache, header.baseSize, state, out);
      produced += fh.targetLength;
      segments++;
      opts.onProgress?.({ phase: 'apply', done: produced, total: header.targetSize });
    }
    await out.flush();
    if (produced !== header.targetSize)
      throw corrupt(`segments produce ${produced} of ${header.targetSize} bytes`);
    if (!(await src.atEnd()))
      throw new DeltaError('FLOTILLA_ERR_DELTA_TRAILING_DATA', `at delta offset ${src.offset}`);
    const got = out.hash.digest('hex');
    if (got !== header.targetSha256) {
      throw new DeltaError(
        'FLOTILLA_ERR_DELTA_TARGET_MISMATCH',
        `output sha256 ${got}, delta promises ${header.targetSha256}`,
      );
    }
    await sink.commit();
    return {
      codec: header.codec,
      baseSize: header.baseSize,
      baseSha256: header.baseSha256,
      targetSize: header.targetSize,
      targetSha256: got,
      deltaSize: src.offset,
      segments,
    };
  } catch (err) {
    await sink?.abort(err).catch(() => {});
    throw err;
  } finally {
    try {
      await src.close();
    } finally {
      if (ownBase) await base?.close?.();
    }
  }
}
