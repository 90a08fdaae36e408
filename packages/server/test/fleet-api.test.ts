import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type FlotillaServer } from '../src/index.js';
import { auth, cleanupDirs, silent, stateMessage, TEST_ADMIN, tempDir } from './helpers.js';

let server: FlotillaServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
  cleanupDirs();
});

async function start(opts: { dashboardDir?: string } = {}) {
  server = await createServer({
    dataDir: tempDir(),
    devKeys: true,
    logger: silent,
    adminToken: TEST_ADMIN,
    ...opts,
  });
  return server;
}

async function token(s: FlotillaServer, name: string, role: string): Promise<{ id: string; token: string }> {
  const res = await s.app.inject({
    method: 'POST',
    url: '/api/v1/tokens',
    headers: auth(),
    payload: { name, role },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

describe('GET /api/v1/auth/whoami', () => {
  it('names the token and its role for every role, and nothing else', async () => {
    const s = await start();
    for (const role of ['viewer', 'operator', 'admin']) {
      const t = await token(s, `TEST-ONLY ${role}`, role);
      const res = await s.app.inject({ method: 'GET', url: '/api/v1/auth/whoami', headers: auth(t.token) });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toEqual({ id: t.id, name: `TEST-ONLY ${role}`, role });
    }
  });

  it('refuses a missing, unknown or revoked token with 401 UNAUTHENTICATED', async () => {
    const s = await start();
    const t = await token(s, 'TEST-ONLY revoked', 'viewer');
    const del = await s.app.inject({ method: 'DELETE', url: `/api/v1/tokens/${t.id}`, headers: auth() });
    expect(del.statusCode).toBe(200);
    for (const headers of [{}, auth('TEST-ONLY-not-a-token'), auth(t.token)]) {
      const res = await s.app.inject({ method: 'GET', url: '/api/v1/auth/whoami', headers });
      expect(res.statusCode).toBe(401);
      expect(res.json().error.code).toBe('FLOTILLA_ERR_SERVER_UNAUTHENTICATED');
    }
  });

  it('is described in the OpenAPI document with its response schema', async () => {
    const s = await start();
    const doc = (await s.app.inject({ method: 'GET', url: '/docs/json' })).json();
    const schema = doc.paths['/api/v1/auth/whoami'].get.responses['200'].content['application/json'].schema;
    expect(Object.keys(schema.properties).sort()).toEqual(['id', 'name', 'role']);
    expect(doc.paths['/api/v1/fleet/summary'].get).toBeDefined();
  });
});

describe('GET /api/v1/fleet/summary', () => {
  it('counts the whole fleet in SQL, beyond the 1,000 devices a list page holds', async () => {
    const s = await start();
    const now = Date.now();
    await s.ctx.store.tx(async ({ devices }) => {
      for (let i = 0; i < 1_250; i++) {
        const id = `TEST-ONLY-f-${String(i).padStart(4, '0')}`;
        // Ids sort so that the 250 board-b devices come after the first 1,000.
        await devices.insert({
          id,
          publicKey: '00'.repeat(32),
          status: 'accepted',
          hardware: i < 1_000 ? 'board-a' : 'board-b',
          now,
        });
        await devices.applyState(
          id,
          stateMessage(1, {
            version: i % 5 === 0 ? '1.1.0' : '1.0.0',
            agentState: i < 1_200 ? 'Idle' : 'Downloading',
          }),
          now,
        );
        if (i % 10 === 0) await devices.setOnline(id, false, now);
      }
      await devices.insert({ id: 'TEST-ONLY-f-pending', publicKey: '00'.repeat(32), status: 'pending', now });
      await devices.insert({ id: 'TEST-ONLY-f-never', publicKey: '00'.repeat(32), status: 'accepted', now });
      await devices.insert({
        id: 'TEST-ONLY-f-gone',
        publicKey: '00'.repeat(32),
        status: 'decommissioned',
        now,
      });
    });
    const viewer = await token(s, 'TEST-ONLY viewer', 'viewer');
    const res = await s.app.inject({
      method: 'GET',
      url: '/api/v1/fleet/summary',
      headers: auth(viewer.token),
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({
      accepted: 1_251,
      online: 1_125,
      offline: 126,
      pending: 1,
      byStatus: { pending: 1, accepted: 1_251, rejected: 0, decommissioned: 1 },
      byVersion: [
        { version: '1.0.0', count: 1_000 },
        { version: '1.1.0', count: 250 },
        { version: null, count: 1 },
      ],
      byAgentState: [
        { state: 'Idle', count: 1_200 },
        { state: 'Downloading', count: 50 },
        { state: null, count: 1 },
      ],
      byHardware: [
        { hardware: 'board-a', count: 1_000 },
        { hardware: 'board-b', count: 250 },
        { hardware: null, count: 1 },
      ],
    });
  });

  it('needs a token', async () => {
    const s = await start();
    const res = await s.app.inject({ method: 'GET', url: '/api/v1/fleet/summary' });
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('FLOTILLA_ERR_SERVER_UNAUTHENTICATED');
  });
});

describe('dashboard files', () => {
  it('answers 404 for a missing file with an extension, and the app for unknown extensionless paths', async () => {
    const dir = tempDir('flotilla-dash-');
    mkdirSync(join(dir, 'app'));
    writeFileSync(join(dir, 'index.html'), '<!doctype html><title>TEST-ONLY</title>');
    writeFileSync(join(dir, 'app', 'main.js'), 'export const TEST_ONLY = 1;\n');
    const s = await start({ dashboardDir: dir });
    const get = (url: string) => s.app.inject({ method: 'GET', url });

    const js = await get('/app/main.js');
    expect(js.statusCode).toBe(200);
    expect(js.headers['content-type']).toMatch(/^text\/javascript/);
    for (const missing of ['/app/missing.js', '/styles.css', '/app/pages/gone.mjs', '/favicon.ico']) {
      const res = await get(missing);
      expect(res.statusCode, missing).toBe(404);
      expect(res.json().error.code).toBe('FLOTILLA_ERR_SERVER_NOT_FOUND');
    }
    for (const page of ['/', '/devices', '/some/deep/route']) {
      const res = await get(page);
      expect(res.statusCode, page).toBe(200);
      expect(res.body).toContain('<title>TEST-ONLY</title>');
    }
  });
});
