import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildRoot,
  decodeKeyFile,
  generateKeyPair,
  isoAfter,
  type KeyPair,
  type Role,
  signDocument,
} from '@flotilla/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type FlotillaServer } from '../src/index.js';
import { auth, cleanupDirs, silent, TEST_ADMIN, tempDir } from './helpers.js';

let servers: FlotillaServer[] = [];
afterEach(async () => {
  for (const s of servers) await s.close();
  servers = [];
  cleanupDirs();
});

async function start(
  dataDir: string,
  opts: Parameters<typeof createServer>[0] = {},
): Promise<FlotillaServer> {
  const s = await createServer({ dataDir, logger: silent, adminToken: TEST_ADMIN, ...opts });
  servers.push(s);
  return s;
}

function rolesIn(dir: string): Role[] {
  return readdirSync(dir)
    .filter((n) => n.endsWith('.key'))
    .map((n) => decodeKeyFile(readFileSync(join(dir, n), 'utf8')).role);
}

function keyOf(dir: string, role: Role): KeyPair {
  const name = readdirSync(dir).find(
    (n) => n.endsWith('.key') && decodeKeyFile(readFileSync(join(dir, n), 'utf8')).role === role,
  );
  return decodeKeyFile(readFileSync(join(dir, name!), 'utf8')).key;
}

/** Root 2 as `flotilla keys rotate --role root` makes it offline: new root key, same online keys. */
function rotatedRoot(offline: string, signers: 'old+new' | 'new only' = 'old+new') {
  const newRoot = generateKeyPair();
  const meta = buildRoot({
    version: 2,
    expires: isoAfter(new Date(), 365),
    roles: {
      root: { keys: [newRoot], threshold: 1 },
      release: { keys: [keyOf(offline, 'release')], threshold: 1 },
      delta: { keys: [keyOf(offline, 'delta')], threshold: 1 },
      recovery: { keys: [keyOf(offline, 'recovery')], threshold: 1 },
    },
  });
  return signDocument(meta, signers === 'old+new' ? [keyOf(offline, 'root'), newRoot] : [newRoot]);
}

describe('server keys: the root key stays offline', () => {
  it('a plain first start keeps no root private key in the data directory (it goes to a directory beside it, to move offline)', async () => {
    const dataDir = join(tempDir(), 'data');
    const s = await start(dataDir);
    expect(rolesIn(join(dataDir, 'keys')).sort()).toEqual(['delta', 'recovery', 'release']);
    const offline = s.ctx.keys.offlineKeysDir!;
    expect(offline).toBe(`${dataDir}.offline-keys`);
    expect(rolesIn(offline)).toContain('root');
    expect(s.ctx.keys.holdsRootKeys).toBe(false);
    // The server still has what it signs with online.
    expect(s.ctx.keys.delta.keyId).toBe(keyOf(offline, 'delta').keyId);
  });

  it('refuses to start on a keys directory that holds a root private key (root key online)', async () => {
    const dataDir = tempDir();
    await start(dataDir, { devKeys: true });
    await servers.pop()!.close();
    await expect(start(dataDir)).rejects.toMatchObject({ code: 'FLOTILLA_ERR_SERVER_ROOT_KEY_ONLINE' });
  });

  it('keeps the whole set, root key included, only in the named TEST-ONLY dev-keys mode', async () => {
    const dataDir = tempDir();
    const s = await start(dataDir, { devKeys: true });
    expect(s.ctx.keys.holdsRootKeys).toBe(true);
    expect(readFileSync(join(dataDir, 'keys', 'root.key'), 'utf8')).toContain('TEST-ONLY');
    expect(existsSync(`${dataDir}.offline-keys`)).toBe(false);
  });
});

describe('trust root chain served to devices', () => {
  const get = (s: FlotillaServer, url: string) => s.app.inject({ method: 'GET', url });

  it('serves root.N.json without a token and 404 past the current version (the end of a device walk)', async () => {
    const s = await start(join(tempDir(), 'data'));
    const one = await get(s, '/api/v1/trust/root/1.json');
    expect(one.statusCode).toBe(200);
    expect(one.json().signed.version).toBe(1);
    const two = await get(s, '/api/v1/trust/root/2.json');
    expect(two.statusCode).toBe(404);
    expect(two.json().error.code).toBe('FLOTILLA_ERR_SERVER_NOT_FOUND');
    expect((await get(s, '/api/v1/trust/root/..%2Fdelta.key')).statusCode).toBe(400);
  });

  it('publishes root 2 signed by the old and the new root keys, and devices can fetch it', async () => {
    const s = await start(join(tempDir(), 'data'));
    const root2 = rotatedRoot(s.ctx.keys.offlineKeysDir!);
    const r = await s.app.inject({
      method: 'POST',
      url: '/api/v1/trust/root',
      payload: root2,
      headers: auth(TEST_ADMIN),
    });
    expect(r.statusCode, r.body).toBe(201);
    expect((await get(s, '/api/v1/trust/root/2.json')).json()).toEqual(root2);
    expect((await get(s, '/api/v1/root')).json().signed.version).toBe(2);
    expect((await get(s, '/api/v1/trust/root/1.json')).json().signed.version).toBe(1);
  });

  it('refuses a root signed only by new keys (root takeover) and needs an admin token', async () => {
    const s = await start(join(tempDir(), 'data'));
    const forged = rotatedRoot(s.ctx.keys.offlineKeysDir!, 'new only');
    const r = await s.app.inject({
      method: 'POST',
      url: '/api/v1/trust/root',
      payload: forged,
      headers: auth(TEST_ADMIN),
    });
    expect(r.statusCode).toBe(409);
    expect(r.json().error.code).toBe('FLOTILLA_ERR_SERVER_ROOT_REFUSED');
    expect((await get(s, '/api/v1/trust/root/2.json')).statusCode).toBe(404);
    const anon = await s.app.inject({ method: 'POST', url: '/api/v1/trust/root', payload: forged });
    expect(anon.statusCode).toBe(401);
  });

  it('applies a root.2.json dropped into the keys directory at the next start', async () => {
    const dataDir = join(tempDir(), 'data');
    const s = await start(dataDir);
    const root2 = rotatedRoot(s.ctx.keys.offlineKeysDir!);
    await servers.pop()!.close();
    writeFileSync(join(dataDir, 'keys', 'root.2.json'), JSON.stringify(root2));
    const again = await start(dataDir);
    expect(again.ctx.keys.rootMeta.version).toBe(2);
    expect((await get(again, '/api/v1/trust/root/2.json')).json()).toEqual(root2);
  });
});
