import { runTool } from './exec.js';
import type { FsBuildParams } from './fs-ext4.js';

/** erofs, uncompressed (byte-identical file data between versions is what makes deltas small). */
export async function buildErofs(p: FsBuildParams): Promise<void> {
  await runTool('mkfs.erofs', [
    '--quiet',
    '-T',
    String(p.epoch),
    '-U',
    p.uuid,
    '--all-root',
    '-x',
    '-1',
    p.output,
    p.tree.dir,
  ]);
}
