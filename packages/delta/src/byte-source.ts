import { type FileHandle, open } from 'node:fs/promises';
import { DeltaError, ioError } from './errors.js';

/** Where delta bytes come from: a file path, bytes in memory, or any stream (an HTTP body). */
export type DeltaInput = string | Uint8Array | AsyncIterable<Uint8Array>;

const FILE_CHUNK = 64 * 1024;

/**
 * Pulls exact-size pieces out of a delta, front to back. It holds at most what was asked for plus
 * one incoming chunk, and every size asked for was checked against the limits first. Large
 * pieces (segment bodies) go straight into a buffer the caller reuses, so applying a big delta
 * does not churn memory.
 */
export class ByteSource {
  private it?: AsyncIterator<Uint8Array>;
  private file?: FileHandle;
  private filePos = 0;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  /** Bytes handed out so far (the offset of the next read in the delta). */
  offset = 0;

  /**
   * `signal`: when it aborts the input is closed at once, even while the caller waits on I/O that
   * never returns (a consumer frozen by a simulated power cut); later reads say ABORTED.
   */
  constructor(
    private readonly input: DeltaInput,
    private readonly signal?: AbortSignal,
  ) {
    signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  private readonly onAbort = () => {
    void this.close();
  };

  private throwIfAborted(): void {
    if (this.signal?.aborted) throw new DeltaError('FLOTILLA_ERR_DELTA_ABORTED');
  }

  private async openInput(): Promise<void> {
    if (this.it || this.file) return;
    const input = this.input;
    if (typeof input === 'string') {
      let file: FileHandle;
      try {
        file = await open(input, 'r');
      } catch (err) {
        throw ioError(`cannot open delta ${input}`, err);
      }
      if (this.ended) {
        // closed (aborted) while the open was under way
        await file.close();
        this.throwIfAborted();
      }
      this.file = file;
    } else if (input instanceof Uint8Array) {
      this.it = (async function* () {
        yield input;
      })();
    } else {
      this.it = input[Symbol.asyncIterator]();
    }
  }

  /** One more chunk into the buffer; false at the end of the input. */
  private async pull(): Promise<boolean> {
    this.throwIfAborted();
    if (this.ended) return false;
    await this.openInput();
    let chunk: Buffer | undefined;
    try {
      if (this.file) {
        const buf = Buffer.allocUnsafe(FILE_CHUNK);
        const { bytesRead } = await this.file.read(buf, 0, FILE_CHUNK, this.filePos);
        this.filePos += bytesRead;
        if (bytesRead > 0) chunk = buf.subarray(0, bytesRead);
      } else {
        for (;;) {
          const r = await this.it!.next();
          if (r.done) break;
          if (r.value.length === 0) continue;
          chunk = Buffer.isBuffer(r.value)
            ? r.value
            : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.length);
          break;
        }
      }
    } catch (err) {
      this.throwIfAborted();
      throw ioError('cannot read delta', err);
    }
    if (!chunk) {
      this.ended = true;
      return false;
    }
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    return true;
  }

  /** Moves up to n buffered bytes into `into` at `at`; returns how many. */
  private drainInto(into: Buffer, at: number, n: number): number {
    let done = 0;
    while (done < n && this.chunks.length > 0) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - done);
      c.copy(into, at + done, 0, k);
      done += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.buffered -= done;
    return done;
  }

  /** Exactly `n` bytes into `into` (which must hold them), or FLOTILLA_ERR_DELTA_TRUNCATED. */
  async readExactInto(into: Buffer, n: number, where: string): Promise<Buffer> {
    this.throwIfAborted();
    let done = this.drainInto(into, 0, n);
    if (this.file && !this.ended) {
      // Straight from the file into the caller's buffer: no intermediate chunks.
      try {
        while (done < n) {
          const { bytesRead } = await this.file.read(into, done, n - done, this.filePos);
          if (bytesRead === 0) break;
          this.filePos += bytesRead;
          done += bytesRead;
        }
      } catch (err) {
        this.throwIfAborted();
        throw ioError('cannot read delta', err);
      }
    }
    while (done < n && (await this.pull())) done += this.drainInto(into, done, n - done);
    this.offset += done;
    if (done < n) throw new DeltaError('FLOTILLA_ERR_DELTA_TRUNCATED', where);
    return into.subarray(0, n);
  }

  /** Exactly `n` bytes (small reads: headers), or FLOTILLA_ERR_DELTA_TRUNCATED. */
  async readExact(n: number, where: string): Promise<Buffer> {
    if (n === 1 && this.chunks.length > 0) {
      // Frame headers are read byte by byte.
      const c = this.chunks[0]!;
      const out = c.subarray(0, 1);
      if (c.length === 1) this.chunks.shift();
      else this.chunks[0] = c.subarray(1);
      this.buffered -= 1;
      this.offset += 1;
      return out;
    }
    return this.readExactInto(Buffer.allocUnsafe(n), n, where);
  }

  /** Up to `n` bytes (fewer only at the end of the input). */
  async readUpTo(n: number): Promise<Buffer> {
    while (this.buffered < n && (await this.pull())) {}
    const out = Buffer.allocUnsafe(Math.min(n, this.buffered));
    this.drainInto(out, 0, out.length);
    this.offset += out.length;
    return out;
  }

  async atEnd(): Promise<boolean> {
    if (this.buffered > 0) return false;
    return !(await this.pull());
  }

  /** Stops the underlying stream (closes the file or the HTTP body). */
  async close(): Promise<void> {
    this.signal?.removeEventListener('abort', this.onAbort);
    this.chunks = [];
    this.buffered = 0;
    this.ended = true;
    try {
      await this.file?.close();
      await this.it?.return?.();
    } catch {
      // Closing is best effort; the error that ended the apply is the one that matters.
    }
  }
}
