import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/index.js';
import { connectFleet, SimDevice, testImage, uploadRelease } from './fleet.js';
import { auth, cleanupDirs, endClients, startTestServer } from './helpers.js';

let server: RunningServer;
let fleet: SimDevice[] = [];

beforeAll(async () => {
  server = await startTestServer();
  const v1 = await uploadRelease(server, '1.0.0', testImage(0, 256 * 1024));
  await uploadRelease(server, '1.1.0', testImage(1, 256 * 1024));
  fleet = SimDevice.fleet('TEST-ONLY-list', 6, '1.0.0', v1.image.sha256);
  await connectFleet(server, fleet);
});
afterAll(async () => {
  await endClients(fleet.map((d) => d.client));
  await server.close();
  cleanupDirs();
});

const get = (url: string) => server.app.inject({ method: 'GET', url, headers: auth() });

describe('GET /rollouts', () => {
  it('lists each rollout with the same summary (phase, health) as GET /rollouts/{id}', async () => {
    const created: string[] = [];
    // Disjoint targets: a device in flight in one rollout is busy for the other.
    const ids = (from: number, to: number) =>
      Array.from({ length: to - from }, (_, i) => `TEST-ONLY-list-${from + i}`);
    for (const [devices, phases] of [
      [ids(0, 4), [{ count: 2 }, { percent: 100 }]],
      [ids(4, 6), [{ percent: 100, requireApproval: true }]],
    ] as const) {
      const res = await server.app.inject({
        method: 'POST',
        url: '/api/v1/rollouts',
        headers: auth(),
        payload: { release: '1.1.0', policy: { target: { devices }, phases } },
      });
      expect(res.statusCode, res.body).toBe(201);
      created.push(res.json().id);
    }
    // The first rollout offers its canaries; the second waits for approval.
    for (const id of created)
      for (let pass = 0; pass < 5 && (await server.ctx.rollouts.tick(id)).length > 0; pass++);

    const list = await get('/api/v1/rollouts');
    expect(list.statusCode).toBe(200);
    const items = list.json().items as { id: string; summary: Record<string, unknown> }[];
    expect(items.map((i) => i.id).sort()).toEqual([...created].sort());
    for (const item of items) {
      const one = (await get(`/api/v1/rollouts/${item.id}`)).json();
      expect(item.summary).toEqual(one.summary);
    }
    const first = items.find((i) => i.id === created[0])!.summary as {
      currentPhase: number;
      phases: { total: number }[];
      totals: { devices: number; inFlight: number };
    };
    expect(first.phases.map((p) => p.total)).toEqual([2, 2]);
    expect(first.totals.inFlight).toBe(2);
    expect(first.currentPhase).toBe(0);
    const second = items.find((i) => i.id === created[1])!.summary as { status: string };
    expect(second.status).toBe('waiting-approval');
  });

  it('serves policy, runtime and summary whole: the response schemas drop nothing the engine holds', async () => {
    const items = (await get('/api/v1/rollouts')).json().items as { id: string }[];
    // a paused rollout: the pause reason (a union in the schema) is served too
    const paused = await server.app.inject({
      method: 'POST',
      url: `/api/v1/rollouts/${items[0]!.id}/pause`,
      headers: auth(),
      payload: { note: 'checking the schemas' },
    });
    expect(paused.statusCode, paused.body).toBe(200);
    expect(paused.json().runtime.pause).toMatchObject({ kind: 'operator', note: 'checking the schemas' });
    const plain = (value: unknown) => JSON.parse(JSON.stringify(value));
    for (const { id } of items) {
      const served = (await get(`/api/v1/rollouts/${id}`)).json();
      // direct reads of what the route presents (the engine's summary, the stored rollout)
      expect(served.summary).toEqual(plain(await server.ctx.rollouts.summary(id)));
      const stored = (await server.ctx.store.rollouts.get(id))!;
      expect(served.runtime).toEqual(plain(stored.runtime));
      expect(served.policy).toEqual(plain(stored.policy));
    }
  });

  it('pages the list and keeps a summary on every item', async () => {
    const page = (await get('/api/v1/rollouts?limit=1&offset=1')).json().items as { summary?: unknown }[];
    expect(page).toHaveLength(1);
    expect(page[0]?.summary).toBeDefined();
  });
});
