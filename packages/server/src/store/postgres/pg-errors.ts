import { StoreError } from '../../errors.js';

/**
 * Errors that mean "the database cannot be used right now" (down, restarting, unreachable,
 * refusing this login) become FLOTILLA_ERR_STORE_UNAVAILABLE naming where the store points; the
 * caller holds its work and retries. Every other error (a SQL mistake) passes through unchanged
 * with its SQLSTATE in `code`, as the SQLite driver passes SQLite's; a duplicate key or a row
 * still referred to becomes FLOTILLA_ERR_STORE_CONFLICT on both (store-conflict.ts).
 */
const UNAVAILABLE_SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOENT', // no socket file: the server is not running
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

const UNAVAILABLE_SQLSTATES: Record<string, string> = {
  '57P01': 'the server was shut down or the connection terminated',
  '57P02': 'the server crashed',
  '57P03': 'the server is starting up or shutting down',
  '53300': 'too many connections',
  '3D000': 'the database does not exist',
  '28P01': 'password authentication failed',
  '28000': 'the login was refused',
};

export function isUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  if (
    typeof e?.code === 'string' &&
    (UNAVAILABLE_SOCKET_CODES.has(e.code) || e.code in UNAVAILABLE_SQLSTATES)
  )
    return true;
  if (typeof e?.code === 'string' && e.code.startsWith('08')) return true; // connection_exception class
  const m = typeof e?.message === 'string' ? e.message : '';
  return /Connection terminated|timeout expired|not queryable|Client was closed|connection error/i.test(m);
}

export function mapPgError(err: unknown, target: string): unknown {
  if (err instanceof StoreError || !isUnavailable(err)) return err;
  const e = err as { code?: string; message?: string };
  const why = (e.code && UNAVAILABLE_SQLSTATES[e.code]) ?? e.message ?? String(err);
  return new StoreError('FLOTILLA_ERR_STORE_UNAVAILABLE', `PostgreSQL at ${target}: ${why}`, { cause: err });
}

/** Serialization failure or deadlock: the transaction did nothing and may simply run again. */
export function isRetryable(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return code === '40001' || code === '40P01';
}
