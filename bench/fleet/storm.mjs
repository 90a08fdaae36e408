#!/usr/bin/env node
// Reconnect storm: N devices connect at once — to a fresh broker, then again after the broker was
// SIGKILLed and restarted — against the Flotilla server (embedded aedes, each login an ed25519-signed
// password checked and its nonce written to SQLite) and, side by side in the same run, Mosquitto 2
// (static per-device passwords, its own PBKDF2 hashes, the same ACL). A device is "in" when its
// CONNACK, SUBACK (commands topic) and PUBACK (its state report) have arrived: the agent's own
// connect sequence. The load comes from P processes of raw MQTT connections (storm-worker.mjs).
// Prints, per broker and round: time until every device is in (and p50/p90/p99), attempts, refusals
// by reason, broker CPU seconds and peak memory.
// `flotilla-cluster`: two server processes sharing Redis (`--redis`, `--mqtt-proxy-protocol`) behind
// nginx stream (the shipped deploy/nginx/flotilla-mqtt-stream.conf); its second round SIGKILLs one
// node and that node's devices log in again, through nginx, to the other (the devices of the
// surviving node stay connected: counted as in, not timed).
// Usage: node bench/fleet/storm.mjs [--devices N] [--processes P] [--brokers flotilla,mosquitto,flotilla-cluster]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderMosquittoAcl } from '@flotilla/protocol';
import { mosquittoHash } from '@flotilla/server';
import { benchArgs, usageError } from '../args.mjs';
import { startNginxStream, startRedis } from '../broker/local-services.mjs';
import { cpuSeconds, peakRssBytes, sampler, spawnServer } from './server-process.mjs';
import { bulkRegister, startWorker } from './storm-load.mjs';

const USAGE =
  'usage: node bench/fleet/storm.mjs [--devices N (1-19500)] [--processes P] [--brokers flotilla,mosquitto,flotilla-cluster] [--rounds first,restart] [--spread-ms S] [--pin]';
const { values: opts } = benchArgs(USAGE, {
  options: {
    devices: { type: 'string', default: '19000' },
    processes: { type: 'string', default: '2' },
    brokers: { type: 'string', default: 'flotilla,mosquitto' },
    rounds: { type: 'string', default: 'first,restart' },
    'spread-ms': { type: 'string', default: '1000' },
    pin: { type: 'boolean', default: false },
  },
});
const devices = Number(opts.devices);
const processes = Number(opts.processes);
const brokers = opts.brokers.split(',');
const rounds = opts.rounds.split(',');
// How the devices' first attempts are spread: 0 = all in one synchronous pass (a burst no real
// fleet produces, and one that overflows every accept queue); 1000 = within one second, as the
// agents' jittered reconnects (first retry after 0.5–1 s) arrive after a broker restart.
const spreadMs = Number(opts['spread-ms']);
// --pin: the broker on CPU 0, the load processes on CPU 1 (taskset), so the broker's figures are
// those of one dedicated core, as on a server that does not also run 19,000 devices.
const pin = opts.pin;
if (
  !Number.isInteger(devices) ||
  devices < 1 ||
  devices > 19_500 ||
  !Number.isInteger(processes) ||
  processes < 1 ||
  processes > 16 ||
  !brokers.every((b) => ['flotilla', 'mosquitto', 'flotilla-cluster'].includes(b)) ||
  !rounds.every((r) => ['first', 'restart'].includes(r)) ||
  !Number.isInteger(spreadMs) ||
  spreadMs < 0
)
  usageError(USAGE, 'a value is out of range');
const ROUND_TIMEOUT_MS = 180_000;
const say = (s) => process.stderr.write(`${s}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitPort(port, timeoutMs) {
  const { connect } = await import('node:net');
  for (const end = Date.now() + timeoutMs; Date.now() < end; await sleep(50)) {
    const ok = await new Promise((r) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) return;
  }
  throw new Error(`nothing listens on port ${port}`);
}

/** Mosquitto 2 with a password file and the Flotilla ACL, persistence off, on loopback. */
async function startMosquitto(dir, credentials) {
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  const serverUser = 'flotilla-server';
  await writeFile(
    join(dir, 'passwd'),
    `${[`${serverUser}:${mosquittoHash('TEST-ONLY-not-used')}`, ...credentials.map((c) => `${c.deviceId}:${c.hash}`)].join('\n')}\n`,
    { mode: 0o600 },
  );
  await writeFile(join(dir, 'acl'), renderMosquittoAcl(serverUser));
  await writeFile(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous false',
      `password_file ${join(dir, 'passwd')}`,
      `acl_file ${join(dir, 'acl')}`,
      'persistence false',
      'max_connections -1',
      'max_queued_messages 100',
      'user root',
      'log_dest none',
      '',
    ].join('\n'),
  );
  let proc;
  process.once('exit', () => proc?.kill('SIGKILL'));
  const boot = async () => {
    proc = spawn('mosquitto', ['-c', conf], { stdio: 'ignore' });
    await waitPort(port, 10_000);
  };
  await boot();
  return {
    mqtt: { host: '127.0.0.1', port },
    pid: () => proc.pid,
    died: () => null,
    kill: async () => {
      proc.kill('SIGKILL');
      await new Promise((r) => (proc.exitCode !== null || proc.signalCode ? r() : proc.once('exit', r)));
    },
    restart: boot,
    close: async () => {
      proc.kill('SIGTERM');
      await new Promise((r) => (proc.exitCode !== null ? r() : proc.once('exit', r)));
    },
  };
}

/** Redis, two server processes on one data dir sharing it, nginx stream in front of both. */
async function startCluster(dataDir) {
  const redis = await startRedis();
  const serverOptions = {
    redis: redis.url,
    mqttProxyProtocol: true,
    logLevel: process.env.FLOTILLA_BENCH_CLUSTER_LOG ?? 'error',
  };
  const first = await spawnServer({ dataDir, serverOptions });
  const second = await spawnServer({ dataDir, serverOptions });
  const node = (s) => `${s.mqtt.host}:${s.mqtt.port}`;
  const nginx = await startNginxStream([node(first), node(second)]);
  let secondKilled = false;
  return {
    first,
    mqtt: nginx.mqtt,
    pid: () => first.pid(),
    pids: () => [first.pid(), ...(secondKilled ? [] : [second.pid()])],
    died: () => first.died() ?? (secondKilled ? null : second.died()),
    async killSecond() {
      secondKilled = true;
      await second.kill();
    },
    async close() {
      await nginx.close();
      await second.close();
      await first.close();
      await redis.close();
    },
  };
}

/**
 * The kernel's TCP counters (Linux /proc/net/netstat, machine-wide: the bench is the only load
 * here): connections dropped because the listener's accept queue was full, and the SYNs clients
 * had to send again (1 s, 3 s, 7 s… later) — what a storm's tail is made of.
 */
async function tcpCounters() {
  try {
    const lines = (await readFile('/proc/net/netstat', 'utf8')).split('\n');
    const i = lines.findIndex((l) => l.startsWith('TcpExt:'));
    const names = lines[i].split(/\s+/);
    const values = lines[i + 1].split(/\s+/).map(Number);
    const get = (n) => values[names.indexOf(n)] ?? 0;
    return { acceptQueueOverflows: get('ListenOverflows'), synRetransmits: get('TCPSynRetrans') };
  } catch {
    return { acceptQueueOverflows: 0, synRetransmits: 0 };
  }
}

/** The kernel's cap on a listener's accept queue (Flotilla asks for 65,535, Mosquitto for 100). */
async function somaxconn() {
  return Number((await readFile('/proc/sys/net/core/somaxconn', 'utf8').catch(() => '0')).trim());
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

/** Pins a process and all its threads to one CPU (Linux taskset), when --pin was given. */
function pinTo(pid, cpu) {
  if (!pin) return;
  const r = spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)]);
  if (r.status !== 0) throw new Error(`taskset failed: ${r.stderr}`);
}

/** Fires every device at once and waits until all are in (or the round times out). */
async function round(workers, broker, name) {
  await Promise.all(workers.map((w) => w.request({ cmd: 'prepare' })));
  pinTo(broker.pid(), 0);
  for (const w of workers) pinTo(w.pid, 1);
  // A cluster's CPU and memory are those of its live nodes together.
  const pids = () => broker.pids?.() ?? [broker.pid()];
  const cpu = () => pids().reduce((a, p) => a + cpuSeconds(p), 0);
  const cpu0 = cpu();
  const load0 = (await Promise.all(workers.map((w) => w.request({ cmd: 'stats' })))).reduce(
    (a, s) => a + s.stats.cpuSeconds,
    0,
  );
  const tcp0 = await tcpCounters();
  const t0 = Date.now();
  await Promise.all(workers.map((w) => w.request({ cmd: 'go', spreadMs })));
  let stats;
  for (;;) {
    const died = broker.died();
    if (died) throw new Error(`broker died (code ${died.code}, signal ${died.signal})`);
    stats = await Promise.all(workers.map((w) => w.request({ cmd: 'stats' })));
    const n = stats.reduce((a, s) => a + s.stats.in, 0);
    if (n >= devices || Date.now() - t0 > ROUND_TIMEOUT_MS) break;
    await sleep(100);
  }
  const tcp1 = await tcpCounters();
  stats = await Promise.all(workers.map((w) => w.request({ cmd: 'stats', times: true })));
  const times = stats
    .flatMap((s) => s.stats.doneAt)
    .map((t) => t - t0)
    .sort((a, b) => a - b);
  // Devices whose connection survived the round's start (a cluster's surviving node): in, not timed.
  const stayed = stats.reduce((a, s) => a + s.stats.stayed, 0);
  const allIn = times.length + stayed === devices;
  const failures = {};
  for (const s of stats)
    for (const [k, v] of Object.entries(s.stats.failures)) failures[k] = (failures[k] ?? 0) + v;
  const r = {
    round: name,
    in: times.length + stayed,
    // Of those, still connected from the previous round: the round timed only the others' logins.
    stayed,
    allInSeconds: allIn ? +((times.at(-1) ?? 0) / 1000).toFixed(2) : null,
    // The last CONNACK of the attempts that got in: every device connected and authenticated.
    allConnectedSeconds: allIn
      ? +((Math.max(...stats.map((s) => s.stats.lastConnack)) - t0) / 1000).toFixed(2)
      : null,
    p50Seconds: times.length ? +(quantile(times, 0.5) / 1000).toFixed(2) : null,
    p90Seconds: times.length ? +(quantile(times, 0.9) / 1000).toFixed(2) : null,
    p99Seconds: times.length ? +(quantile(times, 0.99) / 1000).toFixed(2) : null,
    attempts: stats.reduce((a, s) => a + s.stats.attempts, 0),
    failures,
    brokerCpuSeconds: +(cpu() - cpu0).toFixed(2),
    loadCpuSeconds: +(stats.reduce((a, s) => a + s.stats.cpuSeconds, 0) - load0).toFixed(2),
    brokerPeakRssBytes: pids().reduce((a, p) => a + peakRssBytes(p), 0),
    acceptQueueOverflows: tcp1.acceptQueueOverflows - tcp0.acceptQueueOverflows,
    synRetransmits: tcp1.synRetransmits - tcp0.synRetransmits,
  };
  say(
    `  ${name}: ${r.in}/${devices} in${stayed ? ` (${stayed} stayed connected, ${times.length} logged in again)` : ''} ${r.allInSeconds ?? `>${ROUND_TIMEOUT_MS / 1000}`} s (all authenticated at ${r.allConnectedSeconds} s; p50 ${r.p50Seconds} s, p99 ${r.p99Seconds} s), ` +
      `${r.attempts} attempts, broker CPU ${r.brokerCpuSeconds} s (load generator ${r.loadCpuSeconds} s), peak RSS ${(r.brokerPeakRssBytes / 2 ** 20).toFixed(0)} MiB, ` +
      `${r.acceptQueueOverflows} accept-queue overflows, ${r.synRetransmits} SYNs resent` +
      (Object.keys(failures).length ? `, refused/failed: ${JSON.stringify(failures)}` : ''),
  );
  return r;
}

async function runBroker(kind, workDir) {
  say(`• ${kind}: ${devices} devices from ${processes} processes`);
  const dir = join(workDir, kind);
  await import('node:fs/promises').then((fs) => fs.mkdir(dir, { recursive: true }));
  const cluster = kind === 'flotilla-cluster' ? await startCluster(join(dir, 'data')) : null;
  const server =
    kind === 'flotilla' ? await spawnServer({ dataDir: join(dir, 'data') }) : (cluster?.first ?? null);
  const workers = [];
  let broker = cluster ?? server;
  try {
    for (let k = 0; k < processes; k++) {
      const count = Math.floor(devices / processes) + (k < devices % processes ? 1 : 0);
      // Each load process connects from its own loopback addresses, with explicit source ports
      // (see sourceEndpoints in storm-worker.mjs): a bind with port 0 or a plain connect() makes
      // the kernel search the ephemeral range, which grows quadratic past ~14,000 sockets.
      const mode = kind === 'mosquitto' ? 'mosquitto' : 'flotilla';
      workers.push(startWorker({ mode, count, index: k, idPrefix: `s${k + 1}`, broker: {} }));
    }
    const credentials = (await Promise.all(workers.map((w) => w.ready))).flat();
    if (server) await bulkRegister(server.apiUrl, server.token, credentials);
    else broker = await startMosquitto(dir, credentials);
    for (const w of workers) await w.request({ cmd: 'target', broker: broker.mqtt });
    const out = { broker: kind, rounds: [] };
    for (const name of rounds) {
      if (name === 'restart') {
        for (const w of workers) await w.request({ cmd: 'hold' });
        if (cluster) await cluster.killSecond();
        else {
          await broker.kill();
          await broker.restart();
          if (server) await waitPort(server.mqtt.port, 30_000);
        }
      }
      out.rounds.push(await round(workers, broker, name));
    }
    if (server) out.serverMetrics = await sampler(server.apiUrl).read();
    return out;
  } finally {
    await Promise.race([
      Promise.all(workers.map((w) => w.request({ cmd: 'close' }).then(() => w.exited()))),
      sleep(10_000),
    ]);
    for (const w of workers) w.kill();
    await broker?.close().catch(() => undefined);
  }
}

const workDir = await mkdtemp(join(tmpdir(), 'flotilla-bench-storm-'));
const result = {
  devices,
  processes,
  spreadMs,
  pinned: pin,
  machine: { cpus: cpus().length, somaxconn: await somaxconn() },
  brokers: [],
};
let failed = false;
try {
  for (const kind of brokers) {
    if (kind === 'mosquitto' && !existsSync('/usr/sbin/mosquitto')) {
      say('• mosquitto: not installed (apt-get install mosquitto): skipped');
      continue;
    }
    if (kind === 'mosquitto')
      result.mosquittoVersion = spawnSync('mosquitto', ['-h']).stdout.toString().split('\n')[0];
    const r = await runBroker(kind, workDir);
    result.brokers.push(r);
    if (r.rounds.some((x) => x.in !== devices)) failed = true;
  }
  say('');
  say(
    `${devices} devices connecting at once (first attempts ${spreadMs ? `within ${spreadMs} ms` : 'in one burst'}; ${processes} load processes, ${cpus().length} cores, somaxconn ${result.machine.somaxconn})`,
  );
  say(
    'broker      round     all auth  all in    p50     p99     attempts  broker CPU  peak RSS  SYNs resent',
  );
  for (const b of result.brokers)
    for (const r of b.rounds)
      say(
        `${b.broker.padEnd(11)} ${r.round.padEnd(9)} ${String(r.allConnectedSeconds ?? 'n/a').padStart(6)} s ${String(r.allInSeconds ?? 'n/a').padStart(6)} s ${String(r.p50Seconds).padStart(5)} s ${String(r.p99Seconds).padStart(5)} s ${String(r.attempts).padStart(9)} ${String(r.brokerCpuSeconds).padStart(9)} s ${(r.brokerPeakRssBytes / 2 ** 20).toFixed(0).padStart(6)} MiB ${String(r.synRetransmits).padStart(12)}`,
      );
  process.stdout.write(`${JSON.stringify(result)}\n`);
} catch (err) {
  failed = true;
  say(`bench failed: ${err?.stack ?? err}`);
} finally {
  await rm(workDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
