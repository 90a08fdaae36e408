import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** What a node does when liveness tells it something (embedded-broker.ts). */
export interface NodeLivenessHandlers {
  /** Another node's heartbeat ran out: mark offline what it still holds. A rejection retries later. */
  nodeGone(nodeId: string): Promise<void>;
  /**
   * This node's own heartbeat had run out (a stalled event loop, an emptied Redis), so a survivor
   * may have marked its devices offline: record again what it holds.
   */
  revived(): Promise<void>;
}

/** Every node that ever beat and was not swept yet. */
export const NODES_KEY = 'flotilla:nodes';
export const aliveKey = (node: string) => `flotilla:node:${node}:alive`;
const sweepingKey = (node: string) => `flotilla:node:${node}:sweeping`;

/** How long one survivor's claim on a dead node's sweep holds before another may take it over. */
const SWEEP_CLAIM_MS = 60_000;

/**
 * Claims the sweep of a node, atomically: only while its heartbeat is absent, and by one survivor.
 * KEYS: alive, sweeping. ARGV: claimant, claim ms.
 */
const CLAIM = `if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0`;

/** Ends a sweep: forgets the node unless it beat again meanwhile. KEYS: alive, sweeping, nodes. ARGV: node. */
const RELEASE = `if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[1]) end
redis.call('DEL', KEYS[2])
return 1`;

/**
 * Node heartbeats in Redis: each node sets its key with a TTL every third of it and, on the same
 * tick, looks for nodes whose key ran out — a node SIGKILLed, powered off or cut from Redis tells
 * nobody, and the devices it held would otherwise stay `online` until they connect elsewhere.
 * One survivor claims each dead node (CLAIM) and calls nodeGone. A node that finds its own key
 * gone waits until no sweep of it is under way, then calls revived (the claim checks the
 * heartbeat and the node checks the claim, both atomically in Redis: one of them sees the other).
 * Stopping does not delete the key: a stop looks like a crash, and what the node's own disconnects
 * did not record offline is swept like a crashed node's.
 */
export class NodeLiveness {
  private timer: NodeJS.Timeout | null = null;
  private tick: Promise<void> | null = null;
  private beats = 0;
  private revivePending = false;
  private stopped = false;

  constructor(
    private readonly conn: Redis,
    readonly nodeId: string,
    private readonly ttlMs: number,
    private readonly handlers: NodeLivenessHandlers,
    private readonly log: Logger,
  ) {}

  /** Beats once (the node is known before it takes logins), then every third of the TTL. */
  async start(): Promise<void> {
    await this.run();
    this.timer = setInterval(() => void this.run(), Math.max(50, Math.floor(this.ttlMs / 3)));
    this.timer.unref();
  }

  stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    return this.tick ?? Promise.resolve();
  }

  /** One beat and one sweep; never two at once, never rejects (Redis down: logged by its health watch). */
  private run(): Promise<void> {
    if (this.tick) return this.tick;
    if (this.stopped) return Promise.resolve();
    this.tick = (async () => {
      try {
        await this.beat();
        await this.sweep();
      } catch (err) {
        this.log.debug({ err: (err as Error).message }, 'node heartbeat or sweep failed; retried next tick');
      } finally {
        this.tick = null;
      }
    })();
    return this.tick;
  }

  private async beat(): Promise<void> {
    const key = aliveKey(this.nodeId);
    const kept = await this.conn.set(key, String(Date.now()), 'PX', this.ttlMs, 'XX');
    if (kept === null) {
      await this.conn.set(key, String(Date.now()), 'PX', this.ttlMs);
      if (this.beats > 0) {
        this.revivePending = true;
        this.log.warn(
          { node: this.nodeId },
          'this node was silent past its heartbeat TTL: recording its devices again',
        );
      }
    }
    // Every beat: a survivor that swept this node while it stalled removed it from the set.
    await this.conn.sadd(NODES_KEY, this.nodeId);
    this.beats++;
    if (this.revivePending && (await this.conn.exists(sweepingKey(this.nodeId))) === 0) {
      await this.handlers.revived();
      this.revivePending = false;
    }
  }

  private async sweep(): Promise<void> {
    for (const node of await this.conn.smembers(NODES_KEY)) {
      if (node === this.nodeId || this.stopped) continue;
      const keys = [aliveKey(node), sweepingKey(node)];
      if ((await this.conn.eval(CLAIM, 2, ...keys, this.nodeId, SWEEP_CLAIM_MS)) !== 1) continue;
      try {
        await this.handlers.nodeGone(node);
        await this.conn.eval(RELEASE, 3, ...keys, NODES_KEY, node);
      } catch (err) {
        // Left in the set: swept again on a later tick.
        await this.conn.del(sweepingKey(node));
        this.log.error(
          { node, err: (err as Error).message },
          'marking a dead node’s devices offline failed; retried',
        );
      }
    }
  }
}
