// Part 2 of `pnpm bench cluster`: reports/s stored, SQLite vs PostgreSQL, with the ingest bench's
// workload (bench/store/ingest-round.mjs: one state report and one event per device per round,
// through the server's ReportIngestor). Each store in its own fresh server; every report checked
// to have landed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from '@flotilla/server';
import { ingestLanded, ingestRound, insertIngestDevices, median } from '../store/ingest-round.mjs';

/**
 * Runs fn(server) on a fresh server (not started) over SQLite in a temp data dir, or over the
 * PostgreSQL `database`; closes it and removes the dir after.
 * @template T
 * @param {{ database?: string, nodeId: string }} o
 * @param {(server: import('@flotilla/server').FlotillaServer) => Promise<T>} fn
 * @returns {Promise<T>}
 */
export async function onFreshServer(o, fn) {
  const dataDir = mkdtempSync(join(tmpdir(), `flotilla-${o.nodeId}-`));
  const server = await createServer({
    dataDir,
    logLevel: 'silent',
    devKeys: true,
    ...(o.database ? { database: o.database, nodeId: o.nodeId } : {}),
  });
  try {
    return await fn(server);
  } finally {
    await server.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** @param {{ store: 'sqlite' | 'postgres', devices: number, rounds: number, database?: string }} o */
function ingestOn(o) {
  return onFreshServer({ database: o.database, nodeId: 'bench-ingest' }, async (server) => {
    const now = Date.now();
    await insertIngestDevices(server.ctx.store, o.devices, now);
    const rates = [];
    for (let r = 1; r <= o.rounds; r++) {
      const t = performance.now();
      await ingestRound(server.ingestor, o.devices, r, now);
      rates.push((2 * o.devices) / ((performance.now() - t) / 1000));
    }
    const landed = await ingestLanded(server.ctx.store, o.devices, o.rounds);
    if (!landed.complete)
      throw new Error(
        `FLOTILLA_ERR_BENCH: ${o.store} does not hold every report (${landed.events} events of ${o.devices * o.rounds})`,
      );
    return { medianReportsPerSecond: Math.round(median(rates)), rounds: rates.map(Math.round) };
  });
}

/** @param {{ devices: number, rounds: number, pg: { createDatabase: (name: string) => Promise<string> }, log: (s: string) => void }} o */
export async function ingestBench(o) {
  o.log(`  ingest: SQLite, ${o.devices.toLocaleString('en')} devices × ${o.rounds} rounds`);
  const sqlite = await ingestOn({ store: 'sqlite', devices: o.devices, rounds: o.rounds });
  o.log(`  ingest: PostgreSQL, the same`);
  const database = await o.pg.createDatabase('ingest');
  const postgres = await ingestOn({ store: 'postgres', devices: o.devices, rounds: o.rounds, database });
  return {
    devices: o.devices,
    rounds: o.rounds,
    reportsPerRound: 2 * o.devices,
    sqlite,
    postgres,
    postgresToSqlite: +(postgres.medianReportsPerSecond / sqlite.medianReportsPerSecond).toFixed(2),
  };
}
