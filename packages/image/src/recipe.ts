import { createHash } from 'node:crypto';
import { cp, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import {
  type ImageFormat,
  isReleaseName,
  isReleaseVersion,
  parseJson,
  type ReleaseKind,
} from '@flotilla/protocol';
import { IMAGE_FORMATS } from './build-image.js';
import { ImageError } from './errors.js';
import type { BuildReleaseOptions } from './release.js';
import { parseSize } from './units.js';

/**
 * A firmware recipe (`firmware-images/recipes/<id>/recipe.json`): release facts plus how to
 * assemble the rootfs — directory layers copied in order, deterministic generated "binaries"
 * (a seeded generator, optionally with patched regions, so an update changes part of a file
 * the way a real rebuild does), symlinks, removals and per-path modes. `extends` inherits
 * another recipe: scalars are overridden, layers and removals appended, generated files,
 * links and modes merged by path. Files named `.keep` only keep empty directories in git.
 */
export interface SimBehaviour {
  boots: boolean;
  healthy: boolean;
  healthReason: string | null;
}

export interface GeneratedFile {
  path: string;
  size: number;
  seed: string;
  mode?: string;
  patches?: { offset: number; size: number; seed: string }[];
}

export interface Recipe {
  /** Where the recipe file is; its id is the directory name. */
  file: string;
  id: string;
  name: string;
  version: string;
  kind: ReleaseKind;
  securityVersion: number;
  compatible: string[];
  format: ImageFormat;
  partitionSize: number;
  sourceDateEpoch: number;
  layers: string[];
  remove: string[];
  generated: GeneratedFile[];
  links: Record<string, string>;
  modes: Record<string, number>;
  behaviour: SimBehaviour;
  /** sha256 of every recipe file in the `extends` chain, for provenance. */
  recipeDigests: { name: string; sha256: string }[];
}

/** What a recipe fixes of the release built from `tree` (callers add keys, outputs and overrides). */
export function recipeReleaseOptions(recipe: Recipe, tree: string) {
  return {
    input: tree,
    format: recipe.format,
    partitionSize: recipe.partitionSize,
    epoch: recipe.sourceDateEpoch,
    modeOverrides: recipe.modes,
    baseName: recipe.id,
    extraInputs: recipe.recipeDigests,
    meta: {
      name: recipe.name,
      version: recipe.version,
      kind: recipe.kind,
      securityVersion: recipe.securityVersion,
      compatible: recipe.compatible,
    },
  } satisfies Partial<BuildReleaseOptions>;
}

type RawRecipe = Record<string, unknown>;

export async function loadRecipe(file: string, depth = 0): Promise<Recipe> {
  if (depth > 8) throw invalid(file, 'extends chain deeper than 8');
  const path = resolve(file);
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new ImageError('FLOTILLA_ERR_IMAGE_INPUT_MISSING', `recipe ${file}`, { cause: err });
  }
  let raw: RawRecipe;
  try {
    raw = parseJson(bytes) as RawRecipe;
  } catch (err) {
    throw invalid(file, (err as Error).message);
  }
  const dir = dirname(path);
  const parent = typeof raw.extends === 'string' ? await loadRecipe(join(dir, raw.extends), depth + 1) : null;
  const pick = <T>(key: string, check: (v: unknown) => v is T, fallback?: T): T => {
    const v =
      raw[key] ?? (parent ? (parent as unknown as Record<string, unknown>)[key] : undefined) ?? fallback;
    if (!check(v)) throw invalid(file, `field '${key}'`);
    return v;
  };
  const isStr = (v: unknown): v is string => typeof v === 'string' && v.length > 0;
  const isInt = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
  const strList = (v: unknown): v is string[] => Array.isArray(v) && v.every(isStr);
  const partition = raw.partitionSize ?? parent?.partitionSize ?? undefined;
  const format = pick('format', isStr, 'ext4') as ImageFormat;
  if (!IMAGE_FORMATS.includes(format)) throw invalid(file, `format '${format}'`);
  const kind = pick('kind', isStr, 'release');
  if (kind !== 'release' && kind !== 'recovery') throw invalid(file, `kind '${kind}'`);
  const behaviour = (raw.behaviour ??
    parent?.behaviour ?? { boots: true, healthy: true, healthReason: null }) as SimBehaviour;
  if (typeof behaviour.boots !== 'boolean' || typeof behaviour.healthy !== 'boolean')
    throw invalid(file, "field 'behaviour' needs boots and healthy booleans");
  const ownLayers = raw.layers ?? [];
  const ownRemove = raw.remove ?? [];
  if (!strList(ownLayers) || !strList(ownRemove))
    throw invalid(file, "'layers' and 'remove' are lists of paths");
  const generated = new Map((parent?.generated ?? []).map((g) => [g.path, g]));
  for (const g of (raw.generated ?? []) as GeneratedFile[]) {
    if (!isImagePath(g?.path) || !isInt(g.size) || !isStr(g.seed))
      throw invalid(file, `generated entry ${JSON.stringify(g)}`);
    for (const p of g.patches ?? [])
      if (!isInt(p.offset) || !isInt(p.size) || !isStr(p.seed) || p.offset + p.size > g.size)
        throw invalid(file, `patch of ${g.path} outside the file`);
    generated.set(g.path, g);
  }
  const links = { ...(parent?.links ?? {}), ...((raw.links ?? {}) as Record<string, string>) };
  for (const [p, t] of Object.entries(links))
    if (!isImagePath(p) || !isStr(t)) throw invalid(file, `link ${p}`);
  const modes = { ...(parent?.modes ?? {}) };
  for (const [p, m] of Object.entries((raw.modes ?? {}) as Record<string, string>)) {
    if (!isImagePath(p) || !/^[0-7]{3,4}$/.test(m)) throw invalid(file, `mode of ${p}`);
    modes[p] = Number.parseInt(m, 8);
  }
  return {
    file: path,
    id: dir.split('/').pop()!,
    name: pick('name', isReleaseName),
    version: pick('version', isReleaseVersion),
    kind,
    securityVersion: pick('securityVersion', isInt),
    compatible: pick('compatible', strList),
    format,
    partitionSize: parseSize(partition as string | number, `${file}: partitionSize`),
    sourceDateEpoch: pick('sourceDateEpoch', isInt),
    layers: [...(parent?.layers ?? []), ...ownLayers.map((l) => resolve(dir, l))],
    remove: [...(parent?.remove ?? []), ...ownRemove],
    generated: [...generated.values()],
    links,
    modes,
    behaviour,
    recipeDigests: [
      ...(parent?.recipeDigests ?? []),
      { name: `recipe:${dir.split('/').pop()}`, sha256: createHash('sha256').update(bytes).digest('hex') },
    ],
  };
}

/** Writes the recipe's rootfs tree into `dir` (which must not exist yet). */
export async function materialiseRecipe(recipe: Recipe, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const layer of recipe.layers) {
    await cp(layer, dir, {
      recursive: true,
      verbatimSymlinks: true,
      force: true,
      filter: (src) => !src.endsWith('/.keep'),
    }).catch((err) => {
      throw new ImageError(
        'FLOTILLA_ERR_IMAGE_RECIPE_INVALID',
        `${recipe.file}: layer ${layer}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    });
  }
  for (const p of recipe.remove) await rm(join(dir, p), { recursive: true, force: true });
  for (const g of recipe.generated) {
    const data = generateBlob(g.seed, g.size);
    for (const patch of g.patches ?? []) generateBlob(patch.seed, patch.size).copy(data, patch.offset);
    await mkdir(dirname(join(dir, g.path)), { recursive: true });
    await writeFile(join(dir, g.path), data, { mode: g.mode ? Number.parseInt(g.mode, 8) : 0o644 });
  }
  for (const [p, target] of Object.entries(recipe.links)) {
    await mkdir(dirname(join(dir, p)), { recursive: true });
    await rm(join(dir, p), { force: true });
    await symlink(target, join(dir, p));
  }
  // The files the simulator and the agent read: generated from the recipe so they cannot drift.
  await mkdir(join(dir, 'etc/flotilla'), { recursive: true });
  await writeFile(join(dir, 'etc/flotilla/release'), `${recipe.version}\n`);
  await writeFile(join(dir, 'etc/flotilla/sim-behaviour.json'), `${JSON.stringify(recipe.behaviour)}\n`);
  await writeFile(
    join(dir, 'etc/os-release'),
    [
      'NAME="Flotilla Demo Linux"',
      'ID=flotilla-demo',
      'ID_LIKE=debian',
      `VERSION="${recipe.version}"`,
      `VERSION_ID=${recipe.version}`,
      `PRETTY_NAME="Flotilla Demo Linux ${recipe.version}"`,
      `IMAGE_ID=${recipe.name}`,
      `IMAGE_VERSION=${recipe.version}`,
      '',
    ].join('\n'),
  );
}

/**
 * Deterministic "binary-like" bytes: a xorshift128 stream seeded from sha256(seed), with the
 * high nibble of every other byte cleared so it compresses about like machine code (≈ 0.8).
 * The stream is prefix-stable: a longer file with the same seed starts with the same bytes.
 */
export function generateBlob(seed: string, size: number): Buffer {
  const s = createHash('sha256').update(`flotilla-blob:${seed}`).digest();
  let x = s.readUInt32LE(0) || 1;
  let y = s.readUInt32LE(4) || 2;
  let z = s.readUInt32LE(8) || 3;
  let w = s.readUInt32LE(12) || 4;
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) {
    const t = (x ^ (x << 11)) >>> 0;
    x = y;
    y = z;
    z = w;
    w = (w ^ (w >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
    const v = w & 0x0fff0fff;
    for (let k = 0; k < 4 && i + k < size; k++) out[i + k] = (v >>> (8 * k)) & 0xff;
  }
  return out;
}

function isImagePath(p: unknown): p is string {
  return typeof p === 'string' && p.startsWith('/') && !p.split('/').includes('..') && !p.includes('\0');
}

function invalid(file: string, why: string): ImageError {
  return new ImageError('FLOTILLA_ERR_IMAGE_RECIPE_INVALID', `${file}: ${why}`);
}
