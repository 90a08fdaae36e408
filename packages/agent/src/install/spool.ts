import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { type FileHandle, open, rm, stat, statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { DownloadSink } from '../download/downloader.js';
import { AgentError } from '../errors.js';

/**
 * The delta spool on the data partition: appended to, resumable after a crash (its length is the
 * resume point), bounded by the signed delta size and the free space kept in reserve.
 */
export class SpoolFile implements DownloadSink {
  private fh: FileHandle | null = null;
  private pos = 0;

  constructor(
    readonly path: string,
    private readonly size: number,
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

  async restart(): Promise<number> {
    if (!this.fh) {
      this.fh = await open(this.path, constants.O_RDWR | constants.O_CREAT, 0o600);
      this.pos = (await this.fh.stat()).size;
      if (this.pos > this.size) {
        await this.fh.truncate(0);
        this.pos = 0;
      }
    }
    return this.pos;
  }

  async write(data: Uint8Array): Promise<void> {
    if (this.pos + data.length > this.size)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_DOWNLOAD_TOO_LARGE',
        `delta larger than the signed ${this.size} bytes`,
      );
    await this.fh!.write(data, 0, data.length, this.pos);
    this.pos += data.length;
  }

  async close(): Promise<void> {
    if (this.fh) {
      await this.fh.sync();
      await this.fh.close();
      this.fh = null;
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
