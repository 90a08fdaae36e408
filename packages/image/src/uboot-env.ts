import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageError } from './errors.js';
import { runTool } from './exec.js';
import { IMAGE_LIMITS } from './limits.js';

/**
 * The factory U-Boot environment, using the agent's variable contract (packages/agent
 * bootloader/uboot.ts): boot slot A, no trial armed, CONFIG_BOOTCOUNT_LIMIT counters, and an
 * altbootcmd that falls back to the last good slot. bootcmd passes `flotilla.slot=` to the
 * kernel, which is how the agent learns which slot it booted.
 */
export function factoryEnv(slot: 'A' | 'B' = 'A'): Record<string, string> {
  return {
    bootcount: '0',
    bootlimit: '3',
    upgrade_available: '0',
    flotilla_slot: slot,
    flotilla_good_slot: slot,
    // U-Boot expands its own variables: its `${var}` is escaped in these template literals.
    altbootcmd: `setenv flotilla_slot \${flotilla_good_slot}; setenv upgrade_available 0; saveenv; run bootcmd`,
    flotilla_part: `if test "\${flotilla_slot}" = "B"; then setenv rootpart 3; else setenv rootpart 2; fi`,
    bootcmd: `run flotilla_part; setenv bootargs "console=\${console} root=PARTLABEL=rootfs-\${flotilla_slot} ro rootwait flotilla.slot=\${flotilla_slot}"; load \${devtype} \${devnum}:\${rootpart} \${kernel_addr_r} /boot/Image && booti \${kernel_addr_r} - \${fdtcontroladdr}`,
    console: 'ttyS0,115200',
    devtype: 'mmc',
    devnum: '0',
  };
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
