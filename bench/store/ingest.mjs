// Report ingestion at fleet scale: N accepted devices (default 10,000) in a fresh SQLite store,
// then R rounds in which every device sends one state report and one event, all through the
// server's own ReportIngestor (the batched-transaction path MQTT reports take). Prints reports/s
// per round and their median, and the store's row counts as a check that every report landed.
// Usage: node bench/store/ingest.mjs [--devices 10000] [--rounds 7] [--json]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createServer } from '@flotilla/server';

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '7' },
    json: { type: 'boolean', default: false },
  },
});
const N = Math.min(Math.max(Number(values.devices), 100), 1_000_000);
const ROUNDS = Math.min(Math.max(Number(values.rounds), 5), 100);
const id = (i) => `dev-${String(i).padStart(6, '0')}`;
const sha = (i) => i.toString(16).padStart(64, '0');

const dataDir = mkdtempSync(join(tmpdir(), 'flotilla-bench-ingest-'));
const server = await createServer({ dataDir, logLevel: 'silent', devKeys: true });
try {
  const { store } = server.ctx;
  const now = Date.now();
  await store.tx(async (tx) => {
    for (let i = 0; i < N; i++)
      await tx.devices.insert({ id: id(i), publicKey: sha(i), status: 'accepted', hardware: 'board-0', now });
  });

  /** Submits one state report and one event per device and resolves when all are acknowledged. */
  const round = (r) =>
    new Promise((resolve, reject) => {
      let pending = 2 * N;
      const done = (err) => {
        if (err) reject(err);
        else if (--pending === 0) resolve();
      };
      const ts = new Date(now + r * 1000).toISOString();
      for (let i = 0; i < N; i++) {
        const deviceId = id(i);
        const state = {
          schemaVersion: 1,
          type: 'state',
          seq: r,
          ts,
          version: `1.${r}.0`,
          imageSha256: sha(r),
          securityVersion: 0,
          activeSlot: 'a',
          agentState: 'idle',
          deploymentId: null,
          lastError: null,
        };
        const event = {
          schemaVersion: 1,
          type: 'event',
          eventId: `bench-${r}-${i}`,
          seq: r,
          ts,
          kind: 'log',
          deploymentId: null,
          detail: { round: r },
        };
        const okState = server.ingestor.submit({ deviceId, channel: 'state', message: state }, done);
        const okEvent = server.ingestor.submit({ deviceId, channel: 'events', message: event }, done);
        if (!okState || !okEvent) reject(new Error('ingest queue full'));
      }
    });

  const rates = [];
  for (let r = 1; r <= ROUNDS; r++) {
    const t = performance.now();
    await round(r);
    const rate = (2 * N) / ((performance.now() - t) / 1000);
    rates.push(rate);
    if (!values.json) console.log(`round ${r}: ${Math.round(rate).toLocaleString('en')} reports/s`);
  }
  const median = [...rates].sort((a, b) => a - b)[Math.floor(rates.length / 2)];
  const devices = (await store.devices.countsByStatus()).accepted ?? 0;
  const events = await store.events.count();
  const current =
    (await store.devices.countsByVersion()).find((v) => v.version === `1.${ROUNDS}.0`)?.count ?? 0;
  const out = {
    devices,
    rounds: ROUNDS,
    reportsPerRound: 2 * N,
    medianReportsPerSecond: Math.round(median),
    rows: { devices, events, devicesOnLastVersion: current },
  };
  if (values.json) console.log(JSON.stringify(out));
  else {
    console.log(
      `median: ${out.medianReportsPerSecond.toLocaleString('en')} reports/s (${ROUNDS} rounds of ${2 * N})`,
    );
    console.log(
      `rows: ${devices} devices (${current} on 1.${ROUNDS}.0), ${events} events (expected ${N * ROUNDS})`,
    );
  }
  if (events !== N * ROUNDS || current !== N) {
    console.error('FLOTILLA_ERR_BENCH: the store does not hold every report');
    process.exitCode = 1;
  }
} finally {
  await server.close();
  rmSync(dataDir, { recursive: true, force: true });
}
