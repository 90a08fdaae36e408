import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DsseEnvelope, verifyStatement } from '../../src/attestations/in-toto.js';
import type { FlotillaServer } from '../../src/index.js';
import { cleanupDirs, TEST_ADMIN } from '../helpers.js';
import { CRITICAL, type DpkgEntry, HIGH, osvRecord } from './fixtures.js';
import { vulnApi, vulnServer } from './vuln-api.js';

const DAY = 24 * 60 * 60 * 1000;
let now = Date.parse('2026-03-01T00:00:00Z');
let server: FlotillaServer;
let operator: string;

beforeAll(async () => {
  server = await vulnServer(() => now);
  operator = await vulnApi(server).token('TEST-ONLY operator', 'operator');
});
afterAll(async () => {
  await server.close();
  cleanupDirs();
});

const api = () => vulnApi(server);
const call = (method: string, url: string, payload?: unknown, token = TEST_ADMIN) =>
  api().call(method, url, payload, token);
const build = async (version: string, pkgs: DpkgEntry[]) => {
  await api().build(version, pkgs, operator);
};
const promote = (version: string, channel: string, extra: Record<string, unknown> = {}, token = operator) =>
  api().promote(version, channel, extra, token);
const importRecords = (records: Record<string, unknown>) => api().importRecords(records);

const VULNERABLE: DpkgEntry[] = [
  { name: 'libssl3', version: '3.0.11-1~deb12u2', source: 'openssl' },
  { name: 'bash', version: '5.2.15-2+b2', source: 'bash (5.2.15-2)' },
];
const FIXED: DpkgEntry[] = [
  { name: 'libssl3', version: '3.0.13-1~deb12u1', source: 'openssl' },
  { name: 'bash', version: '5.2.15-2+b2', source: 'bash (5.2.15-2)' },
];

const waiverPolicy = (expires: string) => ({
  schemaVersion: 1,
  channels: { prod: { maxSeverity: 'high', noHighWithFix: true } },
  waivers: [
    {
      id: 'CVE-2026-0001',
      package: 'openssl',
      reason: 'TEST-ONLY not reachable on devices',
      approvedBy: 'TEST-ONLY security',
      expires,
    },
  ],
});

describe('vulnerability gates', () => {
  beforeAll(async () => {
    await build('1.0.0', VULNERABLE);
    await build('1.0.1', FIXED);
    await build('1.0.2', VULNERABLE);
    const res = await importRecords({
      'DSA-5001.json': osvRecord({
        id: 'DSA-5001',
        aliases: ['CVE-2026-0001'],
        name: 'openssl',
        fixed: '3.0.13-1~deb12u1',
        cvss: CRITICAL,
      }),
      'DSA-5002.json': osvRecord({ id: 'DSA-5002', name: 'bash', fixed: '5.2.15-3', cvss: HIGH }),
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().rescanned).toBe(3);
  });

  it('lists a release’s vulnerabilities by source package, with installed and fixed versions', async () => {
    const res = await call('GET', '/api/v1/releases/1.0.0/vulnerabilities', undefined, operator);
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json();
    expect(body.version).toBe('1.0.0');
    expect(
      body.vulnerabilities.map((v: Record<string, unknown>) => [
        v.id,
        v.package,
        v.installed,
        v.fixed,
        v.severity,
      ]),
    ).toEqual([
      ['DSA-5002', 'bash', '5.2.15-2+b2', '5.2.15-3', 'high'],
      ['DSA-5001', 'libssl3', '3.0.11-1~deb12u2', '3.0.13-1~deb12u1', 'critical'],
    ]);
    expect(body.vulnerabilities[1].aliases).toEqual(['CVE-2026-0001']);
    expect(body.channels.prod.pass).toBe(false);
  });

  it('does not flag the fixed package version', async () => {
    const body = (await call('GET', '/api/v1/releases/1.0.1/vulnerabilities')).json();
    expect(body.vulnerabilities.map((v: { id: string }) => v.id)).toEqual(['DSA-5002']);
  });

  it('records findings in dev and staging but refuses prod (default policy), naming record and package', async () => {
    expect((await promote('1.0.0', 'staging')).statusCode).toBe(200);
    const res = await promote('1.0.0', 'prod');
    expect(res.statusCode).toBe(409);
    const e = res.json().error;
    expect(e.code).toBe('FLOTILLA_ERR_POLICY_VIOLATION');
    expect(e.message).toMatch(/DSA-5001 in libssl3 3\.0\.11-1~deb12u2: critical exceeds prod's maximum high/);
    expect(e.message).not.toMatch(/DSA-5002/); // high is allowed by the default policy
  });

  it('refuses an invalid policy document, naming the field', async () => {
    const res = await call('PUT', '/api/v1/policy', {
      schemaVersion: 1,
      channels: { prod: { maxSeverity: 'severe' } },
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toMatchObject({ code: 'FLOTILLA_ERR_POLICY_INVALID' });
    expect(res.json().error.message).toMatch(/\/channels\/prod\/maxSeverity/);
    expect(
      (await call('PUT', '/api/v1/policy', waiverPolicy('2026-03-02T00:00:00Z'), operator)).statusCode,
    ).toBe(403);
  });

  it('names every violation: a high with a fix available too', async () => {
    expect(
      (
        await call('PUT', '/api/v1/policy', {
          schemaVersion: 1,
          channels: { prod: { maxSeverity: 'high', noHighWithFix: true } },
        })
      ).statusCode,
    ).toBe(201);
    const e = (await promote('1.0.0', 'prod')).json().error;
    expect(e.message).toMatch(/DSA-5001 in libssl3/);
    expect(e.message).toMatch(/DSA-5002 in bash 5\.2\.15-2\+b2: high with a fix available \(5\.2\.15-3\)/);
  });

  it('promotes with a valid waiver, and refuses again once the waiver expired', async () => {
    const set = await call('PUT', '/api/v1/policy', {
      ...waiverPolicy('2026-03-02T00:00:00Z'),
      channels: { prod: { maxSeverity: 'high' } },
    });
    expect(set.statusCode, set.body).toBe(201);
    expect(set.json().version).toBe(2);
    const ok = await promote('1.0.0', 'prod');
    expect(ok.statusCode, ok.body).toBe(200);
    const promotions = (await call('GET', '/api/v1/releases/1.0.0/promotions')).json().items;
    expect(promotions.at(-1)).toMatchObject({
      from: 'staging',
      to: 'prod',
      policyVersion: 2,
      scan: { result: 'pass', waived: 1, findings: 2 },
    });

    now += 2 * DAY; // the waiver expired
    expect((await promote('1.0.2', 'staging')).statusCode).toBe(200);
    const refused = await promote('1.0.2', 'prod');
    expect(refused.statusCode).toBe(409);
    expect(refused.json().error.message).toMatch(/DSA-5001 in libssl3/);
  });

  it('lets only an admin override a failing gate, with a reason, and audits it', async () => {
    const asOperator = await promote('1.0.2', 'prod', { overrideReason: 'TEST-ONLY emergency fix' });
    expect(asOperator.statusCode).toBe(403);
    expect(asOperator.json().error.code).toBe('FLOTILLA_ERR_POLICY_OVERRIDE_FORBIDDEN');
    const asAdmin = await promote('1.0.2', 'prod', { overrideReason: 'TEST-ONLY emergency fix' }, TEST_ADMIN);
    expect(asAdmin.statusCode, asAdmin.body).toBe(200);
    const audit = (await call('GET', '/api/v1/audit')).json().items as {
      action: string;
      target: string;
      detail: Record<string, unknown>;
    }[];
    const override = audit.find((a) => a.action === 'policy.override' && a.target === '1.0.2');
    expect(override?.detail).toMatchObject({ to: 'prod', reason: 'TEST-ONLY emergency fix' });
    const p = (await call('GET', '/api/v1/releases/1.0.2/promotions')).json().items.at(-1);
    expect(p).toMatchObject({
      to: 'prod',
      overrideReason: 'TEST-ONLY emergency fix',
      scan: { result: 'fail' },
    });
  });

  it('refuses a rollout of a release that fails the policy of the channel it targets', async () => {
    const res = await call(
      'POST',
      '/api/v1/rollouts',
      { release: '1.0.0', policy: { target: { channels: ['prod'] }, phases: [{ count: 1 }] } },
      operator,
    );
    expect(res.statusCode, res.body).toBe(409);
    expect(res.json().error.code).toBe('FLOTILLA_ERR_POLICY_VIOLATION');
    expect(res.json().error.message).toMatch(/prod: DSA-5001 in libssl3/);
    const dev = await call(
      'POST',
      '/api/v1/rollouts',
      { release: '1.0.0', policy: { target: { channels: ['dev'] }, phases: [{ count: 1 }] } },
      operator,
    );
    expect(dev.statusCode, dev.body).toBe(201);
  });

  it('raises the prod-failure gauge when an import makes a prod release fail', async () => {
    const metric = async () => {
      const text = (await call('GET', '/metrics')).body;
      return Number(/^flotilla_policy_prod_failures (\d+)/m.exec(text)?.[1]);
    };
    await call('PUT', '/api/v1/policy', {
      schemaVersion: 1,
      channels: { prod: { maxSeverity: 'critical' } },
    });
    expect(await metric()).toBe(0);
    await call('PUT', '/api/v1/policy', { schemaVersion: 1, channels: { prod: { maxSeverity: 'medium' } } });
    expect(await metric()).toBe(2); // 1.0.0 and 1.0.2 are in prod, both hold a critical and a high
    const text = (await call('GET', '/metrics')).body;
    expect(text).toMatch(
      /flotilla_release_vulnerabilities\{version="1.0.0",channel="prod",severity="critical"\} 1/,
    );
  });

  it('requires provenance from the named builder, and signs provenance and scan attestations', async () => {
    const builder = (await call('GET', '/api/v1/releases/1.0.1')).json().manifest.signed.provenance
      .builder as string;
    expect(builder.length).toBeGreaterThan(0);
    const policy = (builderId: string) => ({
      schemaVersion: 1,
      channels: {
        prod: { maxSeverity: 'critical', requiredAttestations: ['provenance'], provenance: { builderId } },
      },
    });
    await call('PUT', '/api/v1/policy', policy('TEST-ONLY-other-builder'));
    expect((await promote('1.0.1', 'staging')).statusCode).toBe(200);
    const refused = await promote('1.0.1', 'prod');
    expect(refused.statusCode).toBe(409);
    expect(refused.json().error.message).toMatch(/provenance builder '.+' is not 'TEST-ONLY-other-builder'/);
    await call('PUT', '/api/v1/policy', policy(builder));
    expect((await promote('1.0.1', 'prod')).statusCode).toBe(200);

    const att = (await call('GET', '/api/v1/releases/1.0.1/attestations')).json();
    const key = Buffer.from(att.key.publicKey, 'hex');
    const provenance = verifyStatement(att.provenance, att.key.keyid, key);
    expect(provenance?.predicateType).toBe('https://slsa.dev/provenance/v1');
    const image = (await call('GET', '/api/v1/releases/1.0.1')).json().manifest.signed.image.sha256;
    expect(provenance?.subject[0]?.digest.sha256).toBe(image);
    expect((provenance?.predicate.runDetails as { builder: { id: string } }).builder.id).toBe(builder);

    const scan = att.scans.find((s: { to: string }) => s.to === 'prod').attestation as DsseEnvelope;
    const statement = verifyStatement(scan, att.key.keyid, key);
    expect(statement?.predicateType).toBe('https://in-toto.io/attestation/vulns/v0.1');
    const result = (statement?.predicate.scanner as { result: { id: string }[] }).result.map((r) => r.id);
    expect(result).toEqual(['DSA-5002']);
    // A forged payload (a finding removed) does not verify.
    const forged = {
      ...scan,
      payload: Buffer.from(JSON.stringify({ ...statement, predicate: {} })).toString('base64'),
    };
    expect(verifyStatement(forged, att.key.keyid, key)).toBeNull();
  });
});
