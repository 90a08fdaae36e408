import { createHash } from 'node:crypto';
import { DeltaError } from './errors.js';
import {
  CODEC_NAME,
  encodeFrame,
  encodeHeader,
  FRAME_END,
  FRAME_SEGMENT,
  FRAME_SEGMENT_SHARED,
  frameBodyLength,
  MODE_EMPTY,
  MODE_STORED,
} from './format.js';
import { DELTA_LIMITS } from './limits.js';
import { findRecords } from './matcher.js';
import { packShared, packStream } from './pack.js';
import type { DeltaProgress } from './progress.js';
import { encodeSparse } from './sparse-diff.js';
import { VarintWriter } from './varint.js';

export interface EncodeOptions {
  /** Target bytes per segment (a power of two between 64 KiB and 8 MiB). */
  segmentSize?: number;
  /** Brotli quality 1–11 (11: smallest, slowest). */
  quality?: number;
  /** Base index density, see matcher.ts (tests and tuning). */
  sampleStep?: number;
  onProgress?: (p: DeltaProgress) => void;
  signal?: AbortSignal;
}

export interface EncodeStats {
  codec: string;
  baseSize: number;
  baseSha256: string;
  targetSize: number;
  targetSha256: string;
  deltaSize: number;
  deltaSha256: string;
  segments: number;
  records: number;
  /** Target bytes rebuilt from base bytes (exactly or approximately). */
  copiedBytes: number;
  /** Target bytes carried literally. */
  extraBytes: number;
}

/** Segments compress on the thread pool while the matcher runs; this many may wait at once. */
const MAX_IN_FLIGHT = 3;

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function checkSegmentSize(size: number): void {
  if (
    !Number.isInteger(size) ||
    size < DELTA_LIMITS.minSegmentSize ||
    size > DELTA_LIMITS.maxSegmentSize ||
    (size & (size - 1)) !== 0
  ) {
    throw new DeltaError(
      'FLOTILLA_ERR_DELTA_BAD_ARGUMENT',
      `segmentSize ${size} (power of two, 64 KiB–8 MiB)`,
    );
  }
}

/** Segments whose streams total less than this also try one shared brotli body. */
const SHARED_BELOW = 256 * 1024;

async function packSegment(ctrl: Buffer, diff: Buffer, extra: Buffer, quality: number): Promise<Buffer[]> {
  const { gaps, bytes } = encodeSparse(diff);
  const raws = [ctrl, gaps, bytes, extra];
  const packed = await Promise.all(raws.map((r) => packStream(r, quality)));
  const frame = {
    kind: FRAME_SEGMENT,
    targetLength: diff.length + extra.length,
    addLength: diff.length,
    streams: packed.map((p) => p.info),
    sharedPacked: 0,
  };
  let bodies = packed.map((p) => p.data);
  const rawTotal = raws.reduce((n, r) => n + r.length, 0);
  if (rawTotal < SHARED_BELOW) {
    const shared = await packShared(raws, quality);
    if (shared.length < Math.min(rawTotal, frameBodyLength(frame))) {
      frame.kind = FRAME_SEGMENT_SHARED;
      frame.streams = raws.map((r) => ({
        mode: r.length ? MODE_STORED : MODE_EMPTY,
        raw: r.length,
        packed: r.length,
      }));
      frame.sharedPacked = shared.length;
      bodies = [shared];
    }
  }
  return [encodeFrame(frame, bodies), ...bodies];
}

/**
 * Encodes the delta that turns `base` into `target`, handing the delta's bytes to `write` in
 * order. Both images are in memory (the server side has the room; apply never does this).
 */
export async function encodeDelta(
  base: Uint8Array,
  target: Uint8Array,
  write: (chunk: Buffer) => Promise<void>,
  opts: EncodeOptions = {},
): Promise<EncodeStats> {
  const segmentSize = opts.segmentSize ?? DELTA_LIMITS.defaultSegmentSize;
  checkSegmentSize(segmentSize);
  const quality = opts.quality ?? 11;
  if (!Number.isInteger(quality) || quality < 1 || quality > 11) {
    throw new DeltaError('FLOTILLA_ERR_DELTA_BAD_ARGUMENT', `quality ${quality} (1–11)`);
  }
  const baseSha256 = sha256(base);
  const targetSha256 = sha256(target);
  const deltaHash = createHash('sha256');
  let deltaSize = 0;
  const emit = async (chunk: Buffer): Promise<void> => {
    deltaHash.update(chunk);
    deltaSize += chunk.length;
    await write(chunk);
  };
  await emit(
    encodeHeader({ segmentSize, baseSize: base.length, baseSha256, targetSize: target.length, targetSha256 }),
  );

  const ctrl = new VarintWriter();
  let diff = Buffer.allocUnsafe(segmentSize);
  let extra = Buffer.allocUnsafe(segmentSize);
  let diffLength = 0;
  let extraLength = 0;
  let pendingSeek = 0;
  let segments = 0;
  let records = 0;
  let copiedBytes = 0;
  let extraBytes = 0;
  let targetDone = 0;
  const inFlight: Promise<Buffer[]>[] = [];
  // Mark every queued job as handled so a failure surfaces where it is awaited, not as unhandled.
  const queue = (job: Promise<Buffer[]>): void => {
    job.catch(() => {});
    inFlight.push(job);
  };

  const cutSegment = (): void => {
    if (diffLength + extraLength === 0) return;
    queue(packSegment(ctrl.take(), diff.subarray(0, diffLength), extra.subarray(0, extraLength), quality));
    segments++;
    diff = Buffer.allocUnsafe(segmentSize);
    extra = Buffer.allocUnsafe(segmentSize);
    diffLength = 0;
    extraLength = 0;
  };
  const drain = async (keep: number): Promise<void> => {
    while (inFlight.length > keep) {
      for (const part of await inFlight.shift()!) await emit(part);
    }
  };

  try {
    const matcher = findRecords(base, target, {
      sampleStep: opts.sampleStep,
      onProgress: (done) => {
        targetDone = done;
      },
    });
    let lastReport = -1;
    for (const r of matcher) {
      if (opts.signal?.aborted) throw new DeltaError('FLOTILLA_ERR_DELTA_ABORTED');
      let add = r.addLength;
      let lit = r.extraLength;
      let t = r.targetStart;
      let b = r.baseStart;
      copiedBytes += add;
      extraBytes += lit;
      // Records are cut at segment boundaries so a decoder never needs more than one segment.
      while (add + lit > 0) {
        const room = segmentSize - diffLength - extraLength;
        const a = Math.min(add, room);
        const e = Math.min(lit, room - a);
        ctrl.int(pendingSeek);
        ctrl.uint(a);
        ctrl.uint(e);
        pendingSeek = 0;
        records++;
        for (let i = 0; i < a; i++) diff[diffLength + i] = (target[t + i]! - base[b + i]!) & 0xff;
        diffLength += a;
        t += a;
        b += a;
        add -= a;
        extra.set(target.subarray(t, t + e), extraLength);
        extraLength += e;
        t += e;
        lit -= e;
        if (diffLength + extraLength === segmentSize || ctrl.length >= segmentSize / 2) {
          cutSegment();
          await drain(MAX_IN_FLIGHT);
        }
      }
      pendingSeek += r.seek;
      if (opts.onProgress && targetDone !== lastReport) {
        lastReport = targetDone;
        opts.onProgress({ phase: 'create', done: targetDone, total: target.length });
      }
    }
    cutSegment();
    await drain(0);
  } finally {
    // On failure, let queued jobs settle before the caller removes the output.
    await Promise.allSettled(inFlight);
  }
  await emit(
    encodeFrame({ kind: FRAME_END, targetLength: 0, addLength: 0, streams: [], sharedPacked: 0 }, []),
  );
  opts.onProgress?.({ phase: 'create', done: target.length, total: target.length });
  return {
    codec: CODEC_NAME,
    baseSize: base.length,
    baseSha256,
    targetSize: target.length,
    targetSha256,
    deltaSize,
    deltaSha256: deltaHash.digest('hex'),
    segments,
    records,
    copiedBytes,
    extraBytes,
  };
}
