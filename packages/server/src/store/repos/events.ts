import type { DeviceEventMessage } from '@flotilla/protocol';
import type { Sql, SqlValue } from '../sql.js';
import { type ColumnType, inChunks, valuesOf } from '../sql-rows.js';

export interface StoredEvent {
  id: number;
  deviceId: string;
  eventId: string;
  seq: number;
  ts: number;
  kind: string;
  deploymentId: string | null;
  body: DeviceEventMessage;
  received: number;
}

interface Row {
  id: number;
  device_id: string;
  event_id: string;
  seq: number;
  ts: number;
  kind: string;
  deployment_id: string | null;
  body: string;
  received: number;
}

const toEvent = (r: Row): StoredEvent => ({
  id: r.id,
  deviceId: r.device_id,
  eventId: r.event_id,
  seq: r.seq,
  ts: r.ts,
  kind: r.kind,
  deploymentId: r.deployment_id,
  body: JSON.parse(r.body) as DeviceEventMessage,
  received: r.received,
});

const INSERT =
  'INSERT INTO device_events (device_id, event_id, seq, ts, kind, deployment_id, body, received)';
const EVENT_TYPES: ColumnType[] = ['TEXT', 'TEXT', 'BIGINT', 'BIGINT', 'TEXT', 'TEXT', 'TEXT', 'BIGINT'];

/** One event's values, in the column order of INSERT. */
export function eventRow(deviceId: string, m: DeviceEventMessage, now: number): SqlValue[] {
  return [deviceId, m.eventId, m.seq, Date.parse(m.ts), m.kind, m.deploymentId, JSON.stringify(m), now];
}

/** Device events. (device, eventId) is unique, so a resent event is recorded — and counted — once. */
export class EventsRepo {
  constructor(private readonly sql: Sql) {}

  /** Returns false when this event id was already recorded for this device. */
  async insert(deviceId: string, m: DeviceEventMessage, now: number): Promise<boolean> {
    const r = await this.sql.run(
      `${INSERT} VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      eventRow(deviceId, m, now),
    );
    return r.changes === 1;
  }

  /**
   * Several events, in this order (ids grow with it), one statement per chunk. For each, whether
   * it was recorded: false when its id was already stored or came earlier in the list (the
   * statement skips a conflicting row, including one with an earlier row of the same list).
   */
  async insertMany(list: readonly { deviceId: string; message: DeviceEventMessage }[], now: number) {
    const stored = new Set<string>();
    for (const chunk of inChunks(list)) {
      const v = valuesOf(
        EVENT_TYPES,
        chunk.map((e) => eventRow(e.deviceId, e.message, now)),
      );
      const rows = await this.sql.all<{ device_id: string; event_id: string }>(
        `${INSERT} ${v.sql} ON CONFLICT DO NOTHING RETURNING device_id, event_id`,
        v.params,
      );
      for (const r of rows) stored.add(JSON.stringify([r.device_id, r.event_id]));
    }
    // A key returned once is the first of its list entries; a later one is the duplicate.
    return list.map((e) => stored.delete(JSON.stringify([e.deviceId, e.message.eventId])));
  }

  async timeline(deviceId: string, beforeId: number, limit: number): Promise<StoredEvent[]> {
    const rows = await this.sql.all<Row>(
      'SELECT * FROM device_events WHERE device_id = ? AND id < ? ORDER BY id DESC LIMIT ?',
      [deviceId, beforeId, limit],
    );
    return rows.map(toEvent);
  }

  /** The device's events that arrived before `until` (ms), newest first. */
  async receivedBefore(deviceId: string, until: number, limit: number): Promise<StoredEvent[]> {
    // Ids grow with arrival, so the device index walks newest first and stops at the limit.
    const rows = await this.sql.all<Row>(
      'SELECT * FROM device_events WHERE device_id = ? AND received < ? ORDER BY id DESC LIMIT ?',
      [deviceId, until, limit],
    );
    return rows.map(toEvent);
  }

  async byDeployment(deploymentId: string): Promise<StoredEvent[]> {
    const rows = await this.sql.all<Row>('SELECT * FROM device_events WHERE deployment_id = ? ORDER BY id', [
      deploymentId,
    ]);
    return rows.map(toEvent);
  }

  async count(deviceId?: string): Promise<number> {
    const r = deviceId
      ? await this.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM device_events WHERE device_id = ?', [
          deviceId,
        ])
      : await this.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM device_events');
    return r?.n ?? 0;
  }
}
