import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunningServer, startServer } from '@flotilla/server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auth } from '../../server/test/helpers.js';
import { CRITICAL, osvRecord, rootfsTar } from '../../server/test/vulns/fixtures.js';
import { startFlotilla } from './run-cli.js';

// `flotilla vulns`, `flotilla policy` and `flotilla release vulns` against the real server.

const TOKEN = 'TEST-ONLY-admin-token-0123456789abcdef0123456789abcdef';
const dir = mkdtempSync(join(tmpdir(), 'flotilla-cli-vulns-'));
let server: RunningServer;

beforeAll(async () => {
  server = await startServer({
    dataDir: join(dir, 'data'),
    adminToken: TOKEN,
    port: 0,
    mqttPort: null,
    logLevel: 'silent',
  });
  const res = await fetch(
    `${server.addresses.api}/api/v1/releases/build?name=TEST-ONLY-os&version=2.0.0&securityVersion=1&compatible=TEST-ONLY-board&format=ext4&partitionSize=4194304&input=tar`,
    {
      method: 'POST',
      headers: { ...auth(TOKEN), 'content-type': 'application/x-tar' },
      body: new Uint8Array(
        rootfsTar(join(dir, 'tar'), [{ name: 'libssl3', version: '3.0.11-1~deb12u2', source: 'openssl' }]),
      ),
    },
  );
  expect(res.status, await res.text()).toBe(201);
});

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

const flotilla = (args: string[]) =>
  startFlotilla(args, { FLOTILLA_SERVER: server.addresses.api, FLOTILLA_TOKEN: TOKEN }).done;

describe('vulnerability commands', () => {
  it('imports a directory of OSV files, reports status, lists a release’s findings as documented JSON', async () => {
    const osv = join(dir, 'osv');
    mkdirSync(join(osv, 'sub'), { recursive: true });
    writeFileSync(
      join(osv, 'DSA-5001.json'),
      JSON.stringify(
        osvRecord({
          id: 'DSA-5001',
          aliases: ['CVE-2026-0001'],
          name: 'openssl',
          fixed: '3.0.13-1~deb12u1',
          cvss: CRITICAL,
        }),
      ),
    );
    writeFileSync(
      join(osv, 'sub', 'DSA-5002.json'),
      JSON.stringify(osvRecord({ id: 'DSA-5002', name: 'zlib', fixed: '1:1.3' })),
    );
    const imported = await flotilla(['vulns', 'import', osv, '--json']);
    expect(imported.code, imported.stderr + imported.stdout).toBe(0);
    expect(imported.json().import).toMatchObject({ files: 2, added: 2 });

    const status = await flotilla(['vulns', 'status']);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/2 records/);

    const vulns = await flotilla(['release', 'vulns', '2.0.0', '--json']);
    expect(vulns.code, vulns.stderr).toBe(0);
    expect(vulns.json()).toEqual({
      version: '2.0.0',
      vulnerabilities: [
        {
          id: 'DSA-5001',
          aliases: ['CVE-2026-0001'],
          package: 'libssl3',
          installed: '3.0.11-1~deb12u2',
          fixed: '3.0.13-1~deb12u1',
          severity: 'critical',
        },
      ],
    });
  });

  it('lists the loaded records with filters, shows one as stored (records of the import above)', async () => {
    const all = await flotilla(['vulns', 'list', '--json']);
    expect(all.code, all.stderr + all.stdout).toBe(0);
    expect(all.json()).toEqual({
      ok: true,
      total: 2,
      records: [
        {
          id: 'DSA-5001',
          severity: 'critical',
          score: 9.8,
          modified: '2026-01-01T00:00:00.000Z',
          withdrawn: false,
          packages: [{ ecosystem: 'Debian:12', name: 'openssl' }],
          summary: 'TEST-ONLY DSA-5001',
        },
        expect.objectContaining({ id: 'DSA-5002', packages: [{ ecosystem: 'Debian:12', name: 'zlib' }] }),
      ],
    });
    const byPackage = await flotilla(['vulns', 'list', '--package', 'zlib', '--json']);
    expect(byPackage.json().records.map((r: { id: string }) => r.id)).toEqual(['DSA-5002']);
    const bySeverity = await flotilla(['vulns', 'list', '--severity', 'critical', '--json']);
    expect(bySeverity.json().records.map((r: { id: string }) => r.id)).toEqual(['DSA-5001']);
    const page = await flotilla(['vulns', 'list', '--limit', '1', '--offset', '1', '--json']);
    expect(page.json()).toMatchObject({ total: 2, records: [{ id: 'DSA-5002' }] });
    const human = await flotilla(['vulns', 'list']);
    expect(human.stdout).toMatch(/^ID +SEVERITY +ECOSYSTEM +PACKAGE +MODIFIED$/m);
    expect(human.stdout).toMatch(/^DSA-5001 +critical +Debian:12 +openssl /m);

    const shown = await flotilla(['vulns', 'show', 'DSA-5001', '--json']);
    expect(shown.code, shown.stderr + shown.stdout).toBe(0);
    expect(shown.json().record).toMatchObject({
      id: 'DSA-5001',
      modified: '2026-01-01T00:00:00.000Z',
      withdrawn: false,
      aliases: ['CVE-2026-0001'],
      severity: 'critical',
      score: 9.8,
      affected: [
        {
          ecosystem: 'Debian:12',
          name: 'openssl',
          ranges: [[{ introduced: '0' }, { fixed: '3.0.13-1~deb12u1' }]],
          versions: [],
        },
      ],
    });
    expect((await flotilla(['vulns', 'show', 'DSA-5001'])).stdout).toContain('affects Debian:12 openssl');
  });

  it.each([
    ['vulns show of an id not loaded', ['vulns', 'show', 'DSA-9999'], 'FLOTILLA_ERR_SERVER_NOT_FOUND'],
    [
      'vulns list --severity of no level',
      ['vulns', 'list', '--severity', 'severe'],
      'FLOTILLA_ERR_CLI_USAGE',
    ],
    ['vulns list --limit 0', ['vulns', 'list', '--limit', '0'], 'FLOTILLA_ERR_CLI_USAGE'],
  ])('%s is a coded error', async (_name, args, code) => {
    const r = await flotilla([...args, '--json']);
    expect(r.code).toBe(1);
    expect(r.json().error.code).toBe(code);
  });

  it('an invalid OSV file is refused with the file and field named', async () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(
      bad,
      JSON.stringify({
        id: 'BAD-1',
        modified: '2026-01-01T00:00:00Z',
        affected: [{ package: { ecosystem: 'npm' } }],
      }),
    );
    const r = await flotilla(['vulns', 'import', bad, '--json']);
    expect(r.code).toBe(1);
    expect(r.json().error.code).toBe('FLOTILLA_ERR_VULNS_IMPORT_INVALID');
    expect(r.json().error.message).toMatch(/bad\.json: field \/affected\/0\/package\/name/);
  });

  it('an invalid policy file is refused naming the file and the field (FLOTILLA_ERR_POLICY_INVALID), nothing stored', async () => {
    const file = join(dir, 'bad-policy.json');
    writeFileSync(file, JSON.stringify({ schemaVersion: 1, channels: { prod: { maxSeverity: 'severe' } } }));
    const json = await flotilla(['policy', 'set', file, '--json']);
    expect(json.code).toBe(1);
    expect(json.json().error.code).toBe('FLOTILLA_ERR_POLICY_INVALID');
    const prefix = `${file}: policy document is invalid: field /channels/prod/maxSeverity: `;
    expect(json.json().error.message.slice(0, prefix.length)).toBe(prefix);
    expect(json.json().error.hint).toMatch(/docs\/vulnerabilities\.md/);
    const text = await flotilla(['policy', 'set', file]);
    expect(text.code).toBe(1);
    expect(text.stderr).toContain(`${file}: policy document is invalid: field /channels/prod/maxSeverity`);
    expect(text.stderr).toContain('FLOTILLA_ERR_POLICY_INVALID');
    const got = await flotilla(['policy', 'get', '--json']);
    expect(got.json().policy.version).toBe(0);
  });

  it('sets and gets the policy; promotion to prod is refused with FLOTILLA_ERR_POLICY_VIOLATION, admin can override', async () => {
    const file = join(dir, 'policy.json');
    writeFileSync(file, JSON.stringify({ schemaVersion: 1, channels: { prod: { maxSeverity: 'medium' } } }));
    const set = await flotilla(['policy', 'set', file, '--json']);
    expect(set.code, set.stderr + set.stdout).toBe(0);
    expect(set.json().policy.version).toBe(1);
    const got = await flotilla(['policy', 'get', '--json']);
    expect(got.json().policy.document.channels.prod.maxSeverity).toBe('medium');

    expect((await flotilla(['release', 'promote', '2.0.0', '--to', 'staging', '--json'])).code).toBe(0);
    const refused = await flotilla(['release', 'promote', '2.0.0', '--to', 'prod', '--json']);
    expect(refused.code).toBe(1);
    expect(refused.json().error.code).toBe('FLOTILLA_ERR_POLICY_VIOLATION');
    expect(refused.json().error.message).toMatch(/DSA-5001 in libssl3/);
    const forced = await flotilla([
      'release',
      'promote',
      '2.0.0',
      '--to',
      'prod',
      '--override-reason',
      'TEST-ONLY hotfix window',
      '--json',
    ]);
    expect(forced.code, forced.stderr + forced.stdout).toBe(0);
  });
});
