import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServerEvent } from '../../src/events/bus.js';
import type { FlotillaServer } from '../../src/index.js';
import { makeBundle, writeTrustDir } from '../bundles.js';
import { testImage } from '../fleet.js';
import { auth, cleanupDirs, TEST_ADMIN, tempDir } from '../helpers.js';
import { CRITICAL, osvRecord } from './fixtures.js';
import { vulnApi, vulnServer } from './vuln-api.js';

// Each policy rule of docs/vulnerabilities.md ("Policy") through the HTTP API, on a server whose
// clock the test moves: image age, unknown severity, provenance source and builder, waivers limited
// to channels, and the history and audit of the document itself.

const DAY = 24 * 60 * 60 * 1000;
const LOW = 'CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N';
let now = Date.now();
let server: FlotillaServer;
let api: ReturnType<typeof vulnApi>;

const CRITICAL_OPENSSL = { name: 'libssl3', version: '3.0.11-1~deb12u2', source: 'openssl' };
const UNKNOWN_ZLIB = { name: 'zlib1g', version: '1:1.2.13.dfsg-1', source: 'zlib' };
const LOW_XZ = { name: 'liblzma5', version: '5.4.1-0.2', source: 'xz-utils' };
const CLEAN = { name: 'bash', version: '5.2.15-2+b2', source: 'bash (5.2.15-2)' };

beforeAll(async () => {
  const keysDir = tempDir('flotilla-policy-keys-');
  const trust = writeTrustDir(keysDir);
  server = await vulnServer(() => now, { importKeysFrom: keysDir });
  api = vulnApi(server);
  const imported = await api.importRecords({
    'DSA-7001.json': osvRecord({
      id: 'DSA-7001',
      aliases: ['CVE-2026-7001'],
      name: 'openssl',
      fixed: '3.0.13-1~deb12u1',
      cvss: CRITICAL,
    }),
    'DSA-7002.json': osvRecord({ id: 'DSA-7002', name: 'zlib', fixed: '1:1.3' }), // no severity at all
    'DSA-7003.json': osvRecord({ id: 'DSA-7003', name: 'xz-utils', fixed: '5.4.5-1', cvss: LOW }),
  });
  expect(imported.statusCode, imported.body).toBe(200);
  // A release signed elsewhere whose provenance names no builder (the manifest schema keeps the block).
  const bundle = await makeBundle(tempDir(), trust, { version: '6.0.0', image: testImage(2), builder: '' });
  const uploaded = await server.app.inject({
    method: 'POST',
    url: '/api/v1/releases/bundle',
    headers: { ...auth(), 'content-type': 'application/octet-stream' },
    payload: readFileSync(bundle),
  });
  expect(uploaded.statusCode, uploaded.body).toBe(201);
}, 120_000);

afterAll(async () => {
  await server?.close();
  cleanupDirs();
});

/** Builds `version` and promotes it dev → staging (prod is what each test gates). */
async function staged(version: string, pkgs: Parameters<typeof api.build>[1], query = '') {
  await api.build(version, pkgs, TEST_ADMIN, query);
  expect((await api.promote(version, 'staging')).statusCode).toBe(200);
}

const refusal = async (version: string, channel = 'prod') => {
  const res = await api.promote(version, channel);
  expect(res.statusCode, res.body).toBe(409);
  expect(res.json().error.code).toBe('FLOTILLA_ERR_POLICY_VIOLATION');
  return res.json().error.message as string;
};

const promoted = async (version: string, channel = 'prod') => {
  const res = await api.promote(version, channel);
  expect(res.statusCode, res.body).toBe(200);
};

describe('policy rules at promotion', () => {
  it('failOnUnknownSeverity: an unknown-severity finding is refused only when set, and never read as low', async () => {
    await staged('3.0.0', [UNKNOWN_ZLIB, CLEAN]);
    await staged('3.0.1', [UNKNOWN_ZLIB, LOW_XZ]);
    const found = (await api.call('GET', '/api/v1/releases/3.0.1/vulnerabilities')).json();
    expect(found.vulnerabilities.map((v: { id: string; severity: string }) => [v.id, v.severity])).toEqual([
      ['DSA-7003', 'low'],
      ['DSA-7002', 'unknown'],
    ]);

    // maxSeverity none: the low finding fails, the unknown one is not counted as low.
    await api.setPolicy({ schemaVersion: 1, channels: { prod: { maxSeverity: 'none' } } });
    const low = await refusal('3.0.1');
    expect(low).toMatch(/DSA-7003 in liblzma5 5\.4\.1-0\.2: low exceeds prod's maximum none/);
    expect(low).not.toMatch(/DSA-7002/);

    await api.setPolicy({
      schemaVersion: 1,
      channels: { prod: { maxSeverity: 'none', failOnUnknownSeverity: true } },
    });
    expect(await refusal('3.0.0')).toMatch(
      /DSA-7002 in zlib1g 1:1\.2\.13\.dfsg-1: unknown severity \(prod's failOnUnknownSeverity\)/,
    );
    // Staging has no such rule: the same finding is only recorded there.
    const body = (await api.call('GET', '/api/v1/releases/3.0.0/vulnerabilities')).json();
    expect(body.channels.staging).toEqual({ pass: true, violations: [] });

    await api.setPolicy({ schemaVersion: 1, channels: { prod: { maxSeverity: 'none' } } });
    await promoted('3.0.0');
  });

  it('provenance.sourceRepository: a release built from another repository is refused, naming both', async () => {
    await staged('5.0.0', [CLEAN], '&sourceRevision=https%3A%2F%2Fgit.example%2Fother.git%40abc123');
    await staged('5.0.1', [CLEAN], '&sourceRevision=https%3A%2F%2Fgit.example%2Ffw.git%40def456');
    await api.setPolicy({
      schemaVersion: 1,
      channels: { prod: { provenance: { sourceRepository: 'https://git.example/fw.git@' } } },
    });
    expect(await refusal('5.0.0')).toMatch(
      /provenance source 'https:\/\/git\.example\/other\.git@abc123' is not from 'https:\/\/git\.example\/fw\.git@'/,
    );
    await promoted('5.0.1');
  });

  it('a release whose signed provenance names no builder is refused when policy requires a builder', async () => {
    expect((await api.promote('6.0.0', 'staging')).statusCode).toBe(200);
    await api.setPolicy({
      schemaVersion: 1,
      channels: { prod: { requiredAttestations: ['provenance'], provenance: { builderId: 'TEST-ONLY-ci' } } },
    });
    expect(await refusal('6.0.0')).toMatch(
      /no signed provenance naming a builder \(prod requires provenance\)/,
    );
    // requiredAttestations alone asks for the same thing.
    await api.setPolicy({ schemaVersion: 1, channels: { prod: { requiredAttestations: ['provenance'] } } });
    expect(await refusal('6.0.0')).toMatch(/no signed provenance/);
    const promotions = (await api.call('GET', '/api/v1/releases/6.0.0/promotions')).json();
    expect(promotions.provenance).toEqual({ builder: '', sourceRevision: 'unknown' });
  });

  it('a waiver limited to other channels does not apply to prod', async () => {
    await api.build('3.0.3', [CRITICAL_OPENSSL]);
    await api.setPolicy({
      schemaVersion: 1,
      channels: { staging: { maxSeverity: 'high' }, prod: { maxSeverity: 'high' } },
      waivers: [
        {
          id: 'CVE-2026-7001',
          package: 'openssl',
          reason: 'TEST-ONLY staging devices have no network',
          approvedBy: 'TEST-ONLY security',
          expires: new Date(now + 30 * DAY).toISOString(),
          channels: ['staging'],
        },
      ],
    });
    await promoted('3.0.3', 'staging');
    const body = (await api.call('GET', '/api/v1/releases/3.0.3/vulnerabilities')).json();
    expect(body.vulnerabilities).toMatchObject([{ id: 'DSA-7001', waivedIn: ['staging'] }]);
    expect(body.channels.staging.pass).toBe(true);
    expect(body.channels.prod.pass).toBe(false);
    expect(await refusal('3.0.3')).toMatch(
      /DSA-7001 in libssl3 3\.0\.11-1~deb12u2: critical exceeds prod's maximum high/,
    );
    const promotions = (await api.call('GET', '/api/v1/releases/3.0.3/promotions')).json().items;
    expect(promotions).toMatchObject([{ to: 'staging', scan: { result: 'pass', waived: 1 } }]);
  });

  it('maxImageAgeDays: past the limit on the server clock is refused naming the rule; inside it is allowed', async () => {
    await staged('4.0.0', [CLEAN]);
    now += 1.5 * DAY;
    await staged('4.0.1', [CLEAN]);
    now += 0.5 * DAY; // 4.0.0 is 2 days old, 4.0.1 half a day
    await api.setPolicy({ schemaVersion: 1, channels: { prod: { maxImageAgeDays: 1 } } });
    const message = await refusal('4.0.0');
    expect(message).toMatch(/4\.0\.0 → prod/);
    expect(message).toMatch(/image is 2 days old: over prod's maxImageAgeDays 1/);
    const events: ServerEvent[] = [];
    const unsubscribe = server.ctx.bus.subscribe((e) => events.push(e));
    await promoted('4.0.1');
    unsubscribe();
    expect(events.map((e) => [e.type, e.data])).toEqual([
      ['release.promoted', { version: '4.0.1', channel: 'prod' }],
    ]);
    // Once in prod it is not taken out when it ages past the rule: it is listed as failing instead.
    const failing = async () => {
      const fleet = (await api.call('GET', '/api/v1/vulnerabilities/fleet')).json();
      return (fleet.prodFailures as { version: string }[]).filter((f) => f.version === '4.0.1');
    };
    expect(await failing()).toEqual([]);
    now += DAY;
    expect(await failing()).toEqual([
      { version: '4.0.1', violations: ["image is 1 day old: over prod's maxImageAgeDays 1"] },
    ]);
  });
});

describe('the policy document', () => {
  it('keeps every version in GET /policy/history and audits each set with who and which version', async () => {
    const admin = await api.token('TEST-ONLY policy admin', 'admin');
    const doc = { schemaVersion: 1, channels: { prod: { maxSeverity: 'high', noHighWithFix: true } } };
    const events: ServerEvent[] = [];
    const unsubscribe = server.ctx.bus.subscribe((e) => events.push(e));
    const { version } = await api.setPolicy(doc, admin);
    unsubscribe();
    // Dashboard pages showing policy results reload on this event.
    expect(events.map((e) => [e.type, e.data])).toEqual([['policy.set', { version }]]);
    const history = (await api.call('GET', '/api/v1/policy/history')).json().items as {
      version: number;
      actor: string;
      document: unknown;
      created: number;
    }[];
    // Newest first, every version from 1 up kept (this file set 8 before this one).
    expect(history.map((h) => h.version)).toEqual(Array.from({ length: version }, (_, i) => version - i));
    expect(version).toBe(9);
    expect(history[0]).toMatchObject({ version, document: doc, created: now });
    expect(history[0]!.actor).toMatch(/^token:TEST-ONLY policy admin\(/);
    expect(history[1]!.actor).toMatch(/^token:/);
    expect(history[1]!.actor).not.toBe(history[0]!.actor);
    expect((await api.call('GET', '/api/v1/policy/history?limit=2')).json().items).toHaveLength(2);
    expect((await api.call('GET', '/api/v1/policy')).json()).toMatchObject({ version, document: doc });

    const audit = (await api.call('GET', '/api/v1/audit?action=policy.set')).json().items as {
      actor: string;
      target: string;
      detail: Record<string, unknown>;
    }[];
    expect(audit).toHaveLength(version);
    expect(audit[0]).toMatchObject({
      actor: history[0]!.actor,
      target: `policy:${version}`,
      detail: { version, waivers: 0 },
    });
  });
});
