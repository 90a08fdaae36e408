import type { DeviceEventMessage } from '@flotilla/protocol';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ReportIngestor } from '../../src/ingest/report-ingestor.js';
import { resolveLimits } from '../../src/limits.js';
import { createMetrics } from '../../src/metrics.js';
import type { Store } from '../../src/store/store.js';
import { addDevice, type OpenStore, stateReport } from './fixtures.js';

// The report ingest relies on one store rule: a report the store refuses is undone alone and the
// rest of its batch commits. SQLite undoes a failed statement by itself; PostgreSQL aborts the
// whole transaction unless the statement ran in a savepoint.

/** Makes the store refuse every update of one device's row, as a damaged table would. */
async function refuseUpdatesOf(s: Store, deviceId: string): Promise<void> {
  if (s.sql.dialect === 'sqlite') {
    await s.sql.run(`CREATE TRIGGER refuse_bad BEFORE UPDATE ON devices WHEN OLD.id = '${deviceId}'
      BEGIN SELECT RAISE(ABORT, 'TEST-ONLY refused'); END`);
    return;
  }
  await s.sql.run(`CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'TEST-ONLY refused'; END $$`);
  await s.sql.run(`CREATE TRIGGER refuse_bad BEFORE UPDATE ON devices FOR EACH ROW
    WHEN (OLD.id = '${deviceId}') EXECUTE FUNCTION refuse_bad()`);
}

const event = (eventId: string): DeviceEventMessage => ({
  schemaVersion: 1,
  type: 'event',
  eventId,
  seq: 1,
  ts: '2026-01-01T00:00:00Z',
  kind: 'healthy',
  deploymentId: null,
});

export function ingestCases(open: OpenStore): void {
  describe('report ingest', () => {
    it('drops a report the store refuses alone: the rest of its batch is stored and every sender acknowledged', async () => {
      const { store: s } = await open();
      await addDevice(s, 'good');
      await addDevice(s, 'bad');
      await refuseUpdatesOf(s, 'bad');
      const metrics = createMetrics();
      const ingestor = new ReportIngestor(s, resolveLimits(), pino({ level: 'silent' }), metrics, () => 100);
      const acks: (Error | null | undefined)[] = [];
      const ack = (err?: Error | null) => acks.push(err);
      ingestor.submit(
        { deviceId: 'good', channel: 'state', message: stateReport(3, { version: '1.1.0' }) },
        ack,
      );
      ingestor.submit(
        { deviceId: 'bad', channel: 'state', message: stateReport(3, { version: '1.1.0' }) },
        ack,
      );
      ingestor.submit({ deviceId: 'bad', channel: 'connection', online: true }, ack);
      ingestor.submit({ deviceId: 'bad', channel: 'events', message: event('e1') }, ack);
      ingestor.submit({ deviceId: 'good', channel: 'connection', online: false }, ack);
      ingestor.submit({ deviceId: 'good', channel: 'events', message: event('e1') }, ack);
      await ingestor.flush();
      await ingestor.close();
      expect(acks).toEqual([null, null, null, null, null, null]);
      expect(await s.devices.get('good')).toMatchObject({ stateSeq: 3, version: '1.1.0', online: true });
      expect(await s.devices.get('bad')).toMatchObject({ stateSeq: null, online: false });
      expect(await s.events.count('good')).toBe(1);
      expect(await s.events.count('bad')).toBe(0); // its event rolled back whole with the refused update
      const dropped = await metrics.reportsDropped.get();
      expect(dropped.values.find((v) => v.labels.reason === 'store')?.value).toBe(3);
    });
  });
}
