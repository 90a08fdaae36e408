import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type FlotillaServer } from '../src/index.js';
import { auth, cleanupDirs, silent, TEST_ADMIN, tempDir } from './helpers.js';

let server: FlotillaServer;

beforeAll(async () => {
  server = await createServer({ dataDir: tempDir(), devKeys: true, logger: silent, adminToken: TEST_ADMIN });
});
afterAll(async () => {
  await server.close();
  cleanupDirs();
});

interface Operation {
  responses?: Record<string, { content?: Record<string, { schema?: unknown }> }>;
}

describe('the OpenAPI document', () => {
  it('documents a success and an error response for every route (no undocumented answers)', async () => {
    const doc = (await server.app.inject({ method: 'GET', url: '/docs/json' })).json() as {
      paths: Record<string, Record<string, Operation>>;
    };
    const undocumented: string[] = [];
    let operations = 0;
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(methods)) {
        operations++;
        const codes = Object.keys(operation.responses ?? {});
        const success = codes.some((code) => /^[23]\d\d$/.test(code));
        if (!success || !codes.includes('4XX')) undocumented.push(`${method.toUpperCase()} ${path}`);
      }
    }
    expect(operations).toBeGreaterThan(40);
    expect(undocumented).toEqual([]);
  });
});

describe('response serialisation', () => {
  it('serves the trust root byte for byte as stored (a schema must not reorder signed fields)', async () => {
    const root = await server.app.inject({ method: 'GET', url: '/api/v1/root' });
    expect(root.body).toBe(JSON.stringify(server.ctx.keys.root));
    const first = await server.app.inject({ method: 'GET', url: '/api/v1/trust/root/1.json' });
    expect(first.statusCode).toBe(200);
    expect(Object.keys(first.json())).toEqual(Object.keys(server.ctx.keys.root));
  });

  it('keeps every field of an open shape (the serialiser drops undeclared properties)', async () => {
    const res = await server.app.inject({ method: 'GET', url: '/api/v1/policy', headers: auth() });
    expect(res.statusCode).toBe(200);
    expect(res.body).toBe(JSON.stringify(await server.ctx.policy.current()));
    const status = await server.app.inject({
      method: 'GET',
      url: '/api/v1/vulnerabilities/status',
      headers: auth(),
    });
    expect(status.body).toBe(JSON.stringify(await server.ctx.vulns.status()));
  });

  it('serves the typed vulnerability answers whole (status, fleet exposure)', async () => {
    for (const [url, expected] of [
      ['/api/v1/vulnerabilities/status', () => server.ctx.vulns.status()],
      [
        '/api/v1/vulnerabilities/fleet',
        async () => ({
          ...(await server.ctx.vulns.fleetExposure()),
          prodFailures: await server.ctx.policy.prodFailures(),
        }),
      ],
    ] as const) {
      const res = await server.app.inject({ method: 'GET', url, headers: auth() });
      expect(res.statusCode, url).toBe(200);
      expect(res.json(), url).toEqual(JSON.parse(JSON.stringify(await expected())));
    }
  });

  it('answers errors in the one coded shape through the error schema', async () => {
    const res = await server.app.inject({
      method: 'GET',
      url: '/api/v1/rollouts/ro_0000000000000000',
      headers: auth(),
    });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({
      error: { code: 'FLOTILLA_ERR_SERVER_NOT_FOUND', message: expect.any(String), hint: expect.any(String) },
    });
  });
});
