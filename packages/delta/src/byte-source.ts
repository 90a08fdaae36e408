import { open } from 'node:fs/promises';
import { DeltaError, ioError } from './errors.js';

/** Where delta bytes come from: a file path, bytes in memory, or any stream (an HTTP body). */
export type DeltaInput = string | Uint8Array | AsyncIterable<Uint8Array>;

/** A file's bytes in 1 MiB chunks; opening happens on the first read, so errors surface there. */
async function* readFileChunks(path: string): AsyncGenerator<Buffer> {
  const fh = await open(path, 'r').catch((err) => {
    throw ioError(`cannot open delta ${path}`, err);
  });
  try {
    for (;;) {
      const buf = Buffer.allocUnsafe(1024 * 1024);
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) return;
      yield buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

/**
 * Pulls exact-size pieces out of a chunked byte stream. It only ever holds what was asked for
 * plus one incoming chunk, and every size asked for was checked against the limits first.
 */
export class ByteSource {
  private readonly it: AsyncIterator<Uint8Array>;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  /** Bytes handed out so far (the offset of the next read in the delta). */
  offset = 0;

  constructor(input: DeltaInput) {
    let iterable: AsyncIterable<Uint8Array>;
    if (typeof input === 'string') {
      iterable = readFileChunks(input);
    } else if (input instanceof Uint8Array) {
      iterable = (async function* () {
        yield input;
      })();
    } else {
      iterable = input;
    }
    this.it = iterable[Symbol.asyncIterator]();
  }

  private async fill(n: number): Promise<void> {
    while (this.buffered < n && !this.ended) {
      let r: IteratorResult<Uint8Array>;
      try {
        r = await this.it.next();
      } catch (err) {
        throw ioError('cannot read delta', err);
      }
      if (r.done) {
        this.ended = true;
        break;
      }
      if (r.value.length === 0) continue;
      const chunk = Buffer.isBuffer(r.value)
        ? r.value
        : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.length);
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    let out: Buffer;
    const first = this.chunks[0]!;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - at);
        c.copy(out, at, 0, k);
        at += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    this.offset += n;
    return out;
  }

  /** Exactly `n` bytes, or FLOTILLA_ERR_DELTA_TRUNCATED. */
  async readExact(n: number, where: string): Promise<Buffer> {
    if (n === 0) return Buffer.alloc(0);
    await this.fill(n);
    if (this.buffered < n) throw new DeltaError('FLOTILLA_ERR_DELTA_TRUNCATED', where);
    return this.take(n);
  }

  /** Up to `n` bytes (fewer only at the end of the input). */
  async readUpTo(n: number): Promise<Buffer> {
    await this.fill(n);
    return this.take(Math.min(n, this.buffered));
  }

  async atEnd(): Promise<boolean> {
    await this.fill(1);
    return this.buffered === 0;
  }

  /** Stops the underlying stream (closes the file or the HTTP body). */
  async close(): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    try {
      await this.it.return?.();
    } catch {
      // Closing is best effort; the error that ended the apply is the one that matters.
    }
  }
}
