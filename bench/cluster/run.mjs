#!/usr/bin/env node
// `pnpm bench cluster`: what a cluster of server nodes on PostgreSQL holds on this machine.
//   devices  N nodes (Redis, nginx stream) with --devices MQTT devices logged in and reporting
//   ingest   reports/s stored, SQLite vs PostgreSQL (the ingest bench's workload), and deployment
//            events/s of a rollout storm (--storm-devices, each reporting offer-accepted … healthy)
//   engine   rollout-engine pass time with --engine-devices in the store, SQLite and PostgreSQL
// Progress goes to stderr; a table (or with --json one JSON line) to stdout. Everything started
// (PostgreSQL, Redis, nginx, nodes, load processes) is stopped at the end, on an error and on
// Ctrl-C. docs/cluster.md "Sizing (measured)" has the figures and what they mean for 1M devices.
import { spawnSync } from 'node:child_process';
import { startPostgres } from '../../test/cluster/postgres.mjs';
import { exitOnSignals, stopAll } from '../../test/cluster/processes.mjs';
import { benchArgs, usageError } from '../args.mjs';
import { devicesBench } from './devices.mjs';
import { engineBench } from './engine.mjs';
import { ingestBench } from './ingest.mjs';
import { rolloutStormBench } from './rollout-storm.mjs';

const USAGE = `usage: node bench/cluster/run.mjs [--parts devices,ingest,engine] [--json]
  [--devices 20000] [--nodes 3] [--ramp-seconds 60] [--report-seconds 30] [--hold-seconds 60]
  [--ingest-devices 10000] [--ingest-rounds 5] [--storm-devices 5000] [--engine-devices 100000[,1000000]] [--engine-passes 3]`;
const { values: v } = benchArgs(USAGE, {
  options: {
    parts: { type: 'string', default: 'devices,ingest,engine' },
    devices: { type: 'string', default: '20000' },
    nodes: { type: 'string', default: '3' },
    'ramp-seconds': { type: 'string', default: '60' },
    'report-seconds': { type: 'string', default: '30' },
    'hold-seconds': { type: 'string', default: '60' },
    'ingest-devices': { type: 'string', default: '10000' },
    'ingest-rounds': { type: 'string', default: '5' },
    'storm-devices': { type: 'string', default: '5000' },
    'engine-devices': { type: 'string', default: '100000' },
    'engine-passes': { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});
const int = (name, min, max) => {
  const n = Number(v[name]);
  if (!Number.isInteger(n) || n < min || n > max) usageError(USAGE, `--${name} ${v[name]}: ${min} to ${max}`);
  return n;
};
const parts = v.parts.split(',');
if (parts.some((p) => !['devices', 'ingest', 'engine'].includes(p)))
  usageError(USAGE, `--parts ${v.parts}: devices, ingest and/or engine`);
const o = {
  devices: int('devices', 1, 100_000),
  nodes: int('nodes', 1, 9),
  rampSeconds: int('ramp-seconds', 0, 3600),
  reportSeconds: int('report-seconds', 1, 3600),
  holdSeconds: int('hold-seconds', 1, 3600),
  ingestDevices: int('ingest-devices', 100, 1_000_000),
  ingestRounds: int('ingest-rounds', 1, 100),
  stormDevices: int('storm-devices', 100, 1_000_000),
  enginePasses: int('engine-passes', 1, 20),
};
const engineSizes = v['engine-devices'].split(',').map(Number);
if (engineSizes.some((n) => !Number.isInteger(n) || n < 100 || n > 2_000_000))
  usageError(USAGE, `--engine-devices ${v['engine-devices']}: sizes of 100 to 2000000, comma-separated`);

const log = (s) => process.stderr.write(`${s}\n`);
exitOnSignals(stopAll);

/**
 * Each node holds up to devices/nodes connections and nginx two per device: as root, raise this
 * process's file limit (children inherit it) so no process stops at the default 20,000.
 */
function raiseFileLimit(need) {
  const r = spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${need}:${need}`]);
  if (r.status !== 0) log(`  could not raise the open-file limit to ${need}: ${String(r.stderr).trim()}`);
  return r.status === 0;
}

const out = { parts };
if (parts.includes('devices')) {
  raiseFileLimit(Math.max(65_536, 2 * o.devices + 10_000));
  log(`• devices: ${o.devices.toLocaleString('en')} across ${o.nodes} nodes`);
  out.devices = await devicesBench({ ...o, log });
}
if (parts.includes('ingest') || parts.includes('engine')) {
  // fsync on: the write rates are those of a durable database, as SQLite's are.
  const pg = await startPostgres('flotilla', { durable: true });
  try {
    if (parts.includes('ingest')) {
      log('• ingest: SQLite vs PostgreSQL');
      out.ingest = await ingestBench({ devices: o.ingestDevices, rounds: o.ingestRounds, pg, log });
      log('• ingest: a rollout storm, SQLite vs PostgreSQL');
      out.ingest.rolloutStorm = await rolloutStormBench({ devices: o.stormDevices, pg, log });
    }
    if (parts.includes('engine')) {
      log(`• engine: ${engineSizes.map((n) => n.toLocaleString('en')).join(', ')} devices`);
      out.engine = await engineBench({
        sizes: engineSizes,
        stores: ['sqlite', 'postgres'],
        passes: o.enginePasses,
        pg,
        log,
      });
    }
  } finally {
    await pg.destroy();
  }
}

if (v.json) console.log(JSON.stringify(out));
else {
  const d = out.devices;
  if (d) {
    console.log(
      `devices: ${d.connectedAtOnce}/${d.devices} connected at once over ${d.nodes} nodes (${d.loadProcesses} load processes), ` +
        `login p50 ${d.loginP50Seconds} s p99 ${d.loginP99Seconds} s, ${d.reportsAckedPerSecond} reports/s acknowledged (one per device every ${d.reportSeconds} s)`,
    );
    for (const n of d.perNode)
      console.log(`  ${n.node}: RSS ${n.rssMiB} MiB (peak ${n.peakRssMiB}), CPU ${n.cpuPercent} % of a core`);
    if (Object.keys(d.failures).length) console.log(`  failed attempts: ${JSON.stringify(d.failures)}`);
  }
  const i = out.ingest;
  if (i)
    console.log(
      `ingest (${i.devices} devices × ${i.rounds} rounds): SQLite ${i.sqlite.medianReportsPerSecond} reports/s, ` +
        `PostgreSQL ${i.postgres.medianReportsPerSecond} reports/s (×${i.postgresToSqlite})`,
    );
  const storm = i?.rolloutStorm;
  if (storm)
    console.log(
      `rollout storm (${storm.devices} devices × ${storm.eventsPerDevice} deployment events): ` +
        `SQLite ${storm.sqlite.medianEventsPerSecond} events/s, PostgreSQL ${storm.postgres.medianEventsPerSecond} events/s (median round)`,
    );
  for (const e of out.engine ?? [])
    console.log(
      `engine ${e.store} ${e.devices}: first pass ${e.firstPassSeconds} s (${e.deploymentRecords} records), ` +
        `median pass ${e.medianPassSeconds} s, phase advance ${e.advancePassSeconds} s, ` +
        `peak RSS ${e.peakRssMiB} MiB (store filled in ${e.fillSeconds} s)`,
    );
}
