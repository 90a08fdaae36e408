import { crc32 } from 'node:zlib';

/** Test-side knowledge of the layout (format.ts), to forge deltas an attacker could make. */
export const HEADER = 100;

export interface FrameAt {
  /** Offset of the frame header. */
  at: number;
  /** Offset of the frame crc (the body follows it). */
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
  while (p < delta.length) {
    const at = p;
    const kind = delta[p++]!;
    if (kind === 255) {
      out.push({ at, crcAt: p, kind, modes: 0, bodyLength: 0 });
      break;
    }
    const modes = delta[p++] ?? 0;
    varint();
    varint();
    const mode = (i: number) => (modes >> (2 * i)) & 3;
    const raws = [0, 1, 2, 3].map((i) => (mode(i) !== 0 ? varint() : 0));
    let bodyLength = 0;
    if (kind === 2) bodyLength = varint();
    else for (let i = 0; i < 4; i++) bodyLength += mode(i) === 2 ? varint() : raws[i]!;
    out.push({ at, crcAt: p, kind, modes, bodyLength });
    p += 4 + bodyLength;
  }
  return out;
}

/** Recomputes every checksum so a forged change reaches the parser behind them. */
export function refreshChecksums(delta: Buffer): Buffer {
  const d = Buffer.from(delta);
  if (d.length >= HEADER) d.writeUInt32LE(crc32(d.subarray(0, 96)), 96);
  for (const f of frames(d)) {
    if (f.kind === 255 || f.crcAt + 4 > d.length) break;
    const body = d.subarray(f.crcAt + 4, Math.min(d.length, f.crcAt + 4 + f.bodyLength));
    d.writeUInt32LE(crc32(body, crc32(d.subarray(f.at, f.crcAt))), f.crcAt);
  }
  return d;
}
