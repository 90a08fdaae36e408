import type { DeviceEventMessage } from '@flotilla/protocol';
import type { Sql } from '../sql.js';

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

/** Device events. (device, eventId) is unique, so a resent event is recorded — and counted — once. */
export class EventsRepo {
  constructor(private readonly sql: Sql) {}

  /** Returns false when this event id was already recorded for this device. */
  async insert(deviceId: string, m: DeviceEventMessage, now: number): Promise<boolean> {
    const r = await this.sql.run(
      `INSERT INTO device_events (device_id, event_id, seq, ts, kind, deployment_id, body, received)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      [deviceId, m.eventId, m.seq, Date.parse(m.ts), m.kind, m.deploymentId, JSON.stringify(m), now],
    );
    return r.changes === 1;
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
