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
 *   segment frames, in target order, then one end frame. A frame header is
 *     kind    u8   1 = segment with separately packed streams, 2 = segment whose streams are
 *                  packed together in one body (small segments), 255 = end
 *     modes   u8   2 bits per stream, control in the low bits, then gaps, bytes, extra:
 *                  0 = empty, 1 = stored, 2 = brotli (kind 2: 1 = present in the shared body)
 *     varints (LEB128): target bytes produced; of which rebuilt from the base (the diff length,
 *                  the rest are extra bytes); each non-empty stream's raw length; then, kind 1:
 *                  each brotli stream's packed length; kind 2: the shared body's packed length
 *     u32     crc32 of this frame header up to here followed by its body (the lengths are
 *             bounds-checked before the body is read, the crc before it is used)
 *   followed by the packed bodies (control, gaps, bytes, extra) or the one shared brotli body.
 *   The end frame is the single byte 255; the input must end right after it.
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
export const FRAME_SEGMENT = 1;
export const FRAME_SEGMENT_SHARED = 2;
export const FRAME_END = 255;
export const MODE_EMPTY = 0;
export const MODE_STORED = 1;
export const MODE_BROTLI = 2;

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
  /** In stream order: control, gaps, bytes, extra. */
  streams: StreamInfo[];
  /** Kind 2: packed length of the shared body. */
  sharedPacked: number;
  /** crc32 over the header bytes before it and the body. */
  crc: number;
}

/** A parsed frame header with the bytes the crc covers. */
export interface ReadFrame extends FrameHeader {
  headerBytes: Buffer;
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

function pushVarint(out: number[], v: number): void {
  let x = v;
  while (x >= 0x80) {
    out.push((x & 0x7f) | 0x80);
    x = Math.floor(x / 0x80);
  }
  out.push(x);
}

/** Encodes a frame header; `bodies` are what follows it (the crc covers both). */
export function encodeFrame(f: Omit<FrameHeader, 'crc'>, bodies: Buffer[]): Buffer {
  if (f.kind === FRAME_END) return Buffer.from([FRAME_END]);
  const bytes: number[] = [f.kind, 0];
  f.streams.forEach((st, i) => {
    bytes[1]! |= st.mode << (2 * i);
  });
  pushVarint(bytes, f.targetLength);
  pushVarint(bytes, f.addLength);
  for (const st of f.streams) if (st.mode !== MODE_EMPTY) pushVarint(bytes, st.raw);
  if (f.kind === FRAME_SEGMENT_SHARED) pushVarint(bytes, f.sharedPacked);
  else for (const st of f.streams) if (st.mode === MODE_BROTLI) pushVarint(bytes, st.packed);
  const b = Buffer.alloc(bytes.length + 4);
  Buffer.from(bytes).copy(b);
  const crc = bodies.reduce((c, body) => crc32(body, c), crc32(b.subarray(0, bytes.length)));
  b.writeUInt32LE(crc >>> 0, bytes.length);
  return b;
}

/** The packed body length that follows a frame header. */
export function frameBodyLength(f: Omit<FrameHeader, 'crc'>): number {
  if (f.kind === FRAME_SEGMENT_SHARED) return f.sharedPacked;
  return f.streams.reduce((n, st) => n + st.packed, 0);
}

function corrupt(why: string): DeltaError {
  return new DeltaError('FLOTILLA_ERR_DELTA_PAYLOAD_CORRUPT', why);
}

/**
 * Reads a frame header byte by byte (it has no fixed size) and checks every length against the
 * segment size before any body is read or allocated.
 */
export async function readFrameHeader(
  read: (n: number) => Promise<Buffer>,
  segmentSize: number,
): Promise<ReadFrame> {
  const seen: number[] = [];
  const byte = async () => {
    const v = (await read(1))[0]!;
    seen.push(v);
    return v;
  };
  const varint = async () => {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 5; i++) {
      const v = await byte();
      result += (v & 0x7f) * scale;
      if (v < 0x80) return result;
      scale *= 0x80;
    }
    throw corrupt('frame length field too long');
  };
  const kind = await byte();
  const empty = { mode: MODE_EMPTY, raw: 0, packed: 0 };
  if (kind === FRAME_END) {
    const streams = [empty, empty, empty, empty];
    return {
      kind,
      targetLength: 0,
      addLength: 0,
      streams,
      sharedPacked: 0,
      crc: 0,
      headerBytes: Buffer.from(seen),
    };
  }
  if (kind !== FRAME_SEGMENT && kind !== FRAME_SEGMENT_SHARED) throw corrupt(`unknown frame kind ${kind}`);
  const modes = await byte();
  const targetLength = await varint();
  const addLength = await varint();
  const streams: StreamInfo[] = [];
  for (let i = 0; i < 4; i++) {
    const mode = (modes >> (2 * i)) & 3;
    if (mode === 3 || (kind === FRAME_SEGMENT_SHARED && mode > MODE_STORED)) {
      throw corrupt(`${FRAME_STREAMS[i]} stream has unknown mode ${mode}`);
    }
    streams.push({ mode, raw: 0, packed: 0 });
  }
  for (const st of streams) if (st.mode !== MODE_EMPTY) st.raw = await varint();
  let sharedPacked = 0;
  if (kind === FRAME_SEGMENT_SHARED) sharedPacked = await varint();
  else for (const st of streams) st.packed = st.mode === MODE_BROTLI ? await varint() : st.raw;
  const crc = (await read(4)).readUInt32LE(0);
  const f: ReadFrame = {
    kind,
    targetLength,
    addLength,
    streams,
    sharedPacked,
    crc,
    headerBytes: Buffer.from(seen),
  };
  if (targetLength === 0 || targetLength > segmentSize) throw corrupt(`segment length ${targetLength}`);
  const [control, gaps, bytes, extra] = streams as [StreamInfo, StreamInfo, StreamInfo, StreamInfo];
  if (addLength > targetLength || extra.raw !== targetLength - addLength) {
    throw corrupt('segment streams do not add up to its length');
  }
  // Bounds from what the records can use (sparse diff streams are at most twice the diff).
  if (
    control.raw === 0 ||
    control.raw > segmentSize ||
    gaps.raw > 2 * addLength + 8 ||
    bytes.raw > 2 * addLength + 2
  ) {
    throw corrupt('segment streams are longer than its records can use');
  }
  for (const [i, st] of streams.entries()) {
    if (st.mode !== MODE_EMPTY && st.raw === 0)
      throw corrupt(`${FRAME_STREAMS[i]} stream is empty but not marked so`);
    // The encoder stores a stream whenever brotli would not make it smaller.
    if (st.mode === MODE_BROTLI && (st.packed >= st.raw || st.packed === 0)) {
      throw corrupt(`${FRAME_STREAMS[i]} stream sizes are inconsistent`);
    }
  }
  const sharedRaw = streams.reduce((n, st) => n + st.raw, 0);
  if (kind === FRAME_SEGMENT_SHARED && (sharedPacked === 0 || sharedPacked >= sharedRaw)) {
    throw corrupt('shared body sizes are inconsistent');
  }
  return f;
}
