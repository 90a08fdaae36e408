import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type BootSlot,
  factoryBootVars,
  renderUbootBootCmd,
  UBOOT_ENV,
  ubootEnvDiskOffsets,
} from '@flotilla/protocol';
import { ImageError } from './errors.js';
import { runTool } from './exec.js';
import { IMAGE_LIMITS } from './limits.js';
import { makeUbootEnv } from './uboot-env.js';

/**
 * What a U-Boot board build and the factory disk agree on (docs/boot-uboot.md), derived from the
 * boot contract so the two cannot drift:
 * - the environment: raw, redundant, in the `uboot-env` partition (CONFIG_ENV_IS_IN_MMC with
 *   CONFIG_ENV_OFFSET / CONFIG_ENV_OFFSET_REDUND / CONFIG_ENV_SIZE = the contract's offsets);
 * - the boot script: boot.scr (a `mkimage -T script` image, CRC-checked by `source`) raw in the
 *   same partition, after the two environment copies. The boot logic is firmware, like U-Boot
 *   itself: an update of a slot never rewrites it, and a half-written slot cannot break it.
 */
export interface UbootBoard {
  /** U-Boot's name for the board (its defconfig without `_defconfig`). */
  name: string;
  /** Block device holding the disk, as U-Boot names it (`mmc 0`): env, boot script and slots. */
  devtype: 'mmc';
  devnum: number;
}

/** QEMU `virt` (arm64) with the disk as an SD card on `sdhci-pci`: U-Boot's MMC driver and Linux's mmcblk0. */
export const QEMU_ARM64_BOARD: UbootBoard = { name: 'qemu_arm64', devtype: 'mmc', devnum: 0 };

/** boot.scr inside the `uboot-env` partition: after the two environment copies, at most this long. */
export const UBOOT_SCRIPT_AREA = { offset: 0x8000, maxSize: 0x10000 } as const;

const SECTOR = 512;
const MiB = 1024 * 1024;

/** Disk byte offset of boot.scr (the `uboot-env` partition starts at 1 MiB). */
export function ubootScriptDiskOffset(): number {
  return (ubootEnvDiskOffsets()[0] ?? MiB) - UBOOT_ENV.offsets[0] + UBOOT_SCRIPT_AREA.offset;
}

/**
 * The board's bootcmd: read boot.scr from its raw sectors and run it (`source` checks the
 * image's CRCs). With no valid script the board resets rather than boot something unknown.
 */
export function ubootBootcommand(board: UbootBoard = QEMU_ARM64_BOARD): string {
  const sector = (n: number) => `0x${(n / SECTOR).toString(16)}`;
  return [
    `${board.devtype} dev ${board.devnum} && ${board.devtype} read \${scriptaddr} ${sector(ubootScriptDiskOffset())} ${sector(UBOOT_SCRIPT_AREA.maxSize)} && source \${scriptaddr}`,
    'echo flotilla: no valid boot script',
    'sleep 5',
    'reset',
  ].join('; ');
}

/**
 * The Kconfig lines a board build needs for the contract (merged over the board's defconfig with
 * scripts/kconfig/merge_config.sh; firmware-images/uboot/build-uboot.mjs does it for QEMU).
 */
export function ubootConfigFragment(board: UbootBoard = QEMU_ARM64_BOARD): string {
  const [first, second] = ubootEnvDiskOffsets();
  const hex = (n: number) => `0x${n.toString(16)}`;
  return `# Generated from the Flotilla boot contract (packages/image/src/uboot-board.ts).
# CONFIG_ENV_IS_IN_FLASH is not set
CONFIG_ENV_IS_IN_MMC=y
CONFIG_SYS_MMC_ENV_DEV=${board.devnum}
CONFIG_SYS_MMC_ENV_PART=0
CONFIG_SYS_REDUNDAND_ENVIRONMENT=y
CONFIG_ENV_SIZE=${hex(UBOOT_ENV.size)}
CONFIG_ENV_OFFSET=${hex(first ?? 0)}
CONFIG_ENV_OFFSET_REDUND=${hex(second ?? 0)}
CONFIG_USE_BOOTCOMMAND=y
CONFIG_BOOTCOMMAND="${ubootBootcommand(board).replace(/"/g, '\\"')}"
`;
}

/**
 * The variables of a `u-boot-initial-env` file (`make u-boot-initial-env`: the board's default
 * environment, one `name=value` per line).
 */
export function parseUbootEnvText(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) vars[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return vars;
}

/**
 * The factory environment of a U-Boot disk. An environment U-Boot loads replaces its built-in
 * one whole, so it must carry the board's defaults (load addresses, bootcmd) as well as the
 * contract's slot variables; libubootenv's fw_setenv then keeps them on every write.
 */
export function factoryUbootEnv(
  boardDefaults: Record<string, string>,
  slot: BootSlot = 'A',
  board: UbootBoard = QEMU_ARM64_BOARD,
): Record<string, string> {
  for (const name of ['kernel_addr_r', 'ramdisk_addr_r', 'scriptaddr'])
    if (!boardDefaults[name])
      throw new ImageError(
        'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT',
        `the board's default environment has no ${name}: pass the u-boot-initial-env of the board build`,
      );
  return { ...boardDefaults, bootcmd: ubootBootcommand(board), ...factoryBootVars(slot) };
}

/** boot.scr: the contract's boot.cmd compiled by `mkimage -T script` (legacy image with CRCs). */
export async function makeUbootBootScript(
  board: UbootBoard = QEMU_ARM64_BOARD,
  sourceDateEpoch: number = IMAGE_LIMITS.defaultSourceDateEpoch,
): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'flotilla-bootscr-'));
  try {
    await writeFile(
      join(dir, 'boot.cmd'),
      renderUbootBootCmd({ devtype: board.devtype, devnum: String(board.devnum) }),
    );
    await runTool(
      'mkimage',
      [
        '-A',
        'arm64',
        '-O',
        'linux',
        '-T',
        'script',
        '-C',
        'none',
        '-n',
        'flotilla boot',
        '-d',
        'boot.cmd',
        'boot.scr',
      ],
      { cwd: dir, env: { SOURCE_DATE_EPOCH: String(sourceDateEpoch) } },
    );
    const script = await readFile(join(dir, 'boot.scr'));
    if (script.length > UBOOT_SCRIPT_AREA.maxSize)
      throw new ImageError('FLOTILLA_ERR_IMAGE_TOO_LARGE', `boot.scr of ${script.length} bytes`);
    return script;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The content of the `uboot-env` partition from its start: both environment copies at the
 * contract's offsets, then boot.scr. `size` is the partition size (zero-filled to it).
 */
export async function buildUbootEnvPartition(opts: {
  boardDefaults: Record<string, string>;
  slot?: BootSlot;
  board?: UbootBoard;
  size?: number;
}): Promise<Buffer> {
  const board = opts.board ?? QEMU_ARM64_BOARD;
  const size = opts.size ?? MiB;
  const vars = factoryUbootEnv(opts.boardDefaults, opts.slot ?? 'A', board);
  const copy = await makeUbootEnv(vars, { size: UBOOT_ENV.size, redundant: UBOOT_ENV.redundant });
  const script = await makeUbootBootScript(board);
  if (UBOOT_SCRIPT_AREA.offset + UBOOT_SCRIPT_AREA.maxSize > size)
    throw new ImageError('FLOTILLA_ERR_IMAGE_TOO_LARGE', `uboot-env partition of ${size} bytes`);
  const out = Buffer.alloc(size);
  for (const offset of UBOOT_ENV.offsets) copy.copy(out, offset);
  script.copy(out, UBOOT_SCRIPT_AREA.offset);
  return out;
}
