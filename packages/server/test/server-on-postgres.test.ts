import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/index.js';
import { POSTGRES_MISSING, postgresBin, startTestPostgres, type TestPostgres } from './helpers/postgres.js';
import { auth, cleanupDirs, startTestServer, tempDir, waitFor } from './helpers.js';

// `flotilla server --database postgres://… --node-id NAME`: several server processes' worth of
// nodes (in-process here; test/cluster runs them as real processes) on one real PostgreSQL.

interface ClusterView {
  node: string;
  store: 'sqlite' | 'postgres';
  engine: { holder: string | null; epoch: number | null; here: boolean };
}

async function clusterView(s: RunningServer): Promise<ClusterView> {
  const r = await fetch(`${s.addresses.api}/api/v1/cluster`, { headers: auth() });
  expect(r.status).toBe(200);
  return (await r.json()) as ClusterView;
}

if (!postgresBin) console.warn(POSTGRES_MISSING);

describe('GET /api/v1/cluster on the embedded default', () => {
  afterAll(() => cleanupDirs());

  it('names this node, the SQLite store, and this node as the rollout engine', async () => {
    const s = await startTestServer({ nodeId: 'solo-1' });
    try {
      const view = await clusterView(s);
      expect(view).toMatchObject({
        node: 'solo-1',
        store: 'sqlite',
        engine: { holder: 'solo-1', here: true },
      });
      expect(view.engine.epoch).toBeGreaterThanOrEqual(1);
    } finally {
      await s.close();
    }
  });

  it('refuses a node id that is not a plain name (it names a directory) with FLOTILLA_ERR_SERVER_CONFIG', async () => {
    await expect(startTestServer({ nodeId: '../elsewhere' })).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_SERVER_CONFIG',
    });
  });
});

describe.skipIf(!postgresBin)('several server nodes on one PostgreSQL (a real PostgreSQL)', () => {
  let pgsrv: TestPostgres;
  const nodes: RunningServer[] = [];

  beforeAll(async () => {
    pgsrv = await startTestPostgres();
  });
  afterAll(async () => {
    await Promise.allSettled(nodes.map((n) => n.close()));
    await pgsrv?.destroy();
    cleanupDirs();
  });

  const dirs = new Map<string, string>();
  const node = async (nodeId: string) => {
    const dataDir = tempDir();
    dirs.set(nodeId, dataDir);
    const s = await startTestServer({ dataDir, database: pgsrv.url, nodeId });
    nodes.push(s);
    return s;
  };

  it('elects exactly one rollout engine among the nodes, and another takes over when its node dies', async () => {
    const a = await node('node-a');
    const b = await node('node-b');
    const c = await node('node-c');
    // Every node answers the same question the same way, about the one engine.
    await waitFor(
      async () => (await Promise.all([a, b, c].map(clusterView))).some((v) => v.engine.here),
      20_000,
    );
    const views = await Promise.all([a, b, c].map(clusterView));
    expect(views.map((v) => v.store)).toEqual(['postgres', 'postgres', 'postgres']);
    expect(views.map((v) => v.node)).toEqual(['node-a', 'node-b', 'node-c']);
    expect(views.filter((v) => v.engine.here)).toHaveLength(1);
    const engine = views.find((v) => v.engine.here)!;
    for (const v of views)
      expect(v.engine).toMatchObject({ holder: engine.node, epoch: engine.engine.epoch });

    // The engine's node dies (its lease connection closes with it): a survivor takes over.
    const dead = [a, b, c][views.indexOf(engine)]!;
    await dead.crash();
    nodes.splice(nodes.indexOf(dead), 1);
    const survivors = [a, b, c].filter((s) => s !== dead);
    await waitFor(
      async () => (await Promise.all(survivors.map(clusterView))).some((v) => v.engine.here),
      20_000,
    );
    const after = await Promise.all(survivors.map(clusterView));
    expect(after.filter((v) => v.engine.here)).toHaveLength(1);
    const next = after.find((v) => v.engine.here)!;
    expect(next.engine.holder).toBe(next.node);
    expect(next.engine.epoch).toBe(engine.engine.epoch! + 1);
    // Each node records its own start in the shared audit trail.
    const audit = await fetch(`${survivors[0]!.addresses.api}/api/v1/audit?action=server.*`, {
      headers: auth(),
    });
    expect(audit.status).toBe(200);
    const actors = new Set(
      ((await audit.json()) as { items: { actor: string }[] }).items.map((e) => e.actor),
    );
    expect(actors).toEqual(new Set(['server:node-a', 'server:node-b', 'server:node-c']));
  });

  it('gives every node the URL-signing key of the first: a download URL one node signs is good on another', async () => {
    const key = (id: string) => readFileSync(join(dirs.get(id)!, 'url-signing.key'), 'utf8');
    // node-d brings a key of its own; the cluster's (node-a's, the first) replaces it.
    const dataDir = tempDir();
    writeFileSync(join(dataDir, 'url-signing.key'), `${'ab'.repeat(32)}\n`, { mode: 0o600 });
    dirs.set('node-d', dataDir);
    const d = await startTestServer({ dataDir, database: pgsrv.url, nodeId: 'node-d' });
    nodes.push(d);
    expect(key('node-d')).toBe(key('node-a'));
    expect(key('node-b')).toBe(key('node-a'));
    const other = nodes.find((n) => n !== d)!;
    const params = new URLSearchParams(
      d.ctx.urlSigner.sign('/api/v1/artifacts/x', 'x', 'dev-1', Date.now() + 60_000),
    );
    expect(
      other.ctx.urlSigner.verify('/api/v1/artifacts/x', 'x', Object.fromEntries(params), Date.now()),
    ).toBe('dev-1');
  });

  it("shows on one node's live stream what another node emitted (events relayed through PostgreSQL)", async () => {
    const [first, second] = nodes;
    const ac = new AbortController();
    const r = await fetch(`${second!.addresses.api}/api/v1/events`, { headers: auth(), signal: ac.signal });
    const reader = r.body!.getReader();
    let text = '';
    const heard = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return false;
        text += Buffer.from(value).toString();
        if (text.includes('TEST-ONLY-relayed')) return true;
      }
    })();
    // Emitted until heard: the stream on the other node may still be subscribing.
    const timer = setInterval(() => first!.ctx.bus.emit('test.marker', { marker: 'TEST-ONLY-relayed' }), 200);
    try {
      await expect(
        Promise.race([heard, new Promise((r) => setTimeout(() => r(false), 15_000))]),
      ).resolves.toBe(true);
    } finally {
      clearInterval(timer);
      ac.abort();
    }
  });
});
