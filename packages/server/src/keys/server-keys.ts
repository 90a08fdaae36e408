import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import {
  canonicalize,
  checkNotExpired,
  decodeKeyFile,
  encodeKeyFile,
  generateTrustSet,
  type KeyPair,
  parseJson,
  type Role,
  type RootMetadata,
  type SignedRoot,
  verifyRootRotation,
  verifyRootStep,
  verifyTrustedRoot,
} from '@flotilla/protocol';
import { ServerError } from '../errors.js';

/**
 * The keys a server holds: the public trust root (root.json and every earlier root.<N>.json,
 * served to devices so they can rotate) and the online role keys it signs with — always a delta
 * key (deltas and offers), optionally a release key (so it can build and sign uploads itself).
 * Root keys are offline material: a server never holds one, except with the named TEST-ONLY
 * `devKeys` mode (demo, tests).
 */
export interface ServerKeys {
  dir: string;
  root: SignedRoot;
  rootMeta: RootMetadata;
  delta: KeyPair;
  release: KeyPair | null;
  recovery: KeyPair | null;
  /** True when this start created the keys. */
  created: boolean;
  /** The directory holds root private keys: only in devKeys mode (TEST-ONLY). */
  holdsRootKeys: boolean;
  /** Where this start wrote the new root keys, to be moved offline (plain first start only). */
  offlineKeysDir: string | null;
}

/** How a data directory without keys gets them (first start only). */
export interface KeySetup {
  /** A `flotilla keys init` directory: root.json, its earlier versions and the online role keys (never root keys). */
  importFrom?: string;
  /** TEST-ONLY: a whole set, root key included, kept in the data directory (demo, tests). */
  devKeys?: boolean;
  /** Where a plain first start writes the root keys it makes (default `<dataDir>.offline-keys`). */
  offlineKeysDir?: string;
  now?: Date;
  label?: string;
}

const ROOT_FILE = 'root.json';
const ROOT_VERSION_FILE = /^root\.([1-9][0-9]{0,8})\.json$/;

export const rootVersionFile = (version: number): string => `root.${version}.json`;

/** The default place for the root keys of a plain first start: beside the data directory, never in it. */
export function defaultOfflineKeysDir(dataDir: string): string {
  return join(dirname(dataDir), `${basename(dataDir)}.offline-keys`);
}

function writePrivate(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600, flag: 'wx' });
  chmodSync(path, 0o600);
}

function writeRootFiles(dir: string, root: SignedRoot): void {
  const text = `${canonicalize(root)}\n`;
  const versioned = join(dir, rootVersionFile(root.signed.version));
  if (!existsSync(versioned)) writeFileSync(versioned, text, { mode: 0o644 });
  const tmp = join(dir, `${ROOT_FILE}.tmp`);
  writeFileSync(tmp, text, { mode: 0o644 });
  renameSync(tmp, join(dir, ROOT_FILE));
}

/** Imports root.json (and root.<N>.json) and the online role keys of a `flotilla keys init` directory (root keys are not copied). */
export function importKeys(fromDir: string, toDir: string): void {
  if (existsSync(join(toDir, ROOT_FILE)))
    throw new ServerError(
      'FLOTILLA_ERR_SERVER_KEYS',
      `${toDir} already holds keys; import into an empty one`,
    );
  const root = readRoot(join(fromDir, ROOT_FILE));
  mkdirSync(toDir, { recursive: true, mode: 0o700 });
  let delta = false;
  for (const name of readdirSync(fromDir).sort()) {
    if (ROOT_VERSION_FILE.test(name)) {
      copyFileSync(join(fromDir, name), join(toDir, name));
      continue;
    }
    if (!name.endsWith('.key')) continue;
    const { role } = decodeKeyFile(readFileSync(join(fromDir, name), 'utf8'));
    if (role === 'root') continue;
    if (role === 'delta') delta = true;
    copyFileSync(join(fromDir, name), join(toDir, name));
    chmodSync(join(toDir, name), 0o600);
  }
  if (!delta) throw new ServerError('FLOTILLA_ERR_SERVER_KEYS', `no delta key in ${fromDir}`);
  writeRootFiles(toDir, root);
}

function readJson(path: string): unknown {
  try {
    return parseJson(readFileSync(path));
  } catch (cause) {
    throw new ServerError('FLOTILLA_ERR_SERVER_KEYS', `cannot read ${path}`, { cause });
  }
}

function readRoot(path: string): SignedRoot {
  const env = readJson(path);
  try {
    // Signatures of its own root keys; expiry is checked on the final root of the chain.
    verifyTrustedRoot(env);
  } catch (cause) {
    throw new ServerError('FLOTILLA_ERR_SERVER_KEYS', `${path}: ${(cause as Error).message}`, { cause });
  }
  return env as SignedRoot;
}

/** Generates a whole trust set into `dir` (a `flotilla keys init` layout, 1-of-1 root). */
function generateInto(dir: string, now: Date, label: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (readdirSync(dir).length > 0)
    throw new ServerError(
      'FLOTILLA_ERR_SERVER_KEYS',
      `${dir} is not empty; move its keys away or pass --import-keys ${dir}`,
    );
  const set = generateTrustSet({ now, rootKeys: 1, rootThreshold: 1, expiresDays: 365 });
  for (const role of ['root', 'release', 'delta', 'recovery'] as Role[])
    writePrivate(join(dir, `${role}.key`), encodeKeyFile(set.keys[role][0]!, role, `${label} ${role} key`));
  writeRootFiles(dir, set.root);
}

/**
 * First start on an empty keys directory: import (`importFrom`), a TEST-ONLY dev set kept here
 * (`devKeys`), or — plain — a new set made in a directory *outside* the data directory from
 * which only root.json and the online role keys are imported: its root key is to be moved
 * offline. Later starts load what is there, and refuse a root key unless in dev mode.
 */
export function loadOrCreateServerKeys(dir: string, setup: KeySetup = {}): ServerKeys {
  const now = setup.now ?? new Date();
  let created = false;
  let offlineKeysDir: string | null = null;
  if (!existsSync(join(dir, ROOT_FILE))) {
    if (setup.importFrom) importKeys(setup.importFrom, dir);
    else if (setup.devKeys) generateInto(dir, now, 'TEST-ONLY dev');
    else {
      offlineKeysDir = setup.offlineKeysDir ?? defaultOfflineKeysDir(dirname(dir));
      generateInto(offlineKeysDir, now, setup.label ?? 'flotilla server');
      importKeys(offlineKeysDir, dir);
    }
    created = true;
  }
  const root = applyDroppedRoots(dir, readRoot(join(dir, ROOT_FILE)), now);
  const byRole = new Map<Role, KeyPair[]>();
  const rootKeyFiles: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (!name.endsWith('.key')) continue;
    const { key, role } = decodeKeyFile(readFileSync(join(dir, name), 'utf8'));
    byRole.set(role, [...(byRole.get(role) ?? []), key]);
    if (role === 'root') rootKeyFiles.push(join(dir, name));
  }
  const holdsRootKeys = rootKeyFiles.length > 0;
  if (holdsRootKeys && !setup.devKeys)
    throw new ServerError('FLOTILLA_ERR_SERVER_ROOT_KEY_ONLINE', rootKeyFiles.join(', '));
  const pick = (role: Role): KeyPair | null =>
    (byRole.get(role) ?? []).find((k) => root.signed.roles[role].keyids.includes(k.keyId)) ?? null;
  const delta = pick('delta');
  if (!delta)
    throw new ServerError(
      'FLOTILLA_ERR_SERVER_KEYS',
      `no delta key listed in ${join(dir, ROOT_FILE)} found in ${dir}`,
    );
  return {
    dir,
    root,
    rootMeta: root.signed,
    delta,
    release: pick('release'),
    recovery: pick('recovery'),
    created,
    holdsRootKeys,
    offlineKeysDir,
  };
}

/**
 * Newer roots an operator dropped in (`root.<N+1>.json`… copied from the offline keys
 * directory after `flotilla keys rotate`) are applied in order, each verified against its
 * predecessor; the final root must be unexpired. root.<current>.json is written when missing,
 * so the whole chain can be served to devices.
 */
function applyDroppedRoots(dir: string, stored: SignedRoot, now: Date): SignedRoot {
  let root = stored;
  let meta = verifyTrustedRoot(root);
  for (;;) {
    const next = join(dir, rootVersionFile(meta.version + 1));
    if (!existsSync(next)) break;
    const env = readJson(next);
    try {
      meta = verifyRootStep(meta, env);
    } catch (cause) {
      throw new ServerError('FLOTILLA_ERR_SERVER_KEYS', `${next}: ${(cause as Error).message}`, { cause });
    }
    root = env as SignedRoot;
  }
  try {
    checkNotExpired(meta.expires, now, `${join(dir, ROOT_FILE)} (version ${meta.version})`);
  } catch (cause) {
    throw new ServerError('FLOTILLA_ERR_SERVER_KEYS', (cause as Error).message, { cause });
  }
  if (root !== stored || !existsSync(join(dir, rootVersionFile(meta.version)))) writeRootFiles(dir, root);
  return root;
}

/** Root metadata of exactly this version, as served to devices (null: the server has none). */
export function readRootVersion(keys: ServerKeys, version: number): SignedRoot | null {
  if (!Number.isInteger(version) || version < 1 || version > keys.rootMeta.version) return null;
  const path = join(keys.dir, rootVersionFile(version));
  if (!existsSync(path)) return null;
  return readJson(path) as SignedRoot;
}

/**
 * Publishes root N+1 (made offline by `flotilla keys rotate`): verified against the current root
 * (version +1, old and new root thresholds, unexpired), and it must still name the server's delta
 * key — else every offer would be refused. Written root.<N+1>.json first, then root.json.
 */
export function publishRoot(keys: ServerKeys, envelope: unknown, now: Date): RootMetadata {
  let next: RootMetadata;
  try {
    next = verifyRootRotation(keys.rootMeta, envelope, now);
  } catch (cause) {
    const code = (cause as { code?: string }).code ?? '';
    throw new ServerError('FLOTILLA_ERR_SERVER_ROOT_REFUSED', `${code}: ${(cause as Error).message}`, {
      cause,
    });
  }
  if (!next.roles.delta.keyids.includes(keys.delta.keyId))
    throw new ServerError(
      'FLOTILLA_ERR_SERVER_ROOT_REFUSED',
      `root version ${next.version} does not name this server's delta key ${keys.delta.keyId.slice(0, 16)}…; rotate the delta key by a restart with the new key imported`,
    );
  writeRootFiles(keys.dir, envelope as SignedRoot);
  keys.root = envelope as SignedRoot;
  keys.rootMeta = next;
  if (keys.release && !next.roles.release.keyids.includes(keys.release.keyId)) keys.release = null;
  if (keys.recovery && !next.roles.recovery.keyids.includes(keys.recovery.keyId)) keys.recovery = null;
  return next;
}
