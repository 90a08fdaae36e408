import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type FlotillaServer } from '../src/index.js';
import type { SqliteDriver } from '../src/store/sqlite-driver.js';
import { auth, cleanupDirs, silent, TEST_ADMIN, tempDir, testDevice } from './helpers.js';

let server: FlotillaServer;
let viewer: string;
let operator: string;

beforeAll(async () => {
  server = await createServer({ dataDir: tempDir(), devKeys: true, logger: silent, adminToken: TEST_ADMIN });
  const mk = async (role: string) =>
    (
      await server.app.inject({
        method: 'POST',
        url: '/api/v1/tokens',
        headers: auth(),
        payload: { name: `TEST-ONLY ${role}`, role },
      })
    ).json().token as string;
  viewer = await mk('viewer');
  operator = await mk('operator');
});
afterAll(async () => {
  await server.close();
  cleanupDirs();
});

const inject = (method: string, url: string, payload?: unknown, token: string | null = TEST_ADMIN) =>
  server.app.inject({
    method: method as 'GET',
    url,
    ...(payload !== undefined ? { payload: payload as object } : {}),
    headers: token ? auth(token) : {},
  });

function expectError(
  res: { statusCode: number; json: () => unknown },
  status: number,
  code: string | RegExp,
) {
  expect(res.statusCode).toBe(status);
  const body = res.json() as { error: { code: string; message: string; hint?: string } };
  expect(body.error.code).toMatch(code);
  expect(body.error.message.length).toBeGreaterThan(5);
}

function rawImage(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4096) b.write(`TEST-ONLY block ${i}`, i);
  return b;
}

describe('API: authentication and roles', () => {
  it('refuses a request without a token, with an unknown token, and with a malformed header', async () => {
    expectError(
      await inject('GET', '/api/v1/devices', undefined, null),
      401,
      'FLOTILLA_ERR_SERVER_UNAUTHENTICATED',
    );
    expectError(
      await inject('GET', '/api/v1/devices', undefined, 'not-a-real-token-at-all'),
      401,
      'FLOTILLA_ERR_SERVER_UNAUTHENTICATED',
    );
    const res = await server.app.inject({
      method: 'GET',
      url: '/api/v1/devices',
      headers: { authorization: 'Basic abc' },
    });
    expectError(res, 401, 'FLOTILLA_ERR_SERVER_UNAUTHENTICATED');
  });

  it('lets a viewer read but change nothing', async () => {
    expect((await inject('GET', '/api/v1/devices', undefined, viewer)).statusCode).toBe(200);
    const audit = (await server.ctx.store.audit.list(Number.MAX_SAFE_INTEGER, 1000)).length;
    const changes: [string, string, unknown][] = [
      ['POST', '/api/v1/devices/x/accept', {}],
      ['PUT', '/api/v1/devices/x/placement', { tags: ['a'] }],
      ['POST', '/api/v1/provisioning-tokens', { label: 'x' }],
      ['POST', '/api/v1/releases/1.0.0/promote', { channel: 'staging' }],
      ['POST', '/api/v1/rollouts', { release: '1.0.0', policy: { target: {}, phases: [{ percent: 100 }] } }],
      ['POST', '/api/v1/rollouts/ro_0000000000000000/pause', {}],
      ['POST', '/api/v1/deltas', { from: '1.0.0', to: '1.1.0' }],
      ['POST', '/api/v1/tokens', { name: 'x', role: 'admin' }],
      ['DELETE', '/api/v1/tokens/tok_0000000000000000', undefined],
      ['POST', '/api/v1/retention/prune', {}],
    ];
    for (const [method, url, body] of changes)
      expectError(await inject(method, url, body, viewer), 403, 'FLOTILLA_ERR_SERVER_FORBIDDEN');
    expect((await server.ctx.store.audit.list(Number.MAX_SAFE_INTEGER, 1000)).length).toBe(audit);
  });

  it('keeps token management and the audit log for admins', async () => {
    expectError(
      await inject('POST', '/api/v1/tokens', { name: 'x', role: 'admin' }, operator),
      403,
      'FLOTILLA_ERR_SERVER_FORBIDDEN',
    );
    expectError(
      await inject('GET', '/api/v1/audit', undefined, operator),
      403,
      'FLOTILLA_ERR_SERVER_FORBIDDEN',
    );
  });

  it('revokes a token', async () => {
    const t = (await inject('POST', '/api/v1/tokens', { name: 'TEST-ONLY temp', role: 'viewer' })).json();
    expect((await inject('DELETE', `/api/v1/tokens/${t.id}`)).statusCode).toBe(200);
    expectError(
      await inject('GET', '/api/v1/devices', undefined, t.token),
      401,
      'FLOTILLA_ERR_SERVER_UNAUTHENTICATED',
    );
  });
});

describe('API: bad input is refused with 4xx and a clear message', () => {
  const cases: [string, string, unknown, number, RegExp][] = [
    ['GET', '/api/v1/devices?status=bogus', undefined, 400, /VALIDATION/],
    ['GET', '/api/v1/devices?limit=0', undefined, 400, /VALIDATION/],
    ['GET', '/api/v1/devices?unknown=1', undefined, 400, /VALIDATION/],
    ['GET', '/api/v1/devices/bad%20id', undefined, 400, /VALIDATION/],
    ['GET', '/api/v1/devices/nope', undefined, 404, /NOT_FOUND/],
    ['POST', '/api/v1/devices/nope/accept', {}, 404, /NOT_FOUND/],
    ['PUT', '/api/v1/devices/nope/placement', {}, 400, /VALIDATION/],
    ['PUT', '/api/v1/devices/nope/placement', { tags: { a: 1 } }, 400, /VALIDATION/],
    ['PUT', '/api/v1/devices/nope/placement', { channel: 'beta' }, 400, /VALIDATION/],
    ['POST', '/api/v1/devices/register', { deviceId: 'x' }, 400, /VALIDATION/],
    [
      'POST',
      '/api/v1/devices/register',
      { deviceId: 'x', publicKey: '00'.repeat(32), proof: 'fl1.1.2.3' },
      401,
      /UNAUTHENTICATED/,
    ],
    ['POST', '/api/v1/provisioning-tokens', { label: '' }, 400, /VALIDATION/],
    ['POST', '/api/v1/provisioning-tokens', { label: 'x', ttlSeconds: 1 }, 400, /VALIDATION/],
    ['GET', '/api/v1/releases?channel=nightly', undefined, 400, /VALIDATION/],
    ['GET', '/api/v1/releases/9.9.9', undefined, 404, /NOT_FOUND/],
    ['POST', '/api/v1/releases/9.9.9/promote', { channel: 'staging' }, 404, /NOT_FOUND/],
    ['POST', '/api/v1/releases/9.9.9/promote', { channel: 'qa' }, 400, /VALIDATION/],
    ['POST', '/api/v1/releases/build?name=x&version=1.0.0', undefined, 400, /VALIDATION/],
    ['GET', '/api/v1/artifacts/xyz', undefined, 400, /VALIDATION/],
    ['GET', `/api/v1/artifacts/${'a'.repeat(64)}`, undefined, 404, /NOT_FOUND/],
    ['POST', '/api/v1/deltas', { from: '1.0.0' }, 400, /VALIDATION/],
    ['POST', '/api/v1/deltas', { from: '1.0.0', to: '2.0.0' }, 404, /NOT_FOUND/],
    ['POST', '/api/v1/rollouts', { release: '1.0.0' }, 400, /VALIDATION/],
    ['POST', '/api/v1/rollouts', { release: '1.0.0', policy: { target: {}, phases: [] } }, 400, /VALIDATION/],
    [
      'POST',
      '/api/v1/rollouts',
      { release: '1.0.0', policy: { target: {}, phases: [{ percent: 150 }] } },
      400,
      /VALIDATION/,
    ],
    [
      'POST',
      '/api/v1/rollouts',
      { release: '9.9.9', policy: { target: {}, phases: [{ percent: 100 }] } },
      404,
      /NOT_FOUND/,
    ],
    ['GET', '/api/v1/rollouts/not-an-id', undefined, 400, /VALIDATION/],
    ['GET', '/api/v1/rollouts/ro_0000000000000000', undefined, 404, /NOT_FOUND/],
    ['POST', '/api/v1/rollouts/ro_0000000000000000/approve', { phase: 'one' }, 400, /VALIDATION/],
    ['POST', '/api/v1/rollouts/ro_0000000000000000/pause', undefined, 404, /NOT_FOUND/],
    ['POST', '/api/v1/rollouts/ro_0000000000000000/abort', { rollback: 'yes please' }, 400, /VALIDATION/],
    ['POST', '/api/v1/tokens', { name: 'x', role: 'root' }, 400, /VALIDATION/],
    ['DELETE', '/api/v1/tokens/tok_0000000000000000', undefined, 404, /NOT_FOUND/],
    ['POST', '/api/v1/retention/prune', { keepPerChannel: 0 }, 400, /VALIDATION/],
    ['GET', '/api/v1/nothing-here', undefined, 404, /NOT_FOUND/],
  ];
  for (const [method, url, body, status, code] of cases) {
    it(`${method} ${url} ${body === undefined ? '' : JSON.stringify(body)} → ${status}`, async () => {
      expectError(await inject(method, url, body), status, code);
    });
  }

  it('refuses malformed JSON, a wrong content type and an oversized JSON body', async () => {
    const bad = await server.app.inject({
      method: 'POST',
      url: '/api/v1/tokens',
      headers: { ...auth(), 'content-type': 'application/json' },
      payload: '{"name":',
    });
    expectError(bad, 400, /VALIDATION/);
    const type = await server.app.inject({
      method: 'POST',
      url: '/api/v1/tokens',
      headers: { ...auth(), 'content-type': 'application/xml' },
      payload: 'hello',
    });
    expectError(type, 415, /VALIDATION/);
    const big = await server.app.inject({
      method: 'POST',
      url: '/api/v1/provisioning-tokens',
      headers: { ...auth(), 'content-type': 'application/json' },
      payload: JSON.stringify({ label: 'x'.repeat(2 * 1024 * 1024) }),
    });
    expectError(big, 413, /TOO_LARGE/);
  });

  it('writes nothing half-way when a bundle upload is not a bundle', async () => {
    const before = {
      releases: (await server.ctx.store.releases.list()).length,
      artifacts: (await server.ctx.store.artifacts.list()).length,
    };
    const res = await server.app.inject({
      method: 'POST',
      url: '/api/v1/releases/bundle',
      headers: { ...auth(operator), 'content-type': 'application/octet-stream' },
      payload: randomBytes(10_000),
    });
    expectError(res, 400, 'FLOTILLA_ERR_SERVER_UPLOAD_INVALID');
    expect((await server.ctx.store.releases.list()).length).toBe(before.releases);
    expect((await server.ctx.store.artifacts.list()).length).toBe(before.artifacts);
  });
});

describe('API: JSON bodies are validated exactly, query strings are coerced', () => {
  // A wrong-typed body is a client bug: coercing it changes what the request means.
  const wrongTyped: [string, string, unknown][] = [
    ['POST', '/api/v1/tokens', { name: 12345, role: 'viewer' }],
    ['PUT', '/api/v1/devices/TEST-ONLY-any/placement', { tags: 'single-tag' }],
    ['PUT', '/api/v1/devices/TEST-ONLY-any/placement', { channel: ['prod'] }],
    ['POST', '/api/v1/provisioning-tokens', { label: 'x', ttlSeconds: '3600' }],
    ['POST', '/api/v1/provisioning-tokens', { label: 'x', autoAccept: 'false' }],
    ['POST', '/api/v1/rollouts/ro_0000000000000000/abort', { rollback: 'true' }],
    ['POST', '/api/v1/rollouts/ro_0000000000000000/approve', { phase: '1' }],
    ['POST', '/api/v1/retention/prune', { keepPerChannel: '3' }],
    ['POST', '/api/v1/releases/9.9.9/promote', { channel: ['staging'] }],
  ];
  for (const [method, url, body] of wrongTyped) {
    it(`refuses a wrong-typed body: ${method} ${url} ${JSON.stringify(body)} → 400`, async () => {
      const audit = (await server.ctx.store.audit.list(Number.MAX_SAFE_INTEGER, 1000)).length;
      expectError(await inject(method, url, body), 400, 'FLOTILLA_ERR_SERVER_VALIDATION');
      expect((await server.ctx.store.audit.list(Number.MAX_SAFE_INTEGER, 1000)).length).toBe(audit);
    });
  }

  it('does not prune for real when dryRun is an empty string (coercion would have made it false)', async () => {
    const res = await inject('POST', '/api/v1/retention/prune', { dryRun: '' });
    expectError(res, 400, 'FLOTILLA_ERR_SERVER_VALIDATION');
    expect(res.json().error.message).toMatch(/dryRun|boolean/);
  });

  it('still coerces query strings: numbers and booleans', async () => {
    const res = await inject('GET', '/api/v1/devices?limit=2&offset=0&online=false');
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().items.length).toBeLessThanOrEqual(2);
    // (A single `compatible=` becoming a one-item array is covered by the build test below.)
  });
});

describe('API: devices, releases, artifacts', () => {
  it('registers a device with proof of its key, leaves it pending, and lets an operator accept it', async () => {
    const d = testDevice('TEST-ONLY-api-1');
    const reg = await inject(
      'POST',
      '/api/v1/devices/register',
      { deviceId: d.id, publicKey: d.publicKeyHex, proof: d.password() },
      null,
    );
    expect(reg.statusCode).toBe(200);
    expect(reg.json().device.status).toBe('pending');
    const other = testDevice(d.id);
    expectError(
      await inject(
        'POST',
        '/api/v1/devices/register',
        { deviceId: d.id, publicKey: other.publicKeyHex, proof: other.password() },
        null,
      ),
      409,
      'FLOTILLA_ERR_SERVER_DEVICE_KEY_MISMATCH',
    );
    const acc = await inject('POST', `/api/v1/devices/${d.id}/accept`, {}, operator);
    expect(acc.json().status).toBe('accepted');
    const placed = await inject(
      'PUT',
      `/api/v1/devices/${d.id}/placement`,
      { tags: ['lab'], group: 'g1', channel: 'dev' },
      operator,
    );
    expect(placed.json()).toMatchObject({ tags: ['lab'], group: 'g1', channel: 'dev' });
    const list = await inject('GET', '/api/v1/devices?tag=lab&status=accepted', undefined, viewer);
    expect(list.json().items.map((x: { id: string }) => x.id)).toEqual([d.id]);
    const gone = await inject('POST', `/api/v1/devices/${d.id}/decommission`, {}, operator);
    expect(gone.json().status).toBe('decommissioned');
    expectError(
      await inject('POST', `/api/v1/devices/${d.id}/accept`, {}, operator),
      409,
      'FLOTILLA_ERR_SERVER_DEVICE_STATE',
    );
  });

  it('builds and signs a release from an uploaded image, keeps versions immutable, promotes in order', async () => {
    const img = rawImage(3 * 4096 + 100);
    const url =
      '/api/v1/releases/build?name=TEST-ONLY-os&version=1.0.0&securityVersion=1&compatible=TEST-ONLY-board&format=raw&partitionSize=262144&input=image';
    const res = await server.app.inject({
      method: 'POST',
      url,
      headers: { ...auth(operator), 'content-type': 'application/octet-stream' },
      payload: img,
    });
    expect(res.statusCode, res.body).toBe(201);
    const rel = res.json();
    expect(rel.channels).toEqual(['dev']);
    const again = await server.app.inject({
      method: 'POST',
      url,
      headers: { ...auth(operator), 'content-type': 'application/octet-stream' },
      payload: img,
    });
    expectError(again, 409, 'FLOTILLA_ERR_SERVER_RELEASE_EXISTS');
    expectError(
      await inject('POST', '/api/v1/releases/1.0.0/promote', { channel: 'prod' }, operator),
      409,
      'FLOTILLA_ERR_SERVER_CHANNEL_ORDER',
    );
    expect(
      (await inject('POST', '/api/v1/releases/1.0.0/promote', { channel: 'staging' }, operator)).statusCode,
    ).toBe(200);
    const prod = await inject('POST', '/api/v1/releases/1.0.0/promote', { channel: 'prod' }, operator);
    expect(prod.json().channels.sort()).toEqual(['dev', 'prod', 'staging']);
    const manifest = await inject('GET', '/api/v1/releases/1.0.0/manifest', undefined, viewer);
    expect(manifest.json().signatures[0].keyid).toBe(server.ctx.keys.release!.keyId);
  });

  it('refuses to build a release from an empty upload (no signed all-zero image)', async () => {
    const res = await server.app.inject({
      method: 'POST',
      url: '/api/v1/releases/build?name=TEST-ONLY-os&version=9.8.7&securityVersion=1&compatible=TEST-ONLY-board&format=raw&partitionSize=262144&input=image',
      headers: { ...auth(operator), 'content-type': 'application/octet-stream' },
      payload: Buffer.alloc(0),
    });
    expectError(res, 400, 'FLOTILLA_ERR_SERVER_UPLOAD_INVALID');
    expect(await server.ctx.store.releases.get('9.8.7')).toBeUndefined();
  });

  it('serves an artifact with ETag, Range, If-None-Match and 416', async () => {
    const rel = (await server.ctx.store.releases.get('1.0.0'))!;
    const url = `/api/v1/artifacts/${rel.imageSha256}?${server.ctx.urlSigner.sign(
      `/api/v1/artifacts/${rel.imageSha256}`,
      rel.imageSha256,
      'dev-1',
      Date.now() + 60_000,
    )}`;
    const full = await server.app.inject({ method: 'GET', url });
    expect(full.statusCode).toBe(200);
    expect(full.headers.etag).toBe(`"${rel.imageSha256}"`);
    expect(full.rawPayload.length).toBe(rel.imageSize);
    const part = await server.app.inject({ method: 'GET', url, headers: { range: 'bytes=4096-4105' } });
    expect(part.statusCode).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 4096-4105/${rel.imageSize}`);
    expect(part.rawPayload.equals(full.rawPayload.subarray(4096, 4106))).toBe(true);
    const tail = await server.app.inject({ method: 'GET', url, headers: { range: 'bytes=-10' } });
    expect(tail.rawPayload.equals(full.rawPayload.subarray(-10))).toBe(true);
    const resume = await server.app.inject({ method: 'GET', url, headers: { range: 'bytes=12000-' } });
    expect(resume.rawPayload.equals(full.rawPayload.subarray(12000))).toBe(true);
    expect(
      (await server.app.inject({ method: 'GET', url, headers: { 'if-none-match': `"${rel.imageSha256}"` } }))
        .statusCode,
    ).toBe(304);
    const stale = await server.app.inject({
      method: 'GET',
      url,
      headers: { range: 'bytes=0-1', 'if-range': '"other"' },
    });
    expect(stale.statusCode).toBe(200);
    const bad = await server.app.inject({
      method: 'GET',
      url,
      headers: { range: `bytes=${rel.imageSize}-` },
    });
    expectError(bad, 416, 'FLOTILLA_ERR_SERVER_RANGE');
    const head = await server.app.inject({ method: 'HEAD', url });
    expect(head.headers['content-length']).toBe(String(rel.imageSize));
  });

  it('refuses anonymous downloads of images and the release manifest (confidential firmware)', async () => {
    const rel = (await server.ctx.store.releases.get('1.0.0'))!;
    for (const method of ['GET', 'HEAD'] as const) {
      const res = await server.app.inject({ method, url: `/api/v1/artifacts/${rel.imageSha256}` });
      expect(res.statusCode).toBe(401);
      expect(res.rawPayload.length).toBeLessThan(1000); // no image bytes
    }
    expectError(
      await inject('GET', '/api/v1/releases/1.0.0/manifest', undefined, null),
      401,
      'FLOTILLA_ERR_SERVER_UNAUTHENTICATED',
    );
  });

  it('lets an operator token download an artifact, not a viewer token', async () => {
    const rel = (await server.ctx.store.releases.get('1.0.0'))!;
    const url = `/api/v1/artifacts/${rel.imageSha256}`;
    const ok = await server.app.inject({ method: 'GET', url, headers: auth(operator) });
    expect(ok.statusCode).toBe(200);
    expect(ok.rawPayload.length).toBe(rel.imageSize);
    expect(ok.headers['cache-control']).toMatch(/^private/);
    expectError(
      await server.app.inject({ method: 'GET', url, headers: auth(viewer) }),
      403,
      'FLOTILLA_ERR_SERVER_FORBIDDEN',
    );
  });

  it('refuses a URL signed for one artifact when it asks for another (signature bound to the sha256)', async () => {
    const rel = (await server.ctx.store.releases.get('1.0.0'))!;
    const other = 'f'.repeat(64);
    const query = server.ctx.urlSigner.sign(
      `/api/v1/artifacts/${other}`,
      other,
      'dev-1',
      Date.now() + 60_000,
    );
    expectError(
      await server.app.inject({ method: 'GET', url: `/api/v1/artifacts/${rel.imageSha256}?${query}` }),
      403,
      'FLOTILLA_ERR_SERVER_URL_SIGNATURE',
    );
    // A valid signature with another audience or a later expiry pasted in is refused too.
    const good = server.ctx.urlSigner.sign(
      `/api/v1/artifacts/${rel.imageSha256}`,
      rel.imageSha256,
      'dev-1',
      Date.now() + 60_000,
    );
    for (const forged of [good.replace('aud=dev-1', 'aud=dev-2'), good.replace(/exp=\d+/, 'exp=99999999999')])
      expectError(
        await server.app.inject({ method: 'GET', url: `/api/v1/artifacts/${rel.imageSha256}?${forged}` }),
        403,
        'FLOTILLA_ERR_SERVER_URL_SIGNATURE',
      );
  });

  it('answers an expired signed URL with FLOTILLA_ERR_SERVER_URL_EXPIRED (403) the agent recognises', async () => {
    const rel = (await server.ctx.store.releases.get('1.0.0'))!;
    const path = `/api/v1/artifacts/${rel.imageSha256}`;
    const query = server.ctx.urlSigner.sign(path, rel.imageSha256, 'dev-1', Date.now() - 1000);
    const res = await server.app.inject({
      method: 'GET',
      url: `${path}?${query}`,
      headers: { range: 'bytes=100-' },
    });
    expectError(res, 403, 'FLOTILLA_ERR_SERVER_URL_EXPIRED');
  });

  it('keeps the URL-signing secret in the data dir, readable by the server only (0600)', async () => {
    const { statSync } = await import('node:fs');
    const { join } = await import('node:path');
    const dir = (server.ctx.store.sql as SqliteDriver).file.replace(/server\.db$/, '');
    expect(statSync(join(dir, 'url-signing.key')).mode & 0o777).toBe(0o600);
  });

  it('records every change in the audit log', async () => {
    const actions = (await server.ctx.store.audit.list(Number.MAX_SAFE_INTEGER, 1000)).map((e) => e.action);
    for (const a of [
      'token.create',
      'token.revoke',
      'device.accept',
      'device.placement',
      'release.create',
      'release.promote',
    ])
      expect(actions).toContain(a);
  });

  it('serves OpenAPI, health and Prometheus metrics', async () => {
    const doc = await server.app.inject({ method: 'GET', url: '/docs/json' });
    expect(Object.keys(doc.json().paths)).toContain('/api/v1/rollouts/{id}/pause');
    expect((await server.app.inject({ method: 'GET', url: '/healthz' })).json().ok).toBe(true);
    const m = await server.app.inject({ method: 'GET', url: '/metrics' });
    expect(m.body).toContain('flotilla_reports_stored_total');
    expect((await inject('GET', '/api/v1/root', undefined, null)).json().signed._type).toBe('root');
  });
});
