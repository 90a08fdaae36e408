import { randomBytes } from 'node:crypto';
import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { type EncodeOptions, type EncodeStats, encodeDelta } from './create.js';
import { DeltaError, ioError } from './errors.js';
import { DELTA_LIMITS } from './limits.js';
import { sameFile } from './same-file.js';

export interface CreateDeltaOptions extends EncodeOptions {
  basePath: string;
  targetPath: string;
  /** Written atomically: a temporary file renamed into place when complete. */
  outPath: string;
}

async function readImage(path: string, what: string): Promise<Buffer> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    throw ioError(`cannot read ${what} ${path}`, err);
  }
  if (size > DELTA_LIMITS.maxCreateInputSize) {
    throw new DeltaError('FLOTILLA_ERR_DELTA_INPUT_TOO_LARGE', `${what} is ${size} bytes`);
  }
  try {
    return await readFile(path);
  } catch (err) {
    throw ioError(`cannot read ${what} ${path}`, err);
  }
}

/** Makes the delta from the image at `basePath` to the one at `targetPath` into `outPath`. */
export async function createDelta(opts: CreateDeltaOptions): Promise<EncodeStats> {
  for (const input of [opts.basePath, opts.targetPath]) {
    if (await sameFile(input, opts.outPath))
      throw new DeltaError('FLOTILLA_ERR_DELTA_OUTPUT_IS_INPUT', opts.outPath);
  }
  const base = await readImage(opts.basePath, 'base');
  const target = await readImage(opts.targetPath, 'target');
  const temp = join(
    dirname(opts.outPath),
    `.${basename(opts.outPath)}.partial-${randomBytes(6).toString('hex')}`,
  );
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(temp, 'wx', 0o644);
  } catch (err) {
    throw ioError(`cannot create output ${temp}`, err);
  }
  let done = false;
  try {
    const stats = await encodeDelta(
      base,
      target,
      async (chunk) => {
        try {
          await fh.write(chunk);
        } catch (err) {
          throw ioError(`cannot write ${temp}`, err);
        }
      },
      opts,
    );
    try {
      await fh.sync();
      await fh.close();
      done = true;
      await rename(temp, opts.outPath);
    } catch (err) {
      throw ioError(`cannot finish ${opts.outPath}`, err);
    }
    return stats;
  } catch (err) {
    if (!done) await fh.close().catch(() => {});
    await unlink(temp).catch(() => {});
    throw err;
  }
}
