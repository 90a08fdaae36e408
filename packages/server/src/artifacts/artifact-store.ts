import { createHash, randomBytes } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { copyFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ServerError } from '../errors.js';

const SHA256_RE = /^[0-9a-f]{64}$/;

/**
 * Content-addressed files: `<dir>/<ab>/<sha256>`. Writes go to a temporary file, are hashed on the
 * way, fsynced and renamed into place, so a crash never leaves a file whose name lies about it.
 */
export class ArtifactStore {
  private readonly tmp: string;

  constructor(readonly dir: string) {
    this.tmp = join(dir, 'tmp');
    mkdirSync(this.tmp, { recursive: true });
    // Leftovers of writes a crash interrupted.
    rmSync(this.tmp, { recursive: true, force: true });
    mkdirSync(this.tmp, { recursive: true });
  }

  pathOf(sha256: string): string {
    if (!SHA256_RE.test(sha256)) throw new ServerError('FLOTILLA_ERR_SERVER_VALIDATION', 'not a sha256');
    return join(this.dir, sha256.slice(0, 2), sha256);
  }

  has(sha256: string): boolean {
    return existsSync(this.pathOf(sha256));
  }

  size(sha256: string): number {
    return statSync(this.pathOf(sha256)).size;
  }

  /** A fresh temporary path inside the store (same file system, so the final rename is atomic). */
  tempPath(suffix = ''): string {
    return join(this.tmp, `${randomBytes(8).toString('hex')}${suffix}`);
  }

  /** Streams into a temp file with a size cap; returns its path, sha256 and size. */
  async receive(source: Readable, maxBytes: number): Promise<{ path: string; sha256: string; size: number }> {
    const path = this.tempPath();
    const hash = createHash('sha256');
    let size = 0;
    try {
      await pipeline(
        source,
        async function* (chunks: AsyncIterable<Buffer>) {
          for await (const chunk of chunks) {
            size += chunk.length;
            if (size > maxBytes)
              throw new ServerError('FLOTILLA_ERR_SERVER_UPLOAD_TOO_LARGE', `over ${maxBytes} bytes`);
            hash.update(chunk);
            yield chunk;
          }
        },
        createWriteStream(path, { flags: 'wx' }),
      );
    } catch (err) {
      await rm(path, { force: true });
      throw err;
    }
    return { path, sha256: hash.digest('hex'), size };
  }

  /** Moves (or copies) a finished file into place under its hash; checks the hash first. */
  async adopt(path: string, opts: { move: boolean }): Promise<{ sha256: string; size: number }> {
    const sha256 = await hashFile(path);
    const dest = this.pathOf(sha256);
    mkdirSync(join(this.dir, sha256.slice(0, 2)), { recursive: true });
    if (existsSync(dest)) {
      if (opts.move) await rm(path, { force: true });
    } else if (opts.move) {
      await rename(path, dest);
    } else {
      const tmp = this.tempPath();
      await copyFile(path, tmp);
      await rename(tmp, dest);
    }
    return { sha256, size: (await stat(dest)).size };
  }

  /** Places a temp file whose hash the caller computed while writing it. */
  commit(tempPath: string, sha256: string): void {
    const dest = this.pathOf(sha256);
    mkdirSync(join(this.dir, sha256.slice(0, 2)), { recursive: true });
    if (existsSync(dest)) rmSync(tempPath, { force: true });
    else renameSync(tempPath, dest);
  }

  open(sha256: string, range?: { start: number; end: number }): Readable {
    return createReadStream(this.pathOf(sha256), range ?? {});
  }

  remove(sha256: string): void {
    rmSync(this.pathOf(sha256), { force: true });
  }
}

export async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}
