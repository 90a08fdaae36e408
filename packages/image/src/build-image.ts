import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdtemp, rename, rm, stat, truncate } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ImageFormat } from '@flotilla/protocol';
import { ImageError, ioError } from './errors.js';
import { buildErofs } from './fs-erofs.js';
import { buildExt4, type FsBuildParams } from './fs-ext4.js';
import { buildSquashfs } from './fs-squashfs.js';
import { IMAGE_LIMITS } from './limits.js';
import { type ModePolicy, type StagedTree, stageRootfs } from './tree.js';
import { isUuid, uuidFromName } from './units.js';

export const IMAGE_FORMATS: readonly ImageFormat[] = ['ext4', 'squashfs', 'erofs', 'raw'];
/** ext4: smallest deltas between versions of the formats measured (docs/images.md). */
export const DEFAULT_IMAGE_FORMAT: ImageFormat = 'ext4';

export interface ImageBuildSettings {
  format: ImageFormat;
  /** Bytes of the partition the image goes into; ext4 fills it exactly, the others must fit. */
  partitionSize: number;
  /** Timestamp on every file and in the superblock (seconds). */
  epoch?: number;
  /** Filesystem UUID (ext4 also uses it as the directory hash seed). Default: derived from `label`. */
  uuid?: string;
  label?: string;
  /** squashfs / erofs / raw: pad the image with zeros up to the partition size. */
  pad?: boolean;
  tmpDir?: string;
}

export interface BuildImageOptions extends ImageBuildSettings {
  /** A rootfs directory or tarball; for `raw`, an existing image file. */
  input: string;
  output: string;
  modes?: ModePolicy;
  modeOverrides?: Record<string, number>;
  onProgress?: (phase: string) => void;
}

export interface BuiltImage {
  path: string;
  format: ImageFormat;
  size: number;
  sha256: string;
  partitionSize: number;
  epoch: number;
  uuid: string;
  /** Digest of the normalised input tree (null for raw). */
  treeDigest: string | null;
  files: number;
  contentBytes: number;
}

/** Builds one partition image, reproducibly. Nothing is left at `output` if it fails. */
export async function buildImage(opts: BuildImageOptions): Promise<BuiltImage> {
  checkSettings(opts);
  if (opts.format === 'raw') return buildRaw(opts);
  return withStagedTree(opts, (tree) => buildImageFromTree(tree, opts));
}

/**
 * Stages the rootfs input as the options say (modes, epoch, temp dir), runs `use` on the staged
 * tree and removes the tree afterwards, whatever happened: the one place a build stages a tree.
 */
export async function withStagedTree<T>(
  opts: Pick<BuildImageOptions, 'input' | 'modes' | 'modeOverrides' | 'epoch' | 'tmpDir' | 'onProgress'>,
  use: (tree: StagedTree) => Promise<T>,
): Promise<T> {
  opts.onProgress?.('staging');
  const tree = await stageRootfs(opts.input, {
    modes: opts.modes,
    modeOverrides: opts.modeOverrides,
    epoch: opts.epoch,
    tmpDir: opts.tmpDir,
  });
  try {
    return await use(tree);
  } finally {
    await tree.cleanup();
  }
}

/** Builds a filesystem image from an already staged tree (the release builder reuses the tree for the SBOM). */
export async function buildImageFromTree(
  tree: StagedTree,
  opts: ImageBuildSettings & { output: string; onProgress?: (phase: string) => void },
): Promise<BuiltImage> {
  checkSettings(opts);
  if (opts.format === 'raw')
    throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', 'raw images are not built from a tree');
  const epoch = opts.epoch ?? IMAGE_LIMITS.defaultSourceDateEpoch;
  const label = opts.label ?? 'rootfs';
  const uuid = opts.uuid ?? uuidFromName(`fs:${label}`);
  const work = await mkdtemp(join(dirname(opts.output), '.flotilla-build-')).catch((err) => {
    throw ioError(`cannot write next to ${opts.output}`, err);
  });
  const tmp = join(work, 'image');
  try {
    const params: FsBuildParams = {
      tree,
      output: tmp,
      partitionSize: opts.partitionSize,
      epoch,
      uuid,
      label,
    };
    opts.onProgress?.(`mkfs.${opts.format}`);
    if (opts.format === 'ext4') await buildExt4(params);
    else if (opts.format === 'squashfs') await buildSquashfs(params);
    else await buildErofs(params);
    const size = await fitPartition(tmp, opts);
    opts.onProgress?.('hashing');
    const sha256 = await sha256File(tmp);
    await rename(tmp, opts.output).catch((err) => {
      throw ioError(`cannot write ${opts.output}`, err);
    });
    return {
      path: opts.output,
      format: opts.format,
      size,
      sha256,
      partitionSize: opts.partitionSize,
      epoch,
      uuid,
      treeDigest: tree.digest,
      files: tree.entries.length,
      contentBytes: tree.contentBytes,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function buildRaw(opts: BuildImageOptions): Promise<BuiltImage> {
  const st = await stat(opts.input).catch((err) => {
    if ((err as { code?: string }).code === 'ENOENT')
      throw new ImageError('FLOTILLA_ERR_IMAGE_INPUT_MISSING', opts.input);
    throw ioError(`cannot read ${opts.input}`, err);
  });
  if (!st.isFile())
    throw new ImageError('FLOTILLA_ERR_IMAGE_INPUT_INVALID', `raw input ${opts.input} is not a file`);
  const work = await mkdtemp(join(dirname(opts.output), '.flotilla-build-'));
  const tmp = join(work, 'image');
  try {
    await copyFile(opts.input, tmp);
    const size = await fitPartition(tmp, opts);
    const sha256 = await sha256File(tmp);
    await rename(tmp, opts.output);
    return {
      path: opts.output,
      format: 'raw',
      size,
      sha256,
      partitionSize: opts.partitionSize,
      epoch: opts.epoch ?? IMAGE_LIMITS.defaultSourceDateEpoch,
      uuid: '',
      treeDigest: null,
      files: 0,
      contentBytes: st.size,
    };
  } catch (err) {
    throw ioError(`cannot build raw image from ${opts.input}`, err);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function fitPartition(path: string, opts: ImageBuildSettings): Promise<number> {
  const { size } = await stat(path);
  if (size > opts.partitionSize)
    throw new ImageError(
      'FLOTILLA_ERR_IMAGE_TOO_LARGE',
      `${opts.format} image is ${size} bytes, partition ${opts.partitionSize}`,
    );
  if (opts.pad && size < opts.partitionSize) {
    await truncate(path, opts.partitionSize);
    return opts.partitionSize;
  }
  return size;
}

function checkSettings(opts: ImageBuildSettings): void {
  if (!IMAGE_FORMATS.includes(opts.format))
    throw new ImageError(
      'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT',
      `format '${opts.format}' (use ${IMAGE_FORMATS.join(', ')})`,
    );
  if (
    !Number.isSafeInteger(opts.partitionSize) ||
    opts.partitionSize < 256 * 1024 ||
    opts.partitionSize % 4096 !== 0
  )
    throw new ImageError(
      'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT',
      `partition size ${opts.partitionSize}: a multiple of 4096, at least 256 KiB`,
    );
  if (opts.uuid !== undefined && !isUuid(opts.uuid))
    throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', `uuid '${opts.uuid}' (lowercase 8-4-4-4-12 hex)`);
  if (
    opts.epoch !== undefined &&
    (!Number.isSafeInteger(opts.epoch) || opts.epoch < 0 || opts.epoch > 0xffffffff)
  )
    throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', `epoch ${opts.epoch}`);
  if (opts.label !== undefined && !/^[A-Za-z0-9._-]{1,16}$/.test(opts.label))
    throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', `label '${opts.label}' (1-16 of [A-Za-z0-9._-])`);
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 }))
      h.update(chunk as Buffer);
  } catch (err) {
    throw ioError(`cannot read ${path}`, err);
  }
  return h.digest('hex');
}
