import { chmod, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  canonicalize,
  decodeKeyFile,
  encodeKeyFile,
  type KeyPair,
  parseJson,
  type Role,
  type SignedRoot,
  SignedRoot as SignedRootSchema,
  validate,
} from '@flotilla/protocol';
import { CliError } from './errors.js';

/**
 * A keys directory as `flotilla keys init` lays it out:
 *   root.json            current signed keys metadata (what devices ship and trust)
 *   root.<N>.json        every version ever published, for devices that must walk rotations
 *   <role>-<n>.key       private keys, mode 0600, never printed
 *   retired/             keys rotated out, kept until the operator destroys them
 */
export const ROOT_FILE = 'root.json';

export async function writePrivateKey(
  dir: string,
  name: string,
  key: KeyPair,
  role: Role,
  label: string,
): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, encodeKeyFile(key, role, label), { mode: 0o600, flag: 'wx' });
  await chmod(path, 0o600); // the umask may have widened nothing, but be explicit
  return path;
}

export async function readKeyFile(path: string): Promise<{ key: KeyPair; role: Role; label: string }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new CliError('FLOTILLA_ERR_CLI_KEY_FILE', path, { cause });
  }
  return decodeKeyFile(text);
}

/** Loads every private key of a keys directory, grouped by role (retired keys are skipped). */
export async function readKeyDir(dir: string): Promise<Map<Role, { key: KeyPair; file: string }[]>> {
  const byRole = new Map<Role, { key: KeyPair; file: string }[]>();
  for (const name of (await listKeysDir(dir)).sort()) {
    if (!name.endsWith('.key')) continue;
    const { key, role } = await readKeyFile(join(dir, name));
    byRole.set(role, [...(byRole.get(role) ?? []), { key, file: name }]);
  }
  return byRole;
}

export async function readRoot(path: string): Promise<SignedRoot> {
  const text = await readFile(path, 'utf8').catch((cause) => {
    throw new CliError('FLOTILLA_ERR_CLI_ROOT_FILE', path, { cause });
  });
  return validate(SignedRootSchema, parseJson(text), 'root metadata') as SignedRoot;
}

/** Writes root.json atomically and keeps the versioned copy next to it. */
export async function writeRoot(dir: string, root: SignedRoot): Promise<void> {
  const text = `${canonicalize(root)}\n`;
  await writeFile(join(dir, `root.${root.signed.version}.json`), text, { flag: 'wx' });
  const tmp = join(dir, `${ROOT_FILE}.tmp`);
  await writeFile(tmp, text);
  await rename(tmp, join(dir, ROOT_FILE));
}

export async function ensureEmptyDir(dir: string, force: boolean): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 }).catch(keysDirError(dir));
  const existing = (await listKeysDir(dir)).filter((n) => n.endsWith('.key') || n.startsWith('root'));
  if (existing.length > 0 && !force) {
    throw new CliError('FLOTILLA_ERR_CLI_KEYS_EXIST', dir);
  }
}

/** The names in a keys directory; a missing one or a file is FLOTILLA_ERR_CLI_KEYS_DIR. */
function listKeysDir(dir: string): Promise<string[]> {
  return readdir(dir).catch(keysDirError(dir));
}

const keysDirError =
  (dir: string) =>
  (cause: NodeJS.ErrnoException): never => {
    throw new CliError('FLOTILLA_ERR_CLI_KEYS_DIR', `${dir}: ${cause.code ?? cause.message}`, { cause });
  };
