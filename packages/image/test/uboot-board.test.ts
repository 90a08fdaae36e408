import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UBOOT_ENV, ubootEnvDiskOffsets } from '@flotilla/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildUbootEnvPartition,
  factoryUbootEnv,
  findTool,
  isImageError,
  missingTools,
  parseUbootEnvText,
  QEMU_ARM64_BOARD,
  UBOOT_SCRIPT_AREA,
  ubootBootcommand,
  ubootConfigFragment,
  ubootScriptDiskOffset,
} from '../src/index.js';

/** What `make u-boot-initial-env` prints for qemu_arm64 (an excerpt: the variables the script uses). */
const BOARD_DEFAULTS = `arch=arm
bootcmd=run distro_bootcmd
bootdelay=2
fdt_addr=0x40000000
kernel_addr_r=0x40400000
ramdisk_addr_r=0x44000000
scriptaddr=0x40200000
`;

const kconfig = (fragment: string, name: string) =>
  fragment
    .split('\n')
    .find((l) => l.startsWith(`CONFIG_${name}=`))
    ?.slice(`CONFIG_${name}=`.length);

describe('U-Boot board values come from the boot contract', () => {
  it('puts the Kconfig environment offsets and size where the contract and fw_env.config expect them', () => {
    const fragment = ubootConfigFragment(QEMU_ARM64_BOARD);
    const [first, second] = ubootEnvDiskOffsets();
    expect(Number(kconfig(fragment, 'ENV_OFFSET'))).toBe(first);
    expect(Number(kconfig(fragment, 'ENV_OFFSET_REDUND'))).toBe(second);
    expect(Number(kconfig(fragment, 'ENV_SIZE'))).toBe(UBOOT_ENV.size);
    expect(kconfig(fragment, 'SYS_REDUNDAND_ENVIRONMENT')).toBe('y');
    expect(kconfig(fragment, 'ENV_IS_IN_MMC')).toBe('y');
    expect(fragment).toContain('# CONFIG_ENV_IS_IN_FLASH is not set');
  });

  it('keeps boot.scr clear of both environment copies and inside the partition', () => {
    const envEnd = Math.max(...UBOOT_ENV.offsets) + UBOOT_ENV.size;
    expect(UBOOT_SCRIPT_AREA.offset).toBeGreaterThanOrEqual(envEnd);
    expect(UBOOT_SCRIPT_AREA.offset + UBOOT_SCRIPT_AREA.maxSize).toBeLessThanOrEqual(1024 * 1024);
    expect(ubootScriptDiskOffset()).toBe(ubootEnvDiskOffsets()[0]! + UBOOT_SCRIPT_AREA.offset);
  });

  it('has bootcmd read exactly the boot.scr sectors', () => {
    const cmd = ubootBootcommand(QEMU_ARM64_BOARD);
    const [, start, count] = cmd.match(/mmc read \$\{scriptaddr\} (0x[0-9a-f]+) (0x[0-9a-f]+)/) ?? [];
    expect(Number(start) * 512).toBe(ubootScriptDiskOffset());
    expect(Number(count) * 512).toBe(UBOOT_SCRIPT_AREA.maxSize);
    expect(cmd).toMatch(/source \$\{scriptaddr\}; .*reset$/);
  });

  it('refuses a factory environment without the board defaults (U-Boot would lose its load addresses)', () => {
    let caught: unknown;
    try {
      factoryUbootEnv({ bootdelay: '2' });
    } catch (err) {
      caught = err;
    }
    expect(isImageError(caught, 'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT')).toBe(true);
    expect(String((caught as Error).message)).toContain('kernel_addr_r');
  });

  it('replaces the board bootcmd and keeps its other defaults', () => {
    const env = factoryUbootEnv(parseUbootEnvText(BOARD_DEFAULTS));
    expect(env.bootcmd).toBe(ubootBootcommand());
    expect(env.kernel_addr_r).toBe('0x40400000');
    expect(env.flotilla_slot).toBe('A');
    expect(env.upgrade_available).toBe('0');
  });
});

const lacksTools = missingTools(['mkenvimage', 'mkimage', 'fw_printenv']).length > 0;

describe.skipIf(lacksTools)('uboot-env partition content', () => {
  let dir: string;
  let partition: Buffer;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'flotilla-uboot-board-'));
    partition = await buildUbootEnvPartition({ boardDefaults: parseUbootEnvText(BOARD_DEFAULTS), slot: 'B' });
    await writeFile(join(dir, 'part.img'), partition);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('is read by the real fw_printenv as a redundant pair at the contract offsets', async () => {
    const conf = join(dir, 'fw_env.config');
    const hex = (n: number) => `0x${n.toString(16)}`;
    await writeFile(
      conf,
      UBOOT_ENV.offsets.map((o) => `${join(dir, 'part.img')} ${hex(o)} ${hex(UBOOT_ENV.size)}\n`).join(''),
    );
    const out = execFileSync(findTool('fw_printenv')!, ['-c', conf], { encoding: 'utf8' });
    const vars = parseUbootEnvText(out);
    expect(vars.flotilla_slot).toBe('B');
    expect(vars.flotilla_good_slot).toBe('B');
    expect(vars.kernel_addr_r).toBe('0x40400000');
    expect(vars.bootcmd).toBe(ubootBootcommand());
  });

  it('carries boot.scr as a U-Boot script image that mkimage lists', async () => {
    const area = partition.subarray(
      UBOOT_SCRIPT_AREA.offset,
      UBOOT_SCRIPT_AREA.offset + UBOOT_SCRIPT_AREA.maxSize,
    );
    expect(area.readUInt32BE(0)).toBe(0x27051956); // legacy image magic
    const script = area.subarray(0, 64 + area.readUInt32BE(12)); // header + its data size
    await writeFile(join(dir, 'boot.scr'), script);
    const listing = execFileSync(findTool('mkimage')!, ['-l', join(dir, 'boot.scr')], { encoding: 'utf8' });
    expect(listing).toMatch(/Script/);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: U-Boot's own ${var} syntax
    expect(script.toString('latin1')).toContain('setexpr bootcount ${bootcount} + 1');
  });
});
