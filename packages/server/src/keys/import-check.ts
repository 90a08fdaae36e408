import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalize, parseJson, type SignedRoot } from '@flotilla/protocol';
import { ServerError } from '../errors.js';

/** Does `keysDir` already trust the root of `importDir`? Then importing again is a no-op. */
export type ImportVerdict = 'empty' | 'same-root';

function rootText(path: string, what: string): string {
  try {
    return canonicalize(parseJson(readFileSync(path)) as SignedRoot);
  } catch (cause) {
    throw new ServerError('FLOTILLA_ERR_SERVER_KEYS', `cannot read ${what} ${path}`, { cause });
  }
}

/**
 * `--import-keys` on a data directory that already has keys: accepted only when they are the same
 * trust root (a config file or unit that always passes --import-keys restarts fine); a different
 * root is refused instead of being ignored without a word, since devices provisioned with the
 * imported root.json would refuse everything this server signs.
 */
export function checkImportTarget(importDir: string, keysDir: string): ImportVerdict {
  const current = join(keysDir, 'root.json');
  if (!existsSync(current)) return 'empty';
  const imported = rootText(join(importDir, 'root.json'), 'the root metadata to import');
  const version = (JSON.parse(imported) as SignedRoot).signed.version;
  for (const candidate of [current, join(keysDir, `root.${version}.json`)])
    if (existsSync(candidate) && rootText(candidate, 'the server root metadata') === imported)
      return 'same-root';
  throw new ServerError(
    'FLOTILLA_ERR_SERVER_KEYS_CONFLICT',
    `${keysDir} already holds a different trust root than ${importDir}`,
  );
}
