import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildRelease, writeBundle } from '@flotilla/image';
import { canonicalize, encodeKeyFile, generateTrustSet, type Role, type TrustSet } from '@flotilla/protocol';

/**
 * A TEST-ONLY trust set as `flotilla keys init` lays it out, minus the root keys (which stay
 * offline): the directory a server imports with `importKeysFrom`.
 */
export function writeTrustDir(dir: string, now = new Date()): TrustSet {
  const set = generateTrustSet({ now, rootKeys: 1, rootThreshold: 1, expiresDays: 30 });
  mkdirSync(dir, { recursive: true });
  for (const role of ['release', 'delta', 'recovery'] as Role[])
    writeFileSync(join(dir, `${role}.key`), encodeKeyFile(set.keys[role][0]!, role, `TEST-ONLY ${role} key`));
  writeFileSync(join(dir, 'root.json'), `${canonicalize(set.root)}\n`);
  return set;
}

/** A signed `.flot` bundle of a raw image, built by the real image builder and bundle writer. */
export async function makeBundle(
  dir: string,
  trust: TrustSet,
  o: { version: string; image: Buffer; name?: string; builder?: string },
): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const input = join(dir, `input-${o.version}.img`);
  writeFileSync(input, o.image);
  const release = await buildRelease({
    input,
    format: 'raw',
    partitionSize: o.image.length,
    outDir: join(dir, `out-${o.version}`),
    chunkSize: 64 * 1024,
    meta: {
      name: o.name ?? 'TEST-ONLY-os',
      version: o.version,
      securityVersion: 1,
      compatible: ['TEST-ONLY-board'],
      ...(o.builder !== undefined ? { builder: o.builder } : {}),
    },
    signingKey: { key: trust.keys.release[0]!, role: 'release' },
  });
  const output = join(dir, `TEST-ONLY-${o.version}.flot`);
  await writeBundle({ manifest: release.manifest, imagePath: release.imagePath, sbom: release.sbom, output });
  return output;
}
