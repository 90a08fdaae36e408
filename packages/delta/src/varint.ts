import { DeltaError } from './errors.js';

/** A growable byte buffer for the control stream (LEB128 varints). */
export class VarintWriter {
  private buf = Buffer.allocUnsafe(4096);
  length = 0;

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  /** Unsigned LEB128 of a safe integer ≥ 0. */
  uint(v: number): void {
    this.ensure(10);
    let x = v;
    while (x >= 0x80) {
      this.buf[this.length++] = (x % 0x80) | 0x80;
      x = Math.floor(x / 0x80);
    }
    this.buf[this.length++] = x;
  }

  /** Zigzag-signed: 0, -1, 1, -2 … map to 0, 1, 2, 3 … */
  int(v: number): void {
    this.uint(v < 0 ? -v * 2 - 1 : v * 2);
  }

  take(): Buffer {
    const out = Buffer.from(this.buf.subarray(0, this.length));
    this.length = 0;
    return out;
  }
}

/** Reads varints from a control stream; any overrun or oversized value is a corrupt payload. */
export class VarintReader {
  pos = 0;
  constructor(private readonly buf: Uint8Array) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  uint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.pos >= this.buf.length) {
        throw new DeltaError('FLOTILLA_ERR_DELTA_PAYLOAD_CORRUPT', 'control stream ends inside a number');
      }
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 0x80;
    }
    throw new DeltaError('FLOTILLA_ERR_DELTA_PAYLOAD_CORRUPT', 'control number too large');
  }

  int(): number {
    const z = this.uint();
    return z % 2 === 1 ? -(z + 1) / 2 : z / 2;
  }
}
