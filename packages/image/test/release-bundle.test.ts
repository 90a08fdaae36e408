import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type BundleHeader,
  canonicalBytes,
  type RootMetadata,
  type SignedRelease,
  signDocument,
  verifyRelease,
} from '@flotilla/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BUNDLE_MAGIC,
  type BuiltRelease,
  buildRelease,
  readBundle,
  readBundleHeader,
  verifyBundle,
  writeBundle,
} from '../src/index.js';
import { buildSampleBundle, sampleTree, scratch, testTrust } from './helpers.js';

const now = new Date();
const trust = testTrust(now);
const root = trust.root.signed as RootMetadata;
let work: Awaited<ReturnType<typeof scratch>>;
let release: BuiltRelease;
let bundlePath: string;
let bundle: Buffer;

const rootfsExtras = {
  'var/lib/opkg/status':
    'Package: dropbear\nVersion: 2022.83-1\nArchitecture: aarch64\nStatus: install ok installed\n\n',
  'usr/lib/node_modules/flotilla-app/package.json': '{"name":"flotilla-app","version":"2.3.4"}',
  'usr/lib/node_modules/flotilla-app/node_modules/@scope/left-pad/package.json':
    '{"name":"@scope/left-pad","version":"1.3.0"}',
  'usr/lib/node_modules/flotilla-app/package-lock.json': JSON.stringify({
    lockfileVersion: 3,
    packages: {
      '': { name: 'flotilla-app', version: '2.3.4' },
      'node_modules/@scope/left-pad': {
        version: '1.3.0',
        integrity: `sha512-${Buffer.alloc(64, 7).toString('base64')}`,
      },
      'node_modules/ms': { version: '2.1.3' },
    },
  }),
};

/** Feeds a buffer in small pieces and records how far the reader pulled. */
function source(buf: Buffer, piece = 4096): { stream: AsyncIterable<Uint8Array>; pulled: () => number } {
  let pulled = 0;
  return {
    pulled: () => pulled,
    stream: {
      async *[Symbol.asyncIterator]() {
        for (let off = 0; off < buf.length; off += piece) {
          const b = buf.subarray(off, off + piece);
          pulled += b.length;
          yield b;
        }
      },
    },
  };
}

async function collect(buf: Buffer, opts = {}) {
  const parts: { type: string; index?: number }[] = [];
  try {
    for await (const p of readBundle(source(buf).stream, { root, now, ...opts }))
      parts.push({ type: p.type, ...(p.type === 'chunk' ? { index: p.index } : {}) });
    return { parts, error: null };
  } catch (error) {
    return { parts, error: error as { code: string } };
  }
}

/** Assembles a bundle by hand, so tests can put a different manifest or header in it. */
function assemble(header: BundleHeader, sbom: Buffer, image: Buffer): Buffer {
  const h = Buffer.from(canonicalBytes(header));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(h.length);
  return Buffer.concat([BUNDLE_MAGIC, len, h, sbom, image]);
}

function headerFor(manifest: SignedRelease): BundleHeader {
  const m = manifest.signed;
  return {
    _type: 'bundle',
    schemaVersion: 1,
    manifest,
    sections: [
      { name: 'sbom', size: m.sbom.size, sha256: m.sbom.sha256 },
      { name: 'image', size: m.image.size, sha256: m.image.sha256 },
    ],
  };
}

beforeAll(async () => {
  work = await scratch();
  ({ release, bundlePath } = await buildSampleBundle(work.dir, trust, {
    now,
    chunkSize: 64 * 1024,
    tree: sampleTree(rootfsExtras),
    meta: { securityVersion: 3, sourceRevision: 'abc123' },
  }));
  bundle = await readFile(bundlePath);
});
afterAll(async () => work.done());

describe('release manifest and SBOM', () => {
  it('signs a manifest that protocol verifyRelease accepts, with chunk hashes covering the image', async () => {
    const m = verifyRelease(release.manifest, root, now);
    expect(m.version).toBe('1.0.0');
    expect(m.securityVersion).toBe(3);
    expect(m.image.size).toBe((await stat(release.imagePath)).size);
    expect(m.image.chunkHashes).toHaveLength(32);
    expect(m.provenance.sourceRevision).toBe('abc123');
    expect(m.provenance.inputs.map((i) => i.name)).toContain('rootfs-tree');
    expect(m.provenance.builder).toMatch(/mke2fs 1\.\d+/);
  });

  it('lists dpkg, opkg and npm packages and every file digest in a CycloneDX 1.5 SBOM', () => {
    const sbom = JSON.parse(release.sbom.toString());
    expect(sbom.bomFormat).toBe('CycloneDX');
    expect(sbom.specVersion).toBe('1.5');
    const purls = sbom.components
      .filter((c: { type: string }) => c.type === 'library')
      .map((c: { purl: string }) => c.purl);
    expect(purls).toEqual(
      expect.arrayContaining([
        'pkg:deb/debian/busybox@1%3A1.36.1-3?arch=arm64',
        'pkg:generic/dropbear@2022.83-1?arch=aarch64',
        'pkg:npm/flotilla-app@2.3.4',
        'pkg:npm/%40scope/left-pad@1.3.0',
        'pkg:npm/ms@2.1.3',
      ]),
    );
    const leftPad = sbom.components.find(
      (c: { purl?: string }) => c.purl === 'pkg:npm/%40scope/left-pad@1.3.0',
    );
    expect(leftPad.hashes[0]).toEqual({ alg: 'SHA-512', content: '07'.repeat(64) });
    const hostname = sbom.components.find((c: { name: string }) => c.name === '/etc/hostname');
    expect(hostname.hashes[0]).toEqual({
      alg: 'SHA-256',
      content: createHash('sha256').update('device\n').digest('hex'),
    });
    expect(sbom.metadata.component.hashes[0].content).toBe(release.manifest.signed.image.sha256);
  });

  it('refuses to sign a release with a recovery key, and a recovery image with a release key', async () => {
    const common = {
      input: join(work.dir, 'rootfs'),
      format: 'ext4' as const,
      partitionSize: 2 * 1024 * 1024,
      outDir: join(work.dir, 'wrong-role'),
    };
    await expect(
      buildRelease({
        ...common,
        meta: { name: 'demo', version: '1.0.0', securityVersion: 1, compatible: ['board-a'] },
        signingKey: { key: trust.keys.recovery, role: 'recovery' },
      }),
    ).rejects.toMatchObject({ code: 'FLOTILLA_ERR_IMAGE_KEY_ROLE' });
    await expect(
      buildRelease({
        ...common,
        meta: {
          name: 'demo',
          version: '1.0.0',
          securityVersion: 1,
          compatible: ['board-a'],
          kind: 'recovery',
        },
        signingKey: { key: trust.keys.release, role: 'release' },
      }),
    ).rejects.toMatchObject({ code: 'FLOTILLA_ERR_IMAGE_KEY_ROLE' });
  });

  it('refuses a release name or version that climbs out of the output directory (path traversal)', async () => {
    const outDir = join(work.dir, 'traversal', 'a', 'out');
    const common = {
      input: join(work.dir, 'rootfs'),
      format: 'ext4' as const,
      partitionSize: 2 * 1024 * 1024,
      outDir,
      signingKey: { key: trust.keys.release, role: 'release' as const },
    };
    const meta = { name: 'demo', version: '1.0.0', securityVersion: 1, compatible: ['board-a'] };
    await expect(
      buildRelease({ ...common, meta: { ...meta, name: '../../TEST-ONLY-escape' } }),
    ).rejects.toMatchObject({ code: 'FLOTILLA_ERR_RELEASE_NAME' });
    await expect(
      buildRelease({ ...common, meta: { ...meta, version: '1.0.0/../../../x' } }),
    ).rejects.toMatchObject({ code: 'FLOTILLA_ERR_RELEASE_VERSION' });
    await expect(buildRelease({ ...common, meta, baseName: '../TEST-ONLY-escape' })).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT',
    });
    await expect(stat(join(work.dir, 'traversal'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('.flot bundle', () => {
  it('streams the verified manifest, SBOM, every chunk in order and the end, rebuilding the image exactly', async () => {
    const chunks: Buffer[] = [];
    const types: string[] = [];
    for await (const p of readBundle(createReadStream(bundlePath, { highWaterMark: 7000 }), { root, now })) {
      types.push(p.type);
      if (p.type === 'chunk') chunks.push(p.data);
    }
    expect(types[0]).toBe('manifest');
    expect(types[1]).toBe('sbom');
    expect(types.at(-1)).toBe('end');
    expect(Buffer.concat(chunks).equals(await readFile(release.imagePath))).toBe(true);
    const summary = await verifyBundle(createReadStream(bundlePath), { root, now });
    expect(summary.sbom.equals(release.sbom)).toBe(true);
    expect(summary.bundleBytes).toBe(bundle.length);
  });

  it('verifies the manifest before reading a payload byte: signed by the wrong role (delta key)', async () => {
    const forged = signDocument(release.manifest.signed, [trust.keys.delta]);
    const bad = assemble(headerFor(forged), release.sbom, await readFile(release.imagePath));
    const src = source(bad, 512);
    const parts: string[] = [];
    const err = await (async () => {
      for await (const p of readBundle(src.stream, { root, now })) parts.push(p.type);
    })().catch((e) => e);
    expect(err).toMatchObject({ code: 'FLOTILLA_ERR_KEY_WRONG_ROLE' });
    expect(parts).toEqual([]);
    const headerEnd = 10 + bad.readUInt32BE(6);
    expect(src.pulled()).toBeLessThanOrEqual(headerEnd + 512);
  });

  it('refuses a bundle whose signed header names a release that climbs out of a directory (name grammar)', async () => {
    // Signed by the real release key: the grammar, not the signature, must stop it.
    for (const [field, value] of [
      ['name', '../../TEST-ONLY-escape'],
      ['version', '1.0.0/../../x'],
    ] as const) {
      const forged = signDocument({ ...release.manifest.signed, [field]: value }, [trust.keys.release]);
      const bad = assemble(headerFor(forged), release.sbom, await readFile(release.imagePath));
      const src = source(bad, 512);
      const err = await (async () => {
        for await (const _ of readBundle(src.stream, { root, now })) {
        }
      })().catch((e) => e);
      expect(err).toMatchObject({ code: 'FLOTILLA_ERR_BUNDLE_HEADER_INVALID' });
      expect(src.pulled()).toBeLessThanOrEqual(10 + bad.readUInt32BE(6) + 512);
    }
  });

  it('refuses a recovery bundle unless recovery is allowed, and a release signed with an unknown key', async () => {
    const stranger = signDocument(release.manifest.signed, [testTrust(now).keys.release]);
    const r = await collect(assemble(headerFor(stranger), release.sbom, await readFile(release.imagePath)));
    expect(r.error).toMatchObject({ code: 'FLOTILLA_ERR_KEY_UNKNOWN' });
    const rec = signDocument({ ...release.manifest.signed, kind: 'recovery' as const }, [
      trust.keys.recovery,
    ]);
    const recBundle = assemble(headerFor(rec), release.sbom, await readFile(release.imagePath));
    expect((await collect(recBundle)).error).toMatchObject({ code: 'FLOTILLA_ERR_KEY_WRONG_ROLE' });
    expect((await collect(recBundle, { allowKinds: ['recovery'] })).error).toBeNull();
  });

  it('rejects a truncated bundle with FLOTILLA_ERR_BUNDLE_TRUNCATED and never yields the end', async () => {
    const { parts, error } = await collect(bundle.subarray(0, bundle.length - 1000));
    expect(error).toMatchObject({ code: 'FLOTILLA_ERR_BUNDLE_TRUNCATED' });
    expect(parts.map((p) => p.type)).not.toContain('end');
  });

  it('rejects a bundle with one payload byte flipped at that chunk, before yielding it', async () => {
    const bad = Buffer.from(bundle);
    const imageStart = bundle.length - release.manifest.signed.image.size;
    const offset = imageStart + 5 * 64 * 1024 + 100; // inside chunk 5
    bad[offset] = bad[offset]! ^ 0x01;
    const { parts, error } = await collect(bad);
    expect(error).toMatchObject({ code: 'FLOTILLA_ERR_BUNDLE_CHUNK_MISMATCH' });
    expect(parts.filter((p) => p.type === 'chunk').map((p) => p.index)).toEqual([0, 1, 2, 3, 4]);
  });

  it('rejects an SBOM whose digest differs from the signed manifest (bytes or header)', async () => {
    const bad = Buffer.from(bundle);
    const sbomStart = 10 + bundle.readUInt32BE(6);
    bad[sbomStart + 10] = bad[sbomStart + 10]! ^ 0x20;
    const r1 = await collect(bad);
    expect(r1.error).toMatchObject({ code: 'FLOTILLA_ERR_BUNDLE_SBOM_MISMATCH' });
    expect(r1.parts.map((p) => p.type)).toEqual(['manifest']);
    // A header that names another SBOM than the manifest is refused before any payload.
    const otherSbom = Buffer.from(`${release.sbom.toString()} `);
    const header = headerFor(release.manifest);
    header.sections[0] = { name: 'sbom', size: otherSbom.length, sha256: '0'.repeat(64) };
    const r2 = await collect(assemble(header, otherSbom, await readFile(release.imagePath)));
    expect(r2.error).toMatchObject({ code: 'FLOTILLA_ERR_BUNDLE_SBOM_MISMATCH' });
    expect(r2.parts).toEqual([]);
    // And the writer refuses to pack a different SBOM.
    await expect(
      writeBundle({
        manifest: release.manifest,
        imagePath: release.imagePath,
        sbom: otherSbom,
        output: join(work.dir, 'x.flot'),
      }),
    ).rejects.toMatchObject({ code: 'FLOTILLA_ERR_BUNDLE_SBOM_MISMATCH' });
    await expect(stat(join(work.dir, 'x.flot'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('rejects bytes after the last section, a bad magic, and a huge header length without reading it', async () => {
    expect((await collect(Buffer.concat([bundle, Buffer.from('x')]))).error).toMatchObject({
      code: 'FLOTILLA_ERR_BUNDLE_TRAILING_DATA',
    });
    expect((await collect(Buffer.from('PK\x03\x04 not a bundle'))).error).toMatchObject({
      code: 'FLOTILLA_ERR_BUNDLE_NOT_A_BUNDLE',
    });
    const huge = Buffer.concat([BUNDLE_MAGIC, Buffer.from([0xff, 0xff, 0xff, 0xff])]);
    expect((await collect(huge)).error).toMatchObject({ code: 'FLOTILLA_ERR_BUNDLE_HEADER_TOO_LARGE' });
  });

  it('rejects an expired manifest (freeze attack) and hardware it is not built for', async () => {
    const r = await collect(bundle, { now: new Date(Date.parse(release.manifest.signed.expires) + 1000) });
    expect(r.error).toMatchObject({ code: 'FLOTILLA_ERR_EXPIRED' });
    const r2 = await collect(bundle, { device: { hardware: 'board-b', securityVersion: 0 } });
    expect(r2.error).toMatchObject({ code: 'FLOTILLA_ERR_INCOMPATIBLE_HARDWARE' });
    const r3 = await collect(bundle, { device: { hardware: 'board-a', securityVersion: 4 } });
    expect(r3.error).toMatchObject({ code: 'FLOTILLA_ERR_DOWNGRADE' });
  });

  it('reads the unverified header for inspection', async () => {
    const h = await readBundleHeader(createReadStream(bundlePath));
    expect(h.manifest.signed.version).toBe('1.0.0');
    expect(h.sections.map((s) => s.name)).toEqual(['sbom', 'image']);
  });

  it('refuses to pack an image that is not the one the manifest names, leaving no file', async () => {
    const other = join(work.dir, 'other.img');
    const img = await readFile(release.imagePath);
    img[0] = img[0]! ^ 1;
    await writeFile(other, img);
    const out = join(work.dir, 'bad.flot');
    await expect(
      writeBundle({ manifest: release.manifest, imagePath: other, sbom: release.sbom, output: out }),
    ).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_BUNDLE_IMAGE_MISMATCH',
    });
    await expect(stat(out)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
