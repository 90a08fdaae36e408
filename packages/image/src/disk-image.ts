import { createReadStream } from 'node:fs';
import { mkdtemp, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ReleaseManifest, RootMetadata } from '@flotilla/protocol';
import { readBundle } from './bundle-reader.js';
import { ImageError, ioError } from './errors.js';
import { makeExt4 } from './fs-ext4.js';
import { buildGpt, GPT_TYPES, type GptPartition, SECTOR } from './gpt.js';
import { IMAGE_LIMITS } from './limits.js';
import { factoryEnv, makeUbootEnv } from './uboot-env.js';
import { uuidFromName } from './units.js';

const MiB = 1024 * 1024;

export interface DiskPartitionPlan {
  index: number;
  name: 'uboot-env' | 'rootfs-A' | 'rootfs-B' | 'data';
  offset: number;
  size: number;
  typeGuid: string;
  guid: string;
}

export interface DiskPlan {
  totalSize: number;
  diskGuid: string;
  partitions: DiskPartitionPlan[];
}

export interface DiskLayoutOptions {
  /** Bytes of each root slot; default: the image size rounded up to 1 MiB. */
  slotSize?: number;
  /** Bytes of the data partition (default 16 MiB). */
  dataSize?: number;
}

/**
 * The factory layout, every partition 1 MiB-aligned:
 *   1 uboot-env  1 MiB   redundant U-Boot environment at 0 and 0x4000 (see fw_env.config)
 *   2 rootfs-A   slot    the release image; the environment boots it
 *   3 rootfs-B   slot    empty, the first update goes here
 *   4 data       data    empty ext4 labelled "data" for state that survives updates
 * GUIDs are derived from the image hash, so the same release gives the same disk image.
 */
export function planDisk(
  manifest: Pick<ReleaseManifest, 'image' | 'name'>,
  opts: DiskLayoutOptions = {},
): DiskPlan {
  const slot = opts.slotSize ?? Math.ceil(manifest.image.size / MiB) * MiB;
  const data = opts.dataSize ?? 16 * MiB;
  if (slot % MiB !== 0 || data % MiB !== 0 || data < MiB)
    throw new ImageError(
      'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT',
      'slot and data sizes are whole MiB (data at least 1 MiB)',
    );
  if (slot < manifest.image.size)
    throw new ImageError(
      'FLOTILLA_ERR_IMAGE_TOO_LARGE',
      `image of ${manifest.image.size} bytes, slot of ${slot}`,
    );
  const seed = `disk:${manifest.name}:${manifest.image.sha256}`;
  const parts: Omit<DiskPartitionPlan, 'offset' | 'index' | 'guid'>[] = [
    { name: 'uboot-env', size: MiB, typeGuid: GPT_TYPES.ubootEnv },
    { name: 'rootfs-A', size: slot, typeGuid: GPT_TYPES.linuxData },
    { name: 'rootfs-B', size: slot, typeGuid: GPT_TYPES.linuxData },
    { name: 'data', size: data, typeGuid: GPT_TYPES.linuxData },
  ];
  let offset = MiB; // room for the primary GPT, aligned for eMMC erase blocks
  const partitions = parts.map((p, i) => {
    const out = { ...p, index: i + 1, offset, guid: uuidFromName(`${seed}:${p.name}`).toUpperCase() };
    offset += p.size;
    return out;
  });
  return { totalSize: offset + MiB, diskGuid: uuidFromName(seed).toUpperCase(), partitions };
}

export interface BuildDiskOptions extends DiskLayoutOptions {
  /** The release bundle (.flot). */
  bundlePath: string;
  root: RootMetadata;
  now?: Date;
  /** Accept recovery images too (a recovery disk). Default: releases only. */
  allowRecovery?: boolean;
  output: string;
  onProgress?: (done: number, total: number) => void;
}

export interface DiskSummary {
  path: string;
  size: number;
  manifest: ReleaseManifest;
  plan: DiskPlan;
}

/**
 * Writes a whole-disk image from a release bundle: the bundle is verified while it streams
 * into slot A of a temporary file, which only becomes `output` after the bundle's final check.
 */
export async function buildDiskImage(opts: BuildDiskOptions): Promise<DiskSummary> {
  await requireFile(opts.bundlePath);
  const work = await mkdtemp(join(dirname(opts.output), '.flotilla-disk-')).catch((err) => {
    throw ioError(`cannot write next to ${opts.output}`, err);
  });
  const tmp = join(work, 'disk.img');
  try {
    const fh = await open(tmp, 'w+');
    let manifest: ReleaseManifest | undefined;
    let plan: DiskPlan | undefined;
    try {
      const source = createReadStream(opts.bundlePath, { highWaterMark: MiB });
      const allowKinds: ReleaseManifest['kind'][] = opts.allowRecovery
        ? ['release', 'recovery']
        : ['release'];
      let ended = false;
      for await (const part of readBundle(source, {
        root: opts.root,
        now: opts.now ?? new Date(),
        allowKinds,
      })) {
        if (part.type === 'manifest') {
          manifest = part.manifest;
          plan = planDisk(manifest, opts);
          await fh.truncate(plan.totalSize);
        } else if (part.type === 'chunk') {
          await fh.write(part.data, 0, part.data.length, plan!.partitions[1]!.offset + part.offset);
          opts.onProgress?.(part.offset + part.data.length, manifest!.image.size);
        } else if (part.type === 'end') ended = true;
      }
      if (!ended || !manifest || !plan)
        throw new ImageError('FLOTILLA_ERR_BUNDLE_TRUNCATED', opts.bundlePath);
      await writeLayout(fh, plan, work);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, opts.output);
    return { path: opts.output, size: plan.totalSize, manifest, plan };
  } catch (err) {
    throw ioError(`cannot build disk image ${opts.output}`, err);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Partition table, boot environment and an empty data filesystem around an already written slot A. */
async function writeLayout(
  fh: Awaited<ReturnType<typeof open>>,
  plan: DiskPlan,
  work: string,
): Promise<void> {
  const gptParts: GptPartition[] = plan.partitions.map((p) => ({
    name: p.name,
    typeGuid: p.typeGuid,
    guid: p.guid,
    firstLba: p.offset / SECTOR,
    lastLba: (p.offset + p.size) / SECTOR - 1,
  }));
  const gpt = buildGpt(plan.totalSize, plan.diskGuid, gptParts);
  await fh.write(gpt.head, 0, gpt.head.length, 0);
  await fh.write(gpt.tail, 0, gpt.tail.length, gpt.tailOffset);
  const env = await makeUbootEnv(factoryEnv('A'), { redundant: true });
  const envPart = plan.partitions[0]!;
  await fh.write(env, 0, env.length, envPart.offset);
  await fh.write(env, 0, env.length, envPart.offset + IMAGE_LIMITS.ubootEnvSize);
  const dataPart = plan.partitions[3]!;
  const dataImg = join(work, 'data.img');
  const uuid = dataPart.guid.toLowerCase();
  await makeExt4({
    output: dataImg,
    blocks: dataPart.size / 4096,
    label: 'data',
    uuid,
    epoch: IMAGE_LIMITS.defaultSourceDateEpoch,
  });
  await copyInto(dataImg, fh, dataPart.offset);
}

/** Streams a file into an open file at an offset (bounded memory, whatever its size). */
export async function copyInto(
  src: string,
  fh: Awaited<ReturnType<typeof open>>,
  offset: number,
): Promise<number> {
  let at = offset;
  for await (const chunk of createReadStream(src, { highWaterMark: MiB })) {
    const b = chunk as Buffer;
    await fh.write(b, 0, b.length, at);
    at += b.length;
  }
  return at - offset;
}

export async function requireFile(path: string): Promise<void> {
  const st = await stat(path).catch((err) => {
    if ((err as { code?: string }).code === 'ENOENT')
      throw new ImageError('FLOTILLA_ERR_IMAGE_INPUT_MISSING', path);
    throw ioError(`cannot read ${path}`, err);
  });
  if (!st.isFile()) throw new ImageError('FLOTILLA_ERR_IMAGE_INPUT_INVALID', `${path} is not a file`);
}
