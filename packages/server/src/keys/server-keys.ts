import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import {
  canonicalize,
  decodeKeyFile,
  encodeKeyFile,
  generateTrustSet,
  type KeyPair,
  parseJson,
  type Role,
  type RootMetadata,
  type SignedRoot,
  verifyInitialRoot,
} from '@flotilla/protocol';
import { ServerError } from '../errors.js';

/**
 * The keys a server holds: the public trust root (root.json, served to devices) and the online
 * role keys it signs with — always a delta key (deltas and offers), optionally a release key (so
 * it can build and sign uploads itself). Root keys belong offline; the embedded default makes a
 * whole set on first start so nothing needs setting up, and says where it put them.
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
  /** The directory also holds root private keys (true for the generated default): move them offline. */
  holdsRootKeys: boolean;
}

const ROOT_FILE = 'root.json';

function writePrivate(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600, flag: 'wx' });
  chmodSync(path, 0o600);
}

/** Imports root.json and the online role keys of a `flotilla keys init` directory (root keys are not copied). */
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
    if (!name.endsWith('.key')) continue;
    const { role } = decodeKeyFile(readFileSync(join(fromDir, name), 'utf8'));
    if (role === 'root') continue;
    if (role === 'delta') delta = true;
    copyFileSync(join(fromDir, name), join(toDir, name));
    chmodSync(join(toDir, name), 0o600);
  }
  if (!delta) throw new ServerError('FLOTILLA_ERR_SERVER_KEYS', `no delta key in ${fromDir}`);
  writeFileSync(join(toDir, ROOT_FILE), `${canonicalize(root)}\n`, { mode: 0o644 });
}

function readRoot(path: string): SignedRoot {
  let env: unknown;
  try {
    env = parseJson(readFileSync(path));
  } catch (cause) {
    throw new ServerError('FLOTILLA_ERR_SERVER_KEYS', `cannot read ${path}`, { cause });
  }
  try {
    // A root is valid when a threshold of its own root keys signed it (a rotated root is too).
    verifyInitialRoot(env, new Date());
  } catch (cause) {
    throw new ServerError('FLOTILLA_ERR_SERVER_KEYS', `${path}: ${(cause as Error).message}`, { cause });
  }
  return env as SignedRoot;
}

export function loadOrCreateServerKeys(dir: string, opts: { now?: Date; label?: string } = {}): ServerKeys {
  let created = false;
  if (!existsSync(join(dir, ROOT_FILE))) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const set = generateTrustSet({
      now: opts.now ?? new Date(),
      rootKeys: 1,
      rootThreshold: 1,
      expiresDays: 365,
    });
    const label = opts.label ?? 'flotilla server';
    for (const role of ['root', 'release', 'delta', 'recovery'] as Role[])
      writePrivate(join(dir, `${role}.key`), encodeKeyFile(set.keys[role][0]!, role, `${label} ${role} key`));
    writeFileSync(join(dir, ROOT_FILE), `${canonicalize(set.root)}\n`, { mode: 0o644 });
    created = true;
  }
  const root = readRoot(join(dir, ROOT_FILE));
  const byRole = new Map<Role, KeyPair[]>();
  for (const name of readdirSync(dir).sort()) {
    if (!name.endsWith('.key')) continue;
    const { key, role } = decodeKeyFile(readFileSync(join(dir, name), 'utf8'));
    byRole.set(role, [...(byRole.get(role) ?? []), key]);
  }
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
    holdsRootKeys: (byRole.get('root') ?? []).length > 0,
  };
}
