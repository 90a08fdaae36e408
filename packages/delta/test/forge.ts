import { crc32 } from 'node:zlib';

/** Test-side knowledge of the layout (format.ts), to forge deltas an attacker could make. */
export const HEADER = 100;

export interface FrameAt {
  /** Offset of the frame header. */
  at: number;
  /** Offset of the body crc (the header crc follows it; the body follows that). */
  crcAt: number;
  kind: number;
  modes: number;
  bodyLength: number;
}

/** Walks the frames by their declared lengths, without checking anything. */
export function frames(delta: Buffer): FrameAt[] {
  const out: FrameAt[] = [];
  let p = HEADER;
  const varint = () => {
    let v = 0;
    let scale = 1;
    for (let i = 0; i < 5 && p < delta.length; i++) {
      const b = delta[p++]!;
      v += (b & 0x7f) * scale;
      if (b < 0x80) break;
      scale *= 128;
    }
    return v;
  };
  while (p + 2 <= delta.length) {
    const at = p;
    const kind = delta[p++]!;
    const modes = delta[p++]!;
    varint();
    varint();
    const mode = (i: number) => (modes >> (2 * i)) & 3;
    const raws = [0, 1, 2, 3].map((i) => (mode(i) !== 0 ? varint() : 0));
    let bodyLength = 0;
    if (kind === 2) bodyLength = varint();
    else for (let i = 0; i < 4; i++) bodyLength += mode(i) === 2 ? varint() : raws[i]!;
    out.push({ at, crcAt: p, kind, modes, bodyLength });
    if (kind === 255 || p + 8 > delta.length) break;
    p += 8 + bodyLength;
  }
  return out;
}

/** Recomputes every checksum so a forged change reaches the parser behind them. */
export function refreshChecksums(delta: Buffer): Buffer {
  const d = Buffer.from(delta);
  if (d.length >= HEADER) d.writeUInt32LE(crc32(d.subarray(0, 96)), 96);
  for (const f of frames(d)) {
    if (f.crcAt + 8 > d.length) break;
    const body = d.subarray(f.crcAt + 8, Math.min(d.length, f.crcAt + 8 + f.bodyLength));
    if (f.kind !== 255) d.writeUInt32LE(crc32(body), f.crcAt);
    d.writeUInt32LE(crc32(d.subarray(f.at, f.crcAt + 4)), f.crcAt + 4);
  }
  return d;
}
