import { describe, expect, it } from 'vitest';
import { StoreError } from '../../src/errors.js';
import { hashSecret } from '../../src/store/repos/tokens.js';
import { fenced, takeLeaseEpoch } from '../../src/store/sql-lease.js';
import { CONFLICT, finding, type OpenStore, sha, stateReport, vulnRecord } from './fixtures.js';

// The store contract for what operators and the server's own bookkeeping keep: API and
// provisioning tokens, the audit log, vulnerability records and scans, policies and promotions,
// version samples and the leases that fence a node's work.

const leaseLost = (err: unknown) => err instanceof StoreError && err.code === 'FLOTILLA_ERR_STORE_LEASE_LOST';

export function adminCases(open: OpenStore): void {
  describe('tokens', () => {
    it('creates a token with a chosen secret, lists tokens oldest first and counts only unrevoked ones', async () => {
      const { store: s } = await open();
      const admin = await s.tokens.createWithSecret('bootstrap', 'admin', 'TEST-ONLY-secret', 10);
      expect(admin).toMatchObject({
        name: 'bootstrap',
        role: 'admin',
        created: 10,
        lastUsed: null,
        revoked: null,
      });
      const { token: ci } = await s.tokens.create('ci', 'operator', 5);
      expect(await s.tokens.activeCount()).toBe(2);
      expect((await s.tokens.list()).map((t) => t.name)).toEqual(['ci', 'bootstrap']);
      expect(await s.tokens.revoke(ci.id, 20)).toBe(true);
      expect(await s.tokens.revoke(ci.id, 21)).toBe(false); // once: the first revocation time stays
      expect(await s.tokens.get(ci.id)).toMatchObject({ revoked: 20 });
      expect(await s.tokens.activeCount()).toBe(1);
      expect(await s.tokens.revoke('tok_missing', 22)).toBe(false);
    });

    it('looks a token up by its secret and records its use at most once a minute', async () => {
      const { store: s } = await open();
      const t = await s.tokens.createWithSecret('ops', 'viewer', 'TEST-ONLY-ops', 0);
      const t0 = 1_800_000_000_000;
      expect(await s.tokens.authenticate('TEST-ONLY-ops', t0)).toMatchObject({ id: t.id, lastUsed: null });
      expect((await s.tokens.get(t.id))?.lastUsed).toBe(t0);
      await s.tokens.authenticate('TEST-ONLY-ops', t0 + 30_000);
      expect((await s.tokens.get(t.id))?.lastUsed).toBe(t0);
      await s.tokens.authenticate('TEST-ONLY-ops', t0 + 60_001);
      expect((await s.tokens.get(t.id))?.lastUsed).toBe(t0 + 60_001);
      expect(await s.tokens.authenticate('test-only-ops', t0)).toBeUndefined(); // secrets are exact
    });

    it('refuses a second token with the same secret, leaving the first', async () => {
      const { store: s } = await open();
      await s.tokens.createWithSecret('one', 'admin', 'TEST-ONLY-same', 1);
      const err = await s.tokens
        .createWithSecret('two', 'viewer', 'TEST-ONLY-same', 2)
        .catch((e: Error) => e);
      expect(err).toMatchObject(CONFLICT);
      expect((err as Error).message).not.toContain(hashSecret('TEST-ONLY-same')); // names the rule, not the key
      expect((await s.tokens.list()).map((t) => t.name)).toEqual(['one']);
    });
  });

  describe('audit', () => {
    it('pages the log by id, newest first, with JSON details read back as written', async () => {
      const { store: s } = await open();
      const detail = { nested: { list: [1, null, 'x'] }, text: 'TEST-ONLY “ünïcode” \\ \' "', n: 2 ** 40 };
      for (let i = 1; i <= 5; i++)
        await s.audit.record('server', `step.${i}`, null, i === 3 ? detail : {}, i);
      const first = await s.audit.list(Number.MAX_SAFE_INTEGER, 2);
      expect(first.map((e) => e.action)).toEqual(['step.5', 'step.4']);
      const second = await s.audit.list(first[1]!.id, 2);
      expect(second.map((e) => e.action)).toEqual(['step.3', 'step.2']);
      expect(second[0]).toMatchObject({ target: null, detail, ts: 3 });
      expect(typeof second[0]!.id).toBe('number');
      expect((await s.audit.list(second[1]!.id, 2)).map((e) => e.action)).toEqual(['step.1']);
    });

    it('refuses a time beyond 2^53 on every engine rather than storing what reads back rounded', async () => {
      const { store: s } = await open();
      await expect(s.audit.record('server', 'server.start', null, {}, 2 ** 60)).rejects.toMatchObject({
        code: 'FLOTILLA_ERR_STORE_INTEGER',
      });
      const latest = Number.MAX_SAFE_INTEGER - 1; // the largest time `until` (exclusive) still lists
      await s.audit.record('server', 'server.start', null, {}, latest);
      expect((await s.audit.list(Number.MAX_SAFE_INTEGER, 10)).map((e) => e.ts)).toEqual([latest]);
    });

    it('matches actors and actions exactly (case, wildcards and substrings are not patterns)', async () => {
      const { store: s } = await open();
      await s.audit.record('token:ci(t1)', 'token.create', null, {}, 1);
      await s.audit.record('token:circle(t9)', 'token_create', null, {}, 2);
      await s.audit.record('token:CI(t2)', 'tokenXcreate', null, {}, 3);
      await s.audit.record('a%b', 'device.accept', null, {}, 4);
      const actions = async (f: Parameters<typeof s.audit.query>[0]) =>
        (await s.audit.query(f, 10)).map((e) => e.action);
      expect(await actions({ actor: 'ci' })).toEqual(['token.create']);
      expect(await actions({ actor: 'CI' })).toEqual(['tokenXcreate']);
      expect(await actions({ actor: 'c%' })).toEqual([]);
      expect(await actions({ actor: 'a%b' })).toEqual(['device.accept']);
      expect(await actions({ action: 'token.*' })).toEqual(['token.create']);
      expect(await actions({ action: 'token_*' })).toEqual(['token_create']);
      expect(await actions({ action: 'TOKEN.*' })).toEqual([]);
    });

    it('finds what a device did and what was done to it, and the last entry of an actor', async () => {
      const { store: s } = await open();
      await s.audit.record('token:ops(t1)', 'device.accept', 'd1', {}, 10);
      await s.audit.record('device:d1', 'device.login', null, {}, 20);
      await s.audit.record('token:ops(t1)', 'device.accept', 'd2', {}, 30);
      await s.audit.record('server', 'server.stop', null, {}, 40);
      await s.audit.record('server', 'server.start', null, {}, 50);
      expect((await s.audit.aboutDevice('d1', 100, 10)).map((e) => e.ts)).toEqual([20, 10]);
      expect((await s.audit.aboutDevice('d1', 20, 10)).map((e) => e.ts)).toEqual([10]);
      expect((await s.audit.lastOf('server', ['server.start', 'server.stop']))?.action).toBe('server.start');
      expect(await s.audit.lastOf('server', [])).toBeUndefined();
      expect(await s.audit.lastOf('nobody', ['server.start'])).toBeUndefined();
    });
  });

  describe('provisioning tokens', () => {
    it('lists tokens newest first with auto-accept as a boolean and the use recorded', async () => {
      const { store: s } = await open();
      const manual = await s.provisioning.create('manual', 1000, false, 100);
      const auto = await s.provisioning.create('line 3', 1000, true, 200);
      expect(manual.expires).toBe(1100);
      expect(await s.provisioning.consume(manual.secret, 'd1', 150)).toMatchObject({
        id: manual.id,
        autoAccept: false,
        usedBy: 'd1',
        usedAt: 150,
      });
      expect(await s.provisioning.list()).toEqual([
        {
          id: auto.id,
          label: 'line 3',
          autoAccept: true,
          expires: 1200,
          usedBy: null,
          usedAt: null,
          created: 200,
        },
        {
          id: manual.id,
          label: 'manual',
          autoAccept: false,
          expires: 1100,
          usedBy: 'd1',
          usedAt: 150,
          created: 100,
        },
      ]);
      expect(await s.provisioning.consume(auto.secret, 'd2', 1200)).toBeUndefined(); // expires is exclusive
    });

    it('refuses a label with a NUL character on every engine, storing no token', async () => {
      const { store: s } = await open();
      await expect(s.provisioning.create('line\u00003', 1000, true, 1)).rejects.toMatchObject({
        code: 'FLOTILLA_ERR_STORE_TEXT',
      });
      expect(await s.provisioning.list()).toEqual([]);
    });
  });

  describe('vulns', () => {
    it('replaces a record by id with its newer version, keeping one row per id in id order', async () => {
      const { store: s } = await open();
      const imp = await s.vulns.addImport({
        ts: 1,
        actor: 'cli',
        files: 2,
        added: 2,
        replaced: 0,
        unchanged: 0,
        skipped: 0,
        ecosystems: ['Debian:12'],
      });
      await s.vulns.upsert(vulnRecord('GHSA-b', 100), imp);
      await s.vulns.upsert(vulnRecord('CVE-a', 2 ** 41, { score: null, summary: 'TEST-ONLY “x”' }), imp);
      expect(await s.vulns.modifiedOf('GHSA-b')).toBe(100);
      expect(await s.vulns.modifiedOf('GHSA-zz')).toBeUndefined();
      const newer = vulnRecord('GHSA-b', 200, { severity: 'low', score: 3.25, withdrawn: true });
      await s.vulns.upsert(newer, imp + 1);
      expect(await s.vulns.modifiedOf('GHSA-b')).toBe(200);
      expect(await s.vulns.all()).toEqual([
        vulnRecord('CVE-a', 2 ** 41, { score: null, summary: 'TEST-ONLY “x”' }),
        newer,
      ]);
    });

    it('counts records, withdrawn ones and live ones by severity; zero when empty', async () => {
      const { store: s } = await open();
      expect(await s.vulns.counts()).toEqual({
        records: 0,
        withdrawn: 0,
        newestModified: null,
        bySeverity: {},
      });
      await s.vulns.upsert(vulnRecord('V1', 10, { severity: 'critical' }), 1);
      await s.vulns.upsert(vulnRecord('V2', 30, { severity: 'critical' }), 1);
      await s.vulns.upsert(vulnRecord('V3', 20, { severity: 'low', withdrawn: true }), 1);
      expect(await s.vulns.counts()).toEqual({
        records: 3,
        withdrawn: 1,
        newestModified: 30,
        bySeverity: { critical: 2 },
      });
    });

    it('records imports newest first, and one scan per release that the next scan replaces', async () => {
      const { store: s } = await open();
      const base = { actor: 'cli', files: 1, added: 1, replaced: 0, unchanged: 0, skipped: 0 };
      const i1 = await s.vulns.addImport({ ...base, ts: 10, ecosystems: ['npm'] });
      const i2 = await s.vulns.addImport({ ...base, ts: 20, ecosystems: ['Debian:12', 'Ubuntu:22.04:LTS'] });
      expect(i2).toBeGreaterThan(i1);
      expect(await s.vulns.imports(1)).toEqual([
        { id: i2, ...base, ts: 20, ecosystems: ['Debian:12', 'Ubuntu:22.04:LTS'] },
      ]);
      expect((await s.vulns.imports(5)).map((i) => i.id)).toEqual([i2, i1]);
      await s.vulns.saveScan({ releaseId: '1.0.0', ts: 30, importId: null, packages: 0, findings: [] });
      await s.vulns.saveScan({
        releaseId: '1.0.0',
        ts: 40,
        importId: i2,
        packages: 412,
        findings: [finding('V1')],
      });
      expect(await s.vulns.scan('1.0.0')).toEqual({
        releaseId: '1.0.0',
        ts: 40,
        importId: i2,
        packages: 412,
        findings: [finding('V1')],
      });
      await s.vulns.deleteScan('1.0.0');
      expect(await s.vulns.scan('1.0.0')).toBeUndefined();
    });

    it('counts accepted devices per running image and channel', async () => {
      const { store: s } = await open();
      for (const [id, status, image] of [
        ['d1', 'accepted', sha('a1')],
        ['d2', 'accepted', sha('a1')],
        ['d3', 'pending', sha('a1')],
        ['d4', 'accepted', null],
      ] as const) {
        await s.devices.insert({ id, publicKey: 'ab'.repeat(32), status, now: 1 });
        await s.devices.applyState(id, stateReport(1, { imageSha256: image }), 2);
      }
      expect(await s.vulns.devicesByImage()).toEqual([{ image: sha('a1'), channel: 'prod', n: 2 }]);
    });
  });

  describe('policies', () => {
    it('keeps every policy version with the latest on top, and refuses a version twice', async () => {
      const { store: s } = await open();
      expect(await s.policies.latest()).toBeUndefined();
      const v1 = {
        schemaVersion: 1 as const,
        channels: { prod: { maxSeverity: 'high' as const } },
        waivers: [],
      };
      const v2 = { schemaVersion: 1 as const, channels: {} };
      await s.policies.insert(1, v1, 'token:ops(t1)', 10);
      await s.policies.insert(2, v2, 'token:ops(t1)', 20);
      expect(await s.policies.latest()).toEqual({
        version: 2,
        document: v2,
        actor: 'token:ops(t1)',
        created: 20,
      });
      expect((await s.policies.history(10)).map((p) => [p.version, p.document])).toEqual([
        [2, v2],
        [1, v1],
      ]);
      await expect(s.policies.insert(2, v1, 'x', 30)).rejects.toMatchObject(CONFLICT);
      expect((await s.policies.latest())?.document).toEqual(v2);
    });

    it('records promotions per release in order, NULLs and JSON kept', async () => {
      const { store: s } = await open();
      const p = {
        releaseId: '1.0.0',
        from: null,
        to: 'dev',
        actor: 'server',
        ts: 1,
        policyVersion: null,
        scan: { import: null, findings: 0 },
        violations: [],
        overrideReason: null,
      };
      const overridden = {
        ...p,
        from: 'dev',
        to: 'staging',
        policyVersion: 2,
        violations: ['V1 critical'],
        overrideReason: 'TEST-ONLY hotfix',
      };
      await s.policies.recordPromotion(p);
      await s.policies.recordPromotion(overridden);
      await s.policies.recordPromotion({ ...p, releaseId: '2.0.0' });
      const got = await s.policies.promotions('1.0.0');
      expect(got.map(({ id: _, ...rest }) => rest)).toEqual([p, overridden]);
      expect(got[1]!.id).toBeGreaterThan(got[0]!.id);
    });
  });

  describe('version samples', () => {
    it('keeps samples within the age and count bounds, one per instant, oldest first', async () => {
      const { store: s } = await open();
      for (let ts = 1; ts <= 5; ts++) await s.versionSamples.add({ ts, counts: { '1.0.0': ts } }, 0, 3);
      expect((await s.versionSamples.since(0)).map((x) => x.ts)).toEqual([3, 4, 5]);
      await s.versionSamples.add({ ts: 5, counts: { '1.1.0': 7, null: 1 } }, 0, 3);
      expect(await s.versionSamples.since(5)).toEqual([{ ts: 5, counts: { '1.1.0': 7, null: 1 } }]);
      await s.versionSamples.add({ ts: 6, counts: {} }, 5, 3); // older than 5: dropped
      expect((await s.versionSamples.since(0)).map((x) => x.ts)).toEqual([5, 6]);
      expect(await s.versionSamples.count()).toBe(2);
    });
  });

  describe('leases', () => {
    it('takes a lease under a new epoch each time, whoever takes it', async () => {
      const { store: s } = await open();
      expect(await takeLeaseEpoch(s.sql, 'rollout-engine', 'node-a', 1)).toBe(1);
      expect(await takeLeaseEpoch(s.sql, 'rollout-engine', 'node-b', 2)).toBe(2);
      expect(await takeLeaseEpoch(s.sql, 'rollout-engine', 'node-b', 3)).toBe(3);
      expect(await takeLeaseEpoch(s.sql, 'delta-builds', 'node-a', 3)).toBe(1);
      expect(
        await s.sql.get('SELECT holder, epoch, acquired FROM cluster_leases WHERE name = ?', [
          'rollout-engine',
        ]),
      ).toEqual({
        holder: 'node-b',
        epoch: 3,
        acquired: 3,
      });
    });

    it('writes under the current epoch, refuses a write under an old or no epoch with nothing written', async () => {
      const { store: s } = await open();
      const old = await takeLeaseEpoch(s.sql, 'rollout-engine', 'node-a', 1);
      const current = await takeLeaseEpoch(s.sql, 'rollout-engine', 'node-b', 2);
      const write = (by: string) => (tx: typeof s.sql) =>
        tx.run(`INSERT INTO audit_log (ts, actor, action, detail) VALUES (1, ?, 'fenced.write', '{}')`, [by]);
      await expect(fenced(s.sql, 'rollout-engine', old, write('node-a'))).rejects.toSatisfy(leaseLost);
      await expect(fenced(s.sql, 'rollout-engine', undefined, write('node-a'))).rejects.toSatisfy(leaseLost);
      await expect(fenced(s.sql, 'never-taken', 1, write('node-a'))).rejects.toSatisfy(leaseLost);
      await fenced(s.sql, 'rollout-engine', current, write('node-b'));
      // A fenced write that fails half-way writes nothing.
      await expect(
        fenced(s.sql, 'rollout-engine', current, async (tx) => {
          await write('node-b-half')(tx);
          throw new Error('TEST-ONLY after the first write');
        }),
      ).rejects.toThrow('TEST-ONLY after the first write');
      expect((await s.audit.list(Number.MAX_SAFE_INTEGER, 10)).map((e) => e.actor)).toEqual(['node-b']);
    });
  });
}
