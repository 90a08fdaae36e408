#!/usr/bin/env node
// `pnpm bench [name...]`: runs the benchmarks (after `tsc -b`) one after the other; each prints
// its own table. With no name it lists them. Long campaigns stay here, never in `pnpm test`.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { benchArgs, usageError } from './args.mjs';

const BENCHES = {
  delta: {
    script: 'delta/run.mjs',
    args: [],
    what: 'our delta codec vs bsdiff, xdelta3, zstd --patch-from on real pairs',
  },
  'delta-by-format': {
    script: '../packages/image/bench/delta-by-format.mjs',
    args: [],
    what: 'delta sizes between demo images per filesystem format',
  },
  agent: {
    script: 'agent/memory.mjs',
    args: ['256'],
    what: 'agent idle memory and peak memory of a 256 MiB install',
  },
  fleet: {
    script: 'fleet/run.mjs',
    args: ['--devices', '1000'],
    what: '1,000 simulated devices: connect, rollout with deltas, reconnect storm',
  },
  vulns: {
    script: 'vulns/match.mjs',
    args: ['--records', '10000', '--packages', '5000'],
    what: 'matching 10,000 OSV records against a 5,000-package SBOM',
  },
  search: {
    script: 'devices/search.mjs',
    args: ['--devices', '100000'],
    what: 'device search (id, tag, group, version, hardware, status, pages) at 100,000 devices',
  },
  ingest: {
    script: 'store/ingest.mjs',
    args: ['--devices', '10000'],
    what: '10,000 devices: state reports and events through the report ingestor into SQLite',
  },
  'redis-bus': {
    script: 'broker/redis-bus.mjs',
    args: ['--messages', '5000'],
    what: 'QoS 1 commands through aedes: in-process bus vs shared through Redis (`flotilla server --redis`)',
  },
  storm: {
    script: 'fleet/storm.mjs',
    args: ['--devices', '19000'],
    what: '19,000 devices logging in at once: Flotilla vs Mosquitto, fresh and after a SIGKILL',
  },
  cluster: {
    script: 'cluster/run.mjs',
    args: [],
    what: 'nodes on PostgreSQL: 20,000 devices across 3 nodes, reports/s PostgreSQL vs SQLite, engine pass at 100,000',
  },
};

const USAGE = [
  'usage: pnpm bench <name> [<name>...] [--flags passed to each]\n',
  ...Object.entries(BENCHES).map(([name, b]) => `  ${name.padEnd(16)} ${b.what}`),
].join('\n');
// The names come first; everything from the first flag on is passed to each bench unparsed (its
// values too, e.g. `--devices 500`): each bench parses its own flags strictly and stops on a
// mistyped one. Only the names are parsed here (strict, positionals only).
const argv = process.argv.slice(2);
const firstFlag = argv.findIndex((a) => a.startsWith('-'));
const passThrough = firstFlag < 0 ? [] : argv.slice(firstFlag);
const { positionals: names } = benchArgs(USAGE, {
  args: firstFlag < 0 ? argv : argv.slice(0, firstFlag),
  allowPositionals: true,
});
if (names.length === 0) {
  // `pnpm bench` and `pnpm bench --help` list the benches; flags without a name go nowhere.
  if (passThrough.length > 0 && !['--help', '-h'].includes(passThrough[0]))
    usageError(USAGE, `name a benchmark before its flags (${passThrough.join(' ')})`);
  console.log(USAGE);
  process.exit(0);
}
const unknown = names.find((name) => !BENCHES[name]);
if (unknown) usageError(USAGE, `unknown benchmark ${unknown}`);
let failed = 0;
for (const name of names) {
  const b = BENCHES[name];
  console.log(`\n=== ${name}: ${b.what}`);
  const script = fileURLToPath(new URL(b.script, import.meta.url));
  const r = spawnSync(process.execPath, [script, ...(passThrough.length ? passThrough : b.args)], {
    stdio: 'inherit',
  });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
