import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { storageFault } from '../artifacts/storage-fault.js';
import { ServerError } from '../errors.js';
import { PostgresDriver } from './postgres/driver.js';
import { Store } from './store.js';

export const DB_FILE = 'server.db';

/** What a data directory holds besides the database: each one means "this server has run". */
export function stateBesidesDb(dataDir: string): string[] {
  const held: string[] = [];
  if (existsSync(join(dataDir, 'keys', 'root.json'))) held.push('keys/root.json');
  if (existsSync(join(dataDir, 'admin-token'))) held.push('admin-token');
  const artifacts = join(dataDir, 'artifacts');
  if (existsSync(artifacts) && readdirSync(artifacts).some((n) => n !== 'tmp')) held.push('artifacts/');
  return held;
}

function refuse(detail: string, cause?: unknown): never {
  throw new ServerError('FLOTILLA_ERR_SERVER_STORE', detail, { cause });
}

/** The data directory exists (created if missing) and takes a write; coded errors otherwise. */
function checkWritable(dataDir: string): void {
  try {
    mkdirSync(dataDir, { recursive: true });
  } catch (err) {
    refuse(`data directory ${dataDir} cannot be created: ${(err as NodeJS.ErrnoException).code ?? err}`, err);
  }
  if (!statSync(dataDir).isDirectory()) refuse(`data directory ${dataDir} is not a directory`);
  const probe = join(dataDir, `.write-probe-${process.pid}`);
  try {
    writeFileSync(probe, '', { flag: 'wx' });
    rmSync(probe, { force: true });
  } catch (err) {
    throw (
      storageFault(err, `data directory ${dataDir}`) ??
      refuse(`data directory ${dataDir} cannot be written: ${(err as Error).message}`, err)
    );
  }
}

/** The schema version of an existing database file, read without changing it. */
function schemaVersion(file: string): number {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return db.pragma('user_version', { simple: true }) as number;
  } finally {
    db.close();
  }
}

/**
 * Opens the server's database, refusing to start over on a data directory that has state: a
 * missing, empty (0 bytes), schema-less or unreadable server.db next to keys, artifacts or an
 * admin token means the database was lost, and a fresh one would forget the fleet and replace
 * the admin token. That is FLOTILLA_ERR_SERVER_STORE, never a silent new install. Call before
 * anything else in the data directory is created.
 */
export async function openServerStore(dataDir: string): Promise<Store> {
  checkWritable(dataDir);
  const file = join(dataDir, DB_FILE);
  const held = stateBesidesDb(dataDir);
  const lost = (what: string) =>
    refuse(
      `${file} ${what}, but the data directory holds ${held.join(', ')}: restore server.db from a backup (starting over would forget the fleet and replace the admin token)`,
    );
  if (!existsSync(file)) {
    // Keys alone are allowed: they may be placed (or imported) before the first start.
    if (held.some((h) => h !== 'keys/root.json')) lost('is missing');
  } else {
    if (statSync(file).size === 0 && held.length > 0) lost('is empty (0 bytes)');
    let version: number;
    try {
      version = statSync(file).size === 0 ? 0 : schemaVersion(file);
    } catch (err) {
      throw (
        storageFault(err, file) ??
        refuse(
          `${file} is not a readable SQLite database (${(err as { code?: string }).code ?? (err as Error).message}): restore it from a backup`,
          err,
        )
      );
    }
    if (version === 0 && held.length > 0) lost('holds no schema');
  }
  try {
    return await Store.open(file);
  } catch (err) {
    if (err instanceof ServerError) throw err;
    throw storageFault(err, file) ?? refuse(`${file} cannot be opened: ${(err as Error).message}`, err);
  }
}

/**
 * Opens the store several nodes share: the PostgreSQL database at `url`, migrated (nodes starting
 * together take turns). The data directory still holds this node's keys and the artifact store.
 */
export async function openSharedStore(dataDir: string, url: string, node: string): Promise<Store> {
  checkWritable(dataDir);
  return Store.fromDriver(new PostgresDriver(url, { applicationName: `flotilla-server:${node}` }));
}
