import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildImage, missingTools, readFileFromImage, scanPackages, stageRootfs } from '../src/index.js';
import { deterministicBlob, sampleTree, scratch, writeTree } from './helpers.js';

const MiB = 1024 * 1024;
/** The tools each format's build and read-back need (e2fsprogs is in every Debian install). */
const FORMAT_TOOLS = {
  ext4: ['mke2fs', 'debugfs'],
  squashfs: ['mksquashfs', 'unsquashfs'],
  erofs: ['mkfs.erofs', 'fsck.erofs'],
};
const lacks = (format: keyof typeof FORMAT_TOOLS) => missingTools(FORMAT_TOOLS[format]).length > 0;
let work: Awaited<ReturnType<typeof scratch>>;
beforeAll(async () => {
  work = await scratch();
});
afterAll(async () => work.done());

describe('partition image builder', () => {
  for (const format of ['ext4', 'squashfs', 'erofs'] as const) {
    it.skipIf(lacks(format))(`builds bit-identical ${format} images from two re-created trees`, async () => {
      const a = join(work.dir, `${format}-tree-a`);
      const b = join(work.dir, `${format}-tree-b`);
      // Same content, opposite creation order, different times and umask-like modes.
      await writeTree(a, sampleTree(), { timeSeed: 1 });
      await writeTree(b, sampleTree(), { reverse: true, timeSeed: 2 });
      const common = { format, partitionSize: 4 * MiB, epoch: 1_700_000_000 } as const;
      const ia = await buildImage({ ...common, input: a, output: join(work.dir, `${format}-a.img`) });
      await new Promise((r) => setTimeout(r, 1100)); // a later clock second must not leak in
      const ib = await buildImage({ ...common, input: b, output: join(work.dir, `${format}-b.img`) });
      expect(ib.sha256).toBe(ia.sha256);
      expect(Buffer.compare(await readFile(ia.path), await readFile(ib.path))).toBe(0);
      expect(ia.treeDigest).toBe(ib.treeDigest);
      if (format === 'ext4') expect(ia.size).toBe(4 * MiB);
      else expect(ia.size).toBeLessThanOrEqual(4 * MiB);
      // A content change must change the image (the comparison above is not vacuous).
      const c = join(work.dir, `${format}-tree-c`);
      await writeTree(c, sampleTree({ 'etc/hostname': 'other\n' }), { timeSeed: 1 });
      const ic = await buildImage({ ...common, input: c, output: join(work.dir, `${format}-c.img`) });
      expect(ic.sha256).not.toBe(ia.sha256);
      // And the built image holds the files, readable without mounting.
      const behaviour = await readFileFromImage(ia.path, format, '/etc/flotilla/sim-behaviour.json');
      expect(JSON.parse(behaviour.toString())).toEqual({ boots: true, healthy: true, healthReason: null });
      expect((await readFileFromImage(ia.path, format, '/opt/app/my file with spaces.txt')).toString()).toBe(
        'spaces are fine\n',
      );
      await expect(readFileFromImage(ia.path, format, '/etc/missing')).rejects.toMatchObject({
        code: 'FLOTILLA_ERR_IMAGE_FILE_NOT_FOUND',
      });
    });
  }

  it('builds the same ext4 image from a tarball as from the directory it was made of', async () => {
    const dir = join(work.dir, 'tar-src');
    await writeTree(dir, sampleTree(), { timeSeed: 3 });
    const tarPath = join(work.dir, 'rootfs.tar.gz');
    execFileSync('tar', ['-czf', tarPath, '-C', dir, '.']);
    const common = { format: 'ext4', partitionSize: 4 * MiB, epoch: 1_700_000_000 } as const;
    const fromDir = await buildImage({ ...common, input: dir, output: join(work.dir, 'from-dir.img') });
    const fromTar = await buildImage({ ...common, input: tarPath, output: join(work.dir, 'from-tar.img') });
    expect(fromTar.sha256).toBe(fromDir.sha256);
  });

  it('refuses a tarball whose members escape with .. or through a symlink, writing nothing outside', async () => {
    const outside = join(work.dir, 'outside');
    await mkdir(outside);
    const tarPath = join(work.dir, 'evil.tar');
    // GNU tar writes the archive; the members are crafted with --transform and a symlink to `outside`.
    const src = join(work.dir, 'evil-src');
    await mkdir(join(src, 'etc'), { recursive: true });
    await writeFile(join(src, 'etc', 'ok'), 'ok\n');
    await symlink(outside, join(src, 'link'));
    await writeFile(join(src, 'pwned'), 'bad\n');
    execFileSync('tar', [
      '-cf',
      tarPath,
      '-C',
      src,
      'etc',
      'link',
      '--transform',
      's,^pwned$,link/pwned,',
      'pwned',
    ]);
    await expect(
      buildImage({
        format: 'ext4',
        input: tarPath,
        partitionSize: 4 * MiB,
        output: join(work.dir, 'evil.img'),
      }),
    ).rejects.toMatchObject({ code: 'FLOTILLA_ERR_IMAGE_INPUT_INVALID' });
    expect(await readdir(outside)).toEqual([]);
    await expect(stat(join(work.dir, 'evil.img'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('never follows a symlink in the tree onto the host when reading package databases', async () => {
    const secret = join(work.dir, 'host-status');
    await writeFile(secret, 'Package: host-secret\nStatus: install ok installed\nVersion: 1\n\n');
    const dir = join(work.dir, 'link-tree');
    await writeTree(dir, { files: { 'etc/hostname': 'x\n' }, links: { 'var/lib/dpkg/status': secret } });
    const tree = await stageRootfs(dir);
    try {
      expect(await scanPackages(tree)).toEqual([]);
    } finally {
      await tree.cleanup();
    }
    await expect(readFileFromImage(secret, 'ext4', '/../etc/passwd')).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT',
    });
  });

  it('passes a raw image through unchanged and refuses one larger than the partition', async () => {
    const raw = join(work.dir, 'raw.bin');
    await writeFile(raw, deterministicBlob(300_000, 9));
    const out = await buildImage({
      format: 'raw',
      input: raw,
      partitionSize: MiB,
      output: join(work.dir, 'raw.img'),
    });
    expect(Buffer.compare(await readFile(out.path), await readFile(raw))).toBe(0);
    await expect(
      buildImage({
        format: 'raw',
        input: raw,
        partitionSize: 256 * 1024,
        output: join(work.dir, 'raw-small.img'),
      }),
    ).rejects.toMatchObject({ code: 'FLOTILLA_ERR_IMAGE_TOO_LARGE' });
  });

  it('refuses a missing rootfs with FLOTILLA_ERR_IMAGE_INPUT_MISSING and writes nothing', async () => {
    const output = join(work.dir, 'missing.img');
    await expect(
      buildImage({ format: 'ext4', input: join(work.dir, 'no-such-dir'), partitionSize: 4 * MiB, output }),
    ).rejects.toMatchObject({ code: 'FLOTILLA_ERR_IMAGE_INPUT_MISSING' });
    await expect(stat(output)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  for (const format of ['ext4', 'squashfs', 'erofs'] as const) {
    it.skipIf(lacks(format))(
      `refuses a ${format} tree larger than the partition and keeps the previous output`,
      async () => {
        const dir = join(work.dir, `big-${format}`);
        await writeTree(dir, { files: { 'big.bin': deterministicBlob(3 * MiB, 5) } });
        const output = join(work.dir, `big-${format}.img`);
        await writeFile(output, 'previous image');
        await expect(buildImage({ format, input: dir, partitionSize: MiB, output })).rejects.toMatchObject({
          code: 'FLOTILLA_ERR_IMAGE_TOO_LARGE',
        });
        expect(await readFile(output, 'utf8')).toBe('previous image');
      },
    );
  }

  it('rejects bad settings with FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', async () => {
    const dir = join(work.dir, 'tiny');
    await writeTree(dir, { files: { a: 'a' } });
    const output = join(work.dir, 'bad.img');
    await expect(
      buildImage({ format: 'ext4', input: dir, partitionSize: 1000, output }),
    ).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT',
    });
    await expect(
      buildImage({ format: 'zip' as 'ext4', input: dir, partitionSize: MiB, output }),
    ).rejects.toMatchObject({ code: 'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT' });
  });
});
