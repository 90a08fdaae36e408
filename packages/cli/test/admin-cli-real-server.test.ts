import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunningServer, startServer } from '@flotilla/server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The server tests' scripted device (real MQTT client) and fixtures, reused rather than copied.
import { connectFleet, SimDevice, testImage, uploadRelease } from '../../server/test/fleet.js';
import { auth, TEST_ADMIN, waitFor } from '../../server/test/helpers.js';
import { startFlotilla } from './run-cli.js';

// `tokens`, `audit`, `devices history`, `release show` and `rollout show` with the compiled CLI
// against the real server: HTTP API and MQTT listener on loopback, a scripted device on a real
// MQTT connection installing a real rollout.

const dir = mkdtempSync(join(tmpdir(), 'flotilla-cli-admin-'));
let server: RunningServer;
let device: SimDevice;
let rolloutId: string;

function flotilla(args: string[], token = TEST_ADMIN) {
  return startFlotilla(args, { FLOTILLA_SERVER: server.addresses.api, FLOTILLA_TOKEN: token }, 60_000).done;
}

beforeAll(async () => {
  server = await startServer({
    dataDir: dir,
    devKeys: true,
    adminToken: TEST_ADMIN,
    port: 0,
    mqttPort: 0,
    logLevel: 'silent',
    limits: { rolloutTickMs: 100, retentionIntervalMs: 0 },
  });
  const v1 = await uploadRelease(server, '1.0.0', testImage(0));
  const v2 = await uploadRelease(server, '1.1.0', testImage(1));
  device = SimDevice.fleet('TEST-ONLY-cli-history', 1, '1.0.0', v1.image.sha256)[0]!;
  await connectFleet(server, [device!]);
  const placed = await server.app.inject({
    method: 'PUT',
    url: `/api/v1/devices/${device!.id}/placement`,
    headers: auth(),
    payload: { tags: ['TEST-ONLY-lab'] },
  });
  expect(placed.statusCode, placed.body).toBe(200);
  const created = await server.app.inject({
    method: 'POST',
    url: '/api/v1/rollouts',
    headers: auth(),
    payload: {
      name: 'TEST-ONLY history',
      release: '1.1.0',
      policy: { target: {}, phases: [{ percent: 100 }] },
    },
  });
  expect(created.statusCode, created.body).toBe(201);
  rolloutId = created.json().id;
  const offer = await device!.nextOffer(20_000);
  await device!.install(offer.offer.signed.deploymentId, 'healthy', '1.1.0', v2.image.sha256);
  await waitFor(
    async () => (await server.ctx.store.rollouts.get(rolloutId))?.status === 'completed',
    20_000,
    'the rollout to complete',
  );
}, 90_000);

afterAll(async () => {
  await device?.client?.endAsync(true).catch(() => {});
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('flotilla tokens against the real server', () => {
  it('creates a token with a role, shows its secret once, and the secret works with that role only', async () => {
    const created = await flotilla([
      'tokens',
      'create',
      '--role',
      'operator',
      '--name',
      'TEST-ONLY-alice',
      '--json',
    ]);
    expect(created.code, created.stderr).toBe(0);
    const { token, secret } = created.json();
    expect(token).toMatchObject({ name: 'TEST-ONLY-alice', role: 'operator', revoked: null });
    expect(secret).toMatch(/^flt_/);

    // The operator token reads and acts, but managing tokens needs admin.
    expect((await flotilla(['rollout', 'list', '--json'], secret)).code).toBe(0);
    const refused = await flotilla(['tokens', 'list', '--json'], secret);
    expect(refused.code).toBe(1);
    expect(refused.json().error.code).toBe('FLOTILLA_ERR_SERVER_FORBIDDEN');

    // Listed and shown by id, never with the secret.
    const list = await flotilla(['tokens', 'list', '--role', 'operator', '--json']);
    expect(list.json().tokens.map((t: { id: string }) => t.id)).toEqual([token.id]);
    expect(list.stdout).not.toContain(secret);
    const human = await flotilla(['tokens', 'list']);
    expect(human.stdout).toMatch(new RegExp(`${token.id}\\s+TEST-ONLY-alice\\s+operator\\s+active`));
    expect(human.stdout).not.toContain(secret);
    const shown = await flotilla(['tokens', 'show', token.id, '--json']);
    expect(shown.json().token).toMatchObject({ id: token.id, role: 'operator' });
    expect(shown.stdout).not.toContain(secret);

    // Revoked: the secret stops working at once; the token stays listed, marked revoked.
    const revoked = await flotilla(['tokens', 'revoke', token.id, '--json']);
    expect(revoked.json()).toEqual({ ok: true, id: token.id, revoked: true });
    const after = await flotilla(['rollout', 'list', '--json'], secret);
    expect(after.json().error.code).toBe('FLOTILLA_ERR_SERVER_UNAUTHENTICATED');
    const active = await flotilla(['tokens', 'list', '--active', '--json']);
    expect(active.json().tokens.map((t: { id: string }) => t.id)).not.toContain(token.id);
    const again = await flotilla(['tokens', 'revoke', token.id, '--json']);
    expect(again.json().error.code).toBe('FLOTILLA_ERR_SERVER_NOT_FOUND');
  }, 120_000);

  it('prints the secret in human output with a word that it is shown only now', async () => {
    const r = await flotilla(['tokens', 'create', '--role', 'viewer', '--name', 'TEST-ONLY-dash']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^created token tok_[0-9a-f]{16} "TEST-ONLY-dash" \(viewer, active\)/);
    expect(r.stdout).toMatch(/shown only now/);
    expect(r.stdout).toMatch(/^ {2}flt_[A-Za-z0-9_-]+$/m);
  });

  it('refuses an unknown role with a coded error and a hint, creating nothing', async () => {
    const before = (await flotilla(['tokens', 'list', '--json'])).json().tokens.length;
    const r = await flotilla(['tokens', 'create', '--role', 'root', '--name', 'TEST-ONLY-x', '--json']);
    expect(r.code).toBe(1);
    expect(r.json().error).toMatchObject({
      code: 'FLOTILLA_ERR_CLI_ROLE',
      hint: expect.stringContaining('viewer'),
    });
    expect((await flotilla(['tokens', 'list', '--json'])).json().tokens).toHaveLength(before);
    const human = await flotilla(['tokens', 'show', 'tok_0123456789abcdef']);
    expect(human.code).toBe(1);
    expect(human.stderr).toMatch(
      /^error FLOTILLA_ERR_CLI_NOT_FOUND: not found on the server: token tok_0123456789abcdef\n {2}hint: /,
    );
  });
});

describe('flotilla audit against the real server', () => {
  it('lists who did what, filtered by action prefix, actor (token name) and target', async () => {
    const created = await flotilla([
      'tokens',
      'create',
      '--role',
      'viewer',
      '--name',
      'TEST-ONLY-bob',
      '--json',
    ]);
    const id = created.json().token.id as string;
    const byAction = await flotilla(['audit', 'list', '--action', 'token.*', '--json']);
    expect(byAction.code, byAction.stderr).toBe(0);
    const actions = byAction.json().entries.map((e: { action: string }) => e.action);
    expect(actions.length).toBeGreaterThan(0);
    expect(actions.every((a: string) => a.startsWith('token.'))).toBe(true);
    expect(actions).toContain('token.revoke');

    const byTarget = await flotilla(['audit', 'list', '--target', id, '--json']);
    expect(byTarget.json().entries).toEqual([
      expect.objectContaining({
        action: 'token.create',
        target: id,
        detail: { name: 'TEST-ONLY-bob', role: 'viewer' },
      }),
    ]);
    // The admin token's name, as `flotilla server` bootstraps it, finds its changes.
    const actor = byTarget.json().entries[0].actor as string;
    const name = /^token:(.+)\(tok_[0-9a-f]{16}\)$/.exec(actor)![1]!;
    const byActor = await flotilla([
      'audit',
      'list',
      '--actor',
      name,
      '--action',
      'rollout.create',
      '--json',
    ]);
    expect(byActor.json().entries.map((e: { target: string }) => e.target)).toEqual([rolloutId]);
    const nobody = await flotilla(['audit', 'list', '--actor', 'TEST-ONLY-nobody', '--json']);
    expect(nobody.json().entries).toEqual([]);
  });

  it('filters by time (ISO or ago), pages with --before and shows one entry', async () => {
    const recent = await flotilla(['audit', 'list', '--since', '1h', '--limit', '2', '--json']);
    const page = recent.json().entries as { id: number }[];
    expect(page).toHaveLength(2);
    expect(page[0]!.id).toBeGreaterThan(page[1]!.id);
    const next = await flotilla([
      'audit',
      'list',
      '--since',
      '1h',
      '--before',
      String(page[1]!.id),
      '--json',
    ]);
    expect(next.json().entries.every((e: { id: number }) => e.id < page[1]!.id)).toBe(true);
    const old = await flotilla(['audit', 'list', '--until', '2001-01-01', '--json']);
    expect(old.json().entries).toEqual([]);
    const future = await flotilla(['audit', 'list', '--since', '2999-01-01T00:00:00Z', '--json']);
    expect(future.json().entries).toEqual([]);

    const shown = await flotilla(['audit', 'show', String(page[0]!.id), '--json']);
    expect(shown.json().entry).toEqual(page[0]);
    const human = await flotilla(['audit', 'show', String(page[0]!.id)]);
    expect(human.stdout).toMatch(new RegExp(`^audit entry ${page[0]!.id}: `));
    const table = await flotilla(['audit', 'list', '--action', 'rollout.create']);
    expect(table.stdout).toMatch(/^ID\s+TIME\s+ACTOR\s+ACTION\s+TARGET\n/);
    expect(table.stdout).toContain(rolloutId);
  });

  it('refuses a time it cannot read, and a viewer token, with codes and hints', async () => {
    const bad = await flotilla(['audit', 'list', '--since', 'yesterday', '--json']);
    expect(bad.code).toBe(1);
    expect(bad.json().error).toMatchObject({
      code: 'FLOTILLA_ERR_CLI_TIME',
      hint: expect.stringContaining('7d'),
    });
    const viewer = (
      await flotilla(['tokens', 'create', '--role', 'viewer', '--name', 'TEST-ONLY-v', '--json'])
    ).json();
    const refused = await flotilla(['audit', 'list', '--json'], viewer.secret);
    expect(refused.json().error.code).toBe('FLOTILLA_ERR_SERVER_FORBIDDEN');
  });
});

describe('flotilla devices history against the real server', () => {
  it("merges the device's reports, its deployment and the audit entries about it, newest first", async () => {
    const r = await flotilla(['devices', 'history', device.id, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const items = r.json().history as {
      ts: string;
      source: string;
      kind: string;
      detail: Record<string, unknown>;
    }[];
    expect(r.json().deviceId).toBe(device.id);
    const kinds = items.map((e) => `${e.source}:${e.kind}`);
    for (const kind of [
      'event:offer-accepted',
      'event:installed',
      'event:healthy',
      'deployment:deployment.created',
      'audit:device.placement',
    ])
      expect(kinds).toContain(kind);
    expect(kinds.some((k) => /^deployment:deployment\.(healthy|completed|succeeded)$/.test(k))).toBe(true);
    const times = items.map((e) => Date.parse(e.ts));
    expect(times.every((t, i) => i === 0 || t <= times[i - 1]!)).toBe(true);
    expect(items.find((e) => e.kind === 'deployment.created')!.detail).toMatchObject({
      rolloutId,
      release: '1.1.0',
    });
    expect(items.find((e) => e.kind === 'healthy')!.detail).toMatchObject({ version: '1.1.0' });
    // The device's other history: not someone else's.
    expect(items.find((e) => e.kind === 'device.placement')!.detail).toMatchObject({ target: device.id });
  });

  it('pages with --limit and --until, and reads as a table', async () => {
    const all = (await flotilla(['devices', 'history', device.id, '--json'])).json().history as {
      ts: string;
    }[];
    const first = (await flotilla(['devices', 'history', device.id, '--limit', '2', '--json'])).json()
      .history;
    expect(first).toEqual(all.slice(0, 2));
    const older = await flotilla(['devices', 'history', device.id, '--until', all.at(-1)!.ts, '--json']);
    expect(older.json().history).toEqual([]);
    const human = await flotilla(['devices', 'history', device.id]);
    expect(human.stdout).toMatch(/^TIME\s+SOURCE\s+WHAT\s+SUMMARY\n/);
    expect(human.stdout).toMatch(/event\s+healthy\s+reported healthy, version 1\.1\.0/);
  });

  it('an unknown device is FLOTILLA_ERR_SERVER_NOT_FOUND', async () => {
    const r = await flotilla(['devices', 'history', 'TEST-ONLY-nobody', '--json']);
    expect(r.code).toBe(1);
    expect(r.json().error.code).toBe('FLOTILLA_ERR_SERVER_NOT_FOUND');
  });
});

describe('show for every server noun', () => {
  it('release show, rollout show and policy show answer with the one object', async () => {
    const release = await flotilla(['release', 'show', '1.1.0', '--json']);
    expect(release.json()).toMatchObject({ ok: true, release: { version: '1.1.0' } });
    const rollout = await flotilla(['rollout', 'show', rolloutId, '--json']);
    expect(rollout.json()).toMatchObject({ ok: true, rollout: { id: rolloutId, status: 'completed' } });
    const policy = await flotilla(['policy', 'show', '--json']);
    expect(policy.json()).toMatchObject({ ok: true, policy: { version: expect.any(Number) } });
    const missing = await flotilla(['release', 'show', '9.9.9', '--json']);
    expect(missing.json().error.code).toBe('FLOTILLA_ERR_SERVER_NOT_FOUND');
  });

  it('devices list filters by tag, channel and online state', async () => {
    const tagged = await flotilla(['devices', 'list', '--tag', 'TEST-ONLY-lab', '--online', '--json']);
    expect(tagged.json().devices.map((d: { id: string }) => d.id)).toEqual([device.id]);
    // Devices follow prod unless placed elsewhere.
    const onProd = await flotilla(['devices', 'list', '--channel', 'prod', '--json']);
    expect(onProd.json().devices.map((d: { id: string }) => d.id)).toEqual([device.id]);
    const onDev = await flotilla(['devices', 'list', '--channel', 'dev', '--json']);
    expect(onDev.json().devices).toEqual([]);
    const offline = await flotilla(['devices', 'list', '--offline', '--json']);
    expect(offline.json().devices).toEqual([]);
    const both = await flotilla(['devices', 'list', '--online', '--offline', '--json']);
    expect(both.json().error.code).toBe('FLOTILLA_ERR_CLI_USAGE');
  });
});
