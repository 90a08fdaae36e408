import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { copyFile, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { ServerError } from '../errors.js';
import { type ArtifactFs, nodeArtifactFs } from './artifact-fs.js';
import { storageFault } from './storage-fault.js';

const SHA256_RE = /^[0-9a-f]{64}$/;

/** A temporary file being written; `close` before `commit`, `discard` on any failure. */
export interface TempFile {
  readonly path: string;
  write(data: Buffer): Promise<void>;
  close(): Promise<void>;
  discard(): Promise<void>;
}

/**
 * Content-addressed files: `<dir>/<ab>/<sha256>`. Writes go to a temporary file, are hashed on the
 * way, fsynced and renamed into place, so a crash never leaves a file whose name lies about it.
 * Every write goes through one `ArtifactFs`; a full disk surfaces as FLOTILLA_ERR_SERVER_STORAGE_FULL.
 */
export class ArtifactStore {
  private readonly tmp: string;

  /**
   * `node`: nodes sharing one artifact directory each write through `tmp/<node>`, so a node
   * starting up clears only its own leftovers, never another node's writes in progress.
   */
  constructor(
    readonly dir: string,
    private readonly fs: ArtifactFs = nodeArtifactFs,
    node?: string,
  ) {
    this.tmp = node ? join(dir, 'tmp', node) : join(dir, 'tmp');
    try {
      mkdirSync(this.tmp, { recursive: true });
      // Leftovers of writes a crash interrupted.
      rmSync(this.tmp, { recursive: true, force: true });
      mkdirSync(this.tmp, { recursive: true });
    } catch (err) {
      throw (
        storageFault(err, `artifact directory ${dir}`) ??
        new ServerError('FLOTILLA_ERR_SERVER_STORE', `artifact directory ${dir}: ${(err as Error).message}`, {
          cause: err,
        })
      );
    }
  }

  pathOf(sha256: string): string {
    return join(this.dir, ArtifactStore.relativePathOf(sha256));
  }

  /** `<ab>/<sha256>`: where an artifact lies under the store's directory (nginx maps the same). */
  static relativePathOf(sha256: string): string {
    if (!SHA256_RE.test(sha256)) throw new ServerError('FLOTILLA_ERR_SERVER_VALIDATION', 'not a sha256');
    return `${sha256.slice(0, 2)}/${sha256}`;
  }

  has(sha256: string): boolean {
    return existsSync(this.pathOf(sha256));
  }

  size(sha256: string): number {
    return statSync(this.pathOf(sha256)).size;
  }

  /** A fresh temporary path inside the store (same file system, so the final rename is atomic). */
  /** A new private directory under this node's temporary area (cleared at the next start). */
  tempDir(prefix: string): Promise<string> {
    return mkdtemp(join(this.tmp, prefix));
  }

  tempPath(suffix = ''): string {
    return join(this.tmp, `${randomBytes(8).toString('hex')}${suffix}`);
  }

  /**
   * A new temporary file written through the store's file system boundary. It is created at the
   * first write (a refused upload leaves nothing), and `discard` waits for the stream to close.
   */
  openTemp(suffix = ''): TempFile {
    const path = this.tempPath(suffix);
    let out: Writable | null = null;
    let failure: unknown = null;
    const fault = (err: unknown) => storageFault(err, 'writing an artifact') ?? err;
    const stream = (): Writable => {
      if (out) return out;
      out = this.fs.createWriteStream(path);
      // An error with no write waiting (e.g. while closing) must not crash the process.
      out.on('error', (err) => {
        failure ??= err;
      });
      return out;
    };
    return {
      path,
      async write(data) {
        const w = stream();
        if (failure) throw fault(failure);
        try {
          if (!w.write(data)) await once(w, 'drain');
        } catch (err) {
          throw fault(err);
        }
      },
      async close() {
        const w = stream();
        if (failure) throw fault(failure);
        w.end();
        await finished(w).catch((err) => {
          throw fault(err);
        });
      },
      async discard() {
        if (out && !out.closed) {
          const closed = once(out, 'close').catch(() => {});
          out.destroy();
          await closed;
        }
        await rm(path, { force: true });
      },
    };
  }

  /** Writes a stream (bounded by the caller) into a temp file; returns its path, sha256 and size. */
  async receive(source: AsyncIterable<Buffer>): Promise<{ path: string; sha256: string; size: number }> {
    const file = this.openTemp();
    const hash = createHash('sha256');
    let size = 0;
    try {
      for await (const chunk of source) {
        size += chunk.length;
        hash.update(chunk);
        await file.write(chunk);
      }
      await file.close();
    } catch (err) {
      await file.discard();
      throw err;
    }
    return { path: file.path, sha256: hash.digest('hex'), size };
  }

  /** Writes bytes to a new temp file (small files: an SBOM). */
  async writeTemp(bytes: Buffer, suffix = ''): Promise<string> {
    const file = this.openTemp(suffix);
    try {
      await file.write(bytes);
      await file.close();
    } catch (err) {
      await file.discard();
      throw err;
    }
    return file.path;
  }

  /**
   * Writes and removes a small probe file through the same boundary as every artifact: /healthz
   * fails while this fails, so a full or read-only disk is seen before the next upload hits it.
   */
  async probeWritable(): Promise<void> {
    await rm(await this.writeTemp(Buffer.alloc(4096), '.probe'), { force: true });
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
