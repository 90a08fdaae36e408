import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  decodeKeyFile,
  isFlotillaError,
  type KeyPair,
  parseJson,
  type Role,
  type RootMetadata,
  verifyInitialRoot,
} from '@flotilla/protocol';
import { ImageError, ioError } from './errors.js';

export interface SigningKey {
  key: KeyPair;
  role: Role;
  label?: string;
}

/** Reads one private key file (made by `flotilla keys init`, protocol's encodeKeyFile). */
export async function loadKeyFile(path: string): Promise<SigningKey> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw ioError(`cannot read key file ${path}`, err);
  }
  const { key, role, label } = decodeKeyFile(text);
  return { key, role, label };
}

/** Every private key file in a keys directory, by role (files that are not key files are skipped). */
export async function loadKeysDir(dir: string): Promise<Map<Role, SigningKey[]>> {
  let names: string[];
  try {
    // `flotilla keys init` writes `<role>[-n].key`; JSON-named key files are accepted too.
    names = (await readdir(dir))
      .filter((n) => n.endsWith('.key') || (n.endsWith('.json') && !n.startsWith('root')))
      .sort();
  } catch (err) {
    throw ioError(`cannot read keys directory ${dir}`, err);
  }
  const out = new Map<Role, SigningKey[]>();
  for (const name of names) {
    let k: SigningKey;
    try {
      k = await loadKeyFile(join(dir, name));
    } catch (err) {
      if (isFlotillaError(err) && /SCHEMA|JSON/.test(err.code)) continue; // root.json and friends
      throw err;
    }
    out.set(k.role, [...(out.get(k.role) ?? []), k]);
  }
  return out;
}

/** Picks the signing key for a release kind from `--key` and/or `--keys`. */
export async function resolveSigningKey(opts: {
  keyFile?: string;
  keysDir?: string;
  role: Role;
}): Promise<SigningKey> {
  if (opts.keyFile) return loadKeyFile(opts.keyFile);
  if (opts.keysDir) {
    const found = (await loadKeysDir(opts.keysDir)).get(opts.role)?.[0];
    if (found) return found;
    throw new ImageError('FLOTILLA_ERR_IMAGE_KEY_MISSING', `no ${opts.role} key in ${opts.keysDir}`);
  }
  throw new ImageError(
    'FLOTILLA_ERR_IMAGE_KEY_MISSING',
    `pass --key FILE or --keys DIR (a ${opts.role} key)`,
  );
}

/** Reads and verifies a trust root (`root.json`): self-signed by its root keys and unexpired. */
export async function loadTrustRoot(path: string, now: Date = new Date()): Promise<RootMetadata> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw ioError(`cannot read trust root ${path}`, err);
  }
  return verifyInitialRoot(parseJson(bytes), now);
}
