import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { factoryBootVars } from '@flotilla/protocol';
import { ImageError } from './errors.js';
import { runTool } from './exec.js';
import { IMAGE_LIMITS } from './limits.js';

/**
 * The factory U-Boot environment: the boot contract's variables (slot A committed, no trial).
 * The generated boot script (renderUbootBootCmd) does the counting and the fallback; the board's
 * U-Boot build supplies bootcmd and its load addresses (docs/boot.md).
 */
export function factoryEnv(slot: 'A' | 'B' = 'A'): Record<string, string> {
  return factoryBootVars(slot);
}

/**
 * One environment copy made by `mkenvimage` (CRC32 + flags byte when redundant + `name=value\0`
 * pairs, padded). A redundant pair is this copy written twice, at offset 0 and at `size`.
 */
export async function makeUbootEnv(
  vars: Record<string, string>,
  opts: { size?: number; redundant?: boolean } = {},
): Promise<Buffer> {
  const size = opts.size ?? IMAGE_LIMITS.ubootEnvSize;
  for (const [k, v] of Object.entries(vars))
    if (!/^[A-Za-z0-9_.]+$/.test(k) || /[\n\r\0]/.test(v))
      throw new ImageError(`FLOTILLA_ERR_IMAGE_BAD_ARGUMENT`, `U-Boot variable ${k}`);
  const dir = await mkdtemp(join(tmpdir(), 'flotilla-env-'));
  try {
    const text = Object.keys(vars)
      .sort()
      .map((k) => `${k}=${vars[k]}\n`)
      .join('');
    await writeFile(join(dir, 'env.txt'), text);
    const args = [
      '-s',
      String(size),
      ...(opts.redundant === false ? [] : ['-r']),
      '-o',
      join(dir, 'env.bin'),
      join(dir, 'env.txt'),
    ];
    await runTool('mkenvimage', args);
    return await readFile(join(dir, 'env.bin'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
