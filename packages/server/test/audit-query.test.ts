import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type FlotillaServer } from '../src/index.js';
import { auth, cleanupDirs, silent, TEST_ADMIN, tempDir } from './helpers.js';

// GET /audit's filters on a real store, with entries written at known times.
let server: FlotillaServer;
const T0 = Date.parse('2026-01-10T00:00:00Z');
const HOUR = 3_600_000;

beforeAll(async () => {
  server = await createServer({ dataDir: tempDir(), devKeys: true, logger: silent, adminToken: TEST_ADMIN });
  const audit = server.ctx.store.audit;
  await audit.record('token:TEST-ONLY a_b(tok_00000000000000aa)', 'token.create', 'tok_1', {}, T0);
  await audit.record('token:TEST-ONLY axb(tok_00000000000000bb)', 'token.revoke', 'tok_1', {}, T0 + HOUR);
  await audit.record('device:TEST-ONLY-d1', 'device.register', 'TEST-ONLY-d1', {}, T0 + 2 * HOUR);
  await audit.record('server', 'tokenizer.run', null, {}, T0 + 3 * HOUR);
});
afterAll(async () => {
  await server.close();
  cleanupDirs();
});

async function audit(query: string) {
  const res = await server.app.inject({ method: 'GET', url: `/api/v1/audit?${query}`, headers: auth() });
  return { status: res.statusCode, body: res.json() };
}
const actions = async (query: string) =>
  (await audit(query)).body.items.map((e: { action: string }) => e.action) as string[];

describe('GET /audit filters', () => {
  it('matches an actor as recorded, by token name (no wildcards) or by token id', async () => {
    expect(await actions('actor=server')).toContain('tokenizer.run');
    expect(await actions(`actor=${encodeURIComponent('TEST-ONLY a_b')}`)).toEqual(['token.create']);
    expect(await actions('actor=tok_00000000000000bb')).toEqual(['token.revoke']);
    expect(await actions('actor=device%3ATEST-ONLY-d1')).toEqual(['device.register']);
    expect(await actions('actor=TEST-ONLY')).toEqual([]);
  });

  it('matches an action exactly or by a prefix ending in *', async () => {
    // Before the server's own entries (token.bootstrap, written now).
    const jan = 'until=2026-02-01T00:00:00Z';
    expect(await actions(`action=token.create&${jan}`)).toEqual(['token.create']);
    expect(await actions(`action=token.*&${jan}`)).toEqual(['token.revoke', 'token.create']);
    expect(await actions(`action=token*&${jan}`)).toEqual(['tokenizer.run', 'token.revoke', 'token.create']);
    expect(await actions('action=token')).toEqual([]);
    expect(await actions('action=token.*')).toContain('token.bootstrap');
  });

  it('filters by target and by time (since inclusive, until exclusive), combined with AND', async () => {
    expect(await actions('target=tok_1')).toEqual(['token.revoke', 'token.create']);
    const since = new Date(T0 + HOUR).toISOString();
    const until = new Date(T0 + 2 * HOUR).toISOString();
    expect(await actions(`since=${since}&until=${until}`)).toEqual(['token.revoke']);
    expect(await actions(`target=tok_1&since=${since}`)).toEqual(['token.revoke']);
    expect(await actions('until=2026-01-10T00:00:00Z')).toEqual([]);
  });

  it('refuses a time that is not ISO 8601 and an action with other characters', async () => {
    for (const q of ['since=yesterday', 'until=2026-13-01T00:00:00Z', 'action=token.%25', 'colour=red']) {
      const r = await audit(q);
      expect(r.status, q).toBe(400);
      expect(r.body.error.code, q).toBe('FLOTILLA_ERR_SERVER_VALIDATION');
    }
  });
});

describe('a device timeline reads the audit log by index', () => {
  it('finds what was recorded about a device and by it without scanning the log', async () => {
    const plan = await server.ctx.store.sql.all<{ detail: string }>(
      `EXPLAIN QUERY PLAN SELECT * FROM audit_log WHERE (target = ? OR actor = ?) AND ts < ?
         ORDER BY id DESC LIMIT ?`,
      ['TEST-ONLY-d1', 'device:TEST-ONLY-d1', T0 + 4 * HOUR, 10],
    );
    const steps = plan.map((p) => p.detail).join('\n');
    expect(steps).toContain('audit_target_id');
    expect(steps).toContain('audit_actor_id');
    expect(steps).not.toMatch(/^SCAN audit_log$/m);
    expect(
      (await server.ctx.store.audit.aboutDevice('TEST-ONLY-d1', T0 + 4 * HOUR, 10)).map((e) => e.action),
    ).toEqual(['device.register']);
  });
});
