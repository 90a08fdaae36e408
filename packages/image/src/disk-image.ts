import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, open, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  BOOT_ARCHES,
  type BootArch,
  type BootPartition,
  type BootPartitionRole,
  bootLayout,
  isBootArch,
  type ReleaseManifest,
  type RootMetadata,
  type SignedRelease,
  SLOT_INITRD_PATH,
  SLOT_KERNEL_PATH,
  slotPartitionName,
  UBOOT_ENV,
} from '@flotilla/protocol';
import { readBundle } from './bundle-reader.js';
import { ImageError, ioError } from './errors.js';
import { buildEsp } from './esp.js';
import { runTool } from './exec.js';
import { makeExt4 } from './fs-ext4.js';
import { buildGpt, type GptPartition, SECTOR } from './gpt.js';
import { IMAGE_LIMITS } from './limits.js';
import { readFileFromImage } from './read-file.js';
import { buildUbootEnvPartition } from './uboot-board.js';
import { factoryEnv, makeUbootEnv } from './uboot-env.js';
import { uuidFromName } from './units.js';

const MiB = 1024 * 1024;
/** Largest kernel or initramfs the bootable-disk check reads (Debian's arm64 Image is 33 MB). */
const MAX_KERNEL_BYTES = 256 * MiB;

export interface DiskPartitionPlan {
  index: number;
  /** GPT partition name from the boot contract: esp | uboot-env | rootfs-A | rootfs-B | data. */
  name: string;
  role: BootPartitionRole;
  offset: number;
  size: number;
  typeGuid: string;
  guid: string;
}

export interface DiskPlan {
  arch: BootArch;
  totalSize: number;
  diskGuid: string;
  partitions: DiskPartitionPlan[];
}

export interface DiskLayoutOptions {
  /**
   * x86_64 (ESP with GRUB EFI, grubenv) or aarch64 (raw U-Boot env). Given, the disk must boot:
   * the rootfs must carry the kernel and initramfs. Absent: the aarch64 layout without that check
   * (simulator images, which carry no kernel).
   */
  arch?: string;
  /** Bytes of each root slot; default: the image size rounded up to 1 MiB. */
  slotSize?: number;
  /** Bytes of the data partition (default 16 MiB); it grows to fill `diskSize`. */
  dataSize?: number;
  /** Size of the target disk: the layout must fit, the data partition takes the rest. */
  diskSize?: number;
  /**
   * aarch64: the board's default U-Boot environment (`u-boot-initial-env` of its U-Boot build,
   * parsed with parseUbootEnvText). Required for a bootable aarch64 disk: an environment U-Boot
   * loads replaces its built-in one, so the factory env must carry the board's load addresses.
   */
  ubootBoardDefaults?: Record<string, string>;
}

/** The architecture named by `arch` (default aarch64), or FLOTILLA_ERR_IMAGE_UNKNOWN_ARCH. */
export function diskArch(arch: string | undefined): BootArch {
  if (arch === undefined) return 'aarch64';
  if (!isBootArch(arch))
    throw new ImageError('FLOTILLA_ERR_IMAGE_UNKNOWN_ARCH', `'${arch}' (known: ${BOOT_ARCHES.join(', ')})`);
  return arch;
}

/**
 * The factory layout of the boot contract (bootLayout), every partition 1 MiB-aligned:
 *   x86_64:  1 esp (FAT: GRUB EFI, grub.cfg, grubenv)  2 rootfs-A  3 rootfs-B  4 data
 *   aarch64: 1 uboot-env (redundant env at 0 and 0x4000)  2 rootfs-A  3 rootfs-B  4 data
 * Slot A holds the release image (its /boot carries the kernel), slot B is empty, data is an
 * ext4 labelled "data" holding the factory release manifest and the trust root for the agent.
 * GUIDs are derived from the image hash, so the same release gives the same disk image.
 */
export function planDisk(
  manifest: Pick<ReleaseManifest, 'image' | 'name'>,
  opts: DiskLayoutOptions = {},
): DiskPlan {
  const arch = diskArch(opts.arch);
  const slot = opts.slotSize ?? Math.ceil(manifest.image.size / MiB) * MiB;
  let data = opts.dataSize ?? 16 * MiB;
  if (slot % MiB !== 0 || data % MiB !== 0 || data < MiB)
    throw new ImageError(
      'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT',
      'slot and data sizes are whole MiB (data at least 1 MiB)',
    );
  if (opts.diskSize !== undefined && opts.diskSize % SECTOR !== 0)
    throw new ImageError(
      'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT',
      `--disk-size ${opts.diskSize} is not a whole number of ${SECTOR}-byte sectors`,
    );
  if (slot < manifest.image.size)
    throw new ImageError(
      'FLOTILLA_ERR_IMAGE_TOO_LARGE',
      `image of ${manifest.image.size} bytes, slot of ${slot}`,
    );
  const layout = bootLayout(arch);
  const sizeOf = (p: BootPartition) => p.size ?? (p.role === 'slot' ? slot : data);
  // room for the primary GPT (aligned for eMMC erase blocks) and the backup GPT at the end
  const needed = MiB + layout.reduce((sum, p) => sum + sizeOf(p), 0) + MiB;
  if (opts.diskSize !== undefined) {
    if (needed > opts.diskSize)
      throw new ImageError(
        'FLOTILLA_ERR_IMAGE_DISK_TOO_SMALL',
        `disk of ${opts.diskSize} bytes, layout needs ${needed}: ${layout
          .map((p) => `${p.name} ${sizeOf(p)}`)
          .join(', ')} + 2 MiB of partition tables`,
      );
    data += Math.floor((opts.diskSize - needed) / MiB) * MiB;
  }
  const seed = `disk:${manifest.name}:${manifest.image.sha256}`;
  let offset = MiB;
  const partitions = layout.map((p, i): DiskPartitionPlan => {
    const size = sizeOf(p);
    const out = {
      index: i + 1,
      name: p.name,
      role: p.role,
      offset,
      size,
      typeGuid: p.typeGuid,
      guid: uuidFromName(`${seed}:${p.name}`).toUpperCase(),
    };
    offset += size;
    return out;
  });
  return {
    arch,
    totalSize: opts.diskSize ?? offset + MiB,
    diskGuid: uuidFromName(seed).toUpperCase(),
    partitions,
  };
}

export interface BuildDiskOptions extends DiskLayoutOptions {
  /** The release bundle (.flot). */
  bundlePath: string;
  root: RootMetadata;
  now?: Date;
  /** Accept recovery images too (a recovery disk). Default: releases only. */
  allowRecovery?: boolean;
  output: string;
  /** The signed root.json the device trusts, written to the data partition (trust/root.json). */
  rootJson?: Uint8Array;
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
  diskArch(opts.arch); // an unknown arch fails before anything is read or written
  if (opts.arch === 'aarch64' && !opts.ubootBoardDefaults)
    throw new ImageError(
      'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT',
      "a bootable aarch64 disk needs the board's U-Boot default environment: pass the u-boot-initial-env of its U-Boot build (--uboot-initial-env)",
    );
  await requireFile(opts.bundlePath);
  const work = await mkdtemp(join(dirname(opts.output), '.flotilla-disk-')).catch((err) => {
    throw ioError(`cannot write next to ${opts.output}`, err);
  });
  const tmp = join(work, 'disk.img');
  try {
    const fh = await open(tmp, 'w+');
    let manifest: ReleaseManifest | undefined;
    let signed: SignedRelease | undefined;
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
          signed = part.signed;
          plan = planDisk(manifest, opts);
          await fh.truncate(plan.totalSize);
        } else if (part.type === 'chunk') {
          const slotA = plan!.partitions.find((p) => p.name === slotPartitionName('A'))!;
          await fh.write(part.data, 0, part.data.length, slotA.offset + part.offset);
          opts.onProgress?.(part.offset + part.data.length, manifest!.image.size);
        } else if (part.type === 'end') ended = true;
      }
      if (!ended || !manifest || !plan || !signed)
        throw new ImageError('FLOTILLA_ERR_BUNDLE_TRUNCATED', opts.bundlePath);
      if (opts.arch !== undefined) await requireKernel(tmp, plan, manifest, work);
      await writeLayout(fh, plan, work, {
        signed,
        rootJson: opts.rootJson,
        ubootBoardDefaults: opts.arch !== undefined ? opts.ubootBoardDefaults : undefined,
      });
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

/**
 * The boot contract's promise for a bootable disk: slot A's rootfs carries the kernel and the
 * initramfs where the bootloader loads them. Checked on the slot as written, without mounting.
 */
async function requireKernel(
  diskFile: string,
  plan: DiskPlan,
  manifest: ReleaseManifest,
  work: string,
): Promise<void> {
  const slotA = plan.partitions.find((p) => p.name === slotPartitionName('A'))!;
  const slotImg = join(work, 'slot-a.img');
  const out = await open(slotImg, 'w');
  try {
    for await (const chunk of createReadStream(diskFile, {
      start: slotA.offset,
      end: slotA.offset + manifest.image.size - 1,
      highWaterMark: MiB,
    }))
      await out.write(chunk as Buffer);
  } finally {
    await out.close();
  }
  try {
    for (const path of [SLOT_KERNEL_PATH, SLOT_INITRD_PATH]) {
      const bytes = await readFileFromImage(slotImg, manifest.image.format, path, {
        maxBytes: MAX_KERNEL_BYTES,
      });
      if (bytes.length === 0) throw new ImageError('FLOTILLA_ERR_IMAGE_FILE_NOT_FOUND', `${path} is empty`);
    }
  } catch (err) {
    if (err instanceof ImageError && err.code === 'FLOTILLA_ERR_IMAGE_FILE_NOT_FOUND')
      throw new ImageError(
        'FLOTILLA_ERR_IMAGE_NO_KERNEL',
        `${manifest.name}: ${err.message} (${plan.arch} disks boot ${SLOT_KERNEL_PATH} and ${SLOT_INITRD_PATH} of their slot)`,
        { cause: err },
      );
    throw err;
  } finally {
    await rm(slotImg, { force: true });
  }
}

/** Partition table, boot partition (ESP or U-Boot env) and the data filesystem around slot A. */
async function writeLayout(
  fh: Awaited<ReturnType<typeof open>>,
  plan: DiskPlan,
  work: string,
  factory: {
    signed: SignedRelease;
    rootJson: Uint8Array | undefined;
    ubootBoardDefaults: Record<string, string> | undefined;
  },
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
  for (const part of plan.partitions) {
    if (part.role === 'uboot-env' && factory.ubootBoardDefaults) {
      // bootable: the board's defaults + the slot variables in both copies, and boot.scr
      const partition = await buildUbootEnvPartition({
        boardDefaults: factory.ubootBoardDefaults,
        slot: 'A',
        size: part.size,
      });
      await fh.write(partition, 0, partition.length, part.offset);
    } else if (part.role === 'uboot-env') {
      const env = await makeUbootEnv(factoryEnv('A'), {
        redundant: UBOOT_ENV.redundant,
        size: UBOOT_ENV.size,
      });
      for (const at of UBOOT_ENV.offsets) await fh.write(env, 0, env.length, part.offset + at);
    } else if (part.role === 'esp') {
      const esp = await buildEsp(work, part);
      await copyInto(esp, fh, part.offset);
    } else if (part.role === 'data') {
      await copyInto(await buildDataFs(work, part, factory), fh, part.offset);
    }
  }
}

/**
 * The factory data filesystem: ext4 labelled "data" holding what the agent needs on first start,
 * the signed manifest of the release in slot A (factory-release.json) and the trust root
 * (trust/root.json), as the agent.json of the boot images names them.
 */
async function buildDataFs(
  work: string,
  part: DiskPartitionPlan,
  factory: { signed: SignedRelease; rootJson: Uint8Array | undefined },
): Promise<string> {
  const tree = join(work, 'data-tree');
  await mkdir(join(tree, 'trust'), { recursive: true });
  await writeFile(join(tree, 'factory-release.json'), `${JSON.stringify(factory.signed)}\n`);
  if (factory.rootJson) await writeFile(join(tree, 'trust', 'root.json'), factory.rootJson);
  const dataImg = join(work, 'data.img');
  const uuid = part.guid.toLowerCase();
  await makeExt4({
    output: dataImg,
    blocks: part.size / 4096,
    label: 'data',
    uuid,
    epoch: IMAGE_LIMITS.defaultSourceDateEpoch,
    extra: ['-d', tree],
  });
  // mke2fs -d copies each file's ctime from the build machine: pin every time of the factory files
  const stamp = new Date(IMAGE_LIMITS.defaultSourceDateEpoch * 1000)
    .toISOString()
    .replace(/[-:T]/g, '')
    .slice(0, 14);
  const paths = ['/', '/trust', '/factory-release.json', ...(factory.rootJson ? ['/trust/root.json'] : [])];
  const script = paths
    .flatMap((p) => ['atime', 'ctime', 'mtime', 'crtime'].map((f) => `set_inode_field ${p} ${f} ${stamp}\n`))
    .join('');
  await runTool('debugfs', ['-w', '-f', '-', dataImg], {
    stdin: script,
    env: { E2FSPROGS_FAKE_TIME: String(IMAGE_LIMITS.defaultSourceDateEpoch) },
  });
  return dataImg;
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
