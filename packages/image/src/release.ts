import { createHash } from 'node:crypto';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import {
  checkReleaseName,
  checkReleaseVersion,
  isoAfter,
  type ReleaseKind,
  ReleaseManifest,
  SCHEMA_VERSION,
  type SignedRelease,
  signDocument,
  validate,
} from '@flotilla/protocol';
import {
  type BuildImageOptions,
  type BuiltImage,
  buildImage,
  buildImageFromTree,
  sha256File,
  withStagedTree,
} from './build-image.js';
import { type ChunkedDigest, hashChunks } from './chunks.js';
import { ImageError, ioError } from './errors.js';
import { runTool } from './exec.js';
import type { SigningKey } from './keys.js';
import { IMAGE_LIMITS } from './limits.js';
import { makeSbom, scanPackages, TOOL_VERSION } from './sbom.js';
import { isoSeconds } from './units.js';

export interface ReleaseMeta {
  name: string;
  version: string;
  securityVersion: number;
  compatible: string[];
  kind?: ReleaseKind;
  /** Absolute expiry; default `now + expiresDays`. */
  expires?: string;
  expiresDays?: number;
  /** Build time (manifest `created` and provenance `buildTime`). */
  now?: Date;
  sourceRevision?: string;
  builder?: string;
}

export interface BuildReleaseOptions extends Omit<BuildImageOptions, 'output' | 'onProgress'> {
  outDir: string;
  /**
   * File names start with this; default `<name>-<version>` (both checked against protocol's
   * grammar, so neither can climb out of `outDir`). Callers handling requests pass a fixed one.
   */
  baseName?: string;
  meta: ReleaseMeta;
  signingKey: SigningKey;
  chunkSize?: number;
  /** Further provenance inputs, e.g. the recipe file. */
  extraInputs?: { name: string; sha256: string }[];
  onProgress?: (phase: string) => void;
}

export interface BuiltRelease {
  image: BuiltImage;
  manifest: SignedRelease;
  sbom: Buffer;
  packages: number;
  imagePath: string;
  manifestPath: string;
  sbomPath: string;
}

/**
 * A release: the image, its CycloneDX SBOM and the signed manifest binding both (chunk hashes,
 * SBOM digest, provenance). Signed by a release key, or a recovery key for `kind: 'recovery'`.
 */
export async function buildRelease(opts: BuildReleaseOptions): Promise<BuiltRelease> {
  const kind = opts.meta.kind ?? 'release';
  checkKeyRole(kind, opts.signingKey);
  checkMeta(opts.meta);
  const base = opts.baseName ?? `${opts.meta.name}-${opts.meta.version}`;
  checkBaseName(base);
  await mkdir(opts.outDir, { recursive: true }).catch((err) => {
    throw ioError(`cannot create ${opts.outDir}`, err);
  });
  const imagePath = join(opts.outDir, `${base}.img`);
  const manifestPath = join(opts.outDir, `${base}.manifest.json`);
  const sbomPath = join(opts.outDir, `${base}.sbom.cdx.json`);
  const inputs: { name: string; sha256: string }[] = [];
  let image: BuiltImage;
  let sbom: Buffer;
  let packages = 0;
  if (opts.format === 'raw') {
    image = await buildImage({ ...opts, output: imagePath });
    inputs.push({ name: basename(opts.input), sha256: image.sha256 });
    sbom = makeSbom(sbomSubject(opts, image), [], [], image.sha256);
  } else {
    ({ image, sbom, packages } = await withStagedTree(opts, async (tree) => {
      const built = await buildImageFromTree(tree, { ...opts, output: imagePath });
      opts.onProgress?.('sbom');
      const pkgs = await scanPackages(tree);
      const treeSbom = makeSbom(sbomSubject(opts, built), pkgs, tree.entries, tree.digest);
      inputs.push({ name: 'rootfs-tree', sha256: tree.digest });
      if (!(await isDirectory(opts.input)))
        inputs.push({ name: basename(opts.input), sha256: await sha256File(opts.input) });
      return { image: built, sbom: treeSbom, packages: pkgs.length };
    }));
  }
  try {
    opts.onProgress?.('chunk hashes');
    const digest = await hashChunks(imagePath, opts.chunkSize ?? IMAGE_LIMITS.defaultChunkSize);
    const manifest = makeManifest(opts.meta, image, digest, sbom, {
      inputs: [...inputs, ...(opts.extraInputs ?? [])],
      builder: opts.meta.builder ?? (await describeBuilder(opts.format)),
    });
    const signed = signRelease(manifest, opts.signingKey);
    await writeFile(sbomPath, sbom);
    await writeFile(manifestPath, `${JSON.stringify(signed, null, 2)}\n`);
    return { image, manifest: signed, sbom, packages, imagePath, manifestPath, sbomPath };
  } catch (err) {
    await Promise.all([imagePath, manifestPath, sbomPath].map((p) => rm(p, { force: true })));
    throw err;
  }
}

function sbomSubject(opts: BuildReleaseOptions, image: BuiltImage) {
  return { name: opts.meta.name, version: opts.meta.version, imageSha256: image.sha256, epoch: image.epoch };
}

/** The unsigned manifest, validated against protocol's schema. */
export function makeManifest(
  meta: ReleaseMeta,
  image: Pick<BuiltImage, 'format'>,
  digest: ChunkedDigest,
  sbom: Buffer,
  prov: { inputs: { name: string; sha256: string }[]; builder: string },
): ReleaseManifest {
  const now = meta.now ?? new Date();
  const manifest: ReleaseManifest = {
    _type: 'release',
    schemaVersion: SCHEMA_VERSION,
    kind: meta.kind ?? 'release',
    name: meta.name,
    version: meta.version,
    securityVersion: meta.securityVersion,
    compatible: meta.compatible,
    image: {
      format: image.format,
      sha256: digest.sha256,
      size: digest.size,
      chunkSize: digest.chunkSize,
      chunkHashes: digest.chunkHashes,
    },
    sbom: { format: 'CycloneDX-1.5', sha256: sha256Of(sbom), size: sbom.length },
    provenance: {
      sourceRevision: meta.sourceRevision ?? 'unknown',
      builder: prov.builder,
      buildTime: isoSeconds(now),
      inputs: prov.inputs,
    },
    created: isoSeconds(now),
    expires: meta.expires ?? isoAfter(now, meta.expiresDays ?? IMAGE_LIMITS.defaultExpiresDays),
  };
  try {
    return validate(ReleaseManifest, manifest, 'release manifest');
  } catch (err) {
    throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', (err as Error).message, { cause: err });
  }
}

/** Signs with the key of the role the kind needs; any other role is refused before signing. */
export function signRelease(manifest: ReleaseManifest, key: SigningKey): SignedRelease {
  checkKeyRole(manifest.kind, key);
  return signDocument(manifest, [key.key]);
}

function checkKeyRole(kind: ReleaseKind, key: SigningKey): void {
  if (key.role !== kind)
    throw new ImageError(
      'FLOTILLA_ERR_IMAGE_KEY_ROLE',
      `a ${kind} must be signed by a ${kind} key, got a ${key.role} key`,
    );
}

function checkMeta(meta: ReleaseMeta): void {
  // Protocol's coded errors (FLOTILLA_ERR_RELEASE_NAME / _VERSION) carry the grammar as their hint.
  checkReleaseName(meta.name);
  checkReleaseVersion(meta.version);
  if (!Number.isSafeInteger(meta.securityVersion) || meta.securityVersion < 0)
    throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', `securityVersion ${meta.securityVersion}`);
  if (!meta.compatible.length)
    throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', 'at least one compatible hardware id');
}

/** Output files stay inside `outDir`: a base name is one plain file-name component. */
function checkBaseName(base: string): void {
  if (basename(base) !== base || base.startsWith('.') || base.includes('\0'))
    throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', `output base name ${JSON.stringify(base)}`);
}

function sha256Of(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path)).isDirectory();
}

const toolVersions = new Map<string, string>();
async function describeBuilder(format: string): Promise<string> {
  const tool = { ext4: 'mke2fs', squashfs: 'mksquashfs', erofs: 'mkfs.erofs', raw: '' }[format] ?? '';
  let version = toolVersions.get(tool);
  if (tool && version === undefined) {
    const args = tool === 'mksquashfs' ? ['-version'] : ['-V'];
    const res = await runTool(tool, args, { allowFailure: true }).catch(() => null);
    version =
      `${res?.stdout.toString()}\n${res?.stderr ?? ''}`
        .split('\n')
        .find((l) => /\d+\.\d+/.test(l))
        ?.trim() ?? tool;
    toolVersions.set(tool, version);
  }
  return `flotilla-image ${TOOL_VERSION}${version ? ` (${version})` : ''}, node ${process.version}`;
}
