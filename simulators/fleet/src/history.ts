import { appendFileSync } from 'node:fs';
import type { TransportFactory } from './agent-wiring.js';

/** One line of a `--history` file: a report the broker acknowledged (PUBACK) to this device. */
export interface AcknowledgedReport {
  deviceId: string;
  eventId: string;
  kind: string;
}

/**
 * The devices' own record of what they delivered: every durable report (QoS 1 event) is appended
 * to `file` as one JSON line once the broker acknowledged it — the moment the agent removes it
 * from its outbox. A cluster test compares this with what the server stored: a line here that
 * the server does not hold is a lost report. Off unless asked for; one small append per report.
 */
export function recordAcknowledged(factory: TransportFactory, file: string): TransportFactory {
  return (ctx) => {
    const transport = factory(ctx);
    const publish = transport.publish.bind(transport);
    transport.publish = async (channel, payload, qos) => {
      await publish(channel, payload, qos);
      if (channel !== 'events' || qos !== 1) return;
      const { eventId, kind } = JSON.parse(payload) as { eventId: string; kind: string };
      const line: AcknowledgedReport = { deviceId: ctx.deviceId, eventId, kind };
      // O_APPEND of one short line: whole lines even with many devices in one process.
      appendFileSync(file, `${JSON.stringify(line)}\n`);
    };
    return transport;
  };
}
