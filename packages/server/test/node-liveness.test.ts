import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type LocalRedis, redisMissing, startRedis } from '../../../test/cluster/redis.js';
import { aliveKey, NODES_KEY, NodeLiveness } from '../src/mqtt/node-liveness.js';

const missing = redisMissing();
if (missing) console.warn(`skipping the node liveness tests: ${missing}`);

const TTL_MS = 600;

/** Polls `cond` until true; bounded in time, fails naming what it waited for. */
async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000) {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe.skipIf(missing !== null)('node heartbeats in Redis', () => {
  let redis: LocalRedis;
  let probe: Redis;
  const conns: Redis[] = [];
  const nodes: NodeLiveness[] = [];
  /** What each node was told: `gone:<node>` or `revived`. */
  const told = new Map<string, string[]>();
  const tell = (node: string, what: string): void => {
    told.set(node, [...(told.get(node) ?? []), what]);
  };

  const startNode = async (id: string, nodeGone?: (dead: string) => Promise<void>) => {
    const conn = new Redis(redis.url);
    conns.push(conn);
    const node = new NodeLiveness(
      conn,
      id,
      TTL_MS,
      {
        nodeGone: async (dead) => {
          await nodeGone?.(dead);
          tell(id, `gone:${dead}`);
        },
        revived: async () => tell(id, 'revived'),
      },
      pino({ level: 'silent' }),
    );
    nodes.push(node);
    await node.start();
    return node;
  };

  beforeAll(async () => {
    redis = await startRedis();
    probe = new Redis(redis.url);
  });
  afterEach(async () => {
    for (const n of nodes.splice(0)) await n.stop();
    for (const c of conns.splice(0)) c.disconnect();
    await probe.flushall();
    told.clear();
  });
  afterAll(async () => {
    probe?.disconnect();
    await redis?.close();
  });

  it('has exactly one survivor mark a dead node’s devices offline, and forgets the dead node', async () => {
    await startNode('n1');
    const dead = await startNode('n2');
    await startNode('n3');
    expect((await probe.smembers(NODES_KEY)).sort()).toEqual(['n1', 'n2', 'n3']);
    // Stopped: no more heartbeats, like a SIGKILL (the key is left to run out).
    await dead.stop();
    await until('a survivor swept n2', () => [...told.values()].flat().includes('gone:n2'));
    await until('n2 forgotten', async () => !(await probe.smembers(NODES_KEY)).includes('n2'));
    // A few more ticks: nobody sweeps it again, and no live node is taken for dead.
    await new Promise((r) => setTimeout(r, TTL_MS * 2));
    const all = [...told.values()].flat();
    expect(all.filter((t) => t === 'gone:n2')).toHaveLength(1);
    expect(all.filter((t) => t !== 'gone:n2')).toEqual([]);
    expect(await probe.exists(aliveKey('n1'), aliveKey('n3'))).toBe(2);
  });

  it('keeps a dead node in the set when marking its devices offline failed, and sweeps it again', async () => {
    let failures = 1;
    await startNode('n1', async () => {
      if (failures-- > 0) throw new Error('TEST-ONLY store unwritable');
    });
    const dead = await startNode('n2');
    await dead.stop();
    await until('n2 swept after one failure', () => (told.get('n1') ?? []).includes('gone:n2'));
    expect(failures).toBe(-1);
    expect(await probe.smembers(NODES_KEY)).toEqual(['n1']);
  });

  it('has a node taken for dead record its devices again, only once the sweep of it has ended', async () => {
    await startNode('n1');
    await startNode('n2');
    // n2's heartbeat ran out (a stalled event loop looks the same from Redis) and a survivor
    // claimed its sweep.
    await probe.multi().del(aliveKey('n2')).set('flotilla:node:n2:sweeping', 'n9', 'PX', 60_000).exec();
    await until('n2 beating again', async () => (await probe.exists(aliveKey('n2'))) === 1);
    await new Promise((r) => setTimeout(r, TTL_MS));
    expect(told.get('n2') ?? []).toEqual([]);
    await probe.del('flotilla:node:n2:sweeping');
    await until('n2 revived', () => (told.get('n2') ?? []).includes('revived'));
    // n1 never claimed n2: first the other claim held it, then n2's heartbeat was back.
    expect(told.get('n1') ?? []).toEqual([]);
    expect((await probe.smembers(NODES_KEY)).sort()).toEqual(['n1', 'n2']);
  });
});
