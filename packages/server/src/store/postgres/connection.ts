import type pg from 'pg';
import { StoreError } from '../../errors.js';
import { storeTypes } from './integers.js';

export interface PostgresConnectionOptions {
  /** Connections in the pool (each node holds its own pool). */
  max?: number;
  /** How long a new connection may take before the store is reported unavailable. */
  connectTimeoutMs?: number;
  /** Shown in pg_stat_activity, so an operator sees which node holds which connection. */
  applicationName?: string;
}

/**
 * The pool settings for a store URL: `postgres://user:password@host:5432/db`, or a unix socket
 * as `postgres://user@/db?host=/run/postgresql`. Anything else is refused before connecting.
 */
export function poolConfig(url: string, opts: PostgresConnectionOptions = {}): pg.PoolConfig {
  const parsed = parseUrl(url);
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:')
    throw new StoreError('FLOTILLA_ERR_STORE_URL', `scheme ${parsed.protocol} is not postgres:`);
  if (!parsed.hostname && !parsed.searchParams.get('host'))
    throw new StoreError('FLOTILLA_ERR_STORE_URL', 'no host: name one, or a socket directory as ?host=/dir');
  return {
    connectionString: url,
    max: opts.max ?? 10,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
    application_name: opts.applicationName ?? 'flotilla-server',
    // A server that went away leaves idle sockets behind: notice it within seconds, not hours.
    keepAlive: true,
    keepAliveInitialDelayMillis: 5000,
    types: storeTypes,
  };
}

/**
 * WHATWG URL parsing, except that `user@/db` (no host: a unix socket named by ?host=) is allowed,
 * as libpq and node-postgres allow it.
 */
function parseUrl(url: string): {
  protocol: string;
  hostname: string;
  port: string;
  pathname: string;
  searchParams: URLSearchParams;
} {
  try {
    const u = new URL(url.replace(/^([a-z]+:\/\/[^/@]*)@\//i, '$1@_/'));
    const { protocol, port, pathname, searchParams } = u;
    return { protocol, hostname: u.hostname === '_' ? '' : u.hostname, port, pathname, searchParams };
  } catch {
    throw new StoreError('FLOTILLA_ERR_STORE_URL', `${JSON.stringify(redactUrl(url))} is not a URL`);
  }
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/(\/\/[^:/@]*:)[^@/]*@/, '$1***@');
}

/** Where the URL points (host:port or the socket directory), for error messages. */
export function describeTarget(config: pg.PoolConfig): string {
  const u = parseUrl(config.connectionString ?? '');
  const socket = u.searchParams.get('host');
  const db = decodeURIComponent(u.pathname.slice(1)) || '(default)';
  return socket
    ? `socket ${socket}/.s.PGSQL.${u.searchParams.get('port') ?? (u.port || 5432)}, database ${db}`
    : `${u.hostname}:${u.port || 5432}, database ${db}`;
}
