import { spawnSync } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeKeyFile } from '@flotilla/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { missingTools } from '../src/index.js';
import { sampleTree, scratch, testTrust, writeTree } from './helpers.js';

/** The compiled CLI, run the way users run it (`npx tsc -b` first). */
const CLI = fileURLToPath(new URL('../../cli/dist/bin/flotilla.js', import.meta.url));

function flotilla(args: string[], cwd: string) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', timeout: 60_000 });
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, json: () => JSON.parse(last) };
}

let work: Awaited<ReturnType<typeof scratch>>;
const trust = testTrust();

beforeAll(async () => {
  work = await scratch();
  for (const role of ['release', 'delta', 'recovery'] as const)
    await writeFile(
      join(work.dir, `${role}.key`),
      encodeKeyFile(trust.keys[role], role, `TEST-ONLY ${role}`),
      { mode: 0o600 },
    );
  await writeFile(join(work.dir, 'root.json'), JSON.stringify(trust.root));
  await writeTree(join(work.dir, 'rootfs-1'), sampleTree(), { timeSeed: 1 });
  await writeTree(join(work.dir, 'rootfs-2'), sampleTree(), { timeSeed: 2, reverse: true });
});
afterAll(async () => work.done());

describe('flotilla image / bundle / disk / flash (compiled CLI)', () => {
  it('image build prints a human summary and the same image hash as JSON for a re-created tree', () => {
    const human = flotilla(
      ['image', 'build', '--rootfs', 'rootfs-1', '--out', 'a.img', '--size', '4M'],
      work.dir,
    );
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^built a\.img: ext4, 4\.00 MiB/);
    const sha = /sha256 ([0-9a-f]{64})/.exec(human.stdout)![1];
    const json = flotilla(
      ['image', 'build', '--rootfs', 'rootfs-2', '--out', 'b.img', '--size', '4M', '--json'],
      work.dir,
    );
    expect(json.code).toBe(0);
    expect(json.json()).toMatchObject({ ok: true, format: 'ext4', size: 4 * 1024 * 1024, sha256: sha });
  });

  it('bundle create → verify → inspect, as JSON', async () => {
    const created = flotilla(
      [
        'bundle',
        'create',
        '--rootfs',
        'rootfs-1',
        '--version',
        '1.2.3',
        '--security-version',
        '4',
        '--compatible',
        'board-a',
        '--key',
        'release.key',
        '--size',
        '4M',
        '--chunk-size',
        '256k',
        '--out',
        'r.flot',
        '--json',
      ],
      work.dir,
    );
    expect(created.code).toBe(0);
    expect(created.json()).toMatchObject({
      ok: true,
      version: '1.2.3',
      securityVersion: 4,
      image: { chunks: 16 },
      sbom: { packages: 1 },
    });
    const verified = flotilla(
      ['bundle', 'verify', 'r.flot', '--root', 'root.json', '--hardware', 'board-a', '--json'],
      work.dir,
    );
    expect(verified.code).toBe(0);
    expect(verified.json()).toMatchObject({
      ok: true,
      version: '1.2.3',
      imageSha256: created.json().image.sha256,
    });
    const inspected = flotilla(['bundle', 'inspect', 'r.flot', '--root', 'root.json', '--json'], work.dir);
    expect(inspected.json()).toMatchObject({
      ok: true,
      verified: false,
      signature: { checked: true, valid: true },
    });
    const human = flotilla(['bundle', 'inspect', 'r.flot'], work.dir);
    expect(human.stdout).toContain('payload NOT verified');
  });

  it('bundle verify names the error of a bundle with a flipped payload byte and exits 1', async () => {
    const b = await readFile(join(work.dir, 'r.flot'));
    b[b.length - 10] = b[b.length - 10]! ^ 1;
    await writeFile(join(work.dir, 'bad.flot'), b);
    const r = flotilla(['bundle', 'verify', 'bad.flot', '--root', 'root.json', '--json'], work.dir);
    expect(r.code).toBe(1);
    expect(r.json()).toMatchObject({ ok: false, error: { code: 'FLOTILLA_ERR_BUNDLE_CHUNK_MISMATCH' } });
    const human = flotilla(['bundle', 'verify', 'bad.flot', '--root', 'root.json'], work.dir);
    expect(human.stderr).toMatch(/^error FLOTILLA_ERR_BUNDLE_CHUNK_MISMATCH/);
  });

  it.each([
    ['a missing path', 'missing.flot', 'missing.flot: ENOENT'],
    ['a directory', 'rootfs-1', 'rootfs-1: not a file'],
  ])('bundle inspect and verify of %s exit 1 with FLOTILLA_ERR_CLI_BUNDLE, not a bare fs error', (_what, path, message) => {
    for (const args of [
      ['bundle', 'inspect', path, '--json'],
      ['bundle', 'verify', path, '--root', 'root.json', '--json'],
    ]) {
      const r = flotilla(args, work.dir);
      expect(r.code).toBe(1);
      expect(r.json()).toMatchObject({ ok: false, error: { code: 'FLOTILLA_ERR_CLI_BUNDLE' } });
      expect(r.json().error.message).toContain(message);
      expect(r.json().error.hint).toBeTruthy();
    }
  });

  it('bundle create refuses a key of the wrong role and writes no bundle', async () => {
    const r = flotilla(
      [
        'bundle',
        'create',
        '--rootfs',
        'rootfs-1',
        '--version',
        '1.0.0',
        '--security-version',
        '1',
        '--compatible',
        'x',
        '--key',
        'delta.key',
        '--size',
        '4M',
        '--out',
        'wrong.flot',
        '--json',
      ],
      work.dir,
    );
    expect(r.json()).toMatchObject({ ok: false, error: { code: 'FLOTILLA_ERR_IMAGE_KEY_ROLE' } });
    await expect(stat(join(work.dir, 'wrong.flot'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it.skipIf(missingTools(['mkenvimage']).length > 0)(
    'disk build writes a GPT disk and flash refuses a too-small target, leaving it as it was',
    async () => {
      const disk = flotilla(
        [
          'disk',
          'build',
          '--bundle',
          'r.flot',
          '--root',
          'root.json',
          '--out',
          'disk.img',
          '--data-size',
          '1M',
          '--json',
        ],
        work.dir,
      );
      expect(disk.code).toBe(0);
      expect(disk.json().partitions.map((p: { name: string }) => p.name)).toEqual([
        'uboot-env',
        'rootfs-A',
        'rootfs-B',
        'data',
      ]);
      await writeFile(join(work.dir, 'tiny.bin'), Buffer.alloc(1024 * 1024, 7));
      const flash = ['flash', '--bundle', 'r.flot', '--root', 'root.json', '--target'];
      const r = flotilla([...flash, 'tiny.bin', '--json'], work.dir);
      expect(r.json()).toMatchObject({ ok: false, error: { code: 'FLOTILLA_ERR_IMAGE_TARGET_TOO_SMALL' } });
      expect((await readFile(join(work.dir, 'tiny.bin'))).every((x) => x === 7)).toBe(true);
      const ok = flotilla([...flash, 'card.bin', '--data-size', '1M', '--json'], work.dir);
      expect(ok.json()).toMatchObject({ ok: true, layout: 'disk', bytesWritten: disk.json().size });
      expect(
        (await readFile(join(work.dir, 'card.bin'))).equals(await readFile(join(work.dir, 'disk.img'))),
      ).toBe(true);
      // `flash --partition` onto the whole GPT disk image: refused with a hint, the disk unchanged.
      const wholeDisk = await readFile(join(work.dir, 'card.bin'));
      const partitionArgs = [...flash, 'card.bin', '--partition'];
      const refused = flotilla([...partitionArgs, '--json'], work.dir);
      expect(refused.code).toBe(1);
      expect(refused.json()).toMatchObject({
        ok: false,
        error: { code: 'FLOTILLA_ERR_IMAGE_TARGET_PARTITIONED', hint: expect.stringContaining('--force') },
      });
      const human = flotilla(partitionArgs, work.dir);
      expect(human.stderr).toMatch(/error FLOTILLA_ERR_IMAGE_TARGET_PARTITIONED: .*GPT partition table/);
      expect(human.stderr).toMatch(/hint: .*--force/);
      expect((await readFile(join(work.dir, 'card.bin'))).equals(wholeDisk)).toBe(true);
      const forced = flotilla([...partitionArgs, '--force', '--json'], work.dir);
      expect(forced.json()).toMatchObject({ ok: true, layout: 'partition' });

      // --disk-size: the layout of a card of that size (data takes the rest), as `disk build` makes it
      const cardSize = String(disk.json().size + 1024 * 1024);
      const sized = [
        '--bundle',
        'r.flot',
        '--root',
        'root.json',
        '--data-size',
        '1M',
        '--disk-size',
        cardSize,
      ];
      expect(flotilla(['disk', 'build', ...sized, '--out', 'sized.img', '--json'], work.dir).code).toBe(0);
      const big = flotilla(['flash', ...sized, '--target', 'card2.bin', '--json'], work.dir);
      expect(big.json()).toMatchObject({ ok: true, layout: 'disk', bytesWritten: Number(cardSize) });
      expect(
        (await readFile(join(work.dir, 'card2.bin'))).equals(await readFile(join(work.dir, 'sized.img'))),
      ).toBe(true);
    },
  );
});
