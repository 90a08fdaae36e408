import pg from 'pg';
import type { Logger } from 'pino';
import { poolConfig, redactUrl } from '../store/postgres/connection.js';
import type { EventBus, ServerEvent } from './bus.js';

/** The LISTEN/NOTIFY channel every node of one database shares. */
export const EVENT_CHANNEL = 'flotilla_events';

/** PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; stay clear of it. */
const MAX_PAYLOAD_BYTES = 7900;
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 10_000;

/** One notification: the events one node emitted since its last one. */
interface Wire {
  node: string;
  events: (ServerEvent & {
    /** The data did not fit in one notification: listeners get the type and a marker, and re-read. */
    truncated?: true;
  })[];
}

/** Events waiting while PostgreSQL is slow; beyond this the newest are dropped (and counted). */
const MAX_QUEUED = 10_000;

/**
 * Carries server events between the nodes that share one PostgreSQL, so that a dashboard's live
 * stream on any node sees what any node committed (a report ingested on node B, a rollout step of
 * the engine on node A). Each node NOTIFYs what its own bus emits and re-emits on its bus what the
 * other nodes NOTIFY. Best effort, like the stream itself: a notification sent while this node's
 * listening connection is down is not replayed (a live view re-reads on reconnect).
 */
export class PgEventRelay {
  private client: pg.Client | null = null;
  private closed = false;
  private retryMs = RECONNECT_MIN_MS;
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly queue: ServerEvent[] = [];
  private flushing = false;
  private dropped = 0;
  private readonly unforward: () => void;

  private constructor(
    private readonly url: string,
    private readonly bus: EventBus,
    readonly node: string,
    private readonly log: Logger,
  ) {
    this.unforward = bus.forwardLocal((e) => this.send(e));
  }

  /** Connects and listens; a database that cannot be reached now is retried in the background. */
  static async start(o: { url: string; bus: EventBus; node: string; log: Logger }): Promise<PgEventRelay> {
    const relay = new PgEventRelay(o.url, o.bus, o.node, o.log);
    await relay.connect();
    return relay;
  }

  /** True while this node listens (tests and /healthz-style checks). */
  get listening(): boolean {
    return this.client !== null;
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({
      ...poolConfig(this.url, { applicationName: `flotilla-events-${this.node}` }),
    });
    client.on('notification', (n) => this.receive(n.payload));
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, null));
    try {
      await client.connect();
      await client.query(`LISTEN ${EVENT_CHANNEL}`);
    } catch (err) {
      client.removeAllListeners('end');
      await client.end().catch(() => {});
      this.lost(client, err);
      return;
    }
    if (this.closed) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.retryMs = RECONNECT_MIN_MS;
  }

  private lost(client: pg.Client, err: unknown): void {
    if (this.client === client) this.client = null;
    if (this.closed || this.retryTimer) return;
    this.log.warn(
      {
        err: err instanceof Error ? err.message : undefined,
        url: redactUrl(this.url),
        retryInMs: this.retryMs,
      },
      'event relay lost PostgreSQL: other nodes’ live events are not seen until it is back',
    );
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, this.retryMs);
    this.retryTimer.unref();
    this.retryMs = Math.min(RECONNECT_MAX_MS, this.retryMs * 2);
  }

  /**
   * Queues an event; the queue goes out as few notifications as fit (one query in flight on the
   * connection at a time), so a burst of device reports costs a handful of NOTIFYs, not one each.
   */
  private send(e: ServerEvent): void {
    if (!this.client) return;
    if (this.queue.length >= MAX_QUEUED) {
      this.dropped++;
      return;
    }
    this.queue.push(e);
    if (!this.flushing) {
      this.flushing = true;
      setImmediate(() => void this.flush());
    }
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0 && this.client) {
      const client = this.client;
      const { payload, taken } = this.batch();
      this.queue.splice(0, taken);
      try {
        await client.query('SELECT pg_notify($1, $2)', [EVENT_CHANNEL, payload]);
      } catch (err) {
        this.log.warn({ err: (err as Error).message, events: taken }, 'events not relayed to other nodes');
      }
    }
    if (this.dropped > 0) {
      this.log.warn({ dropped: this.dropped }, 'live events not relayed: the relay fell behind');
      this.dropped = 0;
    }
    this.queue.length = this.client ? this.queue.length : 0;
    this.flushing = false;
  }

  /** As many queued events as fit in one notification (at least one: too big, it is truncated). */
  private batch(): { payload: string; taken: number } {
    const parts: string[] = [];
    let bytes = 0;
    for (const e of this.queue) {
      let part = JSON.stringify(e);
      if (Buffer.byteLength(part) > MAX_PAYLOAD_BYTES - 100)
        part = JSON.stringify({ type: e.type, ts: e.ts, data: {}, truncated: true });
      const size = Buffer.byteLength(part) + 1;
      if (parts.length > 0 && bytes + size > MAX_PAYLOAD_BYTES - 100) break;
      parts.push(part);
      bytes += size;
    }
    return {
      payload: `{"node":${JSON.stringify(this.node)},"events":[${parts.join(',')}]}`,
      taken: parts.length,
    };
  }

  private receive(payload: string | undefined): void {
    let wire: Wire;
    try {
      wire = JSON.parse(payload ?? '') as Wire;
    } catch {
      return; // not ours: the channel is the database's, anyone with access may NOTIFY on it
    }
    if (wire?.node === this.node || !Array.isArray(wire?.events)) return;
    for (const e of wire.events) {
      if (typeof e?.type !== 'string' || typeof e.data !== 'object' || e.data === null) continue;
      this.bus.deliverRemote({
        type: e.type,
        ts: typeof e.ts === 'number' ? e.ts : Date.now(),
        data: e.truncated ? { ...e.data, truncated: true } : e.data,
      });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unforward();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => {});
  }
}
