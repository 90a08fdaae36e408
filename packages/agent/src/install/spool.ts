import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { type FileHandle, open, rm, stat, statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { DownloadSink } from '../download/downloader.js';
import { AgentError } from '../errors.js';

export interface SpoolCheckpoints {
  /** Bytes known durable (fsynced, then persisted) from an earlier life; the resume point. */
  durableBytes: number;
  /** fsync and persist a new durable length every this many bytes. */
  everyBytes: number;
  save(durableBytes: number): Promise<void>;
  /** Fault injection (tests, simulator): called before each write, may throw AgentKilled. */
  faults?: (point: string) => void;
}

/**
 * The delta spool on the data partition: appended to, bounded by the signed delta size and the
 * free space kept in reserve. After a power cut it resumes from the last durable checkpoint, not
 * from its length: bytes written after the last fsync may be lost or zeros on a real device.
 *
 * `signal` (the deployment's): when it aborts — the agent stops or dies — the file is closed at
 * once, even while a write waits on I/O that never returns (a simulated power cut freezes the
 * agent there), as the kernel closes the files of a process that died.
 */
export class SpoolFile implements DownloadSink {
  private fh: FileHandle | null = null;
  private pos = 0;
  private sinceCheckpoint = 0;
  private readonly release = () => {
    const fh = this.fh;
    this.fh = null;
    fh?.close().catch(() => undefined);
  };

  constructor(
    readonly path: string,
    private readonly size: number,
    private readonly checkpoints: SpoolCheckpoints = {
      durableBytes: 0,
      everyBytes: Number.MAX_SAFE_INTEGER,
      save: async () => undefined,
    },
    private readonly signal?: AbortSignal,
  ) {}

  static async checkSpace(path: string, size: number, maxSpool: number, reserve: number): Promise<void> {
    if (size > maxSpool)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_SPOOL_FULL',
        `delta is ${size} bytes, spool limit ${maxSpool}`,
      );
    const have = await stat(path).then(
      (s) => s.size,
      () => 0,
    );
    const fs = await statfs(dirname(path));
    const free = fs.bavail * fs.bsize;
    if (free - reserve < size - have)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_SPOOL_FULL',
        `${free} bytes free, need ${size - have} + ${reserve}`,
      );
  }

  /**
   * First call of a life: cut the file back to its durable length (a shorter file, or one longer
   * than the delta, starts over). Later calls (a retry within the life) keep what was written:
   * the page cache still holds it.
   */
  async restart(): Promise<number> {
    if (!this.fh) {
      this.signal?.throwIfAborted();
      this.fh = await open(this.path, constants.O_RDWR | constants.O_CREAT, 0o600);
      this.signal?.addEventListener('abort', this.release, { once: true });
      if (this.signal?.aborted) this.release();
      const have = (await this.file().stat()).size;
      const durable = this.checkpoints.durableBytes;
      this.pos = durable <= have && durable <= this.size ? durable : 0;
      if (have !== this.pos) await this.file().truncate(this.pos);
    }
    return this.pos;
  }

  /** The open spool; once the signal released it, the signal's reason. */
  private file(): FileHandle {
    if (this.fh) return this.fh;
    this.signal?.throwIfAborted();
    throw new AgentError('FLOTILLA_ERR_AGENT_IO', `${this.path} is not open`);
  }

  async write(data: Uint8Array): Promise<void> {
    if (this.pos + data.length > this.size)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_DOWNLOAD_TOO_LARGE',
        `delta larger than the signed ${this.size} bytes`,
      );
    try {
      this.checkpoints.faults?.('io:spool-write');
    } catch (err) {
      // A power cut mid-write: the file grew but the data never reached the disk.
      await this.fh
        ?.write(Buffer.alloc(data.length >> 1), 0, data.length >> 1, this.pos)
        .catch(() => undefined);
      throw err;
    }
    await this.file().write(data, 0, data.length, this.pos);
    this.pos += data.length;
    this.sinceCheckpoint += data.length;
    if (this.sinceCheckpoint >= this.checkpoints.everyBytes) {
      this.sinceCheckpoint = 0;
      await this.file().sync();
      await this.checkpoints.save(this.pos);
    }
  }

  /** The whole delta arrived: make it durable and record that (a cut now resumes nothing). */
  async complete(): Promise<void> {
    await this.file().sync();
    this.sinceCheckpoint = 0;
    await this.checkpoints.save(this.pos);
  }

  async close(): Promise<void> {
    const fh = this.fh;
    if (!fh) return;
    this.fh = null;
    this.signal?.removeEventListener('abort', this.release);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  static async sha256(path: string): Promise<string> {
    const h = createHash('sha256');
    for await (const piece of createReadStream(path, { highWaterMark: 1024 * 1024 }))
      h.update(piece as Buffer);
    return h.digest('hex');
  }

  static remove(path: string): Promise<void> {
    return rm(path, { force: true });
  }
}
