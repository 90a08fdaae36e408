#!/usr/bin/env node
// `pnpm bench redis-bus`: what sharing aedes through Redis costs per command. The same aedes
// (the server's version, with its patches) delivers QoS 1 commands to one persistent-session
// subscriber, first with its in-process bus and memory persistence (one node, the default), then
// with mqemitter-redis + aedes-persistence-redis (several nodes, `flotilla server --redis`),
// against a local redis-server. Prints a table and, last, one JSON line.
//   --messages N   commands per measure (default 5000)
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { benchArgs, usageError } from '../args.mjs';
import { startRedis } from './local-services.mjs';

// The server's own dependencies (aedes with its patches, the Redis packages), as it loads them.
const require = createRequire(new URL('../../packages/server/package.json', import.meta.url));
const { Aedes } = await import(require.resolve('aedes'));
const mqemitterRedis = require('mqemitter-redis');
const redisPersistence = require('aedes-persistence-redis');
const { Redis } = require('ioredis');
const mqtt = require('mqtt');

const USAGE = 'usage: node bench/broker/redis-bus.mjs [--messages N]';
const { values: opts } = benchArgs(USAGE, { options: { messages: { type: 'string', default: '5000' } } });
const MESSAGES = Number(opts.messages);
if (!Number.isInteger(MESSAGES) || MESSAGES < 1) usageError(USAGE, '--messages must be a positive integer');
const ROUND_TRIPS = 500;
const PAYLOAD = Buffer.alloc(600, 'x'); // about an offer command's size without its manifest

async function measure(label, options) {
  const broker = await Aedes.createBroker(options);
  const server = createServer((s) => broker.handle(s));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId: 'bench-device', clean: false });
  await new Promise((r, j) => client.once('connect', r).once('error', j));
  await new Promise((r, j) => client.subscribe('cmd/bench-device', { qos: 1 }, (e) => (e ? j(e) : r())));
  let received = 0;
  let waiter = null;
  client.on('message', () => {
    received++;
    if (waiter && received >= waiter.n) waiter.resolve();
  });
  const receivedAll = (n) =>
    new Promise((resolve) => {
      if (received >= n) resolve();
      else waiter = { n, resolve };
    });
  const publish = () =>
    new Promise((r, j) =>
      broker.publish(
        { cmd: 'publish', topic: 'cmd/bench-device', payload: PAYLOAD, qos: 1, retain: false },
        (e) => (e ? j(e) : r()),
      ),
    );
  // Warm up, then one command at a time: publish → the device has it.
  for (let i = 0; i < 200; i++) await publish();
  await receivedAll(200);
  const latencies = [];
  for (let i = 0; i < ROUND_TRIPS; i++) {
    const t0 = process.hrtime.bigint();
    const target = received + 1;
    await publish();
    await receivedAll(target);
    latencies.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  latencies.sort((x, y) => x - y);
  // Throughput: all at once.
  const base = received;
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: MESSAGES }, publish));
  await receivedAll(base + MESSAGES);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  await new Promise((r) => client.end(false, {}, r));
  await new Promise((r) => broker.close(r));
  server.close();
  return {
    bus: label,
    p50us: Math.round(latencies[Math.floor(ROUND_TRIPS / 2)]),
    p99us: Math.round(latencies[Math.floor(ROUND_TRIPS * 0.99)]),
    perSecond: Math.round(MESSAGES / seconds),
    usPerMessage: Math.round((seconds * 1e6) / MESSAGES),
  };
}

const redis = await startRedis();
try {
  const rows = [await measure('in-process (memory persistence)', {})];
  const conn = () => new Redis(redis.url);
  const pub = new Redis(redis.url, { enableAutoPipelining: true });
  const sessions = conn();
  rows.push(
    await measure('Redis (mqemitter-redis + aedes-persistence-redis)', {
      mq: mqemitterRedis({ subConn: conn(), pubConn: pub }),
      persistence: redisPersistence({ conn: sessions }),
    }),
  );
  sessions.disconnect();
  console.log(
    `QoS 1 commands to one persistent-session device, ${MESSAGES} for throughput, ${ROUND_TRIPS} one by one`,
  );
  console.log(
    'bus'.padEnd(52),
    'p50 µs'.padStart(8),
    'p99 µs'.padStart(8),
    'msg/s'.padStart(8),
    'µs/msg'.padStart(8),
  );
  for (const r of rows)
    console.log(
      r.bus.padEnd(52),
      String(r.p50us).padStart(8),
      String(r.p99us).padStart(8),
      String(r.perSecond).padStart(8),
      String(r.usPerMessage).padStart(8),
    );
  console.log(JSON.stringify({ bench: 'redis-bus', messages: MESSAGES, rows }));
} finally {
  await redis.close();
}
