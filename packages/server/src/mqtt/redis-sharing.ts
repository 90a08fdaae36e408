import { createRequire } from 'node:module';
import { parseDeviceTopic } from '@flotilla/protocol';
import { Redis, type RedisOptions } from 'ioredis';
import mqemitterRedis from 'mqemitter-redis';
import type { Logger } from 'pino';
import { ServerError } from '../errors.js';
import type { LoginOrder } from './login-order.js';
import { NodeLiveness, type NodeLivenessHandlers } from './node-liveness.js';

/** The package ships no types: an aedes persistence on an existing ioredis connection. */
const redisPersistence = createRequire(import.meta.url)('aedes-persistence-redis') as (opts: {
  conn: Redis;
}) => unknown;

/** How long a start waits for Redis to answer before it refuses to start. */
const START_TIMEOUT_MS = 5_000;

/** Claims a login nonce for the whole cluster: false when any node already claimed it. */
export interface SharedNonces {
  claim(key: string, ttlMs: number): Promise<boolean>;
}

/**
 * What several server nodes share through one Redis (docs/server.md, "Several nodes"): the
 * broker's message bus (mqemitter-redis: a command published on any node reaches the node that
 * holds the device's connection), its sessions, subscriptions and QoS 1 queues
 * (aedes-persistence-redis: a device that moves to another node finds its session there) and the
 * login nonces (`SET NX PX`: a password accepted by one node is a replay on every other) and the
 * order of each device's logins (a stale login on one node cannot close a newer session on another).
 */
export interface RedisSharing {
  /** aedes' `mq`. */
  readonly mq: unknown;
  /** aedes' `persistence`. */
  readonly persistence: unknown;
  readonly nonces: SharedNonces;
  /** Which login of a device may hold its session, for the whole cluster (login-order.ts). */
  readonly loginOrder: LoginOrder;
  /** Starts this node's heartbeat and the watch for dead nodes (node-liveness.ts); stopped by close. */
  watchNodes(nodeId: string, ttlMs: number, handlers: NodeLivenessHandlers): Promise<void>;
  close(): Promise<void>;
}

/** Checks that Redis answers (else FLOTILLA_ERR_SERVER_REDIS), then opens the shared parts. */
export async function connectRedisSharing(url: string, log: Logger): Promise<RedisSharing> {
  await checkReachable(url);
  const health = new RedisHealth(log);
  // A connection that logs its losses and returns: a node survives a Redis restart.
  const open = (role: string, extra: RedisOptions = {}) => {
    const conn = new Redis(url, {
      retryStrategy: (times) => Math.min(times * 100, 2_000),
      ...extra,
    });
    health.watch(role, conn);
    return conn;
  };
  const sub = open('bus-sub');
  const pub = open('bus-pub', { enableAutoPipelining: true });
  const sessions = open('sessions', { maxRetriesPerRequest: 5 });
  // A login must not wait for Redis to come back: refused at once ('busy'), the device retries.
  const logins = open('nonces', { enableOfflineQueue: false, maxRetriesPerRequest: 0 });
  // Heartbeats are not queued while Redis is away: a late one would say nothing true.
  const nodes = open('nodes', { enableOfflineQueue: false, maxRetriesPerRequest: 0 });
  const conns = [sub, pub, sessions, logins, nodes];
  // Connected before the broker takes logins (the nonce connection queues nothing).
  try {
    await Promise.all(conns.map(whenReady));
  } catch (cause) {
    health.closing = true;
    for (const c of conns) c.disconnect();
    throw new ServerError('FLOTILLA_ERR_SERVER_REDIS', `${redacted(url)}: ${(cause as Error).message}`, {
      cause,
    });
  }
  const mq = mqemitterRedis({ subConn: sub, pubConn: pub });
  // Its connections' errors are logged by `health`; unheard, this emitter would throw them.
  (mq as unknown as { state: NodeJS.EventEmitter }).state.on('error', () => undefined);
  keepReportsLocal(mq as unknown as LocalEmitter);
  const persistence = redisPersistence({ conn: sessions });
  let liveness: NodeLiveness | null = null;
  return {
    mq,
    persistence,
    async watchNodes(nodeId, ttlMs, handlers) {
      liveness = new NodeLiveness(nodes, nodeId, ttlMs, handlers, log);
      await liveness.start();
    },
    nonces: {
      async claim(key, ttlMs) {
        return (await logins.set(`flotilla:nonce:${key}`, '1', 'PX', ttlMs, 'NX')) === 'OK';
      },
    },
    loginOrder: {
      async claim(deviceId, ts, ttlMs) {
        return (await logins.eval(CLAIM_NEWEST, 1, loginKey(deviceId), ts, ttlMs)) === 1;
      },
      async release(deviceId, ts) {
        // Redis away: the record expires on its own (and only holds off older passwords meanwhile).
        await logins.eval(RELEASE_NEWEST, 1, loginKey(deviceId), ts).catch(() => undefined);
      },
    },
    async close() {
      // The bus is closed by aedes (its `close`); the rest here.
      await liveness?.stop();
      health.closing = true;
      await Promise.all([sessions, logins, nodes].map((c) => c.quit().catch(() => undefined)));
    },
  };
}

const loginKey = (deviceId: string) => `flotilla:login:${deviceId}`;

/** Atomic: refuse a password older than the open session's, else record this one. */
const CLAIM_NEWEST = `local held = redis.call('GET', KEYS[1])
if held and tonumber(held) > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;

/** Atomic: forget the session's record unless a newer login replaced it. */
const RELEASE_NEWEST = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

async function checkReachable(url: string): Promise<void> {
  const probe = new Redis(url, {
    lazyConnect: true,
    connectTimeout: START_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    await probe.ping();
  } catch (cause) {
    throw new ServerError('FLOTILLA_ERR_SERVER_REDIS', `${redacted(url)}: ${(cause as Error).message}`, {
      cause,
    });
  } finally {
    probe.disconnect();
  }
}

function whenReady(conn: Redis): Promise<void> {
  if (conn.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      conn.off('ready', onReady);
      reject(new Error(`no connection within ${START_TIMEOUT_MS} ms`));
    }, START_TIMEOUT_MS);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    conn.once('ready', onReady);
  });
}

/** The URL without its password, for messages and logs. */
export function redacted(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'redis URL';
  }
}

interface LocalEmitter {
  emit(msg: { topic: string }, done?: (err?: Error) => void): void;
  /** mqemitter-redis keeps the in-process emit under this name. */
  _emit(msg: { topic: string }, done?: (err?: Error) => void): void;
}

/**
 * Device reports are ingested by the node that holds the device's connection, in the broker's
 * `authorizePublish` hook, and no node subscribes to them: sending them to Redis would only make
 * every report cost a Redis round trip (and fail while Redis is down). They stay in-process;
 * commands and the broker's own `$SYS` messages go through Redis.
 */
function keepReportsLocal(mq: LocalEmitter): void {
  const shared = mq.emit.bind(mq);
  mq.emit = (msg, done) => {
    const t = parseDeviceTopic(msg.topic);
    if (t && t.channel !== 'commands') mq._emit(msg, done);
    else shared(msg, done);
  };
}

/** Logs each Redis connection's loss once and its return, not every failed reconnect. */
class RedisHealth {
  closing = false;
  private readonly down = new Set<string>();

  constructor(private readonly log: Logger) {}

  watch(role: string, conn: Redis): void {
    conn.on('error', (err: Error) => {
      if (this.closing || this.down.has(role)) return;
      this.down.add(role);
      this.log.error(
        { code: 'FLOTILLA_ERR_SERVER_REDIS', role, err: err.message },
        'redis connection lost: device logins are refused and commands wait until it is back',
      );
    });
    conn.on('ready', () => {
      if (!this.down.delete(role)) return;
      this.log.info({ role }, 'redis connection back');
    });
  }
}
