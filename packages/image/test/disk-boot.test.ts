import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  bootLayout,
  GRUB_ENV_PATH,
  PARTITION_TYPES,
  parseGrubEnv,
  type RootMetadata,
  renderGrubCfg,
  UBOOT_ENV,
  ubootEnvDiskOffsets,
} from '@flotilla/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildDiskImage,
  buildUbootEnvPartition,
  missingTools,
  parseGpt,
  SECTOR,
  ubootBootcommand,
  ubootScriptDiskOffset,
} from '../src/index.js';
import { buildSampleBundle, sampleTree, scratch, testTrust } from './helpers.js';

/**
 * Bootable factory disks (`--arch`): the layout comes from the boot contract, the ESP is made
 * without mounting and read back here with mtools, and bad input is refused before anything is
 * written. (That the disk really boots is shown by `pnpm boot-test`, in QEMU.)
 */
const tools = ['grub-mkimage', 'mkfs.vfat', 'mcopy', 'mmd', 'mtype', 'debugfs', 'mke2fs', 'mkimage'];
const lacksTools = missingTools(tools).length > 0;
const MiB = 1024 * 1024;
const now = new Date();
const trust = testTrust(now);
const root = trust.root.signed as RootMetadata;
const rootJson = Buffer.from(JSON.stringify(trust.root));
let work: Awaited<ReturnType<typeof scratch>>;
let kernelBundle: string;
let noKernelBundle: string;

beforeAll(async () => {
  work = await scratch();
  const withKernel = join(work.dir, 'with-kernel');
  await mkdir(withKernel);
  kernelBundle = (
    await buildSampleBundle(withKernel, trust, {
      now,
      chunkSize: 256 * 1024,
      tree: sampleTree({ 'boot/vmlinuz': Buffer.alloc(4096, 7), 'boot/initrd.img': Buffer.alloc(2048, 9) }),
    })
  ).bundlePath;
  const without = join(work.dir, 'without-kernel');
  await mkdir(without);
  noKernelBundle = (await buildSampleBundle(without, trust, { now, chunkSize: 256 * 1024 })).bundlePath;
});
afterAll(async () => work.done());

const mtools = { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } };

describe.skipIf(lacksTools)('bootable factory disk', () => {
  it('x86_64: GPT of the boot contract, an ESP holding GRUB EFI, the generated grub.cfg and a factory grubenv', async () => {
    const out = join(work.dir, 'x86.img');
    const disk = await buildDiskImage({
      bundlePath: kernelBundle,
      root,
      rootJson,
      now,
      output: out,
      arch: 'x86_64',
      dataSize: MiB,
    });
    const bytes = await readFile(out);
    const gpt = parseGpt(bytes);
    expect(gpt.partitions.map((p) => [p.name, p.typeGuid.toUpperCase()])).toEqual(
      bootLayout('x86_64').map((p) => [p.name, p.typeGuid]),
    );
    expect(gpt.partitions[0]!.typeGuid.toUpperCase()).toBe(PARTITION_TYPES.esp);
    const esp = gpt.partitions[0]!;
    const espImg = join(work.dir, 'esp.img');
    await writeFile(espImg, bytes.subarray(esp.firstLba * SECTOR, (esp.lastLba + 1) * SECTOR));
    const efi = execFileSync('mtype', ['-i', espImg, '::/EFI/BOOT/BOOTX64.EFI'], mtools);
    expect(efi.subarray(0, 2).toString('latin1')).toBe('MZ'); // a PE image, as UEFI loads
    expect(execFileSync('mtype', ['-i', espImg, '::/EFI/BOOT/grub.cfg'], mtools).toString()).toBe(
      renderGrubCfg(),
    );
    const envDir = join(work.dir, 'grubenv-out');
    await mkdir(envDir);
    execFileSync('mcopy', ['-i', espImg, `::${GRUB_ENV_PATH}`, join(envDir, 'grubenv')], mtools);
    const env = await readFile(join(envDir, 'grubenv'));
    expect(parseGrubEnv(env)).toMatchObject({ flotilla_slot: 'A', upgrade_available: '0', boot_left: '3' });
    // GRUB's own tool reads the block too
    expect(execFileSync('grub-editenv', [join(envDir, 'grubenv'), 'list']).toString()).toContain(
      'flotilla_slot=A',
    );

    // the data partition carries what the agent needs on first start
    const data = disk.plan.partitions.find((p) => p.role === 'data')!;
    const dataImg = join(work.dir, 'data.img');
    await writeFile(dataImg, bytes.subarray(data.offset, data.offset + data.size));
    const rootOut = execFileSync('debugfs', ['-R', 'cat /trust/root.json', dataImg], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    expect(JSON.parse(rootOut.toString())).toEqual(trust.root);
    const factory = execFileSync('debugfs', ['-R', 'cat /factory-release.json', dataImg], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    expect(JSON.parse(factory.toString()).signed.version).toBe('1.0.0');
  });

  it("aarch64: a kernel beyond 16 MiB is accepted; the env copies carry the board's load addresses and the bootcmd, boot.scr follows them", async () => {
    const boardDefaults = {
      kernel_addr_r: '0x40400000',
      ramdisk_addr_r: '0x44000000',
      scriptaddr: '0x40200000',
      fdtcontroladdr: '0x465f4d50',
    };
    // Debian's arm64 kernel is an uncompressed Image of 33 MB: more than a small-file read allows
    const bigKernel = join(work.dir, 'big-kernel');
    await mkdir(bigKernel);
    const bundlePath = (
      await buildSampleBundle(bigKernel, trust, {
        now,
        chunkSize: 1024 * 1024,
        partitionSize: 24 * MiB,
        tree: sampleTree({
          'boot/vmlinuz': Buffer.alloc(17 * MiB, 7),
          'boot/initrd.img': Buffer.alloc(2048, 9),
        }),
      })
    ).bundlePath;
    const out = join(work.dir, 'arm64.img');
    const disk = await buildDiskImage({
      bundlePath,
      root,
      rootJson,
      now,
      output: out,
      arch: 'aarch64',
      dataSize: MiB,
      ubootBoardDefaults: boardDefaults,
    });
    const bytes = await readFile(out);
    const envPart = disk.plan.partitions.find((p) => p.role === 'uboot-env')!;
    const expected = await buildUbootEnvPartition({ boardDefaults, slot: 'A', size: envPart.size });
    expect(Buffer.compare(bytes.subarray(envPart.offset, envPart.offset + envPart.size), expected)).toBe(0);
    for (const at of ubootEnvDiskOffsets()) {
      const copy = bytes.subarray(at, at + UBOOT_ENV.size).toString('latin1');
      expect(copy).toContain('kernel_addr_r=0x40400000\0');
      expect(copy).toContain(`bootcmd=${ubootBootcommand()}\0`);
      expect(copy).toContain('flotilla_slot=A\0');
    }
    // a legacy U-Boot image (magic 0x27051956) of type script where the bootcmd reads it
    expect(bytes.readUInt32BE(ubootScriptDiskOffset())).toBe(0x27051956);
  });

  it("refuses a bootable aarch64 disk without the board's U-Boot defaults (an env without load addresses cannot boot)", async () => {
    const out = join(work.dir, 'arm64-nodefaults.img');
    await expect(
      buildDiskImage({ bundlePath: kernelBundle, root, now, output: out, arch: 'aarch64' }),
    ).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT',
      message: expect.stringContaining('u-boot-initial-env'),
    });
    expect((await readdir(work.dir)).filter((f) => f.startsWith('arm64-nodefaults'))).toEqual([]);
  });

  it('refuses a rootfs without a kernel for a bootable disk, writing nothing', async () => {
    const out = join(work.dir, 'nokernel.img');
    await expect(
      buildDiskImage({ bundlePath: noKernelBundle, root, now, output: out, arch: 'x86_64' }),
    ).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_IMAGE_NO_KERNEL',
      hint: expect.stringContaining('/boot/vmlinuz'),
    });
    expect(
      (await readdir(work.dir)).filter((f) => f.startsWith('nokernel') || f.startsWith('.flotilla-disk')),
    ).toEqual([]);
  });

  it('refuses a disk too small for the layout, naming the layout, writing nothing', async () => {
    const out = join(work.dir, 'small.img');
    await expect(
      buildDiskImage({
        bundlePath: kernelBundle,
        root,
        now,
        output: out,
        arch: 'x86_64',
        diskSize: 16 * MiB,
      }),
    ).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_IMAGE_DISK_TOO_SMALL',
      message: expect.stringContaining('esp'),
    });
    expect(
      (await readdir(work.dir)).filter((f) => f.startsWith('small') || f.startsWith('.flotilla-disk')),
    ).toEqual([]);
  });

  it('grows the data partition to fill a larger disk', async () => {
    const out = join(work.dir, 'big.img');
    const disk = await buildDiskImage({
      bundlePath: kernelBundle,
      root,
      now,
      output: out,
      arch: 'x86_64',
      dataSize: MiB,
      diskSize: 128 * MiB,
    });
    expect(disk.size).toBe(128 * MiB);
    const data = disk.plan.partitions.at(-1)!;
    expect(data.offset + data.size).toBe(127 * MiB);
  });

  it('refuses an unknown arch before reading anything', async () => {
    await expect(
      buildDiskImage({
        bundlePath: join(work.dir, 'absent.flot'),
        root,
        now,
        output: join(work.dir, 'x.img'),
        arch: 'riscv64',
      }),
    ).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_IMAGE_UNKNOWN_ARCH',
      hint: expect.stringContaining('x86_64'),
    });
  });
});
