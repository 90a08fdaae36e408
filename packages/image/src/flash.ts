import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, readdir, readFile, realpath, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { ReleaseManifest, RootMetadata } from '@flotilla/protocol';
import { readBundle, verifyBundle } from './bundle-reader.js';
import { buildDiskImage, type DiskLayoutOptions, diskArch, planDisk, requireFile } from './disk-image.js';
import { ImageError, ioError } from './errors.js';
import { findTool, runTool } from './exec.js';
import { detectPartitionTable, readHead } from './partition-table.js';

const MiB = 1024 * 1024;

/** Where the kernel's views live; tests point these at a fake tree, the CLI uses the real ones. */
export interface SystemView {
  procRoot: string;
  sysRoot: string;
}
export const REAL_SYSTEM: SystemView = { procRoot: '/proc', sysRoot: '/sys' };

export interface TargetInfo {
  path: string;
  kind: 'block' | 'file';
  /** Bytes available; null for a regular file that will be created or grown. */
  capacity: number | null;
}

/**
 * What a target is and whether it may be written: a block device (size from sysfs) or a
 * regular file (an existing non-empty file counts as a fixed-size medium). Refuses anything
 * mounted (the device or any of its partitions), held by device-mapper/RAID, used as swap,
 * or backing a loop device.
 */
export async function inspectTarget(target: string, sys: SystemView = REAL_SYSTEM): Promise<TargetInfo> {
  let st: Awaited<ReturnType<typeof stat>> | null = null;
  try {
    st = await stat(target);
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw ioError(`cannot inspect ${target}`, err);
  }
  if (!st) {
    await stat(dirname(target)).catch(() => {
      throw new ImageError('FLOTILLA_ERR_IMAGE_TARGET_INVALID', `${dirname(target)} does not exist`);
    });
    return { path: target, kind: 'file', capacity: null };
  }
  const real = await realpath(target);
  if (st.isBlockDevice()) {
    const name = await blockName(st.rdev, sys);
    await refuseInUse([real, ...(await partitionsOf(name, sys)).map((p) => `/dev/${p}`)], sys, name);
    const sectors = Number((await readText(join(sys.sysRoot, 'class/block', name, 'size')))?.trim());
    if (!Number.isFinite(sectors))
      throw new ImageError('FLOTILLA_ERR_IMAGE_TARGET_INVALID', `no size for ${name} in sysfs`);
    return { path: real, kind: 'block', capacity: sectors * 512 };
  }
  if (st.isFile()) {
    await refuseInUse([real], sys, null);
    return { path: real, kind: 'file', capacity: st.size > 0 ? st.size : null };
  }
  throw new ImageError(
    'FLOTILLA_ERR_IMAGE_TARGET_INVALID',
    `${target} is neither a block device nor a regular file`,
  );
}

async function blockName(rdev: number, sys: SystemView): Promise<string> {
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
  const link = join(sys.sysRoot, 'dev/block', `${major}:${minor}`);
  try {
    return basename(await realpath(link));
  } catch (err) {
    throw new ImageError('FLOTILLA_ERR_IMAGE_TARGET_INVALID', `block device ${major}:${minor} not in sysfs`, {
      cause: err,
    });
  }
}

async function partitionsOf(name: string, sys: SystemView): Promise<string[]> {
  const dir = join(sys.sysRoot, 'class/block', name);
  const out: string[] = [];
  for (const entry of await readdir(dir).catch(() => [] as string[])) {
    if (entry.startsWith(name) && (await readText(join(dir, entry, 'partition'))) !== null) out.push(entry);
  }
  return out;
}

async function refuseInUse(paths: string[], sys: SystemView, blockDev: string | null): Promise<void> {
  const wanted = new Set(paths);
  const mounts = (await readText(join(sys.procRoot, 'self/mounts'))) ?? '';
  for (const line of mounts.split('\n')) {
    const [rawSource, rawMountpoint] = line.split(' ');
    if (!rawSource) continue;
    const source = unescapeMount(rawSource);
    const resolved = source.startsWith('/') ? await realpath(source).catch(() => source) : source;
    if (wanted.has(source) || wanted.has(resolved))
      throw new ImageError(
        'FLOTILLA_ERR_IMAGE_TARGET_MOUNTED',
        `${source} is mounted on ${unescapeMount(rawMountpoint ?? '?')}`,
      );
  }
  const swaps = (await readText(join(sys.procRoot, 'swaps'))) ?? '';
  for (const line of swaps.split('\n').slice(1)) {
    const dev = line.split(/\s+/)[0];
    if (dev && wanted.has(unescapeMount(dev)))
      throw new ImageError('FLOTILLA_ERR_IMAGE_TARGET_MOUNTED', `${dev} is in use as swap`);
  }
  if (blockDev) {
    for (const name of [blockDev, ...(await partitionsOf(blockDev, sys))]) {
      const holders = await readdir(join(sys.sysRoot, 'class/block', name, 'holders')).catch(
        () => [] as string[],
      );
      if (holders.length)
        throw new ImageError('FLOTILLA_ERR_IMAGE_TARGET_MOUNTED', `${name} is held by ${holders.join(', ')}`);
    }
  }
  // A file (or device) attached to a loop device may be mounted through it.
  for (const entry of await readdir(join(sys.sysRoot, 'block')).catch(() => [] as string[])) {
    if (!entry.startsWith('loop')) continue;
    const backing = (await readText(join(sys.sysRoot, 'block', entry, 'loop/backing_file')))?.trim();
    if (backing && wanted.has(backing))
      throw new ImageError('FLOTILLA_ERR_IMAGE_TARGET_MOUNTED', `${backing} backs /dev/${entry}`);
  }
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

async function readText(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return null;
  }
}

export interface FlashOptions extends DiskLayoutOptions {
  bundlePath: string;
  root: RootMetadata;
  target: string;
  /** The signed root.json for the data partition (disk layout). */
  rootJson?: Uint8Array;
  /** 'disk' (default): the whole factory layout (GPT, env, slot A, data); 'partition': the image only. */
  layout?: 'disk' | 'partition';
  allowRecovery?: boolean;
  /** 'partition' layout: write even over a partition table (the target is a whole disk). */
  force?: boolean;
  now?: Date;
  system?: SystemView;
  onProgress?: (phase: 'verify' | 'write' | 'read-back', done: number, total: number) => void;
}

export interface FlashSummary {
  target: string;
  kind: 'block' | 'file';
  layout: 'disk' | 'partition';
  bytesWritten: number;
  sha256: string;
  manifest: ReleaseManifest;
}

/**
 * Flashes a verified bundle: (1) reads the whole bundle once and verifies it — signature,
 * role, expiry, every chunk and the image hash — before the target is even opened; (2) checks
 * the target is not in use and large enough; (3) writes (the image chunks, each checked again
 * as it is re-read, or a disk image spooled and verified in a temporary file); (4) syncs and
 * reads everything back, comparing hashes. Nothing is written when (1) or (2) fails; (2) also
 * refuses, for the partition layout, a target that holds a partition table unless `force`.
 */
export async function flashBundle(opts: FlashOptions): Promise<FlashSummary> {
  if (opts.arch !== undefined) diskArch(opts.arch);
  await requireFile(opts.bundlePath);
  const layout = opts.layout ?? 'disk';
  const now = opts.now ?? new Date();
  const allowKinds: ReleaseManifest['kind'][] = opts.allowRecovery ? ['release', 'recovery'] : ['release'];
  const verified = await verifyBundle(createReadStream(opts.bundlePath, { highWaterMark: MiB }), {
    root: opts.root,
    now,
    allowKinds,
    onChunk: (d, t) => opts.onProgress?.('verify', d, t),
  });
  const manifest = verified.manifest;
  const needed = layout === 'disk' ? planDisk(manifest, opts).totalSize : manifest.image.size;
  const info = await inspectTarget(opts.target, opts.system);
  if (info.capacity !== null && info.capacity < needed)
    throw new ImageError(
      'FLOTILLA_ERR_IMAGE_TARGET_TOO_SMALL',
      `${opts.target} holds ${info.capacity} bytes, needs ${needed}`,
    );
  if (layout === 'partition' && !opts.force) await refusePartitionTable(info);

  let spoolDir: string | null = null;
  try {
    let expectedSha: string;
    let written: number;
    if (layout === 'disk') {
      spoolDir = await mkdtemp(join(tmpdir(), 'flotilla-flash-'));
      const spool = join(spoolDir, 'disk.img');
      await buildDiskImage({
        bundlePath: opts.bundlePath,
        root: opts.root,
        now,
        allowRecovery: opts.allowRecovery,
        slotSize: opts.slotSize,
        dataSize: opts.dataSize,
        ...(opts.arch !== undefined ? { arch: opts.arch } : {}),
        ...(opts.diskSize !== undefined ? { diskSize: opts.diskSize } : {}),
        ...(opts.ubootBoardDefaults !== undefined ? { ubootBoardDefaults: opts.ubootBoardDefaults } : {}),
        ...(opts.rootJson ? { rootJson: opts.rootJson } : {}),
        output: spool,
      });
      const h = createHash('sha256');
      written = 0;
      const fh = await openTarget(info);
      try {
        for await (const chunk of createReadStream(spool, { highWaterMark: MiB })) {
          const b = chunk as Buffer;
          h.update(b);
          await fh.write(b, 0, b.length, written);
          written += b.length;
          opts.onProgress?.('write', written, needed);
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      expectedSha = h.digest('hex');
    } else {
      written = 0;
      const fh = await openTarget(info);
      try {
        for await (const part of readBundle(createReadStream(opts.bundlePath, { highWaterMark: MiB }), {
          root: opts.root,
          now,
          allowKinds,
        })) {
          if (part.type !== 'chunk') continue;
          await fh.write(part.data, 0, part.data.length, part.offset);
          written = part.offset + part.data.length;
          opts.onProgress?.('write', written, needed);
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      expectedSha = manifest.image.sha256;
    }
    if (info.kind === 'block' && findTool('blockdev'))
      await runTool('blockdev', ['--flushbufs', info.path], { allowFailure: true });
    const readBack = await hashPrefix(info.path, written, (d) => opts.onProgress?.('read-back', d, written));
    if (readBack !== expectedSha)
      throw new ImageError(
        'FLOTILLA_ERR_IMAGE_READBACK_MISMATCH',
        `${info.path}: ${readBack.slice(0, 16)}… ≠ ${expectedSha.slice(0, 16)}…`,
      );
    return {
      target: info.path,
      kind: info.kind,
      layout,
      bytesWritten: written,
      sha256: expectedSha,
      manifest,
    };
  } finally {
    if (spoolDir) await rm(spoolDir, { recursive: true, force: true });
  }
}

/** A slot image written at offset 0 of a whole disk would destroy its partition table. */
async function refusePartitionTable(info: TargetInfo): Promise<void> {
  if (info.kind === 'file' && info.capacity === null) return; // a new or empty file
  const table = detectPartitionTable(await readHead(info.path));
  if (table)
    throw new ImageError(
      'FLOTILLA_ERR_IMAGE_TARGET_PARTITIONED',
      `${info.path} holds a ${table.scheme.toUpperCase()} partition table (${table.evidence})`,
    );
}

async function openTarget(info: TargetInfo) {
  // Never truncate: a regular-file target stands in for a medium, a block device cannot be.
  try {
    return await open(info.path, info.capacity === null ? 'w' : 'r+');
  } catch (err) {
    throw new ImageError('FLOTILLA_ERR_IMAGE_TARGET_INVALID', `cannot open ${info.path} for writing`, {
      cause: err,
    });
  }
}

async function hashPrefix(path: string, bytes: number, onProgress?: (done: number) => void): Promise<string> {
  const h = createHash('sha256');
  let done = 0;
  if (bytes === 0) return h.digest('hex');
  for await (const chunk of createReadStream(path, { start: 0, end: bytes - 1, highWaterMark: MiB })) {
    h.update(chunk as Buffer);
    done += (chunk as Buffer).length;
    onProgress?.(done);
  }
  if (done !== bytes)
    throw new ImageError('FLOTILLA_ERR_IMAGE_READBACK_MISMATCH', `read back ${done} of ${bytes} bytes`);
  return h.digest('hex');
}
