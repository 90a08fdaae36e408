import { execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RootMetadata } from '@flotilla/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BuiltRelease,
  buildDiskImage,
  buildRelease,
  findTool,
  flashBundle,
  missingTools,
  parseGpt,
  SECTOR,
  writeBundle,
} from '../src/index.js';
import { buildSampleBundle, scratch, testTrust } from './helpers.js';

const MiB = 1024 * 1024;
/** Disk images carry a U-Boot env made by mkenvimage; tests read it back with fw_printenv. */
const lacksUbootTools = missingTools(['mkenvimage', 'fw_printenv']).length > 0;
const now = new Date();
const trust = testTrust(now);
const root = trust.root.signed as RootMetadata;
let work: Awaited<ReturnType<typeof scratch>>;
let release: BuiltRelease;
let bundlePath: string;
let image: Buffer;
const layout = { dataSize: MiB }; // 1 + 1 (env) + 2 + 2 + 1 (data) + 1 MiB = 8 MiB
const diskSize = 8 * MiB;

beforeAll(async () => {
  work = await scratch();
  ({ release, bundlePath } = await buildSampleBundle(work.dir, trust, { now, chunkSize: 256 * 1024 }));
  image = await readFile(release.imagePath);
});
afterAll(async () => work.done());

async function tamperedBundle(): Promise<string> {
  const b = await readFile(bundlePath);
  b[b.length - 1000] = b[b.length - 1000]! ^ 0x80;
  const p = join(work.dir, 'tampered.flot');
  await writeFile(p, b);
  return p;
}

describe.skipIf(lacksUbootTools)('factory disk image', () => {
  it('writes a GPT disk with boot environment, slot A = the image, empty slot B and an ext4 data partition', async () => {
    const out = join(work.dir, 'disk.img');
    const disk = await buildDiskImage({ bundlePath, root, now, output: out, ...layout });
    const bytes = await readFile(out);
    expect(bytes.length).toBe(diskSize);
    const gpt = parseGpt(bytes);
    expect(gpt.partitions.map((p) => p.name)).toEqual(['uboot-env', 'rootfs-A', 'rootfs-B', 'data']);
    const slotA = gpt.partitions[1]!;
    expect(
      bytes.subarray(slotA.firstLba * SECTOR, slotA.firstLba * SECTOR + image.length).equals(image),
    ).toBe(true);
    const slotB = gpt.partitions[2]!;
    expect(bytes.subarray(slotB.firstLba * SECTOR, (slotB.lastLba + 1) * SECTOR).every((b) => b === 0)).toBe(
      true,
    );
    // The backup header at the last LBA mirrors the primary.
    expect(bytes.toString('latin1', diskSize - SECTOR, diskSize - SECTOR + 8)).toBe('EFI PART');
    expect(disk.manifest.version).toBe('1.0.0');

    // The real libubootenv tools read the redundant environment straight out of the disk image.
    const env = gpt.partitions[0]!.firstLba * SECTOR;
    const conf = join(work.dir, 'fw_env.config');
    await writeFile(
      conf,
      `${out} 0x${env.toString(16)} 0x4000\n${out} 0x${(env + 0x4000).toString(16)} 0x4000\n`,
    );
    const printenv = (v: string) =>
      execFileSync(findTool('fw_printenv')!, ['-c', conf, '-n', v], { encoding: 'utf8' }).trim();
    expect(printenv('flotilla_slot')).toBe('A');
    expect(printenv('flotilla_good_slot')).toBe('A');
    expect(printenv('upgrade_available')).toBe('0');
    expect(printenv('bootcount')).toBe('0');
    expect(printenv('bootlimit')).toBe('3');
    expect(printenv('boot_left')).toBe('3');

    const data = gpt.partitions[3]!;
    const dataImg = join(work.dir, 'data-part.img');
    await writeFile(dataImg, bytes.subarray(data.firstLba * SECTOR, (data.lastLba + 1) * SECTOR));
    expect(
      execFileSync(findTool('dumpe2fs')!, ['-h', dataImg], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }),
    ).toMatch(/Filesystem volume name:\s+data/);

    // Same release, same disk image.
    const again = await buildDiskImage({
      bundlePath,
      root,
      now,
      output: join(work.dir, 'disk2.img'),
      ...layout,
    });
    expect((await readFile(again.path)).equals(bytes)).toBe(true);
  });

  it.skipIf(missingTools(['sgdisk', 'sfdisk']).length > 0)(
    'passes sgdisk --verify and sfdisk reads the same layout',
    async () => {
      const out = join(work.dir, 'disk-check.img');
      await buildDiskImage({ bundlePath, root, now, output: out, ...layout });
      const verify = execFileSync(findTool('sgdisk')!, ['--verify', out], { encoding: 'utf8' });
      expect(verify).toMatch(/No problems found/);
      const table = JSON.parse(execFileSync(findTool('sfdisk')!, ['--json', out], { encoding: 'utf8' }));
      expect(table.partitiontable.label).toBe('gpt');
      expect(table.partitiontable.partitions.map((p: { name: string }) => p.name)).toEqual([
        'uboot-env',
        'rootfs-A',
        'rootfs-B',
        'data',
      ]);
      expect(table.partitiontable.partitions[1].start).toBe((2 * MiB) / SECTOR);
    },
  );

  it('refuses a bundle with a flipped payload byte and leaves no disk image', async () => {
    const out = join(work.dir, 'bad-disk.img');
    await expect(
      buildDiskImage({ bundlePath: await tamperedBundle(), root, now, output: out, ...layout }),
    ).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_BUNDLE_CHUNK_MISMATCH',
    });
    await expect(readFile(out)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe.skipIf(lacksUbootTools)('flash', () => {
  it('writes the image to a partition target, reads it back and reports the verified hash', async () => {
    const target = join(work.dir, 'partition.bin');
    const r = await flashBundle({ bundlePath, root, now, target, layout: 'partition' });
    expect(r.sha256).toBe(release.manifest.signed.image.sha256);
    expect((await readFile(target)).equals(image)).toBe(true);
  });

  it('refuses a --partition target holding a GPT (a factory disk image) unless forced, writing nothing', async () => {
    const disk = join(work.dir, 'whole-disk.img');
    await buildDiskImage({ bundlePath, root, now, output: disk, ...layout });
    const before = await readFile(disk);
    await expect(
      flashBundle({ bundlePath, root, now, target: disk, layout: 'partition' }),
    ).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_IMAGE_TARGET_PARTITIONED',
      hint: expect.stringContaining('--force'),
    });
    expect((await readFile(disk)).equals(before)).toBe(true);
    const forced = await flashBundle({
      bundlePath,
      root,
      now,
      target: disk,
      layout: 'partition',
      force: true,
    });
    expect(forced.sha256).toBe(release.manifest.signed.image.sha256);
    expect((await readFile(disk)).subarray(0, image.length).equals(image)).toBe(true);
  });

  it.skipIf(!findTool('sfdisk'))(
    'refuses a --partition target holding an MBR, and writes over an earlier slot image',
    async () => {
      const disk = join(work.dir, 'mbr-disk.img');
      await writeFile(disk, Buffer.alloc(diskSize));
      execFileSync('sfdisk', ['--quiet', disk], { input: 'label: dos\nstart=2048, size=4096, type=83\n' });
      const before = await readFile(disk);
      await expect(
        flashBundle({ bundlePath, root, now, target: disk, layout: 'partition' }),
      ).rejects.toMatchObject({
        code: 'FLOTILLA_ERR_IMAGE_TARGET_PARTITIONED',
      });
      expect((await readFile(disk)).equals(before)).toBe(true);
      // A slot that holds the previous image is what --partition is for.
      const slot = join(work.dir, 'slot.bin');
      await writeFile(slot, Buffer.concat([image, Buffer.alloc(MiB)]));
      await expect(
        flashBundle({ bundlePath, root, now, target: slot, layout: 'partition' }),
      ).resolves.toMatchObject({
        layout: 'partition',
      });
    },
  );

  it('writes the whole factory disk onto a larger medium, leaving the rest of it untouched', async () => {
    const target = join(work.dir, 'sdcard.bin');
    await writeFile(target, Buffer.alloc(diskSize + MiB, 0xa5));
    const r = await flashBundle({ bundlePath, root, now, target, ...layout });
    const expected = await readFile(
      (await buildDiskImage({ bundlePath, root, now, output: join(work.dir, 'ref.img'), ...layout })).path,
    );
    const got = await readFile(target);
    expect(r.bytesWritten).toBe(diskSize);
    expect(got.subarray(0, diskSize).equals(expected)).toBe(true);
    expect(got.subarray(diskSize).every((b) => b === 0xa5)).toBe(true);
  });

  it('refuses a target smaller than the disk image and writes nothing', async () => {
    const target = join(work.dir, 'small.bin');
    await writeFile(target, Buffer.alloc(4 * MiB, 0x11));
    await expect(flashBundle({ bundlePath, root, now, target, ...layout })).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_IMAGE_TARGET_TOO_SMALL',
    });
    expect((await readFile(target)).every((b) => b === 0x11)).toBe(true);
  });

  it('refuses a mounted target and one backing a loop device, and writes nothing', async () => {
    const target = join(work.dir, 'mounted.bin');
    await writeFile(target, Buffer.alloc(diskSize, 0x22));
    const fake = join(work.dir, 'fake-system');
    await mkdir(join(fake, 'proc/self'), { recursive: true });
    await mkdir(join(fake, 'sys/block/loop3/loop'), { recursive: true });
    await writeFile(
      join(fake, 'proc/self/mounts'),
      `/dev/vda / ext4 rw 0 0\n${target.replace(/ /g, '\\040')} /mnt/img ext4 rw 0 0\n`,
    );
    const system = { procRoot: join(fake, 'proc'), sysRoot: join(fake, 'sys') };
    await expect(flashBundle({ bundlePath, root, now, target, system, ...layout })).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_IMAGE_TARGET_MOUNTED',
    });
    await writeFile(join(fake, 'proc/self/mounts'), '/dev/vda / ext4 rw 0 0\n');
    await writeFile(join(fake, 'sys/block/loop3/loop/backing_file'), `${target}\n`);
    await expect(flashBundle({ bundlePath, root, now, target, system, ...layout })).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_IMAGE_TARGET_MOUNTED',
    });
    expect((await readFile(target)).every((b) => b === 0x22)).toBe(true);
  });

  it('verifies the whole bundle before opening the target: a flipped payload byte writes nothing', async () => {
    const target = join(work.dir, 'untouched.bin');
    await writeFile(target, Buffer.alloc(diskSize, 0x33));
    for (const mode of ['disk', 'partition'] as const) {
      await expect(
        flashBundle({ bundlePath: await tamperedBundle(), root, now, target, layout: mode, ...layout }),
      ).rejects.toMatchObject({
        code: 'FLOTILLA_ERR_BUNDLE_CHUNK_MISMATCH',
      });
    }
    expect((await readFile(target)).every((b) => b === 0x33)).toBe(true);
  });

  it('flashes a recovery image only when recovery is allowed', async () => {
    const rec = await buildRelease({
      input: join(work.dir, 'rootfs'),
      format: 'ext4',
      partitionSize: 2 * MiB,
      outDir: join(work.dir, 'rec'),
      meta: {
        name: 'demo',
        version: '1.0.0-recovery',
        securityVersion: 1,
        compatible: ['board-a'],
        kind: 'recovery',
        now,
      },
      signingKey: { key: trust.keys.recovery, role: 'recovery' },
    });
    const recBundle = join(work.dir, 'recovery.flot');
    await writeBundle({
      manifest: rec.manifest,
      imagePath: rec.imagePath,
      sbom: rec.sbom,
      output: recBundle,
    });
    const target = join(work.dir, 'rec-target.bin');
    await expect(flashBundle({ bundlePath: recBundle, root, now, target, ...layout })).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_KEY_WRONG_ROLE',
    });
    const r = await flashBundle({ bundlePath: recBundle, root, now, target, allowRecovery: true, ...layout });
    expect(r.manifest.kind).toBe('recovery');
  });
});
