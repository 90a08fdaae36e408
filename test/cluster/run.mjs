#!/usr/bin/env node
// `npx -y pnpm@12.4.2 cluster-test [--devices N] [--store postgres|sqlite] [--nodes N] [--json] [--keep]`:
// starts on this machine a real PostgreSQL, Redis, nginx (HTTP and stream) and N server nodes (the
// real CLI), then simulated devices (the real agent) through the load balancer; runs a staged
// rollout and, mid-rollout, SIGKILLs the node running the rollout engine and, later, another node.
// The rollout must complete and every report a device saw acknowledged must be in the store
// exactly once. docs/cluster.md, "cluster-test", says what it proves. The last line with --json:
// {"store","nodes","devices","killed":[{"node","role"}],"rollout":{"status","healthy","failed"},
//  "reportsLost","reportsDuplicated","engineFailoverSeconds"}; exits 1 on any loss, duplicate,
// unfinished rollout or component that did not start, 2 on a usage error.
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startRollout, watchRollout } from './cluster-rollout.mjs';
import { ClusterTestError, component, startCluster } from './cluster-start.mjs';
import { compareHistories, readAcknowledged, startDevices } from './devices.mjs';
import { nginxMissing } from './nginx.mjs';
import { adminToken, missingServerFlags } from './nodes.mjs';
import { POSTGRES_MISSING, postgresBin } from './postgres.mjs';
import { exitOnSignals, keepTempDirs, stopAll, tempDir } from './processes.mjs';
import { redisMissing } from './redis.mjs';

const repo = resolve(new URL('../..', import.meta.url).pathname);
const dist = (path) => import(join(repo, path));

const USAGE = `cluster-test — a real cluster on this machine: PostgreSQL, Redis, nginx, server nodes, devices

  --devices N              simulated devices (default 300, at least 3: the rollout has 3 phases)
  --store postgres|sqlite  the store (default postgres; sqlite runs one node)
  --nodes N                server nodes (default 3; 1 with --store sqlite)
  --json                   progress on stderr, one JSON line last on stdout
  --keep                   keep the temp dirs (logs, data) for debugging
`;

function parse(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      devices: { type: 'string', default: '300' },
      store: { type: 'string', default: 'postgres' },
      nodes: { type: 'string' },
      json: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  const devices = Number(values.devices);
  const nodes = Number(values.nodes ?? (values.store === 'sqlite' ? '1' : '3'));
  const bad = (m) => new ClusterTestError('FLOTILLA_ERR_CLUSTER_TEST_USAGE', m);
  if (!['postgres', 'sqlite'].includes(values.store))
    throw bad(`--store ${values.store}: postgres or sqlite`);
  if (!Number.isInteger(devices) || devices < 3 || devices > 20_000)
    throw bad(`--devices ${values.devices}: 3 to 20000 (three rollout phases need three devices)`);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 9) throw bad(`--nodes ${values.nodes}: 1 to 9`);
  if (values.store === 'sqlite' && nodes !== 1)
    throw bad(`--store sqlite --nodes ${nodes}: an SQLite store belongs to one node; use --store postgres`);
  return { ...values, devices, nodes, store: /** @type {'postgres' | 'sqlite'} */ (values.store) };
}

/** Everything this run needs that is not installed, with the Debian package that brings it. */
function missingComponents(o) {
  const missing = [];
  const nginx = nginxMissing();
  if (nginx) missing.push(`${nginx[0]} (Debian package ${nginx[1]})`);
  if (o.store === 'postgres' && !postgresBin) missing.push(`PostgreSQL: ${POSTGRES_MISSING}`);
  if (o.nodes > 1 && redisMissing()) missing.push('redis-server (Debian package redis-server)');
  return missing;
}

async function main(o, log) {
  const started = Date.now();
  const missing = missingComponents(o);
  if (missing.length)
    throw new ClusterTestError(
      'FLOTILLA_ERR_CLUSTER_TEST_MISSING',
      `not installed: ${missing.join('; ')}`,
      'apt-get install postgresql redis-server nginx libnginx-mod-stream (.ci/run installs them)',
    );
  const lacking = missingServerFlags(o);
  if (lacking.length)
    throw new ClusterTestError(
      'FLOTILLA_ERR_CLUSTER_TEST_SERVER',
      `flotilla server has no ${lacking.join(', ')} (not in \`flotilla server --help\`): this build cannot run ${o.nodes} node(s) on ${o.store}`,
      o.store === 'postgres' || o.nodes > 1
        ? 'run `--store sqlite --nodes 1` on this build, or build a server that has these options'
        : 'deploy/nginx/flotilla-mqtt-stream.conf and the server come from different builds: build both from one checkout',
    );

  const protocol = await dist('packages/protocol/dist/index.js');
  const image = await dist('packages/image/dist/index.js');
  const sim = await dist('simulators/fleet/dist/index.js');
  const work = tempDir('flotilla-cluster-test-');
  log(`work dir ${work}${o.keep ? ' (kept)' : ''}`);

  log('TEST-ONLY keys and signed firmware 1.0.0, 1.1.0');
  const trust = protocol.generateTrustSet({ now: new Date(), rootKeys: 1, rootThreshold: 1 });
  const keysDir = join(work, 'keys-TEST-ONLY');
  await sim.writeKeys(keysDir, trust);
  const size = sim.IMAGE_SIZES.light;
  const firmware = await sim.buildSimFirmware({
    outDir: join(work, 'firmware'),
    keys: { release: trust.keys.release[0], recovery: trust.keys.recovery[0] },
    hardware: sim.HARDWARE,
    partitionSize: size.partitionSize,
    files: size.files,
    fileSize: size.fileSize,
    story: sim.DEMO_STORY.filter((s) => s.version === '1.0.0' || s.version === '1.1.0'),
  });

  const { nginx, nodes } = await startCluster({ ...o, work, keysDir, log });
  const token = adminToken(nodes[0]);
  const api = sim.httpServerHandle({
    apiUrl: nginx.apiUrl,
    dashboardUrl: nginx.apiUrl,
    mqtt: { host: '127.0.0.1', port: Number(new URL(nginx.mqttUrl).port) },
    token,
    close: async () => undefined,
  });
  const get = (base) => async (path) => {
    const res = await fetch(`${base}/api/v1${path}`, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(30_000),
    });
    if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${(await res.text()).slice(0, 300)}`);
    return res.json();
  };
  const cluster =
    o.nodes > 1 || o.store === 'postgres' ? await clusterView(get(nodes[0].url), o.store) : null;
  if (cluster) log(`cluster: store ${cluster.store}, engine on ${cluster.engine.holder}`);

  for (const version of ['1.0.0', '1.1.0']) {
    const r = firmware.releases.get(version);
    const bundlePath = join(work, 'firmware', `${version}.flot`);
    await image.writeBundle({
      manifest: r.manifest,
      imagePath: r.imagePath,
      sbom: r.sbom,
      output: bundlePath,
    });
    await api.publishRelease({ bundlePath, version });
  }
  log('releases 1.0.0 and 1.1.0 uploaded through nginx');

  log(`starting ${o.devices} simulated devices on 1.0.0 (MQTT through nginx)`);
  const devicesDir = join(work, 'devices');
  mkdirSync(devicesDir);
  const prefix = `ct-${randomBytes(2).toString('hex')}`;
  const devices = await component('flotilla-sim', null, () =>
    startDevices({
      apiUrl: nginx.apiUrl,
      token,
      devices: o.devices,
      mqttUrl: nginx.mqttUrl,
      dir: devicesDir,
      release: '1.0.0',
      prefix,
      budgetMs: 120_000 + o.devices * 2000,
    }),
  );
  const deviceIds = Array.from(
    { length: o.devices },
    (_, i) => `${prefix}-${String(i + 1).padStart(4, '0')}`,
  );
  if (devices.summary.first !== deviceIds[0] || devices.summary.last !== deviceIds.at(-1))
    throw new Error(`flotilla-sim named its devices ${devices.summary.first} … ${devices.summary.last}`);

  const outcome = await watchRollout({
    api,
    nodes,
    get,
    devices: o.devices,
    deviceChild: devices.child,
    rolloutId: await startRollout(api, o.devices),
    kills: o.nodes > 1,
    log,
  });

  log('stopping the devices (a clean shutdown), then comparing their histories with the store');
  await devices.child.kill('SIGTERM');
  const comparison = await compareHistories({
    get: get(nginx.apiUrl),
    acknowledged: readAcknowledged(devices.history),
    deviceIds,
    settleMs: 30_000,
  });
  log(
    `${comparison.acknowledged} reports acknowledged to the devices: ${comparison.lost} lost, ${comparison.duplicated} duplicated${comparison.examples.length ? ` (${comparison.examples.join('; ')})` : ''}`,
  );
  if (comparison.acknowledged === 0)
    throw new Error('the devices recorded no acknowledged report: nothing was compared');
  // A node that was not killed must still run: one that died on its own is a failure too.
  const killedNames = new Set(outcome.killed.map((k) => k.node));
  for (const n of nodes)
    if (!killedNames.has(n.id) && !n.child.running())
      throw new Error(`${n.id} was not killed but is not running; its log ends:\n${n.child.logTail()}`);
  log(`done in ${Math.round((Date.now() - started) / 1000)} s`);
  return {
    store: o.store,
    nodes: o.nodes,
    devices: o.devices,
    killed: outcome.killed,
    rollout: {
      status: outcome.view.status,
      healthy: outcome.view.totals.healthy,
      failed: outcome.view.totals.failed,
    },
    reportsLost: comparison.lost,
    reportsDuplicated: comparison.duplicated,
    engineFailoverSeconds: outcome.engineFailoverSeconds,
  };
}

/** `GET /api/v1/cluster` of a node: the interface the engine failover is measured on. */
async function clusterView(get, store) {
  let view;
  try {
    view = await get('/cluster');
  } catch (err) {
    throw new ClusterTestError(
      'FLOTILLA_ERR_CLUSTER_TEST_SERVER',
      `GET /api/v1/cluster failed (${err.message}): this server cannot say which node runs the rollout engine`,
    );
  }
  if (view.store !== store)
    throw new ClusterTestError(
      'FLOTILLA_ERR_CLUSTER_TEST_SERVER',
      `the nodes run on a ${view.store} store, not ${store}`,
    );
  return view;
}

const argv = process.argv.slice(2);
let opts;
try {
  opts = parse(argv);
} catch (err) {
  process.stderr.write(`error ${err.code ?? 'FLOTILLA_ERR_CLUSTER_TEST_USAGE'}: ${err.message}\n${USAGE}`);
  process.exit(2);
}
if (opts.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
keepTempDirs(opts.keep);
exitOnSignals(async () => {
  process.stderr.write('interrupted: stopping every process of this run\n');
  await stopAll();
});
const t0 = Date.now();
const out = opts.json ? process.stderr : process.stdout;
const log = (line) => out.write(`[${String(Math.round((Date.now() - t0) / 1000)).padStart(4)} s] ${line}\n`);
let result;
try {
  result = await main(opts, log);
} catch (err) {
  const code = err.code ?? 'FLOTILLA_ERR_CLUSTER_TEST_FAILED';
  process.stderr.write(`error ${code}: ${err.message}\n${err.hint ? `  hint: ${err.hint}\n` : ''}`);
  if (opts.json) process.stdout.write(`${JSON.stringify({ error: { code, message: err.message } })}\n`);
  await stopAll();
  process.exit(1);
}
await stopAll();
const failed = [
  result.reportsLost > 0 && `${result.reportsLost} reports lost`,
  result.reportsDuplicated > 0 && `${result.reportsDuplicated} reports duplicated`,
  result.rollout.status !== 'completed' && `rollout ${result.rollout.status}`,
].filter(Boolean);
if (opts.json) process.stdout.write(`${JSON.stringify(result)}\n`);
else {
  process.stdout.write(
    `${result.store}, ${result.nodes} node(s), ${result.devices} devices: rollout ${result.rollout.status} (${result.rollout.healthy} healthy, ${result.rollout.failed} failed), ` +
      `${result.reportsLost} reports lost, ${result.reportsDuplicated} duplicated` +
      `${result.killed.length ? `; killed ${result.killed.map((k) => `${k.node} (${k.role})`).join(', ')}` : ''}` +
      `${result.engineFailoverSeconds !== null ? `; engine failover ${result.engineFailoverSeconds} s` : ''}\n`,
  );
}
if (failed.length) process.stderr.write(`error FLOTILLA_ERR_CLUSTER_TEST_FAILED: ${failed.join(', ')}\n`);
process.exit(failed.length ? 1 : 0);
