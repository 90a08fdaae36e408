import { createRequire } from 'node:module';
import { Aedes } from 'aedes';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalRedis, redisMissing, startRedis } from '../../../test/cluster/redis.js';

// patches/aedes-persistence-redis@12.0.0.patch: a node starting on Redis loads every stored
// session's subscriptions. Unpatched it asked for them one client at a time, each a round trip
// after the last (50,000 sessions: 2.7–3.6 s on loopback, minutes across a network for a large
// fleet); patched, a chunk of clients at a time. This pins that the patch is applied and that
// every session is still loaded.

/** What aedes is given; the promise-based persistence it wraps answers the test's questions. */
type CallbackPersistence = {
  asyncPersistence: { subscriptionsByTopic(topic: string): Promise<{ clientId: string }[]> };
};
const require = createRequire(import.meta.url);
const redisPersistence = require('aedes-persistence-redis') as (opts: { conn: Redis }) => CallbackPersistence;
const msgpack = createRequire(require.resolve('aedes-persistence-redis'))('msgpack-lite') as {
  encode(v: unknown): Buffer;
};

const SESSIONS = 3000;
const topic = (i: number) => `flotilla/v1/devices/TEST-ONLY-${i}/commands`;

const missing = redisMissing();
if (missing) console.warn(`skipping the Redis session load test: ${missing}`);

describe.skipIf(missing !== null)('a node loading the sessions stored in Redis (a real Redis)', () => {
  let redis: LocalRedis;
  const conns: Redis[] = [];
  const brokers: Aedes[] = [];
  const broker = async (conn: Redis) => {
    conns.push(conn);
    const persistence = redisPersistence({ conn });
    const b = await Aedes.createBroker({ persistence: persistence as never });
    brokers.push(b);
    return persistence;
  };

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    for (const b of brokers) await new Promise<void>((r) => b.close(() => r()));
    for (const c of conns) c.disconnect();
    await redis?.close();
  });

  it('loads every stored session, asking Redis for many clients at once (the patch is applied)', async () => {
    // Stored as aedes-persistence-redis stores a session's subscriptions (its own encoding).
    const fill = new Redis(redis.url);
    conns.push(fill);
    for (let i = 0; i < SESSIONS; i += 500) {
      const batch = fill.pipeline();
      for (let k = i; k < Math.min(SESSIONS, i + 500); k++) {
        batch.sadd('clients', `TEST-ONLY-${k}`);
        batch.hset(`client:TEST-ONLY-${k}`, topic(k), msgpack.encode({ topic: topic(k), qos: 1 }));
      }
      await batch.exec();
    }

    // A second node starts: count how many session reads are in flight at once.
    const conn = new Redis(redis.url);
    let inFlight = 0;
    let most = 0;
    const read = conn.hgetallBuffer.bind(conn);
    conn.hgetallBuffer = ((key: string) => {
      most = Math.max(most, ++inFlight);
      return read(key).finally(() => inFlight--);
    }) as typeof conn.hgetallBuffer;
    const second = await broker(conn);
    expect(most).toBeGreaterThan(1);

    const holders = await Promise.all(
      [0, 1, SESSIONS / 2, SESSIONS - 1].map(async (i) =>
        (await second.asyncPersistence.subscriptionsByTopic(topic(i))).map((x) => x.clientId),
      ),
    );
    expect(holders).toEqual([
      ['TEST-ONLY-0'],
      ['TEST-ONLY-1'],
      [`TEST-ONLY-${SESSIONS / 2}`],
      [`TEST-ONLY-${SESSIONS - 1}`],
    ]);
  }, 120_000);
});
