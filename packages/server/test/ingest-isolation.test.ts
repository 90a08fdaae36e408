import { afterAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/index.js';
import type { SqliteDriver } from '../src/store/sqlite-driver.js';
import { cleanupDirs, enroll, eventMessage, startTestServer, stateMessage, testDevice } from './helpers.js';

let server: RunningServer | undefined;
afterAll(async () => {
  await server?.close();
  cleanupDirs();
});

describe('one report the store refuses', () => {
  it('is dropped alone: the rest of its batch is stored and every sender acknowledged', async () => {
    server = await startTestServer();
    const good = testDevice('TEST-ONLY-ingest-good');
    const bad = testDevice('TEST-ONLY-ingest-bad');
    await enroll(server, good);
    await enroll(server, bad);
    const db = server.ctx.store.sql as SqliteDriver;
    // The store refuses any write to the bad device's row (as a full or damaged table would).
    await db.exec(`CREATE TEMP TRIGGER refuse_bad BEFORE UPDATE ON devices WHEN OLD.id = '${bad.id}'
             BEGIN SELECT RAISE(ABORT, 'TEST-ONLY refused'); END`);
    const acks: (Error | null | undefined)[] = [];
    const ack = (err?: Error | null) => acks.push(err);
    const { ingestor } = server;
    ingestor.submit({ deviceId: good.id, channel: 'state', message: stateMessage(3) }, ack);
    ingestor.submit({ deviceId: bad.id, channel: 'state', message: stateMessage(3) }, ack);
    ingestor.submit({ deviceId: bad.id, channel: 'connection', online: true }, ack);
    ingestor.submit(
      { deviceId: bad.id, channel: 'events', message: eventMessage('e1', 1, 'log') as never },
      ack,
    );
    ingestor.submit({ deviceId: good.id, channel: 'connection', online: true }, ack);
    ingestor.submit(
      { deviceId: good.id, channel: 'events', message: eventMessage('e1', 1, 'log') as never },
      ack,
    );
    await ingestor.flush();

    expect(acks).toEqual([null, null, null, null, null, null]);
    const row = (id: string) =>
      db.prepare('SELECT state_seq AS seq, online FROM devices WHERE id = ?').get(id) as {
        seq: number;
        online: number;
      };
    expect(row(good.id)).toEqual({ seq: 3, online: 1 });
    expect(row(bad.id).seq).not.toBe(3);
    expect(row(bad.id).online).toBe(0);
    expect(await server.ctx.store.events.count()).toBe(1); // the good device's; the bad one's rolled back whole
    const dropped = await server.ctx.metrics.reportsDropped.get();
    expect(dropped.values.find((v) => v.labels.reason === 'store')?.value).toBe(3);
  });
});
