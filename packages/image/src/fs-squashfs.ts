import { runTool } from './exec.js';
import type { FsBuildParams } from './fs-ext4.js';

/** squashfs (gzip, 128 KiB blocks): sorted by mksquashfs itself, all root, all times fixed. */
export async function buildSquashfs(p: FsBuildParams): Promise<void> {
  const t = String(p.epoch);
  await runTool('mksquashfs', [
    p.tree.dir,
    p.output,
    '-reproducible',
    '-noappend',
    '-all-root',
    '-mkfs-time',
    t,
    '-all-time',
    t,
    '-no-xattrs',
    '-comp',
    'gzip',
    '-b',
    '131072',
    '-quiet',
    '-no-progress',
  ]);
}
