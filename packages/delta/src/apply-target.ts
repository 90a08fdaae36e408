import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ioError } from './errors.js';

/**
 * Where `applyDelta` writes the target image, strictly in order. The decoder calls `begin` once,
 * then `write` for each chunk (at most 1 MiB; its memory is reused once the returned promise
 * resolves, so copy it to keep it), then exactly one of
 * `commit` — only after the whole target hashed to the expected sha256 — or `abort`.
 * A slot writer should treat the slot as invalid until `commit`.
 */
export interface DeltaApplyTarget {
  begin?(info: { targetSize: number; targetSha256: string }): Promise<void>;
  write(chunk: Buffer): Promise<void>;
  commit(): Promise<void>;
  abort(reason: unknown): Promise<void>;
}

async function writeAll(fh: FileHandle, chunk: Buffer, position: number | null): Promise<void> {
  let done = 0;
  while (done < chunk.length) {
    const { bytesWritten } = await fh.write(
      chunk,
      done,
      chunk.length - done,
      position === null ? null : position + done,
    );
    done += bytesWritten;
  }
}

/**
 * Writes a regular file atomically: into a temporary name next to it, renamed over `path` only on
 * commit, removed on abort. A block device (a slot) is written in place from offset 0.
 */
export async function openFileTarget(
  path: string,
): Promise<DeltaApplyTarget & { readonly tempPath?: string }> {
  let isDevice = false;
  try {
    const st = await stat(path);
    isDevice = st.isBlockDevice() || st.isCharacterDevice();
  } catch {
    // A new file.
  }
  const temp = isDevice
    ? path
    : join(dirname(path), `.${basename(path)}.partial-${randomBytes(6).toString('hex')}`);
  let fh: FileHandle;
  try {
    fh = await open(temp, isDevice ? 'r+' : 'wx', 0o644);
  } catch (err) {
    throw ioError(`cannot create output ${temp}`, err);
  }
  let position = 0;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await fh.close();
  };
  return {
    tempPath: isDevice ? undefined : temp,
    async write(chunk) {
      try {
        await writeAll(fh, chunk, position);
        position += chunk.length;
      } catch (err) {
        throw ioError(`cannot write output ${temp}`, err);
      }
    },
    async commit() {
      try {
        await fh.sync();
        await close();
        if (isDevice) return;
        await rename(temp, path);
        // Make the rename itself durable.
        const dir = await open(dirname(path), 'r');
        try {
          await dir.sync();
        } finally {
          await dir.close();
        }
      } catch (err) {
        throw ioError(`cannot finish output ${path}`, err);
      }
    },
    async abort() {
      await close().catch(() => {});
      if (!isDevice) await unlink(temp).catch(() => {});
    },
  };
}
