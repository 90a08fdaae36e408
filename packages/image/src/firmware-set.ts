import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KeyPair, ReleaseKind, SignedRelease } from '@flotilla/protocol';
import { writeBundle } from './bundle-writer.js';
import { ImageError } from './errors.js';
import { loadKeysDir, type SigningKey } from './keys.js';
import { loadRecipe, materialiseRecipe, recipeReleaseOptions, type SimBehaviour } from './recipe.js';
import { buildRelease } from './release.js';

/** The committed demo recipes (firmware-images/recipes at the repository root). */
export const DEFAULT_RECIPES_DIR = fileURLToPath(
  new URL('../../../firmware-images/recipes', import.meta.url),
);

export interface FirmwareSetOptions {
  /** A directory made by `flotilla keys init` (key files by role), or… */
  keysDir?: string;
  /** …the keys themselves. */
  keys?: { release: KeyPair; recovery?: KeyPair };
  outDir: string;
  recipesDir?: string;
  /** Recipe ids (directory names) to build; default: every directory with a recipe.json. */
  only?: string[];
  /** Build time and manifest clock (default: now). */
  now?: Date;
  expiresDays?: number;
  sourceRevision?: string;
  onProgress?: (recipeId: string, phase: string) => void;
}

export interface FirmwareRelease {
  id: string;
  name: string;
  version: string;
  kind: ReleaseKind;
  format: string;
  securityVersion: number;
  compatible: string[];
  behaviour: SimBehaviour;
  imagePath: string;
  imageSha256: string;
  imageSize: number;
  partitionSize: number;
  manifestPath: string;
  sbomPath: string;
  bundlePath: string;
  manifest: SignedRelease;
}

export interface FirmwareSet {
  outDir: string;
  releases: FirmwareRelease[];
}

/**
 * Builds every recipe into `outDir`: `<id>.img`, `<id>.manifest.json`, `<id>.sbom.cdx.json`,
 * `<id>.flot`, and `index.json` listing them (no secrets). Images are reproducible; manifests
 * carry the build time. Releases are signed by the release key, recovery images by the recovery key.
 */
export async function buildFirmwareSet(opts: FirmwareSetOptions): Promise<FirmwareSet> {
  const recipesDir = opts.recipesDir ?? DEFAULT_RECIPES_DIR;
  const keys = await resolveKeys(opts);
  const ids = opts.only ?? (await listRecipes(recipesDir));
  const now = opts.now ?? new Date();
  const releases: FirmwareRelease[] = [];
  const work = await mkdtemp(join(tmpdir(), 'flotilla-firmware-'));
  try {
    for (const id of ids) {
      const recipe = await loadRecipe(join(recipesDir, id, 'recipe.json'));
      const signingKey = keys[recipe.kind];
      if (!signingKey)
        throw new ImageError('FLOTILLA_ERR_IMAGE_KEY_MISSING', `no ${recipe.kind} key for recipe ${id}`);
      const tree = join(work, id);
      opts.onProgress?.(id, 'assembling rootfs');
      await materialiseRecipe(recipe, tree);
      const fromRecipe = recipeReleaseOptions(recipe, tree);
      const built = await buildRelease({
        ...fromRecipe,
        label: 'rootfs',
        outDir: opts.outDir,
        meta: { ...fromRecipe.meta, now, expiresDays: opts.expiresDays, sourceRevision: opts.sourceRevision },
        signingKey,
        onProgress: (phase) => opts.onProgress?.(id, phase),
      });
      await rm(tree, { recursive: true, force: true });
      const bundlePath = join(opts.outDir, `${id}.flot`);
      opts.onProgress?.(id, 'bundle');
      await writeBundle({
        manifest: built.manifest,
        imagePath: built.imagePath,
        sbom: built.sbom,
        output: bundlePath,
      });
      const m = built.manifest.signed;
      releases.push({
        id,
        name: m.name,
        version: m.version,
        kind: m.kind,
        format: m.image.format,
        securityVersion: m.securityVersion,
        compatible: m.compatible,
        behaviour: recipe.behaviour,
        imagePath: built.imagePath,
        imageSha256: m.image.sha256,
        imageSize: m.image.size,
        partitionSize: recipe.partitionSize,
        manifestPath: built.manifestPath,
        sbomPath: built.sbomPath,
        bundlePath,
        manifest: built.manifest,
      });
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const index = releases.map(({ manifest: _m, ...rest }) => rest);
  await writeFile(join(opts.outDir, 'index.json'), `${JSON.stringify({ releases: index }, null, 2)}\n`);
  return { outDir: opts.outDir, releases };
}

async function resolveKeys(opts: FirmwareSetOptions): Promise<Partial<Record<ReleaseKind, SigningKey>>> {
  if (opts.keys) {
    return {
      release: { key: opts.keys.release, role: 'release' },
      ...(opts.keys.recovery ? { recovery: { key: opts.keys.recovery, role: 'recovery' as const } } : {}),
    };
  }
  if (opts.keysDir) {
    const byRole = await loadKeysDir(opts.keysDir);
    const release = byRole.get('release')?.[0];
    const recovery = byRole.get('recovery')?.[0];
    return { ...(release ? { release } : {}), ...(recovery ? { recovery } : {}) };
  }
  throw new ImageError('FLOTILLA_ERR_IMAGE_KEY_MISSING', 'pass keysDir or keys');
}

async function listRecipes(dir: string): Promise<string[]> {
  const ids: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const ok = await stat(join(dir, name, 'recipe.json')).then(
      (s) => s.isFile(),
      () => false,
    );
    if (ok) ids.push(name);
  }
  return ids;
}
