import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  chmod,
  copyFile,
  link,
  lstat,
  lutimes,
  mkdir,
  mkdtemp,
  readdir,
  readlink,
  rm,
  stat,
  symlink,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageError, ioError } from './errors.js';
import { runTool } from './exec.js';
import { IMAGE_LIMITS } from './limits.js';

/**
 * Staging: every build starts from a private copy of the rootfs (a directory or a tarball),
 * walked in sorted order with modes normalised and times fixed, so the filesystem tools see
 * the same tree however, whenever and by whom the input was created. Ownership is not taken
 * from the input: everything is root:root in the image (the tools are told so explicitly).
 */

export type EntryType = 'dir' | 'file' | 'symlink';

export interface TreeEntry {
  /** Absolute path inside the image, e.g. `/etc/passwd` (`/` is the root directory). */
  path: string;
  type: EntryType;
  mode: number;
  size: number;
  /** sha256 of the content (files). */
  sha256?: string;
  /** Link target (symlinks). */
  target?: string;
  /** Earlier path this file is a hard link of. */
  hardlinkOf?: string;
}

export interface StagedTree {
  /** The normalised copy the filesystem tools read. */
  dir: string;
  entries: TreeEntry[];
  /** sha256 over the sorted (path, type, mode, content) list: equal trees give equal digests. */
  digest: string;
  /** Bytes of file content (hard links counted once). */
  contentBytes: number;
  cleanup(): Promise<void>;
}

export type ModePolicy = 'canonical' | 'preserve';

export interface StageOptions {
  /** canonical (default): files 0644/0755 by their execute bit, dirs 0755 (1777 if sticky), set-id bits kept. */
  modes?: ModePolicy;
  /** Per-path modes applied last, e.g. `{ "/etc/shadow": 0o600 }`. */
  modeOverrides?: Record<string, number>;
  /** Seconds since the epoch put on every entry. */
  epoch?: number;
  /** Where the staging directory goes (default: the OS temp dir). */
  tmpDir?: string;
  onProgress?: (done: number) => void;
}

const TAR_SUFFIXES = ['.tar', '.tar.gz', '.tgz', '.tar.xz', '.txz', '.tar.zst', '.tar.bz2'];

export function isTarball(path: string): boolean {
  return TAR_SUFFIXES.some((s) => path.endsWith(s));
}

export async function stageRootfs(input: string, opts: StageOptions = {}): Promise<StagedTree> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(input);
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT')
      throw new ImageError('FLOTILLA_ERR_IMAGE_INPUT_MISSING', input, { cause: err });
    throw ioError(`cannot read ${input}`, err);
  }
  const work = await mkdtemp(join(opts.tmpDir ?? tmpdir(), 'flotilla-stage-'));
  const dir = join(work, 'root');
  const cleanup = () => rm(work, { recursive: true, force: true });
  try {
    if (st.isDirectory()) {
      await copyTree(input, dir, opts.onProgress);
    } else if (st.isFile() && isTarball(input)) {
      await mkdir(dir);
      // GNU tar strips leading `/`, refuses `..` members and defers dangerous symlinks, so
      // nothing lands outside `dir`; ownership of the archive is ignored.
      await runTool(
        'tar',
        [
          '-x',
          '-f',
          input,
          '-C',
          dir,
          '--no-same-owner',
          '--delay-directory-restore',
          '--no-acls',
          '--no-xattrs',
          '--no-selinux',
        ],
        {
          maxStdout: IMAGE_LIMITS.maxToolOutputBytes,
        },
      ).catch((err) => {
        throw new ImageError(
          'FLOTILLA_ERR_IMAGE_INPUT_INVALID',
          `cannot extract ${input}: ${(err as Error).message}`,
          { cause: err },
        );
      });
    } else {
      throw new ImageError(
        'FLOTILLA_ERR_IMAGE_INPUT_INVALID',
        `${input} is neither a directory nor a tarball (${TAR_SUFFIXES.join(', ')})`,
      );
    }
    const { entries, contentBytes } = await normalise(dir, opts);
    return { dir, entries, digest: treeDigest(entries), contentBytes, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Copies a tree in sorted order, keeping symlinks as links and hard links as links. */
async function copyTree(src: string, dst: string, onProgress?: (n: number) => void): Promise<void> {
  const inodes = new Map<string, string>();
  let count = 0;
  const walk = async (from: string, to: string): Promise<void> => {
    await mkdir(to);
    const names = (await readdir(from)).sort(byteOrder);
    for (const name of names) {
      checkName(name, from);
      if (++count > IMAGE_LIMITS.maxTreeEntries)
        throw new ImageError(
          'FLOTILLA_ERR_IMAGE_INPUT_INVALID',
          `more than ${IMAGE_LIMITS.maxTreeEntries} entries`,
        );
      const s = join(from, name);
      const d = join(to, name);
      const st = await lstat(s);
      if (st.isDirectory()) await walk(s, d);
      else if (st.isSymbolicLink()) await symlink(await readlink(s), d);
      else if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1 ? inodes.get(key) : undefined;
        if (first) await link(first, d);
        else {
          await copyFile(s, d);
          await chmod(d, st.mode & 0o7777);
          if (st.nlink > 1) inodes.set(key, d);
        }
      } else throw unsupported(s);
      if (count % 256 === 0) onProgress?.(count);
    }
    await chmod(to, (await stat(from)).mode & 0o7777);
  };
  try {
    await walk(src, dst);
  } catch (err) {
    throw ioError(`cannot copy ${src}`, err);
  }
}

function unsupported(path: string): ImageError {
  return new ImageError(
    'FLOTILLA_ERR_IMAGE_INPUT_INVALID',
    `${path}: device nodes, FIFOs and sockets are not supported (create them at boot, e.g. devtmpfs)`,
  );
}

function checkName(name: string, dir: string): void {
  // debugfs scripts and the SBOM carry paths as text: keep them unambiguous.
  if (/[\x00-\x1f\x7f"]/.test(name))
    throw new ImageError(
      'FLOTILLA_ERR_IMAGE_INPUT_INVALID',
      `unsupported character in a file name under ${dir}`,
    );
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Walks the staged tree: fixes modes and times, hashes files, returns sorted entries. */
async function normalise(
  root: string,
  opts: StageOptions,
): Promise<{ entries: TreeEntry[]; contentBytes: number }> {
  const policy = opts.modes ?? 'canonical';
  const epoch = opts.epoch ?? IMAGE_LIMITS.defaultSourceDateEpoch;
  const entries: TreeEntry[] = [];
  const inodes = new Map<string, string>();
  let contentBytes = 0;
  const dirs: string[] = [];
  const walk = async (abs: string, path: string): Promise<void> => {
    const st = await lstat(abs);
    if (entries.length >= IMAGE_LIMITS.maxTreeEntries)
      throw new ImageError(
        'FLOTILLA_ERR_IMAGE_INPUT_INVALID',
        `more than ${IMAGE_LIMITS.maxTreeEntries} entries`,
      );
    if (st.isDirectory()) {
      const mode = modeFor('dir', st.mode, path, policy, opts.modeOverrides);
      await chmod(abs, mode);
      entries.push({ path, type: 'dir', mode, size: 0 });
      dirs.push(abs);
      const names = (await readdir(abs)).sort(byteOrder);
      for (const name of names) {
        checkName(name, path);
        await walk(join(abs, name), path === '/' ? `/${name}` : `${path}/${name}`);
      }
    } else if (st.isSymbolicLink()) {
      const target = await readlink(abs);
      entries.push({ path, type: 'symlink', mode: 0o777, size: Buffer.byteLength(target), target });
      await lutimes(abs, epoch, epoch);
    } else if (st.isFile()) {
      const mode = modeFor('file', st.mode, path, policy, opts.modeOverrides);
      await chmod(abs, mode);
      await lutimes(abs, epoch, epoch);
      const key = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1 ? inodes.get(key) : undefined;
      const prior = first ? entries.find((e) => e.path === first) : undefined;
      if (prior) {
        entries.push({ path, type: 'file', mode, size: st.size, sha256: prior.sha256!, hardlinkOf: first! });
      } else {
        entries.push({ path, type: 'file', mode, size: st.size, sha256: await hashFile(abs) });
        contentBytes += st.size;
        if (st.nlink > 1) inodes.set(key, path);
      }
      if (entries.length % 256 === 0) opts.onProgress?.(entries.length);
    } else throw unsupported(path);
  };
  try {
    await walk(root, '/');
    // Directories last and deepest first: creating children would touch their times again.
    for (const d of dirs.reverse()) await lutimes(d, epoch, epoch);
  } catch (err) {
    throw ioError(`cannot normalise ${root}`, err);
  }
  return { entries, contentBytes };
}

function modeFor(
  type: 'dir' | 'file',
  raw: number,
  path: string,
  policy: ModePolicy,
  overrides?: Record<string, number>,
): number {
  const override = overrides?.[path];
  if (override !== undefined) return override & 0o7777;
  const perm = raw & 0o7777;
  if (policy === 'preserve') return perm;
  if (type === 'dir') return perm & 0o1000 ? 0o1777 : 0o755;
  return (perm & 0o6000) | (perm & 0o111 ? 0o755 : 0o644);
}

export async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

export function treeDigest(entries: TreeEntry[]): string {
  const h = createHash('sha256');
  for (const e of entries) {
    const what =
      e.type === 'file'
        ? e.hardlinkOf
          ? `=${e.hardlinkOf}`
          : e.sha256
        : e.type === 'symlink'
          ? e.target
          : '';
    h.update(`${e.type}\0${e.mode.toString(8)}\0${e.path}\0${what}\n`);
  }
  return h.digest('hex');
}
