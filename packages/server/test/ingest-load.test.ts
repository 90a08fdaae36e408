import type { MqttClient } from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/index.js';
import {
  cleanupDirs,
  connectDevice,
  endClients,
  enroll,
  eventMessage,
  startTestServer,
  stateMessage,
  testDevice,
  waitFor,
} from './helpers.js';

// FLOTILLA_LONG=1 runs the heavy version (10,000 devices); the default stays small enough for CI.
const DEVICES = Number(process.env.FLOTILLA_LOAD_DEVICES ?? (process.env.FLOTILLA_LONG ? 10_000 : 2000));
const ROUNDS = Number(process.env.FLOTILLA_LOAD_ROUNDS ?? 5);

let server: RunningServer | undefined;
const clients: MqttClient[] = [];
afterAll(async () => {
  await endClients(clients);
  await server?.close();
  cleanupDirs();
});

describe('report ingestion under load', () => {
  it(`records every report of ${DEVICES} devices each reporting once a second for ${ROUNDS} s`, async () => {
    server = await startTestServer();
    const url = server.addresses.mqtt!;
    const devices = Array.from({ length: DEVICES }, (_, i) => testDevice(`TEST-ONLY-load-${i}`));
    for (const d of devices) await enroll(server!, d);
    for (let i = 0; i < devices.length; i += 200)
      clients.push(...(await Promise.all(devices.slice(i, i + 200).map((d) => connectDevice(url, d)))));
    await waitFor(() => server!.broker!.connectedCount === DEVICES, 10_000, 'all devices connected');

    let sent = 0;
    const acks: Promise<unknown>[] = [];
    const started = Date.now();
    for (let round = 0; round < ROUNDS; round++) {
      const roundStart = Date.now();
      // Spread each round over the second, like independent devices.
      for (let i = 0; i < clients.length; i++) {
        const c = clients[i]!;
        const id = devices[i]!.id;
        acks.push(
          c.publishAsync(
            `flotilla/v1/devices/${id}/events`,
            JSON.stringify(eventMessage(`r${round}`, round, 'log')),
            { qos: 1 },
          ),
        );
        acks.push(
          c.publishAsync(`flotilla/v1/devices/${id}/state`, JSON.stringify(stateMessage(round)), { qos: 1 }),
        );
        sent++;
        if (i % 100 === 99)
          await new Promise((r) =>
            setTimeout(r, Math.max(0, (1000 * (i + 1)) / clients.length - (Date.now() - roundStart))),
          );
      }
      await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - roundStart))));
    }
    // A PUBACK is sent only after the report committed: once every publish is acknowledged,
    // every report must be in the store.
    await Promise.all(acks);
    const seconds = (Date.now() - started) / 1000;
    const rows = await server.ctx.store.events.count();
    const states = (await server.ctx.store.sql.get('SELECT COUNT(*) AS n FROM devices WHERE state_seq = ?', [
      ROUNDS - 1,
    ])) as { n: number };
    console.log(
      `ingest: ${DEVICES} devices, ${sent} events + ${sent} states in ${seconds.toFixed(1)} s (${Math.round((2 * sent) / seconds)} reports/s); events stored ${rows}`,
    );
    expect(rows).toBe(sent);
    expect(states.n).toBe(DEVICES);
    expect((await server.ctx.metrics.reportsRefused.get()).values[0]?.value ?? 0).toBe(0);
  }, 180_000);
});
