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
import { ingestLanded, ingestRound, insertIngestDevices, median } from './ingest-round.mjs';

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '7' },
    json: { type: 'boolean', default: false },
  },
});
const N = Math.min(Math.max(Number(values.devices), 100), 1_000_000);
const ROUNDS = Math.min(Math.max(Number(values.rounds), 5), 100);
const dataDir = mkdtempSync(join(tmpdir(), 'flotilla-bench-ingest-'));
const server = await createServer({ dataDir, logLevel: 'silent', devKeys: true });
try {
  const { store } = server.ctx;
  const now = Date.now();
  await insertIngestDevices(store, N, now);

  const rates = [];
  for (let r = 1; r <= ROUNDS; r++) {
    const t = performance.now();
    await ingestRound(server.ingestor, N, r, now);
    const rate = (2 * N) / ((performance.now() - t) / 1000);
    rates.push(rate);
    if (!values.json) console.log(`round ${r}: ${Math.round(rate).toLocaleString('en')} reports/s`);
  }
  const med = median(rates);
  const devices = (await store.devices.countsByStatus()).accepted ?? 0;
  const { events, devicesOnLastVersion: current } = await ingestLanded(store, N, ROUNDS);
  const out = {
    devices,
    rounds: ROUNDS,
    reportsPerRound: 2 * N,
    medianReportsPerSecond: Math.round(med),
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
