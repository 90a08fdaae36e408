import { Writable } from 'node:stream';
import { deviceTopic } from '@flotilla/protocol';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandCalls, type LocalRedis, redisMissing, startRedis } from '../../../test/cluster/redis.js';
import { connectRedisSharing, type RedisSharing } from '../src/mqtt/redis-sharing.js';
import { checkLoginOrder } from './login-order-cases.js';

type Bus = {
  emit(msg: { topic: string; payload: Buffer }, done: (err?: Error) => void): void;
  on(topic: string, fn: (msg: { topic: string }, done: () => void) => void, ready?: () => void): void;
  close(done: () => void): void;
};

const missing = redisMissing();
if (missing) console.warn(`skipping the Redis sharing tests: ${missing}`);

describe.skipIf(missing !== null)('what several nodes share through Redis', () => {
  let redis: LocalRedis;
  let sharing: RedisSharing;
  const logged: string[] = [];
  const log = pino(
    { level: 'info' },
    new Writable({
      write(line, _enc, done) {
        logged.push(String(line));
        done();
      },
    }),
  );

  beforeAll(async () => {
    redis = await startRedis();
    sharing = await connectRedisSharing(redis.url, log);
  });
  afterAll(async () => {
    await new Promise<void>((r) => (sharing.mq as Bus).close(r));
    await sharing?.close();
    await redis?.close();
  });

  it('claims a login nonce once for the whole cluster, for as long as the password can verify', async () => {
    const key = `dev-1:${Date.now()}`;
    expect(await sharing.nonces.claim(key, 60_000)).toBe(true);
    expect(await sharing.nonces.claim(key, 60_000)).toBe(false);
    // Atomic: of many claims at once, one wins.
    const racing = await Promise.all(
      Array.from({ length: 20 }, () => sharing.nonces.claim(`${key}:r`, 60_000)),
    );
    expect(racing.filter(Boolean)).toHaveLength(1);
  });

  it("orders a device's logins for the whole cluster: an older password than the open session's is refused until it ends", async () => {
    await checkLoginOrder(sharing.loginOrder, `dev-order-${Date.now()}`);
  });

  it('sends commands through Redis and keeps device reports in-process', async () => {
    const bus = sharing.mq as Bus;
    const emit = (topic: string) =>
      new Promise<void>((resolve, reject) =>
        bus.emit({ topic, payload: Buffer.from('{}') }, (err) => (err ? reject(err) : resolve())),
      );
    const seen: string[] = [];
    await new Promise<void>((r) =>
      bus.on(
        'flotilla/v1/devices/+/+',
        (m, done) => {
          seen.push(m.topic);
          done();
        },
        r,
      ),
    );
    const before = await commandCalls(redis.port, 'publish');
    for (const channel of ['state', 'events', 'inventory', 'status'] as const)
      await emit(deviceTopic('dev-1', channel));
    expect(await commandCalls(redis.port, 'publish')).toBe(before);
    await emit(deviceTopic('dev-1', 'commands'));
    expect(await commandCalls(redis.port, 'publish')).toBe(before + 1);
    // Reports still reach this node's own listeners; the command comes back from Redis.
    for (let i = 0; i < 100 && !seen.includes(deviceTopic('dev-1', 'commands')); i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(seen).toContain(deviceTopic('dev-1', 'state'));
    expect(seen).toContain(deviceTopic('dev-1', 'commands'));
  });

  it('refuses a login at once while Redis is down (no queued claim), logs the loss once and the return', async () => {
    await redis.stop();
    const t0 = Date.now();
    await expect(sharing.nonces.claim(`dev-1:down:${t0}`, 60_000)).rejects.toThrow();
    for (let i = 0; i < 200 && !logged.some((l) => l.includes('redis connection lost')); i++)
      await new Promise((r) => setTimeout(r, 25));
    const lost = logged.filter((l) => l.includes('redis connection lost'));
    expect(lost.length).toBeGreaterThan(0);
    expect(JSON.parse(lost[0]!)).toMatchObject({ code: 'FLOTILLA_ERR_SERVER_REDIS', level: 50 });
    await redis.start();
    for (
      let i = 0;
      i < 400 && !(await sharing.nonces.claim(`dev-1:back:${i}`, 60_000).catch(() => false));
      i++
    )
      await new Promise((r) => setTimeout(r, 25));
    expect(await sharing.nonces.claim(`dev-1:after:${t0}`, 60_000)).toBe(true);
    // One loss per connection (bus sub and pub, sessions, nonces, node heartbeats), not one per failed reconnect.
    expect(logged.filter((l) => l.includes('redis connection lost')).length).toBeLessThanOrEqual(5);
  });
});
