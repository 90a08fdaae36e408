import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type RootMetadata, verifyRelease } from '@flotilla/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildFirmwareSet,
  type FirmwareSet,
  generateBlob,
  loadRecipe,
  readFileFromImage,
} from '../src/index.js';
import { scratch, testTrust } from './helpers.js';

const now = new Date();
const trust = testTrust(now);
const root = trust.root.signed as RootMetadata;
let work: Awaited<ReturnType<typeof scratch>>;
let set: FirmwareSet;
const byId = (id: string) => set.releases.find((r) => r.id === id)!;

beforeAll(async () => {
  work = await scratch();
  set = await buildFirmwareSet({
    keys: { release: trust.keys.release, recovery: trust.keys.recovery },
    outDir: join(work.dir, 'out'),
    now,
  });
});
afterAll(async () => work.done());

describe('demo firmware set', () => {
  it('builds 1.0.0, 1.1.0, 1.2.0-bad and a recovery image, each verifying under its own role', () => {
    expect(set.releases.map((r) => [r.id, r.version, r.kind])).toEqual([
      ['1.0.0', '1.0.0', 'release'],
      ['1.1.0', '1.1.0', 'release'],
      ['1.2.0-bad', '1.2.0-bad', 'release'],
      ['recovery', '1.1.0-recovery', 'recovery'],
    ]);
    for (const r of set.releases) {
      expect(verifyRelease(r.manifest, root, now, { allowKinds: [r.kind] }).image.sha256).toBe(r.imageSha256);
      expect(r.imageSize).toBe(8 * 1024 * 1024);
    }
  });

  it('puts the version and the simulated boot behaviour inside each image', async () => {
    const read = async (id: string, path: string) =>
      (await readFileFromImage(byId(id).imagePath, 'ext4', path)).toString();
    expect(await read('1.0.0', '/etc/flotilla/release')).toBe('1.0.0\n');
    expect(JSON.parse(await read('1.1.0', '/etc/flotilla/sim-behaviour.json'))).toEqual({
      boots: true,
      healthy: true,
      healthReason: null,
    });
    expect(JSON.parse(await read('1.2.0-bad', '/etc/flotilla/sim-behaviour.json'))).toEqual({
      boots: true,
      healthy: false,
      healthReason: 'app.service failed: exit code 3',
    });
    expect(await read('recovery', '/etc/flotilla/release')).toBe('1.1.0-recovery\n');
  });

  it('makes 1.1.0 a realistic update: a handful of files change or appear, the rest are identical', async () => {
    const files = async (id: string) => {
      const sbom = JSON.parse(await readFile(byId(id).sbomPath, 'utf8'));
      return new Map<string, string>(
        sbom.components
          .filter((c: { type: string }) => c.type === 'file')
          .map((c: { name: string; hashes: { content: string }[] }) => [c.name, c.hashes[0]!.content]),
      );
    };
    const a = await files('1.0.0');
    const b = await files('1.1.0');
    const changed = [...b].filter(([p, h]) => a.has(p) && a.get(p) !== h).map(([p]) => p);
    const added = [...b.keys()].filter((p) => !a.has(p));
    expect(added).toContain('/opt/app/lib/metrics-plugin.so');
    expect(changed).toEqual(
      expect.arrayContaining([
        '/opt/app/bin/app',
        '/usr/lib/aarch64-linux-gnu/libssl.so.3',
        '/var/lib/dpkg/status',
      ]),
    );
    expect(changed.length + added.length).toBeLessThan(25);
    // Most files stay byte-identical, as in a real point release.
    expect(b.size - changed.length - added.length).toBeGreaterThan(2 * (changed.length + added.length));
  });

  it('lists the dpkg and npm packages of the rootfs in the SBOM', async () => {
    const sbom = JSON.parse(await readFile(byId('1.1.0').sbomPath, 'utf8'));
    const purls: string[] = sbom.components.map((c: { purl?: string }) => c.purl).filter(Boolean);
    expect(purls).toContain('pkg:deb/flotilla-demo/libssl3@3.0.13-1~deb12u1?arch=arm64');
    expect(purls).toContain('pkg:npm/mqtt@5.16.0');
    expect(purls).toContain('pkg:npm/%40sinclair/typebox@0.34.52');
  });

  it('rebuilds a bit-identical image from the same recipe', async () => {
    const again = await buildFirmwareSet({
      keys: { release: trust.keys.release },
      outDir: join(work.dir, 'again'),
      only: ['1.0.0'],
      now,
    });
    expect(again.releases[0]!.imageSha256).toBe(byId('1.0.0').imageSha256);
  });

  it('refuses a recipe with a patch outside its file, and a set without a recovery key for the recovery recipe', async () => {
    const dir = join(work.dir, 'recipes', 'broken');
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, 'recipe.json'),
      JSON.stringify({
        name: 'x',
        version: '1.0.0',
        securityVersion: 1,
        compatible: ['a'],
        partitionSize: '1M',
        sourceDateEpoch: 0,
        generated: [{ path: '/bin/x', size: 10, seed: 's', patches: [{ offset: 8, size: 4, seed: 'p' }] }],
      }),
    );
    await expect(loadRecipe(join(dir, 'recipe.json'))).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_IMAGE_RECIPE_INVALID',
    });
    await expect(
      buildFirmwareSet({
        keys: { release: trust.keys.release },
        outDir: join(work.dir, 'norec'),
        only: ['recovery'],
        now,
      }),
    ).rejects.toMatchObject({ code: 'FLOTILLA_ERR_IMAGE_KEY_MISSING' });
  });

  it('generates prefix-stable pseudo-binaries (a longer file of the same seed starts with the same bytes)', () => {
    const short = generateBlob('app', 1000);
    const long = generateBlob('app', 5000);
    expect(long.subarray(0, 1000).equals(short)).toBe(true);
    expect(generateBlob('other', 1000).equals(short)).toBe(false);
  });
});
