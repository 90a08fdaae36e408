import { crc32 } from 'node:zlib';
import { DeltaError } from './errors.js';
import { DELTA_LIMITS } from './limits.js';

/*
 * Delta file layout (all integers little-endian; see docs/delta.md):
 *
 *   header  (100 bytes)
 *     0  magic "FLTDELTA"           8 bytes
 *     8  format version (1)         u16
 *    10  codec (1 = bsdiff-brotli)  u8
 *    11  flags (0)                  u8
 *    12  segment size               u32   target bytes per segment, at most
 *    16  base size                  u64
 *    24  base sha256                32 bytes
 *    56  target size                u64
 *    64  target sha256              32 bytes
 *    96  crc32 of bytes 0..95       u32
 *
 *   segment frames, in target order, then one end frame (56-byte header, then bodies)
 *     0  kind (1 = segment, 255 = end)    u8
 *     1  modes: control, gaps, bytes, extra  4 × u8   (0 = stored, 1 = brotli)
 *     5  reserved (0)                     3 bytes
 *     8  target bytes produced            u32
 *    12  of which rebuilt from the base   u32   (= diff length; the rest are extra bytes)
 *    16  control raw, packed              2 × u32
 *    24  gaps raw, packed                 2 × u32
 *    32  bytes raw, packed                2 × u32
 *    40  extra raw, packed                2 × u32
 *    48  crc32 of the packed bodies       u32
 *    52  crc32 of bytes 0..51             u32
 *    56  packed control, gaps, bytes, extra bodies
 *
 * The diff stream (target − base per add byte) is stored sparsely as gaps + bytes, see
 * sparse-diff.ts.
 * A segment's control stream is a list of records, each three LEB128 varints:
 *   seek (zigzag-signed), addLength, extraLength      (addLength + extraLength > 0)
 * meaning: pos += seek; output base[pos+i] + diff[i] (mod 256) for i < addLength;
 * pos += addLength; then output the next extraLength bytes of the extra stream.
 * `pos` starts at 0 and carries over from one segment to the next.
 */

export const MAGIC = Buffer.from('FLTDELTA', 'latin1');
export const FORMAT_VERSION = 1;
export const CODEC_BSDIFF_BROTLI = 1;
export const CODEC_NAME = 'flotilla-bsdiff-brotli';
export const HEADER_SIZE = 100;
export const FRAME_HEADER_SIZE = 56;
export const FRAME_SEGMENT = 1;
export const FRAME_END = 255;
export const MODE_STORED = 0;
export const MODE_BROTLI = 1;

export interface DeltaHeader {
  formatVersion: number;
  codec: string;
  segmentSize: number;
  baseSize: number;
  baseSha256: string;
  targetSize: number;
  targetSha256: string;
}

export interface StreamInfo {
  mode: number;
  raw: number;
  packed: number;
}

export interface FrameHeader {
  kind: number;
  targetLength: number;
  addLength: number;
  control: StreamInfo;
  gaps: StreamInfo;
  bytes: StreamInfo;
  extra: StreamInfo;
  bodyCrc: number;
}

export const FRAME_STREAMS = ['control', 'gaps', 'bytes', 'extra'] as const;
export function encodeHeader(h: Omit<DeltaHeader, 'formatVersion' | 'codec'>): Buffer {
  const b = Buffer.alloc(HEADER_SIZE);
  MAGIC.copy(b, 0);
  b.writeUInt16LE(FORMAT_VERSION, 8);
  b.writeUInt8(CODEC_BSDIFF_BROTLI, 10);
  b.writeUInt8(0, 11);
  b.writeUInt32LE(h.segmentSize, 12);
  b.writeBigUInt64LE(BigInt(h.baseSize), 16);
  Buffer.from(h.baseSha256, 'hex').copy(b, 24);
  b.writeBigUInt64LE(BigInt(h.targetSize), 56);
  Buffer.from(h.targetSha256, 'hex').copy(b, 64);
  b.writeUInt32LE(crc32(b.subarray(0, 96)), 96);
  return b;
}

function safeU64(b: Buffer, at: number, what: string): number {
  const v = b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new DeltaError('FLOTILLA_ERR_DELTA_SIZE_LIMIT', `${what} ${v} bytes`);
  }
  return Number(v);
}

/** Parses and checks a header; `b` must hold at least HEADER_SIZE bytes. */
export function decodeHeader(b: Buffer): DeltaHeader {
  if (b.length < MAGIC.length || !b.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new DeltaError('FLOTILLA_ERR_DELTA_NOT_A_DELTA');
  }
  if (b.length < HEADER_SIZE) throw new DeltaError('FLOTILLA_ERR_DELTA_TRUNCATED', 'inside the header');
  if (crc32(b.subarray(0, 96)) !== b.readUInt32LE(96)) {
    throw new DeltaError('FLOTILLA_ERR_DELTA_HEADER_CORRUPT', 'header checksum mismatch');
  }
  const formatVersion = b.readUInt16LE(8);
  const codec = b.readUInt8(10);
  if (formatVersion !== FORMAT_VERSION || codec !== CODEC_BSDIFF_BROTLI) {
    throw new DeltaError('FLOTILLA_ERR_DELTA_UNSUPPORTED_VERSION', `format ${formatVersion}, codec ${codec}`);
  }
  if (b.readUInt8(11) !== 0) throw new DeltaError('FLOTILLA_ERR_DELTA_HEADER_CORRUPT', 'unknown flags');
  const segmentSize = b.readUInt32LE(12);
  if (segmentSize < DELTA_LIMITS.minSegmentSize || segmentSize > DELTA_LIMITS.maxSegmentSize) {
    throw new DeltaError('FLOTILLA_ERR_DELTA_HEADER_CORRUPT', `segment size ${segmentSize} out of range`);
  }
  return {
    formatVersion,
    codec: CODEC_NAME,
    segmentSize,
    baseSize: safeU64(b, 16, 'base size'),
    baseSha256: b.subarray(24, 56).toString('hex'),
    targetSize: safeU64(b, 56, 'target size'),
    targetSha256: b.subarray(64, 96).toString('hex'),
  };
}

export function encodeFrameHeader(f: FrameHeader): Buffer {
  const b = Buffer.alloc(FRAME_HEADER_SIZE);
  b.writeUInt8(f.kind, 0);
  b.writeUInt32LE(f.targetLength, 8);
  b.writeUInt32LE(f.addLength, 12);
  FRAME_STREAMS.forEach((name, i) => {
    b.writeUInt8(f[name].mode, 1 + i);
    b.writeUInt32LE(f[name].raw, 16 + 8 * i);
    b.writeUInt32LE(f[name].packed, 20 + 8 * i);
  });
  b.writeUInt32LE(f.bodyCrc, 48);
  b.writeUInt32LE(crc32(b.subarray(0, 52)), 52);
  return b;
}

function corrupt(why: string): DeltaError {
  return new DeltaError('FLOTILLA_ERR_DELTA_PAYLOAD_CORRUPT', why);
}

function stream(b: Buffer, i: number, max: number): StreamInfo {
  const name = FRAME_STREAMS[i]!;
  const mode = b.readUInt8(1 + i);
  const raw = b.readUInt32LE(16 + 8 * i);
  const packed = b.readUInt32LE(20 + 8 * i);
  if (mode !== MODE_STORED && mode !== MODE_BROTLI) throw corrupt(`${name} stream has unknown mode ${mode}`);
  if (raw > max) throw corrupt(`${name} stream claims ${raw} bytes, more than a segment holds`);
  // The encoder stores a stream whenever brotli would not make it smaller.
  if (mode === MODE_STORED ? packed !== raw : packed >= raw) {
    throw corrupt(`${name} stream sizes are inconsistent`);
  }
  return { mode, raw, packed };
}

/** Parses a frame header and checks every length against the segment size before anything is read. */
export function decodeFrameHeader(b: Buffer, segmentSize: number): FrameHeader {
  if (crc32(b.subarray(0, 52)) !== b.readUInt32LE(52)) throw corrupt('frame header checksum mismatch');
  const kind = b.readUInt8(0);
  if (kind !== FRAME_SEGMENT && kind !== FRAME_END) throw corrupt(`unknown frame kind ${kind}`);
  if (b[5] !== 0 || b[6] !== 0 || b[7] !== 0) throw corrupt('reserved frame bytes are set');
  const targetLength = b.readUInt32LE(8);
  const addLength = b.readUInt32LE(12);
  // Every stream is bounded by what the segment can need (sparse diff streams by twice the diff).
  const max = 2 * segmentSize + 16;
  const f: FrameHeader = {
    kind,
    targetLength,
    addLength,
    control: stream(b, 0, max),
    gaps: stream(b, 1, max),
    bytes: stream(b, 2, max),
    extra: stream(b, 3, max),
    bodyCrc: b.readUInt32LE(48),
  };
  if (kind === FRAME_END) {
    if (targetLength !== 0 || addLength !== 0 || FRAME_STREAMS.some((n) => f[n].raw !== 0)) {
      throw corrupt('end frame carries data');
    }
    return f;
  }
  if (targetLength === 0 || targetLength > segmentSize) throw corrupt(`segment length ${targetLength}`);
  if (addLength > targetLength || f.extra.raw !== targetLength - addLength) {
    throw corrupt('segment streams do not add up to its length');
  }
  if (f.control.raw > segmentSize || f.gaps.raw > 2 * addLength + 8 || f.bytes.raw > 2 * addLength + 2) {
    throw corrupt('segment streams are longer than its records can use');
  }
  return f;
}
