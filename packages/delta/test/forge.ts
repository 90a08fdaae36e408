import { crc32 } from 'node:zlib';

/** Test-side knowledge of the layout (format.ts), to forge deltas an attacker could make. */
export const HEADER = 100;
export const FRAME = 56;

export interface FrameAt {
  at: number;
  kind: number;
  bodyLength: number;
}

/** Walks the frames by their declared lengths (stops at the end frame or the end of the bytes). */
export function frames(delta: Buffer): FrameAt[] {
  const out: FrameAt[] = [];
  let at = HEADER;
  while (at + FRAME <= delta.length) {
    const kind = delta[at]!;
    let bodyLength = 0;
    for (let i = 0; i < 4; i++) bodyLength += delta.readUInt32LE(at + 20 + 8 * i);
    out.push({ at, kind, bodyLength });
    if (kind === 255) break;
    at += FRAME + bodyLength;
  }
  return out;
}

/** Recomputes every checksum so a forged change reaches the parser behind them. */
export function refreshChecksums(delta: Buffer): Buffer {
  const d = Buffer.from(delta);
  if (d.length >= HEADER) d.writeUInt32LE(crc32(d.subarray(0, 96)), 96);
  for (const f of frames(d)) {
    const bodyEnd = Math.min(d.length, f.at + FRAME + f.bodyLength);
    d.writeUInt32LE(crc32(d.subarray(f.at + FRAME, bodyEnd)), f.at + 48);
    d.writeUInt32LE(crc32(d.subarray(f.at, f.at + 52)), f.at + 52);
  }
  return d;
}
