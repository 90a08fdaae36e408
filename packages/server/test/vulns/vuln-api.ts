import { expect } from 'vitest';
import { createServer, type FlotillaServer, type ServerOptions } from '../../src/index.js';
import { auth, silent, TEST_ADMIN, tempDir } from '../helpers.js';
import { type DpkgEntry, osvZip, rootfsTar } from './fixtures.js';

/** A server without listeners (app.inject only) on the test's clock. */
export function vulnServer(clock: () => number, opts: ServerOptions = {}): Promise<FlotillaServer> {
  return createServer({ dataDir: tempDir(), logger: silent, adminToken: TEST_ADMIN, clock, ...opts });
}

/**
 * The HTTP calls the vulnerability tests make, all through app.inject (no store access): build a
 * release from a TEST-ONLY rootfs, import OSV records, set the policy, promote.
 */
export function vulnApi(server: FlotillaServer) {
  const call = (method: string, url: string, payload?: unknown, token = TEST_ADMIN) =>
    server.app.inject({
      method: method as 'GET',
      url,
      headers: auth(token),
      ...(payload !== undefined ? { payload: payload as object } : {}),
    });

  /** Builds a release whose dpkg database holds `pkgs`; `query` adds build parameters (sourceRevision). */
  const build = async (version: string, pkgs: DpkgEntry[], token = TEST_ADMIN, query = '') => {
    const res = await server.app.inject({
      method: 'POST',
      url: `/api/v1/releases/build?name=TEST-ONLY-os&version=${version}&securityVersion=1&compatible=TEST-ONLY-board&format=ext4&partitionSize=4194304&input=tar${query}`,
      headers: { ...auth(token), 'content-type': 'application/x-tar' },
      payload: rootfsTar(tempDir(), pkgs),
    });
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as { version: string; image: { sha256: string } };
  };

  const promote = (
    version: string,
    channel: string,
    extra: Record<string, unknown> = {},
    token = TEST_ADMIN,
  ) => call('POST', `/api/v1/releases/${version}/promote`, { channel, ...extra }, token);

  const importRecords = (records: Record<string, unknown>) =>
    server.app.inject({
      method: 'POST',
      url: '/api/v1/vulnerabilities/import',
      headers: { ...auth(), 'content-type': 'application/zip' },
      payload: osvZip(records),
    });

  const setPolicy = async (document: unknown, token = TEST_ADMIN) => {
    const res = await call('PUT', '/api/v1/policy', document, token);
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as { version: number };
  };

  const token = async (name: string, role: string) => {
    const res = await call('POST', '/api/v1/tokens', { name, role });
    expect(res.statusCode, res.body).toBe(201);
    return res.json().token as string;
  };

  return { call, build, promote, importRecords, setPolicy, token };
}
