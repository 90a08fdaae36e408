import type { DeviceEventMessage } from '@flotilla/protocol';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { type Report, ReportIngestor } from '../../src/ingest/report-ingestor.js';
import { resolveLimits } from '../../src/limits.js';
import { createMetrics } from '../../src/metrics.js';
import type { Store } from '../../src/store/store.js';
import { addDevice, type OpenStore, refuseUpdatesOf, stateReport } from './fixtures.js';

// The report ingest relies on one store rule: a report the store refuses is undone alone and the
// rest of its batch commits. SQLite undoes a failed statement by itself; PostgreSQL aborts the
// whole transaction unless the statement ran in a savepoint.

const event = (eventId: string, over: Partial<DeviceEventMessage> = {}): DeviceEventMessage => ({
  schemaVersion: 1,
  type: 'event',
  eventId,
  seq: 1,
  ts: '2026-01-01T00:00:00Z',
  kind: 'healthy',
  deploymentId: null,
  ...over,
});

/**
 * Submits reports as one batch (they all fit one) and writes it; returns each sender's
 * acknowledgement, whether each report changed something (the applied hook), the event hook's
 * calls and the metrics.
 */
async function ingestBatch(s: Store, reports: Report[]) {
  const metrics = createMetrics();
  const ingestor = new ReportIngestor(s, resolveLimits(), pino({ level: 'silent' }), metrics, () => 100);
  const hooked: string[] = [];
  ingestor.onEvent(async (_tx, events) => {
    hooked.push(...events.map((e) => `${e.deviceId}/${e.event.eventId}`));
    return undefined;
  });
  const fresh: boolean[] = [];
  ingestor.onApplied((applied) => fresh.push(...applied.map((a) => a.fresh)));
  const acks: (Error | null | undefined)[] = [];
  for (const r of reports) expect(ingestor.submit(r, (err) => acks.push(err))).toBe(true);
  await ingestor.flush();
  await ingestor.close();
  const counter = async (c: { get(): Promise<{ values: { value: number; labels: object }[] }> }) =>
    (await c.get()).values.reduce((n, v) => n + v.value, 0);
  return {
    acks,
    fresh,
    hooked,
    duplicates: await counter(metrics.reportsDuplicate),
    dropped: await counter(metrics.reportsDropped),
  };
}

/** Devices `good` and `bad` (whose updates the store refuses), and an ingestor over them. */
async function goodAndBad(open: OpenStore) {
  const { store: s } = await open();
  await addDevice(s, 'good');
  await addDevice(s, 'bad');
  await refuseUpdatesOf(s, 'bad');
  const metrics = createMetrics();
  const ingestor = new ReportIngestor(s, resolveLimits(), pino({ level: 'silent' }), metrics, () => 100);
  return { s, metrics, ingestor };
}

export function ingestCases(open: OpenStore): void {
  describe('report ingest', () => {
    it('drops a report the store refuses alone: the rest of its batch is stored and every sender acknowledged', async () => {
      const { s, metrics, ingestor } = await goodAndBad(open);
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
    it('records an event resent within one batch once, and counts the resends as duplicates', async () => {
      const { store: s } = await open();
      await addDevice(s, 'd1');
      await addDevice(s, 'd2');
      await s.events.insert('d1', event('old'), 50);
      const out = await ingestBatch(s, [
        { deviceId: 'd1', channel: 'events', message: event('e1') },
        { deviceId: 'd1', channel: 'events', message: event('old') },
        { deviceId: 'd2', channel: 'events', message: event('e1') },
        { deviceId: 'd1', channel: 'events', message: event('e1', { seq: 2 }) },
      ]);
      expect(out.acks).toEqual([null, null, null, null]);
      expect(out.fresh).toEqual([true, false, true, false]);
      expect(out.duplicates).toBe(2);
      expect(await s.events.count('d1')).toBe(2);
      // The first of the two copies is the one kept.
      const [e1] = (await s.events.timeline('d1', Number.MAX_SAFE_INTEGER, 10)).filter(
        (e) => e.eventId === 'e1',
      );
      expect(e1?.seq).toBe(1);
      expect(await s.devices.get('d1')).toMatchObject({ online: true, lastSeen: 100 });
    });

    it('ignores an older state in the same batch as a newer one, whichever arrives first', async () => {
      const { store: s } = await open();
      for (const id of ['newer-first', 'older-first', 'restarted']) await addDevice(s, id);
      await s.devices.applyState('restarted', stateReport(40), 10);
      const out = await ingestBatch(s, [
        { deviceId: 'newer-first', channel: 'state', message: stateReport(5, { version: '1.5.0' }) },
        { deviceId: 'older-first', channel: 'state', message: stateReport(3, { version: '1.3.0' }) },
        { deviceId: 'newer-first', channel: 'state', message: stateReport(3, { version: '1.3.0' }) },
        { deviceId: 'older-first', channel: 'state', message: stateReport(5, { version: '1.5.0' }) },
        // seq restarted (an agent reinstalled) but later in time: applied.
        {
          deviceId: 'restarted',
          channel: 'state',
          message: stateReport(1, { version: '2.0.0', ts: '2026-01-02T00:00:00Z' }),
        },
      ]);
      expect(out.acks).toEqual([null, null, null, null, null]);
      expect(await s.devices.get('newer-first')).toMatchObject({ stateSeq: 5, version: '1.5.0' });
      expect(await s.devices.get('older-first')).toMatchObject({ stateSeq: 5, version: '1.5.0' });
      expect(await s.devices.get('restarted')).toMatchObject({ stateSeq: 1, version: '2.0.0' });
    });

    it('drops a report with a value the store refuses alone, and stores the rest of its batch', async () => {
      const { store: s } = await open();
      for (const id of ['a', 'b', 'c']) await addDevice(s, id);
      const out = await ingestBatch(s, [
        { deviceId: 'a', channel: 'state', message: stateReport(2, { version: '1.2.0' }) },
        { deviceId: 'b', channel: 'state', message: stateReport(2, { version: 'bad\u0000version' }) },
        { deviceId: 'b', channel: 'events', message: event('e1') },
        { deviceId: 'c', channel: 'events', message: event('bad\u0000id') },
        { deviceId: 'c', channel: 'events', message: event('e2', { seq: 2 ** 60 }) },
        { deviceId: 'c', channel: 'events', message: event('e3') },
      ]);
      expect(out.acks).toEqual([null, null, null, null, null, null]);
      expect(out.fresh).toEqual([true, false, true, false, false, true]);
      expect(out.dropped).toBe(3);
      expect(await s.devices.get('a')).toMatchObject({ stateSeq: 2, version: '1.2.0' });
      expect(await s.devices.get('b')).toMatchObject({ stateSeq: null, version: null, online: true });
      expect(await s.events.count('b')).toBe(1);
      expect(await s.events.count('c')).toBe(1);
    });

    it('applies connection changes in their order with the other reports of the same device', async () => {
      const { store: s } = await open();
      for (const id of ['state-then-off', 'off-then-state', 'moved']) await addDevice(s, id);
      const out = await ingestBatch(s, [
        { deviceId: 'state-then-off', channel: 'state', message: stateReport(1) },
        { deviceId: 'state-then-off', channel: 'connection', online: false },
        { deviceId: 'off-then-state', channel: 'connection', online: false },
        { deviceId: 'off-then-state', channel: 'events', message: event('e1') },
        { deviceId: 'moved', channel: 'connection', online: true, node: 'n1' },
        { deviceId: 'moved', channel: 'connection', online: false, node: 'n2' }, // left n2 already
        { deviceId: 'moved', channel: 'connection', online: true, node: 'n2' },
        { deviceId: 'moved', channel: 'connection', online: false, node: 'n1' }, // n1 no longer holds it
      ]);
      expect(out.fresh).toEqual([true, true, true, true, true, false, true, false]);
      expect(await s.devices.get('state-then-off')).toMatchObject({ stateSeq: 1, online: false });
      expect(await s.devices.get('off-then-state')).toMatchObject({ online: true, lastSeen: 100 });
      expect(await s.devices.get('moved')).toMatchObject({ online: true });
      expect(await s.devices.onlineOn('n2')).toEqual(['moved']);
    });

    it('hands a new event that names a deployment to the event hook, and keeps every event in arrival order', async () => {
      const { store: s } = await open();
      await addDevice(s, 'd1');
      const out = await ingestBatch(s, [
        { deviceId: 'd1', channel: 'events', message: event('e1') },
        { deviceId: 'd1', channel: 'events', message: event('e2', { deploymentId: 'dep-1' }) },
        { deviceId: 'd1', channel: 'events', message: event('e3') },
        { deviceId: 'd1', channel: 'events', message: event('e2', { deploymentId: 'dep-1' }) },
      ]);
      expect(out.hooked).toEqual(['d1/e2']);
      expect(out.fresh).toEqual([true, true, true, false]);
      const timeline = await s.events.timeline('d1', Number.MAX_SAFE_INTEGER, 10);
      expect(timeline.map((e) => e.eventId)).toEqual(['e3', 'e2', 'e1']);
    });

    it('applies a report delivered alone in its own transaction, and drops one the store refuses alone', async () => {
      const { s, metrics, ingestor } = await goodAndBad(open);
      const fresh: boolean[] = [];
      ingestor.onApplied((applied) => fresh.push(...applied.map((a) => a.fresh)));
      await ingestor.applyNow({ deviceId: 'bad', channel: 'events', message: event('e1') });
      await ingestor.applyNow({ deviceId: 'good', channel: 'events', message: event('e1') });
      await ingestor.applyNow({ deviceId: 'good', channel: 'events', message: event('e1') });
      await ingestor.applyNow({ deviceId: 'bad', channel: 'state', message: stateReport(2) });
      await ingestor.applyNow({ deviceId: 'good', channel: 'state', message: stateReport(2) });
      expect(fresh).toEqual([false, true, false, false, true]);
      expect(await s.events.count('bad')).toBe(0);
      expect(await s.events.count('good')).toBe(1);
      expect(await s.devices.get('good')).toMatchObject({ stateSeq: 2, online: true });
      expect(await s.devices.get('bad')).toMatchObject({ stateSeq: null, online: false });
      const dropped = await metrics.reportsDropped.get();
      expect(dropped.values.find((v) => v.labels.reason === 'store')?.value).toBe(2);
      await ingestor.close();
    });
  });
}
