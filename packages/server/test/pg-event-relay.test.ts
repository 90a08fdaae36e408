import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventBus, type ServerEvent } from '../src/events/bus.js';
import { EVENT_CHANNEL, PgEventRelay } from '../src/events/pg-event-relay.js';
import { POSTGRES_MISSING, postgresBin, startTestPostgres, type TestPostgres } from './helpers/postgres.js';
import { silent, waitFor } from './helpers.js';

if (!postgresBin) console.warn(POSTGRES_MISSING);

// Live events between server nodes sharing one PostgreSQL (LISTEN/NOTIFY on a real server).
describe.skipIf(!postgresBin)('events relayed between nodes through PostgreSQL', () => {
  let pgsrv: TestPostgres;
  const relays: PgEventRelay[] = [];

  async function node(name: string): Promise<{ bus: EventBus; heard: ServerEvent[]; relay: PgEventRelay }> {
    const bus = new EventBus();
    const heard: ServerEvent[] = [];
    bus.subscribe((e) => heard.push(e));
    const relay = await PgEventRelay.start({ url: pgsrv.url, bus, node: name, log: silent });
    relays.push(relay);
    return { bus, heard, relay };
  }

  beforeAll(async () => {
    pgsrv = await startTestPostgres();
  });
  afterAll(async () => {
    await Promise.allSettled(relays.map((r) => r.close()));
    await pgsrv?.destroy();
  });

  it('lets every other node hear what one node emits, once, and the emitter only its own copy', async () => {
    const a = await node('node-a');
    const b = await node('node-b');
    const c = await node('node-c');
    a.bus.emit('device.state', { deviceId: 'dev-1', state: 'healthy' });
    await waitFor(() => b.heard.length === 1 && c.heard.length === 1, 10_000);
    expect(b.heard[0]).toMatchObject({ type: 'device.state', data: { deviceId: 'dev-1', state: 'healthy' } });
    // B re-emits nothing: C and A do not get the event a second time.
    b.bus.emit('rollout.updated', { rolloutId: 'r1' });
    await waitFor(() => a.heard.length === 2 && c.heard.length === 2, 10_000);
    expect(a.heard.map((e) => e.type)).toEqual(['device.state', 'rollout.updated']);
    expect(c.heard.map((e) => e.type)).toEqual(['device.state', 'rollout.updated']);
    expect(b.heard.map((e) => e.type)).toEqual(['device.state', 'rollout.updated']);
  });

  it('sends an event too big for one notification as its type with a truncated marker, not an error', async () => {
    const a = await node('big-a');
    const b = await node('big-b');
    a.bus.emit('release.created', { blob: 'x'.repeat(20_000) });
    await waitFor(() => b.heard.length === 1, 10_000);
    expect(b.heard[0]).toMatchObject({ type: 'release.created', data: { truncated: true } });
  });

  it('carries a burst of events in a few notifications, every event heard once and in order', async () => {
    const a = await node('burst-a');
    const b = await node('burst-b');
    for (let i = 0; i < 2000; i++) a.bus.emit('device.state', { deviceId: `dev-${i}`, n: i });
    await waitFor(() => b.heard.length >= 2000, 20_000);
    expect(b.heard.map((e) => e.data.n)).toEqual(Array.from({ length: 2000 }, (_, i) => i));
  });

  it('ignores garbage another database user NOTIFYs on the channel (not JSON, wrong shape)', async () => {
    const a = await node('garbage-a');
    const other = new pg.Client({ connectionString: pgsrv.url });
    await other.connect();
    try {
      await other.query('SELECT pg_notify($1, $2)', [EVENT_CHANNEL, 'not json']);
      await other.query('SELECT pg_notify($1, $2)', [EVENT_CHANNEL, '{"node":"x","type":7}']);
      await other.query('SELECT pg_notify($1, $2)', [
        EVENT_CHANNEL,
        '{"node":"x","events":[7,null,{"type":1}]}',
      ]);
      await other.query('SELECT pg_notify($1, $2)', [
        EVENT_CHANNEL,
        '{"node":"x","events":[{"type":"ok","ts":1,"data":{}}]}',
      ]);
      await waitFor(() => a.heard.length === 1, 10_000);
      expect(a.heard[0]!.type).toBe('ok');
    } finally {
      await other.end();
    }
  });

  it('listens again after PostgreSQL restarts (events sent while it was down are not replayed)', async () => {
    const a = await node('restart-a');
    const b = await node('restart-b');
    await pgsrv.stop();
    await waitFor(() => !a.relay.listening && !b.relay.listening, 20_000);
    a.bus.emit('while.down', {}); // nowhere to send it: dropped without an error
    await pgsrv.start();
    await waitFor(() => a.relay.listening && b.relay.listening, 30_000);
    a.bus.emit('after.restart', { n: 1 });
    await waitFor(() => b.heard.some((e) => e.type === 'after.restart'), 10_000);
    expect(b.heard.map((e) => e.type)).not.toContain('while.down');
  }, 60_000);
});
