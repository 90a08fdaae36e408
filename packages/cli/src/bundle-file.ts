import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { CliError } from './errors.js';

/**
 * The `.flot` path a user passed, checked before it is streamed: a missing path or a directory is
 * FLOTILLA_ERR_CLI_BUNDLE, not a bare ENOENT/EISDIR from the middle of a read.
 */
export async function bundleFileStats(path: string): Promise<Stats> {
  const stats = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new CliError('FLOTILLA_ERR_CLI_BUNDLE', `${path}: ${err.code ?? err.message}`, { cause: err });
  });
  if (!stats.isFile()) throw new CliError('FLOTILLA_ERR_CLI_BUNDLE', `${path}: not a file`);
  return stats;
}
