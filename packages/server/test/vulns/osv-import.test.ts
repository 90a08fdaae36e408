import { deflateSync } from 'node:zlib';
import { zipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type FlotillaServer } from '../../src/index.js';
import { auth, cleanupDirs, silent, TEST_ADMIN, tempDir } from '../helpers.js';
import { CRITICAL, MEDIUM, osvRecord, osvZip } from './fixtures.js';

let server: FlotillaServer;

beforeAll(async () => {
  server = await createServer({
    dataDir: tempDir(),
    logger: silent,
    adminToken: TEST_ADMIN,
    limits: { maxOsvRecordBytes: 64 * 1024, maxOsvInflatedBytes: 1024 * 1024 },
  });
});
afterAll(async () => {
  await server.close();
  cleanupDirs();
});

const importZip = (zip: Buffer, query = '') =>
  server.app.inject({
    method: 'POST',
    url: `/api/v1/vulnerabilities/import${query}`,
    headers: { ...auth(), 'content-type': 'application/zip' },
    payload: zip,
  });
const status = async () =>
  (await server.app.inject({ method: 'GET', url: '/api/v1/vulnerabilities/status', headers: auth() })).json();
const storedSeverity = async (id: string) =>
  (
    await server.ctx.store.sql.get<{ severity: string }>('SELECT severity FROM vuln_records WHERE id = ?', [
      id,
    ])
  )?.severity;

/** Rewrites every declared uncompressed size (local headers and central directory) to `size`. */
function lyingSizes(zip: Buffer, size: number): Buffer {
  for (let i = 0; i + 4 <= zip.length; i++) {
    const sig = zip.readUInt32LE(i);
    if (sig === 0x04034b50) zip.writeUInt32LE(size, i + 22);
    else if (sig === 0x02014b50) zip.writeUInt32LE(size, i + 24);
  }
  return zip;
}

function expectRefused(
  res: { statusCode: number; json: () => unknown },
  status: number,
  code: string,
  msg: RegExp,
) {
  expect(res.statusCode, JSON.stringify(res.json())).toBe(status);
  const e = (res.json() as { error: { code: string; message: string } }).error;
  expect(e.code).toBe(code);
  expect(e.message).toMatch(msg);
}

describe('OSV import', () => {
  it('imports a zip of Debian and npm records and reports what is loaded', async () => {
    const res = await importZip(
      osvZip({
        'DSA-1.json': osvRecord({ id: 'DSA-1', name: 'openssl', fixed: '3.0.13-1~deb12u1', cvss: CRITICAL }),
        'GHSA-1.json': osvRecord({
          id: 'GHSA-1',
          ecosystem: 'npm',
          rangeType: 'SEMVER',
          name: 'ws',
          fixed: '8.17.1',
          cvss: MEDIUM,
        }),
        'README.txt': 'ignored: not a .json entry',
      }),
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({
      files: 2,
      added: 2,
      replaced: 0,
      unchanged: 0,
      ecosystems: ['Debian:12', 'npm'],
    });
    expect(await status()).toMatchObject({ records: 2, bySeverity: { critical: 1, medium: 1 } });
  });

  it('replaces a record by a newer `modified` and never by an older one', async () => {
    const newer = await importZip(
      osvZip({
        'DSA-1.json': osvRecord({
          id: 'DSA-1',
          name: 'openssl',
          fixed: '3.0.13-1~deb12u1',
          cvss: MEDIUM,
          modified: '2026-02-01T00:00:00Z',
        }),
      }),
    );
    expect(newer.json()).toMatchObject({ added: 0, replaced: 1 });
    expect(await storedSeverity('DSA-1')).toBe('medium');
    const older = await importZip(
      osvZip({
        'DSA-1.json': osvRecord({
          id: 'DSA-1',
          name: 'openssl',
          cvss: CRITICAL,
          modified: '2025-01-01T00:00:00Z',
        }),
      }),
    );
    expect(older.json()).toMatchObject({ replaced: 0, unchanged: 1 });
    expect(await storedSeverity('DSA-1')).toBe('medium');
  });

  it('refuses the whole import when one file is bad, naming the file and field (nothing half-imported)', async () => {
    const before = (await status()).records;
    const bad = osvRecord({ id: 'DSA-3', name: 'bash' }) as { affected: { ranges: unknown[] }[] };
    bad.affected[0]!.ranges = [{ type: 'ECOSYSTEM', events: [{ fixed: 7 }] }];
    expectRefused(
      await importZip(
        osvZip({ 'a-good.json': osvRecord({ id: 'DSA-2', name: 'zlib', fixed: '1' }), 'z-bad.json': bad }),
      ),
      400,
      'FLOTILLA_ERR_VULNS_IMPORT_INVALID',
      /z-bad\.json: field \/affected\/0\/ranges\/0\/events\/0/,
    );
    expectRefused(
      await importZip(osvZip({ 'no-modified.json': { id: 'X-1', affected: [] } })),
      400,
      'FLOTILLA_ERR_VULNS_IMPORT_INVALID',
      /no-modified\.json: field \/modified/,
    );
    expectRefused(
      await importZip(osvZip({ 'broken.json': '{"id": "X-2",' })),
      400,
      'FLOTILLA_ERR_VULNS_IMPORT_INVALID',
      /broken\.json: not JSON/,
    );
    expectRefused(
      await importZip(osvZip({ 'bad-time.json': { id: 'X-3', modified: 'yesterday-ish' } })),
      400,
      'FLOTILLA_ERR_VULNS_IMPORT_INVALID',
      /bad-time\.json: field \/modified/,
    );
    expect((await status()).records).toBe(before);
    expect(await storedSeverity('DSA-2')).toBeUndefined();
  });

  it('refuses an unknown ecosystem by default, and records it as skipped with skipUnknownEcosystems', async () => {
    const zip = osvZip({
      'PYSEC-1.json': osvRecord({ id: 'PYSEC-1', ecosystem: 'PyPI', name: 'requests', fixed: '2.0' }),
    });
    expectRefused(
      await importZip(zip),
      422,
      'FLOTILLA_ERR_VULNS_UNKNOWN_ECOSYSTEM',
      /PYSEC-1\.json: field \/affected\/0\/package\/ecosystem: 'PyPI'/,
    );
    const skipped = await importZip(zip, '?skipUnknownEcosystems=true');
    expect(skipped.json()).toMatchObject({ added: 1, skipped: 1, ecosystems: [] });
  });

  it('stops a zip bomb on the bytes inflated, not on what the header claims (nothing imported)', async () => {
    const before = (await status()).records;
    // 8 MiB of spaces inside a valid JSON record compresses to a few KiB.
    const bomb = Buffer.from(
      `{"id":"BOMB-1","modified":"2026-01-01T00:00:00Z","summary":"${' '.repeat(8 * 1024 * 1024)}"}`,
    );
    expectRefused(
      await importZip(lyingSizes(Buffer.from(zipSync({ 'bomb.json': bomb }, { level: 9 })), 100)),
      413,
      'FLOTILLA_ERR_VULNS_IMPORT_TOO_LARGE',
      /bomb\.json: inflates past 65536 bytes/,
    );
    // Many small entries past the total inflated limit.
    const many: Record<string, Uint8Array> = {};
    for (let i = 0; i < 40; i++)
      many[`r${i}.json`] = Buffer.from(
        JSON.stringify({ ...osvRecord({ id: `MANY-${i}`, name: 'x' }), details: 'y'.repeat(40_000) }),
      );
    expectRefused(
      await importZip(Buffer.from(zipSync(many))),
      413,
      'FLOTILLA_ERR_VULNS_IMPORT_TOO_LARGE',
      /inflates past 1048576 bytes/,
    );
    expect((await status()).records).toBe(before);
    expect(deflateSync(bomb).length).toBeLessThan(64 * 1024); // the bomb really is small on the wire
  });

  it('refuses something that is not a zip', async () => {
    expectRefused(
      await importZip(Buffer.from('TEST-ONLY this is not a zip archive at all')),
      400,
      'FLOTILLA_ERR_VULNS_IMPORT_INVALID',
      /no \.json records|not a readable zip/,
    );
  });

  it('lets only operators import', async () => {
    const tok = (
      await server.app.inject({
        method: 'POST',
        url: '/api/v1/tokens',
        headers: auth(),
        payload: { name: 'TEST-ONLY viewer', role: 'viewer' },
      })
    ).json().token as string;
    const res = await server.app.inject({
      method: 'POST',
      url: '/api/v1/vulnerabilities/import',
      headers: { ...auth(tok), 'content-type': 'application/zip' },
      payload: osvZip({ 'a.json': osvRecord({ id: 'A-1', name: 'x' }) }),
    });
    expect(res.statusCode).toBe(403);
  });
});
