import { ServerError } from '../errors.js';

/** errno codes (and SQLite's) that mean "the disk or the quota is full". */
const FULL_CODES = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL']);
/** errno codes that mean "the data directory cannot be written at all". */
const READ_ONLY_CODES = new Set(['EROFS', 'EACCES', 'EPERM']);

function codesOf(err: unknown): string[] {
  const codes: string[] = [];
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 8; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') codes.push(code);
    e = (e as { cause?: unknown }).cause;
  }
  return codes;
}

/**
 * A storage fault anywhere in an error's cause chain, as the server's coded error: a full disk is
 * FLOTILLA_ERR_SERVER_STORAGE_FULL (507), a read-only one FLOTILLA_ERR_SERVER_STORE; anything
 * else is not a storage fault (null), so callers keep the error they had.
 */
export function storageFault(err: unknown, where: string): ServerError | null {
  if (
    err instanceof ServerError &&
    (err.code === 'FLOTILLA_ERR_SERVER_STORAGE_FULL' || err.code === 'FLOTILLA_ERR_SERVER_STORE')
  )
    return err;
  const codes = codesOf(err);
  const full = codes.find((c) => FULL_CODES.has(c));
  if (full) return new ServerError('FLOTILLA_ERR_SERVER_STORAGE_FULL', `${where}: ${full}`, { cause: err });
  const ro = codes.find((c) => READ_ONLY_CODES.has(c));
  if (ro)
    return new ServerError('FLOTILLA_ERR_SERVER_STORE', `${where}: ${ro} (cannot write)`, { cause: err });
  return null;
}
