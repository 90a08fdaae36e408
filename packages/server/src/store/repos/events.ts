import type { DeviceEventMessage } from '@flotilla/protocol';
import type { Db } from '../db.js';

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
  private readonly s;

  constructor(db: Db) {
    this.s = {
      insert: db.prepare(
        `INSERT OR IGNORE INTO device_events (device_id, event_id, seq, ts, kind, deployment_id, body, received)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      timeline: db.prepare<[string, number, number], Row>(
        'SELECT * FROM device_events WHERE device_id = ? AND id < ? ORDER BY id DESC LIMIT ?',
      ),
      // Ids grow with arrival, so the device index walks newest first and stops at the limit.
      receivedBefore: db.prepare<[string, number, number], Row>(
        'SELECT * FROM device_events WHERE device_id = ? AND received < ? ORDER BY id DESC LIMIT ?',
      ),
      byDeployment: db.prepare<[string], Row>(
        'SELECT * FROM device_events WHERE deployment_id = ? ORDER BY id',
      ),
      count: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM device_events'),
      countDevice: db.prepare<[string], { n: number }>(
        'SELECT COUNT(*) AS n FROM device_events WHERE device_id = ?',
      ),
    };
  }

  /** Returns false when this event id was already recorded for this device. */
  insert(deviceId: string, m: DeviceEventMessage, now: number): boolean {
    return (
      this.s.insert.run(
        deviceId,
        m.eventId,
        m.seq,
        Date.parse(m.ts),
        m.kind,
        m.deploymentId,
        JSON.stringify(m),
        now,
      ).changes === 1
    );
  }

  timeline(deviceId: string, beforeId: number, limit: number): StoredEvent[] {
    return this.s.timeline.all(deviceId, beforeId, limit).map(toEvent);
  }

  /** The device's events that arrived before `until` (ms), newest first. */
  receivedBefore(deviceId: string, until: number, limit: number): StoredEvent[] {
    return this.s.receivedBefore.all(deviceId, until, limit).map(toEvent);
  }

  byDeployment(deploymentId: string): StoredEvent[] {
    return this.s.byDeployment.all(deploymentId).map(toEvent);
  }

  count(deviceId?: string): number {
    return deviceId ? (this.s.countDevice.get(deviceId)?.n ?? 0) : (this.s.count.get()?.n ?? 0);
  }
}
