import { ImageError } from './errors.js';
import { runTool } from './exec.js';
import type { StagedTree } from './tree.js';

export interface Ext4Params {
  output: string;
  /** Size in 4 KiB blocks. */
  blocks: number;
  label: string;
  /** Filesystem UUID, also the directory hash seed: the same bytes for the same inputs. */
  uuid: string;
  /** mke2fs's clock (it reads E2FSPROGS_FAKE_TIME and ignores SOURCE_DATE_EPOCH). */
  epoch: number;
  /** More mke2fs options for this filesystem. */
  extra?: readonly string[];
}

/** The one mke2fs call of every ext4 filesystem Flotilla makes (slot images, the factory data partition). */
export async function makeExt4(o: Ext4Params): Promise<void> {
  await runTool(
    'mke2fs',
    [
      ...['-q', '-F', '-t', 'ext4', '-b', '4096'],
      ...(o.extra ?? []),
      ...['-L', o.label, '-U', o.uuid, '-E', `hash_seed=${o.uuid},root_owner=0:0,nodiscard`],
      o.output,
      String(o.blocks),
    ],
    { env: { E2FSPROGS_FAKE_TIME: String(o.epoch) } },
  );
}

export interface FsBuildParams {
  tree: StagedTree;
  output: string;
  partitionSize: number;
  epoch: number;
  uuid: string;
  label: string;
}

/**
 * ext4 without a journal (the root is mounted read-only; mutable state lives on the data
 * partition), 4 KiB blocks (aligned with delta and chunk boundaries), no reserved blocks.
 * mke2fs takes its clock from E2FSPROGS_FAKE_TIME (it ignores SOURCE_DATE_EPOCH) and copies
 * each file's times and owner from the staging tree, so a debugfs pass then sets owner and all
 * four timestamps of every inode to fixed values.
 */
export async function buildExt4(p: FsBuildParams): Promise<void> {
  const env = { E2FSPROGS_FAKE_TIME: String(p.epoch) };
  const blocks = p.partitionSize / 4096;
  // Default inode density (one per 4 KiB at this size) unless the tree needs more; a fixed
  // density keeps the layout (and so deltas) stable between versions.
  const inodes = Math.max(Math.floor(p.partitionSize / 4096), p.tree.entries.length + 64);
  try {
    await makeExt4({
      output: p.output,
      blocks,
      label: p.label,
      uuid: p.uuid,
      epoch: p.epoch,
      // A fixed inode size and count, no reserved blocks, no journal; filled from the staged tree.
      extra: ['-I', '256', '-N', String(inodes), '-m', '0', '-O', '^has_journal', '-d', p.tree.dir],
    });
  } catch (err) {
    const msg = (err as Error).message;
    if (/Could not allocate (block|inode)|No free space|too many|not enough space/i.test(msg))
      throw new ImageError('FLOTILLA_ERR_IMAGE_TOO_LARGE', `ext4 of ${p.partitionSize} bytes: ${msg}`, {
        cause: err,
      });
    throw err;
  }
  const paths = p.tree.entries.map((e) => e.path);
  paths.push('/lost+found');
  const lines: string[] = [];
  for (const path of paths) {
    const q = `"${path}"`;
    lines.push(`sif ${q} uid 0`, `sif ${q} gid 0`);
    for (const field of ['atime', 'ctime', 'mtime', 'crtime']) lines.push(`sif ${q} ${field} @${p.epoch}`);
  }
  const res = await runTool('debugfs', ['-w', '-f', '-', p.output], {
    env,
    stdin: `${lines.join('\n')}\n`,
    maxStdout: 64 * 1024 * 1024,
  });
  // debugfs exits 0 even when a command fails: look for its error lines.
  const bad = res.stderr
    .split('\n')
    .find((l) => /not found|Invalid|error|cannot/i.test(l) && !/^debugfs \d/.test(l));
  if (bad) throw new ImageError('FLOTILLA_ERR_IMAGE_TOOL_FAILED', `debugfs: ${bad}`);
  await runTool('e2fsck', ['-f', '-n', p.output], { env, maxStdout: 1024 * 1024 });
}
