import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createServer } from '../src/index.js';
import { cleanupDirs, silent, tempDir } from './helpers.js';

// A data directory that has run a server must never be taken for a new install: a lost
// server.db would forget the fleet and write a new admin token over the old one (issue 13, item 11).

afterAll(() => cleanupDirs());

/** The server is only created, never started: no broker is ever connected to. */
const NO_BROKER = {
  kind: 'external' as const,
  connect: { url: 'mqtt://127.0.0.1:1', username: 'TEST-ONLY', password: 'TEST-ONLY' },
};

/** Runs a server once on `dataDir` (it writes keys, server.db and admin-token) and stops it. */
async function runOnce(dataDir: string): Promise<string> {
  const s = await createServer({
    dataDir,
    logger: silent,
    broker: NO_BROKER,
  });
  await s.close();
  return readFileSync(join(dataDir, 'admin-token'), 'utf8');
}

async function startError(dataDir: string): Promise<{ code?: string; message: string; hint?: string }> {
  try {
    const s = await createServer({
      dataDir,
      logger: silent,
      broker: NO_BROKER,
    });
    await s.close();
  } catch (err) {
    return err as { code?: string; message: string; hint?: string };
  }
  throw new Error('the server started');
}

describe('a lost database is not a new install', () => {
  it('refuses a zero-byte server.db next to keys and a token (it would forget the fleet and replace the token)', async () => {
    const dataDir = tempDir();
    const token = await runOnce(dataDir);
    truncateSync(join(dataDir, 'server.db'), 0);
    const err = await startError(dataDir);
    expect(err.code).toBe('FLOTILLA_ERR_SERVER_STORE');
    expect(err.message).toContain('is empty (0 bytes)');
    expect(err.message).toContain('admin-token');
    expect(err.hint).toEqual(expect.any(String));
    expect(readFileSync(join(dataDir, 'admin-token'), 'utf8')).toBe(token);
    expect(statSync(join(dataDir, 'server.db')).size).toBe(0);
  });

  it('refuses a corrupt server.db with a coded error, not a raw SQLite one', async () => {
    const dataDir = tempDir();
    const token = await runOnce(dataDir);
    writeFileSync(join(dataDir, 'server.db'), Buffer.alloc(8192, 0x5a));
    const err = await startError(dataDir);
    expect(err.code).toBe('FLOTILLA_ERR_SERVER_STORE');
    expect(err.message).toContain('not a readable SQLite database');
    expect(readFileSync(join(dataDir, 'admin-token'), 'utf8')).toBe(token);
  });

  it('refuses a missing server.db when the data directory holds a token', async () => {
    const dataDir = tempDir();
    const token = await runOnce(dataDir);
    rmSync(join(dataDir, 'server.db'));
    const err = await startError(dataDir);
    expect(err.code).toBe('FLOTILLA_ERR_SERVER_STORE');
    expect(err.message).toContain('is missing');
    expect(readFileSync(join(dataDir, 'admin-token'), 'utf8')).toBe(token);
  });

  it('still starts fresh on an empty data directory, and again on what that start left', async () => {
    const dataDir = tempDir();
    const token = await runOnce(dataDir);
    expect(token.trim().length).toBeGreaterThan(10);
    expect(await runOnce(dataDir)).toBe(token);
  });
});

describe('data directories the server cannot use', () => {
  it('a data directory under a regular file is FLOTILLA_ERR_SERVER_STORE, not a raw ENOTDIR', async () => {
    const parent = tempDir();
    writeFileSync(join(parent, 'a-file'), 'x');
    const err = await startError(join(parent, 'a-file', 'data'));
    expect(err.code).toBe('FLOTILLA_ERR_SERVER_STORE');
    expect(err.message).toContain('cannot be created');
  });

  it('a read-only data directory is FLOTILLA_ERR_SERVER_STORE naming it', () => {
    const parent = tempDir();
    chmodSync(parent, 0o755);
    const dataDir = join(parent, 'data');
    mkdirSync(dataDir, { mode: 0o555 });
    chmodSync(dataDir, 0o555);
    // Root writes through any mode: then the check runs as `nobody`, as a real service user would.
    const asRoot = process.getuid?.() === 0;
    const entry = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    const script = `import(${JSON.stringify(entry)}).then(({ createServer }) => createServer({ dataDir: ${JSON.stringify(dataDir)}, logLevel: 'silent' })).then(() => console.log('STARTED'), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))`;
    const r = spawnSync(process.execPath, ['-e', script], {
      encoding: 'utf8',
      timeout: 60_000,
      ...(asRoot ? { uid: 65534, gid: 65534 } : {}),
    });
    const line = r.stdout.trim().split('\n').at(-1) ?? '';
    expect(line, r.stderr).not.toBe('STARTED');
    const err = JSON.parse(line);
    expect(err.code).toBe('FLOTILLA_ERR_SERVER_STORE');
    expect(err.message).toContain(dataDir);
  });
});
