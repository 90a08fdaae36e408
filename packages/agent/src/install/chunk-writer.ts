import { createHash } from 'node:crypto';
import type { ImageDescriptor } from '@flotilla/protocol';
import type { DownloadSink } from '../download/downloader.js';
import { AgentError } from '../errors.js';
import type { SlotWriter } from '../slots/slot-device.js';

/**
 * Verify before write: bytes are gathered into one chunk, its hash checked against the signed
 * manifest, and only then written to the inactive slot. Every `checkpointBytes` the slot is
 * fsynced and the count of verified chunks persisted, so a power cut resumes from there.
 * Memory: one chunk buffer, whatever the image size.
 */
export class ChunkWriter implements DownloadSink {
  private readonly buf: Buffer;
  private fill = 0;
  private sinceCheckpoint = 0;
  private readonly chunks: number;

  constructor(
    private readonly writer: SlotWriter,
    private readonly image: Pick<ImageDescriptor, 'size' | 'chunkSize' | 'chunkHashes'>,
    private verified: number,
    private readonly checkpoint: { everyBytes: number; save(verifiedChunks: number): Promise<void> },
  ) {
    this.chunks = Math.ceil(image.size / image.chunkSize);
    this.buf = Buffer.allocUnsafe(Math.min(image.chunkSize, Math.max(image.size, 1)));
  }

  get verifiedChunks(): number {
    return this.verified;
  }

  /** Resume point: the first byte of the first unverified chunk (a partial chunk is dropped). */
  async restart(): Promise<number> {
    this.fill = 0;
    return Math.min(this.image.size, this.verified * this.image.chunkSize);
  }

  private expectedLength(i: number): number {
    return Math.min(this.image.chunkSize, this.image.size - i * this.image.chunkSize);
  }

  async write(data: Uint8Array): Promise<void> {
    let at = 0;
    while (at < data.length) {
      if (this.verified >= this.chunks)
        throw new AgentError('FLOTILLA_ERR_AGENT_DOWNLOAD_TOO_LARGE', 'bytes after the last chunk');
      const want = this.expectedLength(this.verified) - this.fill;
      const n = Math.min(want, data.length - at);
      this.buf.set(data.subarray(at, at + n), this.fill);
      this.fill += n;
      at += n;
      if (this.fill === this.expectedLength(this.verified)) await this.commitChunk();
    }
  }

  private async commitChunk(): Promise<void> {
    const i = this.verified;
    const bytes = this.buf.subarray(0, this.fill);
    this.fill = 0;
    if (createHash('sha256').update(bytes).digest('hex') !== this.image.chunkHashes[i])
      throw new AgentError('FLOTILLA_ERR_AGENT_CHUNK_HASH_MISMATCH', `chunk ${i} of ${this.chunks}`, {
        component: 'installer',
      });
    await this.writer.write(bytes, i * this.image.chunkSize);
    this.verified++;
    this.sinceCheckpoint += bytes.length;
    if (this.sinceCheckpoint >= this.checkpoint.everyBytes) {
      this.sinceCheckpoint = 0;
      await this.writer.sync();
      await this.checkpoint.save(this.verified);
    }
  }

  /** All chunks verified and durable; throws if the stream ended early. */
  async finish(): Promise<void> {
    if (this.verified !== this.chunks)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_IMAGE_HASH_MISMATCH',
        `only ${this.verified} of ${this.chunks} chunks`,
      );
    await this.writer.sync();
    await this.checkpoint.save(this.verified);
  }
}
